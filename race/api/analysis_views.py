"""The analytics answers and the model chat, built from :mod:`race.analysis` results and the
read repositories' records (pure functions, no database)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from race.analysis import AgentAnalysis
from race.api import analysis_models as a
from race.api.activity import validation_fields
from race.api.views import as_float, rounded
from race.domain.regime import UNKNOWN, detect_regime
from race.domain.significance import Comparison, Interval, Significance
from race.domain.timeutil import iso
from race.secrets import SecretPolicy
from race.store.reads.agents import OrderRecord
from race.store.reads.analysis import CycleRegimes, DecisionDetail

SYSTEM_MARK = "[system]\n"
USER_MARK = "\n\n[user]\n"


def interval(value: Interval | None, scale: float = 1.0) -> a.Interval | None:
    if value is None:
        return None
    return a.Interval(low=round(value.low * scale, 6), high=round(value.high * scale, 6))


def _pct(value: float | None) -> float | None:
    return None if value is None else rounded(value * 100)


def significance(sig: Significance, buy_and_hold_return: float | None) -> a.SignificanceFigures:
    return a.SignificanceFigures(
        returns=sig.n_returns,
        periodsPerYear=rounded(sig.periods_per_year),
        blockLength=sig.block_length,
        resamples=sig.resamples,
        seed=sig.seed,
        totalReturnPct=_pct(sig.total_return),
        totalReturnInterval=interval(sig.total_return_ci, 100),
        sharpe=rounded(sig.sharpe),
        sharpeInterval=interval(sig.sharpe_ci),
        psr=rounded(sig.psr),
        minTrackRecordReturns=rounded(sig.min_track_record),
        minTrackRecordDays=rounded(sig.min_track_record_days),
        buyAndHoldReturnPct=_pct(buy_and_hold_return),
        pBeatBuyAndHold=rounded(sig.p_beat_benchmark),
        excessReturnInterval=interval(sig.excess_return_ci, 100),
        significant=sig.significant,
        reasons=dict(sig.reasons),
    )


def behaviour(x: AgentAnalysis) -> a.BehaviourSummary:
    b = x.behaviour
    return a.BehaviourSummary(
        exposure=rounded(b.exposure),
        turnover=rounded(b.turnover),
        turnoverPerDay=rounded(b.turnover_per_day),
        holdShare=rounded(b.hold_share),
        holdingHours=rounded(b.holding_hours),
        tradesPerDay=rounded(b.trades_per_day),
    )


def cost_efficiency(x: AgentAnalysis) -> a.CostEfficiency:
    e = x.efficiency
    return a.CostEfficiency(
        spendUsd=float(e.spend_usd),
        tokens=e.tokens,
        pnlPerUsd=as_float(e.pnl_per_usd),
        returnPctPerUsd=rounded(e.return_pct_per_usd),
        pnlPerMillionTokens=as_float(e.pnl_per_million_tokens),
        returnPctPerMillionTokens=rounded(e.return_pct_per_million_tokens),
    )


def contamination(x: AgentAnalysis) -> a.Contamination:
    c = x.contamination
    return a.Contamination(
        model=c.model,
        trainingCutoff=None if c.cutoff is None else c.cutoff.isoformat(),
        possiblyContaminated=c.possibly_contaminated,
        reason=c.reason,
    )


def leaderboard_extras(x: AgentAnalysis | None, step: Comparison | None = None) -> dict[str, Any]:
    """The leaderboard entry's extra keys (none before the first computation); ``step``
    compares the agent with the next rank."""
    if x is None:
        return {}
    sig = x.significance
    cutoff = x.contamination.cutoff
    return {
        "returnInterval": interval(sig.total_return_ci, 100),
        "sharpeInterval": interval(sig.sharpe_ci),
        "psr": rounded(sig.psr),
        "minTrackRecordDays": rounded(sig.min_track_record_days),
        "buyAndHoldReturnPct": _pct(x.buy_and_hold_return),
        "pBeatBuyAndHold": rounded(sig.p_beat_benchmark),
        "significant": sig.significant,
        "behaviour": behaviour(x),
        "costEfficiency": cost_efficiency(x),
        "possiblyContaminated": x.contamination.possibly_contaminated,
        "trainingCutoff": None if cutoff is None else cutoff.isoformat(),
        "pBeatNextRank": None if step is None else rounded(step.p_a_beats_b),
        "rankSignificant": None if step is None else step.significant,
        "analyticsAsOf": iso(x.period_end),
    }


def equity_performance(x: AgentAnalysis) -> a.EquityPerformance:
    return a.EquityPerformance(
        agentId=str(x.agent_id),
        startingCapital=float(x.starting_capital),
        finalEquity=float(x.final_equity),
        periodStart=iso(x.period_start),
        periodEnd=iso(x.period_end),
        snapshots=x.snapshots,
        maxDrawdownPct=rounded(x.max_drawdown_pct),
        significance=significance(x.significance, x.buy_and_hold_return),
        behaviour=behaviour(x),
        costEfficiency=cost_efficiency(x),
        contamination=contamination(x),
    )


def decision_analytics(x: AgentAnalysis) -> a.DecisionAnalytics:
    d = x.decisions
    buckets = x.behaviour.calibration
    return a.DecisionAnalytics(
        agentId=str(x.agent_id),
        decisions=d.decisions,
        actions=d.actions,
        citedRules=d.cited_rules,
        regimes=d.regimes,
        fallbacks=d.fallbacks,
        fallbackReasons=d.fallback_reasons,
        meanConfidence=rounded(d.mean_confidence),
        calibration=None
        if buckets is None
        else [
            a.CalibrationBucket(
                low=b.low,
                high=b.high,
                decisions=b.decisions,
                hits=b.hits,
                hitRate=rounded(b.hit_rate),
                meanConfidence=rounded(b.mean_confidence),
            )
            for b in buckets
        ],
    )


def _money(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def trade_summary(x: AgentAnalysis) -> a.TradeSummary:
    pnl = x.behaviour.pnl_by_asset
    assets = [
        a.AssetTradeSummary(
            asset=p.asset,
            trades=p.trades,
            volume=float(p.volume),
            fees=float(p.fees),
            realizedPnL=float(p.realized),
            unrealizedPnL=_money(p.unrealized),
            totalPnL=_money(p.total),
            held=float(p.held),
            biggestWin=_money(x.trade_extremes[p.asset].biggest_win),
            biggestLoss=_money(x.trade_extremes[p.asset].biggest_loss),
        )
        for p in pnl.values()
    ]
    return a.TradeSummary(
        agentId=str(x.agent_id),
        trades=sum(p.trades for p in pnl.values()),
        volume=float(sum((p.volume for p in pnl.values()), Decimal(0))),
        fees=float(sum((p.fees for p in pnl.values()), Decimal(0))),
        realizedPnL=float(sum((p.realized for p in pnl.values()), Decimal(0))),
        assets=assets,
    )


def split_prompt(prompt: str | None) -> tuple[str | None, str | None]:
    """The system and user messages of a stored prompt (``agents.prompting.Prompt.text``:
    ``[system]\\n…\\n\\n[user]\\n…``); a prompt in another form is all user message."""
    if prompt is None:
        return None, None
    if prompt.startswith(SYSTEM_MARK) and USER_MARK in prompt:
        system, user = prompt[len(SYSTEM_MARK) :].split(USER_MARK, 1)
        return system, user
    return None, prompt


def decision_detail(
    d: DecisionDetail, orders: Sequence[OrderRecord], policy: SecretPolicy
) -> a.DecisionDetail:
    """The model chat: the whole stored record, every text scrubbed by ``policy``."""
    clean = policy.redact_value
    system, user = split_prompt(d.prompt)
    _, notes = validation_fields(d.validation_errors)
    details = d.details if isinstance(d.details, dict) else {}
    # The version the agent recorded (the ML agent's stored model), else the model the
    # provider says answered.
    version = d.model_version or details.get("responseModel")
    proposed = d.proposed_orders if isinstance(d.proposed_orders, list) else []
    return a.DecisionDetail(
        id=str(d.id),
        agentId=str(d.agent_id),
        timestamp=iso(d.cycle_time) or "",
        action=d.action,
        asset=d.asset_symbol,
        quantity=_money(d.quantity),
        rationale=clean(d.rationale or ""),
        systemPrompt=clean(system),
        userPrompt=clean(user),
        rawAnswer=clean(d.raw_output),
        proposedOrders=clean(proposed),
        executedOrders=[
            a.ExecutedOrderDetail(
                asset=o.symbol, side=o.side, quantity=float(o.quantity), price=float(o.price)
            )
            for o in orders
        ],
        riskChanges=[a.RiskChange(**clean(n.model_dump())) for n in notes],
        wasValidated=d.was_validated,
        citedRules=[str(r) for r in clean(list(d.cited_rules or []))],
        confidence=rounded(d.confidence),
        regime=d.regime,
        marketConditions=clean(d.market_conditions or {}),
        fallback=d.fallback,
        fallbackReason=clean(d.fallback_reason),
        portfolioValueBefore=float(d.value_before),
        portfolioValueAfter=float(d.value_after),
        promptTokens=d.prompt_tokens,
        completionTokens=d.completion_tokens,
        costUsd=_money(d.cost_usd),
        latencyMs=d.latency_ms,
        model=clean(d.model),
        modelVersion=None if version is None else clean(str(version)),
        details=clean(details),
    )


def asset_regime(symbol: str, closes: Sequence[tuple[Any, Decimal]]) -> a.AssetRegime:
    regime = detect_regime([float(c) for _, c in closes]) if closes else UNKNOWN
    return a.AssetRegime(
        symbol=symbol,
        regime=regime,
        closes=len(closes),
        asOf=iso(closes[-1][0]) if closes else None,
    )


def majority(counts: dict[str, int]) -> str:
    if not counts:
        return UNKNOWN
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]


def regime_point(c: CycleRegimes) -> a.RegimePoint:
    return a.RegimePoint(
        cycleTime=iso(c.cycle_time) or "", regime=majority(c.counts), counts=c.counts
    )
