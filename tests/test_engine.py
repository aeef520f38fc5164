"""The engine: exactly once, same view, no look-ahead, HOLD fallbacks, replay determinism."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest
from sqlalchemy import func, select

from agents.registry import AgentServices, build_agent
from race.bootstrap import bootstrap
from race.domain.agent import AgentAnswer, AgentContext
from race.domain.model import Provider
from race.store.tables import (
    AgentStatsRow,
    CycleRow,
    DecisionRow,
    EquitySnapshotRow,
    JobRow,
    PortfolioRow,
    PositionRow,
    TradeRow,
)
from tests.digest import digest, table_rows
from tests.factories import (
    HOUR,
    insert_candles,
    live_key,
    make_candles,
    seed_agent,
    seed_assets,
    seed_baselines,
    wave_prices,
)
from tests.waiting import wait_until, wait_until_async

START = datetime(2024, 1, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent


def seed_market(app, n=200):
    seed_assets(app)
    insert_candles(app, make_candles("BTC", START, wave_prices(n, base=40000.0)))
    insert_candles(app, make_candles("ETH", START, wave_prices(n, base=2000.0, period=25)))


def count(app, table, *where):
    with app.db.read() as session:
        return session.scalar(select(func.count()).select_from(table).where(*where))


class Scripted:
    """A test agent: answers from a function of the context, remembers what it saw."""

    def __init__(self, fn, in_process=False):
        self.fn = fn
        self.seen: list[AgentContext] = []
        self.in_process = in_process

    async def decide(self, context):
        self.seen.append(context)
        result = self.fn(context)
        if asyncio.iscoroutine(result):
            result = await result
        return result


def app_with(database_url, clock, scripted: dict[str, Scripted], **overrides):
    """An app whose agents named in ``scripted`` are test agents; others are built normally."""
    settings_overrides = {"RACE_DATABASE_URL": database_url, **overrides}
    holder = {}

    def builder(spec):
        if spec.name in scripted:
            return scripted[spec.name]
        return build_agent(spec, holder["services"])

    application = bootstrap(overrides=settings_overrides, clock=clock, agent_builder=builder)
    holder["services"] = AgentServices(settings=application.settings, clock=clock)
    return application


# ------------------------------------------------------------------ exactly once


def test_same_cycle_twice_leaves_one_decision_per_agent(app):
    seed_market(app)
    agents = seed_baselines(app)
    cycle_time = START + 120 * HOUR
    first = asyncio.run(app.engine.run_cycle(cycle_time))
    second = asyncio.run(app.engine.run_cycle(cycle_time))
    assert first.decided == len(agents)
    assert second.decided == 0
    assert set(second.skipped) == set(agents.values())
    assert count(app, DecisionRow) == len(agents)
    with app.db.read() as session:
        cycle = session.get(CycleRow, live_key(session, cycle_time))
    assert cycle.status == "completed"
    assert cycle.decisions == len(agents)
    assert cycle.trades == count(app, TradeRow)


def test_same_cycle_from_threads_at_once(app, database_url, clock):
    seed_market(app)
    agents = seed_baselines(app)
    cycle_time = START + 130 * HOUR
    apps = [bootstrap(overrides={"RACE_DATABASE_URL": database_url}, clock=clock) for _ in range(4)]
    barrier = threading.Barrier(len(apps))
    reports = []

    def worker(application):
        barrier.wait()
        reports.append(asyncio.run(application.engine.run_cycle(cycle_time)))

    threads = [threading.Thread(target=worker, args=(a,)) for a in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for application in apps:
        application.close()
    assert sum(r.decided for r in reports) == len(agents)
    assert count(app, DecisionRow) == len(agents)
    assert count(app, EquitySnapshotRow) == len(agents)
    # Portfolios match the one decision each agent has.
    with app.db.read() as session:
        for agent_id in agents.values():
            portfolio = session.scalar(
                select(PortfolioRow).where(PortfolioRow.agent_id == agent_id)
            )
            decision = session.scalar(select(DecisionRow).where(DecisionRow.agent_id == agent_id))
            snapshot = session.scalar(
                select(EquitySnapshotRow).where(EquitySnapshotRow.agent_id == agent_id)
            )
            assert portfolio.version == 1
            assert portfolio.as_of == cycle_time
            assert snapshot.cash_value == portfolio.cash
            assert decision.value_after == snapshot.total_value


def run_processes_at_once(database_url, cycle_time, barrier_dir, n=8, scheduled=False):
    """``n`` driver processes (tests/cycle_driver.py) that start the cycle together: each
    warms up, says it is ready, and waits for the go file. Returns their JSON reports."""
    barrier_dir.mkdir()
    env = {**os.environ, "RACE_DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(ROOT / "tests" / "cycle_driver.py"), database_url]
    command += [cycle_time.isoformat(), str(barrier_dir)] + (["--scheduled"] if scheduled else [])
    processes = [
        subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(n)
    ]
    try:

        def ready() -> bool:
            assert all(p.poll() is None for p in processes), "a driver died before the barrier"
            return len(list(barrier_dir.glob("ready-*"))) >= n

        wait_until(ready, "the drivers to get ready", limit_s=120)
        (barrier_dir / "go").touch()
        outputs = [p.communicate(timeout=180) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()
    return [json.loads(out) for out, _ in outputs]


def assert_portfolios_match_their_trades(application):
    """Cash and positions of every portfolio equal what its trades imply, and its last
    equity snapshot agrees with it."""
    with application.db.read() as session:
        for portfolio in session.scalars(select(PortfolioRow)):
            cash = portfolio.starting_capital
            held: dict[int, D] = {}
            for trade in session.scalars(
                select(TradeRow).where(TradeRow.agent_id == portfolio.agent_id)
            ):
                sign = 1 if trade.side == "BUY" else -1
                cash -= sign * trade.notional + trade.fee
                held[trade.asset_id] = held.get(trade.asset_id, D(0)) + sign * trade.quantity
            positions = {
                p.asset_id: p.quantity
                for p in session.scalars(
                    select(PositionRow).where(PositionRow.portfolio_id == portfolio.id)
                )
            }
            assert portfolio.cash == cash, portfolio.agent_id
            assert positions == {a: q for a, q in held.items() if q != 0}, portfolio.agent_id
            last = session.scalar(
                select(EquitySnapshotRow)
                .where(EquitySnapshotRow.agent_id == portfolio.agent_id)
                .order_by(EquitySnapshotRow.captured_at.desc())
                .limit(1)
            )
            assert last.cash_value == portfolio.cash


def test_same_cycle_from_eight_processes_at_once(app, database_url, tmp_path):
    seed_market(app)
    agents = seed_baselines(app)
    cycle_time = START + 140 * HOUR
    reports = run_processes_at_once(database_url, cycle_time, tmp_path / "barrier")
    assert sum(r["decided"] for r in reports) == len(agents)
    for report in reports:
        assert report["decided"] + len(report["skipped"]) == len(agents)
        assert not report["errors"]
    assert count(app, DecisionRow) == len(agents)
    assert count(app, EquitySnapshotRow) == len(agents)
    assert count(app, TradeRow) > 0, "the cycle should trade (buy_and_hold buys at once)"
    with app.db.read() as session:
        versions = session.scalars(select(PortfolioRow.version)).all()
    assert versions == [1] * len(agents)
    assert_portfolios_match_their_trades(app)
    # Started together, more than one process got past the read-time check: the write-time
    # guards (version compare-and-set, unique key) are what kept it to one decision.
    raced = [r for r in reports if any("duplicate run" in why for why in r["skipped"].values())]
    assert raced, [r["skipped"] for r in reports]


def test_agent_already_past_t_is_skipped(app):
    seed_market(app)
    seed_baselines(app, ["cash"])
    asyncio.run(app.engine.run_cycle(START + 150 * HOUR))
    earlier = asyncio.run(app.engine.run_cycle(START + 140 * HOUR))
    assert earlier.decided == 0
    assert "portfolio already at" in next(iter(earlier.skipped.values()))


# ------------------------------------------------------------------ same view, no look-ahead


def test_every_agent_sees_the_same_view_and_nothing_after_t(database_url, clock):
    spies = {
        "spy-a": Scripted(lambda c: AgentAnswer.hold("watching")),
        "spy-b": Scripted(lambda c: AgentAnswer.hold("watching")),
    }
    application = app_with(database_url, clock, spies)
    seed_market(application, n=100)
    for name in spies:
        seed_agent(application, name, Provider.MOCK, "cash")
    cycle_time = START + 60 * HOUR
    # A planted candle after T with an absurd price must never reach an agent or a price.
    insert_candles(application, make_candles("BTC", START + 200 * HOUR, [D("999999")]))
    asyncio.run(application.engine.run_cycle(cycle_time))
    views = [spy.seen[0].market for spy in spies.values()]
    assert views[0] is views[1]
    for symbol, series in views[0].candles.items():
        assert len(series) == 50
        assert all(c.close_time <= cycle_time for c in series), symbol
        assert series[-1].close_time == cycle_time
    assert views[0].prices["BTC"] != D("999999")
    application.close()


def _decision_views(application, cycle_time):
    with application.db.read() as session:
        rows = session.scalars(
            select(DecisionRow).where(DecisionRow.cycle_time == cycle_time).order_by(DecisionRow.id)
        ).all()
    return [(r.market_conditions, r.regime) for r in rows]


def test_a_cycle_run_in_parts_keeps_one_view_despite_a_late_candle(database_url, clock):
    """run_cycle(T) for agent a; ETH's candle closing at T lands late; run_cycle(T) for the
    rest, then from another runtime (process) for a third agent: every agent of T sees the
    view a saw, candle for candle, and their decisions record the same market."""
    spies = {name: Scripted(lambda c: AgentAnswer.hold("watching")) for name in "abc"}
    application = app_with(database_url, clock, spies)
    seed_assets(application)
    cycle_time = START + 80 * HOUR
    insert_candles(application, make_candles("BTC", START, wave_prices(100, base=40000.0)))
    insert_candles(application, make_candles("ETH", START, wave_prices(80, base=2000.0)))
    ids = {name: seed_agent(application, name, Provider.LLAMA, "m") for name in "ab"}
    asyncio.run(application.engine.run_cycle(cycle_time, agent_ids=[ids["a"]]))
    insert_candles(application, make_candles("ETH", cycle_time, [D("2100")]))
    ids["c"] = seed_agent(application, "c", Provider.LLAMA, "m")
    report = asyncio.run(application.engine.run_cycle(cycle_time, agent_ids=[ids["b"]]))
    assert report.decided == 1
    other = app_with(database_url, clock, spies)
    assert asyncio.run(other.engine.run_cycle(cycle_time)).decided == 1  # c
    other.close()
    views = [spies[name].seen[0].market for name in "abc"]
    assert views[0].candles["ETH"][-1].close_time == cycle_time - HOUR
    assert views[1].candles == views[0].candles and views[2].candles == views[0].candles
    assert views[1].prices == views[0].prices == views[2].prices
    stored = _decision_views(application, cycle_time)
    assert len(stored) == 3 and stored[1] == stored[0] and stored[2] == stored[0]
    # The next cycle reads afresh and sees the late candle.
    asyncio.run(application.engine.run_cycle(cycle_time + HOUR))
    assert spies["a"].seen[1].market.candles["ETH"][-1].close_time == cycle_time
    application.close()


def test_a_run_that_loses_the_pin_race_takes_the_winners_view(database_url, clock):
    """Runtime A reads its view; before A records it, a late candle lands and runtime B
    runs the same cycle and pins its (newer) view: A's agent gets B's view, not its own."""
    from sqlalchemy import event

    spies = {name: Scripted(lambda c: AgentAnswer.hold("watching")) for name in "ab"}
    first = app_with(database_url, clock, spies)
    second = app_with(database_url, clock, spies)
    seed_assets(first)
    cycle_time = START + 80 * HOUR
    insert_candles(first, make_candles("BTC", START, wave_prices(100, base=40000.0)))
    insert_candles(first, make_candles("ETH", START, wave_prices(80, base=2000.0)))
    ids = {name: seed_agent(first, name, Provider.LLAMA, "m") for name in "ab"}
    candle_reads = []

    def after(conn, cursor, statement, params, context, executemany):
        if "FROM candles" in statement:
            candle_reads.append(statement)
            if len(candle_reads) == 2:  # A has read BTC and ETH, and not pinned yet
                insert_candles(second, make_candles("ETH", cycle_time, [D("2100")]))
                worker = threading.Thread(
                    target=asyncio.run,
                    args=(second.engine.run_cycle(cycle_time, agent_ids=[ids["b"]]),),
                )
                worker.start()
                worker.join()

    event.listen(first.db.engine, "after_cursor_execute", after)
    try:
        asyncio.run(first.engine.run_cycle(cycle_time, agent_ids=[ids["a"]]))
    finally:
        event.remove(first.db.engine, "after_cursor_execute", after)
    seen_a, seen_b = spies["a"].seen[0].market, spies["b"].seen[0].market
    assert seen_b.candles["ETH"][-1].close_time == cycle_time
    assert seen_a.candles == seen_b.candles
    stored = _decision_views(first, cycle_time)
    assert len(stored) == 2 and stored[0] == stored[1]
    first.close()
    second.close()


def test_trades_execute_at_the_price_at_t_even_with_later_candles(database_url, clock):
    buyer = Scripted(
        lambda c: AgentAnswer(
            orders=[{"asset": "ETH", "side": "BUY", "quantity": 1}], reasoning="buy one"
        )
    )
    application = app_with(database_url, clock, {"buyer": buyer})
    seed_market(application, n=100)
    seed_agent(application, "buyer")
    cycle_time = START + 70 * HOUR
    insert_candles(application, make_candles("ETH", START + 300 * HOUR, [D("123456")]))
    asyncio.run(application.engine.run_cycle(cycle_time))
    expected = buyer.seen[0].market.candles["ETH"][-1].close
    with application.db.read() as session:
        trade = session.scalar(select(TradeRow))
    assert trade.reference_price == expected
    assert trade.price == (expected * D("1.0005")).quantize(D("0.00000001"))
    application.close()


# ------------------------------------------------------------------ HOLD fallbacks


def test_failures_become_recorded_holds_and_the_cycle_completes(database_url, clock):
    async def slow(_):
        await asyncio.sleep(5)
        return AgentAnswer.hold("too late")

    def boom(_):
        raise RuntimeError("provider exploded")

    scripted = {
        "raises": Scripted(boom),
        "slow": Scripted(slow),
        "garbage": Scripted(lambda c: {"orders": "all in"}),
        "bad-orders": Scripted(
            lambda c: AgentAnswer(
                orders=[
                    {"asset": "DOGE", "side": "BUY", "quantity": 1},
                    {"asset": "ETH", "side": "HODL", "quantity": 1},
                    {"asset": "ETH", "side": "BUY", "quantity": "NaN"},
                    {"asset": "ETH", "side": "BUY", "quantity": -3},
                    {"asset": "ETH", "side": "SELL", "quantity": 1},
                    {"asset": "ETH", "side": "BUY", "quantity": 1},
                ],
                reasoning="mixed bag",
            )
        ),
        "self-fallback": Scripted(lambda c: AgentAnswer.fallback("budget exhausted")),
    }
    application = app_with(database_url, clock, scripted, RACE_AGENT_TIMEOUT_SECONDS="0.3")
    seed_market(application, n=100)
    ids = {name: seed_agent(application, name) for name in scripted}
    ids["broken-config"] = seed_agent(application, "broken-config", Provider.MOCK, "no_such")
    ids["cash"] = seed_agent(application, "cash", Provider.MOCK, "cash")
    report = asyncio.run(application.engine.run_cycle(START + 80 * HOUR))
    assert report.status == "completed"
    assert report.decided == len(ids)
    with application.db.read() as session:
        rows = {r.agent_id: r for r in session.scalars(select(DecisionRow))}
    by_name = {name: rows[agent_id] for name, agent_id in ids.items()}
    assert "RuntimeError: provider exploded" in by_name["raises"].fallback_reason
    assert "timed out" in by_name["slow"].fallback_reason
    assert "not an AgentAnswer" in by_name["garbage"].fallback_reason
    assert by_name["self-fallback"].fallback_reason == "budget exhausted"
    assert "cannot be built" in by_name["broken-config"].fallback_reason
    for name in ("raises", "slow", "garbage", "self-fallback", "broken-config"):
        row = by_name[name]
        assert row.fallback is True
        assert row.action == "HOLD"
        assert row.rationale.startswith("HOLD (fallback)")
        assert row.was_validated is False
    mixed = by_name["bad-orders"]
    assert mixed.fallback is False
    assert mixed.action == "BUY" and mixed.asset_symbol == "ETH" and mixed.quantity == D(1)
    assert [e["code"] for e in mixed.validation_errors] == [
        "unknown_asset",
        "bad_side",
        "bad_quantity",
        "non_positive_quantity",
        "no_position",
    ]
    assert mixed.was_validated is False
    assert by_name["cash"].fallback is False and by_name["cash"].was_validated is True
    application.close()


def test_answers_are_audited(database_url, clock):
    answer = AgentAnswer(
        orders=[{"asset": "BTC", "side": "BUY", "quantity": D("0.1")}],
        reasoning="momentum",
        cited_rules=["R1", "R2"],
        raw_output='{"x": 1}',
        prompt="the prompt",
        model="llama-x",
        latency_ms=321,
        prompt_tokens=900,
        completion_tokens=80,
        cost_usd=D("0.00123"),
        regime="BULLISH",
        confidence=0.7,
        details={"votes": [1, 2]},
    )
    application = app_with(database_url, clock, {"llm": Scripted(lambda c: answer)})
    seed_market(application, n=100)
    seed_agent(application, "llm", Provider.LLAMA, "llama-x")
    asyncio.run(application.engine.run_cycle(START + 90 * HOUR))
    with application.db.read() as session:
        row = session.scalar(select(DecisionRow))
        trade = session.scalar(select(TradeRow))
    assert (row.raw_output, row.prompt, row.model) == ('{"x": 1}', "the prompt", "llama-x")
    assert (row.latency_ms, row.prompt_tokens, row.completion_tokens) == (321, 900, 80)
    assert row.cost_usd == D("0.00123")
    assert row.cited_rules == ["R1", "R2"]
    assert row.regime == "BULLISH"
    assert row.details == {"votes": [1, 2]}
    assert row.proposed_orders == [{"asset": "BTC", "side": "BUY", "quantity": "0.1"}]
    assert row.market_conditions["prices"]["BTC"]
    assert trade.decision_id == row.id
    assert row.value_before - row.value_after == trade.fee + trade.slippage_cost
    application.close()


def test_spent_today_is_given_to_agents_and_resets_at_midnight(database_url, clock):
    spender = Scripted(lambda c: AgentAnswer.hold("thinking", cost_usd=D("0.25")))
    application = app_with(database_url, clock, {"spender": spender})
    seed_market(application, n=100)
    seed_agent(application, "spender", Provider.LLAMA, "m")
    day2 = START + 48 * HOUR
    for t in (day2 - 2 * HOUR, day2 - HOUR, day2, day2 + HOUR):
        asyncio.run(application.engine.run_cycle(t))
    assert [c.spent_today_usd for c in spender.seen] == [D(0), D("0.25"), D(0), D("0.25")]
    application.close()


# ------------------------------------------------------------------ snapshots


def test_snapshot_marks_to_market_once(app):
    seed_market(app)
    seed_baselines(app, ["buy_and_hold", "cash"])
    asyncio.run(app.engine.run_cycle(START + 100 * HOUR))
    assert app.engine.snapshot(START + 101 * HOUR) == 2
    assert app.engine.snapshot(START + 101 * HOUR) == 0
    assert app.engine.snapshot(START + 99 * HOUR) == 0  # before the portfolios' last step
    assert count(app, EquitySnapshotRow) == 4
    with app.db.read() as session:
        marks = session.scalars(
            select(EquitySnapshotRow).where(EquitySnapshotRow.source == "mark")
        ).all()
    for mark in marks:
        assert mark.total_value == mark.cash_value + mark.positions_value


# ------------------------------------------------------------------ backfill


def test_backfill_replays_every_time_and_resumes(app):
    seed_market(app)
    agents = seed_baselines(app)
    start, end = START + 60 * HOUR, START + 150 * HOUR
    report = asyncio.run(app.engine.backfill(start, end, HOUR))
    assert report.finished and report.total_cycles == 91
    assert report.decisions == 91 * len(agents)
    assert count(app, DecisionRow) == 91 * len(agents)
    again = asyncio.run(app.engine.backfill(start, end, HOUR))
    assert again.decisions == 0 and again.finished
    with app.db.read() as session:
        job = session.scalar(select(JobRow))
        cycles = session.scalar(select(func.count()).select_from(CycleRow))
    assert (job.status, job.done, job.total) == ("completed", 91, 91)
    assert cycles == 91


def _fresh_app(tmp_path: Path, name: str, sqlite_template, clock):
    import shutil

    target = tmp_path / name
    shutil.copy(sqlite_template, target)
    application = bootstrap(overrides={"RACE_DATABASE_URL": f"sqlite:///{target}"}, clock=clock)
    seed_market(application)
    seed_baselines(application)
    return application


def test_replays_are_identical_row_for_row(tmp_path, sqlite_template, clock):
    first = _fresh_app(tmp_path, "a.db", sqlite_template, clock)
    second = _fresh_app(tmp_path, "b.db", sqlite_template, clock)
    for application in (first, second):
        asyncio.run(application.engine.backfill(START + 55 * HOUR, START + 190 * HOUR, HOUR))
    assert table_rows(first.db)["trades"], "the replay should trade"
    assert digest(first.db) == digest(second.db)


def test_interrupted_backfill_resumes_to_the_same_rows(tmp_path, sqlite_template, clock):
    whole = _fresh_app(tmp_path, "whole.db", sqlite_template, clock)
    asyncio.run(whole.engine.backfill(START + 55 * HOUR, START + 190 * HOUR, HOUR))
    broken = _fresh_app(tmp_path, "broken.db", sqlite_template, clock)

    class Stop(Exception):
        pass

    calls = []

    def interrupt(done, total):
        calls.append(done)
        if len(calls) == 3:
            raise Stop

    with pytest.raises(Stop):
        asyncio.run(
            broken.engine.backfill(
                START + 55 * HOUR, START + 190 * HOUR, HOUR, on_progress=interrupt, chunk_cycles=17
            )
        )
    assert 0 < count(broken, DecisionRow) < count(whole, DecisionRow)
    resumed = asyncio.run(
        broken.engine.backfill(START + 55 * HOUR, START + 190 * HOUR, HOUR, chunk_cycles=29)
    )
    assert resumed.finished
    assert digest(broken.db) == digest(whole.db)


def test_backfill_and_live_cycles_write_the_same_rows(tmp_path, sqlite_template, clock):
    replayed = _fresh_app(tmp_path, "replay.db", sqlite_template, clock)
    live = _fresh_app(tmp_path, "live.db", sqlite_template, clock)
    start, end = START + 60 * HOUR, START + 100 * HOUR
    asyncio.run(replayed.engine.backfill(start, end, HOUR))
    t = start
    while t <= end:
        asyncio.run(live.engine.run_cycle(t))
        t += HOUR
    assert digest(replayed.db) == digest(live.db)


def test_backfill_range_validation(app):
    with pytest.raises(ValueError, match="before start"):
        asyncio.run(app.engine.backfill(START + HOUR, START, HOUR))


def test_backfill_with_io_agents_runs_them_concurrently(database_url, clock):
    """Each agent of a cycle answers only once all six are asking at the same time: run one
    after the other, the first would wait in vain and its step would be a fallback HOLD."""
    asking: dict[datetime, int] = {}

    async def think(context):
        asking[context.cycle_time] = asking.get(context.cycle_time, 0) + 1
        await wait_until_async(
            lambda: asking[context.cycle_time] == 6,
            lambda: f"six agents asking at once (only {asking[context.cycle_time]})",
            limit_s=10,
        )
        return AgentAnswer.hold("thought")

    scripted = {f"llm-{i}": Scripted(think) for i in range(6)}
    application = app_with(database_url, clock, scripted)
    seed_market(application, n=100)
    for name in scripted:
        seed_agent(application, name, Provider.LLAMA, "m")
    report = asyncio.run(application.engine.backfill(START + 60 * HOUR, START + 63 * HOUR, HOUR))
    assert report.decisions == 4 * 6
    assert set(asking.values()) == {6}
    with application.db.read() as session:
        decisions = session.scalars(select(DecisionRow)).all()
    assert len(decisions) == 4 * 6
    assert not [d.fallback_reason for d in decisions if d.fallback]
    application.close()


def test_a_decision_replaces_a_mark_taken_at_the_same_time(app):
    seed_market(app)
    agents = seed_baselines(app, ["buy_and_hold"])
    t = START + 100 * HOUR
    asyncio.run(app.engine.run_cycle(t - HOUR))
    assert app.engine.snapshot(t) == 1
    report = asyncio.run(app.engine.run_cycle(t))
    assert report.decided == 1
    with app.db.read() as session:
        rows = session.scalars(
            select(EquitySnapshotRow).where(EquitySnapshotRow.captured_at == t)
        ).all()
        decision = session.scalar(select(DecisionRow).where(DecisionRow.cycle_time == t))
        stats = session.get(AgentStatsRow, live_key(session, agents["buy_and_hold"]))
    assert [r.source for r in rows] == ["cycle"]
    assert rows[0].total_value == decision.value_after
    assert stats.snapshot_count == 2
    assert stats.current_value == decision.value_after


def test_timestamps_are_utc_aware_on_read(app):
    seed_market(app)
    seed_baselines(app, ["cash"])
    asyncio.run(app.engine.run_cycle(START + timedelta(hours=100)))
    with app.db.read() as session:
        row = session.scalar(select(DecisionRow))
    assert row.cycle_time.tzinfo is not None
    assert row.cycle_time == START + timedelta(hours=100)


# ------------------------------------------------------------------ fallback rate guard


def test_a_mostly_failing_agent_is_flagged_degraded_and_logged_once(database_url, clock, caplog):
    import logging

    from race.leaderboard import standings

    outcomes = iter([False] * 4 + [True] * 12 + [False] * 30)

    def flaky(_):
        if next(outcomes):
            raise RuntimeError("503 from provider")
        return AgentAnswer.hold("fine")

    application = app_with(
        database_url,
        clock,
        {"flaky": Scripted(flaky)},
        RACE_DEGRADED_WINDOW="10",
        RACE_DEGRADED_THRESHOLD="0.5",
    )
    seed_market(application, n=120)
    agent_id = seed_agent(application, "flaky", Provider.LLAMA, "m")
    flags = []
    with caplog.at_level(logging.INFO, logger="race.engine"):
        for hour in range(60, 106):
            asyncio.run(application.engine.run_cycle(START + hour * HOUR))
            with application.db.read() as session:
                flags.append(next(s for s in standings(session) if s.agent_id == agent_id).degraded)
    # 4 good, then failures: judged only on a full window of 10, the rate is 6 of 10 at the
    # 10th decision (5 of 9 before it is not judged) and falls back under once enough good
    # decisions follow.
    assert flags.index(True) == 9
    assert flags[-1] is False
    warnings = [r for r in caplog.records if "is degraded" in r.getMessage()]
    recoveries = [r for r in caplog.records if "recovered" in r.getMessage()]
    assert len(warnings) == 1
    assert len(recoveries) == 1
    application.close()


def test_the_guard_judges_only_a_full_window_with_the_default_settings():
    from race.settings import load_settings
    from race.store.repository import FALLBACK_HISTORY, HealthPolicy

    settings = load_settings()
    policy = HealthPolicy(settings.degraded_window, settings.degraded_threshold)
    assert (policy.window, policy.threshold) == (20, 0.5)
    assert not policy.degraded("")
    assert not policy.degraded("1" * 19)  # 19 fallbacks in a row: not a full window yet
    assert policy.degraded("1" * 20)
    assert not policy.degraded("0" * 10 + "1" * 10)  # 50 % is not more than 50 %
    assert policy.degraded("0" * 9 + "1" * 11)
    assert not policy.degraded("1" * 30 + "0" * 10 + "1" * 10)  # only the last 20 count
    assert not HealthPolicy(window=0).degraded("1" * FALLBACK_HISTORY)  # 0 = off
    with pytest.raises(ValueError, match=r"between 0 \(off\) and 100"):
        HealthPolicy(window=FALLBACK_HISTORY + 1)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RACE_DEGRADED_WINDOW", "101"),
        ("RACE_DEGRADED_WINDOW", "-1"),
        ("RACE_DEGRADED_THRESHOLD", "1.5"),
    ],
)
def test_a_degraded_window_beyond_the_stored_history_is_a_settings_error(name, value):
    from race.settings import load_settings

    with pytest.raises(ValueError, match=f"{name} must be"):
        load_settings({name: value})


def test_an_always_failing_agent_is_flagged_at_its_twentieth_decision(database_url, clock, caplog):
    import logging

    from race.leaderboard import standings

    def down(_):
        raise RuntimeError("503 from provider")

    application = app_with(database_url, clock, {"down": Scripted(down)})
    seed_market(application, n=100)
    agent_id = seed_agent(application, "down", Provider.LLAMA, "m")
    flags = []
    with caplog.at_level(logging.WARNING, logger="race.engine"):
        for hour in range(60, 81):
            asyncio.run(application.engine.run_cycle(START + hour * HOUR))
            with application.db.read() as session:
                flags.append(next(s for s in standings(session) if s.agent_id == agent_id).degraded)
    assert flags == [False] * 19 + [True, True]
    assert len([r for r in caplog.records if "is degraded" in r.getMessage()]) == 1
    application.close()
