"""A recorded decision as an answer again: what a what-if replay asks instead of the agent.

A what-if race (issue 13) replays every agent's recorded answers under changed rules and
never calls a provider. :func:`answer_of` turns the stored record of one decision back into
the :class:`~race.domain.agent.AgentAnswer` the agent gave, so the same judge
(:func:`race.domain.step.judge`) reads and checks its orders under the new rules:

* a model's raw output is **parsed again** (:func:`race.domain.parsing.parse_model_output`,
  the parser the LLM agent used): the same orders, reasoning, cited rules and confidence;
* a decision without raw output (an ML model, a remote model, an ensemble) gives back the
  orders it proposed, as stored, and its rationale as the reasoning;
* a fallback stays the same fallback with the same reason (a timeout, a failure, a spent
  budget or an answer that could not be read do not depend on the rules);
* what the call cost and said about itself (prompt, model and version, latency, tokens,
  cost, details) is carried over, so under the source's own rules the replayed decision is
  the stored one, field for field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from race.domain.agent import AgentAnswer
from race.domain.parsing import AnswerRejected, parse_model_output

FALLBACK_PREFIX = "HOLD (fallback): "


@dataclass(frozen=True)
class RecordedAnswer:
    """What is stored of one decision that an answer can be rebuilt from."""

    cycle_time: datetime
    rationale: str
    cited_rules: list[str]
    regime: str
    market_regime: str | None
    """The regime of the market view (``market_conditions["regime"]``): a stored ``regime``
    that differs from it was the agent's own."""
    proposed_orders: list[Any]
    fallback: bool
    fallback_reason: str | None
    raw_output: str | None = None
    prompt: str | None = None
    model: str | None = None
    latency_ms: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: Decimal | None = None
    confidence: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    model_version: str | None = None
    validation_errors: list[Any] = field(default_factory=list)
    """The stored risk notes: which proposed orders were refused, and why."""


def _confidence(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if 0.0 <= number <= 1.0 else None


def answer_of(recorded: RecordedAnswer, *, parse_raw: bool = True) -> AgentAnswer:
    """The answer the recorded decision was made of (see the module doc). ``parse_raw``:
    the raw output is a language model's answer, to be parsed again; False for an agent
    whose raw output is its own protocol (a remote model's response body), whose proposed
    orders are then given back as stored."""
    accounting: dict[str, Any] = {
        "raw_output": recorded.raw_output,
        "prompt": recorded.prompt,
        "model": recorded.model,
        "latency_ms": recorded.latency_ms,
        "prompt_tokens": recorded.prompt_tokens,
        "completion_tokens": recorded.completion_tokens,
        "cost_usd": recorded.cost_usd,
        "details": dict(recorded.details),
        "model_version": recorded.model_version,
        "regime": None if recorded.regime == recorded.market_regime else recorded.regime,
    }
    said = _judged_fallback(recorded)
    if recorded.fallback and said is None:
        reason = recorded.fallback_reason or "fallback recorded without a reason"
        return AgentAnswer.fallback(reason, **accounting)
    if parse_raw and recorded.raw_output is not None:
        try:
            parsed = parse_model_output(recorded.raw_output)
        except AnswerRejected as exc:  # e.g. an output cut to the column's bound
            return AgentAnswer.fallback(str(exc), **accounting)
        confidence = recorded.confidence
        if confidence is None:
            confidence = _confidence(parsed.extra.get("confidence"))
        return AgentAnswer(
            orders=parsed.orders,
            reasoning=parsed.reasoning,
            cited_rules=list(recorded.cited_rules),
            confidence=confidence,
            **accounting,
        )
    return AgentAnswer(
        orders=[_order(o, i, recorded) for i, o in enumerate(recorded.proposed_orders)],
        reasoning=recorded.rationale if said is None else said,
        cited_rules=list(recorded.cited_rules),
        confidence=recorded.confidence,
        **accounting,
    )


def _order(order: Any, index: int, recorded: RecordedAnswer) -> Any:
    """A proposed order as the agent gave it. The record keeps a quantity that was not a
    plain number (an in-process agent's Decimal, an order object's) as its text: it is a
    Decimal again, unless the judge refused that order for being text (an outside model
    that answered a string), which must be refused again."""
    if not isinstance(order, dict):
        return order
    restored = dict(order)
    quantity = restored.get("quantity")
    if isinstance(quantity, str) and not _refused_as_text(index, recorded.validation_errors):
        try:
            number = Decimal(quantity)
        except ArithmeticError:
            return restored
        if number.is_finite():
            restored["quantity"] = number
    return restored


def _refused_as_text(index: int, notes: list[Any]) -> bool:
    return any(
        isinstance(note, dict)
        and note.get("order") == index
        and note.get("code") == "bad_quantity"
        and str(note.get("message", "")).startswith("quantity must be a number, got str")
        for note in notes
    )


def _judged_fallback(recorded: RecordedAnswer) -> str | None:
    """What the agent said with a fallback the judge decided (orders it could not read):
    the judge appends it to the rationale; None for any other decision. Such a decision is
    judged again from the agent's orders, not replayed as a fallback."""
    if not recorded.fallback:
        return None
    head = f"{FALLBACK_PREFIX}{recorded.fallback_reason} | agent said: "
    return recorded.rationale[len(head) :] if recorded.rationale.startswith(head) else None
