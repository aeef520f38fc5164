"""Backfill: the cycle at every interval of a past range, over stored candles, as a job
that resumes where it stopped (its row holds the cursor) under the backfill lease."""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from race.domain import jobs
from race.domain.timeutil import ensure_utc, format_interval, grid
from race.logging_setup import log_context, new_correlation_id
from race.store import candles as candle_rows
from race.store import jobs as job_rows
from race.store import lease as leases
from race.usecases import backfill_lease
from race.usecases.deps import Deps
from race.usecases.guards import check_backfill_interval
from race.usecases.replay import ChunkLimits, replay
from race.usecases.reports import BackfillReport

BACKFILL = "backfill"


async def backfill(
    deps: Deps,
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
    limits = ChunkLimits(
        cycles=chunk_cycles or deps.settings.backfill_chunk_cycles,
        seconds=chunk_seconds or deps.settings.backfill_chunk_seconds,
        max_seconds=max_seconds,
    )
    with (
        log_context(correlation_id=new_correlation_id(), trigger="backfill"),
        _relaxed_gc(),
    ):
        return await _backfill(deps, start, end, interval, on_progress, limits, agent_ids)


async def _backfill(
    deps: Deps,
    start: datetime,
    end: datetime,
    interval: timedelta,
    on_progress: Callable[[int, int], None] | None,
    limits: ChunkLimits,
    agent_ids: Sequence[int] | None,
) -> BackfillReport:
    start, end = ensure_utc(start, field="start"), ensure_utc(end, field="end")
    times = _times(deps, start, end, interval)
    job = _job(deps, start, end, interval, len(times), agent_ids)
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
        update_job(deps, job, jobs.COMPLETED, None, 0)
        return report
    holder = leases.new_holder()
    description = (
        f"backfill job {job} ({start.isoformat()} → {end.isoformat()} every "
        f"{format_interval(interval)})"
    )
    await backfill_lease.take(deps, job, holder, description, report)
    try:
        await replay(deps, job, holder, report, times, interval, on_progress, limits, agent_ids)
        if report.finished:
            update_job(deps, job, jobs.COMPLETED, None, len(times))
        return report
    finally:
        backfill_lease.release(deps, holder)


def backfill_job(
    deps: Deps,
    start: datetime,
    end: datetime,
    interval: timedelta,
    agent_ids: Sequence[int] | None = None,
) -> int:
    """The job row of this backfill (created, or found when the same range was asked
    before), without running it: for callers that hand the work to a queue."""
    start, end = ensure_utc(start, field="start"), ensure_utc(end, field="end")
    times = _times(deps, start, end, interval)
    return _job(deps, start, end, interval, len(times), agent_ids, jobs.QUEUED, handed=True)


def _times(deps: Deps, start: datetime, end: datetime, interval: timedelta) -> list[datetime]:
    """The range's decision times, once the range is checked (and has candles)."""
    if end < start:
        raise ValueError(f"backfill end {end.isoformat()} is before start {start.isoformat()}")
    check_backfill_interval(interval)
    times = grid(start, end, interval)
    if times:
        require_candles(deps, times[0], times[-1])
    return times


def require_candles(deps: Deps, first: datetime, last: datetime) -> None:
    """Refuse up front a backfill whose range holds no candle to decide on (every
    cycle would be skipped as stale)."""
    age = deps.settings.max_price_age or timedelta(0)
    with deps.uow.read() as session:
        found = candle_rows.any_closed_between(session, first, last, age)
    if not found:
        raise ValueError(
            f"no candles stored from {first.isoformat()} to {last.isoformat()}: nothing "
            "to replay there (ingest that range first, or pick a range with candles)"
        )


def _job(
    deps: Deps,
    start: datetime,
    end: datetime,
    interval: timedelta,
    total: int,
    agent_ids: Sequence[int] | None = None,
    status: str = jobs.RUNNING,
    *,
    handed: bool = False,
) -> int:
    """``handed``: the job is handed to a job runner (an admin request, a queue), so a
    runner that starts later resumes it, whatever its race (docs/races.md)."""
    key = f"{BACKFILL}:{start.isoformat()}:{end.isoformat()}:{format_interval(interval)}"
    agents = sorted(set(agent_ids)) if agent_ids is not None else None
    if agents is not None:
        digest = hashlib.sha256(",".join(map(str, agents)).encode()).hexdigest()[:16]
        key += f":agents={digest}"
    now = deps.clock.now()
    params: dict[str, Any] = {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "interval": format_interval(interval),
        "agents": agents,
    }
    if deps.race_id is not None:  # a race other than the live one: its own job
        key += f":race={deps.race_id}"
        params["race"] = deps.race_id
    if handed:
        params["handed"] = True

    def find_or_create() -> int:
        with deps.uow.write() as session:
            return job_rows.find_or_create(session, BACKFILL, key, total, params, now, status)

    for _ in range(2):
        try:
            return deps.uow.run(find_or_create, f"job {key}")
        except IntegrityError:
            continue
    raise RuntimeError(f"could not create or find job {key}")


def update_job(deps: Deps, job: int, status: str, error: str | None, done: int) -> None:
    """The job's status, error and count of done cycles."""

    def write() -> None:
        with deps.uow.write() as session:
            job_rows.set_status(session, job, status, error, deps.clock.now(), done)

    deps.uow.run(write, f"job {job} status")


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
