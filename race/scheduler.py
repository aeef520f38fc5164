"""The schedules of the race, in-process (``python -m race serve``): ingestion, decisions
and (unless ``RACE_ML_RETRAIN_SCHEDULE=off``) the ML models' retraining — the same NCRONTAB
strings the Functions timers use. Each run happens in a worker thread with its own event
loop, so the API keeps answering while a cycle or an ingestion works; a run never overlaps
the previous run of the same schedule (a slow one makes the next slot skip, logged)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from race.bootstrap import App
from race.schedule import next_time, scheduled_time, validate
from race.services import ingest_and_mark

log = logging.getLogger("race.scheduler")


@dataclass(frozen=True)
class ScheduledJob:
    name: str
    expression: str
    work: Callable[[datetime], Awaitable[object]]
    """Called with the slot time the run belongs to."""


def race_jobs(app: App) -> list[ScheduledJob]:
    async def ingest(slot: datetime) -> object:
        return await ingest_and_mark(app)

    async def cycle(slot: datetime) -> object:
        return await app.engine.run_scheduled(slot, trigger="schedule")

    async def retrain_ml(slot: datetime) -> object:
        from race.ml_service import retrain  # scikit-learn: imported when a slot trains

        return retrain(app, slot)

    jobs = [
        ScheduledJob("ingest_market", validate(app.settings.ingest_schedule), ingest),
        ScheduledJob("run_cycle", validate(app.settings.decision_schedule), cycle),
    ]
    if app.settings.ml_retrain_schedule is not None:
        jobs.append(
            ScheduledJob("retrain_ml", validate(app.settings.ml_retrain_schedule), retrain_ml)
        )
    return jobs


def _outcome(result: object) -> str:
    """``ok``, or ``skipped: why`` for a decision cycle skipped on a stale market view."""
    cycle = getattr(result, "cycle", None)
    if getattr(cycle, "status", None) == "skipped":
        return f"skipped: {cycle.reason}"  # type: ignore[union-attr]
    return "ok"


class Scheduler:
    def __init__(self, app: App, jobs: list[ScheduledJob] | None = None) -> None:
        self.app = app
        self.jobs = jobs if jobs is not None else race_jobs(app)
        self._stop = asyncio.Event()
        self.runs: list[tuple[str, datetime, str]] = []
        """(job, slot, outcome) of every run, for logs and tests."""

    def stop(self) -> None:
        self._stop.set()

    async def _sleep_until(self, when: datetime) -> bool:
        """Wait for ``when`` (or a stop). Returns False when stopped."""
        while not self._stop.is_set():
            remaining = (when - self.app.clock.now()).total_seconds()
            if remaining <= 0:
                return True
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=min(remaining, 30.0))
            except TimeoutError:
                continue
        return False

    async def _loop(self, job: ScheduledJob) -> None:
        while not self._stop.is_set():
            slot = next_time(job.expression, self.app.clock.now())
            if not await self._sleep_until(slot):
                return
            slot = scheduled_time(job.expression, self.app.clock.now())
            log.info("%s: run for %s", job.name, slot.isoformat())
            try:
                result = await asyncio.to_thread(asyncio.run, job.work(slot))  # type: ignore[arg-type]
            except Exception as exc:
                log.error("%s for %s failed: %s", job.name, slot.isoformat(), exc)
                self.runs.append((job.name, slot, f"failed: {exc}"))
            else:
                self.runs.append((job.name, slot, _outcome(result)))
            late = scheduled_time(job.expression, self.app.clock.now())
            if late > slot:
                log.warning(
                    "%s took past the next slot (%s): that slot is skipped",
                    job.name,
                    late.isoformat(),
                )

    async def run(self) -> None:
        await asyncio.gather(*(self._loop(job) for job in self.jobs))
