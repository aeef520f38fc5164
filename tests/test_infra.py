"""The Azure template (infra/, azure.yaml) against the app, offline.

Every setting of ``local.settings.example.json`` is listed in ``infra/settings.json`` as set
by the template, taken as a parameter, a Key Vault secret, replaced by the platform, or left
to its default — and the Bicep sets exactly what that file says, nothing the app does not
know. No Bicep compiler installs from the registries this project uses (PyPI's ``bicep`` is
an unrelated package; npm and Debian have none), so the Bicep is checked structurally here:
balanced, every parameter used, every module parameter and output resolved, and the alert
queries reading names the app really emits. ``bicep build`` runs too where a ``bicep``
binary is on PATH.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml

from race.settings import setting_names

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
SOURCES = {"template", "parameter", "keyvault", "platform", "default"}
# App settings the template sets for the Functions host itself (not race settings).
HOST_SETTINGS = {"AzureWebJobsStorage__accountName"}


def example_settings() -> list[str]:
    return list(json.loads((ROOT / "local.settings.example.json").read_text())["Values"])


def settings_map() -> dict[str, dict[str, str]]:
    return json.loads((INFRA / "settings.json").read_text())["settings"]


def known_settings() -> set[str]:
    return set(setting_names().values())


# ------------------------------------------------------------------ a small Bicep reader
def code_of(text: str) -> str:
    """The Bicep without comments, each string literal reduced to ``''`` plus the
    expressions interpolated in it (``'a${b}c'`` → ``'' b``): what is left is code only."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            assert end >= 0, "unterminated /* comment"
            i = end + 2
        elif text[i] == "'":
            i += 1
            out.append("''")
            while True:
                assert i < n, "unterminated string"
                if text[i] == "\\":
                    i += 2
                elif text[i] == "'":
                    i += 1
                    break
                elif text.startswith("${", i):
                    depth, j = 1, i + 2
                    while depth:
                        depth += {"{": 1, "}": -1}.get(text[j], 0)
                        j += 1
                    out.append(" " + code_of(text[i + 2 : j - 1]) + " ")
                    i = j
                else:
                    i += 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@cache
def bicep(name: str) -> str:
    return (INFRA / name).read_text(encoding="utf-8")


def params_of(text: str) -> dict[str, bool]:
    """Parameter name → whether it has a default."""
    return {
        m.group(1): m.group(2) is not None
        for m in re.finditer(r"^param\s+(\w+)\s+\w+(\s*=.*)?$", code_of(text), flags=re.M)
    }


def outputs_of(text: str) -> set[str]:
    return set(re.findall(r"^output\s+(\w+)\s", code_of(text), flags=re.M))


def block(text: str, opener: str) -> str:
    """The body of ``opener`` (ending in ``{``, ``[`` or ``(``) up to its matching bracket."""
    start = text.index(opener) + len(opener)
    close = {"{": "}", "[": "]", "(": ")"}[opener[-1]]
    depth, i = 1, start
    while depth:
        depth += {opener[-1]: 1, close: -1}.get(text[i], 0)
        i += 1
    return text[start : i - 1]


def object_keys(body: str) -> dict[str, str]:
    """Key → value expression of a flat Bicep object body (one key a line)."""
    return dict(re.findall(r"^\s*([A-Za-z_]\w*)\s*:\s*(.+?)\s*$", body, flags=re.M))


def template_settings() -> dict[str, str]:
    return object_keys(block(bicep("app.bicep"), "var templateSettings = {"))


def parameter_settings() -> dict[str, str]:
    return object_keys(block(bicep("app.bicep"), "var parameterSettings = {"))


SECRET_ROW = r"\{\s*setting:\s*'(\w+)',\s*secret:\s*'([\w-]+)',\s*value:\s*(\w+)\s*\}"


def secret_settings() -> list[tuple[str, str, str]]:
    """(setting, secret, value) of every Key Vault reference the template sets: the rows of
    ``secretSettings`` and ``databaseUrlSetting``, both passed to ``secretReferences``."""
    text = bicep("app.bicep")
    body = block(text, "var secretSettings = [")
    rows = re.findall(SECRET_ROW, body)
    assert len(rows) == body.count("setting:"), "a secretSettings row this test cannot read"
    database = re.search(rf"^var databaseUrlSetting = {SECRET_ROW}$", text, flags=re.M)
    assert database, "databaseUrlSetting is not one row this test can read"
    references = block(text, "var secretReferences = toObject(")
    assert "concat([databaseUrlSetting], storedSecrets)" in references
    assert "var storedSecrets = filter(secretSettings, " in text
    return [*rows, database.groups()]


# ------------------------------------------------------------------ settings coverage
def test_every_example_setting_has_its_place_on_azure():
    example, mapped = example_settings(), settings_map()
    missing = [name for name in example if name not in mapped]
    stale = [name for name in mapped if name not in example]
    assert not missing, (
        f"local.settings.example.json has settings infra/settings.json does not place "
        f"(template, parameter, keyvault, platform or default): {missing}"
    )
    assert not stale, f"infra/settings.json lists settings the example does not: {stale}"
    bad = {n: e.get("source") for n, e in mapped.items() if e.get("source") not in SOURCES}
    assert not bad, f"unknown sources: {bad}"


def test_every_race_setting_in_the_map_is_one_the_app_knows():
    known = known_settings()
    unknown = [
        name
        for name, entry in settings_map().items()
        if entry["source"] != "platform"
        and entry.get("appSetting") not in HOST_SETTINGS
        and name not in known
    ]
    assert not unknown, f"infra/settings.json names settings race/settings.py lacks: {unknown}"
    platform = [n for n, e in settings_map().items() if e["source"] == "platform"]
    assert platform and not set(platform) & known


def test_the_template_sets_exactly_what_the_map_says():
    mapped = settings_map()

    def names(source: str) -> set[str]:
        return {n for n, e in mapped.items() if e["source"] == source}

    template = {mapped[n].get("appSetting", n) for n in names("template")}
    assert set(template_settings()) == template

    parameters = parameter_settings()
    assert set(parameters) == names("parameter")
    for name, expression in parameters.items():
        assert expression == mapped[name]["parameter"], f"{name} is set from {expression}"

    rows = secret_settings()
    assert {setting for setting, _, _ in rows} == names("keyvault")
    variables = dict(re.findall(r"^var\s+(\w+)\s*=\s*(.+)$", bicep("app.bicep"), flags=re.M))
    for setting, secret, value in rows:
        entry = mapped[setting]
        assert secret == entry["secret"], setting
        # The secret's value is the parameter, or a variable built from it.
        assert value == entry["parameter"] or (
            value in variables and re.search(rf"\b{entry['parameter']}\b", variables[value])
        ), f"{setting} is stored from {value}, not from {entry['parameter']}"

    set_by_template = set(template_settings()) | set(parameters) | {r[0] for r in rows}
    for left_alone in names("default") | names("platform"):
        assert left_alone not in set_by_template, f"{left_alone} is mapped as not set"


def test_every_app_setting_the_template_sets_is_a_known_setting():
    known = known_settings()
    set_by_template = (
        set(template_settings())
        | set(parameter_settings())
        | {setting for setting, _, _ in secret_settings()}
    )
    unknown = sorted(set_by_template - known - HOST_SETTINGS)
    assert not unknown, f"the template sets settings the app does not know: {unknown}"


def test_the_settings_map_itself_fails_on_a_new_example_setting(tmp_path, monkeypatch):
    """The coverage check is not vacuous: a setting added to the example alone fails it."""
    example = json.loads((ROOT / "local.settings.example.json").read_text())
    example["Values"]["RACE_SOMETHING_NEW"] = "1"
    copy = tmp_path / "local.settings.example.json"
    copy.write_text(json.dumps(example))
    monkeypatch.setattr(
        "tests.test_infra.example_settings", lambda: list(json.loads(copy.read_text())["Values"])
    )
    with pytest.raises(AssertionError, match="RACE_SOMETHING_NEW"):
        test_every_example_setting_has_its_place_on_azure()


# ------------------------------------------------------------------ Bicep structure
@pytest.mark.parametrize("name", ["main.bicep", "app.bicep", "alerts.bicep"])
def test_the_bicep_is_balanced_and_uses_every_parameter(name):
    code = code_of(bicep(name))
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for number, line in enumerate(code.splitlines(), 1):
        for char in line:
            if char in "([{":
                stack.append(char)
            elif char in pairs:
                assert stack and stack.pop() == pairs[char], f"{name}:{number}: unbalanced {char}"
    assert not stack, f"{name}: unclosed {stack}"
    for param in params_of(bicep(name)):
        uses = len(re.findall(rf"(?<![\w.]){param}\b", code))
        assert uses >= 2, f"{name}: param {param} is declared but never used"


def test_modules_receive_parameters_they_declare_and_outputs_they_have():
    main = bicep("main.bicep")
    modules = re.findall(r"^module\s+(\w+)\s+'([\w./-]+)'", main, flags=re.M)
    assert {alias for alias, _ in modules} == {"app", "alerts"}
    for alias, path in modules:
        assert (INFRA / path).is_file(), path
        declared = params_of(bicep(path))
        body = block(main, f"module {alias} '{path}' = {{")
        passed = object_keys(block(body, "params: {"))
        assert not set(passed) - set(declared), (
            f"{path} has no params {set(passed) - set(declared)}"
        )
        required = {p for p, has_default in declared.items() if not has_default}
        assert not required - set(passed), f"{path} is not given {required - set(passed)}"
        outputs = outputs_of(bicep(path))
        for used in re.findall(rf"\b{alias}\.outputs\.(\w+)", code_of(main)):
            assert used in outputs, f"{path} has no output {used}"


def test_the_parameters_file_names_only_parameters_of_main():
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = params_of(bicep("main.bicep"))
    assert not set(parameters) - set(declared), set(parameters) - set(declared)
    required = {p for p, has_default in declared.items() if not has_default}
    assert required <= set(parameters), required - set(parameters)
    for name, entry in settings_map().items():
        if "parameter" in entry:
            assert entry["parameter"] in declared, f"{name}: no param {entry['parameter']}"


def test_the_function_app_is_flex_consumption_python_311_with_its_own_identity():
    app = code_of(bicep("app.bicep"))
    text = bicep("app.bicep")
    assert "name: 'FC1'" in text and "tier: 'FlexConsumption'" in text
    assert re.search(r"runtime:\s*\{\s*name:\s*'python'\s*version:\s*'3.11'", text)
    assert "identity: { type: 'SystemAssigned' }" in text
    assert "allowSharedKeyAccess: false" in text
    assert "enableRbacAuthorization: true" in text
    assert "'@Microsoft.KeyVault(VaultName=${vault.name};SecretName=${s.secret})'" in text
    # Flex Consumption refuses these app settings (functionAppConfig replaces them).
    for forbidden in (
        "FUNCTIONS_WORKER_RUNTIME",
        "WEBSITE_RUN_FROM_PACKAGE",
        "FUNCTIONS_EXTENSION",
    ):
        assert forbidden not in app


def test_the_alert_queries_read_what_the_app_emits():
    alerts = bicep("alerts.bicep")
    telemetry = (ROOT / "race" / "telemetry.py").read_text()
    # The log line of a degraded agent, wherever in the race's code it is written.
    engine = "\n".join(p.read_text() for p in sorted((ROOT / "race").rglob("*.py")))
    for metric in ("race.candles.ingested", "race.fallbacks"):
        assert f'name == "{metric}"' in alerts and f'"{metric}"' in telemetry
    assert 'name == "race.agent.decide"' in alerts and '"race.agent.decide"' in telemetry
    for attribute in ("agent", "cost_usd"):
        assert f"customDimensions.{attribute}" in alerts and f"{attribute}=" in telemetry
    assert 'customDimensions.reason) == "budget"' in alerts
    assert '("budget", "budget")' in telemetry  # _reason_class's label for budget HOLDs
    assert 'contains "is degraded: more than"' in alerts
    assert '"agent %s is degraded: more than' in engine
    assert "metricName: 'requests/failed'" in alerts
    assert "skipQueryValidation: true" in alerts  # tables appear with the first telemetry
    for name in (
        "race-degraded-agent",
        "race-stale-candles",
        "race-llm-budget-80",
        "race-llm-budget-100",
    ):
        assert f"name: '{name}'" in alerts


def test_azure_yaml_deploys_the_root_as_a_python_function_app():
    config = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert config["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    assert config["services"]["api"] == {"project": ".", "language": "python", "host": "function"}
    assert "'azd-service-name': 'api'" in bicep("app.bicep")
    ignored = (ROOT / ".funcignore").read_text().split()
    for kept in ("function_app.py", "host.json", "requirements.txt", "race", "agents", "market"):
        assert kept not in ignored


@pytest.mark.skipif(shutil.which("bicep") is None, reason="no bicep binary on PATH")
def test_bicep_builds(tmp_path):
    run = subprocess.run(
        ["bicep", "build", str(INFRA / "main.bicep"), "--outdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
