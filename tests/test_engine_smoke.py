from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import func, select

from race.store.tables import DecisionRow, EquitySnapshotRow
from tests.factories import (
    HOUR,
    insert_candles,
    make_candles,
    seed_assets,
    seed_baselines,
    wave_prices,
)

START = datetime(2024, 1, 1, tzinfo=UTC)


def test_cycle_writes_one_decision_per_agent(app):
    seed_assets(app)
    agents = seed_baselines(app)
    for symbol, base in (("BTC", 40000.0), ("ETH", 2000.0)):
        insert_candles(app, make_candles(symbol, START, wave_prices(120, base=base)))
    cycle_time = START + 100 * HOUR
    report = asyncio.run(app.engine.run_cycle(cycle_time))
    assert report.decided == len(agents)
    again = asyncio.run(app.engine.run_cycle(cycle_time))
    assert again.decided == 0
    assert len(again.skipped) == len(agents)
    with app.db.read() as session:
        count = session.scalar(select(func.count()).select_from(DecisionRow))
        snaps = session.scalar(select(func.count()).select_from(EquitySnapshotRow))
    assert count == len(agents)
    assert snaps == len(agents)
