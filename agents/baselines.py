"""Baseline strategies (provider ``Mock``): the yardsticks every AI agent must beat.

Each is configured by the agent's JSON params, is deterministic for a given context (the
``random`` one derives its generator from its seed and the decision time, so a replay or a
resumed backfill makes the same choices) and does no I/O.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from decimal import Decimal
from itertools import pairwise
from typing import Any

from race.domain.agent import AgentAnswer, AgentContext
from race.domain.money import ZERO, quantize_down


class BaselineConfigError(ValueError):
    """Bad params for a baseline; the message names the parameter."""


def _number(params: Mapping[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BaselineConfigError(f"param {name!r} must be a number, got {value!r}")
    if not math.isfinite(value) or not (lo <= value <= hi):
        raise BaselineConfigError(f"param {name!r} must be between {lo} and {hi}, got {value}")
    return float(value)


def _integer(params: Mapping[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BaselineConfigError(f"param {name!r} must be an integer, got {value!r}")
    if not (lo <= value <= hi):
        raise BaselineConfigError(f"param {name!r} must be between {lo} and {hi}, got {value}")
    return value


def sma(values: list[float], period: int) -> float | None:
    if len(values) < period:
        return None
    return sum(values[-period:]) / period


def rsi(values: list[float], period: int = 14) -> float | None:
    """Wilder's RSI over the closes given (None with fewer than ``period + 1``)."""
    if len(values) < period + 1:
        return None
    # The closes' changes, oldest first: the first ``period`` seed the averages, the rest
    # are smoothed in (the same float operations, in the same order, as indexing would do).
    changes = [current - previous for previous, current in pairwise(values)]
    gains = losses = 0.0
    for change in changes[:period]:
        if change > 0:
            gains += change
        else:
            losses -= change
    avg_gain, avg_loss = gains / period, losses / period
    keep = (period - 1) / period
    for change in changes[period:]:
        if change > 0:
            avg_gain = avg_gain * keep + change / period
            avg_loss = avg_loss * keep
        else:
            avg_gain = avg_gain * keep
            avg_loss = avg_loss * keep - change / period
    if avg_loss == 0:
        return 100.0 if avg_gain > 0 else 50.0
    return 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)


def _buy(context: AgentContext, symbol: str, usd: Decimal) -> dict[str, Any] | None:
    price = context.market.prices.get(symbol)
    if price is None or usd <= ZERO:
        return None
    quantity = quantize_down(usd / price)
    if quantity <= ZERO:
        return None
    return {"asset": symbol, "side": "BUY", "quantity": quantity}


def _sell_all(context: AgentContext, symbol: str) -> dict[str, Any] | None:
    held = context.portfolio.quantity(symbol)
    if held <= ZERO:
        return None
    return {"asset": symbol, "side": "SELL", "quantity": held}


class Baseline:
    """Common shape: ``in_process`` agents are awaited directly by the engine.

    ``answers_clean``: what a baseline says is built from the universe's validated symbols,
    numbers and fixed text, so its decision records pass the sanitiser unchanged and the
    engine skips it for them (tests/test_baselines_clean.py checks that over random markets).
    """

    in_process = True
    answers_clean = True
    name = "baseline"
    PARAMS: tuple[str, ...] = ("assets",)
    """The params this baseline reads; any other is refused, naming these."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        unknown = sorted(str(key) for key in params if key not in self.PARAMS)
        if unknown:
            raise BaselineConfigError(
                f"unknown param(s) for the {self.name} baseline: {', '.join(unknown)} "
                f"(valid params: {', '.join(sorted(self.PARAMS))})"
            )
        self.params = dict(params)

    def assets(self, context: AgentContext) -> list[str]:
        wanted = self.params.get("assets")
        if wanted is None:
            return list(context.allowed_assets)
        if not isinstance(wanted, list) or not all(isinstance(a, str) for a in wanted):
            raise BaselineConfigError("param 'assets' must be a list of symbols")
        return [a.upper() for a in wanted if a.upper() in context.allowed_assets]

    async def decide(self, context: AgentContext) -> AgentAnswer:
        raise NotImplementedError


class CashBaseline(Baseline):
    name = "cash"

    async def decide(self, context: AgentContext) -> AgentAnswer:
        return AgentAnswer.hold("Cash baseline: never trades.", model=self.name)


class BuyAndHold(Baseline):
    """Spend ``allocation`` of the starting capital evenly on the assets, then hold forever.

    Progress is measured by cost basis, not market value, so a falling price never makes it
    buy more: once each asset has cost its share, it never trades again."""

    name = "buy_and_hold"
    PARAMS = ("assets", "allocation")

    def __init__(self, params: Mapping[str, Any]) -> None:
        super().__init__(params)
        self.allocation = Decimal(str(_number(params, "allocation", 0.98, 0.0, 1.0)))

    async def decide(self, context: AgentContext) -> AgentAnswer:
        assets = self.assets(context)
        if not assets:
            return AgentAnswer.hold("Buy and hold: no assets to buy.", model=self.name)
        share = context.starting_capital * self.allocation / len(assets)
        orders = []
        for symbol in assets:
            position = context.portfolio.positions.get(symbol)
            spent = position.cost_basis if position else ZERO
            missing = share - spent
            if missing >= context.limits.min_order_notional:
                order = _buy(context, symbol, missing / (1 + context.costs.fee_rate))
                if order:
                    orders.append(order)
        if not orders:
            return AgentAnswer.hold("Buy and hold: invested, holding.", model=self.name)
        return AgentAnswer(
            orders=orders,
            reasoning=f"Buy and hold: investing {self.allocation:.0%} of the starting capital "
            f"evenly across {', '.join(assets)}.",
            model=self.name,
        )


class SmaCross(Baseline):
    """Long while the fast SMA is above the slow one, flat otherwise."""

    name = "sma_cross"
    PARAMS = ("assets", "fast", "slow", "fraction")

    def __init__(self, params: Mapping[str, Any]) -> None:
        super().__init__(params)
        self.fast = _integer(params, "fast", 10, 2, 500)
        self.slow = _integer(params, "slow", 30, 3, 1000)
        self.fraction = Decimal(str(_number(params, "fraction", 0.25, 0.0, 1.0)))
        if self.fast >= self.slow:
            raise BaselineConfigError(
                f"param 'fast' ({self.fast}) must be below 'slow' ({self.slow})"
            )

    async def decide(self, context: AgentContext) -> AgentAnswer:
        orders, notes = [], []
        equity = context.equity
        for symbol in self.assets(context):
            closes = context.market.closes(symbol)
            fast, slow = sma(closes, self.fast), sma(closes, self.slow)
            if fast is None or slow is None:
                notes.append(f"{symbol}: not enough candles for SMA{self.slow}")
                continue
            held = context.portfolio.quantity(symbol)
            if fast > slow and held == ZERO:
                order = _buy(context, symbol, equity * self.fraction)
                if order:
                    orders.append(order)
                    notes.append(
                        f"{symbol}: SMA{self.fast} {fast:.2f} > SMA{self.slow} {slow:.2f}, entering"
                    )
            elif fast < slow and held > ZERO:
                order = _sell_all(context, symbol)
                if order:
                    orders.append(order)
                    notes.append(
                        f"{symbol}: SMA{self.fast} {fast:.2f} < SMA{self.slow} {slow:.2f}, exiting"
                    )
            else:
                state = "long" if held > ZERO else "flat"
                notes.append(f"{symbol}: no cross signal, staying {state}")
        return AgentAnswer(
            orders=orders, reasoning="SMA cross: " + "; ".join(notes), model=self.name
        )


class RsiReversion(Baseline):
    """Buy when RSI is oversold, sell everything when overbought."""

    name = "rsi_reversion"
    PARAMS = ("assets", "period", "low", "high", "fraction")

    def __init__(self, params: Mapping[str, Any]) -> None:
        super().__init__(params)
        self.period = _integer(params, "period", 14, 2, 200)
        self.low = _number(params, "low", 30, 0, 100)
        self.high = _number(params, "high", 70, 0, 100)
        self.fraction = Decimal(str(_number(params, "fraction", 0.2, 0.0, 1.0)))
        if self.low >= self.high:
            raise BaselineConfigError(
                f"param 'low' ({self.low}) must be below 'high' ({self.high})"
            )

    async def decide(self, context: AgentContext) -> AgentAnswer:
        orders, notes = [], []
        equity = context.equity
        for symbol in self.assets(context):
            value = rsi(context.market.closes(symbol), self.period)
            if value is None:
                notes.append(f"{symbol}: not enough candles for RSI{self.period}")
                continue
            held = context.portfolio.quantity(symbol)
            if value < self.low:
                order = _buy(context, symbol, equity * self.fraction)
                if order:
                    orders.append(order)
                    notes.append(f"{symbol}: RSI {value:.1f} < {self.low:g}, buying the dip")
            elif value > self.high and held > ZERO:
                order = _sell_all(context, symbol)
                if order:
                    orders.append(order)
                    notes.append(f"{symbol}: RSI {value:.1f} > {self.high:g}, taking profit")
            else:
                notes.append(f"{symbol}: RSI {value:.1f}, no signal")
        return AgentAnswer(
            orders=orders, reasoning="RSI reversion: " + "; ".join(notes), model=self.name
        )


class RandomTrader(Baseline):
    """Trades at random, reproducibly: its generator is seeded by (seed, decision time)."""

    name = "random"
    PARAMS = ("assets", "seed", "trade_probability", "fraction")

    def __init__(self, params: Mapping[str, Any]) -> None:
        super().__init__(params)
        seed = params.get("seed", 42)
        if isinstance(seed, bool) or not isinstance(seed, int | str):
            raise BaselineConfigError(f"param 'seed' must be an integer or string, got {seed!r}")
        self.seed = seed
        self.probability = _number(params, "trade_probability", 0.3, 0.0, 1.0)
        self.fraction = Decimal(str(_number(params, "fraction", 0.1, 0.0, 1.0)))

    async def decide(self, context: AgentContext) -> AgentAnswer:
        rng = random.Random(f"{self.seed}|{context.cycle_time.isoformat()}")
        assets = self.assets(context)
        if not assets or rng.random() >= self.probability:
            return AgentAnswer.hold("Random: the dice said hold.", model=self.name)
        symbol = rng.choice(assets)
        side = rng.choice(("BUY", "SELL"))
        if side == "BUY":
            order = _buy(context, symbol, context.equity * self.fraction)
        else:
            held = context.portfolio.quantity(symbol)
            order = (
                {
                    "asset": symbol,
                    "side": "SELL",
                    "quantity": quantize_down(held * Decimal(str(rng.uniform(0.2, 1.0)))),
                }
                if held > ZERO
                else None
            )
        if order is None:
            return AgentAnswer.hold(
                f"Random: wanted to {side} {symbol}, nothing to do.", model=self.name
            )
        return AgentAnswer(orders=[order], reasoning=f"Random: {side} {symbol}.", model=self.name)


BASELINES: dict[str, Callable[[Mapping[str, Any]], Baseline]] = {
    "cash": CashBaseline,
    "buy_and_hold": BuyAndHold,
    "sma_cross": SmaCross,
    "rsi_reversion": RsiReversion,
    "random": RandomTrader,
}

DEFAULT_BASELINES: list[dict[str, Any]] = [
    {"name": "Cash Keeper", "model": "cash", "strategy": "Holds cash: the zero line", "params": {}},
    {
        "name": "Buy & Hold",
        "model": "buy_and_hold",
        "strategy": "Buys BTC and ETH once, holds forever",
        "params": {"allocation": 0.98},
    },
    {
        "name": "SMA Cross 10/30",
        "model": "sma_cross",
        "strategy": "Long while SMA10 > SMA30",
        "params": {"fast": 10, "slow": 30, "fraction": 0.25},
    },
    {
        "name": "RSI Reversion",
        "model": "rsi_reversion",
        "strategy": "Buys RSI<30 dips, sells RSI>70",
        "params": {"period": 14, "low": 30, "high": 70, "fraction": 0.2},
    },
    {
        "name": "Random Walker",
        "model": "random",
        "strategy": "Seeded coin flips",
        "params": {"seed": 42, "trade_probability": 0.3, "fraction": 0.1},
    },
]


def build_baseline(kind: str | None, params: Mapping[str, Any]) -> Baseline:
    factory = BASELINES.get((kind or "").strip())
    if factory is None:
        raise BaselineConfigError(
            f"unknown baseline {kind!r}: choose one of {', '.join(sorted(BASELINES))}"
        )
    return factory(params)
