"""Simulated execution at the price at T, with slippage against the trader and a taker fee."""

from __future__ import annotations

from decimal import Decimal

from race.domain.model import Costs, Fill, Portfolio, Position, Side
from race.domain.money import BPS, ONE, QUANTUM, ZERO, quantize, quantize_down


def execution_price(reference: Decimal, side: Side, costs: Costs) -> Decimal:
    move = costs.slippage_bps / BPS
    factor = ONE + move if side is Side.BUY else ONE - move
    return quantize(reference * factor)


def fee_for(notional: Decimal, costs: Costs) -> Decimal:
    return quantize(notional * costs.fee_rate)


def buy_cost(quantity: Decimal, price: Decimal, costs: Costs) -> Decimal:
    """Cash a BUY of ``quantity`` at execution ``price`` takes: notional plus fee."""
    notional = quantize(quantity * price)
    return notional + fee_for(notional, costs)


def max_affordable_quantity(budget: Decimal, price: Decimal, costs: Costs) -> Decimal:
    """Largest quantity (on the fixed grid) whose notional plus fee fits in ``budget``."""
    if budget <= ZERO or price <= ZERO:
        return ZERO
    quantity = quantize_down(budget / (price * (ONE + costs.fee_rate)))
    # Rounding of notional and fee can add a few units of the last place: step down until
    # the order fits. Never more than a handful of steps.
    while quantity > ZERO and buy_cost(quantity, price, costs) > budget:
        quantity -= QUANTUM
    return max(quantity, ZERO)


def execute(
    portfolio: Portfolio,
    asset: str,
    side: Side,
    quantity: Decimal,
    reference: Decimal,
    costs: Costs,
) -> tuple[Portfolio, Fill]:
    """Apply one already-validated order. Raises ``ValueError`` if it would break an invariant
    (negative cash or quantity): the risk rules must have prevented that."""
    if quantity <= ZERO:
        raise ValueError(f"cannot execute a non-positive quantity {quantity}")
    price = execution_price(reference, side, costs)
    notional = quantize(quantity * price)
    fee = fee_for(notional, costs)
    slippage_cost = quantize(quantity * abs(price - reference))
    positions = dict(portfolio.positions)
    held = positions.get(asset)
    if side is Side.BUY:
        cash = portfolio.cash - notional - fee
        if cash < ZERO:
            raise ValueError(
                f"BUY {quantity} {asset} needs {notional + fee}, cash {portfolio.cash}"
            )
        if held is None:
            positions[asset] = Position(asset, quantity, price, notional + fee)
        else:
            new_quantity = held.quantity + quantity
            average = quantize(
                (held.quantity * held.average_price + quantity * price) / new_quantity
            )
            positions[asset] = Position(
                asset, new_quantity, average, held.cost_basis + notional + fee
            )
        realized = None
    else:
        if held is None or quantity > held.quantity:
            raise ValueError(f"SELL {quantity} {asset} exceeds holdings")
        cash = portfolio.cash + notional - fee
        remaining = held.quantity - quantity
        if remaining == ZERO:
            cost_out = held.cost_basis
            del positions[asset]
        else:
            cost_out = quantize(held.cost_basis * quantity / held.quantity)
            positions[asset] = Position(
                asset, remaining, held.average_price, held.cost_basis - cost_out
            )
        realized = notional - fee - cost_out
    fill = Fill(asset, side, quantity, reference, price, notional, fee, slippage_cost, realized)
    return Portfolio(cash=cash, positions=positions), fill
