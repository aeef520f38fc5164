"""The backfill lease: one backfill writes at a time; the others wait, then are refused."""

from __future__ import annotations

import asyncio
import time as _time
from datetime import timedelta

from sqlalchemy.exc import IntegrityError

from race.store import lease as leases
from race.store.lease import BackfillRefused
from race.usecases.deps import Deps, log
from race.usecases.reports import BackfillReport


def lease_ttl(deps: Deps) -> timedelta:
    """A holder renews with every chunk (at most ``RACE_BACKFILL_CHUNK_SECONDS`` of work
    plus one cycle): a lease not renewed for this long is taken over."""
    return timedelta(seconds=max(60.0, 6 * deps.settings.backfill_chunk_seconds))


async def take(deps: Deps, job: int, holder: str, description: str, report: BackfillReport) -> None:
    """Hold the backfill lease: wait (at most ``RACE_BACKFILL_WAIT_SECONDS``) while
    another backfill holds it, then refuse with one line naming that job."""
    wait = max(0.0, deps.settings.backfill_wait_seconds)
    began = _time.monotonic()
    announced = False

    def attempt() -> leases.LeaseHolder | None:
        with deps.uow.write() as session:
            return leases.try_acquire(
                session,
                leases.BACKFILL,
                holder,
                job_id=job,
                description=description,
                now=deps.clock.now(),
                ttl=lease_ttl(deps),
            )

    while True:
        try:
            busy = deps.uow.run(attempt, "backfill lease")
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


def release(deps: Deps, holder: str) -> None:
    """Give the lease back (a lease not given back expires on its own)."""

    def release_row() -> None:
        with deps.uow.write() as session:
            leases.release(session, leases.BACKFILL, holder)

    try:
        deps.uow.run(release_row, "backfill lease")
    except Exception as exc:  # it expires on its own
        log.warning("backfill lease not released (it expires on its own): %s", exc)
