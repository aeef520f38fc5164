"""Committing a replay's chunk: one transaction with the job's cursor and the lease
renewed; an agent whose steps the database refuses gets recorded HOLDs instead."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from race.domain.agent import AgentSpec
from race.domain.step import StepResult, ViewSummary
from race.store import cycles
from race.store import jobs as job_rows
from race.store import lease as leases
from race.store import repository as repo
from race.store.cycles import ReplayedCycle, StaleCycle
from race.store.unit_of_work import Unstorable, short_error
from race.usecases.backfill_lease import lease_ttl
from race.usecases.cycle import STORE_FAILURE
from race.usecases.deps import Deps, log
from race.usecases.health import log_health

if TYPE_CHECKING:
    from race.usecases.replay import Chunk, Replay


def commit(run: Replay, chunk: Chunk) -> None:
    """Commit ``chunk`` and move ``run.states`` to what was committed. One agent's steps
    the database refuses: that agent alone gets recorded HOLDs for the chunk's cycles;
    everyone else's steps are written."""
    deps = run.deps
    try:
        run.states.update(_store(run, chunk))
    except Unstorable as exc:
        poisoned = poisoned_batches(deps, chunk.batches, run.all_ids)
        if not poisoned:
            raise RuntimeError(f"backfill chunk cannot be stored: {exc.reason}") from None
        for agent_id, reason in poisoned.items():
            log.error(
                "backfill: agent %s steps could not be stored (%s): recorded as HOLDs",
                agent_id,
                reason,
                extra={"agent_id": agent_id},
            )
            chunk.batches[agent_id] = hold_batch(
                deps, run.by_id[agent_id], chunk.batches[agent_id], run.tape, run.symbols, reason
            )
        chunk.cycles = chunk_cycles(chunk.cycles, chunk.batches)
        run.states.update(_store(run, chunk))


def _store(run: Replay, chunk: Chunk) -> dict[int, repo.PortfolioState]:
    deps = run.deps

    def work() -> dict[int, repo.PortfolioState]:
        return commit_chunk(
            deps,
            run.job,
            chunk.batches,
            chunk.cycles,
            run.times,
            chunk.stop,
            run.all_ids,
            chunk.stale,
            run.holder,
        )

    return deps.uow.store(work, "backfill chunk", deps.redact)


def commit_chunk(
    deps: Deps,
    job: int,
    batches: dict[int, repo.AgentBatch],
    replayed: list[ReplayedCycle],
    times: Sequence[datetime],
    stop: int,
    all_ids: dict[str, int],
    stale: Sequence[StaleCycle] = (),
    holder: str | None = None,
) -> dict[int, repo.PortfolioState]:
    """One chunk in one transaction, the job's cursor with it (and the backfill lease
    renewed: a run that lost it writes nothing). Returns the portfolio states as
    committed (the callers' copies move only when the commit succeeded)."""
    pending = [repo.AgentBatch(replace(b.state), b.steps) for b in batches.values()]
    with deps.uow.write() as session:
        if holder is not None:
            leases.renew(
                session,
                leases.BACKFILL,
                holder,
                now=deps.clock.now(),
                ttl=lease_ttl(deps),
            )
        flips = repo.write_batches(session, pending, all_ids, deps.health)
        cycles.write_replayed(session, replayed, deps.clock.now(), deps.race_id)
        cycles.write_stale(session, stale, deps.clock.now(), deps.race_id)
        job_rows.advance_cursor(session, job, times[stop - 1], stop, len(times), deps.clock.now())
    log_health(deps.health, flips)
    return {written.state.agent_id: written.state for written in pending}


def poisoned_batches(
    deps: Deps, batches: dict[int, repo.AgentBatch], all_ids: dict[str, int]
) -> dict[int, str]:
    """The agents whose steps the database refuses, with why: each batch is tried in a
    savepoint of one transaction that is then rolled back (nothing is written)."""

    def attempt(batch: repo.AgentBatch) -> Callable[[Session], object]:
        return lambda session: repo.write_batches(
            session,
            [repo.AgentBatch(replace(batch.state), batch.steps)],
            all_ids,
            deps.health,
        )

    works = {agent_id: attempt(batch) for agent_id, batch in batches.items()}
    refused = deps.uow.refusals(works, "backfill chunk check")
    return {agent_id: deps.redact(short_error(exc)) for agent_id, exc in refused.items()}


def hold_batch(
    deps: Deps,
    spec: AgentSpec,
    batch: repo.AgentBatch,
    tape: repo.CandleTape,
    symbols: Sequence[str],
    reason: str,
) -> repo.AgentBatch:
    """The batch's cycles as recorded HOLDs ("could not store the answer")."""
    state = batch.state
    steps: list[StepResult] = []
    for original in batch.steps:
        cycle_time = original.decision.cycle_time
        view = tape.view(cycle_time)
        context = deps.deciding.context(spec, state, view, cycle_time, symbols)
        summary = ViewSummary(view, symbols[0] if symbols else None)
        steps.append(deps.deciding.step(context, None, f"{STORE_FAILURE}: {reason}", summary))
    return repo.AgentBatch(state, steps)


def chunk_cycles(
    replayed: list[ReplayedCycle], batches: dict[int, repo.AgentBatch]
) -> list[ReplayedCycle]:
    """The chunk's cycle counts again, from the batches as they will be written."""
    by_time: dict[datetime, list[StepResult]] = {}
    for batch in batches.values():
        for step in batch.steps:
            by_time.setdefault(step.decision.cycle_time, []).append(step)
    return [
        (
            t,
            total,
            len(by_time.get(t, [])),
            sum(s.decision.fallback for s in by_time.get(t, [])),
            sum(len(s.fills) for s in by_time.get(t, [])),
        )
        for t, total, *_ in replayed
    ]
