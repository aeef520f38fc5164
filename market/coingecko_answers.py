"""CoinGecko's answers: parsed (:func:`parse_ohlc`, :func:`parse_market_chart`; numbers
read, not yet checked) and turned into validated candles (:func:`ohlc_batch`,
:func:`range_batch`). See :mod:`market.coingecko`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from market.aggregate import PricePoint, batch_at_interval, candles_from_points
from market.coingecko_config import CoinGeckoDataError
from market.coingecko_plan import OhlcStep, RangeStep
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
from race.domain.model import Candle
from race.domain.timeutil import EPOCH


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
    data = ChartData(coin_id, [], [], len(payload["prices"]), EPOCH)
    raw_volumes = payload.get("total_volumes")
    if isinstance(raw_volumes, list):
        volumes = _parse_volumes(raw_volumes, data)
    else:
        volumes = {}
        data.notes[NO_VOLUMES_NOTE] += 1
    _parse_prices(payload["prices"], volumes, data)
    return data


def _pair(item: Any, place: str, rejections: list[Rejection]) -> bool:
    """Whether ``item`` is a ``[time, value]`` pair; if not, rejected as malformed."""
    if isinstance(item, list) and len(item) == 2:
        return True
    size = len(item) if isinstance(item, list) else _kind(item)
    rejections.append(Rejection(MALFORMED, f"{size} fields, expected 2", None, place))
    return False


def _parse_volumes(raw: list[Any], data: ChartData) -> dict[datetime, Decimal]:
    """The usable ``total_volumes`` by time (the first of a repeated time); the others
    rejected or, for 0, noted."""
    volumes: dict[datetime, Decimal] = {}
    for index, item in enumerate(raw):
        place = f"total_volumes point {index}"
        if not _pair(item, place, data.rejections):
            continue
        try:
            when = epoch_ms(item[0], field="time")
            value = json_number(item[1], field="24 h volume")
        except RowError as exc:
            data.rejections.append(Rejection(exc.reason, str(exc), None, place))
            continue
        if not value.is_finite() or value < 0:
            data.rejections.append(
                Rejection(BAD_VOLUME, f"24 h volume is {value}: left unknown", when, place)
            )
            continue
        if value == 0:
            data.notes[ZERO_VOLUME_NOTE] += 1
            continue
        volumes.setdefault(when, value)
    return volumes


def _parse_prices(raw: list[Any], volumes: dict[datetime, Decimal], data: ChartData) -> None:
    """``data.points``: the readable, finite, positive prices by time (a repeated time
    counted as a duplicate, the first kept), each with its volume."""
    points: dict[datetime, PricePoint] = {}
    for index, item in enumerate(raw):
        place = f"point {index}"
        if not _pair(item, place, data.rejections):
            continue
        try:
            when = epoch_ms(item[0], field="time")
            price = json_number(item[1], field="price")
        except RowError as exc:
            data.rejections.append(Rejection(exc.reason, str(exc), None, place))
            continue
        if not price.is_finite():
            data.rejections.append(Rejection(NON_FINITE, f"price is {price}", when, place))
            continue
        if price <= 0:
            data.rejections.append(Rejection(NON_POSITIVE, f"price is {price}", when, place))
            continue
        point = PricePoint(when, price, volumes.get(when))
        known = points.get(when)
        if known is not None:
            data.duplicates += 1
            data.duplicates_differing += known != point
            continue
        points[when] = point
    data.points = sorted(points.values(), key=lambda p: p.time)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


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
