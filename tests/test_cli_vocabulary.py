"""One vocabulary: every ``--json`` output of the CLI uses the API's field names
(``race/api/models.py``), on SQLite and PostgreSQL — never ``returnPct``, ``sharpe``,
``fees``, ``agentId`` for an agent's own id, ``active``…"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from race.api import create_api
from race.api import models as m
from race.bootstrap import App, bootstrap
from race.cli import main
from race.ml_service import TrainReport
from tests.factories import (
    HOUR,
    insert_candles,
    make_candles,
    seed_assets,
    seed_baselines,
    wave_prices,
)

START = datetime(2024, 1, 1, tzinfo=UTC)
# The CLI's old names, each with the API's name that replaced it.
RETIRED = {
    "returnPct": "performancePercent",
    "sharpe": "sharpeRatio",
    "sortino": "sortinoRatio",
    "fees": "feesPaid",
    "active": "isActive",
    "equity": "currentValue",
    "maxDrawdownPct": "drawdown",
    "winRatePct": "winRate",
    "trades": "totalTrades",
}


def keys(value: Any) -> set[str]:
    """Every key of every object inside ``value`` (params excluded: the agent's own)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            found.add(key)
            if key != "params":
                found |= keys(item)
    elif isinstance(value, list):
        for item in value:
            found |= keys(item)
    return found


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = main(list(argv))
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


@pytest.fixture
def raced(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    monkeypatch.setenv("RACE_DATABASE_URL", database_url)
    app = bootstrap(overrides={"RACE_DATABASE_URL": database_url})
    seed_assets(app)
    seed_baselines(app, ["cash", "buy_and_hold"])
    for symbol, base in (("BTC", 40000.0), ("ETH", 2000.0)):
        insert_candles(app, make_candles(symbol, START, wave_prices(60, base=base)))
    for hour in (57, 58):
        asyncio.run(app.engine.run_cycle(START + hour * HOUR))
    yield app
    app.close()


def test_leaderboard_json_is_the_apis_leaderboard(raced, capsys):
    rows = cli_json(capsys, "leaderboard", "--json")
    api = TestClient(create_api(raced)).get("/api/leaderboard").json()
    assert rows == api
    for row in rows:
        m.LeaderboardEntry.model_validate(row)  # field for field, nothing extra
    assert not keys(rows) & (set(RETIRED) - {"trades"})
    assert {"performancePercent", "sharpeRatio", "feesPaid", "isActive"} <= keys(rows)
    assert all(isinstance(row["agent"]["id"], str) for row in rows)


def test_agents_list_and_show_json_use_the_apis_names(raced, capsys):
    listed = cli_json(capsys, "agents", "list", "--json")
    summary = set(m.AgentSummary.model_fields) | set(m.AgentDetail.model_fields)
    for agent in listed:
        assert set(agent) - {"params"} <= summary, set(agent) - summary
        assert isinstance(agent["id"], str) and isinstance(agent["isActive"], bool)
    assert not keys(listed) & set(RETIRED)

    shown = cli_json(capsys, "agents", "show", listed[1]["id"], "--json")
    detail = {k: v for k, v in shown.items() if k in m.AgentDetail.model_fields}
    m.AgentDetail.model_validate(detail)
    assert set(shown) - set(m.AgentDetail.model_fields) == {
        "params",
        "instructions",
        "decisions",
        "trades",
    }
    for decision in shown["decisions"]:
        m.DecisionLog.model_validate(decision)
    for trade in shown["trades"]:
        m.Trade.model_validate(trade)
    assert shown["trades"], "buy_and_hold traded"
    assert not keys(shown) & (set(RETIRED) - {"trades"})


def test_cycle_json_is_the_apis_cycle_run(raced, capsys):
    report = cli_json(capsys, "cycle", "--at", (START + 59 * HOUR).isoformat(), "--json")
    m.CycleRun.model_validate(report)


def test_ml_train_report_is_camel_case():
    report = TrainReport(
        name="direction-gb",
        version="v",
        sha256="0" * 64,
        status="promoted",
        reason="the first promoted model of its name",
        trained_until=START,
        horizon=4,
        symbols=["BTC"],
        train_rows=1,
        test_rows=1,
        train_start=START,
        train_end=START,
        test_start=START,
        test_end=START,
        accuracy=0.5,
        precision=None,
        up_rate=0.5,
        baseline_accuracy=0.5,
        predicted_up=0,
        seconds=0.1,
    )
    data = report.as_dict()
    assert not [key for key in data if "_" in key]
    assert data["trainRows"] == 1 and data["trainedUntil"] == START.isoformat()
    assert data["perSymbol"] == {}
