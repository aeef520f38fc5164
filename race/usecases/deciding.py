"""Deciding: the one pipeline from an agent to the step to store — build the agent (cached),
ask it with a timeout, redact the answer, judge it (:func:`race.domain.step.judge`) and scrub
the record. The live cycle and the backfill both decide through :meth:`Deciding.decide`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from agents.asking import ask_within
from race.clock import Clock
from race.domain.agent import Agent, AgentAnswer, AgentContext, AgentSpec
from race.domain.lazy import assemble
from race.domain.model import Portfolio
from race.domain.money import ZERO
from race.domain.sanitize import sanitize_decision
from race.domain.step import StepResult, ViewSummary, judge
from race.settings import Settings
from race.settings_files import read_sources
from race.store import repository as repo
from race.telemetry import Telemetry

AgentBuilder = Callable[[AgentSpec], Agent]


class Deciding:
    """The agents (built once per spec) and the secrets policy their answers are
    redacted with (an agent's own key joins it when the agent is built)."""

    def __init__(self, settings: Settings, build_agent: AgentBuilder, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.policy = settings.secret_policy()
        # Settings are frozen: the limits and costs every context carries are built once.
        self.limits = settings.limits
        self.costs = settings.costs
        self._timeout = settings.agent_timeout_seconds
        self._build_agent = build_agent
        self._agents: dict[int, tuple[AgentSpec, Agent | str]] = {}

    def _learn_agent_key(self, spec: AgentSpec) -> None:
        """An agent's own key (named by its ``api_key_setting`` param) joins the policy."""
        name = spec.params.get("api_key_setting") if isinstance(spec.params, dict) else None
        if isinstance(name, str) and name not in self.policy.secrets:
            value = os.environ.get(name)
            if not value:  # set in .env or local.settings.json (race.settings_files)
                try:
                    value = read_sources().file_values().get(name)
                except ValueError:  # a malformed file: the CLI and serve already said so
                    value = None
            if value:
                self.policy = self.policy.with_secrets({name: value})

    def agent_for(self, spec: AgentSpec) -> Agent | str:
        """The built agent, or why it could not be built (cached per spec)."""
        cached = self._agents.get(spec.id)
        if cached is not None and (cached[0] is spec or cached[0] == spec):
            return cached[1]
        self._learn_agent_key(spec)
        built: Agent | str
        try:
            if spec.problem is not None:
                raise ValueError(spec.problem)
            built = self._build_agent(spec)
        except Exception as exc:
            built = f"agent cannot be built: {self.policy.redact(str(exc))}"
        self._agents[spec.id] = (spec, built)
        return built

    async def ask(
        self, agent: Agent | str, context: AgentContext
    ) -> tuple[AgentAnswer | None, str | None]:
        """The agent's answer, or why there is none (a timeout, a failure, a wrong type):
        :func:`agents.asking.ask_within` on the injected clock, the one ask-with-timeout
        (the ensemble asks its members through it too)."""
        if isinstance(agent, str):
            return None, agent
        asked = await ask_within(
            agent,
            context,
            seconds=self._timeout,
            clock=self.clock,
            scrub=self.policy.redact,
        )
        return asked.pair

    def context(
        self,
        spec: AgentSpec,
        state: repo.PortfolioState,
        view: Any,
        cycle_time: datetime,
        symbols: Sequence[str],
        spent_today: Decimal = ZERO,
    ) -> AgentContext:
        """What the agent sees at ``cycle_time``."""
        return self.context_of(
            spec, state.portfolio, state.starting_capital, view, cycle_time, symbols, spent_today
        )

    def context_of(
        self,
        spec: AgentSpec,
        portfolio: Portfolio,
        starting_capital: Decimal,
        view: Any,
        cycle_time: datetime,
        symbols: Sequence[str],
        spent_today: Decimal = ZERO,
    ) -> AgentContext:
        """:meth:`context` for a portfolio held in memory (a replay's latest step)."""
        return assemble(  # the hot path of a replay: AgentContext(...) without its setattrs
            AgentContext,
            {
                "agent": spec,
                "cycle_time": cycle_time,
                "market": view,
                "portfolio": portfolio,
                "limits": self.limits,
                "costs": self.costs,
                "allowed_assets": tuple(symbols),
                "starting_capital": starting_capital,
                "spent_today_usd": spent_today,
            },
        )

    async def decide(
        self,
        spec: AgentSpec,
        context: AgentContext,
        summary: ViewSummary,
        semaphore: asyncio.Semaphore | None = None,
        agent: Agent | str | None = None,
    ) -> StepResult:
        """Ask the agent (``agent``, or the one built for ``spec``; bounded by ``semaphore``
        when given) and judge its answer: the step to store."""
        chosen = self._chosen(spec, agent)
        if semaphore is None:
            answer, failure = await self.ask(chosen, context)
        else:
            async with semaphore:
                answer, failure = await self.ask(chosen, context)
        clean = failure is None and getattr(chosen, "answers_clean", False) is True
        return self.step(context, answer, failure, summary, clean=clean)

    def _chosen(self, spec: AgentSpec, agent: Agent | str | None) -> Agent | str:
        return self.agent_for(spec) if agent is None else agent

    def step(
        self,
        context: AgentContext,
        answer: AgentAnswer | None,
        failure: str | None,
        summary: ViewSummary,
        *,
        clean: bool = False,
    ) -> StepResult:
        """The step to store for an agent's answer: secrets redacted from the answer before
        it is judged (so no bound cuts a key to a prefix), the record sanitised after.

        ``clean``: the answer came from an agent whose answers are clean by construction
        (``answers_clean``: the baselines, whose text is built from validated symbols and
        numbers), so its record passes the sanitiser unchanged and skips it."""
        if failure is not None:
            failure = self.policy.redact(failure)
        if isinstance(answer, AgentAnswer) and self.policy:
            answer = self._redact_answer(answer)
        return self._scrub(judge(context, answer, failure=failure, summary=summary), clean)

    def _redact_answer(self, answer: AgentAnswer) -> AgentAnswer:
        clean = self.policy.redact_value  # strings, nested lists and mappings; else as is
        fields = ("orders", "reasoning", "cited_rules", "raw_output", "prompt", "model")
        more = ("regime", "fallback_reason", "details")
        return replace(answer, **{f: clean(getattr(answer, f)) for f in fields + more})

    def _scrub(self, step: StepResult, clean: bool = False) -> StepResult:
        """The decision as stored: sanitised (:func:`race.domain.sanitize.sanitize_decision`,
        unless ``clean``) and every configured secret removed from its text (an agent or a
        provider may echo a key back; it must never reach the database)."""
        d = step.decision if clean else sanitize_decision(step.decision)
        if not self.policy:
            return step if d is step.decision else replace(step, decision=d)
        clean = self.policy.redact_value

        scrubbed = replace(
            d,
            # Bounded columns: a marker may be longer than what it replaced.
            model=None if d.model is None else clean(d.model)[:200],
            regime=clean(d.regime)[:32],
            rationale=clean(d.rationale),
            cited_rules=clean(d.cited_rules),
            fallback_reason=clean(d.fallback_reason),
            raw_output=clean(d.raw_output),
            prompt=clean(d.prompt),
            proposed_orders=clean(d.proposed_orders),
            details=clean(d.details),
            notes=[
                replace(
                    n,
                    message=clean(n.message),
                    asset=clean(n.asset),
                    requested_quantity=clean(n.requested_quantity),
                )
                for n in d.notes
            ],
        )
        return replace(step, decision=scrubbed)


def record(telemetry: Telemetry, spec: AgentSpec, step: StepResult) -> None:
    """The decision's telemetry (latency, tokens, cost, fallback)."""
    decision = step.decision
    telemetry.record_decision(
        agent_id=spec.id,
        agent_name=spec.name,
        provider=spec.provider.value,
        model=decision.model,
        latency_ms=decision.latency_ms,
        fallback=decision.fallback,
        fallback_reason=decision.fallback_reason,
        prompt_tokens=decision.prompt_tokens,
        completion_tokens=decision.completion_tokens,
        cost_usd=decision.cost_usd,
    )
