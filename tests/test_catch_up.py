"""Scheduled runs catch up (issue 6 §3, "the next run completes the missed work"): before
running slot T, ``run_scheduled`` completes unfinished cycles and missed slots among the
RACE_CATCH_UP_SLOTS previous slots, oldest first, each with its own market view."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from sqlalchemy import func, select

from race.bootstrap import bootstrap
from race.domain.agent import AgentAnswer
from race.domain.model import Provider
from race.store.tables import CycleRow, DecisionRow, PortfolioRow
from tests.factories import (
    HOUR,
    insert_candles,
    live_key,
    make_candles,
    seed_agent,
    seed_assets,
    wave_prices,
)
from tests.test_engine import Scripted, app_with

START = datetime(2024, 1, 1, tzinfo=UTC)
T = START + 80 * HOUR
SLOT = timedelta(minutes=15)  # the default decision schedule, 0 */15 * * * *


def seed(application, eth_until=START + 100 * HOUR):
    seed_assets(application)
    insert_candles(application, make_candles("BTC", START, wave_prices(100, base=40000.0)))
    n = int((eth_until - START) / HOUR)
    insert_candles(application, make_candles("ETH", START, wave_prices(n, base=2000.0)))


def holding():
    return Scripted(lambda c: AgentAnswer.hold("watching"))


def decisions_at(application, cycle_time):
    with application.db.read() as session:
        query = select(func.count()).select_from(DecisionRow)
        return session.scalar(query.where(DecisionRow.cycle_time == cycle_time))


def cycle_row(application, cycle_time):
    with application.db.read() as session:
        return session.get(CycleRow, live_key(session, cycle_time))


def test_a_partial_cycle_is_completed_by_the_next_slot_with_its_own_pinned_view(
    database_url, clock
):
    """Agent a ran alone at T (the row is ``partial``: b never got a T decision). The next
    tick, T + 15 min, first completes T for b — with the view a saw, although a late ETH
    candle closing at T landed meanwhile — then runs T + 15 min for both."""
    agents = {"a": holding(), "b": holding()}
    application = app_with(database_url, clock, agents)
    seed(application, eth_until=T)  # ETH's candle closing at T is late
    ids = {name: seed_agent(application, name, Provider.LLAMA, "m") for name in agents}
    asyncio.run(application.engine.run_cycle(T, agent_ids=[ids["a"]]))
    assert cycle_row(application, T).status == "partial"
    insert_candles(application, make_candles("ETH", T, [D("2100")]))

    run = asyncio.run(application.engine.run_scheduled(T + SLOT, trigger="timer"))

    assert [r.cycle_time for r in run.caught_up] == [T]
    assert run.caught_up[0].decided == 1 and run.cycle.decided == 2
    assert [c.cycle_time for c in agents["b"].seen] == [T, T + SLOT]
    a_view, b_view = agents["a"].seen[0].market, agents["b"].seen[0].market
    assert b_view.candles == a_view.candles
    assert b_view.candles["ETH"][-1].close_time == T - HOUR
    # The new slot reads afresh: the late candle is there, and nothing after T + 15 min.
    later = agents["b"].seen[1].market
    assert later.candles["ETH"][-1].close_time == T
    assert all(c.close_time <= T + SLOT for s in later.candles.values() for c in s)
    assert decisions_at(application, T) == 2 and decisions_at(application, T + SLOT) == 2
    row = cycle_row(application, T)
    assert (row.status, row.decisions, row.skipped) == ("completed", 2, 0)
    application.close()


def test_missed_slots_run_oldest_first_within_the_window(database_url, clock):
    spy = holding()
    application = app_with(database_url, clock, {"spy": spy})
    seed(application)
    agent = seed_agent(application, "spy", Provider.LLAMA, "m")
    # A manual cycle is not the schedule: the first scheduled run invents no past cycles.
    asyncio.run(application.engine.run_cycle(T - HOUR))
    first = asyncio.run(application.engine.run_scheduled(T))
    assert first.caught_up == []
    # The host was down for five slots; the next tick catches up the last four of them.
    resumed = T + 6 * SLOT
    run = asyncio.run(application.engine.run_scheduled(resumed))
    behind = [T + k * SLOT for k in (2, 3, 4, 5)]
    assert [r.cycle_time for r in run.caught_up] == behind
    assert [c.cycle_time for c in spy.seen] == [T - HOUR, T, *behind, resumed]
    assert decisions_at(application, T + SLOT) == 0  # outside the window
    for context in spy.seen:  # each at its own time: nothing closed after it
        view = context.market
        assert view.as_of == context.cycle_time
        for series in view.candles.values():
            assert series[-1].close_time == max(
                START + HOUR * k for k in range(100) if START + HOUR * k <= context.cycle_time
            )
    for t in behind:
        row = cycle_row(application, t)
        assert (row.status, row.trigger, row.decisions) == ("completed", "catch-up", 1)
    with application.db.read() as session:
        portfolio = session.scalar(select(PortfolioRow).where(PortfolioRow.agent_id == agent))
    assert (portfolio.version, portfolio.as_of) == (7, resumed)
    # Caught up: the next tick has nothing left to do but its own slot.
    again = asyncio.run(application.engine.run_scheduled(resumed + SLOT))
    assert again.caught_up == [] and again.cycle.decided == 1
    application.close()


def test_an_agent_already_past_a_slot_is_skipped_there(database_url, clock):
    agents = {"a": holding(), "b": holding()}
    application = app_with(database_url, clock, agents)
    seed(application)
    ids = {name: seed_agent(application, name, Provider.LLAMA, "m") for name in agents}
    asyncio.run(application.engine.run_scheduled(T))
    asyncio.run(application.engine.run_cycle(T + SLOT, agent_ids=[ids["a"]]))
    asyncio.run(application.engine.run_cycle(T + 2 * SLOT, agent_ids=[ids["b"]]))
    run = asyncio.run(application.engine.run_scheduled(T + 3 * SLOT))
    # T + 15 is completed for a only; b is already at T + 30 and is skipped there.
    assert [r.cycle_time for r in run.caught_up] == [T + SLOT, T + 2 * SLOT]
    first, second = run.caught_up
    assert first.decided == 0 and "portfolio already at" in first.skipped[ids["b"]]
    assert second.decided == 1 and second.skipped == {ids["b"]: "already decided for this cycle"}
    assert [c.cycle_time for c in agents["b"].seen] == [T, T + 2 * SLOT, T + 3 * SLOT]
    assert cycle_row(application, T + SLOT).status == "completed"
    assert cycle_row(application, T + 2 * SLOT).status == "completed"
    application.close()


def test_catch_up_off(database_url, clock):
    agents = {"a": holding(), "b": holding()}
    application = app_with(database_url, clock, agents, RACE_CATCH_UP_SLOTS="0")
    seed(application)
    ids = {name: seed_agent(application, name, Provider.LLAMA, "m") for name in agents}
    asyncio.run(application.engine.run_cycle(T, agent_ids=[ids["a"]]))
    run = asyncio.run(application.engine.run_scheduled(T + SLOT))
    assert run.caught_up == []
    assert cycle_row(application, T).status == "partial"
    assert decisions_at(application, T) == 1
    application.close()


def test_two_timers_catching_up_at_once_decide_once(database_url, clock):
    """Four runtimes fire the same tick together; each catches up the cut cycle: still one
    decision per agent and slot."""
    setup = app_with(database_url, clock, {})
    seed(setup)
    ids = [seed_agent(setup, f"cash-{i}", Provider.MOCK, "cash") for i in range(3)]
    ids.append(seed_agent(setup, "bh", Provider.MOCK, "buy_and_hold"))
    asyncio.run(setup.engine.run_cycle(T, agent_ids=ids[:1]))
    runtimes = [
        bootstrap(overrides={"RACE_DATABASE_URL": database_url}, clock=clock) for _ in range(4)
    ]
    barrier = threading.Barrier(len(runtimes))
    runs = []

    def tick(runtime):
        barrier.wait()
        runs.append(asyncio.run(runtime.engine.run_scheduled(T + SLOT, trigger="timer")))

    threads = [threading.Thread(target=tick, args=(r,)) for r in runtimes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for runtime in runtimes:
        runtime.close()
    assert len(runs) == 4
    assert sum(r.caught_up[0].decided for r in runs if r.caught_up) == 3
    assert sum(r.cycle.decided for r in runs) == 4
    assert decisions_at(setup, T) == 4 and decisions_at(setup, T + SLOT) == 4
    with setup.db.read() as session:
        assert session.scalars(select(PortfolioRow.version)).all() == [2] * 4
    assert cycle_row(setup, T).status == "completed"
    setup.close()


def test_serve_scheduler_cycle_job_catches_up_too(database_url, clock):
    from race.scheduler import race_jobs

    agents = {"a": holding(), "b": holding()}
    application = app_with(database_url, clock, agents)
    seed(application)
    ids = {name: seed_agent(application, name, Provider.LLAMA, "m") for name in agents}
    asyncio.run(application.engine.run_cycle(T, agent_ids=[ids["a"]]))
    (job,) = [j for j in race_jobs(application) if j.name == "run_cycle"]
    asyncio.run(job.work(T + SLOT))
    assert decisions_at(application, T) == 2
    assert decisions_at(application, T + SLOT) == 2
    application.close()


def test_an_agent_that_joined_after_a_missed_slot_gets_no_backdated_decision(database_url, clock):
    agents = {"veteran": holding(), "newcomer": holding()}
    application = app_with(database_url, clock, agents)
    seed(application)
    clock.advance((T - clock.now()).total_seconds())
    seed_agent(application, "veteran", Provider.LLAMA, "m")
    asyncio.run(application.engine.run_scheduled(T))
    # The host was down for T + 15 min; the newcomer joined at T + 20 min.
    clock.advance((SLOT + timedelta(minutes=5)).total_seconds())
    newcomer = seed_agent(application, "newcomer", Provider.LLAMA, "m")
    run = asyncio.run(application.engine.run_scheduled(T + 2 * SLOT))
    (missed,) = run.caught_up
    assert missed.cycle_time == T + SLOT
    assert missed.skipped == {newcomer: "agent joined after this cycle"}
    assert [c.cycle_time for c in agents["newcomer"].seen] == [T + 2 * SLOT]
    assert [c.cycle_time for c in agents["veteran"].seen] == [T, T + SLOT, T + 2 * SLOT]
    assert cycle_row(application, T + SLOT).status == "completed"
    application.close()
