"""One agent's step in one cycle, as a pure function: answer → parse → risk rules → fills →
decision record → equity point. The engine persists what this returns; backfills and live
cycles share it, so both write the same rows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from race.domain.agent import AgentAnswer, AgentContext
from race.domain.lazy import assemble, cached
from race.domain.model import Action, Fill, MarketView, Portfolio, RiskNote
from race.domain.money import ZERO, quantize
from race.domain.parsing import parse_orders
from race.domain.regime import UNKNOWN, detect_regime
from race.domain.risk import apply_risk_rules
from race.domain.sanitize import truncate_text

MAX_TEXT = 8000
"""Longest rationale stored (characters); raw output and prompts have their own bounds."""
MAX_RAW = 64_000


@dataclass(frozen=True)
class EquityPoint:
    time: datetime
    total_value: Decimal
    cash_value: Decimal
    positions_value: Decimal
    unrealized_pnl: Decimal


@dataclass(frozen=True)
class DecisionRecord:
    """The audit record of one decision (docs/rules.md, "Decisions")."""

    cycle_time: datetime
    action: Action
    asset: str | None
    quantity: Decimal | None
    rationale: str
    cited_rules: list[str]
    regime: str
    market_conditions: dict[str, Any]
    value_before: Decimal
    value_after: Decimal
    was_validated: bool
    notes: list[RiskNote]
    proposed_orders: list[Any]
    fallback: bool
    fallback_reason: str | None
    raw_output: str | None
    prompt: str | None
    model: str | None
    latency_ms: int | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: Decimal | None
    confidence: float | None
    details: dict[str, Any]
    model_version: str | None = None


@dataclass(frozen=True)
class StepResult:
    decision: DecisionRecord
    fills: tuple[Fill, ...]
    portfolio: Portfolio
    equity: EquityPoint


class ViewSummary:
    """Per-view facts computed once per cycle and shared by every agent's record.

    ``returns``: the primary asset's per-candle returns over the view's window as
    :func:`race.domain.regime.detect_regime` takes them, when the caller already has them
    (a replay's candle tape computes each candle's return once)."""

    def __init__(
        self,
        view: MarketView,
        primary: str | None,
        returns: Sequence[float | None] | None = None,
    ) -> None:
        self.view = view
        self.primary = primary
        self.returns = returns

    @cached
    def regime(self) -> str:
        if self.primary is None:
            return UNKNOWN
        return detect_regime(self.view.closes(self.primary), returns=self.returns)

    @cached
    def conditions(self) -> dict[str, Any]:
        prices = {s: str(p) for s, p in sorted(self.view.marks.items())}
        change: dict[str, float | None] = {}
        for symbol, _series in sorted(self.view.candles.items()):
            closes = self.view.closes(symbol)
            change[symbol] = (
                round((closes[-1] / closes[-25] - 1.0) * 100, 4)
                if len(closes) >= 25 and closes[-25] > 0
                else None
            )
        return {
            "asOf": self.view.as_of.isoformat(),
            "prices": prices,
            "change24hPct": change,
            "regime": self.regime,
        }


def equity_point(time: datetime, portfolio: Portfolio, view: MarketView) -> EquityPoint:
    marks = view.marks
    positions_value = ZERO
    cost = ZERO
    for symbol, position in portfolio.positions.items():
        price = marks.get(symbol)
        positions_value += position.cost_basis if price is None else position.quantity * price
        cost += position.cost_basis
    positions_value = quantize(positions_value)
    cash = quantize(portfolio.cash)
    return EquityPoint(
        time=time,
        total_value=cash + positions_value,
        cash_value=cash,
        positions_value=positions_value,
        unrealized_pnl=quantize(positions_value - cost),
    )


def _proposed(orders: Sequence[Any]) -> list[Any]:
    shown: list[Any] = []
    for item in list(orders)[:50]:
        if isinstance(item, dict):
            shown.append(
                {
                    str(k)[:40]: (v if isinstance(v, int | float | bool | None) else str(v)[:64])
                    for k, v in list(item.items())[:10]
                }
            )
        elif hasattr(item, "asset") and hasattr(item, "side"):
            shown.append(
                {"asset": item.asset, "side": str(item.side), "quantity": str(item.quantity)}
            )
        else:
            shown.append(repr(item)[:64])
    return shown


def _well_formed(answer: Any) -> tuple[AgentAnswer, str | None]:
    """The answer with every field of the type :class:`AgentAnswer` declares, or an empty
    answer and the reason it was refused: an agent implementation (a plugin, a remote
    adapter) that builds a malformed answer becomes a recorded fallback, never an
    exception in the cycle."""
    if answer is None:
        return AgentAnswer(), None
    if not isinstance(answer, AgentAnswer):
        return AgentAnswer(), f"agent answer malformed: {type(answer).__name__}, not an answer"
    if (
        # The common shape (every baseline's, most adapters'): nothing below can object.
        type(answer.orders) is list
        and type(answer.reasoning) is str
        and type(answer.cited_rules) is list
        and type(answer.details) is dict
        and answer.raw_output is None
        and answer.prompt is None
        and (answer.model is None or type(answer.model) is str)
        and answer.regime is None
        and answer.fallback_reason is None
        and answer.latency_ms is None
        and answer.prompt_tokens is None
        and answer.completion_tokens is None
        and answer.cost_usd is None
        and answer.confidence is None
    ):
        return answer, None
    problems = []
    if not isinstance(answer.orders, list | tuple):
        problems.append(f"orders is {type(answer.orders).__name__}, not a list")
    if not isinstance(answer.reasoning, str):
        problems.append(f"reasoning is {type(answer.reasoning).__name__}, not text")
    if not isinstance(answer.cited_rules, list | tuple):
        problems.append(f"cited_rules is {type(answer.cited_rules).__name__}, not a list")
    for name in ("raw_output", "prompt", "model", "regime", "fallback_reason"):
        value = getattr(answer, name)
        if value is not None and not isinstance(value, str):
            problems.append(f"{name} is {type(value).__name__}, not text")
    for name in ("latency_ms", "prompt_tokens", "completion_tokens"):
        value = getattr(answer, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            problems.append(f"{name} is {type(value).__name__}, not an integer")
    if answer.cost_usd is not None and not (
        isinstance(answer.cost_usd, Decimal) and answer.cost_usd.is_finite()
    ):
        problems.append("cost_usd is not a finite Decimal")
    if answer.confidence is not None and (
        not isinstance(answer.confidence, int | float)
        or isinstance(answer.confidence, bool)
        or not math.isfinite(answer.confidence)
    ):
        problems.append("confidence is not a finite number")
    if not isinstance(answer.details, dict):
        problems.append(f"details is {type(answer.details).__name__}, not a mapping")
    if not problems:
        return answer, None
    return AgentAnswer(), "agent answer malformed: " + "; ".join(problems)


def judge(
    context: AgentContext,
    answer: AgentAnswer | None,
    *,
    failure: str | None = None,
    summary: ViewSummary | None = None,
) -> StepResult:
    """Turn an agent's answer (or its failure) into the step to persist. Never raises for
    anything an agent can say."""
    view = context.market
    summary = summary or ViewSummary(
        view, context.allowed_assets[0] if context.allowed_assets else None
    )
    answer, malformed = _well_formed(answer)
    fallback_reason = failure or malformed or answer.fallback_reason
    notes: list[RiskNote] = []
    fills: tuple[Fill, ...] = ()
    portfolio = context.portfolio
    if fallback_reason is None and answer.orders:
        fills, portfolio, fallback_reason = _execute(context, answer.orders, notes)
    equity = equity_point(context.cycle_time, portfolio, view)
    decision = _record(context, answer, summary, fallback_reason, notes, fills, equity)
    return StepResult(decision=decision, fills=fills, portfolio=portfolio, equity=equity)


def _record(
    context: AgentContext,
    answer: AgentAnswer,
    summary: ViewSummary,
    fallback_reason: str | None,
    notes: list[RiskNote],
    fills: tuple[Fill, ...],
    equity: EquityPoint,
) -> DecisionRecord:
    """The decision's audit record: its first fill's action (else HOLD), bounded text, the
    regime and market of ``summary``, the equity before (``context``) and after."""
    if fills:
        first = fills[0]
        action, asset, quantity = Action(first.side.value), first.asset, first.quantity
    else:
        action, asset, quantity = Action.HOLD, None, None
    rationale = _rationale(answer, fallback_reason, action, asset)
    return assemble(
        DecisionRecord,
        dict(
            cycle_time=context.cycle_time,
            action=action,
            asset=asset,
            quantity=quantity,
            rationale=truncate_text(rationale, MAX_TEXT),
            cited_rules=[str(r)[:64] for r in answer.cited_rules][:20]
            if answer.cited_rules
            else [],
            regime=(answer.regime or summary.regime)[:32],
            market_conditions=summary.conditions,
            value_before=context.equity,
            value_after=equity.total_value,
            was_validated=fallback_reason is None and not notes,
            notes=notes,
            proposed_orders=_proposed(answer.orders) if answer.orders else [],
            fallback=fallback_reason is not None,
            fallback_reason=None if fallback_reason is None else fallback_reason[:1000],
            raw_output=None
            if answer.raw_output is None
            else truncate_text(answer.raw_output, MAX_RAW),
            prompt=None if answer.prompt is None else truncate_text(answer.prompt, MAX_RAW),
            model=answer.model,
            latency_ms=answer.latency_ms,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            cost_usd=None if answer.cost_usd is None else quantize(answer.cost_usd),
            confidence=answer.confidence,
            details=answer.details,
            model_version=_model_version(answer.model_version),
        ),
    )


def _execute(
    context: AgentContext, orders: Any, notes: list[RiskNote]
) -> tuple[tuple[Fill, ...], Portfolio, str | None]:
    """Read and apply an answer's orders: the fills, the portfolio after them and the
    fallback reason if the orders could not be read; appends the risk notes to ``notes``."""
    view = context.market
    fills: tuple[Fill, ...] = ()
    portfolio = context.portfolio
    fallback_reason: str | None = None
    try:
        parsed, dropped = parse_orders(orders, context.allowed_assets, context.limits)
    except Exception as exc:
        parsed, dropped = [], []
        fallback_reason = f"orders could not be read: {exc.__class__.__name__}"
    notes.extend(dropped)
    if parsed:
        outcome = apply_risk_rules(
            [order for _, order in parsed],
            context.portfolio,
            view.prices,
            view.marks,
            context.limits,
            context.costs,
            context.allowed_assets,
            indices=[index for index, _ in parsed],
        )
        notes.extend(outcome.notes)
        fills = outcome.fills
        portfolio = outcome.portfolio
    return fills, portfolio, fallback_reason


def _rationale(
    answer: AgentAnswer, fallback_reason: str | None, action: Action, asset: str | None
) -> str:
    """The decision's rationale before truncation: the fallback reason (with what the agent
    said, if anything new) or the agent's reasoning, else a default naming the action."""
    if fallback_reason is not None:
        rationale = f"HOLD (fallback): {fallback_reason}"
        if answer.reasoning and answer.fallback_reason is None and answer.reasoning != rationale:
            rationale += f" | agent said: {answer.reasoning}"
    else:
        rationale = answer.reasoning.strip() or (
            "HOLD: no orders" if action is Action.HOLD else f"{action.value} {asset}"
        )
    return rationale


def _model_version(value: object) -> str | None:
    """An answer's model version as stored (a string of at most 100 characters, no NUL)."""
    if value is None:
        return None
    return str(value).replace("\x00", "")[:100] or None
