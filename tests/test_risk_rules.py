"""Each risk rule of docs/rules.md: every clip and refusal, in order, with its reason."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from race.domain.execution import execute
from race.domain.model import Costs, Order, Portfolio, Position, RiskLimits, Side
from race.domain.risk import apply_risk_rules

LIMITS = RiskLimits()
COSTS = Costs()
ASSETS = ("BTC", "ETH")
PRICES = {"BTC": D("40000"), "ETH": D("2000")}
# Marks are the latest closes (any age) and value the portfolio for the position cap; they
# differ from the tradable prices at T so a rule that reads the wrong one is caught.
MARKS = {"BTC": D("41000"), "ETH": D("2100")}


def run(orders, portfolio=None, prices=PRICES, limits=LIMITS, costs=COSTS, marks=MARKS):
    portfolio = portfolio or Portfolio(cash=D("100000"))
    return apply_risk_rules(orders, portfolio, prices, marks, limits, costs, ASSETS)


def buy(asset, qty):
    return Order(asset, Side.BUY, D(str(qty)))


def sell(asset, qty):
    return Order(asset, Side.SELL, D(str(qty)))


def codes(outcome):
    return [n.code for n in outcome.notes]


def test_valid_buy_executes_at_slipped_price_with_fee():
    out = run([buy("ETH", 1)])
    assert out.notes == ()
    (fill,) = out.fills
    assert fill.reference_price == D("2000")
    assert fill.price == D("2001.00000000")  # 5 bps against the buyer
    assert fill.notional == D("2001.00000000")
    assert fill.fee == D("2.00100000")  # 0.10 %
    assert fill.slippage_cost == D("1.00000000")
    assert out.portfolio.cash == D("100000") - D("2001") - D("2.001")
    assert out.portfolio.positions["ETH"].quantity == D("1")


def test_sell_executes_below_reference_price():
    start = Portfolio(
        cash=D("1000"), positions={"ETH": Position("ETH", D("2"), D("1900"), D("3803.8"))}
    )
    out = run([sell("ETH", 1)], portfolio=start)
    (fill,) = out.fills
    assert fill.price == D("1999.00000000")
    assert fill.fee == D("1.99900000")
    assert out.portfolio.cash == D("1000") + D("1999") - D("1.999")
    assert fill.realized_pnl == D("1999") - D("1.999") - D("1901.9")


def test_unknown_asset_refused():
    out = run([buy("DOGE", 10)])
    assert codes(out) == ["unknown_asset"]
    assert out.fills == ()
    assert "DOGE" in out.notes[0].message


def test_non_positive_quantity_refused():
    out = run([buy("BTC", 0), sell("BTC", -1)])
    assert codes(out) == ["non_positive_quantity", "non_positive_quantity"]


def test_unknown_price_refused():
    out = run([buy("ETH", 1)], prices={"BTC": D("40000")})
    assert codes(out) == ["no_price"]


def test_below_min_notional_refused():
    out = run([buy("ETH", "0.004")])  # 8 USD < 10 USD
    assert codes(out) == ["below_min_notional"]
    assert out.notes[0].outcome == "refused"


def test_buy_clipped_to_max_order_notional():
    out = run([buy("BTC", 1)])  # 40,000 USD > 25,000
    assert codes(out) == ["clipped_max_order_notional"]
    (fill,) = out.fills
    assert fill.notional <= D("25000")
    assert fill.notional > D("24999")
    assert out.notes[0].outcome == "clipped"
    assert out.notes[0].final_quantity == str(fill.quantity)


BTC_HOLDING = {"BTC": Position("BTC", D("1"), D("40000"), D("40040"))}


def test_buy_clipped_to_cash_less_reserve_and_fee():
    out = run([buy("ETH", 5)], portfolio=Portfolio(cash=D("5000"), positions=BTC_HOLDING))
    assert codes(out) == ["clipped_cash_reserve"]
    (fill,) = out.fills
    assert fill.notional + fill.fee <= D("4900")
    assert out.portfolio.cash >= D("100")
    # Not a cent more could have been bought: one more 10⁻⁸ unit would break the reserve.
    assert out.portfolio.cash - D("100") < D("0.001")


def test_buy_refused_when_cash_is_at_reserve():
    out = run([buy("ETH", 1)], portfolio=Portfolio(cash=D("100")))
    assert codes(out) == ["clipped_cash_reserve", "below_min_after_clip"]
    assert out.fills == ()


def test_buy_clipped_to_position_cap():
    held = Position("ETH", D("20"), D("2000"), D("40000"))
    # Equity at the marks: 60,000 + 20 × 2,100 = 102,000, so the cap is 51,000 USD; the
    # ETH held counts at the price at T (20 × 2,000), leaving 11,000 USD = 5.5 ETH of room.
    start = Portfolio(cash=D("60000"), positions={"ETH": held})
    out = run([buy("ETH", 10)], portfolio=start)
    assert codes(out) == ["clipped_position_cap"]
    (fill,) = out.fills
    assert fill.quantity == D("5.5")
    assert out.notes[0].final_quantity == "5.50000000"
    assert out.notes[0].message == (
        "clipped so the ETH position stays within 50.0 % of equity (51000.00000000 USD)"
    )


def test_buy_refused_at_position_cap():
    held = Position("ETH", D("25"), D("2000"), D("50000"))
    # Equity 47,500 + 25 × 2,100 = 100,000: cap 50,000, held 25 × 2,000 = 50,000, room 0.
    start = Portfolio(cash=D("47500"), positions={"ETH": held})
    out = run([buy("ETH", 1)], portfolio=start)
    assert codes(out) == ["clipped_position_cap", "below_min_after_clip"]
    assert [n.final_quantity for n in out.notes] == ["0", "0"]
    assert out.fills == ()


def test_buy_refused_above_position_cap_clips_to_zero_not_below():
    held = Position("ETH", D("30"), D("2000"), D("60000"))
    # Equity 40,000 + 30 × 2,100 = 103,000: cap 51,500 < 60,000 held, negative room.
    start = Portfolio(cash=D("40000"), positions={"ETH": held})
    out = run([buy("ETH", 1)], portfolio=start)
    assert codes(out) == ["clipped_position_cap", "below_min_after_clip"]
    assert [n.final_quantity for n in out.notes] == ["0", "0"]
    assert out.portfolio == start


def test_sell_without_position_refused():
    out = run([sell("BTC", 1)])
    assert codes(out) == ["no_position"]


def test_sell_clipped_to_holdings():
    start = Portfolio(
        cash=D("0"), positions={"ETH": Position("ETH", D("1.5"), D("2000"), D("3003"))}
    )
    out = run([sell("ETH", 3)], portfolio=start)
    assert codes(out) == ["clipped_to_holdings"]
    assert out.fills[0].quantity == D("1.5")
    assert "ETH" not in out.portfolio.positions


def test_selling_a_whole_small_position_below_minimum_is_allowed():
    start = Portfolio(
        cash=D("0"), positions={"ETH": Position("ETH", D("0.002"), D("2000"), D("4"))}
    )
    out = run([sell("ETH", "0.002")], portfolio=start)
    assert out.notes == ()
    assert out.fills[0].quantity == D("0.002")
    assert out.portfolio.positions == {}


def test_partial_sell_below_minimum_refused():
    start = Portfolio(cash=D("0"), positions={"ETH": Position("ETH", D("1"), D("2000"), D("2002"))})
    out = run([sell("ETH", "0.001")], portfolio=start)
    assert codes(out) == ["below_min_notional"]


def test_later_orders_see_earlier_ones():
    # Two buys of 20k each with 30k cash: the second is clipped by what the first left.
    holding = {"BTC": Position("BTC", D("2"), D("40000"), D("80080"))}
    out = run(
        [buy("ETH", 10), buy("ETH", 10)], portfolio=Portfolio(cash=D("30000"), positions=holding)
    )
    assert [f.asset for f in out.fills] == ["ETH", "ETH"]
    assert codes(out) == ["clipped_cash_reserve"]
    assert out.notes[0].order_index == 1
    assert out.portfolio.cash >= D("100")


def test_sell_then_buy_in_same_cycle_uses_proceeds():
    start = Portfolio(
        cash=D("200"), positions={"ETH": Position("ETH", D("5"), D("2000"), D("10000"))}
    )
    out = run([sell("ETH", 5), buy("BTC", "0.1")], portfolio=start)
    # 200 USD alone would clip the BUY to the cash reserve: only the SELL's proceeds
    # (5 × 1,999 − 9.995 fee = 9,985.005) pay for the whole 0.1 BTC (4,002 + 4.002 fee).
    assert out.notes == ()
    assert [(f.side, f.quantity) for f in out.fills] == [(Side.SELL, D("5")), (Side.BUY, D("0.1"))]
    assert out.portfolio.cash == D("200") + D("9985.005") - D("4006.002")
    assert out.portfolio.positions == {"BTC": Position("BTC", D("0.1"), D("40020"), D("4006.002"))}


def test_max_orders_per_cycle():
    out = run([buy("ETH", "0.01")] * 7)
    assert len(out.fills) == 5
    assert codes(out) == ["max_orders_per_cycle"] * 2
    assert [n.order_index for n in out.notes] == [5, 6]


def test_note_indices_follow_the_answer():
    out = apply_risk_rules(
        [buy("DOGE", 1)],
        Portfolio(cash=D("1000")),
        PRICES,
        MARKS,
        LIMITS,
        COSTS,
        ASSETS,
        indices=[3],
    )
    assert out.notes[0].order_index == 3


@pytest.mark.parametrize("limits", [RiskLimits(min_cash_reserve=D("0")), RiskLimits()])
def test_spending_everything_never_goes_negative(limits):
    out = run([buy("ETH", "0.01")] * 5, portfolio=Portfolio(cash=D("100.5")), limits=limits)
    assert out.portfolio.cash >= 0


def test_execute_refuses_impossible_orders():
    with pytest.raises(ValueError, match="needs"):
        execute(Portfolio(cash=D("10")), "ETH", Side.BUY, D("1"), D("2000"), COSTS)
    with pytest.raises(ValueError, match="exceeds"):
        execute(Portfolio(cash=D("10")), "ETH", Side.SELL, D("1"), D("2000"), COSTS)


@pytest.mark.parametrize("bad", ["NaN", "sNaN", "Infinity", "-Infinity", "0", "-1"])
def test_non_finite_or_non_positive_prices_are_no_price(bad):
    out = run(
        [buy("ETH", 1), buy("BTC", "0.01")],
        prices={"BTC": D("40000"), "ETH": D(bad)},
    )
    assert codes(out) == ["no_price"]
    assert [f.asset for f in out.fills] == ["BTC"]
    assert out.portfolio.cash >= 0
