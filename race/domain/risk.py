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


@dataclass(frozen=True)
class _Rules:
    """What every order of one call is checked against."""

    prices: Mapping[str, Decimal]
    marks: Mapping[str, Decimal]
    limits: RiskLimits
    costs: Costs
    allowed: set[str]


def _refusal(
    offset: int, index: int, order: Order, state: Portfolio, rules: _Rules
) -> RiskNote | None:
    """The first rule refusing ``order`` before any clipping, in the documented order."""
    limits = rules.limits
    if offset >= limits.max_orders_per_cycle:
        return _note(
            index,
            order,
            "max_orders_per_cycle",
            "refused",
            f"only {limits.max_orders_per_cycle} orders are allowed per cycle",
        )
    if order.asset not in rules.allowed:
        return _note(
            index,
            order,
            "unknown_asset",
            "refused",
            f"asset {order.asset!r} is not traded in this race "
            f"(allowed: {', '.join(sorted(rules.allowed))})",
        )
    if order.quantity <= ZERO:
        return _note(
            index,
            order,
            "non_positive_quantity",
            "refused",
            f"quantity must be > 0, got {order.quantity}",
        )
    reference = rules.prices.get(order.asset)
    if reference is None:
        return _note(
            index,
            order,
            "no_price",
            "refused",
            f"no recent price for {order.asset} at the decision time",
        )
    held = state.quantity(order.asset)
    closes_position = order.side is Side.SELL and held > ZERO and order.quantity >= held
    if quantize(order.quantity * reference) < limits.min_order_notional and not closes_position:
        return _note(
            index,
            order,
            "below_min_notional",
            "refused",
            f"order notional {quantize(order.quantity * reference)} USD is below the "
            f"minimum {limits.min_order_notional} USD",
        )
    return None


def _clip_buy(
    index: int,
    order: Order,
    quantity: Decimal,
    reference: Decimal,
    state: Portfolio,
    rules: _Rules,
    notes: list[RiskNote],
) -> Decimal:
    """A BUY's quantity clipped to the maximum order notional, the cash less the reserve and
    the fee, then the position cap; each clip is noted."""
    limits, costs = rules.limits, rules.costs
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
    return _clip_to_cap(index, order, quantity, reference, state, rules, notes)


def _clip_to_cap(
    index: int,
    order: Order,
    quantity: Decimal,
    reference: Decimal,
    state: Portfolio,
    rules: _Rules,
    notes: list[RiskNote],
) -> Decimal:
    """A BUY's quantity clipped so the position stays within the cap (noted if clipped)."""
    limits = rules.limits
    held = state.quantity(order.asset)
    equity = state.equity(rules.marks)
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
    return quantity


def _clip_sell(
    index: int, order: Order, quantity: Decimal, held: Decimal, notes: list[RiskNote]
) -> Decimal | None:
    """A SELL's quantity clipped to the holdings (noted), or None (refusal noted) when
    nothing is held."""
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
        return None
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
    return quantity


def _below_min_after_clip(
    index: int,
    order: Order,
    quantity: Decimal,
    reference: Decimal,
    held: Decimal,
    limits: RiskLimits,
) -> RiskNote | None:
    """The refusal of an order whose clipped quantity is zero or below the minimum notional
    (a SELL of the whole position is allowed below it)."""
    whole_position = order.side is Side.SELL and quantity == held
    if quantity <= ZERO or (
        quantize(quantity * reference) < limits.min_order_notional and not whole_position
    ):
        return _note(
            index,
            order,
            "below_min_after_clip",
            "refused",
            f"after clipping, the order ({quantity} {order.asset}) is below the "
            f"minimum notional of {limits.min_order_notional} USD",
            ZERO,
        )
    return None


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
    # A price that is NaN, infinite or not positive is no price at all: an order in that
    # asset is refused ("no_price") and the mark is left out of the valuation.
    rules = _Rules(
        prices={a: p for a, p in prices.items() if _usable(p)},
        marks={a: p for a, p in marks.items() if _usable(p)},
        limits=limits,
        costs=costs,
        allowed=set(allowed_assets),
    )
    for offset, order in enumerate(orders):
        index = indices[offset] if indices is not None else offset
        refusal = _refusal(offset, index, order, state, rules)
        if refusal is not None:
            notes.append(refusal)
            continue
        reference = rules.prices[order.asset]
        held = state.quantity(order.asset)
        requested = quantize_down(order.quantity)
        if order.side is Side.BUY:
            quantity = _clip_buy(index, order, requested, reference, state, rules, notes)
        else:
            clipped = _clip_sell(index, order, requested, held, notes)
            if clipped is None:
                continue
            quantity = clipped
        too_small = _below_min_after_clip(index, order, quantity, reference, held, limits)
        if too_small is not None:
            notes.append(too_small)
            continue
        state, fill = execute(state, order.asset, order.side, quantity, reference, costs)
        fills.append(fill)
    return RiskOutcome(portfolio=state, fills=tuple(fills), notes=tuple(notes))
