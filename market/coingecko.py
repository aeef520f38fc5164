"""CoinGecko over httpx: the client, what to ask for, and turning answers into candles.

Plans (``COINGECKO_PLAN``; default ``demo`` when ``COINGECKO_API_KEY`` is set, else
``public``):

=========  ===================================  =====================  =================
plan       base URL                             key header             history
=========  ===================================  =====================  =================
public     https://api.coingecko.com/api/v3     (none)                 past 365 days
demo       https://api.coingecko.com/api/v3     ``x-cg-demo-api-key``  past 365 days
pro        https://pro-api.coingecko.com/api/v3 ``x-cg-pro-api-key``   full
=========  ===================================  =====================  =================

``COINGECKO_BASE_URL`` overrides the URL (proxies, tests); the header still follows the plan.
The key travels in a header only — never in a URL — and every message this module builds is
passed through :meth:`CoinGeckoConfig.redact`.

Endpoints:

* ``/coins/{id}/ohlc?vs_currency=usd&days=N`` → ``[[ms, open, high, low, close], …]``,
  stamped at the candle's CLOSE; granularity is automatic (1–2 days: 30 minutes, 3–30: 4
  hours, beyond: 4 days; paid plans may add ``interval=hourly`` up to 90 days); no volume.
  Used by live ingestion when the missing span is short.
* ``/coins/{id}/market_chart/range?vs_currency=usd&from=&to=`` → ``prices``,
  ``market_caps``, ``total_volumes`` as ``[ms, value]`` (5-minute points within a day of
  now, hourly up to 90 days, daily beyond). Used for backfills, in chunks of at most 89
  days so the points stay hourly; candles are built with
  :func:`market.aggregate.candles_from_points`. They carry the 24-hour rolling USD volume
  CoinGecko reports at their close as ``quote_volume_24h``; their ``volume`` (base asset,
  within the candle) is unknown: CoinGecko has none. A ``total_volumes`` value of 0 is
  CoinGecko's "unknown" (early dates) and stays None.

A candle counts as closed only once ``close_time ≤ fetch time − settle``
(``COINGECKO_SETTLE_SECONDS``, default 900): CoinGecko caches ``/ohlc`` (refreshed about
every 15–30 minutes) and ``market_chart`` (a few minutes), so an answer received just after
a close may still describe that candle as forming. Until then it counts as ``open``: not
stored, fetched again by the next run.

Every call waits for the shared pace (:class:`race.resilience.RateLimiter`,
``COINGECKO_CALLS_PER_MINUTE``) and is retried by :func:`race.resilience.retry_async` on 429,
408, 5xx, timeouts, connection errors and unreadable bodies, with exponential backoff and
jitter; a ``Retry-After`` wins up to ``COINGECKO_MAX_RETRY_AFTER_SECONDS`` — a longer one
gives the call up at once (:class:`CoinGeckoRetryAfterTooLong`). 401/403/404 and other 4xx
fail at once with a message naming the setting or the coin id to check.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import quote

import httpx

from market.aggregate import PricePoint, batch_at_interval, candles_from_points
from market.validation import (
    BAD_VOLUME,
    MALFORMED,
    NON_FINITE,
    NON_POSITIVE,
    CandleBatch,
    RawCandle,
    Rejection,
    RowError,
    ValidationLimits,
    epoch_ms,
    json_number,
    validate_candles,
)
from race.clock import Clock
from race.domain.model import Candle
from race.domain.timeutil import EPOCH, floor_time, format_interval
from race.resilience import (
    RateLimiter,
    RetriesExhausted,
    RetryPolicy,
    TransientError,
    is_retryable_status,
    parse_retry_after,
    retry_async,
)

log = logging.getLogger(__name__)

Plan = Literal["public", "demo", "pro"]
PLANS: tuple[Plan, ...] = ("public", "demo", "pro")
BASE_URLS: dict[Plan, str] = {
    "public": "https://api.coingecko.com/api/v3",
    "demo": "https://api.coingecko.com/api/v3",
    "pro": "https://pro-api.coingecko.com/api/v3",
}
KEY_HEADERS: dict[Plan, str] = {"demo": "x-cg-demo-api-key", "pro": "x-cg-pro-api-key"}
USER_AGENT = f"ai-trading-race/0.1 (market ingestion; httpx/{httpx.__version__})"

PUBLIC_CALLS_PER_MINUTE = 5.0
"""Keyless calls are limited per IP (about 5 a minute since 2024): the pace never goes
faster on the public plan, whatever ``COINGECKO_CALLS_PER_MINUTE`` says."""
PACE_BURST = 3.0
"""Calls allowed back to back after a quiet spell; then one every 60 / calls-per-minute
seconds. Small, so no minute ever sees much more than the configured pace."""
LIMITED_HISTORY = timedelta(days=365)
"""How far back public and Demo plans may ask for (older → HTTP 401, error 10012)."""
OHLC_DAYS = (1, 7, 14, 30, 90, 180, 365)
"""``days`` values ``/ohlc`` accepts."""
HOURLY_OHLC_MAX_DAYS = 90
RANGE_CHUNK = timedelta(days=89)
"""Longest span of close times asked of ``/market_chart/range`` at once: with the two
intervals of lookback the request stays within 90 days, so the points are hourly."""
SETTLE = timedelta(seconds=900)
"""How long after its close a candle still counts as open (``COINGECKO_SETTLE_SECONDS``)."""
ERROR_BODY_CHARS = 200


# ---------------------------------------------------------------- errors


class CoinGeckoError(RuntimeError):
    """Market data could not be fetched; the message says what to check."""


class CoinGeckoConfigError(CoinGeckoError, ValueError):
    """The settings cannot work (e.g. a Demo plan without a key)."""


class CoinGeckoAuthError(CoinGeckoError):
    """HTTP 401/403: the key, the plan or the host is wrong. Not retried."""


class CoinGeckoPlanLimit(CoinGeckoError):
    """The plan does not allow the request (e.g. history older than 365 days)."""


class CoinNotFound(CoinGeckoError):
    """HTTP 404 for a coin id."""

    def __init__(self, message: str, coin_id: str) -> None:
        super().__init__(message)
        self.coin_id = coin_id


class CoinGeckoDataError(CoinGeckoError):
    """An answer that is not shaped like CoinGecko's (or another 4xx). Not retried."""


class CoinGeckoUnavailable(CoinGeckoError):
    """Every attempt failed with a retryable error (429, 5xx, timeout, network)."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class CoinGeckoRetryAfterTooLong(CoinGeckoUnavailable):
    """CoinGecko asked to wait (``Retry-After``) longer than
    ``COINGECKO_MAX_RETRY_AFTER_SECONDS``: the fetch is given up at once, not slept through."""

    def __init__(self, message: str, attempts: int, retry_after: float) -> None:
        super().__init__(message, attempts)
        self.retry_after = retry_after


MAX_RETRY_AFTER = 60.0
"""Default and upper end of ``COINGECKO_MAX_RETRY_AFTER_SECONDS`` (seconds)."""


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class CoinGeckoConfig:
    plan: Plan
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    calls_per_minute: float = 25.0
    timeout_seconds: float = 30.0
    max_attempts: int = 4
    base_url_overridden: bool = False
    user_agent: str = USER_AGENT
    range_chunk: timedelta = RANGE_CHUNK
    """Span of one ``/market_chart/range`` call of a backfill (≤ 89 days: hourly points)."""
    settle: timedelta = SETTLE
    """A candle is stored only once its close is at least this long before the answer
    arrived (CoinGecko's caches may still be building it); until then it is ``open``."""
    max_retry_after: float = MAX_RETRY_AFTER
    """Longest ``Retry-After`` (seconds) waited for; a longer one gives the call up at once."""

    @classmethod
    def resolve(
        cls,
        *,
        plan: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        calls_per_minute: float = 25.0,
        timeout_seconds: float = 30.0,
        max_attempts: int = 4,
        range_chunk_days: float = RANGE_CHUNK.days,
        settle_seconds: float = SETTLE.total_seconds(),
        max_retry_after_seconds: float = MAX_RETRY_AFTER,
    ) -> CoinGeckoConfig:
        """The effective configuration from the ``COINGECKO_*`` settings."""
        key = (api_key or "").strip() or None
        chosen = (plan or ("demo" if key else "public")).strip().lower()
        if chosen not in PLANS:
            raise CoinGeckoConfigError(f"COINGECKO_PLAN={plan!r} is not one of {', '.join(PLANS)}")
        resolved: Plan = chosen  # type: ignore[assignment]
        if resolved in KEY_HEADERS and key is None:
            raise CoinGeckoConfigError(
                f"COINGECKO_PLAN={resolved} needs COINGECKO_API_KEY (a {resolved} key from the "
                "CoinGecko developer dashboard), or set COINGECKO_PLAN=public to go keyless"
            )
        if resolved == "public" and key is not None:
            log.info("COINGECKO_PLAN=public: COINGECKO_API_KEY is set but not sent")
            key = None
        if not (calls_per_minute > 0 and math.isfinite(calls_per_minute)):
            raise CoinGeckoConfigError(
                f"COINGECKO_CALLS_PER_MINUTE must be positive, got {calls_per_minute}"
            )
        if not (timeout_seconds > 0 and math.isfinite(timeout_seconds)):
            raise CoinGeckoConfigError(
                f"COINGECKO_TIMEOUT_SECONDS must be positive, got {timeout_seconds}"
            )
        if max_attempts < 1:
            raise CoinGeckoConfigError(f"COINGECKO_MAX_ATTEMPTS must be ≥ 1, got {max_attempts}")
        if not (0 < range_chunk_days <= RANGE_CHUNK.days):
            raise CoinGeckoConfigError(
                f"COINGECKO_RANGE_CHUNK_DAYS must be in (0, {RANGE_CHUNK.days}] (longer ranges "
                f"come back daily, not hourly), got {range_chunk_days}"
            )
        if not (settle_seconds >= 0 and math.isfinite(settle_seconds)):
            raise CoinGeckoConfigError(
                f"COINGECKO_SETTLE_SECONDS must be a number of seconds ≥ 0, got {settle_seconds}"
            )
        if not (max_retry_after_seconds >= 0 and math.isfinite(max_retry_after_seconds)):
            raise CoinGeckoConfigError(
                "COINGECKO_MAX_RETRY_AFTER_SECONDS must be a number of seconds ≥ 0, got "
                f"{max_retry_after_seconds}"
            )
        if resolved == "public" and calls_per_minute > PUBLIC_CALLS_PER_MINUTE:
            calls_per_minute = PUBLIC_CALLS_PER_MINUTE
        url = (base_url or "").strip() or BASE_URLS[resolved]
        return cls(
            plan=resolved,
            base_url=url.rstrip("/"),
            api_key=key,
            calls_per_minute=calls_per_minute,
            timeout_seconds=timeout_seconds,
            max_attempts=max_attempts,
            base_url_overridden=bool((base_url or "").strip()),
            range_chunk=timedelta(days=range_chunk_days),
            settle=timedelta(seconds=settle_seconds),
            max_retry_after=max_retry_after_seconds,
        )

    @property
    def key_header(self) -> str | None:
        return KEY_HEADERS.get(self.plan) if self.api_key else None

    @property
    def history_limit(self) -> timedelta | None:
        return None if self.plan == "pro" else LIMITED_HISTORY

    def headers(self) -> dict[str, str]:
        headers = {"accept": "application/json", "user-agent": self.user_agent}
        if self.key_header and self.api_key:
            headers[self.key_header] = self.api_key
        return headers

    def redact(self, text: str) -> str:
        """``text`` with the key replaced: for every message that leaves the client."""
        if self.api_key and self.api_key in text:
            text = text.replace(self.api_key, "***")
        return text

    def describe(self) -> str:
        return f"plan {self.plan} at {self.base_url}"


# ---------------------------------------------------------------- answers


@dataclass
class OhlcData:
    """``/ohlc`` rows as read (numbers parsed, not checked), stamped at close.
    ``received_at − settle`` is the latest close time that counts as closed."""

    coin_id: str
    rows: list[RawCandle]
    rejections: list[Rejection]
    fetched: int
    received_at: datetime
    granularity: timedelta
    settle: timedelta = timedelta(0)


@dataclass
class ChartData:
    """``/market_chart/range`` price points (each with the 24-hour volume reported at its
    time). ``fetched`` counts price points; ``rejections`` holds price points and
    ``total_volumes`` entries that could not be used; ``notes`` what changed nothing
    stored as a value (e.g. a 0 volume read as unknown)."""

    coin_id: str
    points: list[PricePoint]
    rejections: list[Rejection]
    fetched: int
    received_at: datetime
    duplicates: int = 0
    duplicates_differing: int = 0
    settle: timedelta = timedelta(0)
    notes: Counter[str] = field(default_factory=Counter)


def parse_ohlc(payload: Any, coin_id: str) -> tuple[list[RawCandle], list[Rejection]]:
    if not isinstance(payload, list):
        raise CoinGeckoDataError(
            f"/coins/{coin_id}/ohlc answered {_kind(payload)}, not a list of "
            "[time, open, high, low, close] rows"
        )
    rows: list[RawCandle] = []
    rejections: list[Rejection] = []
    for index, item in enumerate(payload):
        where = f"row {index}"
        if not isinstance(item, list) or len(item) != 5:
            size = len(item) if isinstance(item, list) else _kind(item)
            rejections.append(Rejection(MALFORMED, f"{size} fields, expected 5", None, where))
            continue
        try:
            close_time = epoch_ms(item[0], field="time")
        except RowError as exc:
            rejections.append(Rejection(exc.reason, str(exc), None, where))
            continue
        try:
            o, h, low, c = (
                json_number(value, field=name)
                for value, name in zip(item[1:], ("open", "high", "low", "close"), strict=True)
            )
        except RowError as exc:
            rejections.append(Rejection(exc.reason, str(exc), close_time, where))
            continue
        rows.append(RawCandle(close_time, o, h, low, c, None, 0, where))
    return rows, rejections


ZERO_VOLUME_NOTE = "total_volumes 0 (CoinGecko's unknown) read as unknown"
NO_VOLUMES_NOTE = "no total_volumes list in the answer: 24 h volume unknown"
UNKNOWN_VOLUME_NOTE = "candles without a 24 h volume (no usable total_volumes value at the close)"


def parse_market_chart(payload: Any, coin_id: str) -> ChartData:
    """Price points with the ``total_volumes`` value of the same time. Unreadable price
    points are rejected by reason; unreadable, negative or non-finite volume entries too
    (``bad_volume``, ``not_a_number``, ``malformed``: the point keeps its price, its volume
    is unknown). A volume of 0 is CoinGecko's "unknown" (early dates): None, noted."""
    where = f"/coins/{coin_id}/market_chart/range"
    if not isinstance(payload, dict) or not isinstance(payload.get("prices"), list):
        raise CoinGeckoDataError(f"{where} answered {_kind(payload)} without a 'prices' list")
    rejections: list[Rejection] = []
    data = ChartData(coin_id, [], rejections, len(payload["prices"]), EPOCH)
    volumes: dict[datetime, Decimal] = {}
    raw_volumes = payload.get("total_volumes")
    if isinstance(raw_volumes, list):
        for index, item in enumerate(raw_volumes):
            place = f"total_volumes point {index}"
            if not isinstance(item, list) or len(item) != 2:
                size = len(item) if isinstance(item, list) else _kind(item)
                rejections.append(Rejection(MALFORMED, f"{size} fields, expected 2", None, place))
                continue
            try:
                when = epoch_ms(item[0], field="time")
                value = json_number(item[1], field="24 h volume")
            except RowError as exc:
                rejections.append(Rejection(exc.reason, str(exc), None, place))
                continue
            if not value.is_finite() or value < 0:
                rejections.append(
                    Rejection(BAD_VOLUME, f"24 h volume is {value}: left unknown", when, place)
                )
                continue
            if value == 0:
                data.notes[ZERO_VOLUME_NOTE] += 1
                continue
            volumes.setdefault(when, value)
    else:
        data.notes[NO_VOLUMES_NOTE] += 1
    points: dict[datetime, PricePoint] = {}
    for index, item in enumerate(payload["prices"]):
        place = f"point {index}"
        if not isinstance(item, list) or len(item) != 2:
            size = len(item) if isinstance(item, list) else _kind(item)
            rejections.append(Rejection(MALFORMED, f"{size} fields, expected 2", None, place))
            continue
        try:
            when = epoch_ms(item[0], field="time")
            price = json_number(item[1], field="price")
        except RowError as exc:
            rejections.append(Rejection(exc.reason, str(exc), None, place))
            continue
        if not price.is_finite():
            rejections.append(Rejection(NON_FINITE, f"price is {price}", when, place))
            continue
        if price <= 0:
            rejections.append(Rejection(NON_POSITIVE, f"price is {price}", when, place))
            continue
        point = PricePoint(when, price, volumes.get(when))
        known = points.get(when)
        if known is not None:
            data.duplicates += 1
            data.duplicates_differing += known != point
            continue
        points[when] = point
    data.points = sorted(points.values(), key=lambda p: p.time)
    return data


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


# ---------------------------------------------------------------- what to fetch


@dataclass(frozen=True)
class OhlcStep:
    """One ``/ohlc`` call covering candles closing in [first_close, last_close]."""

    first_close: datetime
    last_close: datetime
    days: int
    hourly: bool
    granularity: timedelta

    def describe(self) -> str:
        extra = "&interval=hourly" if self.hourly else ""
        return f"/ohlc days={self.days}{extra} ({format_interval(self.granularity)} candles)"


@dataclass(frozen=True)
class RangeStep:
    """One ``/market_chart/range`` call covering candles closing in [first_close,
    last_close]; it asks from two intervals earlier (the open of the first candle)."""

    first_close: datetime
    last_close: datetime

    def describe(self) -> str:
        return f"/market_chart/range {self.first_close.isoformat()} → {self.last_close.isoformat()}"


FetchStep = OhlcStep | RangeStep


@dataclass
class FetchPlan:
    steps: list[FetchStep]
    first_close: datetime
    last_close: datetime
    notes: list[str] = field(default_factory=list)


def ohlc_granularity(days: int, *, hourly: bool = False) -> timedelta:
    if hourly:
        return timedelta(hours=1)
    if days <= 2:
        return timedelta(minutes=30)
    if days <= 30:
        return timedelta(hours=4)
    return timedelta(days=4)


def ceil_time(value: datetime, interval: timedelta) -> datetime:
    floored = floor_time(value, interval)
    return floored if floored == value else floored + interval


def plan_fetch(
    config: CoinGeckoConfig,
    *,
    first_close: datetime,
    last_close: datetime,
    interval: timedelta,
    now: datetime,
    live: bool,
) -> FetchPlan:
    """The calls that fetch candles closing in [first_close, last_close] (grid times).

    Live ingestion (the timer) uses one ``/ohlc`` call when a ``days`` value covers the
    missing span at a granularity the interval is a multiple of; otherwise — and always for
    explicit ranges (backfills) — ``/market_chart/range`` in chunks. Public and Demo plans
    cannot reach beyond 365 days: the start is moved up (and a note says so)."""
    plan = FetchPlan([], first_close, last_close)
    limit = config.history_limit
    if limit is not None:
        earliest = ceil_time(now - limit + 3 * interval, interval)
        if last_close < earliest:
            plan.notes.append(
                f"nothing to fetch: the {config.plan} plan reaches back 365 days (to "
                f"{earliest.isoformat()}); older data needs COINGECKO_PLAN=pro"
            )
            plan.first_close = earliest
            return plan
        if first_close < earliest:
            plan.notes.append(
                f"start moved from {first_close.isoformat()} to {earliest.isoformat()}: the "
                f"{config.plan} plan reaches back 365 days (COINGECKO_PLAN=pro for more)"
            )
            first_close = plan.first_close = earliest
    if first_close > last_close:
        return plan
    if live:
        step = _ohlc_step(config, first_close, last_close, interval, now)
        if step is not None:
            plan.steps.append(step)
            return plan
    start = first_close
    while start <= last_close:
        end = min(floor_time(start + config.range_chunk - interval, interval), last_close)
        end = max(end, start)
        plan.steps.append(RangeStep(start, end))
        start = end + interval
    return plan


def _ohlc_step(
    config: CoinGeckoConfig,
    first_close: datetime,
    last_close: datetime,
    interval: timedelta,
    now: datetime,
) -> OhlcStep | None:
    # The oldest source candle needed opens at first_close − interval; an hour of margin.
    span = now - (first_close - interval) + timedelta(hours=1)
    for days in OHLC_DAYS:
        if timedelta(days=days) < span:
            continue
        automatic = ohlc_granularity(days)
        if interval % automatic == timedelta(0):
            return OhlcStep(first_close, last_close, days, False, automatic)
        hourly = ohlc_granularity(days, hourly=True)
        if (
            config.plan == "pro"
            and days <= HOURLY_OHLC_MAX_DAYS
            and interval % hourly == timedelta(0)
        ):
            return OhlcStep(first_close, last_close, days, True, hourly)
        return None
    return None


# ---------------------------------------------------------------- answers → candles


def ohlc_batch(
    data: OhlcData,
    step: OhlcStep,
    *,
    symbol: str,
    interval: timedelta,
    limits: ValidationLimits,
    reference: Candle | None,
) -> CandleBatch:
    """Validated candles at ``interval`` from an ``/ohlc`` answer, for the step's closes.
    Rows are checked at their own granularity first (30-minute rows must sit on the
    30-minute grid), then combined; an hour with a missing half is not made up. Older rows
    (candles before the step, already stored) are left alone; later ones are checked (a
    future or still-open candle is counted, never stored)."""
    window_start = step.first_close - interval
    rows = [r for r in data.rows if r.close_time > window_start]
    return batch_at_interval(
        rows,
        symbol=symbol,
        source=data.granularity,
        interval=interval,
        now=data.received_at,
        limits=limits,
        reference=reference,
        rejections=data.rejections,
        fetched=data.fetched,
        first_close=step.first_close,
        last_close=step.last_close,
        settle=data.settle,
    )


def range_batch(
    data: ChartData,
    step: RangeStep,
    *,
    symbol: str,
    interval: timedelta,
    limits: ValidationLimits,
    reference: Candle | None,
) -> CandleBatch:
    """Validated candles at ``interval`` from a ``/market_chart/range`` answer (built as
    :func:`market.aggregate.candles_from_points` says)."""
    built = candles_from_points(
        data.points,
        interval,
        first_close=step.first_close,
        last_close=step.last_close,
        now=data.received_at,
        settle=data.settle,
    )
    batch = validate_candles(
        built.candles,
        symbol=symbol,
        interval=interval,
        now=data.received_at,
        limits=limits,
        reference=reference,
        rejections=[*data.rejections, *built.rejections],
        fetched=data.fetched,
        settle=data.settle,
    )
    batch.duplicates = data.duplicates
    batch.duplicates_differing = data.duplicates_differing
    batch.open += built.open
    batch.notes.update(data.notes)
    known = sum(c.quote_volume_24h is not None for c in built.candles)
    if NO_VOLUMES_NOTE not in data.notes and known < len(built.candles):
        batch.notes[UNKNOWN_VOLUME_NOTE] += len(built.candles) - known
    return batch


# ---------------------------------------------------------------- the client


class CoinGeckoClient:
    """One client per ingestion run: one connection pool, one pace shared by all calls.

    ``clock`` stamps answers (the open/settled-candle check) and paces; ``sleep`` (default: the
    clock's) waits between retries — tests pass a manual clock, so nothing really sleeps."""

    def __init__(
        self,
        config: CoinGeckoConfig,
        *,
        clock: Clock,
        limiter: RateLimiter | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.limiter = limiter or RateLimiter(
            config.calls_per_minute,
            burst=min(PACE_BURST, config.calls_per_minute),
            clock=clock,
        )
        self.retry = retry or RetryPolicy(
            attempts=config.max_attempts, max_retry_after=config.max_retry_after
        )
        self.sleep = sleep or clock.sleep
        self.rng = rng
        self.calls = 0
        """HTTP requests sent (retries included)."""
        self._http = httpx.AsyncClient(
            base_url=config.base_url + "/",
            headers=config.headers(),
            timeout=httpx.Timeout(config.timeout_seconds),
            transport=transport,
            follow_redirects=False,
        )

    async def __aenter__(self) -> CoinGeckoClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def ohlc(self, coin_id: str, days: int, *, hourly: bool = False) -> OhlcData:
        params: dict[str, str | int] = {"vs_currency": "usd", "days": days}
        if hourly:
            params["interval"] = "hourly"
        payload, received_at = await self._get_json(coin_id, "ohlc", params)
        rows, rejections = parse_ohlc(payload, coin_id)
        return OhlcData(
            coin_id,
            rows,
            rejections,
            len(payload),
            received_at,
            ohlc_granularity(days, hourly=hourly),
            settle=self.config.settle,
        )

    async def market_chart_range(self, coin_id: str, start: datetime, end: datetime) -> ChartData:
        params: dict[str, str | int] = {
            "vs_currency": "usd",
            "from": int(start.timestamp()),
            "to": int(end.timestamp()),
        }
        payload, received_at = await self._get_json(coin_id, "market_chart/range", params)
        data = parse_market_chart(payload, coin_id)
        data.received_at = received_at
        data.settle = self.config.settle
        return data

    async def fetch(
        self, coin_id: str, step: FetchStep, interval: timedelta
    ) -> OhlcData | ChartData:
        if isinstance(step, OhlcStep):
            return await self.ohlc(coin_id, step.days, hourly=step.hourly)
        return await self.market_chart_range(
            coin_id, step.first_close - 2 * interval, step.last_close
        )

    async def _get_json(
        self, coin_id: str, endpoint: str, params: dict[str, str | int]
    ) -> tuple[Any, datetime]:
        path = f"coins/{quote(coin_id, safe='')}/{endpoint}"
        label = f"/{path}"

        tries = 0

        async def attempt() -> tuple[Any, datetime]:
            nonlocal tries
            await self.limiter.acquire()
            self.calls += 1
            tries += 1
            try:
                response = await self._http.get(path, params=params)
            except httpx.TimeoutException:
                raise TransientError(
                    f"no answer within {self.config.timeout_seconds:g} s "
                    "(COINGECKO_TIMEOUT_SECONDS)"
                ) from None
            except httpx.TransportError as exc:
                raise TransientError(
                    self.config.redact(f"connection failed ({type(exc).__name__}: {exc})")
                ) from None
            received_at = self.clock.now()
            if response.status_code == 200:
                try:
                    return json.loads(response.content), received_at
                except ValueError:
                    snippet = self.config.redact(response.text[:60])
                    raise TransientError(
                        f"HTTP 200 with a body that is not JSON: {snippet!r}", status=200
                    ) from None
            error = self._status_error(response, coin_id, label)
            if isinstance(error, CoinGeckoRetryAfterTooLong):
                error.attempts = tries
            raise error

        def on_retry(number: int, exc: BaseException, seconds: float) -> None:
            if number >= self.retry.attempts:
                return  # the last attempt failed: no retry follows (the error says so)
            log.warning(
                "CoinGecko %s: %s; retry %d of %d in %.1f s",
                label,
                self.config.redact(str(exc)),
                number,
                self.retry.attempts - 1,
                seconds,
            )

        try:
            return await retry_async(
                attempt,
                self.retry,
                sleep=self.sleep,
                on_retry=on_retry,
                rng=self.rng,
                what=f"CoinGecko {label}",
            )
        except RetriesExhausted as exc:
            raise CoinGeckoUnavailable(
                self.config.redact(
                    f"CoinGecko {label} failed after {exc.attempts} attempts (last: {exc.last})"
                    f" at {self.config.base_url}"
                ),
                exc.attempts,
            ) from None

    def _status_error(self, response: httpx.Response, coin_id: str, label: str) -> Exception:
        status = response.status_code
        code, message = _error_details(response)
        detail = self.config.redact(
            f"HTTP {status}"
            + (f", error {code}" if code else "")
            + (f": {message}" if message else "")
        )
        if is_retryable_status(status):
            retry_after = parse_retry_after(
                response.headers.get("retry-after"), now=self.clock.now()
            )
            if retry_after is not None and retry_after > self.config.max_retry_after:
                return CoinGeckoRetryAfterTooLong(
                    f"CoinGecko {label} asked to retry after {retry_after:,.0f} s ({detail}), "
                    f"longer than COINGECKO_MAX_RETRY_AFTER_SECONDS="
                    f"{self.config.max_retry_after:g}: gave up this fetch at once (the next "
                    "scheduled run tries again)",
                    1,
                    retry_after,
                )
            return TransientError(detail, retry_after=retry_after, status=status)
        if code == 10012:
            return CoinGeckoPlanLimit(
                f"CoinGecko refused the time range ({detail}): the {self.config.plan} plan "
                "reaches back 365 days; use a later --start or COINGECKO_PLAN=pro with a paid key"
            )
        if status in (401, 403):
            hint = (
                "check COINGECKO_API_KEY and COINGECKO_PLAN (demo keys go to "
                "api.coingecko.com with x-cg-demo-api-key, pro keys to pro-api.coingecko.com "
                f"with x-cg-pro-api-key; now: {self.config.describe()}"
                + (", header " + self.config.key_header if self.config.key_header else ", no key")
                + ")"
            )
            if status == 403:
                hint += "; a 403 can also mean CoinGecko's firewall blocks this address"
            return CoinGeckoAuthError(f"CoinGecko refused {label} ({detail}): {hint}")
        if status == 404:
            extra = (
                f", or COINGECKO_BASE_URL={self.config.base_url} is not a CoinGecko API root"
                if self.config.base_url_overridden
                else ""
            )
            return CoinNotFound(
                f"CoinGecko has no coin id {coin_id!r} ({detail}): check the asset's CoinGecko "
                f"id with `python -m race assets list` (ids look like 'bitcoin'){extra}",
                coin_id,
            )
        return CoinGeckoDataError(f"CoinGecko refused {label} ({detail})")


def _error_details(response: httpx.Response) -> tuple[int | None, str]:
    """CoinGecko's error shapes: ``{"status": {"error_code", "error_message"}}``,
    ``{"error": {"status": {…}}}`` and ``{"error": "coin not found"}``."""
    try:
        body = response.json()
    except ValueError:
        return None, response.text.strip()[:ERROR_BODY_CHARS]
    if isinstance(body, dict):
        error = body.get("error")
        status = body.get("status")
        if isinstance(error, dict):
            status = error.get("status", status)
        if isinstance(status, dict):
            code = status.get("error_code")
            message = status.get("error_message")
            return (
                code if isinstance(code, int) and not isinstance(code, bool) else None,
                str(message or "").strip()[:ERROR_BODY_CHARS],
            )
        if isinstance(error, str):
            return None, error[:ERROR_BODY_CHARS]
    return None, str(body)[:ERROR_BODY_CHARS]


def describe_steps(steps: Sequence[FetchStep]) -> str:
    if not steps:
        return "nothing to fetch"
    if len(steps) == 1:
        return steps[0].describe()
    return f"/market_chart/range in {len(steps)} chunks"
