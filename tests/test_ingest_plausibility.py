"""A 10x step and a +45 %/hour pump served by the loopback CoinGecko, on /market_chart/range
and /ohlc, on SQLite and PostgreSQL: nothing implausible is stored, the rejections are
counted with their reasons, and a cycle never trades on them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from market import plausibility as p
from market import validation as v
from race.bootstrap import bootstrap
from race.clock import ManualClock
from race.ingest import IngestReport, ingest_coingecko
from race.store.tables import Asset, CandleRow, TradeRow
from tests.coingecko_server import FakeCoinGecko, PricePath
from tests.factories import seed_assets, seed_baselines

HOUR = timedelta(hours=1)
KEY = "CG-plausibility-key-5e2a"
NOW = datetime(2024, 1, 1, tzinfo=UTC)
SETTLE = timedelta(seconds=900)
BASE = 40_000.0
HISTORY_REASONS = {p.IMPLAUSIBLE_LEVEL, p.IMPLAUSIBLE_DAY_MOVE}
ALLOWED = {*HISTORY_REASONS, v.IMPLAUSIBLE_MOVE, v.IMPLAUSIBLE_RANGE, v.INCOMPLETE}


@dataclass
class StepPath(PricePath):
    """The smooth path, times ``factor`` from ``at`` on."""

    at: datetime = NOW
    factor: float = 10.0

    def price(self, when: datetime) -> float:
        return super().price(when) * (self.factor if when >= self.at else 1.0)


@dataclass
class PumpPath(PricePath):
    """The smooth path, then +45 % an hour (compounded) from ``at`` on."""

    at: datetime = NOW
    rate: float = 1.45

    def price(self, when: datetime) -> float:
        hours = max((when - self.at) / HOUR, 0.0)
        return super().price(when) * self.rate**hours


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW + SETTLE)


@pytest.fixture
def server(clock):
    with FakeCoinGecko(now=clock.now, demo_key=KEY) as fake:
        yield fake


@pytest.fixture
def app(database_url, clock, server):
    built = bootstrap(
        overrides={
            "RACE_DATABASE_URL": database_url,
            "COINGECKO_BASE_URL": server.base_url,
            "COINGECKO_API_KEY": KEY,
        },
        clock=clock,
    )
    seed_assets(built)
    yield built
    built.close()


def ingest(app, **kwargs) -> IngestReport:
    return asyncio.run(ingest_coingecko(app, **kwargs))


def stored_closes(app, symbol: str = "BTC") -> dict[datetime, Decimal]:
    with app.db.read() as session:
        rows = session.execute(
            select(CandleRow.close_time, CandleRow.close)
            .join(Asset, Asset.id == CandleRow.asset_id)
            .where(Asset.symbol == symbol)
            .order_by(CandleRow.close_time)
        )
        return {when: close for when, close in rows}


def plausible(close: Decimal, bound: float) -> bool:
    return Decimal(BASE * 0.9) < close < Decimal(BASE * bound)


def test_a_step_on_market_chart_range_is_never_stored(app, server):
    step_at = NOW - 10 * HOUR
    server.coins["bitcoin"] = StepPath(BASE, at=step_at)
    report = ingest(app, symbols=["BTC"], start=NOW - 48 * HOUR, end=NOW)
    btc = report.asset("BTC")
    assert btc.error is None and server.requests_to("market_chart/range")
    closes = stored_closes(app)
    assert closes and all(plausible(c, 1.1) for c in closes.values())
    assert max(closes) < step_at + HOUR  # nothing from the step on
    # every candle of the step is rejected with a reason and counted
    assert btc.inserted + btc.rejected_total == 49
    assert btc.rejected_total >= 10
    assert set(btc.rejected) <= ALLOWED and btc.rejected[p.IMPLAUSIBLE_LEVEL] >= 9
    assert report.as_dict()["totals"]["rejected"] == btc.rejected_total
    assert "implausible_level" in report.render()
    # the next run of the timer still refuses it: the stored history is the reference
    again = ingest(app, symbols=["BTC"])
    assert again.asset("BTC").inserted == 0 and again.asset("BTC").rejected_total > 0
    assert stored_closes(app) == closes


def test_a_step_on_ohlc_is_never_stored_and_no_cycle_trades_on_it(app, server, clock):
    step_at = NOW - 4 * HOUR
    server.coins["bitcoin"] = StepPath(BASE, at=step_at)
    backfill = ingest(app, start=NOW - 36 * HOUR, end=NOW - 12 * HOUR)
    assert backfill.ok and backfill.asset("BTC").rejected_total == 0
    live = ingest(app)  # the timer: /ohlc (30-minute rows) for the last 12 hours
    assert server.requests_to("ohlc")
    btc = live.asset("BTC")
    assert btc.error is None and btc.rejected_total >= 3
    assert set(btc.rejected) <= ALLOWED and set(btc.rejected) & HISTORY_REASONS
    closes = stored_closes(app)
    assert all(plausible(c, 1.1) for c in closes.values())
    assert max(closes) < step_at + HOUR
    assert live.asset("ETH").rejected_total == 0  # the other asset is untouched

    agents = seed_baselines(app, ["buy_and_hold"])
    report = asyncio.run(app.engine.run_cycle(NOW))
    assert report.decided == len(agents)
    with app.db.read() as session:
        trades = list(
            session.scalars(
                select(TradeRow)
                .join(Asset, Asset.id == TradeRow.asset_id)
                .where(Asset.symbol == "BTC")
            )
        )
    assert trades, "buy and hold buys BTC"
    assert all(plausible(t.reference_price, 1.1) for t in trades)


def test_a_pump_of_45_percent_an_hour_is_cut_off(app, server):
    pump_at = NOW - 24 * HOUR
    server.coins["bitcoin"] = PumpPath(BASE, at=pump_at)
    report = ingest(app, symbols=["BTC"], start=NOW - 72 * HOUR, end=NOW)
    btc = report.asset("BTC")
    assert btc.error is None
    closes = stored_closes(app)
    # at most the first hours of the pump, within the day-move factor of the level before
    assert all(plausible(c, 2.5 * 1.1) for c in closes.values())
    assert max(closes.values()) < Decimal(BASE * 2.5 * 1.05)
    assert btc.rejected_total >= 20
    assert set(btc.rejected) <= ALLOWED and btc.rejected[p.IMPLAUSIBLE_DAY_MOVE] >= 1
    assert btc.inserted + btc.rejected_total == 73
