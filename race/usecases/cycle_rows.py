"""A cycle's row through a run: claimed (view pinned), skipped, finished, recounted, given
up. Each is one transaction of the unit of work; a race lost to another run's first insert
of the row is looked at again."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError

from race.store import cycles
from race.store import repository as repo
from race.store.database import DatabaseError
from race.usecases.deps import Deps, log
from race.usecases.reports import CycleReport


def skip(deps: Deps, cycle_time: datetime, trigger: str, total: int, reason: str) -> None:
    """Record the cycle as ``skipped`` with ``reason``: no decisions, no view pinned (a
    later run re-reads the market, late candles may have landed)."""

    def record() -> None:
        with deps.uow.write() as session:
            now = deps.clock.now()
            cycles.record_skipped(session, cycle_time, trigger, total, reason, now, deps.race_id)

    for _ in range(2):
        try:
            deps.uow.run(record, f"cycle {cycle_time.isoformat()} row")
            break
        except IntegrityError:
            continue  # another run created the row first: look again


def claim(
    deps: Deps,
    cycle_time: datetime,
    trigger: str,
    total: int,
    pin: repo.ViewPin,
    status: str,
    *,
    count_attempt: bool = True,
) -> repo.ViewPin:
    """Create the cycle's row, or pin the view on a row that has none; the view pinned on
    the row (:func:`race.store.cycles.claim`)."""

    def claim_row() -> repo.ViewPin:
        with deps.uow.write() as session:
            return cycles.claim(
                session,
                cycle_time,
                trigger,
                total,
                pin,
                status,
                count_attempt=count_attempt,
                now=deps.clock.now(),
                race_id=deps.race_id,
            )

    for _ in range(3):
        try:
            return deps.uow.run(claim_row, f"cycle {cycle_time.isoformat()} row")
        except IntegrityError:
            continue  # another run created the row first: read its pin
    raise DatabaseError(
        f"cycle {cycle_time.isoformat()} row keeps conflicting with other runs "
        f"at RACE_DATABASE_URL={deps.uow.db.describe()}"
    )


def finish(deps: Deps, cycle_time: datetime, total: int, report: CycleReport) -> None:
    """A run of every agent ended: the row's counts, status and errors."""

    def finish_row() -> None:
        with deps.uow.write() as session:
            cycles.finish(
                session,
                cycle_time,
                total,
                report.status,
                len(report.skipped),
                report.errors,
                deps.clock.now(),
                deps.race_id,
            )

    deps.uow.run(finish_row, f"cycle {cycle_time.isoformat()} row")


def recount(deps: Deps, cycle_time: datetime) -> None:
    """After a run of chosen agents: the row's counts (its status stays)."""

    def recount_row() -> None:
        with deps.uow.write() as session:
            cycles.recount_row(session, cycle_time, deps.race_id)

    deps.uow.run(recount_row, f"cycle {cycle_time.isoformat()} row")


def give_up(deps: Deps, cycle_time: datetime) -> None:
    """Finish a slot that failed ``MAX_CYCLE_ATTEMPTS`` runs: status ``failed``, its
    decisions counted, why in its error; catch-up no longer retries it."""

    def finish_row() -> str | None:
        with deps.uow.write() as session:
            return cycles.give_up(session, cycle_time, deps.redact, deps.clock.now(), deps.race_id)

    reason = deps.uow.run(finish_row, f"cycle {cycle_time.isoformat()} give-up")
    if reason is not None:
        log.error(
            "cycle %s %s: it is finished as failed and no longer caught up",
            cycle_time.isoformat(),
            reason,
            extra={"cycle_id": cycle_time.isoformat()},
        )
