"""The leaderboard row of each agent (``agent_stats``), folded forward as steps and
snapshots are written; the rules it applies live in :mod:`race.domain`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from race.domain.health import FALLBACK_HISTORY, HealthPolicy
from race.domain.metrics import EquityStats
from race.domain.money import ZERO
from race.domain.stats import fold_steps
from race.domain.step import EquityPoint, StepResult
from race.store import races
from race.store.tables import (
    AgentStatsRow,
    EquitySnapshotRow,
    PortfolioRow,
)


def _starting_capital(session: Session, race_id: int | None, agent_id: int) -> Decimal | None:
    return session.scalar(
        select(PortfolioRow.starting_capital).where(
            PortfolioRow.race_id == race_id, PortfolioRow.agent_id == agent_id
        )
    )


def _empty_stats(session: Session, race_id: int, agent_id: int) -> AgentStatsRow:
    return empty_stats(race_id, agent_id, _starting_capital(session, race_id, agent_id))


def empty_stats(race_id: int, agent_id: int, starting: Decimal | None) -> AgentStatsRow:
    """The stats row of an agent that has not decided yet in the race (``starting``: its
    capital)."""
    return AgentStatsRow(
        race_id=race_id,
        agent_id=agent_id,
        equity_state=EquityStats.starting_at(starting).to_state(),
        snapshot_count=0,
        last_captured_at=None,
        current_value=ZERO if starting is None else starting,
        max_drawdown_pct=0.0,
        total_trades=0,
        winning_trades=0,
        losing_trades=0,
        fees_paid=ZERO,
        decisions=0,
        fallbacks=0,
        prompt_tokens=0,
        completion_tokens=0,
        cost_usd=ZERO,
        recent_fallbacks="",
        degraded=False,
    )


def recompute_equity_stats(
    session: Session, agent_id: int, race_id: int | None = None
) -> EquityStats:
    """The agent's equity statistics in the race (default: live) rebuilt from its stored
    curve, starting at its starting capital (also how a state stored before ``origin``
    existed is brought up to date)."""
    race_id = races.resolve(session, race_id)
    stats = EquityStats.starting_at(_starting_capital(session, race_id, agent_id))
    rows = session.execute(
        select(EquitySnapshotRow.captured_at, EquitySnapshotRow.total_value)
        .where(EquitySnapshotRow.race_id == race_id, EquitySnapshotRow.agent_id == agent_id)
        .order_by(EquitySnapshotRow.captured_at)
    )
    for captured_at, value in rows:
        stats.add(captured_at, value)
    return stats


def update_stats(
    session: Session,
    agent_id: int,
    points: Sequence[EquityPoint],
    *,
    steps: Sequence[StepResult] = (),
    health: HealthPolicy | None = None,
    race_id: int | None = None,
) -> bool | None:
    """Fold new equity points and steps into the agent's leaderboard row in the race
    (default: live). A point older than the newest one already counted triggers a full
    recompute of the equity statistics. Returns the new ``degraded`` value when the steps
    changed it, else None."""
    race_id = races.resolve(session, race_id)
    assert race_id is not None, "no live race: it is created with the first agent"
    row = session.get(AgentStatsRow, (race_id, agent_id))
    if row is None:
        row = _empty_stats(session, race_id, agent_id)
        session.add(row)
    _fold_equity(session, row, agent_id, points)
    return _fold_steps(row, steps, health)


def _fold_equity(
    session: Session, row: AgentStatsRow, agent_id: int, points: Sequence[EquityPoint]
) -> None:
    """Fold the equity points into the row's statistics (a full recompute when out of order
    or from a legacy state) and its current value."""
    stats = EquityStats.from_state(row.equity_state)
    ordered = sorted(points, key=lambda p: p.time)
    # A state stored before the curve had its origin (the starting capital) lacks the key.
    legacy = "origin" not in row.equity_state
    if legacy or (stats.last_time is not None and ordered and ordered[0].time <= stats.last_time):
        # Out of order (a late cycle after a later mark) or a state from before the origin
        # existed: rebuild from the stored curve.
        session.flush()
        stats = recompute_equity_stats(session, agent_id, row.race_id)
        latest = session.scalar(
            select(EquitySnapshotRow.total_value)
            .where(EquitySnapshotRow.race_id == row.race_id, EquitySnapshotRow.agent_id == agent_id)
            .order_by(EquitySnapshotRow.captured_at.desc())
            .limit(1)
        )
        if latest is not None:
            row.current_value = latest
    else:
        for point in ordered:
            stats.add(point.time, point.total_value)
        if ordered:
            row.current_value = ordered[-1].total_value
    row.equity_state = stats.to_state()
    row.snapshot_count = stats.count
    row.last_captured_at = stats.last_time
    row.max_drawdown_pct = stats.max_drawdown_pct
    row.sharpe = stats.sharpe
    row.sortino = stats.sortino
    row.volatility_pct = stats.volatility_pct


def _fold_steps(
    row: AgentStatsRow, steps: Sequence[StepResult], health: HealthPolicy | None
) -> bool | None:
    """Add the steps' counters to the row; the new ``degraded`` value when they changed it."""
    totals = fold_steps(steps)
    if totals.decisions:
        row.decisions += totals.decisions
        row.fallbacks += totals.fallbacks
        row.prompt_tokens += totals.prompt_tokens
        row.completion_tokens += totals.completion_tokens
        row.cost_usd += totals.cost_usd
    flip: bool | None = None
    if totals.decisions:
        recent = (row.recent_fallbacks or "") + totals.fallback_flags
        row.recent_fallbacks = recent[-FALLBACK_HISTORY:]
        degraded = (health or HealthPolicy()).degraded(row.recent_fallbacks)
        if degraded != bool(row.degraded):
            row.degraded = degraded
            flip = degraded
    if totals.trades:
        row.total_trades += totals.trades
        row.winning_trades += totals.winning_trades
        row.losing_trades += totals.losing_trades
        row.fees_paid += totals.fees_paid
    return flip


def latest_snapshot_times(
    session: Session, agent_ids: Sequence[int], race_id: int | None = None
) -> dict[int, datetime | None]:
    """Per agent, its last snapshot's time in the race (default: the live race)."""
    rows = session.execute(
        select(AgentStatsRow.agent_id, AgentStatsRow.last_captured_at).where(
            AgentStatsRow.race_id == races.resolve(session, race_id),
            AgentStatsRow.agent_id.in_(list(agent_ids)),
        )
    )
    return {agent_id: last for agent_id, last in rows}
