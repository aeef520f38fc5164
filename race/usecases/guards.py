"""What a use case refuses to work on: a stale market view, a too short backfill interval."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from race.domain.timeutil import format_interval

MIN_BACKFILL_INTERVAL = timedelta(minutes=1)
"""The shortest decision interval a backfill accepts."""


def check_backfill_interval(interval: timedelta) -> timedelta:
    """``interval`` if it is at least :data:`MIN_BACKFILL_INTERVAL`, else ``ValueError``."""
    if interval < MIN_BACKFILL_INTERVAL:
        raise ValueError(
            f"interval {format_interval(interval)} is too short: a backfill decides at most "
            f"once every {format_interval(MIN_BACKFILL_INTERVAL)}"
        )
    return interval


def stale_reason(view: Any, at: datetime, max_age: timedelta | None) -> str | None:
    """Why the market view at ``at`` is too stale to decide or mark on: no asset has a
    price younger than ``max_age`` (``RACE_MAX_PRICE_AGE``). None when it is fresh."""
    if max_age is None:
        return None
    newest = max(
        (series[-1].close_time for series in view.candles.values() if series), default=None
    )
    if newest is not None and at - newest <= max_age:
        return None
    seen = "no candle at all" if newest is None else f"newest candle closed {newest.isoformat()}"
    return (
        f"market view stale at {at.isoformat()}: no asset has a price younger than "
        f"RACE_MAX_PRICE_AGE ({format_interval(max_age)}); {seen}"
    )
