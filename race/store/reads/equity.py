"""The equity curve of one agent, as stored: its version and its (downsampled) points.

On SQLite and PostgreSQL the points are read as the driver returns them (stored integers
and time text on SQLite) and decoded here: the generic result processors would otherwise
dominate a 500-point response."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import BigInteger, String, TextClause, column, func, select, text, type_coerce
from sqlalchemy import values as values_clause
from sqlalchemy.orm import Session, aliased

from race.domain.money import SCALE
from race.domain.timeutil import iso
from race.store import races
from race.store.tables import AgentStatsRow, EquitySnapshotRow
from race.store.types import UTCDateTime


class EquityPoint(NamedTuple):
    """One stored snapshot, decoded: amounts as the nearest float, the time as the text
    :func:`race.domain.timeutil.iso` gives for it."""

    id: int
    portfolio_id: int
    agent_id: int
    captured_at: str
    total_value: float
    cash_value: float
    positions_value: float
    unrealized_pnl: float
    source: str


_SNAPSHOT_COLUMNS = (
    EquitySnapshotRow.id,
    EquitySnapshotRow.portfolio_id,
    EquitySnapshotRow.agent_id,
    EquitySnapshotRow.captured_at,
    EquitySnapshotRow.total_value,
    EquitySnapshotRow.cash_value,
    EquitySnapshotRow.positions_value,
    EquitySnapshotRow.unrealized_pnl,
    EquitySnapshotRow.source,
)
_BATCH = 500
"""Ids or target times per statement (far below every backend's bind-parameter limit)."""
_KEEP = 4
"""First, last, highest, lowest: the points every downsampled curve keeps."""
_FAST_DIALECTS = ("sqlite", "postgresql")
_EXACT_FLOAT = 2**53
_SQLITE_SCALE = 10.0**SCALE


def even_times(first: datetime, last: datetime, count: int) -> list[datetime]:
    """``count`` instants evenly spread strictly inside ``(first, last)``."""
    span = last - first
    return [first + span * k / (count + 1) for k in range(1, count + 1)]


def _sqlite_time(value: datetime) -> str:
    """How SQLAlchemy stores a UTC DATETIME on SQLite (text that sorts as time)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_money(raw: int) -> float:
    """A stored SQLite amount (an integer count of 10⁻⁸) as the nearest float: a single
    correctly rounded division while both operands are exact doubles."""
    if -_EXACT_FLOAT < raw < _EXACT_FLOAT:
        return raw / _SQLITE_SCALE
    return float(Decimal(raw).scaleb(-SCALE))


def _sqlite_iso(raw: str) -> str:
    """Stored ``YYYY-MM-DD HH:MM:SS.ffffff`` → what :func:`iso` gives for that instant."""
    if len(raw) == 26 and raw[10] == " ":
        if raw.endswith(".000000"):
            return f"{raw[:10]}T{raw[11:19]}+00:00"
        return f"{raw[:10]}T{raw[11:]}+00:00"
    return datetime.fromisoformat(raw).replace(tzinfo=UTC).isoformat()


def _plain_iso(value: datetime) -> str:
    return iso(value) or ""


@functools.cache
def _sample_statement(dialect: str, count: int) -> TextClause:
    """The snapshots ``:k0``..``:k3`` plus, for each of ``count`` target times, the agent's
    first snapshot at or after it (not after ``:last``): one index seek on (agent, time)
    per target, all in one statement. Plain SQL built once per (dialect, count), so it is
    compiled once; rows come back as the driver returns them."""
    target = "CAST(:t{} AS TIMESTAMP WITH TIME ZONE)" if dialect == "postgresql" else ":t{}"
    targets = ", ".join(f"({target.format(i)})" for i in range(count))
    keep = ", ".join(f":k{i}" for i in range(_KEEP))
    return text(
        f"WITH targets(t) AS (VALUES {targets}) "  # noqa: S608 - placeholders only
        "SELECT e.id, e.portfolio_id, e.agent_id, e.captured_at, e.total_value, "
        "e.cash_value, e.positions_value, e.unrealized_pnl, e.source "
        f"FROM equity_snapshots e WHERE e.id IN ({keep}) OR e.id IN ("
        "SELECT (SELECT s.id FROM equity_snapshots s WHERE s.race_id = :race "
        "AND s.agent_id = :agent "
        "AND s.captured_at >= targets.t AND s.captured_at <= :last "
        "ORDER BY s.captured_at LIMIT 1) FROM targets) "
        "ORDER BY e.captured_at"
    )


def _extreme_id(session: Session, where: list[Any], *, highest: bool) -> int | None:
    """The snapshot with the highest (or lowest) total value in the range: one seek on the
    (agent, total value, time) index; ties go to the latest (highest) or earliest (lowest)."""
    order = (
        (EquitySnapshotRow.total_value.desc(), EquitySnapshotRow.captured_at.desc())
        if highest
        else (EquitySnapshotRow.total_value, EquitySnapshotRow.captured_at)
    )
    return session.scalar(select(EquitySnapshotRow.id).where(*where).order_by(*order).limit(1))


def _rows_by_id(session: Session, columns: list[Any], ids: list[int]) -> list[Any]:
    rows: list[Any] = []
    for at in range(0, len(ids), _BATCH):
        chunk = ids[at : at + _BATCH]
        rows.extend(session.execute(select(*columns).where(EquitySnapshotRow.id.in_(chunk))))
    return rows


def _seek_ids(
    session: Session, owner: tuple[int, int], targets: list[datetime], last: datetime
) -> list[int]:
    """Portable form of the target seeks (any backend; slower to compile)."""
    found: list[int] = []
    inner = aliased(EquitySnapshotRow)
    for at in range(0, len(targets), _BATCH):
        source = values_clause(column("t", UTCDateTime()), name="targets").data(
            [(t,) for t in targets[at : at + _BATCH]]
        )
        seek = (
            select(inner.id)
            .where(
                inner.race_id == owner[0],
                inner.agent_id == owner[1],
                inner.captured_at >= source.c.t,
                inner.captured_at <= last,
            )
            .order_by(inner.captured_at)
            .limit(1)
            .scalar_subquery()
        )
        found.extend(i for i in session.scalars(select(seek).select_from(source)) if i is not None)
    return found


def _kept_ids(session: Session, where: list[Any], max_points: int) -> tuple[list[int], Any, Any]:
    """The ids every downsampled curve keeps (first, last, highest, lowest) and the times
    of the first and the last."""
    ends = select(EquitySnapshotRow.id, EquitySnapshotRow.captured_at).where(*where).limit(1)
    first_id, first_at = session.execute(ends.order_by(EquitySnapshotRow.captured_at)).one()
    last_id, last_at = session.execute(ends.order_by(EquitySnapshotRow.captured_at.desc())).one()
    keep = [first_id, last_id]
    if max_points >= _KEEP:
        for highest in (True, False):
            extreme = _extreme_id(session, where, highest=highest)
            if extreme is not None and extreme not in keep:
                keep.append(extreme)
    return keep, first_at, last_at


def _sampled_rows(
    session: Session,
    dialect: str,
    owner: tuple[int, int],
    keep: list[int],
    targets: list[datetime],
    last_at: datetime,
) -> list[Any]:
    """The kept snapshots and the first at or after each target, in raw driver rows."""
    keep_params = {f"k{i}": keep[min(i, len(keep) - 1)] for i in range(_KEEP)}
    if dialect == "sqlite":
        times: list[Any] = [_sqlite_time(t) for t in targets]
        last: Any = _sqlite_time(last_at)
    else:
        times, last = list(targets), last_at
    rows: dict[int, Any] = {}
    for at in range(0, len(times), _BATCH):
        batch = times[at : at + _BATCH]
        params: dict[str, Any] = {f"t{i}": t for i, t in enumerate(batch)}
        params.update(keep_params, race=owner[0], agent=owner[1], last=last)
        for row in session.execute(_sample_statement(dialect, len(batch)), params):
            rows[row[0]] = row
    return list(rows.values())


def _downsampled(
    session: Session,
    owner: tuple[int, int],
    where: list[Any],
    max_points: int,
    columns: list[Any],
) -> list[Any] | None:
    """At most ``max_points`` snapshot rows of the range: always the first and the last,
    the highest and the lowest total value (when ``max_points`` ≥ 4), and the rest evenly
    spread in time (for each of evenly spaced instants, the first snapshot at or after it;
    a gap in the curve yields fewer points). ``None`` when the range holds no more than
    ``max_points`` snapshots (keep them all).

    The cost does not grow with the length of the curve: a count bounded by
    ``max_points``, two seeks for the ends, two for the extremes, one per target time."""
    probe = select(EquitySnapshotRow.id).where(*where).limit(max_points + 1).subquery()
    if (session.scalar(select(func.count()).select_from(probe)) or 0) <= max_points:
        return None
    keep, first_at, last_at = _kept_ids(session, where, max_points)
    targets = even_times(first_at, last_at, max_points - len(keep))
    dialect = session.get_bind().dialect.name
    if not targets:
        return _rows_by_id(session, columns, keep)
    if dialect not in _FAST_DIALECTS:
        ids = set(keep) | set(_seek_ids(session, owner, targets, last_at))
        return _rows_by_id(session, columns, sorted(ids))
    return _sampled_rows(session, dialect, owner, keep, targets, last_at)


def curve_version(
    session: Session, agent_id: int, race_id: int | None = None
) -> tuple[Any, ...] | None:
    """A value that changes with every write to the agent's equity curve: the engine
    updates the agent's stats row in the transaction of each snapshot it adds or replaces
    (a replaced mark comes with a new decision). None when the agent has no stats row."""
    row = session.execute(
        select(
            AgentStatsRow.snapshot_count,
            AgentStatsRow.last_captured_at,
            AgentStatsRow.current_value,
            AgentStatsRow.decisions,
        ).where(
            AgentStatsRow.race_id == races.resolve(session, race_id),
            AgentStatsRow.agent_id == agent_id,
        )
    ).first()
    return None if row is None else tuple(row)


def equity_points(
    session: Session,
    agent_id: int,
    start: datetime | None,
    end: datetime | None,
    max_points: int | None,
    race_id: int | None = None,
) -> list[EquityPoint]:
    """The stored snapshots of ``[start, end]`` in the race (default: live), ascending,
    downsampled to ``max_points`` (see :func:`_downsampled`), decoded."""
    race = races.resolve(session, race_id)
    where: list[Any] = [EquitySnapshotRow.race_id == race, EquitySnapshotRow.agent_id == agent_id]
    if start is not None:
        where.append(EquitySnapshotRow.captured_at >= start)
    if end is not None:
        where.append(EquitySnapshotRow.captured_at <= end)
    sqlite = session.get_bind().dialect.name == "sqlite"
    columns: list[Any] = list(_SNAPSHOT_COLUMNS)
    if sqlite:
        columns[3] = type_coerce(EquitySnapshotRow.captured_at, String)
        for i in range(4, 8):
            columns[i] = type_coerce(_SNAPSHOT_COLUMNS[i], BigInteger)
    rows = None
    if max_points is not None:
        rows = _downsampled(session, (race or 0, agent_id), where, max_points, columns)
    if rows is None:
        rows = list(
            session.execute(select(*columns).where(*where).order_by(EquitySnapshotRow.captured_at))
        )
    else:
        rows.sort(key=lambda r: r[3])  # time (text on SQLite sorts as time)
    money = _sqlite_money if sqlite else float
    when = _sqlite_iso if sqlite else _plain_iso
    return [
        EquityPoint(
            r[0], r[1], r[2], when(r[3]), money(r[4]), money(r[5]), money(r[6]), money(r[7]), r[8]
        )
        for r in rows
    ]
