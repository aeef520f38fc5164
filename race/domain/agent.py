"""The protocol every decision maker implements, defined by the core (agents/ implement it).

An agent receives an :class:`AgentContext` — the cycle's shared market view, its own
portfolio and the limits — and answers with an :class:`AgentAnswer`. Answers are untrusted:
their ``orders`` go through :mod:`race.domain.parsing` and :mod:`race.domain.risk` in the
engine, the single place where orders are judged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from race.domain.lazy import cached
from race.domain.model import Costs, MarketView, Portfolio, Provider, RiskLimits


@dataclass(frozen=True)
class AgentSpec:
    """An agent as configured (a row of the agents table, without I/O)."""

    id: int
    name: str
    provider: Provider
    model: str | None = None
    strategy: str = ""
    instructions: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    problem: str | None = None
    """Why this configuration cannot run (e.g. an unknown provider): the agent HOLDs with
    it as the recorded fallback reason."""


@dataclass(frozen=True)
class AgentContext:
    agent: AgentSpec
    cycle_time: datetime
    market: MarketView
    portfolio: Portfolio
    limits: RiskLimits
    costs: Costs
    allowed_assets: Sequence[str]
    starting_capital: Decimal
    spent_today_usd: Decimal = Decimal(0)
    """What this agent's decisions earlier in T's UTC day cost (USD): for daily budgets."""

    @cached
    def equity(self) -> Decimal:
        """Total equity at T (latest closes), computed once per context."""
        return self.portfolio.equity(self.market.marks)


@dataclass
class AgentAnswer:
    """What an agent said. ``orders`` holds untrusted proposals: mappings with ``asset``,
    ``side`` and ``quantity`` (or :class:`~race.domain.model.Order` objects). An empty list
    is HOLD. ``fallback_reason`` set by the agent itself (budget exhausted, circuit open…)
    makes the decision a recorded fallback HOLD."""

    orders: list[Any] = field(default_factory=list)
    reasoning: str = ""
    cited_rules: list[str] = field(default_factory=list)
    raw_output: str | None = None
    prompt: str | None = None
    model: str | None = None
    latency_ms: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: Decimal | None = None
    regime: str | None = None
    confidence: float | None = None
    fallback_reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    model_version: str | None = None
    """The version of the stored model that decided (the ML agent's), recorded on the
    decision (``decisions.model_version``)."""

    @classmethod
    def hold(cls, reasoning: str, **kwargs: Any) -> AgentAnswer:
        return cls(orders=[], reasoning=reasoning, **kwargs)

    @classmethod
    def fallback(cls, reason: str, **kwargs: Any) -> AgentAnswer:
        return cls(
            orders=[], reasoning=f"HOLD (fallback): {reason}", fallback_reason=reason, **kwargs
        )


@runtime_checkable
class Agent(Protocol):
    async def decide(self, context: AgentContext) -> AgentAnswer: ...
