"""The language-model agent: Llama on Groq by default, or any OpenAI-compatible chat model
(Together, OpenAI, Azure OpenAI) chosen by the agent's provider and settings.

One decision: daily budget check → bounded prompt → the call's worst-case cost checked
against what is left of the budget → JSON-mode chat completion through the provider's shared
limiter and circuit breaker with the one retry policy → the core parser. An answer without
``usage`` is charged estimated tokens (characters / 4), marked ``usageEstimated``.
Any failure is a HOLD with its reason (``AgentAnswer.fallback``), carrying whatever is known
(prompt, raw output, tokens, cost) for the audit. An optional fallback chain tries other
providers when one is unavailable.

Params (all optional)::

    {"fallback": [{"provider": "Together", "model": "…"}, {"provider": "OpenAI"}],
     "daily_budget_usd": 0.5,            # null = no limit; default LLM_DAILY_BUDGET_USD
     "price": {"input": 0.59, "output": 0.79},   # USD per million tokens
     "temperature": 0.3, "max_tokens": 500, "prompt_candles": 24}
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from agents.chat import Completion, InvalidGeneration, ProviderFailure, chat_json
from agents.config import AgentConfigError, integer, number, reject_unknown
from agents.pricing import (
    Price,
    budget_exhausted,
    daily_budget,
    estimate_tokens,
    parse_price_table,
    price_for,
    price_override,
    worst_case,
)
from agents.prompting import Prompt, build_prompt
from agents.providers import (
    PROVIDER_ENDPOINT,
    endpoint,
    endpoint_key,
    provider_runtime,
    scrub,
    secrets_of,
)
from race.clock import Clock
from race.domain.agent import AgentAnswer, AgentContext, AgentSpec
from race.domain.parsing import AnswerRejected, parse_model_output
from race.resilience import RetryPolicy
from race.settings import Settings

PARAMS = ("fallback", "daily_budget_usd", "price", "temperature", "max_tokens", "prompt_candles")
TIME_MARGIN = 2.0
"""Seconds kept free before the engine's agent timeout, so our HOLD (with its prompt) wins."""


@dataclass(frozen=True)
class Route:
    """One provider to try: the endpoint key and the model (deployment for Azure)."""

    key: str
    model: str | None


def _routes(spec: AgentSpec, settings: Settings) -> list[Route]:
    primary_key = PROVIDER_ENDPOINT.get(spec.provider)
    if primary_key is None:
        raise AgentConfigError(f"provider {spec.provider.value} is not a language-model provider")
    routes = [Route(primary_key, spec.model or endpoint(settings, primary_key).default_model)]
    chain = spec.params.get("fallback", [])
    if not isinstance(chain, list):
        raise AgentConfigError(
            'param \'fallback\' must be a list like [{"provider": "Together", "model": …}]'
        )
    for position, item in enumerate(chain):
        if not isinstance(item, Mapping) or not isinstance(item.get("provider"), str):
            raise AgentConfigError(
                f"param 'fallback'[{position}] must be an object with a 'provider' name"
            )
        reject_unknown(item, ("provider", "model"), what=f"fallback entry {position}")
        model = item.get("model")
        if model is not None and (not isinstance(model, str) or not model.strip()):
            raise AgentConfigError(f"param 'fallback'[{position}].model must be a model name")
        key = endpoint_key(item["provider"])
        routes.append(Route(key, model or endpoint(settings, key).default_model))
    return routes


class LlamaAgent:
    """An OpenAI-compatible chat model deciding through the race's JSON protocol."""

    in_process = False

    def __init__(
        self, spec: AgentSpec, settings: Settings, clock: Clock, shared: dict[str, Any]
    ) -> None:
        params = dict(spec.params)
        reject_unknown(params, PARAMS, what=f"{spec.provider.value} agents")
        self.spec = spec
        self.settings = settings
        self.clock = clock
        self.shared = shared
        self.routes = _routes(spec, settings)
        self.budget = daily_budget(params, settings)
        self.price_override = price_override(params)
        self.temperature = number(params, "temperature", settings.llm_temperature, 0.0, 2.0)
        self.max_tokens = integer(params, "max_tokens", settings.llm_max_tokens, 16, 32_000)
        self.prompt_candles = integer(params, "prompt_candles", settings.llm_prompt_candles, 0, 500)
        try:
            self.prices = shared.setdefault("llm.prices", parse_price_table(settings.llm_prices))
        except ValueError as exc:
            raise AgentConfigError(str(exc)) from None
        self.policy = RetryPolicy(attempts=1 + max(0, settings.llm_max_retries))
        self._secrets = secrets_of(settings)
        self.rng: random.Random | None = None
        """Jitter source for retry delays (tests may seed it)."""

    @property
    def model(self) -> str | None:
        return self.routes[0].model

    def warm_up(self) -> None:
        """Start-up work for the providers this agent may call (configured ones only): the
        SDK imported, the CA bundle loaded (:meth:`ProviderRuntime.warm_up`). No call."""
        for key in dict.fromkeys(route.key for route in self.routes):
            runtime = provider_runtime(self.shared, self.settings, self.clock, key)
            if runtime.endpoint.missing is None:
                runtime.warm_up()

    def _price(self, model: str) -> Price | None:
        return self.price_override or price_for(self.prices, model)

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    def _budget_hold(self, context: AgentContext) -> AgentAnswer | None:
        """The HOLD of an agent that has spent today's budget (None while it has not)."""
        exhausted = budget_exhausted(context.spent_today_usd, self.budget, context.cycle_time)
        if not exhausted:
            return None
        return AgentAnswer.fallback(
            exhausted,
            model=self.model,
            details={
                "budgetUsd": str(self.budget),
                "spentTodayUsd": str(context.spent_today_usd),
            },
        )

    async def decide(self, context: AgentContext) -> AgentAnswer:
        hold = self._budget_hold(context)
        if hold is not None:
            return hold
        prompt = build_prompt(
            context,
            instructions=self.spec.instructions,
            max_chars=self.settings.llm_prompt_max_chars,
            candle_rows=self.prompt_candles,
            cache=self.shared.setdefault("llm.prompt_cache", {}),
        )
        started = time.perf_counter()
        deadline = self.clock.monotonic() + max(
            0.5, self.settings.agent_timeout_seconds - TIME_MARGIN
        )
        failures: list[str] = []
        for route in self.routes:
            skipped = self._cannot_call(route, context, prompt)
            if skipped is not None:
                failures.append(skipped)
                continue
            runtime = provider_runtime(self.shared, self.settings, self.clock, route.key)
            try:
                completion = await chat_json(
                    runtime,
                    model=route.model or "",  # set: _cannot_call refuses a route without
                    messages=prompt.messages,
                    temperature=self.temperature,
                    max_tokens=self.max_tokens,
                    policy=self.policy,
                    clock=self.clock,
                    deadline=deadline,
                    rng=self.rng,
                )
            except ProviderFailure as exc:
                failures.append(self._scrub(str(exc)))
                continue
            except InvalidGeneration as exc:
                return AgentAnswer.fallback(
                    self._scrub(str(exc)),
                    raw_output=exc.raw,
                    prompt=prompt.text,
                    model=route.model,
                    latency_ms=int((time.perf_counter() - started) * 1000),
                    details=self._details(route, None, failures, prompt),
                )
            return self._answer(route, completion, prompt, failures, started)
        return AgentAnswer.fallback(
            "; ".join(failures) or "no provider configured",
            prompt=prompt.text,
            model=self.model,
            latency_ms=int((time.perf_counter() - started) * 1000),
            details=self._details(self.routes[0], None, failures, prompt),
        )

    def _cannot_call(self, route: Route, context: AgentContext, prompt: Prompt) -> str | None:
        """Why ``route`` is not tried for this decision (not configured, or a call that
        could take today's spend over the budget); None when it may be called."""
        target = endpoint(self.settings, route.key)
        if target.missing:
            return target.missing
        if not route.model:
            return f"{target.label}: no model or deployment configured"
        price = self._price(route.model)
        if price is None:
            return None
        refusal = budget_exhausted(
            context.spent_today_usd,
            self.budget,
            context.cycle_time,
            worst_case(price, len(prompt), self.max_tokens),
        )
        return refusal or None

    def _details(
        self,
        route: Route,
        completion: Completion | None,
        failures: list[str],
        prompt: Prompt,
    ) -> dict[str, Any]:
        target = endpoint(self.settings, route.key)
        details: dict[str, Any] = {
            "provider": target.label,
            "host": target.host,
            "promptChars": len(prompt),
        }
        if failures:
            details["fallbackFrom"] = failures
        if completion is not None:
            details.update(
                {
                    "attempts": completion.attempts,
                    "finishReason": completion.finish_reason,
                    "responseId": completion.response_id,
                    "responseModel": completion.model,
                }
            )
            if completion.retries:
                details["retries"] = [self._scrub(r) for r in completion.retries]
        return details

    def _answer(
        self,
        route: Route,
        completion: Completion,
        prompt: Prompt,
        failures: list[str],
        started: float,
    ) -> AgentAnswer:
        model = route.model or ""
        price = self._price(model)
        cost: Decimal | None = None
        details = self._details(route, completion, failures, prompt)
        prompt_tokens, completion_tokens = _usage(completion, prompt, details)
        if price is not None:
            cost = price.cost(prompt_tokens, completion_tokens)
        else:
            details["costNote"] = f"no price for model {model!r} (set LLM_PRICES)"
        accounting: dict[str, Any] = {
            "prompt": prompt.text,
            "model": model,
            "latency_ms": int((time.perf_counter() - started) * 1000),
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "cost_usd": cost,
            "details": details,
        }
        if completion.choices == 0:
            return AgentAnswer.fallback(
                "the provider answered with no choices", raw_output=completion.raw, **accounting
            )
        try:
            parsed = parse_model_output(completion.content)
        except AnswerRejected as exc:
            reason = str(exc)
            if completion.finish_reason == "length":
                reason += f" (cut off at max_tokens={self.max_tokens})"
            return AgentAnswer.fallback(reason, raw_output=completion.content, **accounting)
        if parsed.notes:
            details["answerNotes"] = parsed.notes
        return AgentAnswer(
            orders=parsed.orders,
            reasoning=parsed.reasoning,
            cited_rules=parsed.cited_rules,
            raw_output=completion.content,
            confidence=_confidence(parsed.extra.get("confidence")),
            **accounting,
        )


def _usage(completion: Completion, prompt: Prompt, details: dict[str, Any]) -> tuple[int, int]:
    """(prompt, completion) tokens as reported, or estimated (noted in ``details``): without
    ``usage`` from the provider the spend still counts against the budget."""
    prompt_tokens, completion_tokens = completion.prompt_tokens, completion.completion_tokens
    estimated: list[str] = []
    if prompt_tokens is None:
        prompt_tokens = estimate_tokens(len(prompt))
        estimated.append("prompt")
    if completion_tokens is None:
        completion_tokens = estimate_tokens(completion.content or "")
        estimated.append("completion")
    if estimated:
        details["usageEstimated"] = estimated
        details["usageNote"] = (
            f"the provider reported no {' or '.join(estimated)} token usage: estimated "
            "as characters / 4"
        )
    return prompt_tokens, completion_tokens


def _confidence(value: object) -> float | None:
    """An optional ``confidence`` the model volunteered, if it is a number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number_ = float(value)
    if not math.isfinite(number_) or not (0.0 <= number_ <= 1.0):
        return None
    return number_
