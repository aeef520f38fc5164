"""Response shapes of the leaderboard API (``docs/api.md``), field for field.

camelCase, datetimes as ISO-8601 UTC strings with an offset, ids as strings, money and
quantities as JSON numbers. Extra fields the dashboard ignores carry what the race knows
beyond the contract (Sharpe, Sortino, fees, fallbacks, tokens, cost…)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.registry import PROVIDER_NAMES
from race.api.analysis_models import BehaviourSummary, CostEfficiency, Interval


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(Model):
    message: str


class EquitySnapshot(Model):
    id: str
    portfolioId: str
    agentId: str
    capturedAt: str
    totalValue: float
    cashValue: float
    positionsValue: float
    unrealizedPnL: float
    percentChange: float | None
    source: Literal["cycle", "mark"]


class AgentSummary(Model):
    id: str
    name: str
    strategy: str
    isActive: bool
    totalValue: float
    percentChange: float
    lastUpdated: str
    provider: str
    model: str | None
    degraded: bool


class PerformanceMetrics(Model):
    agentId: str
    initialValue: float
    currentValue: float
    totalReturn: float
    percentReturn: float
    maxDrawdown: float
    sharpeRatio: float | None
    totalTrades: int
    winningTrades: int
    losingTrades: int
    winRate: float
    calculatedAt: str
    sortinoRatio: float | None
    volatility: float | None
    calmarRatio: float | None
    feesPaid: float
    decisions: int
    fallbacks: int
    fallbackRate: float | None
    degraded: bool
    promptTokens: int
    completionTokens: int
    costUsd: float


class AgentDetail(Model):
    id: str
    name: str
    strategy: str
    isActive: bool
    createdAt: str
    provider: str
    model: str | None
    latestSnapshot: EquitySnapshot | None
    performance: PerformanceMetrics


class LeaderboardAgent(Model):
    id: str
    name: str
    modelType: Literal[PROVIDER_NAMES]  # type: ignore[valid-type]
    provider: str
    isActive: bool
    createdAt: str


class LeaderboardEntry(Model):
    agent: LeaderboardAgent
    currentValue: float
    performancePercent: float
    drawdown: float
    rank: int
    model: str | None
    sharpeRatio: float | None
    sortinoRatio: float | None
    totalTrades: int
    winRate: float | None
    feesPaid: float
    fallbacks: int
    degraded: bool
    costUsd: float
    lastUpdated: str | None
    returnInterval: Interval | None = None
    sharpeInterval: Interval | None = None
    psr: float | None = None
    minTrackRecordDays: float | None = None
    buyAndHoldReturnPct: float | None = None
    pBeatBuyAndHold: float | None = None
    significant: bool | None = None
    behaviour: BehaviourSummary | None = None
    costEfficiency: CostEfficiency | None = None
    possiblyContaminated: bool | None = None
    trainingCutoff: str | None = None
    pBeatNextRank: float | None = None
    rankSignificant: bool | None = None
    analyticsAsOf: str | None = None


class Trade(Model):
    id: str
    assetSymbol: str
    executedAt: str
    quantity: float
    price: float
    side: Literal["Buy", "Sell"]
    totalValue: float
    rationale: str | None
    detectedRegime: str | None
    fee: float
    slippage: float
    realizedPnL: float | None
    decisionId: str


class TradePage(Model):
    trades: list[Trade]
    totalCount: int
    limit: int
    offset: int


class MarketPrice(Model):
    symbol: str
    name: str
    price: float
    change24h: float
    changePercent24h: float
    high24h: float
    low24h: float
    updatedAt: str


class Position(Model):
    assetSymbol: str
    quantity: float
    averagePrice: float
    currentPrice: float | None
    marketValue: float
    unrealizedPnL: float


class Portfolio(Model):
    portfolioId: str
    agentId: str
    cash: float
    positions: list[Position]
    asOf: str
    totalValue: float


class ExecutedOrder(Model):
    """One order a decision executed (a trade), in execution order."""

    asset: str
    side: Literal["BUY", "SELL"]
    quantity: float
    price: float


class ValidationNote(Model):
    """One thing the parser or the risk rules did to a proposed order (structured)."""

    order: int | None
    """The order's index in the agent's answer."""
    asset: str | None
    code: str
    outcome: str
    """``dropped`` (parser), ``refused`` or ``clipped`` (risk rules)."""
    message: str
    requested: str | None
    final: str | None


class DecisionLog(Model):
    id: str
    agentId: str
    timestamp: str
    action: Literal["BUY", "SELL", "HOLD"]
    asset: str | None
    quantity: float | None
    rationale: str
    citedRuleIds: str
    detectedRegime: str
    portfolioValueBefore: float
    portfolioValueAfter: float
    marketConditions: str
    wasValidated: bool
    validationErrors: str | None
    """A string holding a JSON array of short human-readable STRINGS (one per note), or null:
    the dashboard renders each element as text. The structured notes: ``validationNotes``."""
    createdAt: str
    fallback: bool
    fallbackReason: str | None
    latencyMs: int | None
    promptTokens: int | None
    completionTokens: int | None
    costUsd: float | None
    model: str | None
    confidence: float | None
    validationNotes: list[ValidationNote]
    """The notes behind ``validationErrors``, structured (an array; empty when none)."""
    orders: list[ExecutedOrder]
    """Every executed order of the decision (``asset``/``quantity`` above show the first)."""


class LastCycle(Model):
    time: str
    status: str


class Health(Model):
    status: Literal["Healthy", "Degraded", "Unhealthy"]
    timestamp: str
    database: Literal["Connected", "Disconnected"]
    activeAgentCount: int
    latestCandleTime: str | None
    latestCandleAgeSeconds: float | None
    lastCycle: LastCycle | None
    reasons: list[str] = Field(default_factory=list)
    """Why the race is ``Degraded`` (stale candles, no recent completed cycle)."""


class CycleRun(Model):
    cycleTime: str
    status: str
    agentsTotal: int
    decided: int
    fallbacks: int
    trades: int
    skipped: dict[str, str]
    errors: dict[str, str]
    durationMs: int
    reason: str | None = None
    """Why the whole cycle was ``skipped`` (a stale market view)."""


class BackfillRequest(Model):
    start: datetime
    end: datetime
    interval: str = Field(
        default="1h",
        pattern=r"^[0-9]{1,6}[smhdwSMHDW]$",
        description="decision interval, e.g. 15m, 1h, 1d",
    )


class CycleRequest(Model):
    at: str | None = Field(
        default=None,
        max_length=64,
        description="ISO-8601 time whose schedule slot to run (default: now), 1970 to 2199",
        json_schema_extra={"format": "date-time"},
    )
    """Text, parsed by the handler: a number is not a time (JSON has no datetime type)."""


class Job(Model):
    id: str
    kind: str
    status: str
    params: dict[str, object]
    cursor: str | None
    total: int
    done: int
    error: str | None
    createdAt: str
    updatedAt: str


class JobAccepted(Model):
    jobId: str
    status: str
    statusUrl: str
