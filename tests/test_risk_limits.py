"""The risk rules at their edges: every note in full (code, outcome, order index, requested
and final quantity, message), orders exactly on each limit, a refusal never stops the
orders after it, and ``RiskOutcome.changed``. Prices at T and marks always differ."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from race.domain.model import Costs, Order, Portfolio, Position, RiskLimits, Side
from race.domain.risk import RiskOutcome, apply_risk_rules

LIMITS = RiskLimits()  # cap 50 %, reserve 100, max order 25,000, min order 10, 5 orders
COSTS = Costs()  # fee 0.10 %, slippage 5 bps
FREE = Costs(fee_rate=D("0"), slippage_bps=D("0"))
ASSETS = ("BTC", "ETH")
PRICES = {"BTC": D("40000"), "ETH": D("2000")}
MARKS = {"BTC": D("41000"), "ETH": D("2100")}
# A valid order placed after each refused one: a refusal skips only its own order.
TAIL = Order("BTC", Side.BUY, D("0.001"))
WIDE = RiskLimits(max_order_notional=D("1000000"))


def buy(asset: str, qty: str) -> Order:
    return Order(asset, Side.BUY, D(qty))


def sell(asset: str, qty: str) -> Order:
    return Order(asset, Side.SELL, D(qty))


def run(
    orders: list[Order],
    portfolio: Portfolio | None = None,
    *,
    prices: dict[str, D] = PRICES,
    marks: dict[str, D] = MARKS,
    limits: RiskLimits = LIMITS,
    costs: Costs = COSTS,
) -> RiskOutcome:
    return apply_risk_rules(
        orders,
        portfolio or Portfolio(cash=D("100000")),
        prices,
        marks,
        limits,
        costs,
        ASSETS,
        indices=[i + 10 for i in range(len(orders))],
    )


def notes(out: RiskOutcome) -> list[dict[str, object]]:
    return [n.as_dict() for n in out.notes]


def refused(index: int, asset: str, code: str, requested: str, message: str) -> dict[str, object]:
    return {
        "order": index,
        "asset": asset,
        "code": code,
        "outcome": "refused",
        "message": message,
        "requested": requested,
        "final": None,
    }


def clipped(
    index: int, asset: str, code: str, requested: str, final: str, message: str
) -> dict[str, object]:
    return {
        "order": index,
        "asset": asset,
        "code": code,
        "outcome": "clipped",
        "message": message,
        "requested": requested,
        "final": final,
    }


def assert_tail_executed(out: RiskOutcome) -> None:
    assert out.fills[-1].asset == "BTC"
    assert out.fills[-1].quantity == D("0.001")


# --- every refusal, in full, followed by an order that still executes ---------------------


def test_unknown_asset_note() -> None:
    out = run([buy("DOGE", "10"), TAIL])
    assert notes(out) == [
        refused(
            10,
            "DOGE",
            "unknown_asset",
            "10",
            "asset 'DOGE' is not traded in this race (allowed: BTC, ETH)",
        )
    ]
    assert_tail_executed(out)


def test_non_positive_quantity_note() -> None:
    out = run([sell("ETH", "-1"), TAIL])
    assert notes(out) == [
        refused(10, "ETH", "non_positive_quantity", "-1", "quantity must be > 0, got -1")
    ]
    assert_tail_executed(out)


def test_no_price_note() -> None:
    out = run([buy("ETH", "1"), TAIL], prices={"BTC": D("40000")})
    assert notes(out) == [
        refused(10, "ETH", "no_price", "1", "no recent price for ETH at the decision time")
    ]
    assert_tail_executed(out)


def test_below_min_notional_note() -> None:
    out = run([buy("ETH", "0.004"), TAIL])
    assert notes(out) == [
        refused(
            10,
            "ETH",
            "below_min_notional",
            "0.004",
            "order notional 8.00000000 USD is below the minimum 10 USD",
        )
    ]
    assert_tail_executed(out)


def test_a_tiny_sell_without_position_is_below_minimum_not_a_closing_sell() -> None:
    out = run([sell("ETH", "0.001"), TAIL])
    assert [n["code"] for n in notes(out)] == ["below_min_notional"]
    assert_tail_executed(out)


def test_no_position_note() -> None:
    out = run([sell("BTC", "1"), TAIL])
    assert notes(out) == [
        refused(10, "BTC", "no_position", "1", "cannot sell BTC: no position (no shorting)")
    ]
    assert_tail_executed(out)


def test_max_orders_per_cycle_note() -> None:
    out = run([TAIL] * 6)
    assert notes(out) == [
        refused(15, "BTC", "max_orders_per_cycle", "0.001", "only 5 orders are allowed per cycle")
    ]
    assert len(out.fills) == 5


def test_below_min_after_clip_note_and_a_buy_clipped_below_minimum_is_refused() -> None:
    # 105 USD less the 100 reserve buys about 5 USD of ETH: a BUY is never a whole position.
    out = run([buy("ETH", "1"), TAIL], Portfolio(cash=D("105")))
    assert notes(out)[:2] == [
        clipped(
            10,
            "ETH",
            "clipped_cash_reserve",
            "1",
            "0.00249625",
            "clipped to cash 105.00000000 USD less the reserve of 100 USD and the fee",
        ),
        {
            **refused(
                10,
                "ETH",
                "below_min_after_clip",
                "1",
                "after clipping, the order (0.00249625 ETH) is below the minimum notional "
                "of 10 USD",
            ),
            "final": "0",
        },
    ]
    # The tail cannot be paid for either, and says so as its own order.
    assert [(n.order_index, n.code) for n in out.notes[2:]] == [
        (11, "clipped_cash_reserve"),
        (11, "below_min_after_clip"),
    ]
    assert out.fills == ()
    assert out.portfolio == Portfolio(cash=D("105"))


# --- every clip, in full -------------------------------------------------------------------


def test_clipped_max_order_notional_note() -> None:
    out = run([buy("BTC", "1")])
    assert notes(out) == [
        clipped(
            10,
            "BTC",
            "clipped_max_order_notional",
            "1",
            "0.62468765",  # 25,000 / 40,020
            "clipped to the maximum order notional of 25000 USD",
        )
    ]
    assert out.fills[0].quantity == D("0.62468765")


def test_clipped_to_holdings_note() -> None:
    start = Portfolio(
        cash=D("0"), positions={"ETH": Position("ETH", D("1.5"), D("2000"), D("3003"))}
    )
    out = run([sell("ETH", "3")], start)
    assert notes(out) == [
        clipped(10, "ETH", "clipped_to_holdings", "3", "1.5", "clipped to the 1.5 ETH held")
    ]


# --- orders exactly on each limit pass untouched ---------------------------------------------


def test_order_exactly_at_min_notional_is_accepted() -> None:
    out = run([buy("ETH", "0.005")])  # 0.005 × 2,000 = 10 USD
    assert out.notes == ()
    assert out.fills[0].quantity == D("0.005")
    assert not out.changed


def test_order_exactly_at_max_order_notional_is_not_clipped() -> None:
    out = run([buy("ETH", "12.49375312")])  # largest quantity with 25,000 / 2,001
    assert out.notes == ()
    assert out.fills[0].notional <= D("25000")


def test_order_exactly_at_the_cash_limit_is_not_clipped() -> None:
    # 2,603.75125 USD less the 100 reserve: exactly 1.25 ETH at 2,001 plus the 0.10 % fee.
    btc = {"BTC": Position("BTC", D("1"), D("40000"), D("40040"))}
    start = Portfolio(cash=D("2603.75125"), positions=btc)
    out = run([buy("ETH", "1.25")], start)
    assert out.notes == ()
    assert out.portfolio.cash == D("100")


def test_order_exactly_at_the_position_cap_is_not_clipped() -> None:
    held = Position("ETH", D("20"), D("2000"), D("40000"))
    start = Portfolio(cash=D("60000"), positions={"ETH": held})  # room 5.5 ETH (see marks)
    out = run([buy("ETH", "5.5")], start)
    assert out.notes == ()
    assert out.portfolio.positions["ETH"].quantity == D("25.5")


def test_order_clipped_exactly_to_min_notional_is_accepted() -> None:
    limits = RiskLimits(max_order_notional=D("10"))
    out = run([buy("ETH", "1")], limits=limits, costs=FREE)
    assert [n.code for n in out.notes] == ["clipped_max_order_notional"]
    assert out.fills[0].quantity == D("0.005")
    assert out.changed


def test_an_order_rounding_to_zero_is_refused_even_without_a_minimum() -> None:
    limits = RiskLimits(min_order_notional=D("0"))
    out = run([buy("BTC", "0.000000001"), TAIL], limits=limits)
    assert [(n.code, n.final_quantity) for n in out.notes] == [("below_min_after_clip", "0")]
    assert_tail_executed(out)


# --- marks and prices play different parts ----------------------------------------------------


def test_the_cap_values_other_positions_at_their_marks() -> None:
    btc = Position("BTC", D("1"), D("30000"), D("30000"))
    start = Portfolio(cash=D("60000"), positions={"BTC": btc})
    # Equity 60,000 + 41,000 (BTC mark, not the 40,000 price at T nor the 30,000 cost)
    # = 101,000: cap 50,500 USD = 25.25 ETH at the price at T.
    out = run([buy("ETH", "30")], start, limits=WIDE)
    assert [n.code for n in out.notes] == ["clipped_cash_reserve", "clipped_position_cap"]
    assert out.notes[1].final_quantity == "25.25000000"


def test_an_unusable_mark_values_the_position_at_its_cost_basis() -> None:
    btc = Position("BTC", D("1"), D("30000"), D("30000"))
    start = Portfolio(cash=D("60000"), positions={"BTC": btc})
    # Equity 60,000 + 30,000 (cost basis: a NaN mark is no mark) = 90,000: 22.5 ETH.
    marks = {"BTC": D("NaN"), "ETH": D("2100")}
    out = run([buy("ETH", "30")], start, marks=marks, limits=WIDE)
    assert out.notes[-1].code == "clipped_position_cap"
    assert out.notes[-1].final_quantity == "22.50000000"


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "0", "-5"])
def test_unusable_marks_of_the_asset_bought_are_ignored(bad: str) -> None:
    out = run([buy("ETH", "1")], marks={"BTC": D("41000"), "ETH": D(bad)})
    assert out.notes == ()
    assert out.fills[0].quantity == D("1")


def test_changed_is_false_for_untouched_orders_and_true_for_any_note() -> None:
    assert run([buy("ETH", "1")]).changed is False
    assert run([]).changed is False
    assert run([buy("DOGE", "1")]).changed is True
    assert run([buy("BTC", "1")]).changed is True


def test_clipped_position_cap_note_and_a_buy_the_size_of_the_holding_is_no_closing_sell() -> None:
    held = Position("ETH", D("0.004"), D("2000"), D("8"))
    # Equity 23.6 + 0.004 × 2,100 = 32: cap 16 USD, held 8 USD at T, room 0.004 ETH — the
    # same quantity as held, yet 8 USD is below the minimum for a BUY.
    start = Portfolio(cash=D("23.6"), positions={"ETH": held})
    out = run([buy("ETH", "1")], start, limits=RiskLimits(min_cash_reserve=D("0")), costs=FREE)
    assert notes(out) == [
        clipped(
            10,
            "ETH",
            "clipped_cash_reserve",
            "1",
            "0.01180000",
            "clipped to cash 23.60000000 USD less the reserve of 0 USD and the fee",
        ),
        clipped(
            10,
            "ETH",
            "clipped_position_cap",
            "1",
            "0.00400000",
            "clipped so the ETH position stays within 50.0 % of equity (16.00000000 USD)",
        ),
        {
            **refused(
                10,
                "ETH",
                "below_min_after_clip",
                "1",
                "after clipping, the order (0.00400000 ETH) is below the minimum notional "
                "of 10 USD",
            ),
            "final": "0",
        },
    ]
    assert out.portfolio == start
