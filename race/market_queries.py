"""Small read queries about stored candles, shared by the CLI, the API and the timers."""

from __future__ import annotations

from datetime import datetime

from race.store import candles
from race.store.database import Database


def newest_close(db: Database) -> datetime | None:
    """Close time of the newest candle of any enabled asset."""
    with db.read() as session:
        return candles.newest_enabled_close(session)
