"""What each side of ``bench/vs_backtrader.py`` made (trades, final equity, time) and the
first difference between two of them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from race.domain.money import quantize


@dataclass(frozen=True)
class Trade:
    time: datetime
    side: str
    quantity: Decimal
    price: Decimal


@dataclass(frozen=True)
class Costs:
    starting_capital: Decimal
    fee_rate: Decimal
    slippage_bps: Decimal
    max_order_notional: Decimal


@dataclass(frozen=True)
class Outcome:
    bars: int
    seconds: float
    trades: list[Trade]
    final_equity: Decimal


def first_difference(
    race: Outcome, other: Outcome, qty_tol: Decimal, price_tol: Decimal, equity_tol: Decimal
) -> str | None:
    for i, (a, b) in enumerate(zip(race.trades, other.trades, strict=False)):
        where = f"trade {i + 1}: race {a.side} {a.quantity} at {a.time.isoformat()}"
        if a.time != b.time or a.side != b.side:
            return f"{where}, backtrader {b.side} {b.quantity} at {b.time.isoformat()}"
        if abs(a.quantity - b.quantity) > qty_tol:
            return f"{where}, backtrader quantity {b.quantity} (tolerance {qty_tol})"
        if abs(a.price - b.price) > price_tol * a.price:
            return f"{where}: price {a.price}, backtrader {b.price}"
    if len(race.trades) != len(other.trades):
        shorter, longer = sorted((race.trades, other.trades), key=len)
        who = "race" if longer is race.trades else "backtrader"
        extra = longer[len(shorter)]
        return (
            f"{who} made {len(longer)} trades, the other {len(shorter)}; the first extra: "
            f"{extra.side} {extra.quantity} at {extra.time.isoformat()}"
        )
    if abs(race.final_equity - other.final_equity) > equity_tol:
        return (
            f"final equity: race {race.final_equity}, backtrader "
            f"{quantize(other.final_equity)} (tolerance {equity_tol} USD)"
        )
    return None
