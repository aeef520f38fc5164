"""The ``cycles`` table: one row per decision time, its status, counts and pinned view.

Every statement on cycle rows lives here; each function works in the caller's session
(the caller's unit of work owns the transaction)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from race.store import races
from race.store.bulk import bulk_insert, select_values
from race.store.repository import ViewPin
from race.store.tables import CycleRow, DecisionRow, TradeRow

FINISHED = ("completed", "skipped", "failed")
"""Cycle statuses a catch-up leaves alone (a skipped cycle had a stale market view)."""

ReplayedCycle = tuple[datetime, int, int, int, int]
"""A replayed cycle: (time, agents, decisions, fallbacks, trades)."""
StaleCycle = tuple[datetime, int, str]
"""A replayed cycle skipped for a stale view: (time, agents, reason)."""


def statuses(
    session: Session,
    slots: Sequence[datetime],
    triggers: Sequence[str],
    race_id: int | None = None,
) -> tuple[dict[datetime, tuple[str, int]], datetime | None]:
    """The (status, attempts) of the rows of ``slots``, and the first cycle run by one of
    ``triggers`` (in the race; default: the live race)."""
    race = races.resolve(session, race_id)
    found: dict[datetime, tuple[str, int]] = {
        cycle_time: (status, attempts or 0)
        for cycle_time, status, attempts in session.execute(
            select(CycleRow.cycle_time, CycleRow.status, CycleRow.attempts).where(
                CycleRow.race_id == race, CycleRow.cycle_time.in_(slots)
            )
        )
    }
    first = session.scalar(
        select(func.min(CycleRow.cycle_time)).where(
            CycleRow.race_id == race, CycleRow.trigger.in_(triggers)
        )
    )
    return found, first


def give_up(
    session: Session,
    cycle_time: datetime,
    redact: Callable[[str], str],
    now: datetime,
    race_id: int | None = None,
) -> str | None:
    """Finish an unfinished row as ``failed``, its decisions counted; why (or None when
    there was nothing to finish)."""
    row = session.get(CycleRow, _key(session, race_id, cycle_time))
    if row is None or row.status in FINISHED:
        return None
    recount(session, row, row.agents_total)
    reason = (
        f"given up after {row.attempts} attempts "
        f"({row.decisions} of {row.agents_total} agents decided)"
    )
    row.error = f"{reason}; last error: {row.error}" if row.error else reason
    row.error = redact(row.error)[:4000]
    row.status = "failed"
    row.finished_at = now
    return reason


def _key(session: Session, race_id: int | None, cycle_time: datetime) -> tuple[Any, datetime]:
    """A cycle row's primary key: (race, time); the live race when ``race_id`` is None."""
    return races.resolve(session, race_id), cycle_time


def pinned_view(session: Session, cycle_time: datetime, race_id: int | None = None) -> Any:
    """The view pinned on the cycle's row (its JSON), or None."""
    return session.scalar(
        select(CycleRow.market_view).where(
            CycleRow.race_id == races.resolve(session, race_id), CycleRow.cycle_time == cycle_time
        )
    )


def record_skipped(
    session: Session,
    cycle_time: datetime,
    trigger: str,
    total: int,
    reason: str,
    now: datetime,
    race_id: int | None = None,
) -> None:
    """The cycle as ``skipped`` with ``reason``: a new row, or a row without a pinned view
    and without decisions (anything else is left as it is)."""
    key = races.resolve_for_write(session, race_id, now), cycle_time
    row = session.get(CycleRow, key)
    if row is None:
        session.add(
            CycleRow(
                race_id=key[0],
                cycle_time=cycle_time,
                status="skipped",
                trigger=trigger,
                agents_total=total,
                skipped=total,
                started_at=now,
                finished_at=now,
                reason=reason,
            )
        )
    elif row.market_view is None and row.decisions == 0:
        row.status, row.reason = "skipped", reason
        row.finished_at = now


def claim(
    session: Session,
    cycle_time: datetime,
    trigger: str,
    total: int,
    pin: ViewPin,
    status: str,
    *,
    count_attempt: bool,
    now: datetime,
    race_id: int | None = None,
) -> ViewPin:
    """Create the cycle's row, or pin the view on a row that has none (rows written
    before migration 0005, backfill rows); compare-and-set, so concurrent runs agree.
    Returns the view pinned on the row."""
    race = races.resolve_for_write(session, race_id, now)
    if count_attempt:
        # One more run of the whole slot (bounds the catch-up's retries).
        session.execute(
            update(CycleRow)
            .where(CycleRow.race_id == race, CycleRow.cycle_time == cycle_time)
            .values(attempts=func.coalesce(CycleRow.attempts, 0) + 1)
        )
    stored = pinned_view(session, cycle_time, race)
    if stored is not None:
        return ViewPin.from_json(stored)
    exists = session.scalar(
        select(func.count())
        .select_from(CycleRow)
        .where(CycleRow.race_id == race, CycleRow.cycle_time == cycle_time)
    )
    if not exists:
        session.add(
            CycleRow(
                race_id=race,
                cycle_time=cycle_time,
                status=status,
                trigger=trigger,
                agents_total=total,
                started_at=now,
                market_view=pin.to_json(),
                attempts=int(count_attempt),
            )
        )
        return pin
    if _pin_existing(session, race, cycle_time, pin, status):
        return pin
    # Another run pinned it between our read and our update: take its view.
    return ViewPin.from_json(pinned_view(session, cycle_time, race))


def _pin_existing(
    session: Session, race: int, cycle_time: datetime, pin: ViewPin, status: str
) -> bool:
    """Pin ``pin`` on the cycle's existing row that has no view yet (compare-and-set);
    whether this run pinned it."""
    unpinned = (
        CycleRow.race_id == race,
        CycleRow.cycle_time == cycle_time,
        CycleRow.market_view.is_(None),
    )
    # A cycle skipped earlier (stale view) runs now that the market is fresh.
    session.execute(
        update(CycleRow)
        .where(*unpinned, CycleRow.status == "skipped")
        .values(status=status, reason=None)
    )
    moved = session.execute(update(CycleRow).where(*unpinned).values(market_view=pin.to_json()))
    return moved.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def finish(
    session: Session,
    cycle_time: datetime,
    total: int,
    status: str,
    skipped: int,
    errors: Mapping[int, str],
    now: datetime,
    race_id: int | None = None,
) -> None:
    """A run of every agent ended: the row's counts, status (``partial`` while agents are
    neither decided nor skipped) and errors."""
    row = session.get(CycleRow, _key(session, race_id, cycle_time))
    if row is None:
        return
    row.agents_total = total
    recount(session, row, total)
    row.status = status if row.decisions + skipped >= total else "partial"
    row.error = "; ".join(f"agent {k}: {v}" for k, v in errors.items())[:4000] if errors else None
    row.finished_at = now


def recount_row(session: Session, cycle_time: datetime, race_id: int | None = None) -> None:
    """The row's counts again (its status stays)."""
    row = session.get(CycleRow, _key(session, race_id, cycle_time))
    if row is not None:
        recount(session, row, row.agents_total)


def recount(session: Session, row: CycleRow, total: int) -> None:
    """The row's decisions, fallbacks, trades and skipped agents, counted from the tables."""
    row.decisions = (
        session.scalar(
            select(func.count())
            .select_from(DecisionRow)
            .where(DecisionRow.race_id == row.race_id, DecisionRow.cycle_time == row.cycle_time)
        )
        or 0
    )
    row.fallbacks = (
        session.scalar(
            select(func.count())
            .select_from(DecisionRow)
            .where(
                DecisionRow.race_id == row.race_id,
                DecisionRow.cycle_time == row.cycle_time,
                DecisionRow.fallback,
            )
        )
        or 0
    )
    row.trades = (
        session.scalar(
            select(func.count())
            .select_from(TradeRow)
            .where(TradeRow.race_id == row.race_id, TradeRow.executed_at == row.cycle_time)
        )
        or 0
    )
    row.skipped = max(total - row.decisions, 0)


def write_replayed(
    session: Session, cycles: Sequence[ReplayedCycle], now: datetime, race_id: int | None = None
) -> None:
    """A replay's completed cycles: new rows, or a recount of rows already there."""
    rows = {
        t: {"agents_total": total, "decisions": decided, "fallbacks": fallbacks,
            "skipped": total - decided, "trades": trades, "status": "completed"}
        for t, total, decided, fallbacks, trades in cycles
    }  # fmt: skip
    race = races.resolve_for_write(session, race_id, now)
    for t in _insert_new(session, rows, now, race):
        row = session.get(CycleRow, (race, t))
        recount(session, row, row.agents_total)


def write_stale(
    session: Session, stale: Sequence[StaleCycle], now: datetime, race_id: int | None = None
) -> None:
    """Cycles of a replay skipped for a stale market view: a ``skipped`` row with the
    reason (a row that already exists is left as it is)."""
    rows = {
        t: {"agents_total": total, "decisions": 0, "fallbacks": 0, "skipped": total,
            "trades": 0, "status": "skipped", "reason": reason}
        for t, total, reason in stale
    }  # fmt: skip
    _insert_new(session, rows, now, races.resolve_for_write(session, race_id, now))


def _insert_new(
    session: Session, rows: dict[datetime, dict[str, Any]], now: datetime, race: int | None
) -> set[datetime]:
    """Insert the backfill cycle rows whose slot has none yet; the slots that had one."""
    if not rows:
        return set()
    # The slots between the first and the last (a range, not thousands of bound values),
    # kept when they are among ``rows``.
    in_range = select_values(
        session,
        select(CycleRow.cycle_time).where(
            CycleRow.race_id == race,
            CycleRow.cycle_time >= min(rows),
            CycleRow.cycle_time <= max(rows),
        ),
    )
    existing = {t for (t,) in in_range if t in rows}
    new_rows = [
        {"race_id": race, "cycle_time": t, "trigger": "backfill", "started_at": now,
         "finished_at": now, "error": None, **values}
        for t, values in rows.items()
        if t not in existing
    ]  # fmt: skip
    if new_rows:
        # One driver executemany (a replay writes a row per cycle); ``attempts`` spelled
        # out, as the ORM insert's column default would have filled it.
        bulk_insert(session, CycleRow.__table__, [{**row, "attempts": 0} for row in new_rows])
    return existing


def decided_and_skipped(
    session: Session,
    agent_ids: Sequence[int],
    first: datetime,
    last: datetime,
    race_id: int | None = None,
) -> tuple[list[tuple[int, datetime]], set[datetime]]:
    """In ``[first, last]``: the (agent, cycle) of the decisions of ``agent_ids``, and the
    cycles skipped for a stale view (in the race; default: the live race)."""
    race = races.resolve(session, race_id)
    rows = session.execute(
        select(DecisionRow.agent_id, DecisionRow.cycle_time).where(
            DecisionRow.race_id == race,
            DecisionRow.agent_id.in_(list(agent_ids)),
            DecisionRow.cycle_time >= first,
            DecisionRow.cycle_time <= last,
        )
    ).all()
    skipped = set(
        session.scalars(
            select(CycleRow.cycle_time).where(
                CycleRow.race_id == race,
                CycleRow.status == "skipped",
                CycleRow.cycle_time >= first,
                CycleRow.cycle_time <= last,
            )
        )
    )
    return [(agent_id, cycle_time) for agent_id, cycle_time in rows], skipped
