"""What a run of steps adds to an agent's leaderboard counters: a pure fold, so the rule
for what counts as a winning or a losing trade lives here, not in the store."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from race.domain.model import Fill
from race.domain.money import ZERO
from race.domain.step import StepResult


def is_win(fill: Fill) -> bool | None:
    """A closing fill with a positive realised P&L wins, one at zero or below loses; a fill
    that realises nothing (a BUY) is neither (None)."""
    if fill.realized_pnl is None:
        return None
    return fill.realized_pnl > 0


@dataclass(frozen=True)
class StepTotals:
    """Counters added by some steps (every field 0 when there are none)."""

    decisions: int = 0
    fallbacks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: Decimal = ZERO
    trades: int = 0
    winning_trades: int = 0
    losing_trades: int = 0
    fees_paid: Decimal = ZERO
    fallback_flags: str = ""
    """One character per step, oldest first: ``1`` for a fallback HOLD, else ``0``."""


def fold_steps(steps: Iterable[StepResult]) -> StepTotals:
    decisions = fallbacks = prompt_tokens = completion_tokens = 0
    trades = winning = losing = 0
    fees = cost = ZERO
    flags: list[str] = []
    for step in steps:
        decision = step.decision
        decisions += 1
        fallbacks += decision.fallback
        flags.append("1" if decision.fallback else "0")
        prompt_tokens += decision.prompt_tokens or 0
        completion_tokens += decision.completion_tokens or 0
        if decision.cost_usd:
            cost += decision.cost_usd
        for fill in step.fills:
            trades += 1
            fees += fill.fee
            won = is_win(fill)
            if won is True:
                winning += 1
            elif won is False:
                losing += 1
    return StepTotals(
        decisions=decisions,
        fallbacks=fallbacks,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost_usd=cost,
        trades=trades,
        winning_trades=winning,
        losing_trades=losing,
        fees_paid=fees,
        fallback_flags="".join(flags),
    )
