"""The replay of a backfill: decide cycle after cycle over a tape of stored candles, and
commit the steps in chunks (each one transaction with the job's cursor), resuming after
the last committed chunk."""

from __future__ import annotations

import asyncio
import time as _time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from race.domain.agent import AgentContext, AgentSpec
from race.domain.step import StepResult, ViewSummary
from race.logging_setup import log_context
from race.store import lease as leases
from race.store import repository as repo
from race.store.cycles import ReplayedCycle, StaleCycle
from race.store.lease import BackfillRefused
from race.usecases import replay_chunks
from race.usecases.deciding import record
from race.usecases.deps import Deps, log
from race.usecases.guards import stale_reason
from race.usecases.replay_gaps import passed, say_passed
from race.usecases.reports import BackfillReport
from race.usecases.spending import SpendTracker

MAX_CONFLICTS = 5
"""Chunks lost to another run (a live cycle moving the same portfolios) before giving up."""
YIELD_EVERY = 16
"""Cycles decided between two yields to the event loop (see :func:`_decide_chunk`)."""


@dataclass(frozen=True)
class ChunkLimits:
    """A chunk ends after ``cycles`` cycles or ``seconds`` of work; the replay stops after
    the chunk that crosses ``max_seconds`` (None: at the end of the range)."""

    cycles: int
    seconds: float
    max_seconds: float | None = None


@dataclass
class Replay:
    """One run of a backfill job over ``times``: who decides and where they stand."""

    deps: Deps
    job: int
    holder: str
    report: BackfillReport
    times: list[datetime]
    interval: timedelta
    specs: list[AgentSpec]
    states: dict[int, repo.PortfolioState]
    tape: repo.CandleTape
    all_ids: dict[str, int]
    symbols: tuple[str, ...]
    spend: SpendTracker
    semaphore: asyncio.Semaphore
    by_id: dict[int, AgentSpec] = field(init=False)

    def __post_init__(self) -> None:
        self.by_id = {s.id: s for s in self.specs}


@dataclass
class Chunk:
    """The steps decided for ``times[start:stop]``, not yet committed."""

    batches: dict[int, repo.AgentBatch]
    cycles: list[ReplayedCycle] = field(default_factory=list)
    stale: list[StaleCycle] = field(default_factory=list)
    stop: int = 0


async def replay(
    deps: Deps,
    job: int,
    holder: str,
    report: BackfillReport,
    times: list[datetime],
    interval: timedelta,
    on_progress: Callable[[int, int], None] | None,
    limits: ChunkLimits,
    agent_ids: Sequence[int] | None,
) -> BackfillReport:
    """Replay ``times`` from where the agents stand; ``report.finished`` when all is done."""
    run = _load(deps, job, holder, report, times, interval, agent_ids)
    position = _resume_position(run)
    report.done_cycles = position
    if on_progress:
        on_progress(position, len(times))
    began = _time.perf_counter()
    while position < len(times):
        chunk = await _decide_chunk(run, position, limits)
        try:
            replay_chunks.commit(run, chunk)
        except leases.LeaseLost as exc:
            raise BackfillRefused(
                f"backfill job {job} stopped after {position}/{len(times)} cycles: {exc} "
                "(this run had stalled past its lease); run it again to resume"
            ) from None
        except (repo.ConcurrentUpdate, IntegrityError) as exc:
            _conflicted(run, position, exc)
            continue
        _account(run, chunk)
        position = chunk.stop
        report.done_cycles = position
        if on_progress:
            on_progress(position, len(times))
        if limits.max_seconds is not None and _time.perf_counter() - began >= limits.max_seconds:
            break
    report.finished = position >= len(times)
    return report


def _load(
    deps: Deps,
    job: int,
    holder: str,
    report: BackfillReport,
    times: list[datetime],
    interval: timedelta,
    agent_ids: Sequence[int] | None,
) -> Replay:
    with deps.uow.read() as session:
        assets = {a.symbol: a.id for a in repo.enabled_assets(session)}
        all_ids = repo.asset_ids(session)
        specs = repo.active_agents(session, agent_ids)
        states = repo.portfolio_states(session, [s.id for s in specs], deps.race_id)
        tape = repo.CandleTape.load(
            session,
            assets,
            times[0],
            times[-1],
            deps.settings.context_candles,
            deps.settings.max_price_age,
        )
    specs = [s for s in specs if s.id in states]
    say_passed(report, passed(deps, specs, states, times, 0))
    return Replay(
        deps=deps,
        job=job,
        holder=holder,
        report=report,
        times=times,
        interval=interval,
        specs=specs,
        states=states,
        tape=tape,
        all_ids=all_ids,
        symbols=tuple(assets),
        spend=SpendTracker(deps.uow, deps.race_id),
        semaphore=asyncio.Semaphore(max(1, deps.settings.agent_concurrency)),
    )


def _resume_position(run: Replay) -> int:
    """The first cycle not every agent has passed yet."""
    specs, states, times = run.specs, run.states, run.times
    horizon = min((states[s.id].as_of for s in specs if states[s.id].as_of), default=None)
    position = 0
    if horizon is not None:
        while (
            position < len(times)
            and times[position] <= horizon
            and all(
                states[s.id].as_of is not None and states[s.id].as_of >= times[position]
                for s in specs
            )
        ):
            position += 1
    return position


async def _decide_chunk(run: Replay, position: int, limits: ChunkLimits) -> Chunk:
    """Decide the cycles from ``times[position]`` until the chunk is full."""
    specs, states, times = run.specs, run.states, run.times
    settings = run.deps.settings
    chunk_started = _time.perf_counter()
    chunk = Chunk(batches={s.id: repo.AgentBatch(states[s.id]) for s in specs}, stop=position)
    batches = chunk.batches
    while chunk.stop < len(times):
        # In-process agents never suspend: yield to the loop every few cycles so a
        # Ctrl-C (asyncio.run cancels the main task) stops the replay here, with
        # the committed chunks kept, instead of after the last cycle.
        if (chunk.stop - position) % YIELD_EVERY == 0:
            await asyncio.sleep(0)
        cycle_time = times[chunk.stop]
        chunk.stop += 1
        due = [
            s
            for s in specs
            if (
                batches[s.id].steps[-1].decision.cycle_time
                if batches[s.id].steps
                else states[s.id].as_of or cycle_time - run.interval
            )
            < cycle_time
        ]
        view = run.tape.view(cycle_time) if due else None
        reason = None if view is None else stale_reason(view, cycle_time, settings.max_price_age)
        if reason is not None:
            chunk.stale.append((cycle_time, len(specs), reason))
        elif due:
            summary = run.tape.summary(view, run.symbols[0] if run.symbols else None)
            steps = await decide_all(run, due, batches, view, summary, cycle_time)
            chunk.cycles.append(
                (
                    cycle_time,
                    len(specs),
                    len(steps),
                    sum(s.decision.fallback for s in steps),
                    sum(len(s.fills) for s in steps),
                )
            )
        if chunk.stop - position >= limits.cycles or (
            _time.perf_counter() - chunk_started >= limits.seconds
        ):
            break
    return chunk


async def decide_all(
    run: Replay,
    due: Sequence[AgentSpec],
    batches: dict[int, repo.AgentBatch],
    view: Any,
    summary: ViewSummary,
    cycle_time: datetime,
) -> list[StepResult]:
    """Every due agent's step at ``cycle_time``, appended to its batch (the deciding
    pipeline: one after the other when every agent runs in process, else concurrently
    under the agent concurrency bound)."""
    deciding, states, spend = run.deps.deciding, run.states, run.spend
    symbols = run.symbols
    contexts = []
    for spec in due:
        steps_so_far = batches[spec.id].steps
        current = states[spec.id]
        contexts.append(
            deciding.context_of(
                spec,
                steps_so_far[-1].portfolio if steps_so_far else current.portfolio,
                current.starting_capital,
                view,
                cycle_time,
                symbols,
                spend.before(spec.id, cycle_time),
            )
        )
    agents = [deciding.agent_for(spec) for spec in due]
    # The same log context as a live cycle's steps (the cycle id is set per cycle).
    cycle_id = cycle_time.isoformat()

    async def decide(
        spec: AgentSpec,
        agent: Any,
        context: AgentContext,
        semaphore: asyncio.Semaphore | None = None,
    ) -> StepResult:
        with log_context(
            cycle_id=cycle_id, agent_id=spec.id, agent=spec.name, provider=spec.provider.value
        ):
            return await deciding.decide(spec, context, summary, semaphore, agent)

    triples = list(zip(due, agents, contexts, strict=True))
    if all([getattr(a, "in_process", False) for a in agents]):
        steps = [await decide(s, a, c) for s, a, c in triples]
    else:
        steps = list(await asyncio.gather(*(decide(s, a, c, run.semaphore) for s, a, c in triples)))
    for spec, step in zip(due, steps, strict=True):
        batches[spec.id].steps.append(step)
        spend.add(spec.id, cycle_time, step.decision.cost_usd)
    return steps


def _conflicted(run: Replay, position: int, exc: Exception) -> None:
    """A chunk lost to another run: reload the portfolios (or give up after too many)."""
    report, times = run.report, run.times
    report.retries += 1
    if report.retries > MAX_CONFLICTS:
        raise BackfillRefused(
            f"backfill job {run.job} stopped after {position}/{len(times)} cycles: "
            "another run (a live cycle) kept moving the same portfolios; run it "
            "again to resume from its cursor"
        ) from None
    log.warning("backfill chunk conflicted with another run (%s); reloading", exc)
    with run.deps.uow.read() as session:
        run.states = repo.portfolio_states(session, [s.id for s in run.specs], run.deps.race_id)
    say_passed(report, passed(run.deps, run.specs, run.states, times, position))


def _account(run: Replay, chunk: Chunk) -> None:
    """A committed chunk: its telemetry and counts into the report."""
    report = run.report
    for batch in chunk.batches.values():
        for step in batch.steps:
            record(run.deps.telemetry, run.by_id[batch.state.agent_id], step)
    for cycle in chunk.cycles:
        report.decisions += cycle[2]
        report.fallbacks += cycle[3]
        report.trades += cycle[4]
    report.stale_cycles += len(chunk.stale)
    for cycle_time, _, reason in chunk.stale[:1]:
        log.warning(
            "backfill job %s: %d cycle(s) from %s skipped: %s",
            run.job,
            len(chunk.stale),
            cycle_time.isoformat(),
            reason,
            extra={"job_id": run.job},
        )
