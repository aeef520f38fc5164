"""Backfill jobs requested over HTTP: a ``jobs`` row with a cursor, worked through in
chunks that each fit a host's time limit. On Azure a queue message carries the job id from
chunk to chunk (``function_app.py``); locally the same code runs in a background thread."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import OperationalError

from race.bootstrap import App
from race.domain import jobs as status
from race.domain.timeutil import format_interval, parse_interval, parse_iso
from race.engine import BackfillRefused, BackfillReport, check_backfill_interval
from race.store import jobs as job_rows
from race.store.database import DatabaseError

log = logging.getLogger("race.jobs")

MAX_BACKFILL_CYCLES = 200_000
"""A request for more cycles than this is refused (about 23 years hourly)."""
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
"""Backfills start at or after the Unix epoch (the anchor of the decision grid)…"""
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
"""…and end before this: far enough for any real range, far from ``datetime``'s limits."""
MAX_INTERVAL = timedelta(days=31)
"""The longest decision interval a backfill accepts."""
BACKFILL_FIELDS = ("start", "end", "interval")
BACKFILL = "backfill"
"""The ``jobs.kind`` of a backfill."""


class UnknownJobError(LookupError):
    """No backfill job with that id."""


def check_time_range(value: datetime, field: str) -> datetime:
    """``value`` if it lies in [EARLIEST, LATEST), else ``ValueError`` naming ``field``."""
    if not EARLIEST <= value < LATEST:
        raise ValueError(
            f"{field} {value.isoformat()} is out of range: use a time from "
            f"{EARLIEST.date().isoformat()} to before {LATEST.date().isoformat()}"
        )
    return value


def _interval(text: str) -> timedelta:
    too_long = f"interval {text[:64]!r} is too long: at most {format_interval(MAX_INTERVAL)}"
    try:
        step = parse_interval(text)
    except OverflowError:  # more days than ``timedelta`` holds
        raise ValueError(too_long) from None
    if step > MAX_INTERVAL:
        raise ValueError(too_long)
    return check_backfill_interval(step)


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
        """From request text; ``ValueError`` naming the bad field. Times outside
        [:data:`EARLIEST`, :data:`LATEST`) and intervals over :data:`MAX_INTERVAL` are
        refused here, before any work (the decision grid would overflow ``datetime``)."""
        first = check_time_range(_time(start, "start"), "start")
        last = check_time_range(_time(end, "end"), "end")
        step = _interval(interval)
        if last < first:
            raise ValueError(f"end {last.isoformat()} is before start {first.isoformat()}")
        if (last - first) / step > MAX_BACKFILL_CYCLES:
            raise ValueError(
                f"range holds more than {MAX_BACKFILL_CYCLES:,} cycles at {interval}: split it"
            )
        agents = None if agent_ids is None else tuple(sorted({int(a) for a in agent_ids}))
        return cls(first, last, step, agents)


def _time(text: str, field: str) -> datetime:
    try:
        return parse_iso(text, field=field)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is past year 9999 in UTC
        raise ValueError(f"{field} {text[:64]!r} is out of range") from None


def parse_backfill_request(
    body: bytes | str | Mapping[str, Any] | None, *, now: datetime | None = None
) -> BackfillSpec:
    """The backfill a request asks for: a JSON object ``{start, end, interval}`` (ISO-8601
    times; ``interval`` like ``15m``, ``1h``, ``1d``, default ``1h``). The one parser of both
    the API's ``POST /api/admin/backfills`` and the Functions ``start_backfill``;
    ``ValueError`` naming the bad field. With ``now``, an ``end`` after it is refused: a
    replay runs only over times that have passed (it would move every portfolio past now,
    and the live cycles would then skip them)."""
    if isinstance(body, bytes | str):
        try:
            data: Any = json.loads(body or "{}")
        except ValueError:
            raise ValueError("body must be a JSON object: {start, end, interval}") from None
    else:
        data = {} if body is None else body
    if not isinstance(data, Mapping):
        raise ValueError("body must be a JSON object: {start, end, interval}")
    unknown = sorted(str(key)[:40] for key in data if key not in BACKFILL_FIELDS)
    if unknown:
        raise ValueError(
            f"unknown field(s) {', '.join(unknown)}: the body is {{start, end, interval}}"
        )
    values: dict[str, str] = {}
    for field in BACKFILL_FIELDS:
        value = data.get(field, "1h" if field == "interval" else None)
        if value is None:
            raise ValueError(f"{field} is required")
        if not isinstance(value, str) or len(value) > 64:
            raise ValueError(
                f"{field} must be a string of at most 64 characters"
                + (", e.g. 1h" if field == "interval" else ", an ISO-8601 date/time")
            )
        values[field] = value
    spec = BackfillSpec.parse(values["start"], values["end"], values["interval"])
    if now is not None and spec.end > now:
        raise ValueError(
            f"end {spec.end.isoformat()} is in the future (now {now.isoformat()}): a backfill "
            "replays only times that have passed"
        )
    return spec


def create_backfill_job(app: App, spec: BackfillSpec) -> int:
    """The job row of this backfill: created, or the existing one for the same parameters
    (a repeated request finds the same job and its progress)."""
    return app.engine.backfill_job(spec.start, spec.end, spec.interval, spec.agent_ids)


def _params_of(app: App, job_id: int) -> dict[str, Any]:
    with app.db.read() as session:
        row = job_rows.by_id(session, job_id)
        if row is None or row.kind != BACKFILL:
            raise UnknownJobError(f"no backfill job {job_id}")
        return dict(row.params or {})


def _spec_of(app: App, job_id: int) -> BackfillSpec:
    params = _params_of(app, job_id)
    return BackfillSpec.parse(
        params["start"], params["end"], params["interval"], params.get("agents")
    )


def _engine_of(app: App, job_id: int) -> Any:
    """The engine of the job's race: the live one, or a backtest started by ``POST
    /api/admin/races`` (:mod:`race.backtest`). Other races' jobs (``demo``'s) are resumed
    by the command that runs that race, never by a runner."""
    race_id = _params_of(app, job_id).get("race")
    if race_id is None:
        return app.engine
    from race.backtest import runner_engine

    engine = runner_engine(app, int(race_id))
    if engine is None:
        raise UnknownJobError(f"backfill job {job_id} is of race {race_id}, not live")
    return engine


def _mark_failed(app: App, job_id: int, error: BaseException) -> None:
    with app.db.write() as session:
        job_rows.set_status(
            session, job_id, status.FAILED, f"{error.__class__.__name__}: {error}", app.clock.now()
        )


async def run_backfill_chunk(app: App, job_id: int, max_seconds: float) -> BackfillReport:
    """Advance the job by about ``max_seconds`` of work (at least one chunk). The report's
    ``finished`` says whether more calls are needed."""
    try:
        spec = _spec_of(app, job_id)
        report = await _engine_of(app, job_id).backfill(
            spec.start,
            spec.end,
            spec.interval,
            max_seconds=max_seconds,
            agent_ids=spec.agent_ids,
        )
    except UnknownJobError:
        raise
    except BackfillRefused as exc:
        # Another backfill holds the lease: this job stays unfinished, a later call goes on.
        log.warning("backfill job %s waits: %s", job_id, exc, extra={"job_id": job_id})
        return _unfinished_report(app, job_id, str(exc))
    except Exception as exc:
        log.exception("backfill job %s failed", job_id, extra={"job_id": job_id})
        _mark_failed(app, job_id, exc)
        raise
    if report.job_id != job_id:  # same parameters, same key: cannot differ
        raise RuntimeError(f"job {job_id} resolved to job {report.job_id}")
    return report


def _unfinished_report(app: App, job_id: int, refused: str) -> BackfillReport:
    spec = _spec_of(app, job_id)
    with app.db.read() as session:
        total, done = job_rows.progress(session, job_id)
    return BackfillReport(
        job_id=job_id,
        start=spec.start,
        end=spec.end,
        interval=spec.interval,
        total_cycles=total,
        done_cycles=done,
        refused=refused,
    )


async def run_backfill_job(app: App, job_id: int, chunk_seconds: float = 60.0) -> BackfillReport:
    """Work a job to the end, chunk after chunk (the local, in-process runner). A chunk
    that could not start (another backfill holds the lease) is tried again a second later."""
    while True:
        report = await run_backfill_chunk(app, job_id, chunk_seconds)
        if report.refused is not None:
            await asyncio.sleep(1.0)
        if report.finished:
            log.info(
                "backfill job %s finished: %d decisions",
                job_id,
                report.decisions,
                extra={"job_id": job_id},
            )
            return report


def alive_after(app: App) -> datetime:
    """A ``running`` job whose row was updated after this is being worked by a live process
    (a backfill commits its cursor at least every RACE_BACKFILL_CHUNK_SECONDS)."""
    quiet = max(60.0, 6 * app.settings.backfill_chunk_seconds)
    return app.clock.now() - timedelta(seconds=quiet)


def unfinished_jobs(app: App) -> list[int]:
    """Backfill jobs left with work to do: queued, or running when a process stopped — not
    those another process is working right now (its cursor moved lately), nor another
    race's that a terminal started (only jobs handed to a runner are resumed here)."""
    with app.db.read() as session:
        rows = job_rows.unfinished(session, BACKFILL, live_only=True)
    recent = alive_after(app)
    found = []
    for job_id, state, updated_at in rows:
        if state == status.RUNNING and updated_at is not None and updated_at > recent:
            log.info(
                "backfill job %s is being worked elsewhere (updated %s): left to it",
                job_id,
                updated_at.isoformat(),
                extra={"job_id": job_id},
            )
            continue
        found.append(job_id)
    return found


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

    def resume_unfinished(self) -> list[int]:
        """Start every unfinished backfill job again; each goes on from its cursor (the
        chunks it committed stay done). Returns the job ids. With the database unreachable
        nothing is resumed (logged): call again once it is back."""
        try:
            jobs = unfinished_jobs(self.app)
        except (DatabaseError, OperationalError) as exc:
            log.warning("unfinished backfill jobs not resumed: %s", self.app.db.unavailable(exc))
            return []
        for job_id in jobs:
            if self.submit(job_id):
                log.info(
                    "resuming backfill job %s from its cursor", job_id, extra={"job_id": job_id}
                )
        return jobs

    def running(self) -> list[int]:
        """Jobs whose thread is still working."""
        with self._lock:
            return [job for job, thread in self._running.items() if thread.is_alive()]

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
