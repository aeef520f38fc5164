"""Plausibility of incoming candles against the stored history before them.

:func:`market.validation.check_moves` compares a candle with the previous candle of its own
batch only, so a feed that steps once (10×) after a gap, or climbs 45 % an hour for a day,
gets through. Here each incoming candle is judged against the closes before it — the stored
ones and those accepted earlier in the same batch (rejected ones never count):

* **level** (``deviation``): its close is more than ``max_deviation`` times above or below
  the median of the last ``reference_closes`` closes (a robust reference: one stray close
  does not move it);
* **cumulative move** (``day_move``): its close is more than ``max_day_move`` times above
  the lowest, or below the highest, close of the ``window`` before it (24 h by default).

A candle with no close before it within the lookback (a first candle, or after a long gap) is
accepted: there is nothing to compare with. Measured on the bundled real history: hourly
Binance BTC/ETH 2017–2023 stay within 1.48× of the 24-close median and 1.92× over 24 hours
(both at the March 2020 crash; May 2021: 1.41× and 1.50×); CoinGecko's daily BTC/ETH since
2013/2015 within 3.03× of the median of 24 daily closes and 2.13× a day (ETH's first days,
August 2015). The defaults (4 and 2.5) leave room.

Pure functions, Decimal only; the caller queries the history and stores what is kept.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from market.validation import Rejection
from race.domain.model import Candle

IMPLAUSIBLE_LEVEL = "implausible_level"
"""The close is too far from the median of the recent closes before it."""
IMPLAUSIBLE_DAY_MOVE = "implausible_day_move"
"""The close is too far from the lowest or highest close of the window before it."""


@dataclass(frozen=True)
class HistoryLimits:
    """Settings ``RACE_CANDLE_MAX_DEVIATION`` and ``RACE_CANDLE_MAX_DAY_MOVE``.

    ``max_deviation``: largest close / median (or median / close) of the last
    ``reference_closes`` closes. ``max_day_move``: largest close / lowest close (or highest
    close / close) within ``window`` before the candle. Both are factors > 1."""

    max_deviation: Decimal = Decimal(4)
    max_day_move: Decimal = Decimal("2.5")
    window: timedelta = timedelta(hours=24)
    reference_closes: int = 24

    def __post_init__(self) -> None:
        for name, setting in (
            ("max_deviation", "RACE_CANDLE_MAX_DEVIATION"),
            ("max_day_move", "RACE_CANDLE_MAX_DAY_MOVE"),
        ):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value <= 1:
                raise ValueError(f"{setting} must be a factor above 1, got {value!r}")
        if self.window <= timedelta(0):
            raise ValueError(f"the plausibility window must be positive, got {self.window}")
        if self.reference_closes < 1:
            raise ValueError(f"reference_closes must be ≥ 1, got {self.reference_closes}")

    def lookback(self, interval: timedelta) -> timedelta:
        """How far before a candle its history reaches: the move window, or the span of
        ``reference_closes`` candles if that is longer (e.g. daily candles)."""
        return max(self.window, interval * self.reference_closes)


def median(values: Sequence[Decimal]) -> Decimal:
    """The median of sorted ``values`` (not empty)."""
    size = len(values)
    middle = size // 2
    if size % 2:
        return values[middle]
    return (values[middle - 1] + values[middle]) / 2


def _ratio(a: Decimal, b: Decimal) -> Decimal:
    """How many times the larger of two positive numbers is the smaller (≥ 1)."""
    return a / b if a >= b else b / a


class _History:
    """Closes before the candle under test: the last ``lookback`` of them by time, with a
    sorted copy of the last ``reference_closes`` (for the median) and of those within
    ``window`` (for the extremes)."""

    def __init__(self, limits: HistoryLimits, interval: timedelta) -> None:
        self.limits = limits
        self.lookback = limits.lookback(interval)
        self.entries: deque[tuple[datetime, Decimal]] = deque()

    def add(self, when: datetime, close: Decimal) -> None:
        self.entries.append((when, close))

    def before(self, when: datetime) -> tuple[list[Decimal], list[Decimal]]:
        """(last ``reference_closes`` closes, closes within ``window``) before ``when``."""
        start = when - self.lookback
        while self.entries and self.entries[0][0] < start:
            self.entries.popleft()
        recent: list[Decimal] = []
        window: list[Decimal] = []
        window_start = when - self.limits.window
        wanted = self.limits.reference_closes
        for at, close in reversed(self.entries):
            if at >= when:
                continue
            if len(recent) < wanted:
                recent.append(close)
            if at >= window_start:
                window.append(close)
            elif len(recent) >= wanted:
                break
        recent.sort()  # once, not an insertion per close
        return recent, window


def judge(
    close: Decimal, recent: Sequence[Decimal], window: Sequence[Decimal], limits: HistoryLimits
) -> tuple[str, str] | None:
    """Why ``close`` is implausible given the sorted ``recent`` closes and the closes within
    the ``window`` before it, as ``(reason, detail)``; None if it is plausible (or there is
    nothing to compare with)."""
    if recent:
        level = median(recent)
        deviation = _ratio(close, level)
        if deviation > limits.max_deviation:
            return (
                IMPLAUSIBLE_LEVEL,
                f"close {close} is {deviation:.2f}× the median {level} of the "
                f"{len(recent)} closes before it (limit {limits.max_deviation}×, "
                "RACE_CANDLE_MAX_DEVIATION)",
            )
    if window:
        low, high = min(window), max(window)
        if close > low * limits.max_day_move:
            return (
                IMPLAUSIBLE_DAY_MOVE,
                f"close {close} is {close / low:.2f}× the lowest close {low} of the "
                f"{_span(limits.window)} before it (limit {limits.max_day_move}×, "
                "RACE_CANDLE_MAX_DAY_MOVE)",
            )
        if close * limits.max_day_move < high:
            return (
                IMPLAUSIBLE_DAY_MOVE,
                f"close {close} is 1/{high / close:.2f} of the highest close {high} of the "
                f"{_span(limits.window)} before it (limit {limits.max_day_move}×, "
                "RACE_CANDLE_MAX_DAY_MOVE)",
            )
    return None


def _span(window: timedelta) -> str:
    hours = window / timedelta(hours=1)
    return f"{hours:g} h"


def check_history(
    candles: Sequence[Candle],
    history: Iterable[tuple[datetime, Decimal]],
    interval: timedelta,
    limits: HistoryLimits,
) -> tuple[list[Candle], list[Rejection]]:
    """Split ``candles`` (sorted by close time) into the plausible ones and rejections.

    ``history`` is the stored ``(close_time, close)`` pairs from
    ``limits.lookback(interval)`` before the first candle up to the last one, sorted. A
    candle whose close time is already stored (in ``history``) is not judged
    — the store keeps the stored candle anyway — and the stored close counts as history.
    Accepted candles count as history for the ones after them; rejected ones never do."""
    stored_closes = dict(history)
    past = _History(limits, interval)
    pending = sorted(stored_closes.items())
    index = 0
    kept: list[Candle] = []
    rejected: list[Rejection] = []
    for candle in candles:
        while index < len(pending) and pending[index][0] < candle.close_time:
            past.add(*pending[index])
            index += 1
        if candle.close_time in stored_closes:
            kept.append(candle)
            continue
        recent, window = past.before(candle.close_time)
        problem = judge(candle.close, recent, window, limits)
        if problem is not None:
            reason, detail = problem
            rejected.append(Rejection(reason, detail, candle.close_time))
            continue
        kept.append(candle)
        past.add(candle.close_time, candle.close)
    return kept, rejected


__all__ = [
    "IMPLAUSIBLE_DAY_MOVE",
    "IMPLAUSIBLE_LEVEL",
    "HistoryLimits",
    "check_history",
    "judge",
    "median",
]
