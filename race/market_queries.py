"""Small read queries about stored candles, shared by the CLI, the API and the timers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from race.store.database import Database
from race.store.tables import Asset, CandleRow


def newest_close(db: Database) -> datetime | None:
    """Close time of the newest candle of any enabled asset."""
    with db.read() as session:
        return session.scalar(
            select(func.max(CandleRow.close_time))
            .join(Asset, Asset.id == CandleRow.asset_id)
            .where(Asset.enabled)
        )
