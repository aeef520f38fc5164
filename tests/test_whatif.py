"""What-if replays (race/whatif.py, ``python -m race whatif``): a source backtest race with
baselines and an LLM agent (a loopback provider) replayed with the same rules gives the
same rows, with a doubled fee a lower equity for every trading agent, and never calls the
provider — on SQLite and, when configured, PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from race.bootstrap import App, bootstrap
from race.clock import ManualClock
from race.domain import jobs
from race.domain.model import Provider
from race.domain.race import RaceKind, RaceRules
from race.races import create_race, engine_for, find_race, record_live_race
from race.store import races as race_rows
from race.store.tables import DecisionRow, EquitySnapshotRow, TradeRow
from race.whatif import create_whatif, cycle_runs, parse_changes
from race.whatif_board import RankChange
from tests.factories import (
    HOUR,
    insert_candles,
    make_candles,
    seed_agent,
    seed_assets,
    seed_baselines,
    wave_prices,
)
from tests.openai_server import OpenAIServer, Recorded, Reply
from tests.test_recorded_answers import MODEL, SCRIPT

START = datetime(2024, 1, 1, tzinfo=UTC)
FIRST, LAST = START + 60 * HOUR, START + 90 * HOUR
LLAMA_KEY = "gsk_test_whatif_0123456789"
REMOTE_KEY = "remote-ml-SECRET-whatif-42"
PREDICTIONS = [
    [{"assetSymbol": "BTC", "side": "BUY", "quantity": 0.05}],
    [{"assetSymbol": "ETH", "side": "BUY", "quantity": 1.5}],
    [{"assetSymbol": "BTC", "side": "HOLD"}],
    [{"assetSymbol": "BTC", "side": "SELL", "quantity": 0.02}],
]
SKIP = ("id", "race_id", "decision_id", "portfolio_id")


@dataclass
class Source:
    app: App
    server: OpenAIServer
    race_id: int
    agents: dict[str, int]
    calls: int


def _settings(database_url: str, server: OpenAIServer) -> dict[str, str]:
    return {
        "RACE_DATABASE_URL": database_url,
        "LLAMA_BASE_URL": server.base_url,
        "LLAMA_API_KEY": LLAMA_KEY,
        "LLM_MAX_RETRIES": "0",
        "REMOTE_ML_URL": server.root_url,
        "REMOTE_ML_API_KEY": REMOTE_KEY,
    }


def _provider() -> Any:
    """The LLM's script on the chat path, a remote model's rotating orders elsewhere."""
    chats, predictions = iter(range(10**6)), iter(range(10**6))

    def respond(request: Recorded) -> Reply:
        if request.path.endswith("/chat/completions"):
            return SCRIPT[next(chats) % len(SCRIPT)]
        orders = PREDICTIONS[next(predictions) % len(PREDICTIONS)]
        return Reply(body={"orders": orders, "reasoning": "Rotating.", "modelVersion": "r-1"})

    return respond


@pytest.fixture
def source(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Source]:
    """A finished backtest race: three baselines, an LLM agent answering from a script and a
    remote model with rotating orders."""
    with OpenAIServer() as server:
        server.default = _provider()
        settings = _settings(database_url, server)
        app = bootstrap(overrides=settings, clock=ManualClock(START + 100 * HOUR))
        seed_assets(app)
        for symbol, base in (("BTC", 40000.0), ("ETH", 2000.0)):
            prices = wave_prices(100, base=base, drift=0.001)
            insert_candles(app, make_candles(symbol, START, prices))
        agents = seed_baselines(app, ["buy_and_hold", "sma_cross", "random"])
        agents["llm"] = seed_agent(app, "Llama", Provider.LLAMA, model=MODEL)
        agents["remote"] = seed_agent(
            app, "Remote", Provider.CUSTOM_ML, model="remote", params={"url": server.root_url}
        )
        new = race_rows.NewRace(
            name="bt",
            kind=RaceKind.BACKTEST,
            start=FIRST,
            end=LAST,
            interval_seconds=3600,
            starting_capital=Decimal("100000"),
            rules=RaceRules.of(app.settings.costs, app.settings.limits),
            universe=["BTC", "ETH"],
            status=jobs.RUNNING,
        )
        race = create_race(app.db, new, sorted(agents.values()), app.clock)
        asyncio.run(engine_for(app, race).backfill(FIRST, LAST, HOUR))
        calls = len(server.requests)
        assert calls == 2 * 31

        def refuse(request: Recorded) -> Reply:
            raise AssertionError(f"the what-if called the provider: {request.path}")

        server.default = refuse
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        yield Source(app, server, race.id, agents, calls)
        app.close()


def _rows(app: App, table: Any, race_id: int) -> list[dict[str, Any]]:
    order = (table.agent_id, table.cycle_time if table is DecisionRow else table.id)
    with app.db.read() as session:
        query = select(table).where(table.race_id == race_id).order_by(*order)
        return [
            {c.key: getattr(row, c.key) for c in table.__table__.columns if c.key not in SKIP}
            for row in session.scalars(query)
        ]


def _whatif(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    from race.cli import main

    assert main(["whatif", *argv]) == 0
    return capsys.readouterr().out


def _last_equity(app: App, race_id: int) -> dict[int, Decimal]:
    return {row["agent_id"]: row["total_value"] for row in _rows(app, EquitySnapshotRow, race_id)}


def test_same_rules_reproduce_the_rows_and_a_doubled_fee_costs_every_trader(
    source: Source, capsys: pytest.CaptureFixture[str]
) -> None:
    app = source.app
    out = _whatif(["bt", "--name", "same"], capsys)
    same = find_race(app.db, "same")
    assert same.kind is RaceKind.WHATIF and same.source_race_id == source.race_id
    assert same.status == jobs.COMPLETED and same.rules == find_race(app.db, "bt").rules
    assert "Llama" in out and "=" in out
    for table in (DecisionRow, TradeRow, EquitySnapshotRow):
        rows = _rows(app, table, source.race_id)
        assert rows and _rows(app, table, same.id) == rows, table.__tablename__
    llm_decisions = [r for r in _rows(app, DecisionRow, same.id) if r["raw_output"]]
    assert len(llm_decisions) >= 20

    out = _whatif(["bt", "--fee", "0.002"], capsys)
    dearer = find_race(app.db, "whatif of bt (fee 0.002)")
    assert dearer.rules is not None and dearer.rules.fee_rate == Decimal("0.002")
    source_equity, dearer_equity = (_last_equity(app, r) for r in (source.race_id, dearer.id))
    traders = {r["agent_id"] for r in _rows(app, TradeRow, source.race_id)}
    assert {source.agents["llm"], source.agents["remote"]} <= traders and len(traders) >= 4
    for agent in traders:
        assert dearer_equity[agent] < source_equity[agent], agent
    assert "(USD)" in out and "What-if" in out
    assert len(source.server.requests) == source.calls, "a what-if called the provider"


def test_another_capital_and_a_default_name_taken_twice(
    source: Source, capsys: pytest.CaptureFixture[str]
) -> None:
    _whatif(["bt", "--starting-capital", "50000", "--max-order", "1000"], capsys)
    _whatif(["bt", "--starting-capital", "50000", "--max-order", "1000"], capsys)
    second = find_race(source.app.db, "whatif of bt (max-order 1000, capital 50000) #2")
    assert second.starting_capital == Decimal("50000")
    trades = _rows(source.app, TradeRow, second.id)
    buys = [t["notional"] for t in trades if t["side"] == "BUY"]
    assert buys and max(buys) <= Decimal("1000"), max(buys)
    assert len(source.server.requests) == source.calls


def test_an_unfinished_whatif_is_resumed_and_a_finished_one_is_not(
    source: Source, capsys: pytest.CaptureFixture[str]
) -> None:
    app = source.app
    started = create_whatif(app, "bt", parse_changes(fee="0.003"))  # as if stopped at once
    assert started.race.status == jobs.QUEUED and not started.resumed
    out = _whatif(["bt", "--fee", "0.003"], capsys)
    assert out.startswith(f"resuming race {started.race.id}: whatif of bt (fee 0.003)")
    assert find_race(app.db, str(started.race.id)).status == jobs.COMPLETED
    out = _whatif(["bt", "--fee", "0.003"], capsys)
    assert "whatif of bt (fee 0.003) #2" in out and "resuming" not in out
    assert _rows(app, TradeRow, started.race.id)


def test_a_whatif_of_the_live_race_replays_up_to_its_last_cycle(
    app: App, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_assets(app)
    for symbol, base in (("BTC", 40000.0), ("ETH", 2000.0)):
        insert_candles(app, make_candles(symbol, START, wave_prices(100, base=base)))
    seed_baselines(app, ["buy_and_hold", "random"])
    record_live_race(app.db, app.settings, app.clock)
    asyncio.run(app.engine.backfill(FIRST, FIRST + 10 * HOUR, HOUR))
    monkeypatch.setenv("RACE_DATABASE_URL", app.settings.database_url)
    out = _whatif(["live", "--name", "again"], capsys)
    again, live = find_race(app.db, "again"), find_race(app.db, "live")
    assert again.start <= FIRST and again.end == FIRST + 10 * HOUR
    assert "11 cycles of race" in out
    for table in (DecisionRow, TradeRow, EquitySnapshotRow):
        assert _rows(app, table, again.id) == _rows(app, table, live.id), table.__tablename__


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nope"], "error: no race 'nope'"),
        (["live", "--fee", "abc"], "error: --fee 'abc' is not a number"),
        (["live", "--fee", "1.5"], "error: --fee 1.5 is out of range"),
        (["live", "--slippage-bps", "-1"], "error: --slippage-bps -1 is out of range"),
        (["live", "--max-position", "0"], "error: --max-position 0 is out of range"),
        (["live", "--max-order", "NaN"], "error: --max-order NaN is out of range"),
        (["live", "--starting-capital", "1e999999999"], "error: --starting-capital 1e9"),
        (["live"], "error: race 'live' has no recorded cycle"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    from race.cli import main

    monkeypatch.setenv("RACE_DATABASE_URL", sqlite_url)
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    assert main(["whatif", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(message) and captured.err.count("\n") == 1


def test_cycle_runs_split_at_gaps_and_set_aside_off_grid_times() -> None:
    times = [START, START + HOUR, START + 3 * HOUR, START + 3 * HOUR + HOUR / 2]
    runs, off = cycle_runs(times, HOUR)
    assert runs == [(START, START + HOUR), (START + 3 * HOUR, START + 3 * HOUR)]
    assert off == [START + 3 * HOUR + HOUR / 2]


def test_rank_changes_read_as_arrows() -> None:
    def moved(source_rank: int | None, rank: int) -> str:
        return RankChange(rank, source_rank, "A", None, Decimal(1)).moved

    assert (moved(3, 1), moved(1, 3), moved(2, 2), moved(None, 1)) == ("▲2", "▼2", "=", "new")
