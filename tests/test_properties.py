"""Invariants over random order sequences and price paths (hypothesis, ≥ 200 examples)."""

from __future__ import annotations

from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from race.domain.model import Costs, Order, Portfolio, RiskLimits, Side
from race.domain.money import quantize
from race.domain.risk import apply_risk_rules

ASSETS = ("BTC", "ETH")

prices = st.decimals(min_value=D("0.01"), max_value=D("200000"), places=2)
quantities = st.one_of(
    st.decimals(min_value=D("-5"), max_value=D("50"), places=8),
    st.decimals(min_value=D("0"), max_value=D("100000"), places=0),
)
orders = st.builds(
    Order,
    asset=st.sampled_from(("BTC", "ETH", "DOGE")),
    side=st.sampled_from(Side),
    quantity=quantities,
)
# Each cycle: the tradable prices at T, the marks (latest closes, which value the portfolio
# and may differ from the prices or be missing) and the orders.
price_maps = st.fixed_dictionaries({"BTC": prices, "ETH": prices})
mark_maps = st.fixed_dictionaries({}, optional={"BTC": prices, "ETH": prices})
cycles = st.lists(
    st.tuples(price_maps, mark_maps, st.lists(orders, max_size=7)),
    min_size=1,
    max_size=12,
)
limit_sets = st.builds(
    RiskLimits,
    max_position_fraction=st.sampled_from([D("0.5"), D("1"), D("0.1")]),
    min_cash_reserve=st.sampled_from([D("0"), D("100"), D("5000")]),
    max_order_notional=st.sampled_from([D("25000"), D("1000000")]),
    min_order_notional=st.sampled_from([D("0"), D("10")]),
)
cost_sets = st.builds(
    Costs,
    fee_rate=st.sampled_from([D("0"), D("0.001"), D("0.0025")]),
    slippage_bps=st.sampled_from([D("0"), D("5"), D("30")]),
)


@settings(max_examples=300, deadline=None)
@given(
    cycles=cycles,
    limits=limit_sets,
    costs=cost_sets,
    cash=st.decimals(min_value=D("0"), max_value=D("1000000"), places=2),
)
def test_portfolio_invariants_hold_for_any_orders_and_prices(cycles, limits, costs, cash):
    portfolio = Portfolio(cash=cash)
    for at_t, marks, batch in cycles:
        outcome = apply_risk_rules(batch, portfolio, at_t, marks, limits, costs, ASSETS)
        portfolio = outcome.portfolio
        # No leverage, no shorting.
        assert portfolio.cash >= 0
        assert all(p.quantity > 0 for p in portfolio.positions.values())
        # Equity is exactly cash plus the marked positions (their value rounded once).
        expected = portfolio.cash + quantize(
            sum(
                (
                    p.quantity * marks[s] if s in marks else p.cost_basis
                    for s, p in portfolio.positions.items()
                ),
                D(0),
            )
        )
        assert portfolio.equity(marks) == expected
        for fill in outcome.fills:
            assert fill.reference_price == at_t[fill.asset]  # trades at T, never at a mark
            assert fill.quantity > 0
            assert fill.fee >= 0
            assert fill.fee == quantize(fill.notional * costs.fee_rate)
            assert fill.notional == quantize(fill.quantity * fill.price)
            assert fill.notional <= limits.max_order_notional or fill.side is Side.SELL
        # Every refused or clipped order says why.
        assert all(note.message and note.code for note in outcome.notes)


@settings(max_examples=250, deadline=None)
@given(cycles=cycles, costs=cost_sets)
def test_cash_moves_exactly_by_fills(cycles, costs):
    """Cash after = cash before − Σ(buy notional + fee) + Σ(sell notional − fee)."""
    portfolio = Portfolio(cash=D("100000"))
    for at_t, marks, batch in cycles:
        outcome = apply_risk_rules(batch, portfolio, at_t, marks, RiskLimits(), costs, ASSETS)
        delta = sum(
            (
                (-f.notional - f.fee) if f.side is Side.BUY else (f.notional - f.fee)
                for f in outcome.fills
            ),
            D(0),
        )
        assert outcome.portfolio.cash == portfolio.cash + delta
        portfolio = outcome.portfolio


@settings(max_examples=200, deadline=None)
@given(cycles=cycles)
def test_quantities_move_exactly_by_fills(cycles):
    portfolio = Portfolio(cash=D("250000"))
    for at_t, marks, batch in cycles:
        outcome = apply_risk_rules(batch, portfolio, at_t, marks, RiskLimits(), Costs(), ASSETS)
        for symbol in ASSETS:
            moved = sum(
                (
                    f.quantity if f.side is Side.BUY else -f.quantity
                    for f in outcome.fills
                    if f.asset == symbol
                ),
                D(0),
            )
            assert outcome.portfolio.quantity(symbol) == portfolio.quantity(symbol) + moved
        portfolio = outcome.portfolio
