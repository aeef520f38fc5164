"""Per-agent isolation at the store (issue 10): a step the database refuses is that agent's
recorded HOLD ("could not store the answer: …"), written in a transaction of its own, and
the cycle completes for everyone; a backfill chunk with such an agent writes everyone
else's steps; a slot that keeps failing is given up after ``MAX_CYCLE_ATTEMPTS`` runs, and
catch-up never keeps the current slot from running. SQLite and PostgreSQL.

The sanitiser normally keeps every such value out (see test_hostile_answers); here it is
switched off so a value reaches the database and is refused there: a token count beyond
64 bits (SQLite: OverflowError binding it; PostgreSQL: bigint out of range)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

import race.engine as engine_module
import race.usecases.deciding as deciding_module
from race.domain.agent import AgentAnswer
from race.domain.model import Provider
from race.store.database import DatabaseError
from race.store.tables import CycleRow, DecisionRow
from tests.factories import HOUR, live_key, seed_agent
from tests.test_engine import Scripted, app_with, seed_market

START = datetime(2024, 1, 1, tzinfo=UTC)
T = START + 80 * HOUR
SLOT = timedelta(minutes=15)
BUY = {"asset": "ETH", "side": "BUY", "quantity": 1}


@pytest.fixture
def unsanitised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deciding_module, "sanitize_decision", lambda decision: decision)


def poison(_context: object) -> AgentAnswer:
    return AgentAnswer(orders=[BUY], reasoning="poison", prompt_tokens=10**20)


def fine(_context: object) -> AgentAnswer:
    return AgentAnswer(orders=[BUY], reasoning="fine")


def rows(application) -> list[DecisionRow]:
    with application.db.read() as session:
        found = list(session.scalars(select(DecisionRow).order_by(DecisionRow.cycle_time)))
        session.expunge_all()
        return found


def test_an_unstorable_step_is_that_agents_recorded_hold(database_url, clock, unsanitised):
    scripted = {"poison": Scripted(poison), "fine": Scripted(fine)}
    application = app_with(database_url, clock, scripted)
    seed_market(application, n=100)
    ids = {name: seed_agent(application, name, Provider.LLAMA, "m") for name in scripted}
    ids["cash"] = seed_agent(application, "cash", Provider.MOCK, "cash")

    report = asyncio.run(application.engine.run_cycle(T))

    assert report.status == "completed" and report.decided == 3, report
    by_agent = {r.agent_id: r for r in rows(application)}
    held = by_agent[ids["poison"]]
    assert held.fallback and held.action == "HOLD"
    assert held.fallback_reason.startswith("could not store the answer: ")
    assert held.prompt_tokens is None
    assert by_agent[ids["fine"]].action == "BUY"
    assert by_agent[ids["cash"]].fallback is False
    with application.db.read() as session:
        row = session.get(CycleRow, live_key(session, T))
    assert row.status == "completed" and row.decisions == 3 and row.attempts == 1
    application.close()


def test_a_backfill_chunk_with_a_poisoned_agent_writes_everyone_else(
    database_url, clock, unsanitised
):
    scripted = {"poison": Scripted(poison, in_process=True), "fine": Scripted(fine)}
    application = app_with(database_url, clock, scripted)
    seed_market(application, n=100)
    ids = {name: seed_agent(application, name, Provider.LLAMA, "m") for name in scripted}

    report = asyncio.run(application.engine.backfill(T, T + 4 * HOUR, HOUR, chunk_cycles=3))

    assert report.finished and report.done_cycles == 5
    assert report.decisions == 10
    stored = rows(application)
    poisoned = [r for r in stored if r.agent_id == ids["poison"]]
    healthy = [r for r in stored if r.agent_id == ids["fine"]]
    assert len(poisoned) == 5 and len(healthy) == 5
    assert all(r.fallback and "could not store the answer" in r.fallback_reason for r in poisoned)
    assert all(not r.fallback for r in healthy)
    assert healthy[0].action == "BUY"
    with application.db.read() as session:
        cycles = list(session.scalars(select(CycleRow).order_by(CycleRow.cycle_time)))
    assert [(c.decisions, c.fallbacks) for c in cycles] == [(2, 1)] * 5
    application.close()


def test_a_slot_that_keeps_failing_is_given_up_and_the_current_slot_runs(database_url, clock):
    scripted = {"a": Scripted(fine)}
    application = app_with(database_url, clock, scripted)
    seed_market(application, n=100)
    seed_agent(application, "a", Provider.LLAMA, "m")
    engine = application.engine
    # A slot that kept failing: still running after its runs (as a crash-looping one is).
    asyncio.run(engine.run_cycle(T - 2 * SLOT, trigger="timer"))
    asyncio.run(engine.run_cycle(T - SLOT, trigger="timer", agent_ids=[]))
    with application.db.write() as session:
        session.execute(
            update(CycleRow)
            .where(CycleRow.cycle_time == T - SLOT)
            .values(
                status="running",
                attempts=engine_module.MAX_CYCLE_ATTEMPTS,
                error="agent 1: boom",
            )
        )

    run = asyncio.run(engine.run_scheduled(T, trigger="timer"))

    assert run.caught_up == []  # given up, not retried
    assert run.cycle.status == "completed" and run.cycle.decided == 1
    with application.db.read() as session:
        given_up = session.get(CycleRow, live_key(session, T - SLOT))
        current = session.get(CycleRow, live_key(session, T))
    assert given_up.status == "failed"
    assert given_up.error.startswith(
        f"given up after {engine_module.MAX_CYCLE_ATTEMPTS} attempts (0 of 1 agents decided)"
    )
    assert "last error: agent 1: boom" in given_up.error
    assert given_up.finished_at is not None
    assert (current.status, current.attempts) == ("completed", 1)
    # A later tick leaves it alone too.
    again = asyncio.run(engine.run_scheduled(T + SLOT, trigger="timer"))
    assert again.caught_up == [] and again.cycle.status == "completed"
    application.close()


def test_attempts_count_each_whole_run_of_a_slot(database_url, clock):
    application = app_with(database_url, clock, {"a": Scripted(fine)})
    seed_market(application, n=100)
    agent = seed_agent(application, "a", Provider.LLAMA, "m")
    asyncio.run(application.engine.run_cycle(T, agent_ids=[agent]))  # one agent: not counted
    asyncio.run(application.engine.run_cycle(T))
    asyncio.run(application.engine.run_cycle(T))
    with application.db.read() as session:
        assert session.get(CycleRow, live_key(session, T)).attempts == 2
    application.close()


def test_a_failing_catch_up_never_keeps_the_current_slot_from_running(
    database_url, clock, monkeypatch
):
    application = app_with(database_url, clock, {"a": Scripted(fine)})
    seed_market(application, n=100)
    seed_agent(application, "a", Provider.LLAMA, "m")
    engine = application.engine
    asyncio.run(engine.run_cycle(T - 2 * SLOT, trigger="timer"))  # the schedule ran before
    original = engine.run_cycle

    async def failing_catch_up(cycle_time, *, trigger="manual", agent_ids=None):
        if trigger == engine_module.CATCH_UP:
            raise DatabaseError("catch-up of a poisoned slot failed")
        return await original(cycle_time, trigger=trigger, agent_ids=agent_ids)

    monkeypatch.setattr(engine, "run_cycle", failing_catch_up)
    run = asyncio.run(engine.run_scheduled(T, trigger="timer"))
    assert run.caught_up == []
    assert run.cycle.status == "completed" and run.cycle.decided == 1
    application.close()
