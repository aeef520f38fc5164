"""Unit tests of race.domain.model: market views, portfolio valuation and risk notes
(mutation-tested with ``make mutate``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from race.domain.model import (
    Action,
    Candle,
    Costs,
    MarketView,
    Portfolio,
    Position,
    Provider,
    RiskLimits,
    RiskNote,
    Side,
)

T = datetime(2024, 3, 1, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)


def candle(symbol: str, close_time: datetime, close: str) -> Candle:
    price = Decimal(close)
    return Candle(symbol, close_time, price, price, price, price)


def test_enums_are_their_api_values() -> None:
    assert [s.value for s in Side] == ["BUY", "SELL"]
    assert [a.value for a in Action] == ["BUY", "SELL", "HOLD"]
    assert Provider("AzureOpenAI") is Provider.AZURE_OPENAI
    assert {p.value for p in Provider} == {"Llama", "OpenAI", "AzureOpenAI", "CustomML", "Mock"}


def test_defaults_of_limits_and_costs() -> None:
    limits = RiskLimits()
    assert limits.max_position_fraction == Decimal("0.5")
    assert limits.min_cash_reserve == Decimal(100)
    assert limits.max_order_notional == Decimal(25000)
    assert limits.min_order_notional == Decimal(10)
    assert limits.max_orders_per_cycle == 5
    assert limits.max_order_quantity == Decimal(10**9)
    assert Costs() == Costs(fee_rate=Decimal("0.001"), slippage_bps=Decimal(5))


def test_prices_are_latest_closes_fresh_enough_and_marks_regardless_of_age() -> None:
    view = MarketView(
        as_of=T,
        candles={
            "BTC": [candle("BTC", T - 2 * HOUR, "1"), candle("BTC", T - HOUR, "2")],
            "ETH": [candle("ETH", T - 3 * HOUR, "30")],
            "SOL": [candle("SOL", T - 2 * HOUR, "5")],
            "XRP": [],
        },
        max_price_age=2 * HOUR,
    )
    # Exactly max_price_age old is still fresh; older is not.
    assert view.prices == {"BTC": Decimal(2), "SOL": Decimal(5)}
    assert view.marks == {"BTC": Decimal(2), "ETH": Decimal(30), "SOL": Decimal(5)}


def test_without_max_age_every_latest_close_is_a_price() -> None:
    view = MarketView(as_of=T, candles={"BTC": [candle("BTC", T - 100 * HOUR, "7")], "ETH": []})
    assert view.prices == {"BTC": Decimal(7)}


def test_closes_are_floats_or_the_given_tape() -> None:
    view = MarketView(
        as_of=T, candles={"BTC": [candle("BTC", T - HOUR, "1.5"), candle("BTC", T, "2.25")]}
    )
    assert view.closes("BTC") == [1.5, 2.25]
    assert view.closes("ETH") == []
    taped = MarketView(
        as_of=T, candles={"BTC": [candle("BTC", T, "2")]}, close_floats={"BTC": [9.0, 8.0]}
    )
    assert taped.closes("BTC") == [9.0, 8.0]
    assert taped.closes("ETH") == []


def btc(quantity: str, cost: str, average: str = "100") -> Position:
    return Position("BTC", Decimal(quantity), Decimal(average), Decimal(cost))


def test_quantity_of_held_and_absent_symbols() -> None:
    portfolio = Portfolio(Decimal(5), {"BTC": btc("0.5", "50")})
    assert portfolio.quantity("BTC") == Decimal("0.5")
    assert portfolio.quantity("ETH") == 0
    assert Portfolio(Decimal(5)).positions == {}


def test_positions_value_marks_held_and_uses_cost_without_a_mark() -> None:
    portfolio = Portfolio(
        Decimal("1000.123456789"),
        {
            "BTC": btc("0.5", "40"),
            "ETH": Position("ETH", Decimal(2), Decimal(10), Decimal("21.5")),
            "SOL": Position("SOL", Decimal(3), Decimal(1), Decimal("3.25")),
        },
    )
    marks = {"BTC": Decimal("100.000000013"), "SOL": Decimal(2)}
    # BTC 0.5 × 100.000000013 = 50.0000000065, ETH at its cost 21.5, SOL 3 × 2 = 6: the
    # sum 77.5000000065 is rounded once to 8 places.
    assert portfolio.positions_value(marks) == Decimal("77.50000001")
    assert portfolio.positions_value({}) == Decimal("64.75")
    assert portfolio.equity(marks) == Decimal("1000.12345679") + Decimal("77.50000001")
    assert portfolio.unrealized_pnl(marks) == Decimal("77.50000001") - Decimal("64.75")
    assert portfolio.unrealized_pnl({}) == 0


def test_unrealized_pnl_is_value_less_cost() -> None:
    portfolio = Portfolio(Decimal(0), {"BTC": btc("2", "150")})
    assert portfolio.unrealized_pnl({"BTC": Decimal(100)}) == Decimal(50)
    assert portfolio.unrealized_pnl({"BTC": Decimal(50)}) == Decimal(-50)
    assert Portfolio(Decimal(10)).unrealized_pnl({"BTC": Decimal(1)}) == 0
    assert Portfolio(Decimal(10)).equity({}) == Decimal(10)


def test_risk_note_as_dict() -> None:
    note = RiskNote(2, "BTC", "clipped_cash_reserve", "clipped to cash", "clipped", "3", "1.5")
    assert note.as_dict() == {
        "order": 2,
        "asset": "BTC",
        "code": "clipped_cash_reserve",
        "outcome": "clipped",
        "message": "clipped to cash",
        "requested": "3",
        "final": "1.5",
    }
    bare = RiskNote(0, None, "bad_order_shape", "not an order", "dropped")
    assert bare.as_dict() == {
        "order": 0,
        "asset": None,
        "code": "bad_order_shape",
        "outcome": "dropped",
        "message": "not an order",
        "requested": None,
        "final": None,
    }
