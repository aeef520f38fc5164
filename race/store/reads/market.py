"""Reads about stored candles: the newest close, each asset's latest price and its last
24 hours, the latest close of every asset."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from race.store.database import Database
from race.store.tables import Asset, CandleRow

DAY = timedelta(hours=24)


@dataclass(frozen=True)
class AssetRecord:
    id: int
    symbol: str
    name: str


@dataclass(frozen=True)
class PriceFacts:
    """An asset's newest candle, the close a day before it (or, with less than a day of
    history, the open of its oldest candle) and the range of the day."""

    symbol: str
    name: str
    close: Decimal
    close_time: datetime
    reference: Decimal
    high: Decimal
    low: Decimal


def newest_close(db: Database) -> datetime | None:
    """Close time of the newest candle of any enabled asset."""
    with db.read() as session:
        return session.scalar(
            select(func.max(CandleRow.close_time))
            .join(Asset, Asset.id == CandleRow.asset_id)
            .where(Asset.enabled)
        )


def _record(asset: Asset) -> AssetRecord:
    return AssetRecord(id=asset.id, symbol=asset.symbol, name=asset.name)


def assets(session: Session) -> list[AssetRecord]:
    """Every asset, by id."""
    return [_record(a) for a in session.scalars(select(Asset).order_by(Asset.id))]


def asset_by_symbol(session: Session, symbol: str) -> AssetRecord | None:
    found = session.scalar(select(Asset).where(Asset.symbol == symbol.upper()))
    return None if found is None else _record(found)


def price_facts(session: Session, asset: AssetRecord) -> PriceFacts | None:
    """None when the asset has no candle."""
    latest = session.scalar(
        select(CandleRow)
        .where(CandleRow.asset_id == asset.id)
        .order_by(CandleRow.close_time.desc())
        .limit(1)
    )
    if latest is None:
        return None
    since = latest.close_time - DAY
    reference = session.scalar(
        select(CandleRow.close)
        .where(CandleRow.asset_id == asset.id, CandleRow.close_time <= since)
        .order_by(CandleRow.close_time.desc())
        .limit(1)
    )
    if reference is None:  # less than a day of history: compare with the oldest candle
        reference = session.scalar(
            select(CandleRow.open)
            .where(CandleRow.asset_id == asset.id)
            .order_by(CandleRow.close_time)
            .limit(1)
        )
    high, low = session.execute(
        select(func.max(CandleRow.high), func.min(CandleRow.low)).where(
            CandleRow.asset_id == asset.id, CandleRow.close_time > since
        )
    ).one()
    return PriceFacts(
        symbol=asset.symbol,
        name=asset.name,
        close=latest.close,
        close_time=latest.close_time,
        reference=reference,
        high=high,
        low=low,
    )


def latest_closes(session: Session) -> dict[int, Decimal]:
    """The close of each asset's newest candle, by asset id."""
    latest = (
        select(CandleRow.asset_id, func.max(CandleRow.close_time).label("t"))
        .group_by(CandleRow.asset_id)
        .subquery()
    )
    rows = session.execute(
        select(CandleRow.asset_id, CandleRow.close).join(
            latest, (CandleRow.asset_id == latest.c.asset_id) & (CandleRow.close_time == latest.c.t)
        )
    )
    return {asset_id: close for asset_id, close in rows}
