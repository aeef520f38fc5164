"""The risk rules of docs/rules.md, applied in order to each order with a running state.

For each order: allowed asset → quantity > 0 → price known → min notional →
BUY: clip to max order notional, to cash − reserve − fee, to the position cap;
SELL: refuse with no position, clip to holdings (selling a whole position below the
minimum is allowed) → refuse if the clipped order falls below the minimum.
Later orders see the cash and positions left by earlier ones. Every clip and refusal is a
:class:`RiskNote`. Nothing here raises for bad orders and nothing can make cash or a
quantity negative.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from race.domain.execution import execute, execution_price, max_affordable_quantity
from race.domain.model import Costs, Fill, Order, Portfolio, RiskLimits, RiskNote, Side
from race.domain.money import ZERO, quantize, quantize_down


@dataclass(frozen=True)
class RiskOutcome:
    portfolio: Portfolio
    """The portfolio after executing every accepted order."""
    fills: tuple[Fill, ...]
    notes: tuple[RiskNote, ...]

    @property
    def changed(self) -> bool:
        return bool(self.notes)


def _note(
    index: int, order: Order, code: str, outcome: str, message: str, final: Decimal | None = None
) -> RiskNote:
    return RiskNote(
        order_index=index,
        asset=order.asset,
        code=code,
        message=message,
        outcome=outcome,
        requested_quantity=str(order.quantity),
        final_quantity=None if final is None else str(final),
    )


def _usable(price: Decimal | None) -> bool:
    return isinstance(price, Decimal) and price.is_finite() and price > ZERO


def apply_risk_rules(
    orders: Sequence[Order],
    portfolio: Portfolio,
    prices: Mapping[str, Decimal],
    marks: Mapping[str, Decimal],
    limits: RiskLimits,
    costs: Costs,
    allowed_assets: Sequence[str],
    *,
    indices: Sequence[int] | None = None,
) -> RiskOutcome:
    """Validate, clip and execute ``orders`` in sequence.

    ``prices`` are the tradable prices at T (fresh enough); ``marks`` value the portfolio
    for the position cap (latest close, any age). ``indices`` are the orders' positions in
    the agent's answer, so notes point at what the agent wrote.
    """
    notes: list[RiskNote] = []
    fills: list[Fill] = []
    state = portfolio
    allowed = set(allowed_assets)
    # A price that is NaN, infinite or not positive is no price at all: an order in that
    # asset is refused ("no_price") and the mark is left out of the valuation.
    prices = {a: p for a, p in prices.items() if _usable(p)}
    marks = {a: p for a, p in marks.items() if _usable(p)}
    for offset, order in enumerate(orders):
        index = indices[offset] if indices is not None else offset
        if offset >= limits.max_orders_per_cycle:
            notes.append(
                _note(
                    index,
                    order,
                    "max_orders_per_cycle",
                    "refused",
                    f"only {limits.max_orders_per_cycle} orders are allowed per cycle",
                )
            )
            continue
        if order.asset not in allowed:
            notes.append(
                _note(
                    index,
                    order,
                    "unknown_asset",
                    "refused",
                    f"asset {order.asset!r} is not traded in this race "
                    f"(allowed: {', '.join(sorted(allowed))})",
                )
            )
            continue
        if order.quantity <= ZERO:
            notes.append(
                _note(
                    index,
                    order,
                    "non_positive_quantity",
                    "refused",
                    f"quantity must be > 0, got {order.quantity}",
                )
            )
            continue
        reference = prices.get(order.asset)
        if reference is None:
            notes.append(
                _note(
                    index,
                    order,
                    "no_price",
                    "refused",
                    f"no recent price for {order.asset} at the decision time",
                )
            )
            continue
        held = state.quantity(order.asset)
        closes_position = order.side is Side.SELL and held > ZERO and order.quantity >= held
        if quantize(order.quantity * reference) < limits.min_order_notional and not closes_position:
            notes.append(
                _note(
                    index,
                    order,
                    "below_min_notional",
                    "refused",
                    f"order notional {quantize(order.quantity * reference)} USD is below the "
                    f"minimum {limits.min_order_notional} USD",
                )
            )
            continue
        quantity = quantize_down(order.quantity)
        if order.side is Side.BUY:
            price = execution_price(reference, Side.BUY, costs)
            max_by_notional = quantize_down(limits.max_order_notional / price)
            if quantity > max_by_notional:
                quantity = max_by_notional
                notes.append(
                    _note(
                        index,
                        order,
                        "clipped_max_order_notional",
                        "clipped",
                        f"clipped to the maximum order notional of {limits.max_order_notional} USD",
                        quantity,
                    )
                )
            budget = state.cash - limits.min_cash_reserve
            max_by_cash = max_affordable_quantity(budget, price, costs)
            if quantity > max_by_cash:
                quantity = max_by_cash
                notes.append(
                    _note(
                        index,
                        order,
                        "clipped_cash_reserve",
                        "clipped",
                        f"clipped to cash {quantize(state.cash)} USD less the reserve of "
                        f"{limits.min_cash_reserve} USD and the fee",
                        quantity,
                    )
                )
            equity = state.equity(marks)
            cap_value = equity * limits.max_position_fraction
            room = cap_value - held * reference
            max_by_cap = quantize_down(room / reference) if room > ZERO else ZERO
            if quantity > max_by_cap:
                quantity = max_by_cap
                notes.append(
                    _note(
                        index,
                        order,
                        "clipped_position_cap",
                        "clipped",
                        f"clipped so the {order.asset} position stays within "
                        f"{limits.max_position_fraction * 100:.4g} % of equity "
                        f"({quantize(cap_value)} USD)",
                        quantity,
                    )
                )
        else:
            if held <= ZERO:
                notes.append(
                    _note(
                        index,
                        order,
                        "no_position",
                        "refused",
                        f"cannot sell {order.asset}: no position (no shorting)",
                    )
                )
                continue
            if quantity > held:
                quantity = held
                notes.append(
                    _note(
                        index,
                        order,
                        "clipped_to_holdings",
                        "clipped",
                        f"clipped to the {held} {order.asset} held",
                        quantity,
                    )
                )
        whole_position = order.side is Side.SELL and quantity == held
        if quantity <= ZERO or (
            quantize(quantity * reference) < limits.min_order_notional and not whole_position
        ):
            notes.append(
                _note(
                    index,
                    order,
                    "below_min_after_clip",
                    "refused",
                    f"after clipping, the order ({quantity} {order.asset}) is below the "
                    f"minimum notional of {limits.min_order_notional} USD",
                    ZERO,
                )
            )
            continue
        state, fill = execute(state, order.asset, order.side, quantity, reference, costs)
        fills.append(fill)
    return RiskOutcome(portfolio=state, fills=tuple(fills), notes=tuple(notes))
