"""Candle queries and bulk writes for ingestion (on a SQLAlchemy session; no rules here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from race.domain.model import Candle
from race.store.bulk import bulk_insert
from race.store.tables import Asset, CandleRow

Values = tuple[Decimal, Decimal, Decimal, Decimal, Decimal | None, Decimal | None]
"""open, high, low, close, volume, quote_volume_24h — what a conflict is judged on."""

_TABLE = CandleRow.__table__
_COLUMNS = (
    CandleRow.open,
    CandleRow.high,
    CandleRow.low,
    CandleRow.close,
    CandleRow.volume,
    CandleRow.quote_volume_24h,
)


def values_of(candle: Candle) -> Values:
    return (
        candle.open,
        candle.high,
        candle.low,
        candle.close,
        candle.volume,
        candle.quote_volume_24h,
    )


def latest_close(session: Session, asset_id: int) -> datetime | None:
    return session.scalar(
        select(func.max(CandleRow.close_time)).where(CandleRow.asset_id == asset_id)
    )


def stored_values(
    session: Session, asset_id: int, start: datetime, end: datetime
) -> dict[datetime, Values]:
    """Stored :data:`Values` by close time for ``start ≤ close_time ≤ end``."""
    rows = session.execute(
        select(CandleRow.close_time, *_COLUMNS).where(
            CandleRow.asset_id == asset_id,
            CandleRow.close_time >= start,
            CandleRow.close_time <= end,
        )
    )
    return {row[0]: tuple(row[1:]) for row in rows}  # type: ignore[misc]


def values_at(session: Session, asset_id: int, times: Sequence[datetime]) -> dict[datetime, Values]:
    if not times:
        return {}
    rows = session.execute(
        select(CandleRow.close_time, *_COLUMNS).where(
            CandleRow.asset_id == asset_id, CandleRow.close_time.in_(list(times))
        )
    )
    return {row[0]: tuple(row[1:]) for row in rows}  # type: ignore[misc]


def close_times(session: Session, asset_id: int, start: datetime, end: datetime) -> list[datetime]:
    return list(
        session.scalars(
            select(CandleRow.close_time)
            .where(
                CandleRow.asset_id == asset_id,
                CandleRow.close_time >= start,
                CandleRow.close_time <= end,
            )
            .order_by(CandleRow.close_time)
        )
    )


def closes_for_history(
    session: Session, asset_id: int, start: datetime, end: datetime
) -> list[tuple[datetime, Decimal]]:
    """Stored ``(close_time, close)`` for ``start ≤ close_time ≤ end``, oldest first: the
    history the plausibility check (:mod:`market.plausibility`) judges new candles by."""
    rows = session.execute(
        select(CandleRow.close_time, CandleRow.close)
        .where(
            CandleRow.asset_id == asset_id,
            CandleRow.close_time >= start,
            CandleRow.close_time <= end,
        )
        .order_by(CandleRow.close_time)
    )
    return [(when, close) for when, close in rows]


def candle_at(session: Session, asset_id: int, symbol: str, close_time: datetime) -> Candle | None:
    row = session.execute(
        select(*_COLUMNS).where(CandleRow.asset_id == asset_id, CandleRow.close_time == close_time)
    ).first()
    if row is None:
        return None
    return Candle(symbol, close_time, row[0], row[1], row[2], row[3], row[4], row[5])


def insert_new(session: Session, rows: list[dict[str, Any]]) -> set[datetime] | None:
    """Insert ``rows`` (one asset) in one executemany. Returns the close times actually
    inserted, or None when every row was inserted.

    On SQLite the caller's write transaction began with ``BEGIN IMMEDIATE`` and read the
    stored candles first, so no other writer can slip in: one plain executemany is exact.
    On PostgreSQL another writer may insert meanwhile: ``ON CONFLICT DO NOTHING RETURNING``
    skips those rows and says which went in. Elsewhere a plain insert fails on the unique
    key (the transaction rolls back) rather than overwrite."""
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        statement = (
            postgresql.insert(_TABLE)
            .on_conflict_do_nothing(index_elements=["asset_id", "close_time"])
            .returning(_TABLE.c.close_time)
        )
        return set(session.scalars(statement, rows))
    if dialect == "sqlite":
        # One DBAPI executemany, each column encoded by its own type (race.store.bulk):
        # several times faster than the ORM's per-row bookkeeping on a 100k-row load.
        bulk_insert(session, _TABLE, rows)
        return None
    session.execute(insert(_TABLE), rows)
    return None


@dataclass(frozen=True)
class CandleCoverage:
    asset_id: int
    candles: int
    first_close: datetime | None
    last_close: datetime | None


def coverage(session: Session) -> dict[int, CandleCoverage]:
    """Per asset: how many candles are stored and from when to when."""
    rows = session.execute(
        select(
            Asset.id,
            func.count(CandleRow.id),
            func.min(CandleRow.close_time),
            func.max(CandleRow.close_time),
        )
        .select_from(Asset)
        .outerjoin(CandleRow, CandleRow.asset_id == Asset.id)
        .group_by(Asset.id)
    )
    return {
        asset_id: CandleCoverage(asset_id, count, first, last)
        for asset_id, count, first, last in rows
    }


def count_from_source(
    session: Session, asset_id: int, source: str, start: datetime, end: datetime
) -> int:
    """Candles of the asset stored from ``source`` with ``start ≤ close_time ≤ end``."""
    query = (
        select(func.count())
        .select_from(CandleRow)
        .where(
            CandleRow.asset_id == asset_id,
            CandleRow.source == source,
            CandleRow.close_time >= start,
            CandleRow.close_time <= end,
        )
    )
    return int(session.scalar(query) or 0)


def any_closed_between(session: Session, first: datetime, last: datetime, age: timedelta) -> bool:
    """Whether a candle closed in ``[first - age, last]``."""
    found = session.scalar(
        select(CandleRow.id)
        .where(CandleRow.close_time >= first - age, CandleRow.close_time <= last)
        .limit(1)
    )
    return found is not None
