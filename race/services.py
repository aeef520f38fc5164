"""Use-cases shared by the timers, the admin API and the CLI."""

from __future__ import annotations

from typing import Any

from race.bootstrap import App
from race.market_queries import newest_close


async def ingest_and_mark(app: App) -> dict[str, Any]:
    """Ingest new candles from CoinGecko, then mark every portfolio to market at the newest
    close. Returns the ingestion report and how many snapshots were written."""
    from race.ingest import ingest_coingecko

    report = await ingest_coingecko(app)
    newest = newest_close(app.db)
    marked = app.engine.snapshot(newest) if newest is not None else 0
    result = report.as_dict()
    result["marked"] = marked
    result["markedAt"] = None if newest is None else newest.isoformat()
    return result
