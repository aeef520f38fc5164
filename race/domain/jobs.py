"""The one vocabulary of job statuses, for backfill and ingest jobs alike (``jobs.status``).

A job is ``queued`` when created and not yet worked, ``running`` while a process works it
(a process that stopped in the middle leaves it ``running``: it is resumed), ``completed``
when all of its work is done, ``partial`` when it finished but part of the work could not
be done (an ingest that reached no data for some assets), and ``failed`` when it stopped
with an error."""

from __future__ import annotations

from typing import Final

QUEUED: Final = "queued"
RUNNING: Final = "running"
COMPLETED: Final = "completed"
PARTIAL: Final = "partial"
FAILED: Final = "failed"

STATUSES: Final = (QUEUED, RUNNING, COMPLETED, PARTIAL, FAILED)
UNFINISHED: Final = (QUEUED, RUNNING)
"""Statuses that still have work to do."""
FINISHED: Final = (COMPLETED, PARTIAL, FAILED)


def after_step(*, last_step: bool, reached_end: bool) -> str:
    """The status of a job whose step just committed: still ``running`` before its last
    step; after it ``completed`` when the cursor reached the end asked for, else ``partial``
    (the rest of the range could not be had yet)."""
    if not last_step:
        return RUNNING
    return COMPLETED if reached_end else PARTIAL
