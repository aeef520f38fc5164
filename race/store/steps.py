"""Writing agents' steps: decisions, trades, equity snapshots, portfolios, positions and
stats of a batch, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from race.domain.health import HealthPolicy
from race.domain.step import EquityPoint, StepResult
from race.store.agent_stats import update_stats
from race.store.bulk import allocate_ids, bulk_insert
from race.store.portfolios import ConcurrentUpdate, PortfolioState
from race.store.tables import (
    DecisionRow,
    EquitySnapshotRow,
    PortfolioRow,
    PositionRow,
    TradeRow,
)


def _decision_row(agent_id: int, step: StepResult) -> dict[str, Any]:
    d = step.decision
    return {
        "agent_id": agent_id,
        "cycle_time": d.cycle_time,
        "action": d.action.value,
        "asset_symbol": d.asset,
        "quantity": d.quantity,
        "rationale": d.rationale,
        "cited_rules": d.cited_rules,
        "regime": d.regime,
        "market_conditions": d.market_conditions,
        "value_before": d.value_before,
        "value_after": d.value_after,
        "was_validated": d.was_validated,
        "validation_errors": [n.as_dict() for n in d.notes] or None,
        "proposed_orders": d.proposed_orders,
        "fallback": d.fallback,
        "fallback_reason": d.fallback_reason,
        "raw_output": d.raw_output,
        "prompt": d.prompt,
        "model": d.model,
        "latency_ms": d.latency_ms,
        "prompt_tokens": d.prompt_tokens,
        "completion_tokens": d.completion_tokens,
        "cost_usd": d.cost_usd,
        "confidence": d.confidence,
        "details": d.details,
    }


def _snapshot_row(
    agent_id: int, portfolio_id: int, point: EquityPoint, source: str
) -> dict[str, Any]:
    return {
        "agent_id": agent_id,
        "portfolio_id": portfolio_id,
        "captured_at": point.time,
        "total_value": point.total_value,
        "cash_value": point.cash_value,
        "positions_value": point.positions_value,
        "unrealized_pnl": point.unrealized_pnl,
        "source": source,
    }


@dataclass
class AgentBatch:
    """Consecutive steps of one agent, applied on top of ``state`` (its stored version)."""

    state: PortfolioState
    steps: list[StepResult] = field(default_factory=list)


def write_batches(
    session: Session,
    batches: Sequence[AgentBatch],
    assets: Mapping[str, int],
    health: HealthPolicy | None = None,
) -> dict[int, bool]:
    """Persist steps atomically with the caller's transaction: decisions, trades, equity
    snapshots, the portfolios (compare-and-set on their version), positions and stats.
    Raises :class:`ConcurrentUpdate` if a portfolio moved underneath; the caller rolls back.
    Returns the agents whose ``degraded`` flag changed, with the new value.
    """
    batches = [b for b in batches if b.steps]
    if not batches:
        return {}
    # Rows go in time order, then agent order (as live cycles write them), so ids do not
    # depend on how a replay was cut into chunks.
    owners: list[tuple[AgentBatch, StepResult]] = sorted(
        ((batch, step) for batch in batches for step in batch.steps),
        key=lambda pair: (pair[1].decision.cycle_time, pair[0].state.agent_id),
    )
    decision_rows = [_decision_row(batch.state.agent_id, step) for batch, step in owners]
    # Claim the portfolios first: a concurrent writer of the same agent fails here, before
    # anything else is written (and on SQLite the write lock is already ours).
    for batch in batches:
        last = batch.steps[-1]
        result = session.execute(
            update(PortfolioRow)
            .where(
                PortfolioRow.id == batch.state.portfolio_id,
                PortfolioRow.version == batch.state.version,
            )
            .values(
                cash=last.portfolio.cash,
                as_of=last.decision.cycle_time,
                version=batch.state.version + len(batch.steps),
            )
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise ConcurrentUpdate(
                f"portfolio of agent {batch.state.agent_id} changed while its step was computed"
            )
    ids = allocate_ids(session, DecisionRow, len(decision_rows))
    if ids is None:
        ids = list(
            session.scalars(
                insert(DecisionRow).returning(DecisionRow.id, sort_by_parameter_order=True),
                decision_rows,
            )
        )
    else:
        for row, decision_id in zip(decision_rows, ids, strict=True):
            row["id"] = decision_id
        bulk_insert(session, DecisionRow.__table__, decision_rows)
    trade_rows: list[dict[str, Any]] = []
    snapshot_rows: list[dict[str, Any]] = []
    for decision_id, (batch, step) in zip(ids, owners, strict=True):
        agent_id = batch.state.agent_id
        for sequence, fill in enumerate(step.fills):
            trade_rows.append(
                {
                    "decision_id": decision_id,
                    "sequence": sequence,
                    "agent_id": agent_id,
                    "asset_id": assets[fill.asset],
                    "executed_at": step.decision.cycle_time,
                    "side": fill.side.value,
                    "quantity": fill.quantity,
                    "reference_price": fill.reference_price,
                    "price": fill.price,
                    "notional": fill.notional,
                    "fee": fill.fee,
                    "slippage_cost": fill.slippage_cost,
                    "realized_pnl": fill.realized_pnl,
                }
            )
        snapshot_rows.append(
            _snapshot_row(agent_id, batch.state.portfolio_id, step.equity, "cycle")
        )
    if trade_rows:
        bulk_insert(session, TradeRow.__table__, trade_rows)
    # A mark-to-market taken at the same time as a decision gives way to the decision's own
    # snapshot (the portfolio after the step).
    for batch in batches:
        first, last = batch.steps[0].decision.cycle_time, batch.steps[-1].decision.cycle_time
        marked = select(EquitySnapshotRow.captured_at).where(
            EquitySnapshotRow.agent_id == batch.state.agent_id,
            EquitySnapshotRow.source == "mark",
            EquitySnapshotRow.captured_at >= first,
            EquitySnapshotRow.captured_at <= last,
        )
        clashes = set(session.scalars(marked)) & {s.decision.cycle_time for s in batch.steps}
        if clashes:
            session.execute(
                delete(EquitySnapshotRow).where(
                    EquitySnapshotRow.agent_id == batch.state.agent_id,
                    EquitySnapshotRow.source == "mark",
                    EquitySnapshotRow.captured_at.in_(sorted(clashes)),
                )
            )
    _insert_snapshots(session, snapshot_rows)
    portfolio_ids = [b.state.portfolio_id for b in batches]
    session.execute(delete(PositionRow).where(PositionRow.portfolio_id.in_(portfolio_ids)))
    position_rows = [
        {
            "portfolio_id": batch.state.portfolio_id,
            "asset_id": assets[symbol],
            "quantity": position.quantity,
            "average_price": position.average_price,
            "cost_basis": position.cost_basis,
        }
        for batch in batches
        for symbol, position in batch.steps[-1].portfolio.positions.items()
    ]
    if position_rows:
        session.execute(PositionRow.__table__.insert(), position_rows)
    changed: dict[int, bool] = {}
    for batch in batches:
        flip = update_stats(
            session,
            batch.state.agent_id,
            [s.equity for s in batch.steps],
            steps=batch.steps,
            health=health or HealthPolicy(),
        )
        if flip is not None:
            changed[batch.state.agent_id] = flip
    for batch in batches:
        last = batch.steps[-1]
        batch.state.version += len(batch.steps)
        batch.state.as_of = last.decision.cycle_time
        batch.state.portfolio = last.portfolio
    return changed


def _insert_snapshots(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        bulk_insert(session, EquitySnapshotRow.__table__, rows)


def write_marks(session: Session, marks: Sequence[tuple[PortfolioState, EquityPoint]]) -> int:
    """Mark-to-market snapshots; one per agent and time (existing ones are kept)."""
    written = 0
    for state, point in marks:
        exists = session.scalar(
            select(func.count())
            .select_from(EquitySnapshotRow)
            .where(
                EquitySnapshotRow.agent_id == state.agent_id,
                EquitySnapshotRow.captured_at == point.time,
            )
        )
        if exists:
            continue
        _insert_snapshots(
            session, [_snapshot_row(state.agent_id, state.portfolio_id, point, "mark")]
        )
        update_stats(session, state.agent_id, [point])
        written += 1
    return written
