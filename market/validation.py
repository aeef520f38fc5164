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
The rows, rejections, limits, batches and parsers they work on are in
:mod:`market.candle_rows` (importable from here too).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from market.candle_rows import (
    BAD_VOLUME,
    FUTURE,
    HIGH_BELOW_BODY,
    HIGH_BELOW_LOW,
    IMPLAUSIBLE_MOVE,
    IMPLAUSIBLE_RANGE,
    INCOMPLETE,
    LOW_ABOVE_BODY,
    MALFORMED,
    MAX_PRICE,
    MAX_QUOTE_VOLUME,
    MAX_VOLUME,
    NON_FINITE,
    NON_POSITIVE,
    NOT_A_NUMBER,
    OFF_GRID,
    OUT_OF_RANGE,
    PRICE_TOO_LARGE,
    QUOTE_VOLUME_QUANTUM,
    QUOTE_VOLUME_SCALE,
    CandleBatch,
    Gap,
    RawCandle,
    Rejection,
    RowError,
    ValidationLimits,
    epoch_ms,
    epoch_seconds,
    find_gaps,
    json_number,
    missing_between,
    text_number,
    to_candle,
)
from race.domain.model import Candle
from race.domain.timeutil import EPOCH, format_interval

log = logging.getLogger(__name__)

_NO_SETTLE = timedelta(0)

_LOGGED_PER_REASON = 20
"""Rejections logged one by one per reason and batch; the rest are summarised."""


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
    valid, seen = _screen(rows, batch, now, limits, settle)
    batch.fetched = fetched if fetched is not None else seen + carried
    unique = _unique(valid, batch)
    if moves:
        unique, move_rejections = check_moves(unique, interval, limits, reference)
        batch.rejections.extend(move_rejections)
    batch.candles = unique
    return batch


_Valid = tuple[datetime, int, int, Candle, RawCandle]
"""A row that passed: close time, minus its rank, its index, the candle and the row."""


def _screen(
    rows: Iterable[RawCandle],
    batch: CandleBatch,
    now: datetime | None,
    limits: ValidationLimits,
    settle: timedelta,
) -> tuple[list[_Valid], int]:
    """The rows that pass :func:`check_row` and are closed, and how many rows were seen;
    the rejected ones go to ``batch.rejections``, the open ones are counted."""
    symbol, interval = batch.symbol, batch.interval
    valid: list[_Valid] = []
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
    return valid, seen


def _unique(valid: list[_Valid], batch: CandleBatch) -> list[Candle]:
    """One candle per close time, the highest rank (then the first received) kept; the
    dropped ones counted on ``batch``."""
    symbol = batch.symbol
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
    return unique


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


__all__ = [
    "BAD_VOLUME",
    "FUTURE",
    "HIGH_BELOW_BODY",
    "HIGH_BELOW_LOW",
    "IMPLAUSIBLE_MOVE",
    "IMPLAUSIBLE_RANGE",
    "INCOMPLETE",
    "LOW_ABOVE_BODY",
    "MALFORMED",
    "MAX_PRICE",
    "MAX_QUOTE_VOLUME",
    "MAX_VOLUME",
    "NON_FINITE",
    "NON_POSITIVE",
    "NOT_A_NUMBER",
    "OFF_GRID",
    "OUT_OF_RANGE",
    "PRICE_TOO_LARGE",
    "QUOTE_VOLUME_QUANTUM",
    "QUOTE_VOLUME_SCALE",
    "CandleBatch",
    "Gap",
    "RawCandle",
    "Rejection",
    "RowError",
    "ValidationLimits",
    "candle_state",
    "check_moves",
    "check_row",
    "epoch_ms",
    "epoch_seconds",
    "find_gaps",
    "json_number",
    "log_batch",
    "missing_between",
    "text_number",
    "to_candle",
    "validate_candles",
]
