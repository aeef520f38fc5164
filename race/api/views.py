"""The API's answers built from what the read repositories return: small pure functions,
no database (:mod:`race.store.reads` reads, these shape)."""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from typing import Any

from race.api import models as m
from race.domain.metrics import EquityStats, calmar_ratio
from race.domain.money import ZERO
from race.domain.timeutil import iso
from race.leaderboard import Standing
from race.store.reads.agents import PortfolioRecord, SnapshotRecord
from race.store.reads.equity import EquityPoint
from race.store.reads.health import JobRecord
from race.store.reads.market import PriceFacts


def as_float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def rounded(value: float | None, places: int = 6) -> float | None:
    """``value`` rounded; None for None, NaN or an infinity."""
    if value is None or not math.isfinite(value):
        return None
    return round(value, places)


def agent_summary(s: Standing) -> m.AgentSummary:
    return m.AgentSummary(
        id=str(s.agent_id),
        name=s.name,
        strategy=s.strategy,
        isActive=s.is_active,
        totalValue=float(s.current_value),
        percentChange=round(s.return_pct, 6),
        lastUpdated=iso(s.last_updated or s.created_at) or "",
        provider=s.provider,
        model=s.model,
        degraded=s.degraded,
    )


def calmar(state: dict[str, Any] | None, max_drawdown_pct: float) -> float | None:
    """The Calmar ratio of a stored curve state, to 4 places (None when undefined)."""
    if not state:
        return None
    return rounded(calmar_ratio(EquityStats.from_state(state), max_drawdown_pct), 4)


def performance(
    standing: Standing, state: dict[str, Any] | None, now: datetime
) -> m.PerformanceMetrics:
    return m.PerformanceMetrics(
        agentId=str(standing.agent_id),
        initialValue=float(standing.starting_capital),
        currentValue=float(standing.current_value),
        totalReturn=float(standing.total_return),
        percentReturn=round(standing.return_pct, 6),
        maxDrawdown=round(standing.max_drawdown_pct, 6),
        sharpeRatio=rounded(standing.sharpe),
        totalTrades=standing.total_trades,
        winningTrades=standing.winning_trades,
        losingTrades=standing.losing_trades,
        winRate=round(standing.win_rate_pct or 0.0, 4),
        calculatedAt=iso(standing.last_updated or now) or "",
        sortinoRatio=rounded(standing.sortino),
        volatility=rounded(standing.volatility_pct),
        calmarRatio=calmar(state, standing.max_drawdown_pct),
        feesPaid=float(standing.fees_paid),
        decisions=standing.decisions,
        fallbacks=standing.fallbacks,
        fallbackRate=rounded(standing.fallback_rate),
        degraded=standing.degraded,
        promptTokens=standing.prompt_tokens,
        completionTokens=standing.completion_tokens,
        costUsd=float(standing.cost_usd),
    )


def snapshot(row: SnapshotRecord, first_value: Decimal | None) -> m.EquitySnapshot:
    change = None
    if first_value is not None and first_value != ZERO:
        change = round(float((row.total_value - first_value) / first_value * 100), 6)
    return m.EquitySnapshot(
        id=str(row.id),
        portfolioId=str(row.portfolio_id),
        agentId=str(row.agent_id),
        capturedAt=iso(row.captured_at) or "",
        totalValue=float(row.total_value),
        cashValue=float(row.cash_value),
        positionsValue=float(row.positions_value),
        unrealizedPnL=float(row.unrealized_pnl),
        percentChange=change,
        source=row.source,  # type: ignore[arg-type]
    )


def agent_detail(
    standing: Standing,
    latest: SnapshotRecord | None,
    state: dict[str, Any] | None,
    now: datetime,
) -> m.AgentDetail:
    return m.AgentDetail(
        id=str(standing.agent_id),
        name=standing.name,
        strategy=standing.strategy,
        isActive=standing.is_active,
        createdAt=iso(standing.created_at) or "",
        provider=standing.provider,
        model=standing.model,
        latestSnapshot=None if latest is None else snapshot(latest, standing.starting_capital),
        performance=performance(standing, state, now),
    )


def equity_curve(points: list[EquityPoint]) -> list[dict[str, Any]]:
    """Plain dicts of the :class:`~race.api.models.EquitySnapshot` shape (the dashboard's
    hot path, serialised without building a model per point). ``percentChange`` is
    relative to the first point."""
    first = points[0].total_value if points else 0.0
    return [
        {
            "id": str(p.id),
            "portfolioId": str(p.portfolio_id),
            "agentId": str(p.agent_id),
            "capturedAt": p.captured_at,
            "totalValue": p.total_value,
            "cashValue": p.cash_value,
            "positionsValue": p.positions_value,
            "unrealizedPnL": p.unrealized_pnl,
            "percentChange": round((p.total_value - first) / first * 100, 6) if first else None,
            "source": p.source,
        }
        for p in points
    ]


def leaderboard_entry(s: Standing) -> m.LeaderboardEntry:
    return m.LeaderboardEntry(
        agent=m.LeaderboardAgent(
            id=str(s.agent_id),
            name=s.name,
            modelType=s.provider,  # type: ignore[arg-type]
            provider=s.strategy,
            isActive=s.is_active,
            createdAt=iso(s.created_at) or "",
        ),
        currentValue=float(s.current_value),
        performancePercent=round(s.return_pct, 6),
        drawdown=round(s.max_drawdown_pct, 6),
        rank=s.rank,
        model=s.model,
        sharpeRatio=rounded(s.sharpe),
        sortinoRatio=rounded(s.sortino),
        totalTrades=s.total_trades,
        winRate=rounded(s.win_rate_pct, 4),
        feesPaid=float(s.fees_paid),
        fallbacks=s.fallbacks,
        degraded=s.degraded,
        costUsd=float(s.cost_usd),
        lastUpdated=iso(s.last_updated),
    )


def portfolio(row: PortfolioRecord, closes: dict[int, Decimal]) -> m.Portfolio:
    """The portfolio marked at the latest closes (a position of an asset without a close
    is worth its cost basis)."""
    positions = []
    total = row.cash
    for position in row.positions:
        price = closes.get(position.asset_id)
        value = position.quantity * price if price is not None else position.cost_basis
        total += value
        positions.append(
            m.Position(
                assetSymbol=position.symbol,
                quantity=float(position.quantity),
                averagePrice=float(position.average_price),
                currentPrice=as_float(price),
                marketValue=round(float(value), 8),
                unrealizedPnL=round(float(value - position.cost_basis), 8),
            )
        )
    return m.Portfolio(
        portfolioId=str(row.id),
        agentId=str(row.agent_id),
        cash=float(row.cash),
        positions=positions,
        asOf=iso(row.as_of or row.created_at) or "",
        totalValue=round(float(total), 8),
    )


def market_price(facts: PriceFacts) -> m.MarketPrice:
    change = facts.close - facts.reference
    reference = facts.reference
    return m.MarketPrice(
        symbol=facts.symbol,
        name=facts.name,
        price=float(facts.close),
        change24h=float(change),
        changePercent24h=round(float(change / reference * 100), 6) if reference else 0.0,
        high24h=float(facts.high),
        low24h=float(facts.low),
        updatedAt=iso(facts.close_time) or "",
    )


def job(row: JobRecord) -> m.Job:
    return m.Job(
        id=str(row.id),
        kind=row.kind,
        status=row.status,
        params=row.params,
        cursor=iso(row.cursor),
        total=row.total,
        done=row.done,
        error=row.error,
        createdAt=iso(row.created_at) or "",
        updatedAt=iso(row.updated_at) or "",
    )
