"""A race with real rows for the API tests: assets, baselines, candles, a replay, marks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from race.bootstrap import App
from tests.factories import (
    HOUR,
    insert_candles,
    make_candles,
    seed_agent,
    seed_assets,
    seed_baselines,
    wave_prices,
)

START = datetime(2024, 1, 1, tzinfo=UTC)
REPLAY_START = START + 60 * HOUR
REPLAY_END = START + 180 * HOUR
LAST_CANDLE = START + 199 * HOUR


def build_race(app: App) -> dict[str, int]:
    seed_assets(app)
    agents = seed_baselines(app)
    agents["idle"] = seed_agent(app, "Idle Newcomer", model="cash", strategy="never ran")
    btc = wave_prices(200, base=40000.0, period=37, amplitude=0.08)
    eth = wave_prices(200, base=2000.0, period=23, amplitude=0.12)
    insert_candles(app, make_candles("BTC", START, btc))
    insert_candles(app, make_candles("ETH", START, eth))
    from race.universe import set_agent_active

    set_agent_active(app.db, "Idle Newcomer", False)
    asyncio.run(app.engine.backfill(REPLAY_START, REPLAY_END, HOUR))
    app.engine.snapshot(LAST_CANDLE)
    return agents


def candle_close(index: int, symbol: str) -> Decimal:
    prices = (
        wave_prices(200, base=40000.0, period=37, amplitude=0.08)
        if symbol == "BTC"
        else wave_prices(200, base=2000.0, period=23, amplitude=0.12)
    )
    return prices[index]
