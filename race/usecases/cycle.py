"""One decision cycle at its scheduled time T: every due agent decided on the same market
view, each agent's step stored in a transaction of its own.

Same view: the first run of a cycle pins the candles it read on the cycle's row (their
ids); every later run of that cycle, in any process, rebuilds exactly that view. Exactly
once: an agent's portfolio carries the time of its last step and a version; a step for a
time it has already passed is skipped, and a writer that loses a race for the portfolio
(compare-and-set on the version) rolls back. The unique key on (agent, cycle) backs this up.
"""

from __future__ import annotations

import asyncio
import time as _time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from race.domain.agent import AgentContext, AgentSpec
from race.domain.money import ZERO
from race.domain.sanitize import clean_text
from race.domain.step import StepResult, ViewSummary
from race.domain.timeutil import ensure_utc
from race.logging_setup import log_context, new_correlation_id
from race.store import cycles
from race.store import repository as repo
from race.store.database import DatabaseError
from race.store.unit_of_work import Unstorable, connection_lost, short_error
from race.usecases import cycle_rows
from race.usecases.deciding import record
from race.usecases.deps import Deps, log
from race.usecases.guards import stale_reason
from race.usecases.health import log_health
from race.usecases.reports import CycleReport

CATCH_UP = "catch-up"
STORE_FAILURE = "could not store the answer"


@dataclass
class _Inputs:
    """What a run of the cycle reads before it decides."""

    all_ids: dict[str, int]
    specs: list[AgentSpec]
    total: int
    states: dict[int, repo.PortfolioState]
    done: set[int]
    spent: dict[int, Decimal]
    pinned: Any
    view: Any
    pin: repo.ViewPin


@dataclass(frozen=True)
class _Retry:
    """What judging the agent's HOLD again needs, when its answer cannot be stored."""

    context: AgentContext
    summary: ViewSummary


async def run_cycle(
    deps: Deps,
    cycle_time: datetime,
    *,
    trigger: str = "manual",
    agent_ids: Sequence[int] | None = None,
) -> CycleReport:
    """One decision cycle at ``cycle_time`` (the scheduled time T, not the wall clock)."""
    cycle_time = ensure_utc(cycle_time, field="cycle time")
    with (
        log_context(
            cycle_id=cycle_time.isoformat(),
            trigger=trigger,
            correlation_id=new_correlation_id(),
        ),
        deps.telemetry.span("race.cycle", cycle_id=cycle_time.isoformat(), trigger=trigger),
    ):
        report = await _run_cycle(deps, cycle_time, trigger, agent_ids)
    deps.telemetry.record_cycle(
        cycle_time=cycle_time,
        trigger=trigger,
        duration_s=report.duration_ms / 1000,
        decided=report.decided,
        fallbacks=report.fallbacks,
        trades=report.trades,
        status=report.status,
    )
    return report


def _read(deps: Deps, cycle_time: datetime, agent_ids: Sequence[int] | None) -> _Inputs:
    settings = deps.settings
    try:
        with deps.uow.read() as session:
            assets = {a.symbol: a.id for a in repo.enabled_assets(session)}
            all_ids = repo.asset_ids(session)
            specs = repo.active_agents(session, agent_ids)
            total = len(specs) if agent_ids is None else len(repo.active_agents(session))
            states = repo.portfolio_states(session, [s.id for s in specs], deps.race_id)
            done = repo.decided_agents(session, cycle_time, deps.race_id)
            spent = repo.spent_today(session, cycle_time, [s.id for s in specs], deps.race_id)
            pinned = cycles.pinned_view(session, cycle_time, deps.race_id)
            if pinned is None:
                view, pin = repo.read_market_view(
                    session,
                    cycle_time,
                    assets,
                    settings.context_candles,
                    settings.max_price_age,
                )
            else:
                pin = repo.ViewPin.from_json(pinned)
                view = repo.pinned_market_view(session, cycle_time, pin)
    except OperationalError as exc:
        raise deps.uow.db.unavailable(exc) from exc
    return _Inputs(all_ids, specs, total, states, done, spent, pinned, view, pin)


async def _run_cycle(
    deps: Deps, cycle_time: datetime, trigger: str, agent_ids: Sequence[int] | None
) -> CycleReport:
    started = _time.perf_counter()
    report = CycleReport(cycle_time=cycle_time)
    inputs = _read(deps, cycle_time, agent_ids)
    report.agents_total = len(inputs.specs)
    stale = (
        None
        if inputs.pinned is not None
        else stale_reason(inputs.view, cycle_time, deps.settings.max_price_age)
    )
    if stale is not None:
        return _skip(deps, cycle_time, trigger, inputs.total, stale, report, started)
    # Pin the view on the cycle's row (the first run's wins); a run that lost that race
    # to another process takes the winner's view, so all agents of T see one market.
    pin = inputs.pin
    winner = cycle_rows.claim(
        deps,
        cycle_time,
        trigger,
        inputs.total,
        pin,
        "running" if agent_ids is None else "partial",
        count_attempt=agent_ids is None,
    )
    view = inputs.view
    if winner != pin:
        pin = winner
        with deps.uow.read() as session:
            view = repo.pinned_market_view(session, cycle_time, pin)
    symbols = [symbol for symbol, _, _ in pin.assets]
    due = _due(inputs, cycle_time, trigger, report)
    await _decide_due(deps, inputs, due, view, symbols, cycle_time, report)
    report.status = "completed" if not report.errors else "partial"
    report.duration_ms = int((_time.perf_counter() - started) * 1000)
    if agent_ids is None:
        cycle_rows.finish(deps, cycle_time, len(inputs.specs), report)
    elif report.decided:
        cycle_rows.recount(deps, cycle_time)
    log.info(
        "cycle %s %s: %d decided, %d fallbacks, %d trades, %d skipped in %d ms",
        cycle_time.isoformat(),
        report.status,
        report.decided,
        report.fallbacks,
        report.trades,
        len(report.skipped),
        report.duration_ms,
        extra={"cycle_id": cycle_time.isoformat()},
    )
    return report


async def _decide_due(
    deps: Deps,
    inputs: _Inputs,
    due: Sequence[tuple[AgentSpec, repo.PortfolioState]],
    view: Any,
    symbols: Sequence[str],
    cycle_time: datetime,
    report: CycleReport,
) -> None:
    """Every due agent decided and its step stored, concurrently (bounded)."""
    summary = ViewSummary(view, symbols[0] if symbols else None)
    semaphore = asyncio.Semaphore(max(1, deps.settings.agent_concurrency))

    async def one(spec: AgentSpec, state: repo.PortfolioState) -> None:
        with log_context(agent_id=spec.id, agent=spec.name, provider=spec.provider.value):
            context = deps.deciding.context(
                spec, state, view, cycle_time, symbols, inputs.spent.get(spec.id, ZERO)
            )
            step = await deps.deciding.decide(spec, context, summary, semaphore)
            retry = _Retry(context, summary)
            _store_step(deps, spec, state, step, retry, inputs.all_ids, report)

    results = await asyncio.gather(
        *(one(spec, state) for spec, state in due), return_exceptions=True
    )
    _collect(deps, cycle_time, due, results, report)


def _due(
    inputs: _Inputs, cycle_time: datetime, trigger: str, report: CycleReport
) -> list[tuple[AgentSpec, repo.PortfolioState]]:
    """The agents to decide at ``cycle_time``; the others in ``report.skipped``, with why."""
    due: list[tuple[AgentSpec, repo.PortfolioState]] = []
    for spec in inputs.specs:
        state = inputs.states.get(spec.id)
        if state is None:
            report.skipped[spec.id] = "agent has no portfolio"
        elif spec.id in inputs.done:
            report.skipped[spec.id] = "already decided for this cycle"
        elif state.as_of is not None and state.as_of >= cycle_time:
            report.skipped[spec.id] = f"portfolio already at {state.as_of.isoformat()}"
        elif trigger == CATCH_UP and state.created_at is not None and state.created_at > cycle_time:
            # Catching up a slot missed before this agent joined: no backdated decision
            # (a replay over the past is what `backfill` is for).
            report.skipped[spec.id] = "agent joined after this cycle"
        else:
            due.append((spec, state))
    return due


def _store_step(
    deps: Deps,
    spec: AgentSpec,
    state: repo.PortfolioState,
    step: StepResult,
    retry: _Retry,
    all_ids: dict[str, int],
    report: CycleReport,
) -> None:
    """Store the agent's step (or, when the database refuses it, its recorded HOLD)."""
    cycle_time = step.decision.cycle_time
    try:
        outcome = persist(deps, state, step, all_ids)
    except Unstorable as exc:
        # The answer itself cannot be written (the database refused a value): this
        # agent alone gets a recorded HOLD, in a transaction of its own.
        log.error(
            "agent %s answer at %s could not be stored: %s",
            spec.name,
            cycle_time.isoformat(),
            exc.reason,
            extra={"agent_id": spec.id, "cycle_id": cycle_time.isoformat()},
        )
        hold = f"{STORE_FAILURE}: {exc.reason}"
        step = deps.deciding.step(retry.context, None, hold, retry.summary)
        try:
            outcome = persist(deps, state, step, all_ids)
        except Unstorable as again:
            raise RuntimeError(f"{STORE_FAILURE} nor its HOLD: {again.reason}") from None
    if outcome != "written":
        report.skipped[spec.id] = outcome
        return
    record(deps.telemetry, spec, step)
    report.decided += 1
    report.fallbacks += int(step.decision.fallback)
    report.trades += len(step.fills)
    if step.decision.fallback:
        log.warning(
            "agent %s HOLD fallback at %s: %s",
            spec.name,
            cycle_time.isoformat(),
            step.decision.fallback_reason,
            extra={"agent_id": spec.id, "cycle_id": cycle_time.isoformat()},
        )


def _collect(
    deps: Deps,
    cycle_time: datetime,
    due: Sequence[tuple[AgentSpec, repo.PortfolioState]],
    results: Sequence[BaseException | None],
    report: CycleReport,
) -> None:
    """Each failed step into ``report.errors``; a lost database raised for the cycle."""
    database_down: DatabaseError | None = None
    for (spec, _), result in zip(due, results, strict=True):
        if isinstance(result, DatabaseError):
            database_down = result
        elif isinstance(result, DBAPIError) and connection_lost(result):
            database_down = deps.uow.db.failed(result, f"agent {spec.id} step")
        elif isinstance(result, BaseException):
            report.errors[spec.id] = clean_text(
                deps.redact(f"{result.__class__.__name__}: {result}"), 500
            )
            log.error(
                "agent %s step failed at %s", spec.name, cycle_time.isoformat(), exc_info=result
            )
    if database_down is not None:
        raise database_down


def _skip(
    deps: Deps,
    cycle_time: datetime,
    trigger: str,
    total: int,
    reason: str,
    report: CycleReport,
    started: float,
) -> CycleReport:
    """The cycle ``skipped`` for ``reason`` (a stale market view), its row recorded."""
    cycle_rows.skip(deps, cycle_time, trigger, total, reason)
    report.status = "skipped"
    report.reason = reason
    report.duration_ms = int((_time.perf_counter() - started) * 1000)
    log.warning(
        "cycle %s skipped: %s",
        cycle_time.isoformat(),
        reason,
        extra={"cycle_id": cycle_time.isoformat()},
    )
    return report


def persist(
    deps: Deps, state: repo.PortfolioState, step: StepResult, assets: dict[str, int]
) -> str:
    """Write one agent's step in a transaction of its own: ``written``, or why not (a
    duplicate run); :class:`Unstorable` when the database refuses a value."""

    def write() -> None:
        with deps.uow.write() as session:
            flips = repo.write_batches(
                session, [repo.AgentBatch(replace(state), [step])], assets, deps.health
            )
        # The batch state is a copy: only a committed write moves the caller's state.
        state.version += 1
        state.as_of = step.decision.cycle_time
        state.portfolio = step.portfolio
        log_health(deps.health, flips)

    what = f"agent {state.agent_id} step"
    try:
        deps.uow.store(write, what, deps.redact)
    except repo.ConcurrentUpdate:
        return "another run already moved this portfolio (duplicate run)"
    except IntegrityError as exc:
        if _already_decided(deps, state.agent_id, step.decision.cycle_time):
            return "already decided for this cycle (duplicate run)"
        raise Unstorable(deps.redact(short_error(exc))) from exc
    return "written"


def _already_decided(deps: Deps, agent_id: int, cycle_time: datetime) -> bool:
    def read() -> bool:
        with deps.uow.read() as session:
            return agent_id in repo.decided_agents(session, cycle_time, deps.race_id)

    return deps.uow.run(read, f"agent {agent_id} decision check")
