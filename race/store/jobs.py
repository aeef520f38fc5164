"""The ``jobs`` table: find, create and move job rows (on a SQLAlchemy session; the
statuses are :mod:`race.domain.jobs`' vocabulary, chosen by the callers)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from race.domain import jobs as status
from race.store.tables import JobRow

ERROR_CHARS = 2000
"""A job's stored error is cut to this many characters."""


@dataclass(frozen=True)
class NewJob:
    """What a job row is created with."""

    kind: str
    key: str
    params: dict[str, Any]
    status: str
    cursor: datetime | None = None
    total: int = 0
    done: int = 0


def by_key(session: Session, key: str) -> JobRow | None:
    return session.scalar(select(JobRow).where(JobRow.key == key))


def by_id(session: Session, job_id: int) -> JobRow | None:
    return session.get(JobRow, job_id)


def add(session: Session, job: NewJob, now: datetime) -> JobRow:
    """Insert a job row (flushed: its id is known). A job with the same key raises
    ``IntegrityError`` when the transaction flushes."""
    row = JobRow(
        kind=job.kind,
        key=job.key,
        params=job.params,
        status=job.status,
        cursor=job.cursor,
        total=job.total,
        done=job.done,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return row


def put_finished(session: Session, job: NewJob, now: datetime) -> None:
    """Record a finished job under its key: created, or its params and status replaced (and
    its error cleared) when the key exists."""
    row = by_key(session, job.key)
    if row is None:
        session.add(
            JobRow(
                kind=job.kind,
                key=job.key,
                params=job.params,
                status=job.status,
                cursor=job.cursor,
                total=job.total,
                done=job.done,
                created_at=now,
                updated_at=now,
            )
        )
        return
    row.params = job.params
    row.status = job.status
    row.error = None
    row.updated_at = now


def find_or_create(
    session: Session,
    kind: str,
    key: str,
    total: int,
    params: dict[str, Any],
    now: datetime,
    new_status: str = status.RUNNING,
) -> int:
    """The id of the job named ``key``: created with ``new_status`` (``running`` for a run that
    starts now, ``queued`` for one handed to a queue), or found and set to ``new_status`` again
    unless a worker has it ``running``. A concurrent first insert raises ``IntegrityError``
    (the caller retries)."""
    row = by_key(session, key)
    if row is None:
        row = add(session, NewJob(kind, key, params, new_status, total=total), now)
    elif row.status != status.RUNNING and row.status != new_status:
        row.status = new_status
        row.updated_at = now
    return row.id


def set_status(
    session: Session,
    job_id: int,
    new_status: str,
    error: str | None,
    now: datetime,
    done: int | None = None,
) -> None:
    """Set a job's status and error (cut to :data:`ERROR_CHARS`), and its count of done
    steps when given; no row, nothing."""
    row = by_id(session, job_id)
    if row is not None:
        row.status = new_status
        row.error = error[:ERROR_CHARS] if error else None
        if done is not None:
            row.done = done
        row.updated_at = now


def plan_steps(session: Session, job_id: int, steps: int, now: datetime) -> None:
    """A run is about to work ``steps`` more steps of the job: its total becomes what is
    done plus those, and with any step to work it is ``running``."""
    row = by_id(session, job_id)
    if row is not None:
        row.total = (row.done or 0) + steps
        row.status = status.RUNNING if steps else row.status
        row.updated_at = now


def advance(
    session: Session,
    job_id: int,
    cursor: datetime,
    *,
    last_step: bool,
    end: datetime | None,
    now: datetime,
) -> None:
    """One more step done, up to ``cursor`` (the cursor never moves back); the status per
    :func:`race.domain.jobs.after_step` (``end`` None: open-ended, always reached)."""
    row = by_id(session, job_id)
    if row is None:
        return
    row.cursor = max(row.cursor, cursor) if row.cursor is not None else cursor
    row.done = (row.done or 0) + 1
    reached = end is None or row.cursor >= end
    row.status = status.after_step(last_step=last_step, reached_end=reached)
    row.error = None
    row.updated_at = now


def progress(session: Session, job_id: int) -> tuple[int, int]:
    """``(total, done)`` of a job; ``(0, 0)`` when there is no such row."""
    row = by_id(session, job_id)
    return (row.total, row.done) if row is not None else (0, 0)


def unfinished(
    session: Session, kind: str, *, live_only: bool = False
) -> Sequence[tuple[int, str, datetime | None]]:
    """``(id, status, updated_at)`` of the jobs of ``kind`` still to be worked, by id
    (``live_only``: not the jobs of another race, whose keys name it: ``…:race=N`` — unless
    they were handed to a job runner, ``params["handed"]``: an admin request's backtest)."""
    query = select(JobRow.id, JobRow.status, JobRow.updated_at, JobRow.key, JobRow.params).where(
        JobRow.kind == kind, JobRow.status.in_(status.UNFINISHED)
    )
    return [
        (job_id, state, updated_at)
        for job_id, state, updated_at, key, params in session.execute(query.order_by(JobRow.id))
        if not live_only
        or ":race=" not in key
        or (isinstance(params, dict) and params.get("handed") is True)
    ]


def advance_cursor(
    session: Session, job: int, cursor: datetime, done: int, total: int, now: datetime
) -> None:
    """A backfill job's cursor after a committed chunk: ``completed`` once all is done."""
    row = by_id(session, job)
    if row is not None:
        row.cursor = cursor
        row.done = done
        row.status = status.COMPLETED if done >= total else status.RUNNING
        row.updated_at = now
