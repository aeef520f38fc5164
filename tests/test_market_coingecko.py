"""The CoinGecko client against a real HTTP server on loopback (tests/coingecko_server.py).

Waits (Retry-After, backoff, pace) go through a ManualClock: nothing sleeps for real except
the one timeout test (a fraction of a second)."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

import pytest

from market import validation as v
from market.coingecko import (
    BASE_URLS,
    PUBLIC_CALLS_PER_MINUTE,
    CoinGeckoAuthError,
    CoinGeckoClient,
    CoinGeckoConfig,
    CoinGeckoConfigError,
    CoinGeckoDataError,
    CoinGeckoPlanLimit,
    CoinGeckoUnavailable,
    CoinNotFound,
    OhlcStep,
    RangeStep,
    ohlc_batch,
    plan_fetch,
    range_batch,
)
from market.validation import ValidationLimits
from race.clock import ManualClock
from tests.coingecko_server import HISTORY_LIMIT_BODY, FakeCoinGecko, Reply

NOW = datetime(2024, 1, 1, 0, 10, tzinfo=UTC)
HOUR = timedelta(hours=1)
KEY = "CG-test-key-7f3a9b"  # distinctive, so a leak would be found
PRO_KEY = "CG-pro-key-1c2d3e"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def server(clock):
    with FakeCoinGecko(now=clock.now, demo_key=KEY, pro_key=PRO_KEY) as fake:
        yield fake


def make_client(server, clock, **overrides: Any) -> CoinGeckoClient:
    settings = {"api_key": KEY, "base_url": server.base_url, **overrides}
    config = CoinGeckoConfig.resolve(**settings)
    return CoinGeckoClient(config, clock=clock, rng=random.Random(7))


def run(coro):
    return asyncio.run(coro)


async def call(client: CoinGeckoClient, fn: str, *args: Any, **kwargs: Any) -> Any:
    async with client:
        return await getattr(client, fn)(*args, **kwargs)


# ---------------------------------------------------------------- configuration


def test_plans_pick_the_base_url_and_the_header():
    demo = CoinGeckoConfig.resolve(api_key=KEY)
    assert (demo.plan, demo.base_url, demo.key_header) == (
        "demo",
        "https://api.coingecko.com/api/v3",
        "x-cg-demo-api-key",
    )
    pro = CoinGeckoConfig.resolve(plan="pro", api_key=PRO_KEY)
    assert (pro.base_url, pro.key_header) == (
        "https://pro-api.coingecko.com/api/v3",
        "x-cg-pro-api-key",
    )
    assert pro.history_limit is None and demo.history_limit == timedelta(days=365)
    public = CoinGeckoConfig.resolve()
    assert (public.plan, public.key_header, public.base_url) == (
        "public",
        None,
        BASE_URLS["public"],
    )
    assert "x-cg-demo-api-key" not in public.headers()
    assert public.calls_per_minute == PUBLIC_CALLS_PER_MINUTE
    assert "user-agent" in demo.headers() and "ai-trading-race" in demo.headers()["user-agent"]
    overridden = CoinGeckoConfig.resolve(api_key=KEY, base_url="http://proxy:8080/cg/")
    assert overridden.base_url == "http://proxy:8080/cg" and overridden.key_header
    keyless = CoinGeckoConfig.resolve(plan="public", api_key=KEY)
    assert keyless.api_key is None and "x-cg-demo-api-key" not in keyless.headers()


def test_the_key_never_shows_in_the_config_repr():
    assert KEY not in repr(CoinGeckoConfig.resolve(api_key=KEY))


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        ({"plan": "demo"}, "COINGECKO_API_KEY"),
        ({"plan": "pro"}, "COINGECKO_API_KEY"),
        ({"plan": "gold"}, "COINGECKO_PLAN"),
        ({"calls_per_minute": 0}, "COINGECKO_CALLS_PER_MINUTE"),
        ({"timeout_seconds": -1}, "COINGECKO_TIMEOUT_SECONDS"),
        ({"max_attempts": 0}, "COINGECKO_MAX_ATTEMPTS"),
        ({"settle_seconds": -1}, "COINGECKO_SETTLE_SECONDS"),
        ({"settle_seconds": float("nan")}, "COINGECKO_SETTLE_SECONDS"),
    ],
)
def test_bad_settings_name_themselves(settings, names):
    with pytest.raises(CoinGeckoConfigError, match=names):
        CoinGeckoConfig.resolve(**settings)


# ---------------------------------------------------------------- happy paths


def test_ohlc_on_the_demo_plan(server, clock):
    data = run(call(make_client(server, clock), "ohlc", "bitcoin", 1))
    request = server.requests[-1]
    assert request.path == "/api/v3/coins/bitcoin/ohlc"
    assert request.query == {"vs_currency": "usd", "days": "1"}
    assert request.headers["x-cg-demo-api-key"] == KEY
    assert "x-cg-pro-api-key" not in request.headers
    assert request.headers["user-agent"].startswith("ai-trading-race/")
    assert data.granularity == timedelta(minutes=30)
    assert data.fetched == len(data.rows) == 49  # 48 closed half-hours + the open one
    assert data.rows[-1].close_time > NOW  # CoinGecko's still-open candle
    assert all(r.volume is None for r in data.rows)  # /ohlc has no volume
    assert data.received_at == NOW


def test_market_chart_range_on_the_pro_plan(server, clock):
    client = make_client(server, clock, plan="pro", api_key=PRO_KEY)
    start, end = NOW - timedelta(days=400), NOW - timedelta(days=380)
    data = run(call(client, "market_chart_range", "ethereum", start, end))
    request = server.requests[-1]
    assert request.path == "/api/v3/coins/ethereum/market_chart/range"
    assert request.query["from"] == str(int(start.timestamp()))
    assert request.query["to"] == str(int(end.timestamp()))
    assert request.headers["x-cg-pro-api-key"] == PRO_KEY
    assert "x-cg-demo-api-key" not in request.headers
    assert data.fetched == len(data.points) == 480  # hourly, older than 365 days: pro only
    assert all(p.volume_24h is not None and p.volume_24h > 0 for p in data.points)
    first, last = datetime(2022, 11, 27, 3, tzinfo=UTC), datetime(2022, 12, 17, tzinfo=UTC)
    step = RangeStep(first, last)
    batch = range_batch(
        data, step, symbol="ETH", interval=HOUR, limits=ValidationLimits(), reference=None
    )
    assert [c.close_time for c in batch.candles] == [
        first + i * HOUR for i in range(int((last - first) / HOUR) + 1)
    ]
    # asked up to 00:10, the step ends at 00:00: the 00:02 point is counted, not dropped
    assert batch.rejected == {v.OUT_OF_RANGE: 1}
    assert batch.rejections[0].close_time == data.points[-1].time > last
    # Hourly points land a few minutes after each hour. The candle closing at C: close = the
    # last point at or before C (from just after C - 1 h), open = the last point at or before
    # its open C - 1 h (the previous candle's close), never a point after C.
    by_hour = {p.time.replace(minute=0, second=0, microsecond=0): p for p in data.points}
    for before, candle in zip(batch.candles, batch.candles[1:], strict=False):
        close_point = by_hour[candle.close_time - HOUR]
        assert close_point.time <= candle.close_time
        assert candle.close == close_point.price.quantize(Decimal("1e-8"))
        assert candle.open == by_hour[candle.close_time - 2 * HOUR].price.quantize(Decimal("1e-8"))
        assert candle.open == before.close  # a real open -> close move, continuous
        assert candle.open != candle.close
        assert candle.high == max(candle.open, candle.close)
        assert candle.low == min(candle.open, candle.close)
        assert candle.volume is None  # CoinGecko has no per-candle volume
        assert candle.quote_volume_24h == close_point.volume_24h.quantize(Decimal("0.01"))


def test_pro_hourly_ohlc(server, clock):
    client = make_client(server, clock, plan="pro", api_key=PRO_KEY)
    data = run(call(client, "ohlc", "bitcoin", 7, hourly=True))
    assert server.requests[-1].query["interval"] == "hourly"
    assert data.granularity == HOUR
    assert len(data.rows) == 7 * 24 + 1


# ---------------------------------------------------------------- retries


def test_429_with_retry_after_is_honoured_then_succeeds(server, clock):
    server.queue(Reply.rate_limited(retry_after="7"))
    client = make_client(server, clock)
    data = run(call(client, "ohlc", "bitcoin", 1))
    assert data.fetched == 49
    assert client.calls == 2 and len(server.requests) == 2
    assert 7.0 in clock.sleeps  # the server's wait, not the 2 s backoff


def test_retry_after_as_an_http_date(server, clock):
    server.queue(
        Reply.rate_limited(retry_after=format_datetime(NOW + timedelta(seconds=30), usegmt=True))
    )
    run(call(make_client(server, clock), "ohlc", "bitcoin", 1))
    assert pytest.approx(30.0) in clock.sleeps


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_are_retried_with_backoff(server, clock, status):
    server.queue(Reply.server_error(status), Reply.server_error(502))
    client = make_client(server, clock)
    data = run(call(client, "ohlc", "bitcoin", 1))
    assert data.fetched == 49 and client.calls == 3
    backoff = [s for s in clock.sleeps if s > 0.5]
    assert len(backoff) == 2
    assert 1.8 <= backoff[0] <= 2.2 and 3.6 <= backoff[1] <= 4.4  # 2 s, 4 s ± 10 % jitter


def test_a_timeout_is_retried(server, clock):
    server.queue(Reply.slow(2.0))
    client = make_client(server, clock, timeout_seconds=0.2)
    data = run(call(client, "ohlc", "bitcoin", 1))
    assert data.fetched == 49 and client.calls == 2


def test_malformed_json_is_retried_then_parsed(server, clock):
    server.queue(
        Reply.raw("{'not': json"), Reply.raw("<html>cloudflare</html>", content_type="text/html")
    )
    client = make_client(server, clock)
    assert run(call(client, "ohlc", "bitcoin", 1)).fetched == 49
    assert client.calls == 3


def test_retries_exhausted_give_a_clear_error(server, clock, caplog):
    server.queue(*[Reply.server_error(502)] * 10)
    client = make_client(server, clock, max_attempts=3)
    with pytest.raises(CoinGeckoUnavailable) as info:
        run(call(client, "ohlc", "bitcoin", 1))
    message = str(info.value)
    assert "/coins/bitcoin/ohlc" in message and "3 attempts" in message and "502" in message
    assert info.value.attempts == 3 and len(server.requests) == 3
    assert "retry 2 of 2" in caplog.text
    assert "retry 3 of 2" not in caplog.text  # the last failure is the error, not a retry
    assert caplog.text.count("; retry ") == 2


def test_connection_refused_is_retried_then_reported(clock):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = CoinGeckoConfig.resolve(
        api_key=KEY, base_url=f"http://127.0.0.1:{port}/api/v3", max_attempts=2
    )
    with pytest.raises(CoinGeckoUnavailable, match="connection failed"):
        run(call(CoinGeckoClient(config, clock=clock), "ohlc", "bitcoin", 1))


# ---------------------------------------------------------------- fail fast


def test_401_bad_key_fails_fast_naming_the_settings(server, clock):
    client = make_client(server, clock, api_key="wrong-key")
    with pytest.raises(CoinGeckoAuthError) as info:
        run(call(client, "ohlc", "bitcoin", 1))
    message = str(info.value)
    assert "COINGECKO_API_KEY" in message and "COINGECKO_PLAN" in message
    assert "401" in message and "10002" in message
    assert len(server.requests) == 1  # not retried
    assert "wrong-key" not in message


def test_a_demo_key_sent_as_pro_gets_the_plan_hint(server, clock):
    client = make_client(server, clock, plan="pro", api_key=KEY)
    with pytest.raises(CoinGeckoAuthError, match="10011") as info:
        run(call(client, "ohlc", "bitcoin", 1))
    assert "x-cg-demo-api-key" in str(info.value)


def test_403_fails_fast(server, clock):
    server.queue(Reply.forbidden())
    with pytest.raises(CoinGeckoAuthError, match=r"403.*firewall"):
        run(call(make_client(server, clock), "ohlc", "bitcoin", 1))
    assert len(server.requests) == 1


def test_404_names_the_coin_id(server, clock):
    with pytest.raises(CoinNotFound) as info:
        run(call(make_client(server, clock), "ohlc", "bitcoinn", 1))
    assert info.value.coin_id == "bitcoinn"
    assert "'bitcoinn'" in str(info.value) and "assets list" in str(info.value)
    assert len(server.requests) == 1


def test_history_beyond_the_plan_is_a_plan_limit(server, clock):
    server.queue(Reply(401, HISTORY_LIMIT_BODY))
    with pytest.raises(CoinGeckoPlanLimit, match="365 days"):
        run(call(make_client(server, clock), "ohlc", "bitcoin", 1))


def test_a_wrongly_shaped_answer_is_not_retried(server, clock):
    server.queue(Reply.json({"prices": []}), endpoint="ohlc")
    with pytest.raises(CoinGeckoDataError, match="not a list"):
        run(call(make_client(server, clock), "ohlc", "bitcoin", 1))
    server.queue(Reply.json([[1, 2]]), endpoint="market_chart/range")
    with pytest.raises(CoinGeckoDataError, match="prices"):
        run(call(make_client(server, clock), "market_chart_range", "bitcoin", NOW - HOUR, NOW))


def test_the_key_never_appears_in_logs_or_errors(server, clock, caplog):
    caplog.set_level(logging.DEBUG)
    server.queue(
        Reply.rate_limited("1"),
        Reply.server_error(500),
        Reply.raw(f"echo {KEY}"),  # even a server echoing the key back
        Reply.slow(1.0),
        *[Reply.server_error(503)] * 5,
    )
    errors: list[str] = []
    client = make_client(server, clock, timeout_seconds=0.2, max_attempts=6)
    try:
        run(call(client, "ohlc", "bitcoin", 1))
    except CoinGeckoUnavailable as exc:
        errors.append(str(exc))
        errors.append(repr(exc))
    for bad in (
        make_client(server, clock, api_key=KEY + "x"),
        make_client(server, clock, plan="pro", api_key=KEY),
    ):
        with pytest.raises(CoinGeckoAuthError) as info:
            run(call(bad, "ohlc", "bitcoin", 1))
        errors.append(str(info.value))
    assert errors
    assert KEY not in caplog.text
    assert all(KEY not in e for e in errors)


# ---------------------------------------------------------------- pace


def test_the_pace_is_shared_by_every_call(server, clock):
    client = make_client(server, clock, calls_per_minute=25)

    async def many() -> None:
        async with client:
            for _ in range(15):
                await client.ohlc("bitcoin", 1)
                await client.ohlc("ethereum", 1)

    started = clock.monotonic()
    run(many())
    # 30 calls at 25 a minute, 3 back to back: 27 waits of 2.4 s
    assert client.limiter.waited == pytest.approx(27 * 2.4, rel=0.01)
    assert clock.monotonic() - started == pytest.approx(64.8, rel=0.01)
    assert len(server.requests) == 30


def test_retries_wait_for_the_pace_too(server, clock):
    server.queue(*[Reply.rate_limited(retry_after="0")] * 5)
    client = make_client(server, clock, calls_per_minute=6, max_attempts=6)
    run(call(client, "ohlc", "bitcoin", 1))
    assert client.calls == 6
    assert client.limiter.waited == pytest.approx(3 * 10.0, rel=0.01)


# ---------------------------------------------------------------- rows → candles


def ohlc_of(rows: list[list[Any]], server, clock, **overrides: Any) -> Any:
    server.queue(Reply.json(rows), endpoint="ohlc")
    return run(call(make_client(server, clock, **overrides), "ohlc", "bitcoin", 1))


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def test_bad_rows_are_rejected_one_by_one(server, clock):
    base = datetime(2023, 12, 31, 12, tzinfo=UTC)
    half = timedelta(minutes=30)
    rows = [
        [ms(base + half * 1), 100, 101, 99, 100],
        [ms(base + half * 2), 100, 101, 99, 100.5],
        [ms(base + half * 3), 100.5, 102, 100, 101],
        [ms(base + half * 2), 100, 101, 99, 100.5],  # duplicated timestamp
        [ms(base + half * 4), 101, 102, 100, 101.5],
        [ms(base + half * 6), 101.5, 103, 101, 102],  # out of order
        [ms(base + half * 5), 101.5, 102, 101, 101.5],
        [ms(base + half * 7), 101.5, 102, 101, 102],  # 15:30: its 16:00 twin is bad below
        [ms(base + half * 7), 102, 103],  # wrong length
        [ms(base + half * 8), "102", 103, 101, 102],  # a string, not a number
        [ms(base + half * 9), float("nan"), 103, 101, 102],  # NaN
        [ms(base + half * 10), -5, 103, 101, 102],  # negative
        [ms(base + half * 11), 0, 103, 101, 102],  # zero
        [ms(base + half * 12), 102, 99, 101, 102],  # high < low
        [ms(base + half * 13) + 60_000, 102, 103, 101, 102],  # off the 30-minute grid
        ["soon", 102, 103, 101, 102],  # unreadable time
        [ms(datetime(2024, 1, 3, tzinfo=UTC)), 102, 103, 101, 102],  # far future
        [ms(datetime(2024, 1, 1, 0, 30, tzinfo=UTC)), 102, 103, 101, 102],  # still open
        [ms(datetime(2024, 1, 1, 0, 0, tzinfo=UTC)), 102, 103, 101, 102.5],
        [ms(datetime(2023, 12, 31, 23, 30, tzinfo=UTC)), 102, 103, 101, 102],
    ]
    data = ohlc_of(rows, server, clock, settle_seconds=0)  # the row checks alone
    assert data.fetched == len(rows)
    step = OhlcStep(base + HOUR, datetime(2024, 1, 1, tzinfo=UTC), 1, False, half)
    batch = ohlc_batch(
        data, step, symbol="BTC", interval=HOUR, limits=ValidationLimits(), reference=None
    )
    assert dict(batch.rejected) == {
        v.MALFORMED: 2,
        v.NOT_A_NUMBER: 1,
        v.NON_FINITE: 1,
        v.NON_POSITIVE: 2,
        v.HIGH_BELOW_LOW: 1,
        v.OFF_GRID: 1,
        v.FUTURE: 1,
        # the 16:00 hour lost its second half: not made up from the first
        v.INCOMPLETE: 1,
    }
    assert batch.duplicates == 1 and batch.duplicates_differing == 0
    assert batch.open == 1  # the 01:00 hour, its 00:30 half still open at 00:10
    assert [c.close_time for c in batch.candles] == [
        base + HOUR,
        base + 2 * HOUR,
        base + 3 * HOUR,
        datetime(2024, 1, 1, tzinfo=UTC),
    ]
    hour = batch.candles[1]
    assert (hour.open, hour.high, hour.low, hour.close) == (
        Decimal("100.5"),
        Decimal("102"),
        Decimal("100"),
        Decimal("101.5"),
    )
    assert all(c.volume is None for c in batch.candles)


# ---------------------------------------------------------------- what to fetch


def config(plan: str = "demo") -> CoinGeckoConfig:
    return CoinGeckoConfig.resolve(plan=plan, api_key=KEY)


def test_live_ingestion_uses_one_ohlc_call_for_a_short_span():
    plan = plan_fetch(
        config(),
        first_close=NOW.replace(minute=0) - 2 * HOUR,
        last_close=NOW.replace(minute=0),
        interval=HOUR,
        now=NOW,
        live=True,
    )
    assert [type(s) for s in plan.steps] == [OhlcStep]
    assert (plan.steps[0].days, plan.steps[0].hourly) == (1, False)


def test_live_ingestion_of_days_uses_the_range_on_demo_and_hourly_ohlc_on_pro():
    first = datetime(2023, 12, 29, tzinfo=UTC)
    last = datetime(2024, 1, 1, tzinfo=UTC)
    demo = plan_fetch(
        config(), first_close=first, last_close=last, interval=HOUR, now=NOW, live=True
    )
    assert [type(s) for s in demo.steps] == [RangeStep]
    pro = plan_fetch(
        config("pro"), first_close=first, last_close=last, interval=HOUR, now=NOW, live=True
    )
    assert [(s.days, s.hourly) for s in pro.steps] == [(7, True)]  # type: ignore[union-attr]
    four_hourly = plan_fetch(
        config(), first_close=first, last_close=last, interval=4 * HOUR, now=NOW, live=True
    )
    assert [(s.days, s.granularity) for s in four_hourly.steps] == [(7, 4 * HOUR)]  # type: ignore[union-attr]


def test_backfills_are_chunked_contiguously_within_90_days():
    first = datetime(2023, 3, 1, tzinfo=UTC)
    last = datetime(2023, 12, 1, tzinfo=UTC)
    plan = plan_fetch(
        config("pro"), first_close=first, last_close=last, interval=HOUR, now=NOW, live=False
    )
    assert len(plan.steps) == 4
    assert plan.steps[0].first_close == first and plan.steps[-1].last_close == last
    for before, after in zip(plan.steps, plan.steps[1:], strict=False):
        assert after.first_close == before.last_close + HOUR
    for step in plan.steps:
        assert step.last_close - step.first_close + 2 * HOUR < timedelta(days=90)


def test_backfill_chunks_can_be_shorter_but_never_longer():
    first = datetime(2023, 3, 1, tzinfo=UTC)
    last = datetime(2023, 5, 1, tzinfo=UTC)
    short = CoinGeckoConfig.resolve(plan="pro", api_key=KEY, range_chunk_days=15)
    plan = plan_fetch(short, first_close=first, last_close=last, interval=HOUR, now=NOW, live=False)
    assert len(plan.steps) == 5
    assert all(s.last_close - s.first_close < timedelta(days=15) for s in plan.steps)
    with pytest.raises(CoinGeckoConfigError, match="COINGECKO_RANGE_CHUNK_DAYS"):
        CoinGeckoConfig.resolve(plan="pro", api_key=KEY, range_chunk_days=120)


def test_demo_plans_stop_at_365_days():
    plan = plan_fetch(
        config(),
        first_close=datetime(2022, 6, 1, tzinfo=UTC),
        last_close=datetime(2023, 6, 1, tzinfo=UTC),
        interval=HOUR,
        now=NOW,
        live=False,
    )
    assert plan.first_close > NOW - timedelta(days=365)
    assert "365 days" in plan.notes[0] and "COINGECKO_PLAN=pro" in plan.notes[0]
    old = plan_fetch(
        config(),
        first_close=datetime(2021, 1, 1, tzinfo=UTC),
        last_close=datetime(2022, 1, 1, tzinfo=UTC),
        interval=HOUR,
        now=NOW,
        live=False,
    )
    assert old.steps == [] and "nothing to fetch" in old.notes[0]
