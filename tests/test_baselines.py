"""Baseline strategies: their signals, their params, and the random one's reproducibility."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from agents.baselines import (
    BaselineConfigError,
    BuyAndHold,
    RandomTrader,
    RsiReversion,
    SmaCross,
    build_baseline,
    rsi,
    sma,
)
from race.domain.agent import AgentContext, AgentSpec
from race.domain.model import Costs, MarketView, Portfolio, Position, Provider, RiskLimits
from tests.factories import make_candles

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def context(closes, portfolio=None, at_index=None, symbol="BTC"):
    closes = [D(str(c)) for c in closes]
    candles = make_candles(symbol, T0, closes)
    view = MarketView(as_of=candles[-1].close_time, candles={symbol: candles})
    return AgentContext(
        agent=AgentSpec(1, "a", Provider.MOCK),
        cycle_time=view.as_of,
        market=view,
        portfolio=portfolio or Portfolio(cash=D("100000")),
        limits=RiskLimits(),
        costs=Costs(),
        allowed_assets=(symbol,),
        starting_capital=D("100000"),
    )


def decide(agent, ctx):
    return asyncio.run(agent.decide(ctx))


def test_indicators_match_hand_values():
    assert sma([1, 2, 3, 4], 2) == 3.5
    assert sma([1], 2) is None
    assert rsi([1, 2, 3, 4, 5], 4) == 100.0
    assert rsi([5, 4, 3, 2, 1], 4) == 0.0
    # Equal gains and losses → 50.
    assert rsi([1, 2, 1, 2, 1], 4) == pytest.approx(50.0)


def test_sma_cross_enters_on_uptrend_and_exits_on_downtrend():
    agent = SmaCross({"fast": 3, "slow": 6, "fraction": 0.5})
    up = decide(agent, context([100, 100, 100, 100, 101, 103, 106, 110]))
    assert up.orders == [{"asset": "BTC", "side": "BUY", "quantity": D("454.54545454")}]
    held = Portfolio(
        cash=D("50000"), positions={"BTC": Position("BTC", D("400"), D("100"), D("40040"))}
    )
    down = decide(agent, context([110, 110, 110, 110, 108, 104, 100, 95], portfolio=held))
    assert down.orders == [{"asset": "BTC", "side": "SELL", "quantity": D("400")}]
    flat = decide(agent, context([100] * 3))
    assert flat.orders == [] and "not enough candles" in flat.reasoning


def test_rsi_reversion_buys_oversold_and_sells_overbought():
    agent = RsiReversion({"period": 4, "low": 30, "high": 70, "fraction": 0.1})
    dip = decide(agent, context([100, 98, 96, 94, 92, 90]))
    assert dip.orders[0]["side"] == "BUY"
    held = Portfolio(cash=D("1000"), positions={"BTC": Position("BTC", D("3"), D("90"), D("270"))})
    top = decide(agent, context([90, 92, 94, 96, 98, 100], portfolio=held))
    assert top.orders == [{"asset": "BTC", "side": "SELL", "quantity": D("3")}]


def test_buy_and_hold_invests_once_then_never_trades():
    agent = BuyAndHold({"allocation": 0.5})
    first = decide(agent, context([100, 100]))
    assert first.orders[0]["side"] == "BUY"
    invested = Portfolio(
        cash=D("50000"), positions={"BTC": Position("BTC", D("499"), D("100"), D("49999"))}
    )
    # Even after a crash, it holds: progress is measured by what it spent.
    later = decide(agent, context([100, 30], portfolio=invested))
    assert later.orders == []


def test_random_is_reproducible_per_time_and_seed():
    agent = RandomTrader({"seed": 7, "trade_probability": 0.5})
    runs = []
    for _ in range(2):
        answers = []
        for hour in range(40):
            closes = [100 + hour] * 3
            ctx = context(closes)
            ctx = AgentContext(**{**ctx.__dict__, "cycle_time": T0 + timedelta(hours=hour)})
            answers.append(decide(agent, ctx).orders)
        runs.append(answers)
    assert runs[0] == runs[1]
    assert any(runs[0]) and not all(runs[0])
    other = RandomTrader({"seed": 8, "trade_probability": 0.5})
    assert [
        decide(
            other,
            AgentContext(**{**context([100] * 3).__dict__, "cycle_time": T0 + timedelta(hours=h)}),
        ).orders
        for h in range(40)
    ] != runs[0]


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("sma_cross", {"fast": 30, "slow": 10}, "must be below"),
        ("sma_cross", {"fast": "ten"}, "'fast' must be an integer"),
        ("rsi_reversion", {"low": 80, "high": 20}, "must be below"),
        ("rsi_reversion", {"fraction": 2}, "'fraction' must be between"),
        ("random", {"seed": [1]}, "'seed'"),
        ("nope", {}, "unknown baseline"),
    ],
)
def test_bad_params_are_named(kind, params, message):
    with pytest.raises(BaselineConfigError, match=message):
        build_baseline(kind, params)
