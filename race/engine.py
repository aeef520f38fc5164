"""Use-cases of the race: run a cycle, run one agent, mark to market, backfill a range.

Every path ends in the same pure step (:func:`race.domain.step.judge`) and the same writer
(:func:`race.store.repository.write_batches`), so a live cycle and a replayed one write the
same rows. Exactly once: an agent's portfolio carries the time of its last step and a
version; a step for a time it has already passed is skipped, and a writer that loses a race
for the portfolio (compare-and-set on the version) rolls back. The unique key on
(agent, cycle) backs this up.

Same view: the first run of a cycle pins the candles it read on the cycle's row (their
ids); every later run of that cycle, in any process, rebuilds exactly that view. Scheduled
runs (:meth:`RaceEngine.run_scheduled`) first complete unfinished or missed cycles of the
previous slots, oldest first, so a cycle cut by a crash is finished by the next tick.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import os
import time as _time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, StatementError

from race.clock import Clock, SystemClock
from race.domain.agent import Agent, AgentAnswer, AgentContext, AgentSpec
from race.domain.money import ZERO
from race.domain.sanitize import clean_text, sanitize_decision
from race.domain.step import StepResult, ViewSummary, equity_point, judge
from race.domain.timeutil import ensure_utc, format_interval, grid
from race.logging_setup import log_context, new_correlation_id
from race.schedule import scheduled_time
from race.secrets import SecretPolicy
from race.settings import Settings
from race.settings_files import read_sources
from race.store import lease as leases
from race.store import repository as repo
from race.store.database import Database, DatabaseError
from race.store.lease import BackfillRefused
from race.store.retry import is_transient, with_db_retry
from race.store.tables import CandleRow, CycleRow, DecisionRow, JobRow, TradeRow
from race.telemetry import Telemetry

log = logging.getLogger("race.engine")

AgentBuilder = Callable[[AgentSpec], Agent]
_T = TypeVar("_T")

CATCH_UP = "catch-up"
SCHEDULED_TRIGGERS = ("timer", "schedule", CATCH_UP)
"""Triggers of cycles run by a schedule: a slot after the first of them is "missed" when
it has no cycle row."""
FINISHED = ("completed", "skipped", "failed")
"""Cycle statuses a catch-up leaves alone (a skipped cycle had a stale market view)."""
MIN_BACKFILL_INTERVAL = timedelta(minutes=1)
"""The shortest decision interval a backfill accepts."""


def check_backfill_interval(interval: timedelta) -> timedelta:
    """``interval`` if it is at least :data:`MIN_BACKFILL_INTERVAL`, else ``ValueError``."""
    if interval < MIN_BACKFILL_INTERVAL:
        raise ValueError(
            f"interval {format_interval(interval)} is too short: a backfill decides at most "
            f"once every {format_interval(MIN_BACKFILL_INTERVAL)}"
        )
    return interval


def stale_reason(view: Any, at: datetime, max_age: timedelta | None) -> str | None:
    """Why the market view at ``at`` is too stale to decide or mark on: no asset has a
    price younger than ``max_age`` (``RACE_MAX_PRICE_AGE``). None when it is fresh."""
    if max_age is None:
        return None
    newest = max(
        (series[-1].close_time for series in view.candles.values() if series), default=None
    )
    if newest is not None and at - newest <= max_age:
        return None
    seen = "no candle at all" if newest is None else f"newest candle closed {newest.isoformat()}"
    return (
        f"market view stale at {at.isoformat()}: no asset has a price younger than "
        f"RACE_MAX_PRICE_AGE ({format_interval(max_age)}); {seen}"
    )


@dataclass
class CycleReport:
    cycle_time: datetime
    status: str = "completed"
    agents_total: int = 0
    decided: int = 0
    fallbacks: int = 0
    trades: int = 0
    skipped: dict[int, str] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    duration_ms: int = 0
    reason: str | None = None
    """Why the whole cycle was ``skipped`` (a stale market view)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "cycleTime": self.cycle_time.isoformat(),
            "status": self.status,
            "reason": self.reason,
            "agentsTotal": self.agents_total,
            "decided": self.decided,
            "fallbacks": self.fallbacks,
            "trades": self.trades,
            "skipped": {str(k): v for k, v in self.skipped.items()},
            "errors": {str(k): v for k, v in self.errors.items()},
            "durationMs": self.duration_ms,
        }


@dataclass
class ScheduledRun:
    """What :meth:`RaceEngine.run_scheduled` did: the cycles it caught up, then the slot's."""

    cycle: CycleReport
    caught_up: list[CycleReport] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.cycle.as_dict(),
            "caughtUp": [report.as_dict() for report in self.caught_up],
        }


@dataclass
class BackfillReport:
    job_id: int
    start: datetime
    end: datetime
    interval: timedelta
    total_cycles: int
    done_cycles: int
    decisions: int = 0
    fallbacks: int = 0
    trades: int = 0
    finished: bool = False
    retries: int = 0
    skipped: dict[int, str] = field(default_factory=dict)
    """Agents that had cycles of the range left out, and why (never silently)."""
    stale_cycles: int = 0
    """Cycles skipped because no asset had a fresh price (no decisions there)."""
    waited_seconds: float = 0.0
    """How long this run waited for another backfill to finish."""
    waited_for: str | None = None
    refused: str | None = None
    """Set when this call did no work: another backfill held the lease (queued jobs)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "jobId": self.job_id,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "interval": format_interval(self.interval),
            "totalCycles": self.total_cycles,
            "doneCycles": self.done_cycles,
            "decisions": self.decisions,
            "fallbacks": self.fallbacks,
            "trades": self.trades,
            "finished": self.finished,
            "skipped": {str(k): v for k, v in self.skipped.items()},
            "staleCycles": self.stale_cycles,
            "waitedSeconds": round(self.waited_seconds, 3),
            "waitedFor": self.waited_for,
        }


MAX_CYCLE_ATTEMPTS = 3
"""Runs of one cycle slot before catch-up gives it up: the slot is finished (status
``failed``) with its failures recorded, and later ticks no longer retry it."""

STORE_FAILURE = "could not store the answer"
_UNSTORABLE_ERRORS = (StatementError, ValueError, TypeError, OverflowError)
"""Errors binding a value (before the database sees it): the step, not the database."""


def redact(text: str, secrets: Iterable[str] | SecretPolicy) -> str:
    policy = secrets if isinstance(secrets, SecretPolicy) else SecretPolicy.from_values(secrets)
    return policy.redact(text)


def connection_lost(exc: BaseException) -> bool:
    """A real loss of the database (the connection dropped or could not be made), as
    opposed to a statement the database refused (bad data, a constraint): only the first
    is "database down"."""
    if isinstance(exc, DatabaseError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    return bool(
        exc.connection_invalidated or isinstance(exc, OperationalError) or is_transient(exc)
    )


def _short(exc: BaseException) -> str:
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {detail[0] if detail else ''}"[:300]


class RaceEngine:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        build_agent: AgentBuilder,
        *,
        clock: Clock | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock or SystemClock()
        self.telemetry = telemetry or Telemetry()
        self.policy = settings.secret_policy()
        self.health = repo.HealthPolicy(settings.degraded_window, settings.degraded_threshold)
        self._build_agent = build_agent
        self._agents: dict[int, tuple[AgentSpec, Agent | str]] = {}

    # ----------------------------------------------------------------- agents

    def _secrets(self) -> SecretPolicy:
        return self.policy

    def _learn_agent_key(self, spec: AgentSpec) -> None:
        """An agent's own key (named by its ``api_key_setting`` param) joins the policy."""
        name = spec.params.get("api_key_setting") if isinstance(spec.params, dict) else None
        if isinstance(name, str) and name not in self.policy.secrets:
            value = os.environ.get(name)
            if not value:  # set in .env or local.settings.json (race.settings_files)
                try:
                    value = read_sources().file_values().get(name)
                except ValueError:  # a malformed file: the CLI and serve already said so
                    value = None
            if value:
                self.policy = self.policy.with_secrets({name: value})

    def agent_for(self, spec: AgentSpec) -> Agent | str:
        """The built agent, or why it could not be built (cached per spec)."""
        cached = self._agents.get(spec.id)
        if cached is not None and cached[0] == spec:
            return cached[1]
        self._learn_agent_key(spec)
        built: Agent | str
        try:
            if spec.problem is not None:
                raise ValueError(spec.problem)
            built = self._build_agent(spec)
        except Exception as exc:
            built = f"agent cannot be built: {redact(str(exc), self._secrets())}"
        self._agents[spec.id] = (spec, built)
        return built

    async def _ask(
        self, agent: Agent | str, context: AgentContext
    ) -> tuple[AgentAnswer | None, str | None]:
        if isinstance(agent, str):
            return None, agent
        timeout = self.settings.agent_timeout_seconds
        in_process = bool(getattr(agent, "in_process", False))
        started = _time.perf_counter()
        try:
            if in_process:
                # Runs on the event loop (no I/O, no thread hop: replays stay fast), so it
                # cannot be interrupted; an answer that took longer than the limit is
                # discarded all the same, so the rule is the same for every agent kind.
                answer = await agent.decide(context)
                elapsed = _time.perf_counter() - started
                if elapsed > timeout:
                    return None, (
                        f"agent timed out after {timeout:g} s (answered after {elapsed:.2f} s; "
                        "answer discarded)"
                    )
            else:
                answer = await asyncio.wait_for(agent.decide(context), timeout)
        except TimeoutError:
            return None, f"agent timed out after {timeout:g} s"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            message = redact(str(exc), self._secrets())[:500]
            return None, f"agent failed: {exc.__class__.__name__}: {message}"
        if not isinstance(answer, AgentAnswer):
            return None, f"agent answered {type(answer).__name__}, not an AgentAnswer"
        if answer.latency_ms is None and not in_process:
            answer.latency_ms = int((_time.perf_counter() - started) * 1000)
        return answer, None

    def _context(
        self,
        spec: AgentSpec,
        state: repo.PortfolioState,
        view: Any,
        cycle_time: datetime,
        symbols: Sequence[str],
        spent_today: Decimal = ZERO,
    ) -> AgentContext:
        return AgentContext(
            agent=spec,
            cycle_time=cycle_time,
            market=view,
            portfolio=state.portfolio,
            limits=self.settings.limits,
            costs=self.settings.costs,
            allowed_assets=tuple(symbols),
            starting_capital=state.starting_capital,
            spent_today_usd=spent_today,
        )

    # ----------------------------------------------------------------- cycle

    async def run_scheduled(self, slot: datetime, *, trigger: str = "schedule") -> ScheduledRun:
        """The decision timer's one entry point (Functions timer and ``serve`` alike): first
        complete the unfinished cycles (row ``running`` or ``partial``: cut by a crash or a
        lost database) and the missed slots (no row, after the first scheduled cycle) among
        the ``RACE_CATCH_UP_SLOTS`` schedule slots before ``slot``, oldest first, each at its
        own time (its own market view: candles closed by then), then ``slot`` itself.

        Each is an ordinary :meth:`run_cycle`, so exactly-once holds as ever: two timers
        firing at once both catch up and still write one decision per agent and cycle, and
        an agent already past a slot (it decided later) is skipped there. A failure of a
        catch-up cycle (a lost database included) is logged and never keeps ``slot`` from
        running; a slot that failed ``MAX_CYCLE_ATTEMPTS`` runs is finished as ``failed``
        with its failures recorded instead of being retried on every tick."""
        slot = ensure_utc(slot, field="slot")
        caught_up: list[CycleReport] = []
        behind = self._catch_up_slots(slot, trigger)
        if behind:
            log.info(
                "catching up %d cycle(s) before %s: %s",
                len(behind),
                slot.isoformat(),
                ", ".join(t.isoformat() for t in behind),
                extra={"cycle_id": slot.isoformat()},
            )
        for earlier in behind:
            try:
                caught_up.append(await self.run_cycle(earlier, trigger=CATCH_UP))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Never keeps the current slot from running: a database that is really down
                # fails that run too (and the next tick catches up); anything else was one
                # slot's problem, counted against its attempts.
                log.error(
                    "catch-up of cycle %s failed: %s",
                    earlier.isoformat(),
                    self.policy.redact(str(exc)),
                    extra={"cycle_id": earlier.isoformat()},
                )
        cycle = await self.run_cycle(slot, trigger=trigger)
        return ScheduledRun(cycle=cycle, caught_up=caught_up)

    def _catch_up_slots(self, slot: datetime, trigger: str) -> list[datetime]:
        """The slots before ``slot`` (at most ``catch_up_slots``, oldest first) whose cycle
        is unfinished, or missing although the schedule was already running by then (a
        first start does not invent past cycles)."""
        count = self.settings.catch_up_slots
        if count <= 0:
            return []
        expression = self.settings.decision_schedule
        slots: list[datetime] = []
        cursor = slot
        for _ in range(count):
            cursor = scheduled_time(expression, cursor - timedelta(seconds=1))
            slots.append(cursor)
        slots.reverse()
        triggers = sorted({*SCHEDULED_TRIGGERS, trigger})

        def read() -> tuple[dict[datetime, tuple[str, int]], datetime | None]:
            with self.db.read() as session:
                statuses: dict[datetime, tuple[str, int]] = {
                    cycle_time: (status, attempts or 0)
                    for cycle_time, status, attempts in session.execute(
                        select(CycleRow.cycle_time, CycleRow.status, CycleRow.attempts).where(
                            CycleRow.cycle_time.in_(slots)
                        )
                    )
                }
                first = session.scalar(
                    select(func.min(CycleRow.cycle_time)).where(CycleRow.trigger.in_(triggers))
                )
            return statuses, first

        statuses, first = self._db_call(read, "catch-up check")
        exhausted = [
            t
            for t, (status, attempts) in statuses.items()
            if status not in FINISHED and attempts >= MAX_CYCLE_ATTEMPTS
        ]
        for t in sorted(exhausted):
            self._give_up_cycle(t)
        return [
            t
            for t in slots
            if (t in statuses and statuses[t][0] not in FINISHED and t not in exhausted)
            or (t not in statuses and first is not None and first < t)
        ]

    def _give_up_cycle(self, cycle_time: datetime) -> None:
        """Finish a slot that failed ``MAX_CYCLE_ATTEMPTS`` runs: status ``failed``, its
        decisions counted, why in its error; catch-up no longer retries it."""

        def finish() -> str | None:
            with self.db.write() as session:
                row = session.get(CycleRow, cycle_time)
                if row is None or row.status in FINISHED:
                    return None
                _recount(session, row, row.agents_total)
                reason = (
                    f"given up after {row.attempts} attempts "
                    f"({row.decisions} of {row.agents_total} agents decided)"
                )
                row.error = f"{reason}; last error: {row.error}" if row.error else reason
                row.error = self.policy.redact(row.error)[:4000]
                row.status = "failed"
                row.finished_at = self.clock.now()
                return reason

        reason = self._db_call(finish, f"cycle {cycle_time.isoformat()} give-up")
        if reason is not None:
            log.error(
                "cycle %s %s: it is finished as failed and no longer caught up",
                cycle_time.isoformat(),
                reason,
                extra={"cycle_id": cycle_time.isoformat()},
            )

    async def run_cycle(
        self,
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
            self.telemetry.span("race.cycle", cycle_id=cycle_time.isoformat(), trigger=trigger),
        ):
            report = await self._run_cycle(cycle_time, trigger, agent_ids)
        self.telemetry.record_cycle(
            cycle_time=cycle_time,
            trigger=trigger,
            duration_s=report.duration_ms / 1000,
            decided=report.decided,
            fallbacks=report.fallbacks,
            trades=report.trades,
            status=report.status,
        )
        return report

    async def _run_cycle(
        self, cycle_time: datetime, trigger: str, agent_ids: Sequence[int] | None
    ) -> CycleReport:
        started = _time.perf_counter()
        report = CycleReport(cycle_time=cycle_time)
        try:
            with self.db.read() as session:
                assets = {a.symbol: a.id for a in repo.enabled_assets(session)}
                all_ids = repo.asset_ids(session)
                specs = repo.active_agents(session, agent_ids)
                total = len(specs) if agent_ids is None else len(repo.active_agents(session))
                states = repo.portfolio_states(session, [s.id for s in specs])
                done = repo.decided_agents(session, cycle_time)
                spent = repo.spent_today(session, cycle_time, [s.id for s in specs])
                pinned = session.scalar(
                    select(CycleRow.market_view).where(CycleRow.cycle_time == cycle_time)
                )
                if pinned is None:
                    view, pin = repo.read_market_view(
                        session,
                        cycle_time,
                        assets,
                        self.settings.context_candles,
                        self.settings.max_price_age,
                    )
                else:
                    pin = repo.ViewPin.from_json(pinned)
                    view = repo.pinned_market_view(session, cycle_time, pin)
        except OperationalError as exc:
            raise self.db.unavailable(exc) from exc
        report.agents_total = len(specs)
        stale = (
            None
            if pinned is not None
            else stale_reason(view, cycle_time, self.settings.max_price_age)
        )
        if stale is not None:
            return self._skip_cycle(cycle_time, trigger, total, stale, report, started)
        # Pin the view on the cycle's row (the first run's wins); a run that lost that race
        # to another process takes the winner's view, so all agents of T see one market.
        winner = self._claim_cycle_row(
            cycle_time,
            trigger,
            total,
            pin,
            "running" if agent_ids is None else "partial",
            count_attempt=agent_ids is None,
        )
        if winner != pin:
            pin = winner
            with self.db.read() as session:
                view = repo.pinned_market_view(session, cycle_time, pin)
        symbols = [symbol for symbol, _, _ in pin.assets]
        due: list[tuple[AgentSpec, repo.PortfolioState]] = []
        for spec in specs:
            state = states.get(spec.id)
            if state is None:
                report.skipped[spec.id] = "agent has no portfolio"
            elif spec.id in done:
                report.skipped[spec.id] = "already decided for this cycle"
            elif state.as_of is not None and state.as_of >= cycle_time:
                report.skipped[spec.id] = f"portfolio already at {state.as_of.isoformat()}"
            elif (
                trigger == CATCH_UP
                and state.created_at is not None
                and state.created_at > cycle_time
            ):
                # Catching up a slot missed before this agent joined: no backdated decision
                # (a replay over the past is what `backfill` is for).
                report.skipped[spec.id] = "agent joined after this cycle"
            else:
                due.append((spec, state))
        summary = ViewSummary(view, symbols[0] if symbols else None)
        semaphore = asyncio.Semaphore(max(1, self.settings.agent_concurrency))

        async def one(spec: AgentSpec, state: repo.PortfolioState) -> None:
            with log_context(agent_id=spec.id, agent=spec.name, provider=spec.provider.value):
                await step_one(spec, state)

        async def step_one(spec: AgentSpec, state: repo.PortfolioState) -> None:
            context = self._context(
                spec, state, view, cycle_time, symbols, spent.get(spec.id, ZERO)
            )
            async with semaphore:
                answer, failure = await self._ask(self.agent_for(spec), context)
            step = self._step(context, answer, failure, summary)
            try:
                outcome = self._persist(state, step, all_ids)
            except _Unstorable as exc:
                # The answer itself cannot be written (the database refused a value): this
                # agent alone gets a recorded HOLD, in a transaction of its own.
                log.error(
                    "agent %s answer at %s could not be stored: %s",
                    spec.name,
                    cycle_time.isoformat(),
                    exc.reason,
                    extra={"agent_id": spec.id, "cycle_id": cycle_time.isoformat()},
                )
                step = self._step(context, None, f"{STORE_FAILURE}: {exc.reason}", summary)
                try:
                    outcome = self._persist(state, step, all_ids)
                except _Unstorable as again:
                    raise RuntimeError(f"{STORE_FAILURE} nor its HOLD: {again.reason}") from None
            if outcome == "written":
                self._record(spec, step)
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
            else:
                report.skipped[spec.id] = outcome

        results = await asyncio.gather(
            *(one(spec, state) for spec, state in due), return_exceptions=True
        )
        database_down: DatabaseError | None = None
        for (spec, _), result in zip(due, results, strict=True):
            if isinstance(result, DatabaseError):
                database_down = result
            elif isinstance(result, DBAPIError) and connection_lost(result):
                database_down = self.db.failed(result, f"agent {spec.id} step")
            elif isinstance(result, BaseException):
                report.errors[spec.id] = clean_text(
                    self.policy.redact(f"{result.__class__.__name__}: {result}"), 500
                )
                log.error(
                    "agent %s step failed at %s", spec.name, cycle_time.isoformat(), exc_info=result
                )
        if database_down is not None:
            raise database_down
        report.status = "completed" if not report.errors else "partial"
        report.duration_ms = int((_time.perf_counter() - started) * 1000)
        if agent_ids is None:
            self._finish_cycle_row(cycle_time, len(specs), report)
        elif report.decided:
            self._recount_cycle_row(cycle_time)
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

    def _skip_cycle(
        self,
        cycle_time: datetime,
        trigger: str,
        total: int,
        reason: str,
        report: CycleReport,
        started: float,
    ) -> CycleReport:
        """Record the cycle as ``skipped`` with ``reason``: no decisions, no view pinned (a
        later run re-reads the market, late candles may have landed)."""

        def record() -> None:
            with self.db.write() as session:
                row = session.get(CycleRow, cycle_time)
                if row is None:
                    session.add(
                        CycleRow(
                            cycle_time=cycle_time,
                            status="skipped",
                            trigger=trigger,
                            agents_total=total,
                            skipped=total,
                            started_at=self.clock.now(),
                            finished_at=self.clock.now(),
                            reason=reason,
                        )
                    )
                elif row.market_view is None and row.decisions == 0:
                    row.status, row.reason = "skipped", reason
                    row.finished_at = self.clock.now()

        for _ in range(2):
            try:
                self._db_call(record, f"cycle {cycle_time.isoformat()} row")
                break
            except IntegrityError:
                continue  # another run created the row first: look again
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

    def _step(
        self,
        context: AgentContext,
        answer: AgentAnswer | None,
        failure: str | None,
        summary: ViewSummary,
    ) -> StepResult:
        """The step to store for an agent's answer: secrets redacted from the answer before
        it is judged (so no bound cuts a key to a prefix), the record sanitised after."""
        if failure is not None:
            failure = self.policy.redact(failure)
        if isinstance(answer, AgentAnswer) and self.policy:
            answer = self._redact_answer(answer)
        return self._scrub(judge(context, answer, failure=failure, summary=summary))

    def _redact_answer(self, answer: AgentAnswer) -> AgentAnswer:
        clean = self.policy.redact_value  # strings, nested lists and mappings; else as is
        fields = ("orders", "reasoning", "cited_rules", "raw_output", "prompt", "model")
        more = ("regime", "fallback_reason", "details")
        return replace(answer, **{f: clean(getattr(answer, f)) for f in fields + more})

    def _scrub(self, step: StepResult) -> StepResult:
        """The decision as stored: sanitised (:func:`race.domain.sanitize.sanitize_decision`)
        and every configured secret removed from its text (an agent or a provider may echo
        a key back; it must never reach the database)."""
        d = sanitize_decision(step.decision)
        if not self.policy:
            return step if d is step.decision else replace(step, decision=d)
        clean = self.policy.redact_value

        scrubbed = replace(
            d,
            # Bounded columns: a marker may be longer than what it replaced.
            model=None if d.model is None else clean(d.model)[:200],
            regime=clean(d.regime)[:32],
            rationale=clean(d.rationale),
            cited_rules=clean(d.cited_rules),
            fallback_reason=clean(d.fallback_reason),
            raw_output=clean(d.raw_output),
            prompt=clean(d.prompt),
            proposed_orders=clean(d.proposed_orders),
            details=clean(d.details),
            notes=[
                replace(
                    n,
                    message=clean(n.message),
                    asset=clean(n.asset),
                    requested_quantity=clean(n.requested_quantity),
                )
                for n in d.notes
            ],
        )
        return replace(step, decision=scrubbed)

    def _record(self, spec: AgentSpec, step: StepResult) -> None:
        decision = step.decision
        self.telemetry.record_decision(
            agent_id=spec.id,
            agent_name=spec.name,
            provider=spec.provider.value,
            model=decision.model,
            latency_ms=decision.latency_ms,
            fallback=decision.fallback,
            fallback_reason=decision.fallback_reason,
            prompt_tokens=decision.prompt_tokens,
            completion_tokens=decision.completion_tokens,
            cost_usd=decision.cost_usd,
        )

    def _persist(self, state: repo.PortfolioState, step: StepResult, assets: dict[str, int]) -> str:
        def write() -> None:
            with self.db.write() as session:
                flips = repo.write_batches(
                    session, [repo.AgentBatch(replace(state), [step])], assets, self.health
                )
            # The batch state is a copy: only a committed write moves the caller's state.
            state.version += 1
            state.as_of = step.decision.cycle_time
            state.portfolio = step.portfolio
            self._log_health(flips)

        what = f"agent {state.agent_id} step"
        try:
            with_db_retry(write, what=what)
        except repo.ConcurrentUpdate:
            return "another run already moved this portfolio (duplicate run)"
        except IntegrityError as exc:
            if self._already_decided(state.agent_id, step.decision.cycle_time):
                return "already decided for this cycle (duplicate run)"
            raise _Unstorable(self.policy.redact(_short(exc))) from exc
        except DBAPIError as exc:
            if connection_lost(exc):
                raise self.db.failed(exc, what) from exc
            raise _Unstorable(self.policy.redact(_short(exc))) from exc
        except _UNSTORABLE_ERRORS as exc:
            raise _Unstorable(self.policy.redact(_short(exc))) from exc
        return "written"

    def _already_decided(self, agent_id: int, cycle_time: datetime) -> bool:
        def read() -> bool:
            with self.db.read() as session:
                return agent_id in repo.decided_agents(session, cycle_time)

        return self._db_call(read, f"agent {agent_id} decision check")

    def _db_call(self, work: Callable[[], _T], what: str) -> _T:
        """``work`` (one whole transaction) with transient errors retried a bounded number of
        times; a database error that remains becomes one clear :class:`DatabaseError`.
        ``IntegrityError`` passes through: callers read it as a race lost to another run."""
        try:
            return with_db_retry(work, what=what)
        except IntegrityError:
            raise
        except DBAPIError as exc:
            raise self.db.failed(exc, what) from exc

    def _claim_cycle_row(
        self,
        cycle_time: datetime,
        trigger: str,
        total: int,
        pin: repo.ViewPin,
        status: str,
        *,
        count_attempt: bool = True,
    ) -> repo.ViewPin:
        """Create the cycle's row, or pin the view on a row that has none (rows written
        before migration 0005, backfill rows); compare-and-set, so concurrent runs agree.
        Returns the view pinned on the row."""

        def claim() -> repo.ViewPin:
            with self.db.write() as session:
                if count_attempt:
                    # One more run of the whole slot (bounds the catch-up's retries).
                    session.execute(
                        update(CycleRow)
                        .where(CycleRow.cycle_time == cycle_time)
                        .values(attempts=func.coalesce(CycleRow.attempts, 0) + 1)
                    )
                stored = session.scalar(
                    select(CycleRow.market_view).where(CycleRow.cycle_time == cycle_time)
                )
                if stored is not None:
                    return repo.ViewPin.from_json(stored)
                exists = session.scalar(
                    select(func.count())
                    .select_from(CycleRow)
                    .where(CycleRow.cycle_time == cycle_time)
                )
                if not exists:
                    session.add(
                        CycleRow(
                            cycle_time=cycle_time,
                            status=status,
                            trigger=trigger,
                            agents_total=total,
                            started_at=self.clock.now(),
                            market_view=pin.to_json(),
                            attempts=int(count_attempt),
                        )
                    )
                    return pin
                # A cycle skipped earlier (stale view) runs now that the market is fresh.
                session.execute(
                    update(CycleRow)
                    .where(
                        CycleRow.cycle_time == cycle_time,
                        CycleRow.market_view.is_(None),
                        CycleRow.status == "skipped",
                    )
                    .values(status=status, reason=None)
                )
                moved = session.execute(
                    update(CycleRow)
                    .where(CycleRow.cycle_time == cycle_time, CycleRow.market_view.is_(None))
                    .values(market_view=pin.to_json())
                )
                if moved.rowcount == 1:  # type: ignore[attr-defined]
                    return pin
                # Another run pinned it between our read and our update: take its view.
                stored = session.scalar(
                    select(CycleRow.market_view).where(CycleRow.cycle_time == cycle_time)
                )
                return repo.ViewPin.from_json(stored)

        for _ in range(3):
            try:
                return self._db_call(claim, f"cycle {cycle_time.isoformat()} row")
            except IntegrityError:
                continue  # another run created the row first: read its pin
        raise DatabaseError(
            f"cycle {cycle_time.isoformat()} row keeps conflicting with other runs "
            f"at RACE_DATABASE_URL={self.db.describe()}"
        )

    def _finish_cycle_row(self, cycle_time: datetime, total: int, report: CycleReport) -> None:
        def finish() -> None:
            with self.db.write() as session:
                row = session.get(CycleRow, cycle_time)
                if row is None:
                    return
                row.agents_total = total
                _recount(session, row, total)
                row.status = (
                    report.status if row.decisions + len(report.skipped) >= total else "partial"
                )
                row.error = (
                    "; ".join(f"agent {k}: {v}" for k, v in report.errors.items())[:4000]
                    if report.errors
                    else None
                )
                row.finished_at = self.clock.now()

        self._db_call(finish, f"cycle {cycle_time.isoformat()} row")

    def _recount_cycle_row(self, cycle_time: datetime) -> None:
        """After a run of chosen agents: the row's counts (its status stays)."""

        def recount() -> None:
            with self.db.write() as session:
                row = session.get(CycleRow, cycle_time)
                if row is not None:
                    _recount(session, row, row.agents_total)

        self._db_call(recount, f"cycle {cycle_time.isoformat()} row")

    # ----------------------------------------------------------------- mark to market

    def snapshot(self, at: datetime) -> int:
        """Mark every active portfolio to market at ``at`` (between decision cycles).
        Returns how many snapshots were written; existing ones are kept."""
        return self.mark(at)[0]

    def mark(self, at: datetime) -> tuple[int, str | None]:
        """:meth:`snapshot`, and why nothing was marked when the market view at ``at`` is
        stale (no asset with a price younger than ``RACE_MAX_PRICE_AGE``: no snapshot is
        written, the reason is logged and returned)."""
        at = ensure_utc(at)
        with self.db.read() as session:
            assets = {a.symbol: a.id for a in repo.enabled_assets(session)}
            specs = repo.active_agents(session)
            states = repo.portfolio_states(session, [s.id for s in specs])
            last = repo.latest_snapshot_times(session, list(states))
            view = repo.market_view(session, at, assets, 1, None)
        stale = stale_reason(view, at, self.settings.max_price_age) if states else None
        if stale is not None:
            log.warning("mark to market at %s skipped: %s", at.isoformat(), stale)
            return 0, stale
        marks = []
        for agent_id, state in states.items():
            if state.as_of is not None and state.as_of > at:
                continue
            previous = last.get(agent_id)
            if previous is not None and previous >= at:
                continue
            marks.append((state, equity_point(at, state.portfolio, view)))
        if not marks:
            return 0, None

        def write() -> int:
            with self.db.write() as session:
                current = repo.portfolio_states(session, [s.agent_id for s, _ in marks])
                fresh = [(s, p) for s, p in marks if current[s.agent_id].version == s.version]
                return repo.write_marks(session, fresh)

        return self._db_call(write, f"mark to market at {at.isoformat()}"), None

    # ----------------------------------------------------------------- backfill

    async def backfill(
        self,
        start: datetime,
        end: datetime,
        interval: timedelta,
        *,
        on_progress: Callable[[int, int], None] | None = None,
        max_seconds: float | None = None,
        chunk_cycles: int | None = None,
        chunk_seconds: float | None = None,
        agent_ids: Sequence[int] | None = None,
    ) -> BackfillReport:
        """Run the cycle at every ``interval`` in ``[start, end]`` over stored candles, for
        every active agent (or the active ones among ``agent_ids``).

        Steps are committed in chunks (each a transaction holding whole agent steps, the
        job's cursor with them), so an interrupted backfill resumes after its last chunk and
        ends with exactly the rows of an uninterrupted one. ``max_seconds`` stops after the
        chunk that crosses it (for hosts with a time limit); call again to continue.
        """
        with (
            log_context(correlation_id=new_correlation_id(), trigger="backfill"),
            _relaxed_gc(),
        ):
            return await self._backfill(
                start,
                end,
                interval,
                on_progress,
                max_seconds,
                chunk_cycles,
                chunk_seconds,
                agent_ids,
            )

    async def _backfill(
        self,
        start: datetime,
        end: datetime,
        interval: timedelta,
        on_progress: Callable[[int, int], None] | None,
        max_seconds: float | None,
        chunk_cycles: int | None,
        chunk_seconds: float | None,
        agent_ids: Sequence[int] | None,
    ) -> BackfillReport:
        start, end = ensure_utc(start, field="start"), ensure_utc(end, field="end")
        chunk_cycles = chunk_cycles or self.settings.backfill_chunk_cycles
        chunk_seconds = chunk_seconds or self.settings.backfill_chunk_seconds
        if end < start:
            raise ValueError(f"backfill end {end.isoformat()} is before start {start.isoformat()}")
        check_backfill_interval(interval)
        times = grid(start, end, interval)
        if times:
            self.require_candles(times[0], times[-1])
        job = self._job("backfill", start, end, interval, len(times), agent_ids)
        report = BackfillReport(
            job_id=job,
            start=start,
            end=end,
            interval=interval,
            total_cycles=len(times),
            done_cycles=0,
        )
        if not times:
            report.finished = True
            self._update_job(job, "completed", None, 0)
            return report
        holder = leases.new_holder()
        description = (
            f"backfill job {job} ({start.isoformat()} → {end.isoformat()} every "
            f"{format_interval(interval)})"
        )
        await self._take_lease(job, holder, description, report)
        try:
            return await self._replay(
                job,
                holder,
                report,
                times,
                interval,
                on_progress,
                max_seconds,
                chunk_cycles,
                chunk_seconds,
                agent_ids,
            )
        finally:
            self._release_lease(holder)

    def _lease_ttl(self) -> timedelta:
        """A holder renews with every chunk (at most ``RACE_BACKFILL_CHUNK_SECONDS`` of work
        plus one cycle): a lease not renewed for this long is taken over."""
        return timedelta(seconds=max(60.0, 6 * self.settings.backfill_chunk_seconds))

    async def _take_lease(
        self, job: int, holder: str, description: str, report: BackfillReport
    ) -> None:
        """Hold the backfill lease: wait (at most ``RACE_BACKFILL_WAIT_SECONDS``) while
        another backfill holds it, then refuse with one line naming that job."""
        wait = max(0.0, self.settings.backfill_wait_seconds)
        began = _time.monotonic()
        announced = False

        def attempt() -> leases.LeaseHolder | None:
            with self.db.write() as session:
                return leases.try_acquire(
                    session,
                    leases.BACKFILL,
                    holder,
                    job_id=job,
                    description=description,
                    now=self.clock.now(),
                    ttl=self._lease_ttl(),
                )

        while True:
            try:
                busy = self._db_call(attempt, "backfill lease")
            except IntegrityError:
                continue  # another run created the lease row first: look again
            waited = _time.monotonic() - began
            if busy is None:
                if announced:
                    report.waited_seconds = waited
                    log.info("backfill job %s takes over after waiting %.1f s", job, waited)
                return
            other = busy.description or f"backfill job {busy.job_id}"
            report.waited_for = other
            if waited >= wait:
                raise BackfillRefused(
                    f"backfill refused: {other} is running (lease held by {busy.holder} "
                    f"until {busy.expires_at.isoformat()}); waited {waited:.0f} s "
                    "(RACE_BACKFILL_WAIT_SECONDS): run it again when that job is done"
                )
            if not announced:
                announced = True
                log.info(
                    "backfill job %s waits (up to %g s) for %s to finish",
                    job,
                    wait,
                    other,
                    extra={"job_id": job},
                )
            await asyncio.sleep(min(0.25, max(0.01, wait - waited)))

    def _release_lease(self, holder: str) -> None:
        def release() -> None:
            with self.db.write() as session:
                leases.release(session, leases.BACKFILL, holder)

        try:
            self._db_call(release, "backfill lease")
        except Exception as exc:  # it expires on its own
            log.warning("backfill lease not released (it expires on its own): %s", exc)

    def require_candles(self, first: datetime, last: datetime) -> None:
        """Refuse up front a backfill whose range holds no candle to decide on (every
        cycle would be skipped as stale)."""
        age = self.settings.max_price_age or timedelta(0)
        with self.db.read() as session:
            found = session.scalar(
                select(CandleRow.id)
                .where(CandleRow.close_time >= first - age, CandleRow.close_time <= last)
                .limit(1)
            )
        if found is None:
            raise ValueError(
                f"no candles stored from {first.isoformat()} to {last.isoformat()}: nothing "
                "to replay there (ingest that range first, or pick a range with candles)"
            )

    def _passed(
        self,
        specs: Sequence[AgentSpec],
        states: dict[int, repo.PortfolioState],
        times: Sequence[datetime],
        position: int,
    ) -> dict[int, str]:
        """Agents already past cycles of ``times[position:]`` they have no decision for: a
        replay never goes back before an agent's latest step, so those cycles stay
        without a decision of that agent — said, never silent."""
        ahead: dict[int, datetime] = {}
        for spec in specs:
            as_of = states[spec.id].as_of
            if as_of is not None and as_of >= times[position]:
                ahead[spec.id] = as_of
        if not ahead:
            return {}
        last = min(max(ahead.values()), times[-1])
        with self.db.read() as session:
            rows = session.execute(
                select(DecisionRow.agent_id, DecisionRow.cycle_time).where(
                    DecisionRow.agent_id.in_(list(ahead)),
                    DecisionRow.cycle_time >= times[position],
                    DecisionRow.cycle_time <= last,
                )
            ).all()
            skipped = set(
                session.scalars(
                    select(CycleRow.cycle_time).where(
                        CycleRow.status == "skipped",
                        CycleRow.cycle_time >= times[position],
                        CycleRow.cycle_time <= last,
                    )
                )
            )
        decided: dict[int, set[datetime]] = {}
        for agent_id, cycle_time in rows:
            decided.setdefault(agent_id, set()).add(cycle_time)
        found: dict[int, str] = {}
        for agent_id, as_of in ahead.items():
            have = decided.get(agent_id, set()) | skipped  # a stale cycle had no decisions
            missing = [t for t in times[position:] if t <= as_of and t not in have]
            if missing:
                found[agent_id] = (
                    f"portfolio already at {as_of.isoformat()}: {len(missing)} cycle(s) "
                    f"from {missing[0].isoformat()} to {missing[-1].isoformat()} not replayed "
                    "(a replay never goes back before an agent's latest decision)"
                )
        return found

    def _say_passed(self, report: BackfillReport, passed: dict[int, str]) -> None:
        for agent_id, reason in passed.items():
            if report.skipped.get(agent_id) != reason:
                log.warning(
                    "backfill job %s skips agent %s: %s",
                    report.job_id,
                    agent_id,
                    reason,
                    extra={"job_id": report.job_id, "agent_id": agent_id},
                )
            report.skipped[agent_id] = reason

    async def _replay(
        self,
        job: int,
        holder: str,
        report: BackfillReport,
        times: list[datetime],
        interval: timedelta,
        on_progress: Callable[[int, int], None] | None,
        max_seconds: float | None,
        chunk_cycles: int,
        chunk_seconds: float,
        agent_ids: Sequence[int] | None,
    ) -> BackfillReport:
        with self.db.read() as session:
            assets = {a.symbol: a.id for a in repo.enabled_assets(session)}
            all_ids = repo.asset_ids(session)
            specs = repo.active_agents(session, agent_ids)
            states = repo.portfolio_states(session, [s.id for s in specs])
            tape = repo.CandleTape.load(
                session,
                assets,
                times[0],
                times[-1],
                self.settings.context_candles,
                self.settings.max_price_age,
            )
        specs = [s for s in specs if s.id in states]
        self._say_passed(report, self._passed(specs, states, times, 0))
        by_id = {s.id: s for s in specs}
        symbols = list(assets)
        spend = _SpendTracker(self.db)
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
        report.done_cycles = position
        if on_progress:
            on_progress(position, len(times))
        began = _time.perf_counter()
        semaphore = asyncio.Semaphore(max(1, self.settings.agent_concurrency))
        while position < len(times):
            chunk_started = _time.perf_counter()
            batches = {s.id: repo.AgentBatch(states[s.id]) for s in specs}
            cycles: list[tuple[datetime, int, int, int, int]] = []
            stale: list[tuple[datetime, int, str]] = []
            stop = position
            while stop < len(times):
                # In-process agents never suspend: yield to the loop once per cycle so a
                # Ctrl-C (asyncio.run cancels the main task) stops the replay here, with
                # the committed chunks kept, instead of after the last cycle.
                await asyncio.sleep(0)
                cycle_time = times[stop]
                stop += 1
                due = [
                    s
                    for s in specs
                    if (
                        batches[s.id].steps[-1].decision.cycle_time
                        if batches[s.id].steps
                        else states[s.id].as_of or cycle_time - interval
                    )
                    < cycle_time
                ]
                view = tape.view(cycle_time) if due else None
                reason = (
                    None
                    if view is None
                    else stale_reason(view, cycle_time, self.settings.max_price_age)
                )
                if reason is not None:
                    stale.append((cycle_time, len(specs), reason))
                elif due:
                    summary = tape.summary(view, symbols[0] if symbols else None)
                    steps = await self._decide_all(
                        due, batches, states, view, summary, cycle_time, symbols, semaphore, spend
                    )
                    cycles.append(
                        (
                            cycle_time,
                            len(specs),
                            len(steps),
                            sum(s.decision.fallback for s in steps),
                            sum(len(s.fills) for s in steps),
                        )
                    )
                if stop - position >= chunk_cycles or (
                    _time.perf_counter() - chunk_started >= chunk_seconds
                ):
                    break

            try:
                try:
                    states.update(
                        self._store_call(
                            lambda b=batches, c=cycles, st=stale, s=stop: self._commit_chunk(
                                job, b, c, times, s, all_ids, st, holder
                            ),
                            "backfill chunk",
                        )
                    )
                except _Unstorable as exc:
                    # One agent's steps the database refuses: that agent alone gets recorded
                    # HOLDs for the chunk's cycles; everyone else's steps are written.
                    poisoned = self._poisoned_batches(batches, all_ids)
                    if not poisoned:
                        raise RuntimeError(
                            f"backfill chunk cannot be stored: {exc.reason}"
                        ) from None
                    for agent_id, reason in poisoned.items():
                        log.error(
                            "backfill: agent %s steps could not be stored (%s): recorded as HOLDs",
                            agent_id,
                            reason,
                            extra={"agent_id": agent_id},
                        )
                        batches[agent_id] = self._hold_batch(
                            by_id[agent_id], batches[agent_id], tape, symbols, reason
                        )
                    cycles = _chunk_cycles(cycles, batches)
                    states.update(
                        self._store_call(
                            lambda b=batches, c=cycles, st=stale, s=stop: self._commit_chunk(
                                job, b, c, times, s, all_ids, st, holder
                            ),
                            "backfill chunk",
                        )
                    )
            except leases.LeaseLost as exc:
                raise BackfillRefused(
                    f"backfill job {job} stopped after {position}/{len(times)} cycles: {exc} "
                    "(this run had stalled past its lease); run it again to resume"
                ) from None
            except (repo.ConcurrentUpdate, IntegrityError) as exc:
                report.retries += 1
                if report.retries > 5:
                    raise BackfillRefused(
                        f"backfill job {job} stopped after {position}/{len(times)} cycles: "
                        "another run (a live cycle) kept moving the same portfolios; run it "
                        "again to resume from its cursor"
                    ) from None
                log.warning("backfill chunk conflicted with another run (%s); reloading", exc)
                with self.db.read() as session:
                    states = repo.portfolio_states(session, [s.id for s in specs])
                self._say_passed(report, self._passed(specs, states, times, position))
                continue
            for batch in batches.values():
                for step in batch.steps:
                    self._record(by_id[batch.state.agent_id], step)
            for cycle in cycles:
                report.decisions += cycle[2]
                report.fallbacks += cycle[3]
                report.trades += cycle[4]
            report.stale_cycles += len(stale)
            for cycle_time, _, reason in stale[:1]:
                log.warning(
                    "backfill job %s: %d cycle(s) from %s skipped: %s",
                    job,
                    len(stale),
                    cycle_time.isoformat(),
                    reason,
                    extra={"job_id": job},
                )
            position = stop
            report.done_cycles = position
            if on_progress:
                on_progress(position, len(times))
            if max_seconds is not None and _time.perf_counter() - began >= max_seconds:
                break
        report.finished = position >= len(times)
        if report.finished:
            self._update_job(job, "completed", None, len(times))
        return report

    def backfill_job(
        self,
        start: datetime,
        end: datetime,
        interval: timedelta,
        agent_ids: Sequence[int] | None = None,
    ) -> int:
        """The job row of this backfill (created, or found when the same range was asked
        before), without running it: for callers that hand the work to a queue."""
        start, end = ensure_utc(start, field="start"), ensure_utc(end, field="end")
        if end < start:
            raise ValueError(f"backfill end {end.isoformat()} is before start {start.isoformat()}")
        check_backfill_interval(interval)
        times = grid(start, end, interval)
        if times:
            self.require_candles(times[0], times[-1])
        return self._job("backfill", start, end, interval, len(times), agent_ids)

    def _commit_chunk(
        self,
        job: int,
        batches: dict[int, repo.AgentBatch],
        cycles: list[tuple[datetime, int, int, int, int]],
        times: Sequence[datetime],
        stop: int,
        all_ids: dict[str, int],
        stale: Sequence[tuple[datetime, int, str]] = (),
        holder: str | None = None,
    ) -> dict[int, repo.PortfolioState]:
        """One chunk in one transaction, the job's cursor with it (and the backfill lease
        renewed: a run that lost it writes nothing). Returns the portfolio states as
        committed (the callers' copies move only when the commit succeeded)."""
        pending = [repo.AgentBatch(replace(b.state), b.steps) for b in batches.values()]
        with self.db.write() as session:
            if holder is not None:
                leases.renew(
                    session,
                    leases.BACKFILL,
                    holder,
                    now=self.clock.now(),
                    ttl=self._lease_ttl(),
                )
            flips = repo.write_batches(session, pending, all_ids, self.health)
            self._write_cycles(session, cycles)
            self._write_stale_cycles(session, stale)
            job_row = session.get(JobRow, job)
            if job_row is not None:
                job_row.cursor = times[stop - 1]
                job_row.done = stop
                job_row.status = "completed" if stop >= len(times) else "running"
                job_row.updated_at = self.clock.now()
        self._log_health(flips)
        return {written.state.agent_id: written.state for written in pending}

    def _store_call(self, work: Callable[[], _T], what: str) -> _T:
        """Like :meth:`_db_call`, but a statement the database refuses (a value, not the
        connection) is :class:`_Unstorable`; ``IntegrityError`` passes through."""
        try:
            return with_db_retry(work, what=what)
        except IntegrityError:
            raise
        except DBAPIError as exc:
            if connection_lost(exc):
                raise self.db.failed(exc, what) from exc
            raise _Unstorable(self.policy.redact(_short(exc))) from exc
        except _UNSTORABLE_ERRORS as exc:
            raise _Unstorable(self.policy.redact(_short(exc))) from exc

    def _poisoned_batches(
        self, batches: dict[int, repo.AgentBatch], all_ids: dict[str, int]
    ) -> dict[int, str]:
        """The agents whose steps the database refuses, with why: each batch is tried in a
        savepoint of one transaction that is then rolled back (nothing is written)."""
        found: dict[int, str] = {}
        with self.db.rolled_back() as session:
            for agent_id, batch in batches.items():
                nested = session.begin_nested()
                try:
                    repo.write_batches(
                        session,
                        [repo.AgentBatch(replace(batch.state), batch.steps)],
                        all_ids,
                        self.health,
                    )
                    session.flush()
                    nested.rollback()
                except DBAPIError as exc:
                    if connection_lost(exc):
                        raise self.db.failed(exc, "backfill chunk check") from exc
                    nested.rollback()
                    found[agent_id] = self.policy.redact(_short(exc))
                except _UNSTORABLE_ERRORS as exc:
                    nested.rollback()
                    found[agent_id] = self.policy.redact(_short(exc))
        return found

    def _hold_batch(
        self,
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
            context = self._context(spec, state, view, cycle_time, symbols)
            summary = ViewSummary(view, symbols[0] if symbols else None)
            steps.append(self._step(context, None, f"{STORE_FAILURE}: {reason}", summary))
        return repo.AgentBatch(state, steps)

    def _log_health(self, flips: dict[int, bool]) -> None:
        """Log once when an agent becomes degraded (and once when it recovers)."""
        for agent_id, degraded in flips.items():
            if degraded:
                log.warning(
                    "agent %s is degraded: more than %.0f %% of its last %d decisions were "
                    "fallback HOLDs — check its provider",
                    agent_id,
                    self.health.threshold * 100,
                    self.health.window,
                    extra={"agent_id": agent_id},
                )
            else:
                log.info(
                    "agent %s recovered: fallback rate back under %.0f %%",
                    agent_id,
                    self.health.threshold * 100,
                    extra={"agent_id": agent_id},
                )

    async def _decide_all(
        self,
        due: Sequence[AgentSpec],
        batches: dict[int, repo.AgentBatch],
        states: dict[int, repo.PortfolioState],
        view: Any,
        summary: ViewSummary,
        cycle_time: datetime,
        symbols: Sequence[str],
        semaphore: asyncio.Semaphore,
        spend: _SpendTracker,
    ) -> list[StepResult]:
        contexts = []
        for spec in due:
            batch = batches[spec.id]
            current = states[spec.id]
            if batch.steps:
                current = repo.PortfolioState(
                    agent_id=current.agent_id,
                    portfolio_id=current.portfolio_id,
                    version=current.version,
                    as_of=batch.steps[-1].decision.cycle_time,
                    portfolio=batch.steps[-1].portfolio,
                    starting_capital=current.starting_capital,
                )
            contexts.append(
                self._context(
                    spec, current, view, cycle_time, symbols, spend.before(spec.id, cycle_time)
                )
            )
        agents = [self.agent_for(spec) for spec in due]

        async def ask(
            spec: AgentSpec, agent: Agent | str, context: AgentContext
        ) -> tuple[AgentAnswer | None, str | None]:
            # The same log context as a live cycle's steps (the cycle id is set per cycle).
            with log_context(
                cycle_id=cycle_time.isoformat(),
                agent_id=spec.id,
                agent=spec.name,
                provider=spec.provider.value,
            ):
                return await self._ask(agent, context)

        if all(getattr(a, "in_process", False) for a in agents):
            answers = [await ask(s, a, c) for s, a, c in zip(due, agents, contexts, strict=True)]
        else:

            async def bounded(
                spec: AgentSpec, agent: Agent | str, context: AgentContext
            ) -> tuple[AgentAnswer | None, str | None]:
                async with semaphore:
                    return await ask(spec, agent, context)

            answers = list(
                await asyncio.gather(
                    *(bounded(s, a, c) for s, a, c in zip(due, agents, contexts, strict=True))
                )
            )
        steps = []
        for spec, context, (answer, failure) in zip(due, contexts, answers, strict=True):
            step = self._step(context, answer, failure, summary)
            batches[spec.id].steps.append(step)
            spend.add(spec.id, cycle_time, step.decision.cost_usd)
            steps.append(step)
        return steps

    def _write_cycles(
        self, session: Any, cycles: list[tuple[datetime, int, int, int, int]]
    ) -> None:
        """A replay's completed cycles: new rows, or a recount of rows already there."""
        rows = {
            t: {"agents_total": total, "decisions": decided, "fallbacks": fallbacks,
                "skipped": total - decided, "trades": trades, "status": "completed"}
            for t, total, decided, fallbacks, trades in cycles
        }  # fmt: skip
        for t in self._insert_new_cycles(session, rows):
            row = session.get(CycleRow, t)
            _recount(session, row, row.agents_total)

    def _write_stale_cycles(self, session: Any, stale: Sequence[tuple[datetime, int, str]]) -> None:
        """Cycles of a replay skipped for a stale market view: a ``skipped`` row with the
        reason (a row that already exists is left as it is)."""
        rows = {
            t: {"agents_total": total, "decisions": 0, "fallbacks": 0, "skipped": total,
                "trades": 0, "status": "skipped", "reason": reason}
            for t, total, reason in stale
        }  # fmt: skip
        self._insert_new_cycles(session, rows)

    def _insert_new_cycles(
        self, session: Any, rows: dict[datetime, dict[str, Any]]
    ) -> set[datetime]:
        """Insert the backfill cycle rows whose slot has none yet; the slots that had one."""
        if not rows:
            return set()
        existing = set(
            session.scalars(select(CycleRow.cycle_time).where(CycleRow.cycle_time.in_(list(rows))))
        )
        now = self.clock.now()
        new_rows = [
            {"cycle_time": t, "trigger": "backfill", "started_at": now, "finished_at": now,
             "error": None, **values}
            for t, values in rows.items()
            if t not in existing
        ]  # fmt: skip
        if new_rows:
            session.execute(CycleRow.__table__.insert(), new_rows)
        return existing

    # ----------------------------------------------------------------- jobs

    def _job(
        self,
        kind: str,
        start: datetime,
        end: datetime,
        interval: timedelta,
        total: int,
        agent_ids: Sequence[int] | None = None,
    ) -> int:
        key = f"{kind}:{start.isoformat()}:{end.isoformat()}:{format_interval(interval)}"
        agents = sorted(set(agent_ids)) if agent_ids is not None else None
        if agents is not None:
            digest = hashlib.sha256(",".join(map(str, agents)).encode()).hexdigest()[:16]
            key += f":agents={digest}"
        now = self.clock.now()

        def find_or_create() -> int:
            with self.db.write() as session:
                row = session.scalar(select(JobRow).where(JobRow.key == key))
                if row is None:
                    row = JobRow(
                        kind=kind,
                        key=key,
                        status="running",
                        total=total,
                        done=0,
                        params={
                            "start": start.isoformat(),
                            "end": end.isoformat(),
                            "interval": format_interval(interval),
                            "agents": agents,
                        },
                        created_at=now,
                        updated_at=now,
                    )
                    session.add(row)
                    session.flush()
                elif row.status != "running":
                    row.status = "running"
                    row.updated_at = now
                return row.id

        for _ in range(2):
            try:
                return self._db_call(find_or_create, f"job {key}")
            except IntegrityError:
                continue
        raise RuntimeError(f"could not create or find job {key}")

    def _update_job(self, job: int, status: str, error: str | None, done: int) -> None:
        def write() -> None:
            with self.db.write() as session:
                row = session.get(JobRow, job)
                if row is not None:
                    row.status, row.error, row.done = status, error, done
                    row.updated_at = self.clock.now()

        self._db_call(write, f"job {job} status")


def _chunk_cycles(
    cycles: list[tuple[datetime, int, int, int, int]], batches: dict[int, repo.AgentBatch]
) -> list[tuple[datetime, int, int, int, int]]:
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
        for t, total, *_ in cycles
    ]


class _Unstorable(Exception):
    """The database refused an agent's step (a value, not the connection)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@contextmanager
def _relaxed_gc() -> Iterator[None]:
    """A replay allocates millions of short-lived, acyclic objects (Decimals, records):
    freed by reference counting, they only make the cyclic collector rescan everything
    alive. Collect less often during the replay (and leave what existed before it alone)."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(thresholds[0], 50_000), thresholds[1], thresholds[2])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


class _SpendTracker:
    """Daily LLM spend per agent during a backfill: read from SQL for the first cycle of a
    day, then carried in memory."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._days: dict[int, tuple[datetime, Decimal]] = {}

    def before(self, agent_id: int, cycle_time: datetime) -> Decimal:
        day = cycle_time.replace(hour=0, minute=0, second=0, microsecond=0)
        known = self._days.get(agent_id)
        if known is None or known[0] != day:
            if cycle_time == day:
                total = ZERO
            else:
                with self.db.read() as session:
                    total = repo.spent_today(session, cycle_time, [agent_id]).get(agent_id, ZERO)
            self._days[agent_id] = (day, total)
            return total
        return known[1]

    def add(self, agent_id: int, cycle_time: datetime, cost: Decimal | None) -> None:
        if cost:
            day, total = self._days.get(agent_id, (cycle_time, ZERO))
            self._days[agent_id] = (day, total + cost)


def _recount(session: Any, row: CycleRow, total: int) -> None:
    row.decisions = (
        session.scalar(
            select(func.count())
            .select_from(DecisionRow)
            .where(DecisionRow.cycle_time == row.cycle_time)
        )
        or 0
    )
    row.fallbacks = (
        session.scalar(
            select(func.count())
            .select_from(DecisionRow)
            .where(DecisionRow.cycle_time == row.cycle_time, DecisionRow.fallback)
        )
        or 0
    )
    row.trades = (
        session.scalar(
            select(func.count()).select_from(TradeRow).where(TradeRow.executed_at == row.cycle_time)
        )
        or 0
    )
    row.skipped = max(total - row.decisions, 0)
