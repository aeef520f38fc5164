"""Building candles at the stored interval from what a source delivers.

* :func:`resample` — finer candles into coarser ones (CoinGecko's 30-minute ``/ohlc``
  candles into hourly ones; the hourly sample into 4-hour ones). A coarse candle is made
  only when every finer candle inside it is there; otherwise the bucket is rejected as
  ``incomplete_bucket`` rather than guessed.
* :func:`candles_from_points` — price points (``/market_chart/range``) into candles.

Both are pure; the bucket of a candle closing at C is the half-open span (C − interval, C].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from market.validation import (
    INCOMPLETE,
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
) -> tuple[list[RawCandle], list[Rejection], list[datetime]]:
    """Aggregate ``candles`` (sorted, unique, on the ``source`` grid, closed) into
    ``target`` candles. Returns the complete candles, the incomplete buckets as rejections,
    and the close times of buckets set aside because the target candle is still open at
    ``now``. Volume is the sum when every part has one, else unknown (None)."""
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
        state = candle_state(close_time, target, now)
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
            )
        )
    return built, rejected, still_open


@dataclass(frozen=True, slots=True)
class PricePoint:
    """One ``[time, price]`` of ``/market_chart/range``, with the ``total_volumes`` value
    reported at the same time (a 24-hour rolling volume in the quote currency), if any."""

    time: datetime
    price: Decimal
    volume: Decimal | None = None


def candles_from_points(
    points: Sequence[PricePoint],
    interval: timedelta,
    *,
    first_close: datetime,
    last_close: datetime,
    now: datetime | None,
) -> tuple[list[RawCandle], int]:
    """Candles closing at every grid time in [first_close, last_close] that has at least one
    point in its span. Open = the last point of the previous span when there is one (the
    price the candle opened at), else the first point of its own span; close = its last
    point; high/low over open and its points; volume = the 24-hour rolling volume reported
    with the close point (CoinGecko has no per-candle volume), None when absent.
    Spans with no point give no candle (a gap, reported as such). Returns the candles and
    the number of candles set aside as still open at ``now``."""
    by_bucket: dict[datetime, list[PricePoint]] = {}
    for point in sorted(points, key=lambda p: p.time):
        by_bucket.setdefault(bucket_close(point.time, interval), []).append(point)
    built: list[RawCandle] = []
    still_open = 0
    for close_time in sorted(by_bucket):
        if close_time < first_close or close_time > last_close:
            continue
        state = candle_state(close_time, interval, now)
        if state is not None:
            still_open += state == "open"
            continue
        span = by_bucket[close_time]
        previous = by_bucket.get(close_time - interval)
        open_price = previous[-1].price if previous else span[0].price
        prices = [p.price for p in span]
        built.append(
            RawCandle(
                close_time=close_time,
                open=open_price,
                high=max(open_price, *prices),
                low=min(open_price, *prices),
                close=span[-1].price,
                volume=span[-1].volume,
                where=f"{len(span)} point(s)",
            )
        )
    return built, still_open


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
) -> CandleBatch:
    """Validated candles at ``interval`` from ``rows`` at the ``source`` granularity.

    Rows are checked at their own granularity (grid, prices, duplicates); when the stored
    interval is coarser they are then combined with :func:`resample` and the results
    checked again (range and jump against ``reference``, the stored candle one interval
    before the first). Candles outside [first_close, last_close] are dropped (not counted)."""

    def inside(when: datetime | None) -> bool:
        return when is not None and (
            (first_close is None or when >= first_close)
            and (last_close is None or when <= last_close)
        )

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
        )
        batch.candles = [c for c in batch.candles if inside(c.close_time)]
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
    )
    built, incomplete, still_open = resample(parts.candles, source, interval, now=now)
    batch = validate_candles(
        [c for c in built if inside(c.close_time)],
        symbol=symbol,
        interval=interval,
        now=now,
        limits=limits,
        reference=reference,
        rejections=[*parts.rejections, *(r for r in incomplete if inside(r.close_time))],
        fetched=parts.fetched,
    )
    batch.duplicates = parts.duplicates
    batch.duplicates_differing = parts.duplicates_differing
    batch.notes = parts.notes
    open_buckets = set(still_open) | {bucket_close(t, interval) for t in parts.open_times}
    batch.open_times = sorted(open_buckets)
    batch.open = len(open_buckets)
    return batch
