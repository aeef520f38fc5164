"""The candle checks shared by live ingestion and the bundled sample data.

A source turns what it received into :class:`RawCandle` rows (and :class:`Rejection` s for
rows it could not parse at all); :func:`validate_candles` then

1. rejects a row whose prices are not finite or not positive, whose high is below its low or
   below max(open, close), whose low is above min(open, close), whose volume (base, in the
   candle) or 24-hour quote volume is negative or not finite, whose close time is off the
   interval grid or in the future, or whose high/low range is implausible (``max_range``);
2. sets aside (does not store) a candle still open at ``now`` — or closed less than
   ``settle`` before it (a source's cached answer may still describe it as forming);
3. collapses repeated timestamps: identical rows are plain duplicates; for differing rows the
   one with the highest ``rank`` wins (the source says which format it trusts), else the
   first one received; every dropped row is counted and logged;
4. rejects an implausible jump against the previous candle (``max_move``);
5. returns the accepted candles sorted by close time, at the storage scale (8 decimals; the
   24-hour quote volume at :data:`QUOTE_VOLUME_SCALE`).

Nothing is repaired: a row is kept as received or rejected with its reason. Gaps are found by
:func:`find_gaps`. All functions here are pure (no I/O, no clock): ``now`` is passed in.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from itertools import pairwise

from race.domain.model import Candle
from race.domain.money import QUANTUM
from race.domain.timeutil import EPOCH, format_interval

log = logging.getLogger(__name__)

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

REASONS = (
    MALFORMED,
    NOT_A_NUMBER,
    NON_FINITE,
    NON_POSITIVE,
    HIGH_BELOW_LOW,
    HIGH_BELOW_BODY,
    LOW_ABOVE_BODY,
    BAD_VOLUME,
    OFF_GRID,
    FUTURE,
    IMPLAUSIBLE_RANGE,
    IMPLAUSIBLE_MOVE,
    INCOMPLETE,
    OUT_OF_RANGE,
    PRICE_TOO_LARGE,
)

QUOTE_VOLUME_SCALE = 2
"""Decimal places of a stored 24-hour quote volume (USD cents): the scale of the
``candles.quote_volume_24h`` column (``race/store/tables.py``)."""
QUOTE_VOLUME_QUANTUM = Decimal(1).scaleb(-QUOTE_VOLUME_SCALE)
_NO_SETTLE = timedelta(0)

_LOGGED_PER_REASON = 20
"""Rejections logged one by one per reason and batch; the rest are summarised."""


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


# ---------------------------------------------------------------- row checks


def _on_grid(when: datetime, interval: timedelta) -> bool:
    return (when - EPOCH) % interval == _ZERO_SPAN


_ZERO_SPAN = timedelta(0)


def check_row(
    row: RawCandle, interval: timedelta, limits: ValidationLimits
) -> tuple[str, str] | None:
    """The first rule ``row`` breaks as ``(reason, detail)``, or None. Time-independent
    checks only: the caller handles ``now`` (future / still open)."""
    o, h, low, c, v, q = row.open, row.high, row.low, row.close, row.volume, row.quote_volume_24h
    if (
        o.is_finite()
        and h.is_finite()
        and low.is_finite()
        and c.is_finite()
        and low > 0
        and o > 0
        and c > 0
        and h >= o
        and h >= c
        and h <= MAX_PRICE
        and low <= o
        and low <= c
        and (v is None or (v.is_finite() and 0 <= v <= MAX_VOLUME))
        and (q is None or (q.is_finite() and 0 <= q <= MAX_QUOTE_VOLUME))
        and _on_grid(row.close_time, interval)
        and (h - low) <= limits.max_range * low
    ):
        return None
    return _first_problem(row, interval, limits)


def _first_problem(
    row: RawCandle, interval: timedelta, limits: ValidationLimits
) -> tuple[str, str]:
    prices = (("open", row.open), ("high", row.high), ("low", row.low), ("close", row.close))
    for name, value in prices:
        if not value.is_finite():
            return NON_FINITE, f"{name} is {value}"
    for name, value in prices:
        if value <= 0:
            return NON_POSITIVE, f"{name} is {value}"
    for name, value in prices:
        if value > MAX_PRICE:
            return PRICE_TOO_LARGE, f"{name} is {value}, above {MAX_PRICE:,f} USD"
    if row.volume is not None and (not row.volume.is_finite() or row.volume < 0):
        return BAD_VOLUME, f"volume is {row.volume}"
    if row.volume is not None and row.volume > MAX_VOLUME:
        return BAD_VOLUME, f"volume {row.volume} is above the storable {MAX_VOLUME:,f}"
    quote = row.quote_volume_24h
    if quote is not None and (not quote.is_finite() or quote < 0):
        return BAD_VOLUME, f"24 h quote volume is {quote}"
    if quote is not None and quote > MAX_QUOTE_VOLUME:
        return BAD_VOLUME, f"24 h quote volume {quote} is above the storable {MAX_QUOTE_VOLUME:,f}"
    if row.high < row.low:
        return HIGH_BELOW_LOW, f"high {row.high} < low {row.low}"
    if row.high < max(row.open, row.close):
        return HIGH_BELOW_BODY, f"high {row.high} < max(open {row.open}, close {row.close})"
    if row.low > min(row.open, row.close):
        return LOW_ABOVE_BODY, f"low {row.low} > min(open {row.open}, close {row.close})"
    if not _on_grid(row.close_time, interval):
        return OFF_GRID, f"close time is not on the {format_interval(interval)} grid"
    spread = (row.high - row.low) / row.low  # the only rule left: the range limit
    return (
        IMPLAUSIBLE_RANGE,
        f"high/low range {spread:.1%} exceeds {limits.max_range:.0%} "
        f"(high {row.high}, low {row.low})",
    )


def _values(
    c: Candle,
) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal | None, Decimal | None]:
    return (c.open, c.high, c.low, c.close, c.volume, c.quote_volume_24h)


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


def candle_state(
    close_time: datetime,
    interval: timedelta,
    now: datetime | None,
    settle: timedelta = _NO_SETTLE,
) -> str | None:
    """None once the candle is closed and settled (``close_time ≤ now − settle``);
    ``"open"`` while it has started but is not (``close − interval ≤ now``: still forming,
    or closed less than ``settle`` ago, when a source's cached answer may still describe it
    as forming); ``"future"`` when it has not even started at ``now``."""
    if now is None or close_time <= now - settle:
        return None
    return "open" if close_time - interval <= now else "future"


def validate_candles(
    rows: Iterable[RawCandle],
    *,
    symbol: str,
    interval: timedelta,
    now: datetime | None,
    limits: ValidationLimits | None = None,
    reference: Candle | None = None,
    rejections: Iterable[Rejection] = (),
    fetched: int | None = None,
    moves: bool = True,
    settle: timedelta = _NO_SETTLE,
) -> CandleBatch:
    """Check ``rows`` (any order) and return the accepted candles, sorted and unique.

    ``reference`` is the stored candle just before the rows (for the jump check of the first
    one); ``rejections`` are rows the source could not parse, carried into the batch;
    ``fetched`` defaults to the rows seen plus those rejections; ``settle`` is how long
    after its close a candle still counts as open (see :func:`candle_state`)."""
    limits = limits or ValidationLimits()
    batch = CandleBatch(symbol=symbol, interval=interval, rejections=list(rejections))
    carried = len(batch.rejections)
    valid: list[tuple[datetime, int, int, Candle, RawCandle]] = []
    seen = 0
    for index, row in enumerate(rows):
        seen += 1
        state = candle_state(row.close_time, interval, now, settle)
        problem = check_row(row, interval, limits)
        if problem is None and state == "future":
            problem = (FUTURE, f"closes after now ({now.isoformat() if now else '?'})")
        if problem is not None:
            reason, detail = problem
            batch.rejections.append(Rejection(reason, detail, row.close_time, row.where))
            continue
        if state == "open":
            batch.open += 1
            batch.open_times.append(row.close_time)
            log.info(
                "%s: candle closing %s is still open (or closed less than %s before %s): "
                "not stored",
                symbol,
                row.close_time.isoformat(),
                format_interval(settle) if settle else "0s",
                now.isoformat() if now else "?",
                extra={"asset": symbol},
            )
            continue
        valid.append((row.close_time, -row.rank, index, to_candle(symbol, row), row))
    batch.fetched = fetched if fetched is not None else seen + carried

    valid.sort(key=lambda item: (item[0], item[1], item[2]))
    unique: list[Candle] = []
    for close_time, _rank, _index, candle, raw in valid:
        if unique and unique[-1].close_time == close_time:
            kept = unique[-1]
            batch.duplicates += 1
            if _values(kept) != _values(candle):
                batch.duplicates_differing += 1
                log.debug(
                    "%s: duplicate close time %s with other values (%s) dropped; kept %s",
                    symbol,
                    close_time.isoformat(),
                    raw.where or "row",
                    _values(kept),
                    extra={"asset": symbol},
                )
            continue
        unique.append(candle)

    if moves:
        unique, move_rejections = check_moves(unique, interval, limits, reference)
        batch.rejections.extend(move_rejections)
    batch.candles = unique
    return batch


def check_moves(
    candles: Sequence[Candle],
    interval: timedelta,
    limits: ValidationLimits,
    reference: Candle | None = None,
) -> tuple[list[Candle], list[Rejection]]:
    """Reject a candle whose open or close is more than ``max_move`` away from the close of
    the accepted candle one interval earlier. Only adjacent candles are compared: after a
    gap (or a rejected candle) there is nothing to compare against, so one bad candle never
    drags the ones after it down with it."""
    kept: list[Candle] = []
    rejected: list[Rejection] = []
    previous = reference
    for candle in candles:
        if previous is not None and previous.close_time == candle.close_time - interval:
            base = previous.close
            for name, value in (("open", candle.open), ("close", candle.close)):
                move = abs(value - base) / base
                if move > limits.max_move:
                    rejected.append(
                        Rejection(
                            IMPLAUSIBLE_MOVE,
                            f"{name} {value} is {move:.1%} away from the previous close {base}"
                            f" (limit {limits.max_move:.0%})",
                            candle.close_time,
                        )
                    )
                    break
            else:
                kept.append(candle)
                previous = candle
            continue
        kept.append(candle)
        previous = candle
    return kept, rejected


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


# ---------------------------------------------------------------- logging


def log_batch(batch: CandleBatch, source: str, logger: logging.Logger | None = None) -> None:
    """Log every rejection (the first few per reason one by one, then a count) and a summary
    of duplicates and notes."""
    logger = logger or log
    extra = {"asset": batch.symbol}
    per_reason: Counter[str] = Counter()
    for rejection in batch.rejections:
        per_reason[rejection.reason] += 1
        if per_reason[rejection.reason] <= _LOGGED_PER_REASON:
            logger.warning(
                "%s %s: rejected %s", batch.symbol, source, rejection.describe(), extra=extra
            )
    for reason, count in per_reason.items():
        if count > _LOGGED_PER_REASON:
            logger.warning(
                "%s %s: %d more rows rejected as %s",
                batch.symbol,
                source,
                count - _LOGGED_PER_REASON,
                reason,
                extra=extra,
            )
    if batch.duplicates:
        logger.info(
            "%s %s: collapsed %d duplicate timestamps (%d with differing values; the row the "
            "source ranks higher, else the first, was kept)",
            batch.symbol,
            source,
            batch.duplicates,
            batch.duplicates_differing,
            extra=extra,
        )
    for note, count in batch.notes.items():
        logger.info("%s %s: %s × %d", batch.symbol, source, note, count, extra=extra)
