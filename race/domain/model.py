"""The race's plain data: candles, market views, orders, positions, portfolios and limits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from race.domain.lazy import cached
from race.domain.money import ZERO, quantize


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class Action(StrEnum):
    BUY = "BUY"
    SELL = "SELL"
    HOLD = "HOLD"


class Provider(StrEnum):
    """Who makes an agent's decisions. The names are the API's ``modelType`` values."""

    LLAMA = "Llama"
    OPENAI = "OpenAI"
    AZURE_OPENAI = "AzureOpenAI"
    CUSTOM_ML = "CustomML"
    MOCK = "Mock"


@dataclass(frozen=True, slots=True)
class Candle:
    """One OHLC(V) candle. ``close_time`` is when it closed (UTC): the race's timestamp.

    ``volume`` is the base-asset volume traded within the candle (e.g. BTC); None when
    unknown. ``quote_volume_24h`` is the source's rolling 24-hour quote (USD) volume reported
    at the close (CoinGecko's ``total_volumes``): a different quantity, not per candle."""

    symbol: str
    close_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal | None = None
    quote_volume_24h: Decimal | None = None


@dataclass(frozen=True)
class MarketView:
    """What every agent of one cycle sees: per asset, the last candles closed at or before
    ``as_of`` (oldest first). Prices at ``as_of`` are the latest closes."""

    as_of: datetime
    candles: Mapping[str, Sequence[Candle]]
    max_price_age: timedelta | None = None
    close_floats: Mapping[str, list[float]] | None = None
    """Closes as floats, when the caller already has them (a replay's candle tape)."""

    @cached
    def prices(self) -> dict[str, Decimal]:
        """Latest close per asset, only where that close is fresh enough to trade on."""
        result: dict[str, Decimal] = {}
        for symbol, series in self.candles.items():
            if not series:
                continue
            last = series[-1]
            if self.max_price_age is not None and self.as_of - last.close_time > self.max_price_age:
                continue
            result[symbol] = last.close
        return result

    @cached
    def marks(self) -> dict[str, Decimal]:
        """Latest close per asset regardless of age: for valuing a portfolio."""
        return {symbol: series[-1].close for symbol, series in self.candles.items() if series}

    @cached
    def _closes(self) -> Mapping[str, list[float]]:
        if self.close_floats is not None:
            return self.close_floats
        return {symbol: [float(c.close) for c in series] for symbol, series in self.candles.items()}

    def closes(self, symbol: str) -> list[float]:
        """Close prices as floats (for indicators; money stays Decimal)."""
        return self._closes.get(symbol, [])


@dataclass(frozen=True, slots=True)
class Order:
    asset: str
    side: Side
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class Position:
    symbol: str
    quantity: Decimal
    average_price: Decimal
    """Average execution price of the units held (fees excluded)."""
    cost_basis: Decimal
    """What the units held cost, fees included: the base of realised and unrealised P&L."""


@dataclass(frozen=True)
class Portfolio:
    cash: Decimal
    positions: Mapping[str, Position] = field(default_factory=dict)

    def quantity(self, symbol: str) -> Decimal:
        position = self.positions.get(symbol)
        return position.quantity if position else ZERO

    def positions_value(self, marks: Mapping[str, Decimal]) -> Decimal:
        total = ZERO
        for symbol, position in self.positions.items():
            price = marks.get(symbol)
            if price is None:
                # No price ever seen: value the position at what it cost.
                total += position.cost_basis
            else:
                total += position.quantity * price
        return quantize(total)

    def equity(self, marks: Mapping[str, Decimal]) -> Decimal:
        """Cash plus the positions marked at ``marks``: ``total = cash + positions`` exactly,
        the positions' value rounded once to the fixed scale."""
        return quantize(self.cash) + self.positions_value(marks)

    def unrealized_pnl(self, marks: Mapping[str, Decimal]) -> Decimal:
        cost = sum((p.cost_basis for p in self.positions.values()), ZERO)
        return quantize(self.positions_value(marks) - cost)


@dataclass(frozen=True)
class RiskLimits:
    """docs/rules.md, "Risk limits". Every number is a setting; these are the defaults."""

    max_position_fraction: Decimal = Decimal("0.5")
    min_cash_reserve: Decimal = Decimal("100")
    max_order_notional: Decimal = Decimal("25000")
    min_order_notional: Decimal = Decimal("10")
    max_orders_per_cycle: int = 5
    max_order_quantity: Decimal = Decimal("1000000000")
    """Beyond this an order's quantity is absurd and dropped by the parser."""

    @classmethod
    def of(cls, source: Any) -> RiskLimits:
        """The limits read from ``source``'s attributes of the same names (the settings, a
        race's rules)."""
        return cls(**{name: getattr(source, name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Costs:
    fee_rate: Decimal = Decimal("0.001")
    slippage_bps: Decimal = Decimal("5")

    @classmethod
    def of(cls, source: Any) -> Costs:
        """The costs read from ``source``'s attributes of the same names."""
        return cls(fee_rate=source.fee_rate, slippage_bps=source.slippage_bps)


@dataclass(frozen=True, slots=True)
class Fill:
    """A simulated execution."""

    asset: str
    side: Side
    quantity: Decimal
    reference_price: Decimal
    """The price at T (latest close ≤ T)."""
    price: Decimal
    """Execution price: reference price moved against the trader by the slippage."""
    notional: Decimal
    fee: Decimal
    slippage_cost: Decimal
    realized_pnl: Decimal | None
    """For a SELL: proceeds less fee less the cost basis of the units sold."""


@dataclass(frozen=True, slots=True)
class RiskNote:
    """One thing the parser or the risk rules did to an order, and why."""

    order_index: int
    asset: str | None
    code: str
    message: str
    outcome: str
    """``dropped`` (parser), ``refused`` or ``clipped`` (risk rules)."""
    requested_quantity: str | None = None
    final_quantity: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "order": self.order_index,
            "asset": self.asset,
            "code": self.code,
            "outcome": self.outcome,
            "message": self.message,
            "requested": self.requested_quantity,
            "final": self.final_quantity,
        }
