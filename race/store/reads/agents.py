"""Reads about one agent: whether it exists, its latest snapshot, its trades, its
decisions (with the orders they executed) and its portfolio."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from race.store import races
from race.store.tables import (
    AgentRow,
    Asset,
    DecisionRow,
    EquitySnapshotRow,
    PortfolioRow,
    PositionRow,
    TradeRow,
)


@dataclass(frozen=True)
class SnapshotRecord:
    id: int
    portfolio_id: int
    agent_id: int
    captured_at: datetime
    total_value: Decimal
    cash_value: Decimal
    positions_value: Decimal
    unrealized_pnl: Decimal
    source: str


@dataclass(frozen=True)
class TradeRecord:
    """A trade with its asset's symbol and its decision's rationale and regime."""

    id: int
    symbol: str
    executed_at: datetime
    side: str
    quantity: Decimal
    price: Decimal
    notional: Decimal
    fee: Decimal
    slippage_cost: Decimal
    realized_pnl: Decimal | None
    decision_id: int
    rationale: str | None
    regime: str | None


@dataclass(frozen=True)
class OrderRecord:
    """An order a decision executed (one of its trades, in sequence)."""

    decision_id: int
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal


@dataclass(frozen=True)
class DecisionRecord:
    id: int
    agent_id: int
    cycle_time: datetime
    action: str
    asset_symbol: str | None
    quantity: Decimal | None
    rationale: str | None
    cited_rules: list[str] | None
    regime: str | None
    value_before: Decimal
    value_after: Decimal
    market_conditions: dict[str, Any] | None
    was_validated: bool
    validation_errors: Any
    fallback: bool
    fallback_reason: str | None
    latency_ms: int | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: Decimal | None
    model: str | None
    confidence: float | None


@dataclass(frozen=True)
class PositionRecord:
    asset_id: int
    symbol: str
    quantity: Decimal
    average_price: Decimal
    cost_basis: Decimal


@dataclass(frozen=True)
class PortfolioRecord:
    id: int
    agent_id: int
    cash: Decimal
    as_of: datetime | None
    created_at: datetime
    positions: list[PositionRecord]


def agent_exists(session: Session, agent_id: int) -> bool:
    return session.get(AgentRow, agent_id) is not None


def latest_snapshot(
    session: Session, agent_id: int, race_id: int | None = None
) -> SnapshotRecord | None:
    row = session.scalar(
        select(EquitySnapshotRow)
        .where(
            EquitySnapshotRow.race_id == races.resolve(session, race_id),
            EquitySnapshotRow.agent_id == agent_id,
        )
        .order_by(EquitySnapshotRow.captured_at.desc())
        .limit(1)
    )
    if row is None:
        return None
    return SnapshotRecord(
        id=row.id,
        portfolio_id=row.portfolio_id,
        agent_id=row.agent_id,
        captured_at=row.captured_at,
        total_value=row.total_value,
        cash_value=row.cash_value,
        positions_value=row.positions_value,
        unrealized_pnl=row.unrealized_pnl,
        source=row.source,
    )


def trade_count(session: Session, agent_id: int, race_id: int | None = None) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(TradeRow)
            .where(
                TradeRow.race_id == races.resolve(session, race_id), TradeRow.agent_id == agent_id
            )
        )
        or 0
    )


def trades(
    session: Session, agent_id: int, limit: int, offset: int, race_id: int | None = None
) -> list[TradeRecord]:
    """A page of the agent's trades, newest first."""
    rows = session.execute(
        select(TradeRow, Asset.symbol, DecisionRow.rationale, DecisionRow.regime)
        .join(Asset, Asset.id == TradeRow.asset_id)
        .join(DecisionRow, DecisionRow.id == TradeRow.decision_id)
        .where(TradeRow.race_id == races.resolve(session, race_id), TradeRow.agent_id == agent_id)
        .order_by(TradeRow.executed_at.desc(), TradeRow.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return [
        TradeRecord(
            id=t.id,
            symbol=symbol,
            executed_at=t.executed_at,
            side=t.side,
            quantity=t.quantity,
            price=t.price,
            notional=t.notional,
            fee=t.fee,
            slippage_cost=t.slippage_cost,
            realized_pnl=t.realized_pnl,
            decision_id=t.decision_id,
            rationale=rationale,
            regime=regime,
        )
        for t, symbol, rationale, regime in rows
    ]


def executed_orders(session: Session, decision_ids: list[int]) -> list[OrderRecord]:
    """The trades of these decisions, by decision then sequence."""
    if not decision_ids:
        return []
    rows = session.execute(
        select(TradeRow.decision_id, Asset.symbol, TradeRow.side, TradeRow.quantity, TradeRow.price)
        .join(Asset, Asset.id == TradeRow.asset_id)
        .where(TradeRow.decision_id.in_(decision_ids))
        .order_by(TradeRow.decision_id, TradeRow.sequence)
    )
    return [OrderRecord(*row) for row in rows]


def _decision(d: DecisionRow) -> DecisionRecord:
    return DecisionRecord(
        id=d.id,
        agent_id=d.agent_id,
        cycle_time=d.cycle_time,
        action=d.action,
        asset_symbol=d.asset_symbol,
        quantity=d.quantity,
        rationale=d.rationale,
        cited_rules=d.cited_rules,
        regime=d.regime,
        value_before=d.value_before,
        value_after=d.value_after,
        market_conditions=d.market_conditions,
        was_validated=d.was_validated,
        validation_errors=d.validation_errors,
        fallback=d.fallback,
        fallback_reason=d.fallback_reason,
        latency_ms=d.latency_ms,
        prompt_tokens=d.prompt_tokens,
        completion_tokens=d.completion_tokens,
        cost_usd=d.cost_usd,
        model=d.model,
        confidence=d.confidence,
    )


def decisions(
    session: Session, agent_id: int, limit: int, race_id: int | None = None
) -> list[DecisionRecord]:
    """The agent's most recent decisions, newest first."""
    rows = session.scalars(
        select(DecisionRow)
        .where(
            DecisionRow.race_id == races.resolve(session, race_id),
            DecisionRow.agent_id == agent_id,
        )
        .order_by(DecisionRow.cycle_time.desc())
        .limit(limit)
    )
    return [_decision(d) for d in rows]


def portfolio(
    session: Session, agent_id: int, race_id: int | None = None
) -> PortfolioRecord | None:
    """The agent's portfolio with its positions (by symbol); None without one."""
    row = session.scalar(
        select(PortfolioRow).where(
            PortfolioRow.race_id == races.resolve(session, race_id),
            PortfolioRow.agent_id == agent_id,
        )
    )
    if row is None:
        return None
    positions = [
        PositionRecord(
            asset_id=position.asset_id,
            symbol=symbol,
            quantity=position.quantity,
            average_price=position.average_price,
            cost_basis=position.cost_basis,
        )
        for position, symbol in session.execute(
            select(PositionRow, Asset.symbol)
            .join(Asset, Asset.id == PositionRow.asset_id)
            .where(PositionRow.portfolio_id == row.id)
            .order_by(Asset.symbol)
        )
    ]
    return PortfolioRecord(
        id=row.id,
        agent_id=agent_id,
        cash=row.cash,
        as_of=row.as_of,
        created_at=row.created_at,
        positions=positions,
    )
