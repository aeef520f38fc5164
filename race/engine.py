"""The race's entry point for its callers (timers, CLI, API, bench): :class:`RaceEngine`,
a thin facade over the use cases in :mod:`race.usecases` — run a cycle, run the scheduled
slot (catching up missed ones first), mark to market, backfill a range.

Every path ends in the same deciding pipeline (:mod:`race.usecases.deciding`: ask, judge
with :func:`race.domain.step.judge`, scrub) and the same writer
(:func:`race.store.repository.write_batches`), so a live cycle and a replayed one write the
same rows. Transactions and the one retry of transient database errors belong to the unit
of work (:mod:`race.store.unit_of_work`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from race.clock import Clock, SystemClock
from race.domain.agent import Agent, AgentSpec
from race.secrets import SecretPolicy
from race.settings import Settings
from race.store import repository as repo
from race.store.cycles import FINISHED
from race.store.database import Database
from race.store.lease import BackfillRefused
from race.store.unit_of_work import UnitOfWork, connection_lost
from race.telemetry import Telemetry
from race.usecases import backfill as backfilling
from race.usecases import catch_up, cycle, marking
from race.usecases.catch_up import MAX_CYCLE_ATTEMPTS, SCHEDULED_TRIGGERS
from race.usecases.cycle import CATCH_UP, STORE_FAILURE
from race.usecases.deciding import AgentBuilder, Deciding
from race.usecases.deps import Deps
from race.usecases.guards import MIN_BACKFILL_INTERVAL, check_backfill_interval, stale_reason
from race.usecases.reports import BackfillReport, CycleReport, ScheduledRun

__all__ = [
    "CATCH_UP",
    "FINISHED",
    "MAX_CYCLE_ATTEMPTS",
    "MIN_BACKFILL_INTERVAL",
    "SCHEDULED_TRIGGERS",
    "STORE_FAILURE",
    "AgentBuilder",
    "BackfillRefused",
    "BackfillReport",
    "CycleReport",
    "RaceEngine",
    "ScheduledRun",
    "check_backfill_interval",
    "connection_lost",
    "stale_reason",
]


class RaceEngine:
    """The use cases wired to one database, settings, clock, telemetry and agent builder."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        build_agent: AgentBuilder,
        *,
        clock: Clock | None = None,
        telemetry: Telemetry | None = None,
        race_id: int | None = None,
    ) -> None:
        """``race_id``: the race its cycles, backfills and marks act on (None: the live
        race); ``settings`` carry that race's rules."""
        self.db = db
        self.settings = settings
        self.clock = clock or SystemClock()
        self.race_id = race_id
        self.deps = Deps(
            uow=UnitOfWork(db, self.clock),
            settings=settings,
            clock=self.clock,
            telemetry=telemetry or Telemetry(),
            deciding=Deciding(settings, build_agent, self.clock),
            health=repo.HealthPolicy(settings.degraded_window, settings.degraded_threshold),
            race_id=race_id,
        )

    @property
    def telemetry(self) -> Telemetry:
        return self.deps.telemetry

    @telemetry.setter
    def telemetry(self, telemetry: Telemetry) -> None:
        self.deps.telemetry = telemetry

    @property
    def policy(self) -> SecretPolicy:
        """The secrets policy (an agent's own key joins it when the agent is built)."""
        return self.deps.policy

    @property
    def health(self) -> repo.HealthPolicy:
        return self.deps.health

    def agent_for(self, spec: AgentSpec) -> Agent | str:
        """The built agent, or why it could not be built (cached per spec)."""
        return self.deps.deciding.agent_for(spec)

    async def run_scheduled(self, slot: datetime, *, trigger: str = "schedule") -> ScheduledRun:
        """The decision timer's one entry point: the unfinished or missed cycles among the
        ``RACE_CATCH_UP_SLOTS`` slots before ``slot`` first, oldest first, then ``slot``
        (:func:`race.usecases.catch_up.run_scheduled`)."""
        return await catch_up.run_scheduled(self.deps, self.run_cycle, slot, trigger=trigger)

    async def run_cycle(
        self,
        cycle_time: datetime,
        *,
        trigger: str = "manual",
        agent_ids: Sequence[int] | None = None,
    ) -> CycleReport:
        """One decision cycle at ``cycle_time`` (the scheduled time T, not the wall clock)."""
        return await cycle.run_cycle(self.deps, cycle_time, trigger=trigger, agent_ids=agent_ids)

    def snapshot(self, at: datetime) -> int:
        """Mark every active portfolio to market at ``at`` (between decision cycles).
        Returns how many snapshots were written; existing ones are kept."""
        return self.mark(at)[0]

    def mark(self, at: datetime) -> tuple[int, str | None]:
        """:meth:`snapshot`, and why nothing was marked when the market view at ``at`` is
        stale (no asset with a price younger than ``RACE_MAX_PRICE_AGE``: no snapshot is
        written, the reason is logged and returned)."""
        return marking.mark(self.deps, at)

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
        every active agent (or the active ones among ``agent_ids``), in committed chunks
        that a later call resumes after (:func:`race.usecases.backfill.backfill`)."""
        return await backfilling.backfill(
            self.deps,
            start,
            end,
            interval,
            on_progress=on_progress,
            max_seconds=max_seconds,
            chunk_cycles=chunk_cycles,
            chunk_seconds=chunk_seconds,
            agent_ids=agent_ids,
        )

    def backfill_job(
        self,
        start: datetime,
        end: datetime,
        interval: timedelta,
        agent_ids: Sequence[int] | None = None,
    ) -> int:
        """The job row of this backfill (created, or found when the same range was asked
        before), without running it: for callers that hand the work to a queue."""
        return backfilling.backfill_job(self.deps, start, end, interval, agent_ids)

    def require_candles(self, first: datetime, last: datetime) -> None:
        """Refuse up front a backfill whose range holds no candle to decide on (every
        cycle would be skipped as stale)."""
        backfilling.require_candles(self.deps, first, last)
