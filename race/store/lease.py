"""Named leases in the database: only the holder of a lease does the work it guards.

A backfill holds the ``backfill`` lease while it writes (renewed with every chunk it
commits, in the chunk's transaction), so overlapping backfills take turns instead of racing
for the same portfolios. A lease is taken over once it expired, or at once when its holder
is a process of this host that is gone (killed, crashed).
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from race.store.tables import LeaseRow

BACKFILL = "backfill"


class BackfillRefused(RuntimeError):
    """Another backfill holds the lease (and kept it past ``RACE_BACKFILL_WAIT_SECONDS``),
    or kept writing the same portfolios: the message is one line naming it."""


class LeaseLost(RuntimeError):
    """The lease was taken over by another holder (it had expired)."""


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a lease, as read from its row."""

    holder: str
    job_id: int | None
    description: str | None
    acquired_at: datetime
    expires_at: datetime


def new_holder() -> str:
    """``host:pid:token``: one per run, so two runs of one process are two holders."""
    return f"{socket.gethostname()[:120]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def holder_gone(holder: str) -> bool:
    """Whether ``holder`` names a process of this host that no longer runs."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname()[:120] or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. PermissionError: it runs, as another user
        return False
    return False


def try_acquire(
    session: Session,
    name: str,
    holder: str,
    *,
    job_id: int | None,
    description: str,
    now: datetime,
    ttl: timedelta,
) -> LeaseHolder | None:
    """Take (or renew) the lease in this transaction. Returns None when taken, else who
    holds it. A concurrent first insert raises ``IntegrityError`` (the caller retries)."""
    row = session.scalar(select(LeaseRow).where(LeaseRow.name == name).with_for_update())
    if row is None:
        session.add(
            LeaseRow(
                name=name,
                holder=holder,
                job_id=job_id,
                description=description[:400],
                acquired_at=now,
                expires_at=now + ttl,
            )
        )
        session.flush()
        return None
    if row.holder != holder and row.expires_at > now and not holder_gone(row.holder):
        return LeaseHolder(row.holder, row.job_id, row.description, row.acquired_at, row.expires_at)
    if row.holder != holder:
        row.acquired_at = now
    row.holder, row.job_id, row.description = holder, job_id, description[:400]
    row.expires_at = now + ttl
    return None


def renew(session: Session, name: str, holder: str, *, now: datetime, ttl: timedelta) -> None:
    """Extend the lease in this transaction; :class:`LeaseLost` when another holds it."""
    moved = session.execute(
        update(LeaseRow)
        .where(LeaseRow.name == name, LeaseRow.holder == holder)
        .values(expires_at=now + ttl)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        current = session.scalar(select(LeaseRow.holder).where(LeaseRow.name == name))
        raise LeaseLost(f"the {name} lease was taken over by {current or 'nobody'}")


def release(session: Session, name: str, holder: str) -> None:
    session.execute(delete(LeaseRow).where(LeaseRow.name == name, LeaseRow.holder == holder))
