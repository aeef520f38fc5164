"""Simulated execution (race/domain/execution.py), to the last unit of the fixed scale:
cost basis and average price over BUY, BUY, partial SELL and closing SELL, realised P&L, the
cash invariant at exactly zero, and the rounding step-down of ``max_affordable_quantity``."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from race.domain.execution import (
    buy_cost,
    execute,
    execution_price,
    fee_for,
    max_affordable_quantity,
)
from race.domain.model import Costs, Portfolio, Position, Side
from race.domain.money import QUANTUM

COSTS = Costs()  # 0.10 % fee, 5 bps slippage


def test_first_buy_opens_a_position_at_the_slipped_price_with_the_fee_in_the_cost_basis() -> None:
    portfolio, fill = execute(Portfolio(cash=D("10000")), "ETH", Side.BUY, D("1"), D("2000"), COSTS)
    assert portfolio.positions == {"ETH": Position("ETH", D("1"), D("2001"), D("2003.001"))}
    assert portfolio.cash == D("7996.999")
    assert fill.realized_pnl is None
    assert fill.slippage_cost == D("1")


def test_buy_buy_partial_sell_close_tracks_average_price_cost_basis_and_realised_pnl() -> None:
    start = Portfolio(cash=D("10000"))
    p1, _ = execute(start, "ETH", Side.BUY, D("1"), D("2000"), COSTS)
    # Second BUY: 3 ETH at 1000 → 1000.5 each, notional 3001.5, fee 3.0015.
    p2, buy2 = execute(p1, "ETH", Side.BUY, D("3"), D("1000"), COSTS)
    assert buy2.realized_pnl is None
    assert buy2.notional == D("3001.5")
    assert buy2.fee == D("3.0015")
    assert buy2.slippage_cost == D("1.5")  # 3 units × 0.5 USD
    # Average of the execution prices weighted by quantity, fees excluded.
    assert p2.positions["ETH"] == Position("ETH", D("4"), D("1250.625"), D("5007.5025"))
    assert p2.cash == D("10000") - D("2003.001") - D("3004.5015")
    # Partial SELL of half the position: half the cost basis leaves with it.
    p3, sell1 = execute(p2, "ETH", Side.SELL, D("2"), D("3000"), COSTS)
    assert sell1.price == D("2998.5")
    assert sell1.notional == D("5997")
    assert sell1.fee == D("5.997")
    assert sell1.realized_pnl == D("5997") - D("5.997") - D("2503.75125")
    assert sell1.realized_pnl == D("3487.25175")
    assert p3.positions["ETH"] == Position("ETH", D("2"), D("1250.625"), D("2503.75125"))
    assert p3.cash == D("10983.5005")
    # Closing SELL at a loss takes the whole remaining cost basis.
    p4, sell2 = execute(p3, "ETH", Side.SELL, D("2"), D("500"), COSTS)
    assert sell2.notional == D("999.5")
    assert sell2.realized_pnl == D("999.5") - D("0.9995") - D("2503.75125")
    assert p4.positions == {}
    assert p4.cash == D("10983.5005") + D("999.5") - D("0.9995")
    # One winning and one losing trade: what the win rate counts.
    assert [f.realized_pnl > 0 for f in (sell1, sell2)] == [True, False]
    # Over the round trip, realised P&L is exactly the cash gained.
    assert sell1.realized_pnl + sell2.realized_pnl == p4.cash - start.cash


def test_partial_sell_cost_out_is_proportional_to_the_quantity_sold() -> None:
    held = Position("BTC", D("4"), D("100"), D("400.4"))
    portfolio, fill = execute(
        Portfolio(cash=D("0"), positions={"BTC": held}),
        "BTC",
        Side.SELL,
        D("3"),
        D("100"),
        Costs(fee_rate=D("0"), slippage_bps=D("0")),
    )
    assert fill.realized_pnl == D("300") - D("300.3")
    assert portfolio.positions["BTC"] == Position("BTC", D("1"), D("100"), D("100.1"))


def test_other_positions_are_untouched() -> None:
    btc = Position("BTC", D("1"), D("40000"), D("40040"))
    start = Portfolio(cash=D("5000"), positions={"BTC": btc})
    after, _ = execute(start, "ETH", Side.BUY, D("1"), D("2000"), COSTS)
    assert after.positions["BTC"] is btc
    assert start.positions == {"BTC": btc}  # the input portfolio is not mutated


def test_a_buy_may_spend_cash_down_to_exactly_zero() -> None:
    portfolio, fill = execute(
        Portfolio(cash=D("2003.001")), "ETH", Side.BUY, D("1"), D("2000"), COSTS
    )
    assert portfolio.cash == D("0")
    assert fill.notional + fill.fee == D("2003.001")


def test_execute_refuses_impossible_orders_with_what_they_needed() -> None:
    with pytest.raises(ValueError, match=r"needs 2003\.001"):
        execute(Portfolio(cash=D("2003")), "ETH", Side.BUY, D("1"), D("2000"), COSTS)
    with pytest.raises(ValueError, match="non-positive quantity 0"):
        execute(Portfolio(cash=D("10000")), "ETH", Side.BUY, D("0"), D("2000"), COSTS)
    with pytest.raises(ValueError, match="non-positive quantity -1"):
        execute(Portfolio(cash=D("10000")), "ETH", Side.BUY, D("-1"), D("2000"), COSTS)
    held = {"ETH": Position("ETH", D("1"), D("2000"), D("2002"))}
    with pytest.raises(ValueError, match="exceeds holdings"):
        execute(
            Portfolio(cash=D("0"), positions=held), "ETH", Side.SELL, D("1.5"), D("2000"), COSTS
        )


def test_prices_and_fees() -> None:
    assert execution_price(D("2000"), Side.BUY, COSTS) == D("2001")
    assert execution_price(D("2000"), Side.SELL, COSTS) == D("1999")
    assert fee_for(D("2001"), COSTS) == D("2.001")
    assert fee_for(D("2001"), Costs(fee_rate=D("0"))) == D("0")
    assert buy_cost(D("3"), D("1000.5"), COSTS) == D("3004.5015")


def test_max_affordable_quantity_exact_fit_is_not_stepped_down() -> None:
    # 1 unit at 1 USD costs exactly 1.001 with the fee: a budget of exactly that buys 1.
    assert max_affordable_quantity(D("1.001"), D("1"), COSTS) == D("1")
    assert max_affordable_quantity(D("5"), D("1"), Costs(fee_rate=D("0"))) == D("5")
    assert max_affordable_quantity(D("1.00099999"), D("1"), COSTS) == D("0.99999999")


def test_max_affordable_quantity_steps_down_when_rounding_overshoots() -> None:
    budget, price = D("2.86141355"), D("0.51814639")
    # The first estimate costs one unit of the last place too much once rounded ...
    first = D("5.51688683")
    assert buy_cost(first, price, COSTS) == budget + QUANTUM
    # ... so the answer is one quantum less, which fits.
    quantity = max_affordable_quantity(budget, price, COSTS)
    assert quantity == first - QUANTUM
    assert buy_cost(quantity, price, COSTS) <= budget


@pytest.mark.parametrize(
    ("budget", "price"),
    [("0", "2000"), ("-5", "2000"), ("100", "0"), ("100", "-1"), ("0", "0")],
)
def test_max_affordable_quantity_is_zero_without_budget_or_price(budget: str, price: str) -> None:
    quantity = max_affordable_quantity(D(budget), D(price), COSTS)
    assert quantity == 0
    assert str(quantity) == "0"


@settings(max_examples=300, deadline=None)
@given(
    budget=st.decimals(min_value=D("0.00000001"), max_value=D("1000000"), places=8),
    price=st.decimals(min_value=D("1"), max_value=D("200000"), places=8),
    fee_rate=st.sampled_from([D("0"), D("0.001"), D("0.0025")]),
)
def test_max_affordable_quantity_is_the_largest_that_fits(budget: D, price: D, fee_rate: D) -> None:
    costs = Costs(fee_rate=fee_rate)
    quantity = max_affordable_quantity(budget, price, costs)
    assert quantity >= 0
    assert quantity == quantity.quantize(QUANTUM)
    assert buy_cost(quantity, price, costs) <= budget
    # Largest up to one quantum: the estimate ignores that a fee can round down (1E-8 USD
    # at 1 USD buys 1E-8 units with a fee of 0, yet the answer is 0). A price ≥ 1 moves the
    # notional by at least one quantum per quantum of quantity.
    assert buy_cost(quantity + 2 * QUANTUM, price, costs) > budget
