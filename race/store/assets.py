"""Asset rows and the candle reads of training and replays (on a SQLAlchemy session; the
caller owns the transaction; no rules here)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from race.store.tables import Asset, CandleRow


def by_symbol(session: Session, symbol: str) -> Asset | None:
    return session.scalar(select(Asset).where(Asset.symbol == symbol))


def all_assets(session: Session) -> list[Asset]:
    """Every asset, by id."""
    return list(session.scalars(select(Asset).order_by(Asset.id)))


def insert(
    session: Session,
    *,
    symbol: str,
    coingecko_id: str,
    name: str,
    enabled: bool,
    now: datetime,
) -> Asset:
    row = Asset(
        symbol=symbol, coingecko_id=coingecko_id, name=name, enabled=enabled, created_at=now
    )
    session.add(row)
    session.flush()
    return row


def symbols(session: Session, *, enabled_only: bool) -> list[tuple[int, str]]:
    """``(id, symbol)`` of the assets (only the enabled ones with ``enabled_only``), by id."""
    query = select(Asset.id, Asset.symbol).order_by(Asset.id)
    if enabled_only:
        query = query.where(Asset.enabled)
    return [(asset_id, symbol) for asset_id, symbol in session.execute(query)]


class CandleValues(NamedTuple):
    close_time: datetime
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal | None


def candle_series(
    session: Session, asset_id: int, until: datetime, since: datetime | None = None
) -> Sequence[CandleValues]:
    """The asset's candles closed before ``until`` (and at or after ``since``), oldest first."""
    conditions = [CandleRow.close_time < until]
    if since is not None:
        conditions.append(CandleRow.close_time >= since)
    rows = session.execute(
        select(
            CandleRow.close_time,
            CandleRow.high,
            CandleRow.low,
            CandleRow.close,
            CandleRow.volume,
        )
        .where(*conditions, CandleRow.asset_id == asset_id)
        .order_by(CandleRow.close_time)
    ).all()
    return [CandleValues(*row) for row in rows]


def newest_closes_of_enabled(session: Session) -> list[datetime]:
    """Each enabled asset's newest candle close time (assets without candles left out)."""
    return list(
        session.execute(
            select(func.max(CandleRow.close_time))
            .join(Asset, Asset.id == CandleRow.asset_id)
            .where(Asset.enabled)
            .group_by(CandleRow.asset_id)
        )
        .scalars()
        .all()
    )
