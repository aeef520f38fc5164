"""The lock files pin what the tests run against: every direct requirement pinned to a
version its range allows, every transitive one pinned too, and requirements.txt (what Azure
Functions deploys) the runtime lock itself."""

from __future__ import annotations

from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def requirement_lines(path: Path) -> list[str]:
    """Requirement lines without comments, blank lines or ``-r``/``-c`` includes."""
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-r", "-c")):
            lines.append(line)
    return lines


def ranges(path: Path) -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in map(Requirement, requirement_lines(path))}


def pins(path: Path) -> dict[str, set[str]]:
    """Name → pinned versions (a universal lock may pin one per Python version)."""
    pinned: dict[str, set[str]] = {}
    for line in requirement_lines(path):
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"{path.name}: {line}"
        pinned.setdefault(canonicalize_name(requirement.name), set()).add(specifiers[0].version)
    return pinned


def check_pinned(source: Path, lock: Path) -> None:
    locked = pins(lock)
    for name, requirement in ranges(source).items():
        assert name in locked, f"{source.name}: {name} is not pinned in {lock.name}"
        for version in locked[name]:
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{lock.name} pins {name}=={version}, outside {source.name}'s {requirement}"
            )


def test_every_runtime_requirement_is_pinned_in_the_lock():
    check_pinned(ROOT / "requirements.in", ROOT / "requirements.lock")
    assert "fastapi-offline" in ranges(ROOT / "requirements.in")
    assert len(pins(ROOT / "requirements.lock")) > len(ranges(ROOT / "requirements.in"))


def test_every_dev_requirement_is_pinned_with_the_runtime_versions():
    check_pinned(ROOT / "requirements-dev.in", ROOT / "requirements-dev.lock")
    check_pinned(ROOT / "requirements.in", ROOT / "requirements-dev.lock")
    dev = pins(ROOT / "requirements-dev.lock")
    for name, versions in pins(ROOT / "requirements.lock").items():
        assert dev.get(name) == versions, f"{name}: the dev lock pins another version"


def test_requirements_txt_is_the_runtime_lock():
    deployed = requirement_lines(ROOT / "requirements.txt")
    assert deployed == requirement_lines(ROOT / "requirements.lock")
    assert "make lock" in (ROOT / "requirements.txt").read_text(encoding="utf-8")
