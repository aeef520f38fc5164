"""The repository's own docs cover what a user needs: docs/api.md names every route and
every field of every API shape with its JSON type, and nothing cites files a user of this
repository cannot read (the planning documents outside it)."""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from race.api import models

ROOT = Path(__file__).resolve().parent.parent
API_DOC = ROOT / "docs" / "api.md"
RULES_DOC = ROOT / "docs" / "rules.md"
SCALARS = {str: "string", float: "number", int: "integer", bool: "boolean", object: "any"}


def json_type(annotation: Any) -> str:
    """The JSON type of a field as docs/api.md writes it."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        return " \\| ".join(json_type(a) for a in args)
    if origin is Literal:
        return " \\| ".join(f'`"{a}"`' for a in args)
    if origin is list:
        return f"array of {json_type(args[0])}"
    if origin is dict:
        return f"object of {json_type(args[1])}"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.__name__
    if annotation.__name__ == "datetime":
        return "string (ISO-8601)"
    return SCALARS[annotation]


def api_models() -> list[tuple[str, type[BaseModel]]]:
    return [
        (name, cls)
        for name, cls in vars(models).items()
        if isinstance(cls, type)
        and issubclass(cls, BaseModel)
        and cls.__module__ == models.__name__
        and cls.model_fields
    ]


def sections(text: str) -> dict[str, str]:
    parts = re.split(r"^### (\w+)\s*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_api_field_is_documented_with_its_type():
    documented = sections(API_DOC.read_text(encoding="utf-8"))
    missing = []
    for name, cls in api_models():
        section = documented.get(name)
        if section is None:
            missing.append(f"### {name}")
            continue
        rows = {
            cells[0].strip(): cells[1].strip()
            for line in section.splitlines()
            if line.startswith("| `")
            for cells in [line.strip("|").split(" | ")]
        }
        for field, info in cls.model_fields.items():
            wanted = json_type(info.annotation)
            if rows.get(f"`{field}`") != wanted:
                missing.append(f"{name}.{field}: {wanted}")
    assert not missing, f"docs/api.md lacks or mistypes: {missing}"


def test_every_route_is_documented(sqlite_app):
    from race.api import create_api

    text = API_DOC.read_text(encoding="utf-8")
    routes = [
        (method, route.path)
        for route in create_api(sqlite_app).routes
        if route.path.startswith("/api/") and route.path not in ("/api/openapi.json",)
        for method in sorted(getattr(route, "methods", None) or ())
        if method not in ("HEAD", "OPTIONS")
    ]
    assert len(routes) >= 14
    absent = [
        f"{method} {path}"
        for method, path in routes
        if f"`{method} {path.replace('{agent_id}', '{id}').replace('{job_id}', '{id}')}`"
        not in text
        and not path.startswith("/api/docs")
    ]
    assert not absent, f"docs/api.md does not document {absent}"


def test_the_rules_doc_states_the_numbers():
    text = RULES_DOC.read_text(encoding="utf-8")
    from race.settings import Settings

    s = Settings()
    for setting, value in (
        ("RACE_STARTING_CAPITAL", f"{s.starting_capital:,.0f}"),
        ("RACE_FEE_RATE", f"{s.fee_rate * 100:.2f} %"),
        ("RACE_SLIPPAGE_BPS", f"{s.slippage_bps} bps"),
        ("RACE_MAX_POSITION_FRACTION", f"{s.max_position_fraction * 100:.0f} %"),
        ("RACE_MIN_CASH_RESERVE", f"{s.min_cash_reserve:,.0f} USD"),
        ("RACE_MAX_ORDER_NOTIONAL", f"{s.max_order_notional:,.0f} USD"),
        ("RACE_MIN_ORDER_NOTIONAL", f"{s.min_order_notional:,.0f} USD"),
        ("RACE_MAX_ORDERS_PER_CYCLE", str(s.max_orders_per_cycle)),
        ("RACE_CONTEXT_CANDLES", str(s.context_candles)),
    ):
        rows = [line for line in text.splitlines() if f"`{setting}`" in line]
        assert rows and value in rows[0], f"docs/rules.md: {setting} should say {value}"


def test_nothing_cites_documents_outside_the_repository():
    cited = re.compile(r"shared/[\w.-]+\.md|api-contract\.md|ml-service-contract\.md|DESIGN\.md")
    offenders = []
    for path in ROOT.rglob("*"):
        if (
            path.suffix not in (".py", ".md", ".json", ".toml", ".txt", ".in", ".mako")
            and path.name != "Makefile"
        ) or any(part.startswith(".") for part in path.relative_to(ROOT).parts):
            continue
        if path == Path(__file__):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if cited.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:80]}")
    assert not offenders, "cites files a user cannot read:\n" + "\n".join(offenders)


def test_the_readme_points_at_the_docs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/api.md" in readme and "docs/rules.md" in readme
