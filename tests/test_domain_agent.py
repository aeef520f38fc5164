"""Unit tests of race.domain.agent: the answer constructors and the context's equity
(mutation-tested with ``make mutate``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from race.domain.agent import Agent, AgentAnswer, AgentContext, AgentSpec
from race.domain.model import Candle, Costs, MarketView, Portfolio, Position, Provider, RiskLimits

T = datetime(2024, 3, 1, 12, tzinfo=UTC)


def test_hold_has_no_orders_and_passes_the_rest_through() -> None:
    answer = AgentAnswer.hold("flat market", model="m1", confidence=0.5)
    assert answer == AgentAnswer(orders=[], reasoning="flat market", model="m1", confidence=0.5)
    assert answer.fallback_reason is None


def test_fallback_is_a_hold_with_its_reason() -> None:
    answer = AgentAnswer.fallback("budget exhausted", model="m2", latency_ms=7)
    assert answer == AgentAnswer(
        orders=[],
        reasoning="HOLD (fallback): budget exhausted",
        fallback_reason="budget exhausted",
        model="m2",
        latency_ms=7,
    )


@pytest.mark.parametrize("make", [AgentAnswer.hold, AgentAnswer.fallback])
def test_a_hold_cannot_carry_orders(make: Callable[..., AgentAnswer]) -> None:
    with pytest.raises(TypeError, match="orders"):
        make("no", orders=[{"asset": "BTC", "side": "BUY", "quantity": 1}])


def test_answer_defaults_are_empty_and_not_shared() -> None:
    first, second = AgentAnswer(), AgentAnswer()
    assert (first.orders, first.reasoning, first.cited_rules, first.details) == ([], "", [], {})
    first.orders.append({"asset": "BTC"})
    first.details["x"] = 1
    assert second.orders == [] and second.details == {}
    assert all(
        getattr(first, name) is None
        for name in (
            "raw_output",
            "prompt",
            "model",
            "latency_ms",
            "prompt_tokens",
            "completion_tokens",
            "cost_usd",
            "regime",
            "confidence",
            "fallback_reason",
        )
    )


def test_context_equity_marks_the_portfolio_at_the_latest_closes() -> None:
    price = Decimal(200)
    view = MarketView(as_of=T, candles={"BTC": [Candle("BTC", T, price, price, price, price)]})
    portfolio = Portfolio(
        Decimal(1000), {"BTC": Position("BTC", Decimal(2), Decimal(150), Decimal(300))}
    )
    spec = AgentSpec(id=1, name="a", provider=Provider.MOCK)
    context = AgentContext(
        spec, T, view, portfolio, RiskLimits(), Costs(), ["BTC"], Decimal(10_000)
    )
    assert context.equity == Decimal(1400)
    assert context.spent_today_usd == 0
    assert (spec.model, spec.strategy, spec.instructions, spec.params, spec.problem) == (
        None,
        "",
        "",
        {},
        None,
    )


def test_agent_protocol_is_checkable() -> None:
    class Holder:
        async def decide(self, context: AgentContext) -> AgentAnswer:
            return AgentAnswer.hold("no")

    assert isinstance(Holder(), Agent)
    assert not isinstance(object(), Agent)
