"""Response shapes of the analytics endpoints and of the leaderboard's extra keys
(``docs/api.md``; formulas in ``docs/analytics.md``). camelCase like the rest of the API;
returns and shares are in percent where the key says ``Pct`` or ``Percent``, else
fractions; a figure that cannot be computed is ``null``, with its reason in ``reasons``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Interval(Model):
    low: float
    high: float


class BehaviourSummary(Model):
    exposure: float | None
    turnover: float | None
    turnoverPerDay: float | None
    holdShare: float | None
    holdingHours: float | None
    tradesPerDay: float | None


class CostEfficiency(Model):
    spendUsd: float
    tokens: int
    pnlPerUsd: float | None
    returnPctPerUsd: float | None
    pnlPerMillionTokens: float | None
    returnPctPerMillionTokens: float | None


class SignificanceFigures(Model):
    returns: int
    periodsPerYear: float | None
    blockLength: int | None
    resamples: int
    seed: int
    totalReturnPct: float | None
    totalReturnInterval: Interval | None
    sharpe: float | None
    sharpeInterval: Interval | None
    psr: float | None
    minTrackRecordReturns: float | None
    minTrackRecordDays: float | None
    buyAndHoldReturnPct: float | None
    pBeatBuyAndHold: float | None
    excessReturnInterval: Interval | None
    significant: bool | None
    reasons: dict[str, str]


class Contamination(Model):
    model: str | None
    trainingCutoff: str | None
    possiblyContaminated: bool | None
    reason: str


class EquityPerformance(Model):
    agentId: str
    startingCapital: float
    finalEquity: float
    periodStart: str | None
    periodEnd: str | None
    snapshots: int
    maxDrawdownPct: float | None
    significance: SignificanceFigures
    behaviour: BehaviourSummary
    costEfficiency: CostEfficiency
    contamination: Contamination


class CalibrationBucket(Model):
    low: float
    high: float
    decisions: int
    hits: int
    hitRate: float | None
    meanConfidence: float | None


class DecisionAnalytics(Model):
    agentId: str
    decisions: int
    actions: dict[str, int]
    citedRules: dict[str, int]
    regimes: dict[str, int]
    fallbacks: int
    fallbackReasons: dict[str, int]
    meanConfidence: float | None
    calibration: list[CalibrationBucket] | None


class AssetTradeSummary(Model):
    asset: str
    trades: int
    volume: float
    fees: float
    realizedPnL: float
    unrealizedPnL: float | None
    totalPnL: float | None
    held: float
    biggestWin: float | None
    biggestLoss: float | None


class TradeSummary(Model):
    agentId: str
    trades: int
    volume: float
    fees: float
    realizedPnL: float
    assets: list[AssetTradeSummary]


class RiskChange(Model):
    order: int | None
    asset: str | None
    code: str
    outcome: str
    message: str
    requested: str | None
    final: str | None


class ExecutedOrderDetail(Model):
    asset: str
    side: str
    quantity: float
    price: float


class DecisionDetail(Model):
    id: str
    agentId: str
    timestamp: str
    action: str
    asset: str | None
    quantity: float | None
    rationale: str
    systemPrompt: str | None
    userPrompt: str | None
    rawAnswer: str | None
    proposedOrders: list[object]
    executedOrders: list[ExecutedOrderDetail]
    riskChanges: list[RiskChange]
    wasValidated: bool
    citedRules: list[str]
    confidence: float | None
    regime: str
    marketConditions: dict[str, object]
    fallback: bool
    fallbackReason: str | None
    portfolioValueBefore: float
    portfolioValueAfter: float
    promptTokens: int | None
    completionTokens: int | None
    costUsd: float | None
    latencyMs: int | None
    model: str | None
    modelVersion: str | None
    details: dict[str, object]


class AssetRegime(Model):
    symbol: str
    regime: str
    closes: int
    asOf: str | None


class MarketRegime(Model):
    assets: list[AssetRegime]
    latestCycle: str | None
    recorded: dict[str, int]
    """The regimes the latest cycle's decisions recorded."""


class RegimePoint(Model):
    cycleTime: str
    regime: str
    """The regime most decisions of the cycle recorded (ties: alphabetical first)."""
    counts: dict[str, int]
