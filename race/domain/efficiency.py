"""What an agent's result cost in language-model spend (formulas: docs/analytics.md).

* P&L per USD = (final equity − starting capital) / LLM spend in USD.
* Return per USD = total return in % / LLM spend in USD (percentage points per USD).
* P&L and return per million tokens: the same over (prompt + completion tokens) / 10⁶.

``None`` when nothing was spent (no spend, or no token counted): an agent that calls no
model (a baseline, the ML agent) has no cost efficiency, not an infinite one.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from race.domain.money import HUNDRED, ZERO, quantize

MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Efficiency:
    spend_usd: Decimal
    tokens: int
    pnl_per_usd: Decimal | None
    """Rounded to the money scale (8 places), like every Decimal of the domain."""
    return_pct_per_usd: float | None
    pnl_per_million_tokens: Decimal | None
    return_pct_per_million_tokens: float | None


def efficiency(
    starting_capital: Decimal,
    final_equity: Decimal,
    spend_usd: Decimal | None,
    prompt_tokens: int | None,
    completion_tokens: int | None,
) -> Efficiency:
    """Return and P&L per USD of LLM spend and per million tokens."""
    spend = spend_usd if spend_usd is not None and spend_usd > ZERO else ZERO
    tokens = max(prompt_tokens or 0, 0) + max(completion_tokens or 0, 0)
    pnl = final_equity - starting_capital
    pct = pnl / starting_capital * HUNDRED if starting_capital > ZERO else None
    millions = Decimal(tokens) / MILLION
    return Efficiency(
        spend_usd=spend,
        tokens=tokens,
        pnl_per_usd=quantize(pnl / spend) if spend > ZERO else None,
        return_pct_per_usd=float(pct / spend) if spend > ZERO and pct is not None else None,
        pnl_per_million_tokens=quantize(pnl / millions) if tokens > 0 else None,
        return_pct_per_million_tokens=(
            float(pct / millions) if tokens > 0 and pct is not None else None
        ),
    )
