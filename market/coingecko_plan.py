"""What to ask CoinGecko for: the calls (:class:`OhlcStep`, :class:`RangeStep`) that fetch
the candles closing in a range, within the plan's reach (:func:`plan_fetch`). See
:mod:`market.coingecko`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from market.coingecko_config import HOURLY_OHLC_MAX_DAYS, OHLC_DAYS, CoinGeckoConfig
from race.domain.timeutil import floor_time, format_interval


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


def describe_steps(steps: Sequence[FetchStep]) -> str:
    if not steps:
        return "nothing to fetch"
    if len(steps) == 1:
        return steps[0].describe()
    return f"/market_chart/range in {len(steps)} chunks"
