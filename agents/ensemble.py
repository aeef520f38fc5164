"""An agent made of agents (provider ``CustomML``, model ``ensemble``).

The configured members decide in parallel on the same context; their votes are combined
into one decision. Per asset each answering member votes +1 (BUY), −1 (SELL) or 0 (HOLD),
weighted by its ``weight`` and its own confidence (1 when it gives none)::

    score(asset) = Σ weight · confidence · vote / Σ weight      (answering members only)

An asset is traded when ``|score| ≥ threshold``, on the side of the sign, with the
weighted mean quantity of the members voting that side; the ensemble's confidence is the
largest ``|score|``. Members that fail (HOLD fallback, exception, timeout) abstain; when
all fail the ensemble HOLDs with their reasons. Each member's vote is kept in ``details``.

Params::

    {"threshold": 0.5,
     "members": [
        {"name": "llama", "provider": "Llama", "model": "llama-3.3-70b-versatile",
         "weight": 2, "params": {}, "instructions": "…"},
        {"name": "ml", "provider": "CustomML", "model": "direction-gb"},
        {"name": "sma", "provider": "Mock", "model": "sma_cross", "params": {"fast": 10}}]}
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from agents.asking import Wording, ask_within
from agents.config import AgentConfigError, number, reject_unknown
from agents.services import AgentServices
from race.domain.agent import Agent, AgentAnswer, AgentContext, AgentSpec
from race.domain.model import Provider, RiskLimits, Side
from race.domain.money import ZERO, quantize_down
from race.domain.parsing import parse_orders

MODEL = "ensemble"
"""The model name that makes a ``CustomML`` agent an ensemble."""
PARAMS = ("members", "threshold")
MEMBER_KEYS = ("name", "provider", "model", "params", "weight", "instructions")
MAX_MEMBERS = 10
TIME_MARGIN = 1.0
MEMBER_WORDING = Wording(
    timed_out="timed out after {timeout:g} s",
    late="timed out after {timeout:g} s (answered after {elapsed:.2f} s)",
    failed="{kind}: {message}",
    not_an_answer="did not answer an AgentAnswer",
    reason_limit=300,
)
"""How a member's abstention reads in the ensemble's votes (members are never discarded as
late: the engine judges the ensemble's answer as a whole)."""


@dataclass(frozen=True)
class Member:
    name: str
    weight: float
    spec: AgentSpec
    agent: Agent


@dataclass
class Vote:
    """One member's answer (or failure) as the ensemble reads it."""

    name: str
    weight: float
    answer: AgentAnswer | None
    failure: str | None = None
    sides: dict[str, tuple[Side, Decimal]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)

    @property
    def confidence(self) -> float:
        value = self.answer.confidence if self.answer is not None else None
        if value is None:
            return 1.0
        return min(1.0, max(0.0, float(value)))

    @property
    def abstained(self) -> bool:
        return self.failure is not None


def _provider(value: object, position: int) -> Provider:
    if isinstance(value, str):
        for provider in Provider:
            if provider.value.lower() == value.strip().lower():
                return provider
    raise AgentConfigError(
        f"ensemble member {position}: provider must be one of "
        f"{', '.join(p.value for p in Provider)}, got {value!r}"
    )


def _member(
    spec: AgentSpec,
    position: int,
    item: object,
    names: set[str],
    services: AgentServices,
    build: Callable[[AgentSpec, AgentServices], Agent],
) -> Member:
    """Member ``position`` of ``spec``'s ensemble, read from its param object and built
    (``names`` holds the names taken so far; this member's is added)."""
    if not isinstance(item, Mapping):
        raise AgentConfigError(f"ensemble member {position} must be an object")
    reject_unknown(item, MEMBER_KEYS, what=f"ensemble member {position}")
    provider = _provider(item.get("provider"), position)
    model = item.get("model")
    if model is not None and not isinstance(model, str):
        raise AgentConfigError(f"ensemble member {position}: model must be a string")
    if provider is Provider.CUSTOM_ML and (model or "").strip().lower() == MODEL:
        raise AgentConfigError("ensembles cannot be nested")
    member_params = item.get("params", {})
    if not isinstance(member_params, Mapping):
        raise AgentConfigError(f"ensemble member {position}: params must be an object")
    name = item.get("name") or f"{provider.value}:{model or 'default'}"
    if not isinstance(name, str) or name in names:
        raise AgentConfigError(
            f"ensemble member {position}: name must be a unique string, got {name!r}"
        )
    names.add(name)
    weight = number(item, "weight", 1.0, 0.0, 1000.0)
    if weight <= 0:
        raise AgentConfigError(f"ensemble member {name!r}: weight must be > 0")
    instructions = item.get("instructions", spec.instructions)
    if not isinstance(instructions, str):
        raise AgentConfigError(f"ensemble member {name!r}: instructions must be text")
    member_spec = AgentSpec(
        id=spec.id,
        name=f"{spec.name} / {name}",
        provider=provider,
        model=model,
        strategy=spec.strategy,
        instructions=instructions,
        params=dict(member_params),
    )
    try:
        agent = build(member_spec, services)
    except (AgentConfigError, ValueError) as exc:
        raise AgentConfigError(f"ensemble member {name!r}: {exc}") from None
    return Member(name, weight, member_spec, agent)


def read_votes(votes: Sequence[Vote], allowed_assets: Sequence[str], limits: RiskLimits) -> None:
    """Fill each vote's per-asset side and quantity from its orders (read by the core's
    parser, like any answer; what it drops is noted on the vote)."""
    for vote in votes:
        if vote.answer is None or vote.failure is not None:
            continue
        parsed, notes = parse_orders(vote.answer.orders, allowed_assets, limits)
        vote.dropped = [f"order {n.order_index}: {n.message}" for n in notes]
        for _, order in parsed:
            known = vote.sides.get(order.asset)
            if known is None:
                vote.sides[order.asset] = (order.side, order.quantity)
            elif known[0] is order.side:
                vote.sides[order.asset] = (known[0], known[1] + order.quantity)
            # a contradicting later order for the same asset is ignored: first one counts


def combine_votes(
    votes: Sequence[Vote], allowed_assets: Sequence[str], threshold: float
) -> tuple[list[dict[str, Any]], dict[str, float], float]:
    """Orders, score per asset and the ensemble confidence (see the module docstring)."""
    voting = [v for v in votes if not v.abstained]
    total_weight = sum(v.weight for v in voting)
    orders: list[dict[str, Any]] = []
    scores: dict[str, float] = {}
    if total_weight <= 0:
        return orders, scores, 0.0
    for asset in allowed_assets:
        score = 0.0
        for vote in voting:
            side = vote.sides.get(asset)
            if side is not None:
                direction = 1.0 if side[0] is Side.BUY else -1.0
                score += vote.weight * vote.confidence * direction
        score = round(score / total_weight, 6)
        scores[asset] = score
        if abs(score) < threshold or score == 0.0:
            continue
        wanted = Side.BUY if score > 0 else Side.SELL
        backers = [
            (v, v.sides[asset][1]) for v in voting if v.sides.get(asset, (None,))[0] is wanted
        ]
        strength = sum(v.weight * v.confidence for v, _ in backers)
        if strength <= 0:
            continue
        quantity = sum(
            (Decimal(str(v.weight * v.confidence)) * q for v, q in backers), ZERO
        ) / Decimal(str(strength))
        quantity = quantize_down(quantity)
        if quantity > ZERO:
            orders.append({"asset": asset, "side": wanted.value, "quantity": quantity})
    confidence = max((abs(s) for s in scores.values()), default=0.0)
    return orders, scores, confidence


class EnsembleAgent:
    def __init__(
        self,
        spec: AgentSpec,
        services: AgentServices,
        build: Callable[[AgentSpec, AgentServices], Agent],
    ) -> None:
        params = dict(spec.params)
        reject_unknown(params, PARAMS, what="ensemble agents")
        self.spec = spec
        self.clock = services.clock
        self.timeout = max(0.5, services.settings.agent_timeout_seconds - TIME_MARGIN)
        self.threshold = number(params, "threshold", 0.5, 0.0, 1.0)
        raw = params.get("members")
        if not isinstance(raw, list) or not raw:
            raise AgentConfigError(
                "param 'members' must be a non-empty list of member agents "
                '({"provider": …, "model": …, "params": {…}, "weight": 1})'
            )
        if len(raw) > MAX_MEMBERS:
            raise AgentConfigError(f"an ensemble has at most {MAX_MEMBERS} members")
        self.members: list[Member] = []
        names: set[str] = set()
        for position, item in enumerate(raw):
            self.members.append(_member(spec, position, item, names, services, build))
        self.in_process = all(getattr(m.agent, "in_process", False) for m in self.members)

    async def _ask(self, member: Member, context: AgentContext) -> Vote:
        asked = await ask_within(
            member.agent,
            replace(context, agent=member.spec),
            seconds=self.timeout,
            clock=self.clock,
            wording=MEMBER_WORDING,
            discard_late=False,
            fill_latency=False,
        )
        if asked.answer is None:
            return Vote(member.name, member.weight, None, asked.failure)
        return Vote(member.name, member.weight, asked.answer, asked.answer.fallback_reason)

    async def decide(self, context: AgentContext) -> AgentAnswer:
        started = self.clock.monotonic()
        votes = list(await asyncio.gather(*(self._ask(m, context) for m in self.members)))
        read_votes(votes, context.allowed_assets, context.limits)
        orders, scores, confidence = combine_votes(votes, context.allowed_assets, self.threshold)
        answers = [v.answer for v in votes if v.answer is not None]
        costs = [a.cost_usd for a in answers if a.cost_usd is not None]
        prompt_tokens = [a.prompt_tokens for a in answers if a.prompt_tokens is not None]
        completion_tokens = [
            a.completion_tokens for a in answers if a.completion_tokens is not None
        ]
        summary = [
            self._summary(member, vote) for member, vote in zip(self.members, votes, strict=True)
        ]
        prompts = [
            f"=== member {v.name} ===\n{v.answer.prompt}"
            for v in votes
            if v.answer is not None and v.answer.prompt
        ]
        accounting: dict[str, Any] = {
            "model": MODEL,
            "raw_output": json.dumps(summary, default=str, separators=(",", ":")),
            "prompt": "\n\n".join(prompts) or None,
            "latency_ms": int((self.clock.monotonic() - started) * 1000),
            "prompt_tokens": sum(prompt_tokens) if prompt_tokens else None,
            "completion_tokens": sum(completion_tokens) if completion_tokens else None,
            "cost_usd": sum(costs, ZERO) if costs else None,
            "details": {
                "ensemble": {"threshold": self.threshold, "scores": scores, "members": summary}
            },
        }
        if all(v.abstained for v in votes):
            reasons = "; ".join(f"{v.name}: {v.failure}" for v in votes)
            return AgentAnswer.fallback(f"every ensemble member failed — {reasons}", **accounting)
        parts = []
        for asset, score in scores.items():
            order = next((o for o in orders if o["asset"] == asset), None)
            action = f"{order['side']} {order['quantity']}" if order else "HOLD"
            parts.append(f"{asset} score {score:+.2f} → {action}")
        votes_text = ", ".join(
            f"{v.name}: {'abstained' if v.abstained else _vote_text(v)}" for v in votes
        )
        return AgentAnswer(
            orders=orders,
            reasoning=(
                f"Ensemble of {len(votes)} (threshold {self.threshold:g}): "
                f"{'; '.join(parts)}. Votes — {votes_text}."
            ),
            confidence=round(confidence, 6),
            **accounting,
        )

    @staticmethod
    def _summary(member: Member, vote: Vote) -> dict[str, Any]:
        answer = vote.answer
        return {
            "name": vote.name,
            "provider": member.spec.provider.value,
            "model": answer.model if answer is not None and answer.model else member.spec.model,
            "weight": vote.weight,
            "confidence": None if vote.abstained else vote.confidence,
            "votes": {
                asset: {"side": side.value, "quantity": str(quantity)}
                for asset, (side, quantity) in vote.sides.items()
            },
            "abstained": vote.abstained,
            "failure": vote.failure,
            "dropped": vote.dropped,
            "reasoning": None if answer is None else answer.reasoning[:500],
            "costUsd": None if answer is None or answer.cost_usd is None else str(answer.cost_usd),
            "latencyMs": None if answer is None else answer.latency_ms,
        }


def _vote_text(vote: Vote) -> str:
    if not vote.sides:
        return "HOLD"
    return " ".join(f"{side.value} {asset}" for asset, (side, _) in vote.sides.items())
