"""What the agents make of the two volumes: ``volume`` (base asset, within the candle) and
``quote_volume_24h`` (CoinGecko's rolling 24 h USD total at the close)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
from sqlalchemy import select

from agents.features import FEATURES, latest_features
from agents.prompting import market_section
from race.bootstrap import bootstrap
from race.clock import ManualClock
from race.domain.model import MarketView
from race.ingest import ingest_coingecko
from race.store.repository import market_view
from race.store.tables import Asset
from tests.coingecko_server import FakeCoinGecko
from tests.factories import make_candles, wave_prices

KEY = "CG-consumers-key-77aa"
HOUR = timedelta(hours=1)
START = datetime(2024, 3, 1, tzinfo=UTC)
VOLUME_RATIO = FEATURES.index("volume_ratio_24")


def test_the_volume_feature_uses_base_volume_only():
    base = make_candles("BTC", START, wave_prices(60), volume=Decimal("5"))
    assert latest_features(base)[VOLUME_RATIO] == 0.0  # steady volume: ratio 1 - 1
    quote_only = [
        replace(c, volume=None, quote_volume_24h=Decimal(2e10 + i * 1e8))
        for i, c in enumerate(base)
    ]
    features = latest_features(quote_only)
    assert features is not None  # predictions still work
    assert np.isnan(features[VOLUME_RATIO])  # a rolling 24 h USD total is no candle volume
    # a window mixing known and unknown base volume gives no ratio rather than a skewed one
    mixed = base[:-5] + quote_only[-5:]
    assert np.isnan(latest_features(mixed)[VOLUME_RATIO])


def test_the_prompt_shows_each_volume_in_its_own_labelled_column():
    candles = make_candles("BTC", START, wave_prices(30), volume=Decimal("12.5"))
    candles[-1] = replace(candles[-1], quote_volume_24h=Decimal("190460293531.54"))
    candles[-2] = replace(candles[-2], volume=None, quote_volume_24h=Decimal("950200000"))
    view = MarketView(as_of=candles[-1].close_time, candles={"BTC": candles})
    text = market_section(view, ["BTC"], rows=3)
    lines = text.splitlines()
    header = lines.index("time,open,high,low,close,volume,usd_volume_24h")
    legend = lines[header - 1]
    assert "volume = BTC traded within the candle" in legend
    assert "usd_volume_24h = USD traded in the 24 h up to the candle's close" in legend
    assert "not per candle" in legend and "empty = unknown" in legend
    first, second, last = lines[header + 1 : header + 4]
    assert first.endswith(",12.5,")  # base volume known, 24 h volume unknown
    assert second.endswith(",,950.2M")  # base volume unknown: empty, never 0
    assert last.endswith(",12.5,190.46B")

    no_24h = market_section(
        MarketView(as_of=candles[-3].close_time, candles={"BTC": candles[:-2]}), ["BTC"], rows=3
    )
    assert "time,open,high,low,close,volume" in no_24h.splitlines()
    assert "usd_volume_24h" not in no_24h  # no column for what no candle has


def test_coingecko_candles_reach_the_agents_with_their_volumes_apart(sqlite_url):
    clock = ManualClock(datetime(2024, 1, 1, 0, 15, tzinfo=UTC))
    with FakeCoinGecko(now=clock.now, demo_key=KEY) as server:
        app = bootstrap(
            overrides={
                "RACE_DATABASE_URL": sqlite_url,
                "COINGECKO_BASE_URL": server.base_url,
                "COINGECKO_API_KEY": KEY,
            },
            clock=clock,
        )
        try:
            assert asyncio.run(ingest_coingecko(app, symbols=["BTC"])).ok
            with app.db.read() as session:
                ids = {"BTC": session.scalar(select(Asset.id).where(Asset.symbol == "BTC"))}
                view = market_view(session, clock.now(), ids, depth=50, max_price_age=None)
        finally:
            app.close()
    series = view.candles["BTC"]
    assert len(series) == 50
    assert all(c.volume is None and c.quote_volume_24h > 0 for c in series)
    features = latest_features(series)
    assert features is not None and np.isnan(features[VOLUME_RATIO])
    text = market_section(view, ["BTC"], rows=2)
    rows = text.splitlines()[-2:]
    assert all(",," in row and row.endswith("B") for row in rows)  # empty volume, 24 h in USD
