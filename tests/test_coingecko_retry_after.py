"""CoinGecko's Retry-After is honoured up to COINGECKO_MAX_RETRY_AFTER_SECONDS; a longer one
(999999) gives that fetch up at once with a clear error on the asset, never a long stall."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from market.coingecko import (
    CoinGeckoClient,
    CoinGeckoConfig,
    CoinGeckoConfigError,
    CoinGeckoRetryAfterTooLong,
    OhlcStep,
)
from race.bootstrap import bootstrap
from race.clock import ManualClock
from race.ingest import coingecko_config, ingest_coingecko, max_retry_after
from race.settings import load_settings
from tests.coingecko_server import FakeCoinGecko, Reply
from tests.factories import seed_assets

KEY = "CG-retry-after-key-77c0"
NOW = datetime(2024, 1, 1, tzinfo=UTC)
SETTLE = timedelta(seconds=900)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW + SETTLE)


@pytest.fixture
def server(clock):
    with FakeCoinGecko(now=clock.now, demo_key=KEY) as fake:
        yield fake


@pytest.fixture
def make_app(database_url, clock, server):
    apps = []

    def build(**overrides: str):
        built = bootstrap(
            overrides={
                "RACE_DATABASE_URL": database_url,
                "COINGECKO_BASE_URL": server.base_url,
                "COINGECKO_API_KEY": KEY,
                **overrides,
            },
            clock=clock,
        )
        seed_assets(built)
        apps.append(built)
        return built

    yield build
    for built in apps:
        built.close()


@pytest.mark.parametrize(
    ("schedule", "seconds"),
    [
        ("0 */5 * * * *", 60.0),  # the default ingest schedule: capped at 60 s
        ("0 0 * * * *", 60.0),
        ("0 * * * * *", 12.0),  # every minute: a fifth of it
        ("*/10 * * * * *", 2.0),
        ("0 0,1 * * * *", 12.0),  # the shortest gap counts
    ],
)
def test_the_default_cap_is_a_fifth_of_the_ingest_schedules_gap(schedule, seconds) -> None:
    settings = load_settings({"RACE_INGEST_SCHEDULE": schedule})
    assert max_retry_after(settings) == seconds
    assert coingecko_config(settings).max_retry_after == seconds


def test_the_setting_wins_and_is_checked() -> None:
    assert max_retry_after(load_settings({"COINGECKO_MAX_RETRY_AFTER_SECONDS": "300"})) == 300
    assert max_retry_after(load_settings({"COINGECKO_MAX_RETRY_AFTER_SECONDS": ""})) == 60
    with pytest.raises(CoinGeckoConfigError, match="COINGECKO_MAX_RETRY_AFTER_SECONDS"):
        coingecko_config(load_settings({"COINGECKO_MAX_RETRY_AFTER_SECONDS": "-1"}))


def test_a_retry_after_of_999999_gives_up_at_once_on_every_backend(make_app, server, clock):
    app = make_app(COINGECKO_MAX_RETRY_AFTER_SECONDS="5")
    server.queue(Reply.rate_limited(retry_after="999999"))
    report = asyncio.run(ingest_coingecko(app))
    assert clock.sleeps == []  # no wait on the clock (not even the 5 s cap): gave up at once
    assert len(server.requests) == 1  # not retried
    assert not report.ok
    btc, eth = report.asset("BTC"), report.asset("ETH")
    assert "retry after 999,999 s" in btc.error
    assert "COINGECKO_MAX_RETRY_AFTER_SECONDS=5" in btc.error
    assert btc.inserted == 0
    assert eth.error is not None and eth.error.startswith("not tried")  # counted per asset
    assert report.as_dict()["errors"] == {"BTC": btc.error, "ETH": eth.error}
    # the next scheduled run fetches normally
    again = asyncio.run(ingest_coingecko(app))
    assert again.ok and again.asset("BTC").inserted > 0


def test_a_retry_after_within_the_cap_is_waited_for(make_app, server, clock):
    app = make_app(COINGECKO_MAX_RETRY_AFTER_SECONDS="10")
    server.queue(Reply.rate_limited(retry_after="7"))
    report = asyncio.run(ingest_coingecko(app, symbols=["BTC"]))
    assert report.ok and report.asset("BTC").inserted > 0
    assert 7.0 in clock.sleeps and len(server.requests) == 2


def test_an_http_date_retry_after_far_ahead_gives_up_too(server, clock) -> None:
    config = CoinGeckoConfig.resolve(
        plan="demo", api_key=KEY, base_url=server.base_url, max_retry_after_seconds=3
    )
    server.queue(Reply.server_error(503, retry_after="Wed, 01 Jan 2025 00:00:00 GMT"))
    step = OhlcStep(NOW, NOW, 1, False, timedelta(minutes=30))

    async def fetch() -> None:
        async with CoinGeckoClient(config, clock=clock) as client:
            await client.fetch("bitcoin", step, timedelta(hours=1))

    with pytest.raises(CoinGeckoRetryAfterTooLong) as info:
        asyncio.run(fetch())
    assert info.value.attempts == 1 and info.value.retry_after > 3e7
    assert clock.sleeps == []
