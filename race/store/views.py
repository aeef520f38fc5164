"""Market views read from stored candles: per cycle (:func:`market_view`), pinned
(:class:`ViewPin`), and from a replay's in-memory :class:`CandleTape`."""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from race.domain.model import Candle, MarketView
from race.domain.regime import candle_returns
from race.domain.step import ViewSummary
from race.store.bulk import select_values
from race.store.tables import (
    CandleRow,
)


def market_view(
    session: Session,
    as_of: datetime,
    symbols: Mapping[str, int],
    depth: int,
    max_price_age: timedelta | None,
) -> MarketView:
    """The last ``depth`` candles closed at or before ``as_of`` for each asset."""
    return read_market_view(session, as_of, symbols, depth, max_price_age)[0]


@dataclass(frozen=True)
class ViewPin:
    """Exactly which candles a market view holds: per asset (in view order) the ids of its
    candles, as inclusive ranges of consecutive ids, and the price-age rule. Candle rows are
    never updated or deleted, so a pin rebuilds the same view in any later run or process;
    ids, unlike close-time bounds or a maximum id, also exclude a late candle that fills a
    gap or whose insert committed out of id order."""

    assets: tuple[tuple[str, int, tuple[tuple[int, int], ...]], ...]
    """(symbol, asset id, id ranges)."""
    max_price_age_seconds: float | None

    @classmethod
    def of(
        cls, ids: Mapping[str, tuple[int, Sequence[int]]], max_price_age: timedelta | None
    ) -> ViewPin:
        assets = []
        for symbol, (asset_id, candle_ids) in ids.items():
            ranges: list[tuple[int, int]] = []
            for candle_id in sorted(candle_ids):
                if ranges and candle_id == ranges[-1][1] + 1:
                    ranges[-1] = (ranges[-1][0], candle_id)
                else:
                    ranges.append((candle_id, candle_id))
            assets.append((symbol, asset_id, tuple(ranges)))
        age = None if max_price_age is None else max_price_age.total_seconds()
        return cls(tuple(assets), age)

    def candle_count(self, symbol: str) -> int:
        for name, _, ranges in self.assets:
            if name == symbol:
                return sum(last - first + 1 for first, last in ranges)
        return 0

    def to_json(self) -> dict[str, Any]:
        return {
            "assets": [
                {"symbol": symbol, "assetId": asset_id, "candleIds": [list(r) for r in ranges]}
                for symbol, asset_id, ranges in self.assets
            ],
            "maxPriceAgeSeconds": self.max_price_age_seconds,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ViewPin:
        try:
            assets = tuple(
                (
                    str(item["symbol"]),
                    int(item["assetId"]),
                    tuple((int(first), int(last)) for first, last in item["candleIds"]),
                )
                for item in data["assets"]
            )
            age = data["maxPriceAgeSeconds"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"stored cycle market view is malformed: {exc!r}") from None
        return cls(assets, None if age is None else float(age))


def read_market_view(
    session: Session,
    as_of: datetime,
    symbols: Mapping[str, int],
    depth: int,
    max_price_age: timedelta | None,
) -> tuple[MarketView, ViewPin]:
    """:func:`market_view` and the pin that rebuilds it (:func:`pinned_market_view`)."""
    candles: dict[str, list[Candle]] = {}
    ids: dict[str, tuple[int, list[int]]] = {}
    for symbol, asset_id in symbols.items():
        rows = list(
            session.execute(
                select(CandleRow)
                .where(CandleRow.asset_id == asset_id, CandleRow.close_time <= as_of)
                .order_by(CandleRow.close_time.desc())
                .limit(depth)
            ).scalars()
        )
        rows.reverse()
        candles[symbol] = [_candle(symbol, row) for row in rows]
        ids[symbol] = (asset_id, [row.id for row in rows])
    view = MarketView(as_of=as_of, candles=candles, max_price_age=max_price_age)
    return view, ViewPin.of(ids, max_price_age)


class PinnedViewLost(LookupError):
    """A pinned view names candles that are no longer stored (rows were deleted by hand)."""


def pinned_market_view(session: Session, as_of: datetime, pin: ViewPin) -> MarketView:
    """The view ``pin`` describes, candle for candle."""
    candles: dict[str, list[Candle]] = {}
    for symbol, asset_id, ranges in pin.assets:
        rows: list[CandleRow] = []
        if ranges:
            rows = list(
                session.execute(
                    select(CandleRow)
                    .where(
                        CandleRow.asset_id == asset_id,
                        or_(*(CandleRow.id.between(first, last) for first, last in ranges)),
                    )
                    .order_by(CandleRow.close_time)
                ).scalars()
            )
        expected = pin.candle_count(symbol)
        if len(rows) != expected or any(row.close_time > as_of for row in rows):
            raise PinnedViewLost(
                f"the market view pinned for cycle {as_of.isoformat()} names {expected} "
                f"{symbol} candles closed by then, but {len(rows)} such rows are stored: "
                "candle rows were deleted or changed"
            )
        candles[symbol] = [_candle(symbol, row) for row in rows]
    seconds = pin.max_price_age_seconds
    age = None if seconds is None else timedelta(seconds=seconds)
    return MarketView(as_of=as_of, candles=candles, max_price_age=age)


_CANDLE_COLUMNS = (
    CandleRow.close_time,
    CandleRow.open,
    CandleRow.high,
    CandleRow.low,
    CandleRow.close,
    CandleRow.volume,
    CandleRow.quote_volume_24h,
)
"""A :class:`Candle`'s fields after its symbol, in order."""


def _candle(symbol: str, row: CandleRow) -> Candle:
    return Candle(
        symbol,
        row.close_time,
        row.open,
        row.high,
        row.low,
        row.close,
        row.volume,
        row.quote_volume_24h,
    )


@dataclass
class CandleTape:
    """Candles of a range held in memory, to build the same views as :func:`market_view`
    without a query per cycle (backfills)."""

    depth: int
    max_price_age: timedelta | None
    series: dict[str, list[Candle]] = field(default_factory=dict)
    times: dict[str, list[datetime]] = field(default_factory=dict)
    closes: dict[str, list[float]] = field(default_factory=dict)
    returns: dict[str, list[float | None]] = field(default_factory=dict)
    """Per-candle returns of each series (:func:`race.domain.regime.candle_returns`),
    computed once for the whole tape; a view's regime reads its window's slice."""

    @classmethod
    def load(
        cls,
        session: Session,
        symbols: Mapping[str, int],
        start: datetime,
        end: datetime,
        depth: int,
        max_price_age: timedelta | None,
    ) -> CandleTape:
        tape = cls(depth=depth, max_price_age=max_price_age)
        for symbol, asset_id in symbols.items():
            # Plain columns fetched by the driver, not ORM entities or result rows: a year of
            # candles loads several times faster (each value through its column's own
            # type, as an entity's would be).
            head = select_values(
                session,
                select(*_CANDLE_COLUMNS)
                .where(CandleRow.asset_id == asset_id, CandleRow.close_time < start)
                .order_by(CandleRow.close_time.desc())
                .limit(depth),
            )
            head.reverse()
            body = select_values(
                session,
                select(*_CANDLE_COLUMNS)
                .where(
                    CandleRow.asset_id == asset_id,
                    CandleRow.close_time >= start,
                    CandleRow.close_time <= end,
                )
                .order_by(CandleRow.close_time),
            )
            series = [Candle(symbol, *row) for row in head] + [Candle(symbol, *row) for row in body]
            tape.series[symbol] = series
            tape.times[symbol] = [c.close_time for c in series]
            tape.closes[symbol] = [float(c.close) for c in series]
            tape.returns[symbol] = candle_returns(tape.closes[symbol])
        return tape

    def view(self, as_of: datetime) -> MarketView:
        candles: dict[str, Sequence[Candle]] = {}
        closes: dict[str, list[float]] = {}
        for symbol, series in self.series.items():
            stop = bisect.bisect_right(self.times[symbol], as_of)
            first = max(0, stop - self.depth)
            candles[symbol] = series[first:stop]
            closes[symbol] = self.closes[symbol][first:stop]
        return MarketView(
            as_of=as_of, candles=candles, max_price_age=self.max_price_age, close_floats=closes
        )

    def summary(self, view: MarketView, primary: str | None) -> ViewSummary:
        """The :class:`ViewSummary` of ``view`` (one of this tape's views), its regime read
        from the tape's per-candle returns: the same label as from the view's closes."""
        returns = None
        if primary is not None and primary in self.returns:
            stop = bisect.bisect_right(self.times[primary], view.as_of)
            first = max(0, stop - self.depth)
            returns = self.returns[primary][first + 1 : stop]
        return ViewSummary(view, primary, returns)
