"""Backfill jobs requested over HTTP: a ``jobs`` row with a cursor, worked through in
chunks that each fit a host's time limit. On Azure a queue message carries the job id from
chunk to chunk (``function_app.py``); locally the same code runs in a background thread."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from race.bootstrap import App
from race.domain.timeutil import parse_interval, parse_iso
from race.engine import BackfillReport
from race.store.tables import JobRow

log = logging.getLogger("race.jobs")

MAX_BACKFILL_CYCLES = 200_000
"""A request for more cycles than this is refused (about 23 years hourly)."""


class UnknownJobError(LookupError):
    """No backfill job with that id."""


@dataclass(frozen=True)
class BackfillSpec:
    start: datetime
    end: datetime
    interval: timedelta
    agent_ids: tuple[int, ...] | None = None
    """Only these agents (None: every active agent)."""

    @classmethod
    def parse(
        cls, start: str, end: str, interval: str, agent_ids: Sequence[int] | None = None
    ) -> BackfillSpec:
        """From request text; ``ValueError`` naming the bad field."""
        first = parse_iso(start, field="start")
        last = parse_iso(end, field="end")
        step = parse_interval(interval)
        if last < first:
            raise ValueError(f"end {last.isoformat()} is before start {first.isoformat()}")
        if (last - first) / step > MAX_BACKFILL_CYCLES:
            raise ValueError(
                f"range holds more than {MAX_BACKFILL_CYCLES:,} cycles at {interval}: split it"
            )
        agents = None if agent_ids is None else tuple(sorted({int(a) for a in agent_ids}))
        return cls(first, last, step, agents)


def create_backfill_job(app: App, spec: BackfillSpec) -> int:
    """The job row of this backfill: created, or the existing one for the same parameters
    (a repeated request finds the same job and its progress)."""
    return app.engine.backfill_job(spec.start, spec.end, spec.interval, spec.agent_ids)


def _spec_of(app: App, job_id: int) -> BackfillSpec:
    with app.db.read() as session:
        row = session.get(JobRow, job_id)
        if row is None or row.kind != "backfill":
            raise UnknownJobError(f"no backfill job {job_id}")
        params = dict(row.params or {})
    return BackfillSpec.parse(
        params["start"], params["end"], params["interval"], params.get("agents")
    )


def _mark_failed(app: App, job_id: int, error: BaseException) -> None:
    with app.db.write() as session:
        row = session.get(JobRow, job_id)
        if row is not None:
            row.status = "failed"
            row.error = f"{error.__class__.__name__}: {error}"[:2000]
            row.updated_at = app.clock.now()


async def run_backfill_chunk(app: App, job_id: int, max_seconds: float) -> BackfillReport:
    """Advance the job by about ``max_seconds`` of work (at least one chunk). The report's
    ``finished`` says whether more calls are needed."""
    try:
        spec = _spec_of(app, job_id)
        report = await app.engine.backfill(
            spec.start,
            spec.end,
            spec.interval,
            max_seconds=max_seconds,
            agent_ids=spec.agent_ids,
        )
    except UnknownJobError:
        raise
    except Exception as exc:
        log.exception("backfill job %s failed", job_id, extra={"job_id": job_id})
        _mark_failed(app, job_id, exc)
        raise
    if report.job_id != job_id:  # same parameters, same key: cannot differ
        raise RuntimeError(f"job {job_id} resolved to job {report.job_id}")
    return report


async def run_backfill_job(app: App, job_id: int, chunk_seconds: float = 60.0) -> BackfillReport:
    """Work a job to the end, chunk after chunk (the local, in-process runner)."""
    while True:
        report = await run_backfill_chunk(app, job_id, chunk_seconds)
        if report.finished:
            log.info(
                "backfill job %s finished: %d decisions",
                job_id,
                report.decisions,
                extra={"job_id": job_id},
            )
            return report


class LocalJobRunner:
    """Runs backfill jobs in background threads of this process, one thread per job."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._running: dict[int, threading.Thread] = {}

    def submit(self, job_id: int) -> bool:
        """Start the job unless it already runs here. Returns whether it was started."""
        with self._lock:
            thread = self._running.get(job_id)
            if thread is not None and thread.is_alive():
                return False
            thread = threading.Thread(
                target=self._run, args=(job_id,), daemon=True, name=f"backfill-job-{job_id}"
            )
            self._running[job_id] = thread
            thread.start()
            return True

    def _run(self, job_id: int) -> None:
        try:
            asyncio.run(run_backfill_job(self.app, job_id))
        except Exception:
            log.warning(
                "backfill job %s stopped with an error (see its status)",
                job_id,
                extra={"job_id": job_id},
            )

    def join(self, timeout: float | None = None) -> None:
        with self._lock:
            threads = list(self._running.values())
        for thread in threads:
            thread.join(timeout)
