"""Agents, assets and portfolio states, on a SQLAlchemy session."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from race.domain.agent import AgentSpec
from race.domain.model import Portfolio, Position, Provider
from race.domain.money import ZERO
from race.store import races
from race.store.tables import (
    AgentRow,
    Asset,
    DecisionRow,
    PortfolioRow,
    PositionRow,
)


class ConcurrentUpdate(RuntimeError):
    """Another writer moved a portfolio first; the caller reloads and skips or retries."""


@dataclass
class PortfolioState:
    agent_id: int
    portfolio_id: int
    race_id: int
    version: int
    as_of: datetime | None
    portfolio: Portfolio
    starting_capital: Decimal
    created_at: datetime | None = None
    """When the agent joined the race (its portfolio row was created)."""


def enabled_assets(session: Session) -> list[Asset]:
    return list(session.scalars(select(Asset).where(Asset.enabled).order_by(Asset.id)))


def asset_ids(session: Session) -> dict[str, int]:
    return {symbol: id_ for id_, symbol in session.execute(select(Asset.id, Asset.symbol))}


def to_spec(row: AgentRow) -> AgentSpec:
    try:
        provider, problem = Provider(row.provider), None
    except ValueError:
        # Refused by the schema's check since migration 0006; kept apart all the same, so
        # one bad row is that agent's recorded HOLD, never a stopped cycle.
        known = ", ".join(p.value for p in Provider)
        provider, problem = Provider.MOCK, f"unknown provider {row.provider!r} (one of {known})"
    return AgentSpec(
        id=row.id,
        name=row.name,
        provider=provider,
        problem=problem,
        model=row.model,
        strategy=row.strategy,
        instructions=row.instructions,
        params=dict(row.params or {}),
    )


def active_agents(session: Session, agent_ids: Iterable[int] | None = None) -> list[AgentSpec]:
    query = select(AgentRow).where(AgentRow.is_active).order_by(AgentRow.id)
    if agent_ids is not None:
        query = query.where(AgentRow.id.in_(list(agent_ids)))
    return [to_spec(row) for row in session.scalars(query)]


# ---------------------------------------------------------------- portfolios


def portfolio_states(
    session: Session, agent_ids: Sequence[int], race_id: int | None = None
) -> dict[int, PortfolioState]:
    """The agents' portfolios in the race (default: the live race)."""
    if not agent_ids:
        return {}
    rows = session.execute(
        select(PortfolioRow).where(
            PortfolioRow.race_id == races.resolve(session, race_id),
            PortfolioRow.agent_id.in_(list(agent_ids)),
        )
    ).scalars()
    states: dict[int, PortfolioState] = {}
    by_portfolio: dict[int, PortfolioState] = {}
    for row in rows:
        state = PortfolioState(
            agent_id=row.agent_id,
            portfolio_id=row.id,
            race_id=row.race_id,
            version=row.version,
            as_of=row.as_of,
            portfolio=Portfolio(cash=row.cash, positions={}),
            starting_capital=row.starting_capital,
            created_at=row.created_at,
        )
        states[row.agent_id] = state
        by_portfolio[row.id] = state
    if by_portfolio:
        positions: dict[int, dict[str, Position]] = {pid: {} for pid in by_portfolio}
        query = (
            select(PositionRow, Asset.symbol)
            .join(Asset, Asset.id == PositionRow.asset_id)
            .where(PositionRow.portfolio_id.in_(list(by_portfolio)))
            .order_by(PositionRow.portfolio_id, Asset.id)
        )
        for position, symbol in session.execute(query):
            positions[position.portfolio_id][symbol] = Position(
                symbol, position.quantity, position.average_price, position.cost_basis
            )
        for pid, state in by_portfolio.items():
            state.portfolio = Portfolio(cash=state.portfolio.cash, positions=positions[pid])
    return states


def spent_today(
    session: Session,
    cycle_time: datetime,
    agent_ids: Sequence[int] | None = None,
    race_id: int | None = None,
) -> dict[int, Decimal]:
    """Per agent, the summed ``cost_usd`` of its decisions in the race (default: live)
    earlier in ``cycle_time``'s UTC day."""
    day_start = cycle_time.replace(hour=0, minute=0, second=0, microsecond=0)
    query = (
        select(DecisionRow.agent_id, func.sum(DecisionRow.cost_usd))
        .where(
            DecisionRow.race_id == races.resolve(session, race_id),
            DecisionRow.cycle_time >= day_start,
            DecisionRow.cycle_time < cycle_time,
            DecisionRow.cost_usd.is_not(None),
        )
        .group_by(DecisionRow.agent_id)
    )
    if agent_ids is not None:
        query = query.where(DecisionRow.agent_id.in_(list(agent_ids)))
    return {agent_id: total or ZERO for agent_id, total in session.execute(query)}


def decided_agents(session: Session, cycle_time: datetime, race_id: int | None = None) -> set[int]:
    """The agents that decided ``cycle_time`` in the race (default: the live race)."""
    query = select(DecisionRow.agent_id).where(
        DecisionRow.race_id == races.resolve(session, race_id),
        DecisionRow.cycle_time == cycle_time,
    )
    return set(session.scalars(query))
