"""What a source hands to :mod:`market.validation`: raw rows (:class:`RawCandle`), the
rows it could not read (:class:`Rejection`, with the stable reasons below), the limits,
the resulting :class:`CandleBatch`, the number and time parsers every source reads its
answers with, and the gaps in a run of close times. Pure: no I/O, no clock."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from itertools import pairwise

from race.domain.model import Candle
from race.domain.money import QUANTUM
from race.domain.timeutil import EPOCH

# Rejection reasons (stable strings: they appear in reports, logs and the API).
MALFORMED = "malformed"
"""The row cannot be read: wrong number of fields, an unreadable timestamp, a wrong symbol."""
NOT_A_NUMBER = "not_a_number"
NON_FINITE = "non_finite"
NON_POSITIVE = "non_positive_price"
HIGH_BELOW_LOW = "high_below_low"
HIGH_BELOW_BODY = "high_below_open_close"
LOW_ABOVE_BODY = "low_above_open_close"
BAD_VOLUME = "bad_volume"
OFF_GRID = "off_grid"
FUTURE = "future_timestamp"
IMPLAUSIBLE_RANGE = "implausible_range"
IMPLAUSIBLE_MOVE = "implausible_move"
INCOMPLETE = "incomplete_bucket"
"""A candle at the stored interval would need source rows that are missing."""
OUT_OF_RANGE = "out_of_range"
"""A row or point after the end the source was asked for."""
PRICE_TOO_LARGE = "price_too_large"
"""A price above :data:`MAX_PRICE`: no asset trades there, and no column could hold it."""

MAX_PRICE = Decimal("1e10")
"""Ten billion USD a unit: beyond any traded asset, and storable on every backend (the
SQLite money column holds up to about 9.2e10)."""
MAX_VOLUME = Decimal("9e10")
"""The largest base volume the 8-decimal column stores on SQLite (about 9.2e10)."""
MAX_QUOTE_VOLUME = Decimal("9e16")
"""The largest 24-hour quote volume its 2-decimal column stores on SQLite (about 9.2e16)."""

QUOTE_VOLUME_SCALE = 2
"""Decimal places of a stored 24-hour quote volume (USD cents): the scale of the
``candles.quote_volume_24h`` column (``race/store/tables.py``)."""
QUOTE_VOLUME_QUANTUM = Decimal(1).scaleb(-QUOTE_VOLUME_SCALE)


class RowError(ValueError):
    """A value a source could not read; ``reason`` is one of the rejection reasons."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RawCandle:
    """A row as a source read it: numbers parsed but not checked. ``close_time`` is when
    the candle closed (UTC). ``volume`` is the base-asset volume traded within the candle;
    ``quote_volume_24h`` the source's rolling 24-hour quote (USD) volume reported at the
    close — a different quantity, never mixed into ``volume``; both None when unknown.
    ``rank`` orders differing rows with the same timestamp (higher wins); ``where`` says
    where the row came from, for logs (``line 12``, ``row 3``)."""

    close_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal | None = None
    rank: int = 0
    where: str = ""
    quote_volume_24h: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    detail: str
    close_time: datetime | None = None
    where: str = ""

    def describe(self) -> str:
        at = f" at {self.close_time.isoformat()}" if self.close_time else ""
        place = f" ({self.where})" if self.where else ""
        return f"{self.reason}{at}{place}: {self.detail}"


@dataclass(frozen=True)
class ValidationLimits:
    """Plausibility limits (settings ``RACE_CANDLE_MAX_MOVE`` and ``RACE_CANDLE_MAX_RANGE``).

    ``max_move``: largest |close / previous close − 1| (and |open / previous close − 1|)
    between adjacent candles. ``max_range``: largest (high − low) / low within one candle.
    Measured on the bundled 2017–2023 hourly data: real moves stay below 0.21 and real
    ranges below 0.42; the broken first rows of 2017 reach 1.1–2.8."""

    max_move: Decimal = Decimal("0.5")
    max_range: Decimal = Decimal("1.0")

    def __post_init__(self) -> None:
        for name, setting in (
            ("max_move", "RACE_CANDLE_MAX_MOVE"),
            ("max_range", "RACE_CANDLE_MAX_RANGE"),
        ):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
                raise ValueError(f"{setting} must be a positive number, got {value!r}")


@dataclass(frozen=True, slots=True)
class Gap:
    """Missing candles: every grid close time from ``first_missing`` to ``last_missing``."""

    first_missing: datetime
    last_missing: datetime
    missing: int

    def as_dict(self) -> dict[str, object]:
        return {
            "from": self.first_missing.isoformat(),
            "to": self.last_missing.isoformat(),
            "missing": self.missing,
        }


@dataclass
class CandleBatch:
    """Validated candles of one asset from one source, with what was set aside and why."""

    symbol: str
    interval: timedelta
    candles: list[Candle] = field(default_factory=list)
    fetched: int = 0
    """Rows the source delivered (parsed or not)."""
    duplicates: int = 0
    """Rows dropped because another row had the same close time."""
    duplicates_differing: int = 0
    """Of those, rows whose values differed from the row kept."""
    open: int = 0
    """Candles still open at ``now``, or closed less than ``settle`` before it: not stored
    (fetched again by the next run)."""
    open_times: list[datetime] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    notes: Counter[str] = field(default_factory=Counter)
    """Observations that changed nothing (e.g. a text column disagreeing with the
    authoritative timestamp)."""

    @property
    def rejected(self) -> Counter[str]:
        return Counter(r.reason for r in self.rejections)


def to_candle(symbol: str, row: RawCandle) -> Candle:
    """At the storage scale (8 decimals, half-even: :func:`race.domain.money.quantize`; the
    24-hour quote volume to :data:`QUOTE_VOLUME_SCALE` places), as SQL will hold it."""
    volume, quote = row.volume, row.quote_volume_24h
    return Candle(
        symbol,
        row.close_time,
        row.open.quantize(QUANTUM, ROUND_HALF_EVEN),
        row.high.quantize(QUANTUM, ROUND_HALF_EVEN),
        row.low.quantize(QUANTUM, ROUND_HALF_EVEN),
        row.close.quantize(QUANTUM, ROUND_HALF_EVEN),
        None if volume is None else volume.quantize(QUANTUM, ROUND_HALF_EVEN),
        None if quote is None else quote.quantize(QUOTE_VOLUME_QUANTUM, ROUND_HALF_EVEN),
    )


# ---------------------------------------------------------------- reading numbers


def json_number(value: object, *, field: str) -> Decimal:
    """A JSON number as Decimal. ``NaN``/``Infinity`` become Decimal NaN/Infinity (the row
    check rejects them as ``non_finite``); strings, booleans and null are not numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RowError(NOT_A_NUMBER, f"{field} is {type(value).__name__} {value!r}, not a number")
    if isinstance(value, int):
        return Decimal(value)
    if math.isnan(value):
        return Decimal("NaN")
    if math.isinf(value):
        return Decimal("Infinity") if value > 0 else Decimal("-Infinity")
    return Decimal(repr(value))


def text_number(text: str, *, field: str) -> Decimal:
    """A number written as text (CSV). ``nan``/``inf`` parse (and are rejected later)."""
    try:
        return Decimal(text.strip())
    except InvalidOperation:
        raise RowError(NOT_A_NUMBER, f"{field} {text!r} is not a number") from None


def epoch_ms(value: object, *, field: str = "timestamp") -> datetime:
    """Unix milliseconds (a JSON integer, or an integral float) → aware UTC."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RowError(MALFORMED, f"{field} {value!r} is not a unix time in milliseconds")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise RowError(MALFORMED, f"{field} {value!r} is not a whole number of milliseconds")
        value = int(value)
    return epoch_seconds(Decimal(value) / 1000, field=field)


_MIN_TIME = datetime(2009, 1, 3, tzinfo=EPOCH.tzinfo)
_MAX_TIME = datetime(2100, 1, 1, tzinfo=EPOCH.tzinfo)


def epoch_seconds(value: Decimal | int, *, field: str = "timestamp") -> datetime:
    try:
        if isinstance(value, int) or value == value.to_integral_value():
            when = EPOCH + timedelta(seconds=int(value))
        else:
            when = EPOCH + timedelta(microseconds=int(value * 1_000_000))
    except (OverflowError, InvalidOperation, ValueError):
        raise RowError(MALFORMED, f"{field} {value!r} is not a usable unix time") from None
    if not (_MIN_TIME <= when < _MAX_TIME):
        raise RowError(MALFORMED, f"{field} {value!r} is outside 2009-2100")
    return when


# ---------------------------------------------------------------- gaps


def find_gaps(times: Sequence[datetime], interval: timedelta) -> list[Gap]:
    """Missing grid times between consecutive ``times`` (sorted, unique)."""
    gaps: list[Gap] = []
    for before, after in pairwise(times):
        step = after - before
        if step > interval:
            missing = int(step // interval) - (0 if step % interval else 1)
            if missing > 0:
                gaps.append(Gap(before + interval, before + interval * missing, missing))
    return gaps


def missing_between(
    times: Sequence[datetime], first: datetime, last: datetime, interval: timedelta
) -> list[Gap]:
    """Grid times in [first, last] absent from ``times`` (sorted), as gaps — including any
    at the very start or end of the window."""
    inside = [t for t in times if first <= t <= last]
    return find_gaps([first - interval, *inside, last + interval], interval)
