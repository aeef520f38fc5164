"""The baselines' answers are clean by construction (``answers_clean``): the engine skips the
sanitiser for them, so every record they lead to must be one the sanitiser leaves unchanged
(equal values: it rebuilds risk notes), over any market and portfolio; an agent without the
flag, or a failed ask, is sanitised."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.baselines import BASELINES, DEFAULT_BASELINES, Baseline, build_baseline
from race.clock import ManualClock
from race.domain.agent import AgentAnswer, AgentContext, AgentSpec
from race.domain.model import Costs, MarketView, Portfolio, Position, Provider, RiskLimits
from race.domain.money import quantize
from race.domain.sanitize import sanitize_decision
from race.domain.step import ViewSummary, judge
from race.settings import Settings
from race.usecases.deciding import Deciding
from tests.factories import make_candles

T0 = datetime(2024, 1, 1, tzinfo=UTC)
PARAMS = {spec["model"]: spec["params"] for spec in DEFAULT_BASELINES}
SYMBOLS = st.sampled_from(["BTC", "ETH", "SOL2", "X1"])


def _context(symbols: list[str], closes: list[D], cash: D, held: D) -> AgentContext:
    candles = {s: make_candles(s, T0, closes) for s in symbols}
    as_of = candles[symbols[0]][-1].close_time
    positions = {
        s: Position(s, held, closes[-1], quantize(held * closes[-1])) for s in symbols if held
    }
    return AgentContext(
        agent=AgentSpec(1, "a", Provider.MOCK),
        cycle_time=as_of,
        market=MarketView(as_of=as_of, candles=candles),
        portfolio=Portfolio(cash=cash, positions=positions),
        limits=RiskLimits(),
        costs=Costs(),
        allowed_assets=tuple(symbols),
        starting_capital=D("100000"),
    )


prices = st.decimals(min_value=D("0.0001"), max_value=D("900000"), places=4).filter(bool)


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(sorted(BASELINES)),
    symbols=st.lists(SYMBOLS, min_size=1, max_size=3, unique=True),
    closes=st.lists(prices, min_size=1, max_size=60),
    cash=st.decimals(min_value=D(0), max_value=D("1000000"), places=8),
    held=st.decimals(min_value=D(0), max_value=D("50"), places=8),
)
def test_every_baseline_record_passes_the_sanitiser_unchanged(kind, symbols, closes, cash, held):
    agent = build_baseline(kind, PARAMS[kind])
    assert agent.answers_clean is True
    context = _context(symbols, closes, cash, held)
    answer = asyncio.run(agent.decide(context))
    step = judge(context, answer, summary=ViewSummary(context.market, symbols[0]))
    assert sanitize_decision(step.decision) == step.decision


class _Dirty(Baseline):
    """Says text the sanitiser must clean (a NUL, a lone surrogate)."""

    name = "dirty"

    async def decide(self, context: AgentContext) -> AgentAnswer:
        return AgentAnswer(reasoning="bad\x00text \ud800", model=self.name)


def _deciding() -> Deciding:
    return Deciding(Settings(), lambda spec: _Dirty({}), ManualClock(T0))


def _decide(deciding: Deciding, agent: object) -> str:
    context = _context(["BTC"], [D(100)] * 30, D(1000), D(0))
    summary = ViewSummary(context.market, "BTC")
    step = asyncio.run(deciding.decide(context.agent, context, summary, agent=agent))  # type: ignore[arg-type]
    return step.decision.rationale


def test_an_agent_without_the_flag_is_sanitised() -> None:
    agent = _Dirty({})
    agent.answers_clean = False  # type: ignore[misc]
    rationale = _decide(_deciding(), agent)
    assert "\x00" not in rationale and "\ud800" not in rationale


def test_the_flag_skips_the_sanitiser_only_when_set_to_true() -> None:
    flagged = _Dirty({})
    assert "\x00" in _decide(_deciding(), flagged)  # trusted: what it says is stored as is
    truthy = _Dirty({})
    truthy.answers_clean = "yes"  # type: ignore[assignment, misc]
    assert "\x00" not in _decide(_deciding(), truthy)


def test_a_failed_ask_of_a_clean_agent_is_sanitised() -> None:
    class Failing(Baseline):
        name = "failing"

        async def decide(self, context: AgentContext) -> AgentAnswer:
            raise RuntimeError("broke with \x00 inside")

    rationale = _decide(_deciding(), Failing({}))
    assert "agent failed: RuntimeError" in rationale and "\x00" not in rationale
