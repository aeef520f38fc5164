"""CoinGecko over httpx: the client, what to ask for, and turning answers into candles.

The client is here; the plans, limits, errors and configuration are in
:mod:`market.coingecko_config`, what to ask for in :mod:`market.coingecko_plan`, and
reading answers into candles in :mod:`market.coingecko_answers`. Every public name of
those is importable from here too.

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
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from market.coingecko_answers import (
    NO_VOLUMES_NOTE,
    UNKNOWN_VOLUME_NOTE,
    ZERO_VOLUME_NOTE,
    ChartData,
    OhlcData,
    ohlc_batch,
    parse_market_chart,
    parse_ohlc,
    range_batch,
)
from market.coingecko_config import (
    BASE_URLS,
    ERROR_BODY_CHARS,
    HOURLY_OHLC_MAX_DAYS,
    KEY_HEADERS,
    LIMITED_HISTORY,
    MAX_RETRY_AFTER,
    OHLC_DAYS,
    PACE_BURST,
    PLANS,
    PUBLIC_CALLS_PER_MINUTE,
    RANGE_CHUNK,
    SETTLE,
    USER_AGENT,
    CoinGeckoAuthError,
    CoinGeckoConfig,
    CoinGeckoConfigError,
    CoinGeckoDataError,
    CoinGeckoError,
    CoinGeckoPlanLimit,
    CoinGeckoRetryAfterTooLong,
    CoinGeckoUnavailable,
    CoinNotFound,
    Plan,
    error_details,
)
from market.coingecko_plan import (
    FetchPlan,
    FetchStep,
    OhlcStep,
    RangeStep,
    ceil_time,
    describe_steps,
    ohlc_granularity,
    plan_fetch,
)
from race.clock import Clock
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


@dataclass
class _Call:
    """One GET of the client, over its attempts."""

    coin_id: str
    path: str
    params: dict[str, str | int]
    tries: int = 0

    @property
    def label(self) -> str:
        return f"/{self.path}"


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
        call = _Call(coin_id, f"coins/{quote(coin_id, safe='')}/{endpoint}", params)

        def on_retry(number: int, exc: BaseException, seconds: float) -> None:
            if number >= self.retry.attempts:
                return  # the last attempt failed: no retry follows (the error says so)
            log.warning(
                "CoinGecko %s: %s; retry %d of %d in %.1f s",
                call.label,
                self.config.redact(str(exc)),
                number,
                self.retry.attempts - 1,
                seconds,
            )

        try:
            return await retry_async(
                lambda: self._attempt(call),
                self.retry,
                sleep=self.sleep,
                on_retry=on_retry,
                rng=self.rng,
                what=f"CoinGecko {call.label}",
            )
        except RetriesExhausted as exc:
            raise CoinGeckoUnavailable(
                self.config.redact(
                    f"CoinGecko {call.label} failed after {exc.attempts} attempts "
                    f"(last: {exc.last}) at {self.config.base_url}"
                ),
                exc.attempts,
            ) from None

    async def _attempt(self, call: _Call) -> tuple[Any, datetime]:
        await self.limiter.acquire()
        self.calls += 1
        call.tries += 1
        try:
            response = await self._http.get(call.path, params=call.params)
        except httpx.TimeoutException:
            raise TransientError(
                f"no answer within {self.config.timeout_seconds:g} s (COINGECKO_TIMEOUT_SECONDS)"
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
        error = self._status_error(response, call.coin_id, call.label)
        if isinstance(error, CoinGeckoRetryAfterTooLong):
            error.attempts = call.tries
        raise error

    def _status_error(self, response: httpx.Response, coin_id: str, label: str) -> Exception:
        status = response.status_code
        code, message = error_details(response)
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


__all__ = [
    "BASE_URLS",
    "ERROR_BODY_CHARS",
    "HOURLY_OHLC_MAX_DAYS",
    "KEY_HEADERS",
    "LIMITED_HISTORY",
    "MAX_RETRY_AFTER",
    "NO_VOLUMES_NOTE",
    "OHLC_DAYS",
    "PACE_BURST",
    "PLANS",
    "PUBLIC_CALLS_PER_MINUTE",
    "RANGE_CHUNK",
    "SETTLE",
    "UNKNOWN_VOLUME_NOTE",
    "USER_AGENT",
    "ZERO_VOLUME_NOTE",
    "ChartData",
    "CoinGeckoAuthError",
    "CoinGeckoClient",
    "CoinGeckoConfig",
    "CoinGeckoConfigError",
    "CoinGeckoDataError",
    "CoinGeckoError",
    "CoinGeckoPlanLimit",
    "CoinGeckoRetryAfterTooLong",
    "CoinGeckoUnavailable",
    "CoinNotFound",
    "FetchPlan",
    "FetchStep",
    "OhlcData",
    "OhlcStep",
    "Plan",
    "RangeStep",
    "ceil_time",
    "describe_steps",
    "ohlc_batch",
    "ohlc_granularity",
    "parse_market_chart",
    "parse_ohlc",
    "plan_fetch",
    "range_batch",
]
