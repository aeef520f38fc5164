"""Backtests (issue 13 §3, docs/races.md): a new race each run with the settings' rules and
the asked changes frozen, its participants replayed over stored candles; two runs with the
same inputs write the same rows (apart from ids); bad input is one line and exit 2."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from race.backtest import BacktestRequest, create_backtest, plan_backtest, run_backtest
from race.bootstrap import App
from race.clock import ManualClock
from race.domain import jobs
from race.domain.model import Provider
from race.domain.race import RaceKind
from race.store import races as race_rows
from race.store.tables import DecisionRow, EquitySnapshotRow, TradeRow
from tests.factories import (
    HOUR,
    insert_candles,
    make_candles,
    seed_agent,
    seed_assets,
    seed_baselines,
    wave_prices,
)

START = datetime(2024, 1, 1, tzinfo=UTC)
IDS = {"id", "race_id", "decision_id", "portfolio_id"}


def _market(app: App, hours: int = 24 * 5) -> None:
    seed_assets(app)
    insert_candles(app, make_candles("BTC", START, wave_prices(hours, base=40_000.0, period=29)))
    insert_candles(app, make_candles("ETH", START, wave_prices(hours, base=2_000.0, period=17)))


@pytest.fixture
def market(app: App, clock: ManualClock) -> App:
    """Every baseline, two assets with five days of hourly candles, the clock after them."""
    _market(app)
    seed_baselines(app)
    clock.advance(10 * 24 * 3600)
    return app


def _rows(app: App, race_id: int) -> dict[str, list[dict[str, Any]]]:
    """The race's decisions, trades and snapshots, without ids (of the rows, the race,
    the decision and the portfolio)."""
    tables = {
        "decisions": (DecisionRow, (DecisionRow.agent_id, DecisionRow.cycle_time)),
        "trades": (TradeRow, (TradeRow.agent_id, TradeRow.executed_at, TradeRow.sequence)),
        "snapshots": (
            EquitySnapshotRow,
            (EquitySnapshotRow.agent_id, EquitySnapshotRow.captured_at),
        ),
    }
    found = {}
    with app.db.read() as session:
        for name, (table, order) in tables.items():
            result = session.execute(
                select(table.__table__).where(table.race_id == race_id).order_by(*order)
            )
            found[name] = [
                {k: v for k, v in row._mapping.items() if k not in IDS} for row in result
            ]
    return found


def _backtest(app: App, **changes: Any) -> int:
    request = BacktestRequest(start=START + 50 * HOUR, end=START + 100 * HOUR, **changes)
    race = create_backtest(app, plan_backtest(app, request))
    report = asyncio.run(run_backtest(app, race))
    assert report.finished
    return race.id


def test_two_backtests_with_the_same_inputs_write_the_same_rows(market: App) -> None:
    first = _backtest(market, fee=Decimal("0.002"), starting_capital=Decimal("50000"))
    second = _backtest(market, fee=Decimal("0.002"), starting_capital=Decimal("50000"))
    assert first != second
    rows = _rows(market, first)
    assert len(rows["decisions"]) == 51 * 5
    assert rows["trades"], "the baselines trade"
    assert _rows(market, second) == rows
    with market.db.read() as session:
        races = {r.id: r for r in race_rows.all_races(session)}
        live = race_rows.live_id(session)
    assert races[first].kind is RaceKind.BACKTEST and races[first].status == jobs.COMPLETED
    assert races[first].name == "backtest 2024-01-03 02:00..2024-01-05 04:00 every 1h #1"
    assert races[second].name.endswith("#2")
    assert races[first].rules is not None and races[first].rules.fee_rate == Decimal("0.002")
    assert races[first].starting_capital == Decimal("50000")
    assert _rows(market, live or 0) == {"decisions": [], "trades": [], "snapshots": []}
    # Other rules, other rows: the backtest is judged by its own frozen rules.
    third = _backtest(market, fee=Decimal("0.01"), starting_capital=Decimal("50000"))
    assert _rows(market, third)["trades"] != rows["trades"]


def test_llm_agents_are_left_out_unless_asked_and_their_cost_is_estimated(market: App) -> None:
    from race.backtest import NetworkAgentRefused
    from race.backtest_cost import estimate

    seed_agent(market, "Llama", Provider.LLAMA, "llama-3.3-70b-versatile")
    request = BacktestRequest(start=START + 50 * HOUR, end=START + 59 * HOUR)
    plan = plan_backtest(market, request)
    assert "Llama" not in {p.name for p in plan.participants} and len(plan.participants) == 5
    with pytest.raises(NetworkAgentRefused, match="Llama"):
        plan_backtest(market, BacktestRequest(request.start, request.end, agents=("llama",)))
    asked = BacktestRequest(request.start, request.end, agents=("Llama",), include_llm=True)
    cost = estimate(plan_backtest(market, asked), market.settings)
    # Worst case per call: 16,000 prompt characters (4,000 tokens) at 0.59 USD and 500
    # answer tokens at 0.79 USD per million.
    per_call = (Decimal(4000) * Decimal("0.59") + Decimal(500) * Decimal("0.79")) / 10**6
    assert cost.calls == 10
    assert cost.total == per_call * 10
    assert "10 LLM call(s)" in cost.render()[0]


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from race.cli import main

    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def cli_db(sqlite_app: App, monkeypatch: pytest.MonkeyPatch) -> App:
    """A SQLite database with the market, the baselines and a Llama agent, for the CLI."""
    _market(sqlite_app)
    seed_baselines(sqlite_app, ["buy_and_hold", "sma_cross", "random"])
    seed_agent(sqlite_app, "Llama", Provider.LLAMA, "llama-3.3-70b-versatile")
    monkeypatch.setenv("RACE_DATABASE_URL", sqlite_app.settings.database_url)
    return sqlite_app


def test_the_cli_runs_a_backtest_and_prints_the_summary(
    cli_db: App, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["backtest", "--start", "2024-01-03T00:00Z", "--end", "2024-01-04T00:00Z"]
    code, out, err = _cli([*argv, "--fee", "0.002", "--max-position", "0.3"], capsys)
    assert code == 0, err
    assert "race 2: backtest 2024-01-03 00:00..2024-01-04 00:00 every 1h #1" in out
    assert "25 cycle(s); agents: Buy & Hold, SMA Cross 10/30, Random Walker" in out
    header = "#  Agent            Equity (USD)  Return %  Trades  Fallbacks  Max DD %"
    assert header in out, out
    assert "Llama" not in out.split(header)[1]
    with cli_db.db.read() as session:
        race = race_rows.get(session, 2)
    assert race is not None and race.rules is not None
    assert race.rules.fee_rate == Decimal("0.002")
    assert race.rules.max_position_fraction == Decimal("0.3")
    # Resuming a finished backtest does nothing more.
    code, out, err = _cli(["backtest", "--resume", "2"], capsys)
    assert code == 0, err
    assert "25/25 cycles: 0 decisions" in out


def test_the_cli_asks_before_paid_calls(
    cli_db: App, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["backtest", "--start", "2024-01-03T00:00Z", "--end", "2024-01-03T09:00Z"]
    argv += ["--agents", "Llama,Buy & Hold", "--include-llm"]
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, out, err = _cli(argv, capsys)
    assert code == 2
    assert out.startswith("10 LLM call(s) (cycles x network agents); estimated cost at most 0.03")
    assert err == "error: paid LLM calls need confirmation: add --yes (stdin is not a terminal)\n"
    with cli_db.db.read() as session:
        assert len(race_rows.all_races(session)) == 1  # only the live race
    # With --yes it runs: no key configured, so the Llama agent holds (no call is made).
    code, out, err = _cli([*argv, "--yes"], capsys)
    assert code == 0, err
    assert "Llama" in out.split("Max DD %")[1]
    # Resuming it asks again, for the cycles not yet written (none here).
    code, out, err = _cli(["backtest", "--resume", "2"], capsys)
    assert code == 2
    assert "has LLM or remote participants (Llama): resume it with --include-llm" in err
    code, out, err = _cli(["backtest", "--resume", "2", "--include-llm", "--yes"], capsys)
    assert code == 0, err
    assert out.startswith("0 LLM call(s)")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--start", "2024-01-04T00:00Z", "--end", "2024-01-03T00:00Z"], "is before start"),
        (["--start", "2023-01-01T00:00Z", "--end", "2023-01-02T00:00Z"], "no candles stored"),
        (["--agents", "nobody"], "unknown agent 'nobody'"),
        (["--agents", "llama"], "agent(s) Llama call a paid or remote provider (LLM)"),
        (["--fee", "-0.001"], "fee must be ≥ 0"),
        (["--slippage-bps", "-1"], "slippage (bps) must be ≥ 0"),
        (["--starting-capital", "-5"], "starting capital (USD) must be > 0"),
        (["--starting-capital", "0"], "starting capital (USD) must be > 0"),
        (["--max-position", "1.5"], "max position (a fraction of equity) must be > 0 and ≤ 1"),
        (["--end", "2099-01-01T00:00Z"], "is in the future"),
        (["--interval", "10s"], "interval"),
        (["--resume", "nope"], "no race 'nope'"),
        (["--resume", "live"], "race 'live' is a live race, not a backtest"),
        (["--resume", "1", "--fee", "0.1"], "--resume continues a race as created: drop --fee"),
        ([], "--start and --end are required"),
    ],
)
def test_bad_backtests_are_one_line_and_exit_2(
    cli_db: App, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    argv = ["backtest"]
    if extra and extra[0] not in ("--start", "--resume") and "--end" not in extra:
        argv += ["--start", "2024-01-03T00:00Z", "--end", "2024-01-04T00:00Z"]
    elif extra and extra[0] == "--end":
        argv += ["--start", "2024-01-03T00:00Z"]
    code, out, err = _cli([*argv, *extra], capsys)
    assert code == 2, (out, err)
    assert out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    with cli_db.db.read() as session:
        assert [r.kind for r in race_rows.all_races(session)] == [RaceKind.LIVE]
