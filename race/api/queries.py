"""Read-only queries behind the API. They never write; leaderboard figures come from the
per-agent stats kept up to date by the engine, not from the whole equity curve."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from race.api import models as m
from race.domain.metrics import EquityStats
from race.domain.money import ZERO
from race.domain.timeutil import iso
from race.leaderboard import Standing, standings
from race.store.tables import (
    AgentRow,
    AgentStatsRow,
    Asset,
    CandleRow,
    CycleRow,
    DecisionRow,
    EquitySnapshotRow,
    JobRow,
    PortfolioRow,
    PositionRow,
    TradeRow,
)

DAY = timedelta(hours=24)


def _f(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _round(value: float | None, places: int = 6) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, places)


# ---------------------------------------------------------------- agents


def agent_summaries(session: Session) -> list[m.AgentSummary]:
    return [
        m.AgentSummary(
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
        for s in standings(session)
    ]


def _standing(session: Session, agent_id: int) -> Standing | None:
    return next((s for s in standings(session) if s.agent_id == agent_id), None)


def _calmar(state: dict[str, Any] | None, max_drawdown_pct: float) -> float | None:
    """Annualised return over the curve / max drawdown (None when undefined)."""
    if not state:
        return None
    stats = EquityStats.from_state(state)
    if (
        stats.first_time is None
        or stats.last_time is None
        or stats.first_value <= 0
        or max_drawdown_pct <= 0
    ):
        return None
    span = stats.last_time - stats.first_time
    if span <= timedelta(0):
        return None
    growth = stats.last_value / stats.first_value
    if growth <= 0:
        return None
    annual = growth ** (timedelta(days=365) / span) - 1.0
    return _round(annual / (max_drawdown_pct / 100.0), 4)


def performance(session: Session, standing: Standing, now: datetime) -> m.PerformanceMetrics:
    state = session.scalar(
        select(AgentStatsRow.equity_state).where(AgentStatsRow.agent_id == standing.agent_id)
    )
    return m.PerformanceMetrics(
        agentId=str(standing.agent_id),
        initialValue=float(standing.starting_capital),
        currentValue=float(standing.current_value),
        totalReturn=float(standing.total_return),
        percentReturn=round(standing.return_pct, 6),
        maxDrawdown=round(standing.max_drawdown_pct, 6),
        sharpeRatio=_round(standing.sharpe),
        totalTrades=standing.total_trades,
        winningTrades=standing.winning_trades,
        losingTrades=standing.losing_trades,
        winRate=round(standing.win_rate_pct or 0.0, 4),
        calculatedAt=iso(standing.last_updated or now) or "",
        sortinoRatio=_round(standing.sortino),
        volatility=_round(standing.volatility_pct),
        calmarRatio=_calmar(state, standing.max_drawdown_pct),
        feesPaid=float(standing.fees_paid),
        decisions=standing.decisions,
        fallbacks=standing.fallbacks,
        fallbackRate=_round(standing.fallback_rate),
        degraded=standing.degraded,
        promptTokens=standing.prompt_tokens,
        completionTokens=standing.completion_tokens,
        costUsd=float(standing.cost_usd),
    )


def _snapshot(row: EquitySnapshotRow, first_value: Decimal | None) -> m.EquitySnapshot:
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


def agent_exists(session: Session, agent_id: int) -> bool:
    return session.get(AgentRow, agent_id) is not None


def agent_detail(session: Session, agent_id: int, now: datetime) -> m.AgentDetail | None:
    standing = _standing(session, agent_id)
    if standing is None:
        return None
    latest = session.scalar(
        select(EquitySnapshotRow)
        .where(EquitySnapshotRow.agent_id == agent_id)
        .order_by(EquitySnapshotRow.captured_at.desc())
        .limit(1)
    )
    return m.AgentDetail(
        id=str(agent_id),
        name=standing.name,
        strategy=standing.strategy,
        isActive=standing.is_active,
        createdAt=iso(standing.created_at) or "",
        provider=standing.provider,
        model=standing.model,
        latestSnapshot=None if latest is None else _snapshot(latest, standing.starting_capital),
        performance=performance(session, standing, now),
    )


def downsample(points: list[tuple[int, Decimal]], max_points: int) -> list[int]:
    """Indices of at most ``max_points`` points (``max_points`` ≥ 2), always keeping the
    first and the last, the minimum and the maximum when there is room (``max_points`` ≥ 4),
    and the rest evenly spread. ``points`` are (id, value) in time order."""
    n = len(points)
    if n <= max_points:
        return list(range(n))
    values = [v for _, v in points]
    keep = {0, n - 1}
    extremes = [values.index(max(values)), values.index(min(values))]
    for index in extremes:
        if len(keep) < max_points:
            keep.add(index)
    slots = max_points - len(keep)
    if slots > 0:
        step = (n - 1) / (slots + 1)
        for k in range(1, slots + 1):
            candidate = round(step * k)
            # Step past indices already kept so every slot is used.
            while candidate in keep and candidate < n - 1:
                candidate += 1
            if candidate not in keep:
                keep.add(candidate)
    return sorted(keep)


def equity(
    session: Session,
    agent_id: int,
    start: datetime | None,
    end: datetime | None,
    max_points: int | None,
) -> list[m.EquitySnapshot]:
    where = [EquitySnapshotRow.agent_id == agent_id]
    if start is not None:
        where.append(EquitySnapshotRow.captured_at >= start)
    if end is not None:
        where.append(EquitySnapshotRow.captured_at <= end)
    if max_points is None:
        rows = list(
            session.scalars(
                select(EquitySnapshotRow).where(*where).order_by(EquitySnapshotRow.captured_at)
            )
        )
    else:
        light = session.execute(
            select(EquitySnapshotRow.id, EquitySnapshotRow.total_value)
            .where(*where)
            .order_by(EquitySnapshotRow.captured_at)
        ).all()
        points = [(row[0], row[1]) for row in light]
        ids = [points[i][0] for i in downsample(points, max_points)]
        rows = []
        for chunk_start in range(0, len(ids), 500):
            chunk = ids[chunk_start : chunk_start + 500]
            rows.extend(
                session.scalars(select(EquitySnapshotRow).where(EquitySnapshotRow.id.in_(chunk)))
            )
        rows.sort(key=lambda r: r.captured_at)
    first = rows[0].total_value if rows else None
    return [_snapshot(row, first) for row in rows]


# ---------------------------------------------------------------- leaderboard


def leaderboard(session: Session) -> list[m.LeaderboardEntry]:
    return [
        m.LeaderboardEntry(
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
            sharpeRatio=_round(s.sharpe),
            sortinoRatio=_round(s.sortino),
            totalTrades=s.total_trades,
            winRate=_round(s.win_rate_pct, 4),
            feesPaid=float(s.fees_paid),
            fallbacks=s.fallbacks,
            degraded=s.degraded,
            costUsd=float(s.cost_usd),
            lastUpdated=iso(s.last_updated),
        )
        for s in standings(session)
    ]


# ---------------------------------------------------------------- trades, decisions


def trades(session: Session, agent_id: int, limit: int, offset: int) -> m.TradePage:
    total = (
        session.scalar(
            select(func.count()).select_from(TradeRow).where(TradeRow.agent_id == agent_id)
        )
        or 0
    )
    rows = session.execute(
        select(TradeRow, Asset.symbol, DecisionRow.rationale, DecisionRow.regime)
        .join(Asset, Asset.id == TradeRow.asset_id)
        .join(DecisionRow, DecisionRow.id == TradeRow.decision_id)
        .where(TradeRow.agent_id == agent_id)
        .order_by(TradeRow.executed_at.desc(), TradeRow.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return m.TradePage(
        trades=[
            m.Trade(
                id=str(t.id),
                assetSymbol=symbol,
                executedAt=iso(t.executed_at) or "",
                quantity=float(t.quantity),
                price=float(t.price),
                side="Buy" if t.side == "BUY" else "Sell",
                totalValue=float(t.notional),
                rationale=rationale,
                detectedRegime=regime,
                fee=float(t.fee),
                slippage=float(t.slippage_cost),
                realizedPnL=_f(t.realized_pnl),
                decisionId=str(t.decision_id),
            )
            for t, symbol, rationale, regime in rows
        ],
        totalCount=total,
        limit=limit,
        offset=offset,
    )


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def decisions(session: Session, agent_id: int, limit: int) -> list[m.DecisionLog]:
    rows = session.scalars(
        select(DecisionRow)
        .where(DecisionRow.agent_id == agent_id)
        .order_by(DecisionRow.cycle_time.desc())
        .limit(limit)
    )
    return [
        m.DecisionLog(
            id=str(d.id),
            agentId=str(d.agent_id),
            timestamp=iso(d.cycle_time) or "",
            action=d.action,  # type: ignore[arg-type]
            asset=d.asset_symbol,
            quantity=_f(d.quantity),
            rationale=d.rationale or "",
            citedRuleIds=_json(list(d.cited_rules or [])),
            detectedRegime=d.regime or "UNKNOWN",
            portfolioValueBefore=float(d.value_before),
            portfolioValueAfter=float(d.value_after),
            marketConditions=_json(d.market_conditions or {}),
            wasValidated=d.was_validated,
            validationErrors=None if not d.validation_errors else _json(d.validation_errors),
            createdAt=iso(d.cycle_time) or "",
            fallback=d.fallback,
            fallbackReason=d.fallback_reason,
            latencyMs=d.latency_ms,
            promptTokens=d.prompt_tokens,
            completionTokens=d.completion_tokens,
            costUsd=_f(d.cost_usd),
            model=d.model,
            confidence=_round(d.confidence),
        )
        for d in rows
    ]


# ---------------------------------------------------------------- portfolio, market


def _latest_closes(session: Session) -> dict[int, Decimal]:
    latest = (
        select(CandleRow.asset_id, func.max(CandleRow.close_time).label("t"))
        .group_by(CandleRow.asset_id)
        .subquery()
    )
    rows = session.execute(
        select(CandleRow.asset_id, CandleRow.close).join(
            latest, (CandleRow.asset_id == latest.c.asset_id) & (CandleRow.close_time == latest.c.t)
        )
    )
    return {asset_id: close for asset_id, close in rows}


def portfolio(session: Session, agent_id: int) -> m.Portfolio | None:
    row = session.scalar(select(PortfolioRow).where(PortfolioRow.agent_id == agent_id))
    if row is None:
        return None
    closes = _latest_closes(session)
    positions = []
    total = row.cash
    for position, symbol in session.execute(
        select(PositionRow, Asset.symbol)
        .join(Asset, Asset.id == PositionRow.asset_id)
        .where(PositionRow.portfolio_id == row.id)
        .order_by(Asset.symbol)
    ):
        price = closes.get(position.asset_id)
        value = position.quantity * price if price is not None else position.cost_basis
        total += value
        positions.append(
            m.Position(
                assetSymbol=symbol,
                quantity=float(position.quantity),
                averagePrice=float(position.average_price),
                currentPrice=_f(price),
                marketValue=round(float(value), 8),
                unrealizedPnL=round(float(value - position.cost_basis), 8),
            )
        )
    return m.Portfolio(
        portfolioId=str(row.id),
        agentId=str(agent_id),
        cash=float(row.cash),
        positions=positions,
        asOf=iso(row.as_of or row.created_at) or "",
        totalValue=round(float(total), 8),
    )


def market_price(session: Session, asset: Asset) -> m.MarketPrice | None:
    latest = session.scalar(
        select(CandleRow)
        .where(CandleRow.asset_id == asset.id)
        .order_by(CandleRow.close_time.desc())
        .limit(1)
    )
    if latest is None:
        return None
    since = latest.close_time - DAY
    reference = session.scalar(
        select(CandleRow.close)
        .where(CandleRow.asset_id == asset.id, CandleRow.close_time <= since)
        .order_by(CandleRow.close_time.desc())
        .limit(1)
    )
    if reference is None:  # less than a day of history: compare with the oldest candle
        reference = session.scalar(
            select(CandleRow.open)
            .where(CandleRow.asset_id == asset.id)
            .order_by(CandleRow.close_time)
            .limit(1)
        )
    high, low = session.execute(
        select(func.max(CandleRow.high), func.min(CandleRow.low)).where(
            CandleRow.asset_id == asset.id, CandleRow.close_time > since
        )
    ).one()
    change = latest.close - reference
    return m.MarketPrice(
        symbol=asset.symbol,
        name=asset.name,
        price=float(latest.close),
        change24h=float(change),
        changePercent24h=round(float(change / reference * 100), 6) if reference else 0.0,
        high24h=float(high),
        low24h=float(low),
        updatedAt=iso(latest.close_time) or "",
    )


def market_prices(session: Session) -> list[m.MarketPrice]:
    prices = []
    for asset in session.scalars(select(Asset).order_by(Asset.id)):
        price = market_price(session, asset)
        if price is not None:
            prices.append(price)
    return prices


def asset_by_symbol(session: Session, symbol: str) -> Asset | None:
    return session.scalar(select(Asset).where(Asset.symbol == symbol.upper()))


# ---------------------------------------------------------------- health, jobs


def health_facts(session: Session) -> tuple[int, datetime | None, CycleRow | None]:
    active = (
        session.scalar(select(func.count()).select_from(AgentRow).where(AgentRow.is_active)) or 0
    )
    latest = session.scalar(select(func.max(CandleRow.close_time)))
    cycle = session.scalar(select(CycleRow).order_by(CycleRow.cycle_time.desc()).limit(1))
    return active, latest, cycle


def job(session: Session, job_id: int) -> m.Job | None:
    row = session.get(JobRow, job_id)
    if row is None:
        return None
    return m.Job(
        id=str(row.id),
        kind=row.kind,
        status=row.status,
        params=dict(row.params or {}),
        cursor=iso(row.cursor),
        total=row.total,
        done=row.done,
        error=row.error,
        createdAt=iso(row.created_at) or "",
        updatedAt=iso(row.updated_at) or "",
    )
