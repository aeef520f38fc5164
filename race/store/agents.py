"""Agent rows: finding, adding (with portfolio and empty stats), counting history, deleting
(on a SQLAlchemy session; the caller owns the transaction; no rules here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from race.store import races
from race.store.agent_stats import empty_stats
from race.store.tables import (
    AgentRow,
    AgentStatsRow,
    DecisionRow,
    EquitySnapshotRow,
    PortfolioRow,
    PositionRow,
    RaceParticipantRow,
    TradeRow,
)


def by_name(session: Session, name: str) -> AgentRow | None:
    """The agent whose name equals ``name`` regardless of case (as the unique index)."""
    return session.scalar(select(AgentRow).where(func.lower(AgentRow.name) == func.lower(name)))


def by_id(session: Session, agent_id: int) -> AgentRow | None:
    return session.get(AgentRow, agent_id)


def all_agents(session: Session) -> list[AgentRow]:
    """Every agent, by id."""
    return list(session.scalars(select(AgentRow).order_by(AgentRow.id)))


@dataclass(frozen=True, slots=True)
class ActiveAgent:
    id: int
    name: str
    provider: str
    model: str | None


def active(session: Session) -> list[ActiveAgent]:
    """The enabled agents' ids, names, providers and models."""
    rows = session.execute(
        select(AgentRow.id, AgentRow.name, AgentRow.provider, AgentRow.model).where(
            AgentRow.is_active
        )
    ).all()
    return [ActiveAgent(*row) for row in rows]


def any_active_of(session: Session, provider: str) -> bool:
    """Whether an enabled agent of ``provider`` exists."""
    found = session.scalar(
        select(AgentRow.id).where(AgentRow.provider == provider, AgentRow.is_active).limit(1)
    )
    return found is not None


def insert(
    session: Session,
    *,
    name: str,
    provider: str,
    model: str | None,
    strategy: str,
    instructions: str,
    params: dict[str, Any],
    starting_capital: Decimal,
    now: datetime,
) -> AgentRow:
    """A new, active agent taking part in the live race (created if missing), with its
    portfolio there (all cash) and empty stats."""
    row = AgentRow(
        name=name,
        provider=provider,
        model=model,
        strategy=strategy,
        instructions=instructions,
        params=params,
        is_active=True,
        created_at=now,
    )
    session.add(row)
    session.flush()
    race_id = races.ensure_live(session, now)
    races.join(session, race_id, row.id)
    session.add(
        PortfolioRow(
            race_id=race_id,
            agent_id=row.id,
            cash=starting_capital,
            starting_capital=starting_capital,
            as_of=None,
            version=0,
            created_at=now,
        )
    )
    session.add(empty_stats(race_id, row.id, starting_capital))
    return row


@dataclass(frozen=True, slots=True)
class History:
    decisions: int
    trades: int
    snapshots: int


def history(session: Session, agent_id: int) -> History:
    """How many decisions, trades and equity snapshots the agent has."""

    def count(table: Any) -> int:
        query = select(func.count()).select_from(table).where(table.agent_id == agent_id)
        return int(session.scalar(query) or 0)

    return History(count(DecisionRow), count(TradeRow), count(EquitySnapshotRow))


def delete_with_history(session: Session, agent_id: int) -> None:
    """The agent and everything that is its, in every race: trades, snapshots, decisions,
    positions, portfolios, stats and places among races' participants."""
    portfolio_ids = select(PortfolioRow.id).where(PortfolioRow.agent_id == agent_id)
    session.execute(delete(TradeRow).where(TradeRow.agent_id == agent_id))
    session.execute(delete(EquitySnapshotRow).where(EquitySnapshotRow.agent_id == agent_id))
    session.execute(delete(DecisionRow).where(DecisionRow.agent_id == agent_id))
    session.execute(delete(PositionRow).where(PositionRow.portfolio_id.in_(portfolio_ids)))
    session.execute(delete(PortfolioRow).where(PortfolioRow.agent_id == agent_id))
    session.execute(delete(AgentStatsRow).where(AgentStatsRow.agent_id == agent_id))
    session.execute(delete(RaceParticipantRow).where(RaceParticipantRow.agent_id == agent_id))
    session.execute(delete(AgentRow).where(AgentRow.id == agent_id))
