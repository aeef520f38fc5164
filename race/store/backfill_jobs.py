"""Backfill job rows (``jobs`` table, kind ``backfill``) and what a backfill reads first.

Statuses come from :mod:`race.domain.jobs`. Each function works in the caller's session
(the caller's unit of work owns the transaction)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from race.domain import jobs
from race.store.tables import CandleRow, JobRow


def find_or_create(
    session: Session,
    kind: str,
    key: str,
    total: int,
    params: dict[str, Any],
    now: datetime,
    status: str = jobs.RUNNING,
) -> int:
    """The id of the job named ``key``: created with ``status`` (``running`` for a run that
    starts now, ``queued`` for one handed to a queue), or found and set to ``status`` again
    unless a worker has it ``running``. A concurrent first insert raises ``IntegrityError``
    (the caller retries)."""
    row = session.scalar(select(JobRow).where(JobRow.key == key))
    if row is None:
        row = JobRow(
            kind=kind,
            key=key,
            status=status,
            total=total,
            done=0,
            params=params,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
    elif row.status != jobs.RUNNING and row.status != status:
        row.status = status
        row.updated_at = now
    return row.id


def set_status(
    session: Session, job: int, status: str, error: str | None, done: int, now: datetime
) -> None:
    """The job's status, error and count of done cycles."""
    row = session.get(JobRow, job)
    if row is not None:
        row.status, row.error, row.done = status, error, done
        row.updated_at = now


def advance(
    session: Session, job: int, cursor: datetime, done: int, total: int, now: datetime
) -> None:
    """The job's cursor after a committed chunk: ``completed`` once all is done."""
    row = session.get(JobRow, job)
    if row is not None:
        row.cursor = cursor
        row.done = done
        row.status = jobs.COMPLETED if done >= total else jobs.RUNNING
        row.updated_at = now


def has_candles(session: Session, first: datetime, last: datetime, age: timedelta) -> bool:
    """Whether a candle closed in ``[first - age, last]``."""
    found = session.scalar(
        select(CandleRow.id)
        .where(CandleRow.close_time >= first - age, CandleRow.close_time <= last)
        .limit(1)
    )
    return found is not None
