"""Races as entities (docs/races.md): a race other than the live one keeps its own rows,
judged by its own frozen rules, and never touches the live race's; the API answers every
read for a race asked with ``?race=`` (the live race without it) and lists the races."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from race.api import create_api
from race.bootstrap import App
from race.domain import jobs
from race.domain.race import RaceKind, RaceRules
from race.races import RaceError, create_race, delete_race, engine_for, record_live_race
from race.store import races as race_rows
from race.store.tables import (
    AgentStatsRow,
    CycleRow,
    DecisionRow,
    EquitySnapshotRow,
    JobRow,
    PortfolioRow,
    RaceRow,
    TradeRow,
)
from tests.factories import HOUR, insert_candles, make_candles, seed_assets, seed_baselines
from tests.factories import wave_prices as waves

START = datetime(2024, 1, 1, tzinfo=UTC)
SCOPED = (DecisionRow, TradeRow, EquitySnapshotRow, PortfolioRow, AgentStatsRow, CycleRow)


@dataclass
class Two:
    app: App
    agents: dict[str, int]
    live: int
    backtest: int


def _rows(app: App, race_id: int) -> dict[str, int]:
    with app.db.read() as session:
        return {
            table.__tablename__: int(
                session.scalar(
                    select(func.count()).select_from(table).where(table.race_id == race_id)
                )
                or 0
            )
            for table in SCOPED
        }


def _backtest(app: App, agents: dict[str, int], name: str = "bt") -> int:
    rules = RaceRules.of(app.settings.costs, app.settings.limits)
    new = race_rows.NewRace(
        name=name,
        kind=RaceKind.BACKTEST,
        start=START + 60 * HOUR,
        end=START + 80 * HOUR,
        interval_seconds=3600,
        starting_capital=Decimal("50000"),
        rules=replace(rules, fee_rate=rules.fee_rate * 2),
        universe=["BTC", "ETH"],
        status=jobs.QUEUED,
    )
    race = create_race(app.db, new, sorted(agents.values()), app.clock)
    engine = engine_for(app, race)
    report = asyncio.run(engine.backfill(race.start, race.end or race.start, HOUR))
    assert report.decisions == 21 * len(agents)
    return race.id


@pytest.fixture
def two(app: App) -> Two:
    """A live race (a backfill and a mark) and a backtest race of two of its agents, with a
    doubled fee and half the capital."""
    seed_assets(app)
    agents = seed_baselines(app, ["buy_and_hold", "sma_cross"])
    for symbol, base in (("BTC", 40_000.0), ("ETH", 2_000.0)):
        insert_candles(app, make_candles(symbol, START, waves(24 * 4, base=base, period=30)))
    asyncio.run(app.engine.backfill(START + 50 * HOUR, START + 70 * HOUR, HOUR))
    app.engine.snapshot(START + 75 * HOUR)
    with app.db.read() as session:
        live = race_rows.live_id(session)
    assert live is not None
    return Two(app, agents, live, _backtest(app, agents))


def test_a_backtest_race_keeps_its_own_rows_and_leaves_the_live_race_alone(two: Two) -> None:
    app = two.app
    live_before = _rows(app, two.live)
    backtest = _rows(app, two.backtest)
    assert backtest["decisions"] == 42 and backtest["portfolios"] == 2
    assert backtest["cycles"] == 21 and backtest["agent_stats"] == 2
    # Running the backtest again changes nothing (its cycles are done), live or not.
    with app.db.read() as session:
        found = race_rows.get(session, two.backtest)
    assert found is not None and found.rules is not None
    asyncio.run(engine_for(app, found).backfill(found.start, found.end or found.start, HOUR))
    assert _rows(app, two.backtest) == backtest
    assert _rows(app, two.live) == live_before
    # The backtest's fee is double the live one's, on every trade.
    with app.db.read() as session:
        ratios = {
            race_id: {
                (fee / notional).quantize(Decimal("0.0001"))
                for fee, notional in session.execute(
                    select(TradeRow.fee, TradeRow.notional).where(TradeRow.race_id == race_id)
                )
            }
            for race_id in (two.live, two.backtest)
        }
    assert ratios == {two.live: {Decimal("0.0010")}, two.backtest: {Decimal("0.0020")}}


def test_deleting_a_race_removes_all_of_it_and_refuses_the_live_race(two: Two) -> None:
    app = two.app
    live_before = _rows(app, two.live)
    with pytest.raises(RaceError, match="is the live race"):
        delete_race(app.db, "live")
    with pytest.raises(RaceError, match="no race 'nope'"):
        delete_race(app.db, "nope")
    deleted = delete_race(app.db, "BT")  # any case
    assert deleted.counts.decisions == 42
    assert _rows(app, two.backtest) == dict.fromkeys(live_before, 0)
    assert _rows(app, two.live) == live_before
    with app.db.read() as session:
        assert session.scalar(select(func.count()).select_from(RaceRow)) == 1
        keys = list(session.scalars(select(JobRow.key)))
    assert keys and not [k for k in keys if k.endswith(f":race={two.backtest}")]
    # A new race (SQLite may give it the same id) replays from scratch, not "done".
    again = _backtest(app, two.agents)
    assert _rows(app, again)["decisions"] == 42


def test_the_live_race_records_the_settings_once(
    two: Two, caplog: pytest.LogCaptureFixture
) -> None:
    app = two.app
    assert set(record_live_race(app.db, app.settings, app.clock)) == {
        "rules",
        "interval_seconds",
        "starting_capital",
        "universe",
    }
    assert record_live_race(app.db, app.settings, app.clock) == []
    with app.db.read() as session:
        live = race_rows.get(session, two.live)
    assert live is not None and live.rules == RaceRules.of(app.settings.costs, app.settings.limits)
    assert live.interval_seconds == 900 and live.universe == ("BTC", "ETH")
    # Settings changed since: the recorded rules stay, and the difference is logged.
    other = app.settings.model_copy(update={"fee_rate": Decimal("0.002")})
    with caplog.at_level(logging.WARNING, logger="race.races"):
        assert record_live_race(app.db, other, app.clock) == []
    assert "other rules than the settings now give (fee_rate)" in caplog.text
    with app.db.read() as session:
        assert race_rows.get(session, two.live) == live


def _get(client: TestClient, path: str, status: int = 200) -> Any:
    answer = client.get(path)
    assert answer.status_code == status, (path, answer.text)
    return answer.json()


def test_the_api_lists_races_and_reads_each_race(two: Two) -> None:
    client = TestClient(create_api(two.app, resume_jobs=False))
    races = _get(client, "/api/races")
    assert [(r["id"], r["kind"], r["isLive"]) for r in races] == [
        (str(two.live), "live", True),
        (str(two.backtest), "backtest", False),
    ]
    detail = _get(client, f"/api/races/{two.backtest}")
    assert detail["rules"]["feeRate"] == 0.002 and detail["startingCapital"] == 50000
    assert detail["participants"] == [str(i) for i in sorted(two.agents.values())]
    assert detail["counts"] == {
        "participants": 2,
        "decisions": 42,
        "trades": detail["counts"]["trades"],
        "snapshots": 42,
        "cycles": 21,
    }
    board = _get(client, "/api/leaderboard")
    assert board == _get(client, f"/api/leaderboard?race={two.live}")
    backtest = _get(client, f"/api/leaderboard?race={two.backtest}")
    assert {e["agent"]["id"] for e in backtest} == {str(i) for i in two.agents.values()}
    assert {e["currentValue"] for e in backtest} != {e["currentValue"] for e in board}
    agent = two.agents["buy_and_hold"]
    for path in (
        f"/api/agents/{agent}",
        f"/api/agents/{agent}/equity",
        f"/api/agents/{agent}/trades",
        f"/api/agents/{agent}/portfolio",
        f"/api/agents/{agent}/decisions",
        f"/api/agents/{agent}/decisions/analytics",
        f"/api/agents/{agent}/trades/summary",
        f"/api/agents/{agent}/equity/performance",
        "/api/agents",
        "/api/market/regime",
        "/api/market/regime/history",
    ):
        live = _get(client, path)
        assert live == _get(client, f"{path}?race={two.live}"), path
        assert live != _get(client, f"{path}?race={two.backtest}"), path
    curve = _get(client, f"/api/agents/{agent}/equity?race={two.backtest}")
    assert curve[0]["totalValue"] == pytest.approx(50000, rel=0.01) and len(curve) == 21
    decision = _get(client, f"/api/agents/{agent}/decisions?race={two.backtest}&limit=1")[0]
    chat = f"/api/agents/{agent}/decisions/{decision['id']}"
    assert _get(client, f"{chat}?race={two.backtest}")["id"] == decision["id"]
    assert "no decision" in _get(client, f"{chat}?race={two.live}", 404)["message"]


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("race=abc", 400, "race"),
        ("race=0", 400, "race"),
        ("race=-1", 400, "race"),
        ("race=999", 404, "no race 999"),
    ],
)
def test_a_bad_race_is_a_json_error(sqlite_app: App, query: str, status: int, message: str) -> None:
    client = TestClient(create_api(sqlite_app, resume_jobs=False))
    for path in ("/api/leaderboard", "/api/agents", "/api/agents/1/equity", "/api/market/regime"):
        answer = client.get(f"{path}?{query}")
        assert answer.status_code == status, (path, answer.text)
        assert message in answer.json()["message"]
    assert client.get("/api/races/999").status_code == 404
    assert "no race 999" in client.get("/api/races/999").json()["message"]
    assert client.get("/api/races/x").status_code == 400


def test_the_cli_lists_shows_and_deletes_races(
    two: Two, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from race.cli import main

    monkeypatch.setenv("RACE_DATABASE_URL", two.app.settings.database_url)
    assert main(["races", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in listed[1:]] == [
        [str(two.live), "live", "live"],
        [str(two.backtest), "bt", "backtest"],
    ]
    assert main(["races", "show", "bt", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["counts"]["decisions"] == 42 and shown["rules"]["feeRate"] == 0.002
    assert main(["leaderboard", "--race", "bt", "--json"]) == 0
    board = json.loads(capsys.readouterr().out)
    assert {e["agent"]["id"] for e in board} == {str(i) for i in two.agents.values()}
    assert main(["leaderboard", "--race", str(two.backtest)]) == 0
    assert "Buy & Hold" in capsys.readouterr().out
    live_before = _rows(two.app, two.live)
    assert main(["races", "delete", "bt"]) == 0
    assert "deleted race" in capsys.readouterr().out
    assert _rows(two.app, two.live) == live_before
    assert _rows(two.app, two.backtest) == dict.fromkeys(live_before, 0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["races", "show", "nope"], "error: no race 'nope'"),
        (["races", "delete", "nope"], "error: no race 'nope'"),
        (["races", "delete", "live"], "error: race 'live' is the live race"),
        (["leaderboard", "--race", "nope"], "error: no race 'nope'"),
        (["leaderboard", "--race", "999", "--json"], "error: no race '999'"),
    ],
)
def test_cli_bad_races_are_one_line_and_exit_2(
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    from race.cli import main

    monkeypatch.setenv("RACE_DATABASE_URL", sqlite_url)
    assert main(["db", "upgrade"]) == 0  # the live race exists, with its rules recorded
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(message) and captured.err.count("\n") == 1


def test_a_name_taken_between_the_check_and_the_insert_is_the_same_error(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers creating races of one name at once (PostgreSQL's transactions overlap):
    the second meets the unique index, and says the name is taken, as the check would."""
    new = race_rows.NewRace(
        name="Twice", kind=RaceKind.BACKTEST, start=START, end=START + 10 * HOUR,
        interval_seconds=3600, starting_capital=Decimal(1000), rules=None, universe=None,
    )  # fmt: skip
    create_race(app.db, new, [], app.clock)
    real, calls = race_rows.by_name, []

    def not_yet(session: Any, name: str) -> Any:  # the other writer had not committed yet
        calls.append(name)
        return None if len(calls) == 1 else real(session, name)

    monkeypatch.setattr(race_rows, "by_name", not_yet)
    with pytest.raises(RaceError, match="a race named 'twice' already exists"):
        create_race(app.db, replace(new, name="twice"), [], app.clock)
    assert len(calls) == 2
