"""CoinGecko plans, limits, errors and the client configuration
(:class:`CoinGeckoConfig`, from the ``COINGECKO_*`` settings). See :mod:`market.coingecko`."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

import httpx

log = logging.getLogger("market.coingecko")

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
        resolved, key = _plan_and_key(plan, api_key)
        _check_numbers(
            calls_per_minute=calls_per_minute,
            timeout_seconds=timeout_seconds,
            max_attempts=max_attempts,
            range_chunk_days=range_chunk_days,
            settle_seconds=settle_seconds,
            max_retry_after_seconds=max_retry_after_seconds,
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


def _plan_and_key(plan: str | None, api_key: str | None) -> tuple[Plan, str | None]:
    """The plan (default ``demo`` with a key, else ``public``) and the key it sends."""
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
    return resolved, key


def _check_numbers(
    *,
    calls_per_minute: float,
    timeout_seconds: float,
    max_attempts: int,
    range_chunk_days: float,
    settle_seconds: float,
    max_retry_after_seconds: float,
) -> None:
    """``CoinGeckoConfigError`` naming the first numeric setting out of its range."""
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


# ---------------------------------------------------------------- error answers


def error_details(response: httpx.Response) -> tuple[int | None, str]:
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
