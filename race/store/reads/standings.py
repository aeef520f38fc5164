"""What the standings are built from: each agent, its starting capital and its stored
per-agent stats (kept up to date by the engine; never the whole equity curve)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from race.store import races
from race.store.tables import AgentRow, AgentStatsRow, PortfolioRow


@dataclass(frozen=True)
class StoredStats:
    """One agent's stats row, as stored."""

    snapshot_count: int
    current_value: Decimal
    max_drawdown_pct: float
    sharpe: float | None
    sortino: float | None
    volatility_pct: float | None
    total_trades: int
    winning_trades: int
    losing_trades: int
    fees_paid: Decimal
    decisions: int
    fallbacks: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal
    last_captured_at: datetime | None
    degraded: bool


@dataclass(frozen=True)
class AgentRecord:
    """One agent with a portfolio: who it is, what it started with, its stats (None
    before the engine wrote any)."""

    agent_id: int
    name: str
    provider: str
    model: str | None
    strategy: str
    is_active: bool
    created_at: datetime
    starting_capital: Decimal
    stats: StoredStats | None
    race_id: int | None = None
    """The race the portfolio and stats are of."""


def _stats(row: AgentStatsRow) -> StoredStats:
    return StoredStats(
        snapshot_count=row.snapshot_count,
        current_value=row.current_value,
        max_drawdown_pct=row.max_drawdown_pct,
        sharpe=row.sharpe,
        sortino=row.sortino,
        volatility_pct=row.volatility_pct,
        total_trades=row.total_trades,
        winning_trades=row.winning_trades,
        losing_trades=row.losing_trades,
        fees_paid=row.fees_paid,
        decisions=row.decisions,
        fallbacks=row.fallbacks,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        cost_usd=row.cost_usd,
        last_captured_at=row.last_captured_at,
        degraded=bool(row.degraded),
    )


def agent_records(
    session: Session, *, include_inactive: bool = True, race_id: int | None = None
) -> list[AgentRecord]:
    """Every agent that has a portfolio in the race (default: the live race; only the
    active ones unless ``include_inactive``), in no particular order."""
    race = races.resolve(session, race_id)
    query = (
        select(AgentRow, PortfolioRow.starting_capital, AgentStatsRow)
        .join(PortfolioRow, PortfolioRow.agent_id == AgentRow.id)
        .outerjoin(
            AgentStatsRow,
            (AgentStatsRow.agent_id == AgentRow.id) & (AgentStatsRow.race_id == race),
        )
        .where(PortfolioRow.race_id == race)
    )
    if not include_inactive:
        query = query.where(AgentRow.is_active)
    return [
        AgentRecord(
            agent_id=agent.id,
            name=agent.name,
            provider=agent.provider,
            model=agent.model,
            strategy=agent.strategy,
            is_active=agent.is_active,
            created_at=agent.created_at,
            starting_capital=starting,
            stats=None if stats is None else _stats(stats),
            race_id=race,
        )
        for agent, starting, stats in session.execute(query)
    ]


def equity_state(
    session: Session, agent_id: int, race_id: int | None = None
) -> dict[str, Any] | None:
    """The stored running statistics of the agent's equity curve in the race (default:
    live; :meth:`race.domain.metrics.EquityStats.to_state`), None without a stats row."""
    return session.scalar(
        select(AgentStatsRow.equity_state).where(
            AgentStatsRow.race_id == races.resolve(session, race_id),
            AgentStatsRow.agent_id == agent_id,
        )
    )
