"""Building candles at the stored interval from what a source delivers.

* :func:`resample` — finer candles into coarser ones (CoinGecko's 30-minute ``/ohlc``
  candles into hourly ones; the hourly sample into 4-hour ones). A coarse candle is made
  only when every finer candle inside it is there; otherwise the bucket is rejected as
  ``incomplete_bucket`` rather than guessed.
* :func:`candles_from_points` — price points (``/market_chart/range``) into candles.

Both are pure; the bucket of a candle closing at C is the half-open span (C − interval, C].
Neither ever uses anything after C for the candle closing at C (no look-ahead).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from market.validation import (
    FUTURE,
    INCOMPLETE,
    OUT_OF_RANGE,
    CandleBatch,
    RawCandle,
    Rejection,
    ValidationLimits,
    candle_state,
    validate_candles,
)
from race.domain.model import Candle
from race.domain.timeutil import EPOCH, format_interval

_US = timedelta(microseconds=1)


def bucket_close(when: datetime, interval: timedelta) -> datetime:
    """The close time of the candle whose span (close − interval, close] holds ``when``."""
    step = interval // _US
    micros = (when - EPOCH) // _US
    return EPOCH + timedelta(microseconds=-(-micros // step) * step)


def resample(
    candles: Sequence[Candle],
    source: timedelta,
    target: timedelta,
    *,
    now: datetime | None,
    settle: timedelta = timedelta(0),
) -> tuple[list[RawCandle], list[Rejection], list[datetime]]:
    """Aggregate ``candles`` (sorted, unique, on the ``source`` grid, closed) into
    ``target`` candles. Returns the complete candles, the incomplete buckets as rejections,
    and the close times of buckets set aside because the target candle is still open at
    ``now`` (or not yet settled: ``settle``). Volume is the sum when every part has one,
    else unknown (None); the 24-hour quote volume is the last part's (it is reported at the
    close), else unknown."""
    if target % source or target < source:
        raise ValueError(
            f"cannot build {format_interval(target)} candles from {format_interval(source)} "
            "ones: the stored interval must be a multiple of the source interval"
        )
    parts_needed = target // source
    buckets: dict[datetime, list[Candle]] = {}
    for candle in candles:
        buckets.setdefault(bucket_close(candle.close_time, target), []).append(candle)
    built: list[RawCandle] = []
    rejected: list[Rejection] = []
    still_open: list[datetime] = []
    for close_time in sorted(buckets):
        parts = buckets[close_time]
        state = candle_state(close_time, target, now, settle)
        if state is not None:
            if state == "open":
                still_open.append(close_time)
            continue
        if len(parts) != parts_needed:
            rejected.append(
                Rejection(
                    INCOMPLETE,
                    f"{len(parts)} of {parts_needed} {format_interval(source)} candles present",
                    close_time,
                )
            )
            continue
        volume: Decimal | None = Decimal(0)
        for part in parts:
            volume = None if volume is None or part.volume is None else volume + part.volume
        built.append(
            RawCandle(
                close_time=close_time,
                open=parts[0].open,
                high=max(p.high for p in parts),
                low=min(p.low for p in parts),
                close=parts[-1].close,
                volume=volume,
                quote_volume_24h=parts[-1].quote_volume_24h,
            )
        )
    return built, rejected, still_open


@dataclass(frozen=True, slots=True)
class PricePoint:
    """One ``[time, price]`` of ``/market_chart/range``, with the ``total_volumes`` value
    reported at the same time — CoinGecko's rolling 24-hour volume in the quote currency
    (USD), not a volume of any candle — or None when unknown."""

    time: datetime
    price: Decimal
    volume_24h: Decimal | None = None


@dataclass
class PointCandles:
    """What :func:`candles_from_points` made of the points."""

    candles: list[RawCandle]
    open: int = 0
    """Candles set aside as still open (or not settled) at ``now``."""
    rejections: list[Rejection] = field(default_factory=list)
    """Points after ``last_close`` (``future_timestamp`` when after ``now``, else
    ``out_of_range``) and candles with no usable open (``incomplete_bucket``)."""


def candles_from_points(
    points: Sequence[PricePoint],
    interval: timedelta,
    *,
    first_close: datetime,
    last_close: datetime,
    now: datetime | None,
    settle: timedelta = timedelta(0),
) -> PointCandles:
    """Candles closing at every grid time C in [first_close, last_close] that has a point in
    its span (C − interval, C]. Nothing after C is used for the candle closing at C:

    * close = the last point at or before C;
    * open = the last point at or before the open time C − interval, when one lies within
      one interval before it (the previous span's last point, i.e. the previous candle's
      close); otherwise the first point inside the span when the span has two or more;
      a lone point with nothing before it is no candle (``incomplete_bucket``: it would be
      flat, open = high = low = close);
    * high / low = max / min over the open, the close and the points inside the span
      (CoinGecko gives snapshots, not trades: the true extremes between them are unknown,
      so the range is a lower bound of the real one);
    * volume = None (CoinGecko has no per-candle volume); quote_volume_24h = the 24-hour
      rolling USD volume reported with the close point, None when absent.

    With hourly points (CoinGecko's granularity for ranges of 2 to 90 days, stamped a few
    minutes after each hour) the close of the candle at C is therefore the price from a few
    minutes after C − interval: candles lag the true ones by up to one point spacing. Spans
    with no point give no candle (a gap, reported as such). Points after ``last_close`` are
    counted as rejections; points before ``first_close``'s span only serve as its open."""
    result = PointCandles([])
    by_bucket = _bucket_points(points, interval, last_close, now, result)
    for close_time in sorted(by_bucket):
        if close_time < first_close:
            continue
        state = candle_state(close_time, interval, now, settle)
        if state is not None:
            result.open += state == "open"
            continue
        candle = _point_candle(close_time, by_bucket, interval, result)
        if candle is not None:
            result.candles.append(candle)
    return result


def _bucket_points(
    points: Sequence[PricePoint],
    interval: timedelta,
    last_close: datetime,
    now: datetime | None,
    result: PointCandles,
) -> dict[datetime, list[PricePoint]]:
    """The points by the close time of their span, oldest first; those after
    ``last_close``'s span rejected on ``result``."""
    by_bucket: dict[datetime, list[PricePoint]] = {}
    for point in sorted(points, key=lambda p: p.time):
        bucket = bucket_close(point.time, interval)
        if bucket > last_close:
            future = now is not None and point.time > now
            result.rejections.append(
                Rejection(
                    FUTURE if future else OUT_OF_RANGE,
                    f"point after {'now' if future else 'the requested end'} "
                    f"({(now if future and now else last_close).isoformat()})",
                    point.time,
                    "price point",
                )
            )
            continue
        by_bucket.setdefault(bucket, []).append(point)
    return by_bucket


def _point_candle(
    close_time: datetime,
    by_bucket: dict[datetime, list[PricePoint]],
    interval: timedelta,
    result: PointCandles,
) -> RawCandle | None:
    """The candle closing at ``close_time`` (see :func:`candles_from_points`), or None with
    the reason on ``result`` when it has no open price."""
    span = by_bucket[close_time]
    previous = by_bucket.get(close_time - interval)
    if previous:
        open_price = previous[-1].price
    elif len(span) > 1:
        open_price = span[0].price
    else:
        result.rejections.append(
            Rejection(
                INCOMPLETE,
                f"one price point and none in the {format_interval(interval)} before the "
                "open: no open price",
                close_time,
            )
        )
        return None
    prices = [p.price for p in span]
    return RawCandle(
        close_time=close_time,
        open=open_price,
        high=max(open_price, *prices),
        low=min(open_price, *prices),
        close=span[-1].price,
        volume=None,
        where=f"{len(span)} point(s)",
        quote_volume_24h=span[-1].volume_24h,
    )


def batch_at_interval(
    rows: Sequence[RawCandle],
    *,
    symbol: str,
    source: timedelta,
    interval: timedelta,
    now: datetime | None,
    limits: ValidationLimits,
    reference: Candle | None = None,
    rejections: Sequence[Rejection] = (),
    fetched: int | None = None,
    first_close: datetime | None = None,
    last_close: datetime | None = None,
    settle: timedelta = timedelta(0),
) -> CandleBatch:
    """Validated candles at ``interval`` from ``rows`` at the ``source`` granularity.

    Rows are checked at their own granularity (grid, prices, duplicates); when the stored
    interval is coarser they are then combined with :func:`resample` and the results
    checked again (range and jump against ``reference``, the stored candle one interval
    before the first). Candles outside [first_close, last_close] are dropped (not counted);
    a candle closed less than ``settle`` before ``now`` counts as open."""

    window = _Window(first_close, last_close)
    if source == interval:
        batch = validate_candles(
            rows,
            symbol=symbol,
            interval=interval,
            now=now,
            limits=limits,
            reference=reference,
            rejections=rejections,
            fetched=fetched,
            settle=settle,
        )
        batch.candles = [c for c in batch.candles if c.close_time in window]
        return batch
    parts = validate_candles(
        rows,
        symbol=symbol,
        interval=source,
        now=now,
        limits=limits,
        rejections=rejections,
        fetched=fetched,
        moves=False,
        settle=settle,
    )
    target = _Target(interval, now, limits, reference, settle, window)
    return _combined(parts, source, target)


@dataclass(frozen=True)
class _Window:
    """Close times in [first_close, last_close] (an open end: no bound)."""

    first_close: datetime | None
    last_close: datetime | None

    def __contains__(self, when: datetime | None) -> bool:
        return when is not None and (
            (self.first_close is None or when >= self.first_close)
            and (self.last_close is None or when <= self.last_close)
        )


@dataclass(frozen=True)
class _Target:
    """The candles :func:`batch_at_interval` builds from finer ones, and how they are
    checked."""

    interval: timedelta
    now: datetime | None
    limits: ValidationLimits
    reference: Candle | None
    settle: timedelta
    window: _Window


def _combined(parts: CandleBatch, source: timedelta, target: _Target) -> CandleBatch:
    """``parts`` (checked at ``source``) resampled to the target interval and checked
    again; the duplicates and notes of the parts carried, the open buckets counted once."""
    interval, now, window = target.interval, target.now, target.window
    built, incomplete, still_open = resample(
        parts.candles, source, interval, now=now, settle=target.settle
    )
    batch = validate_candles(
        [c for c in built if c.close_time in window],
        symbol=parts.symbol,
        interval=interval,
        now=now,
        limits=target.limits,
        reference=target.reference,
        rejections=[*parts.rejections, *(r for r in incomplete if r.close_time in window)],
        fetched=parts.fetched,
        settle=target.settle,
    )
    batch.duplicates = parts.duplicates
    batch.duplicates_differing = parts.duplicates_differing
    batch.notes = parts.notes
    open_buckets = set(still_open) | {bucket_close(t, interval) for t in parts.open_times}
    batch.open_times = sorted(open_buckets)
    batch.open = len(open_buckets)
    return batch
