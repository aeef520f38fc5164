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
from race.store.bulk import allocate_ids, bulk_insert, insert_values
from race.store.portfolios import ConcurrentUpdate, PortfolioState
from race.store.tables import (
    DecisionRow,
    EquitySnapshotRow,
    PortfolioRow,
    PositionRow,
    TradeRow,
)

_DECISION_KEYS = (
    "race_id",
    "agent_id",
    "cycle_time",
    "action",
    "asset_symbol",
    "quantity",
    "rationale",
    "cited_rules",
    "regime",
    "market_conditions",
    "value_before",
    "value_after",
    "was_validated",
    "validation_errors",
    "proposed_orders",
    "fallback",
    "fallback_reason",
    "raw_output",
    "prompt",
    "model",
    "latency_ms",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "confidence",
    "details",
    "model_version",
)


def _decision_values(race_id: int, agent_id: int, step: StepResult) -> tuple[Any, ...]:
    """A decision's row as values in :data:`_DECISION_KEYS` order."""
    d = step.decision
    return (
        race_id,
        agent_id,
        d.cycle_time,
        d.action.value,
        d.asset,
        d.quantity,
        d.rationale,
        d.cited_rules,
        d.regime,
        d.market_conditions,
        d.value_before,
        d.value_after,
        d.was_validated,
        [n.as_dict() for n in d.notes] or None,
        d.proposed_orders,
        d.fallback,
        d.fallback_reason,
        d.raw_output,
        d.prompt,
        d.model,
        d.latency_ms,
        d.prompt_tokens,
        d.completion_tokens,
        d.cost_usd,
        d.confidence,
        d.details,
        d.model_version,
    )


_SNAPSHOT_KEYS = (
    "race_id",
    "agent_id",
    "portfolio_id",
    "captured_at",
    "total_value",
    "cash_value",
    "positions_value",
    "unrealized_pnl",
    "source",
)


def _snapshot_values(state: PortfolioState, point: EquityPoint, source: str) -> tuple[Any, ...]:
    """A snapshot's row as values in :data:`_SNAPSHOT_KEYS` order."""
    return (
        state.race_id,
        state.agent_id,
        state.portfolio_id,
        point.time,
        point.total_value,
        point.cash_value,
        point.positions_value,
        point.unrealized_pnl,
        source,
    )


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
    decision_rows = [
        _decision_values(batch.state.race_id, batch.state.agent_id, step) for batch, step in owners
    ]
    # Claim the portfolios first: a concurrent writer of the same agent fails here, before
    # anything else is written (and on SQLite the write lock is already ours).
    _claim_portfolios(session, batches)
    ids = _insert_decisions(session, decision_rows)
    trade_rows, snapshot_rows = _trade_and_snapshot_rows(ids, owners, assets)
    if trade_rows:
        bulk_insert(session, TradeRow.__table__, trade_rows)
    _drop_clashing_marks(session, batches)
    _insert_snapshots(session, snapshot_rows)
    _replace_positions(session, batches, assets)
    changed = _update_batch_stats(session, batches, health)
    for batch in batches:
        last = batch.steps[-1]
        batch.state.version += len(batch.steps)
        batch.state.as_of = last.decision.cycle_time
        batch.state.portfolio = last.portfolio
    return changed


def _claim_portfolios(session: Session, batches: Sequence[AgentBatch]) -> None:
    """Compare-and-set each portfolio on its version; :class:`ConcurrentUpdate` if it moved."""
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


def _insert_decisions(session: Session, decision_rows: list[tuple[Any, ...]]) -> list[int]:
    """Insert the decision rows in order; their ids, in the same order."""
    ids = allocate_ids(session, DecisionRow, len(decision_rows))
    if ids is None:
        ids = list(
            session.scalars(
                insert(DecisionRow).returning(DecisionRow.id, sort_by_parameter_order=True),
                [dict(zip(_DECISION_KEYS, row, strict=True)) for row in decision_rows],
            )
        )
    else:
        insert_values(
            session,
            DecisionRow.__table__,
            ("id", *_DECISION_KEYS),
            [(decision_id, *row) for decision_id, row in zip(ids, decision_rows, strict=True)],
        )
    return ids


def _trade_and_snapshot_rows(
    ids: Sequence[int],
    owners: Sequence[tuple[AgentBatch, StepResult]],
    assets: Mapping[str, int],
) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    """The trade rows (one per fill) and the cycle snapshot rows (one per step)."""
    trade_rows: list[dict[str, Any]] = []
    snapshot_rows: list[tuple[Any, ...]] = []
    for decision_id, (batch, step) in zip(ids, owners, strict=True):
        agent_id = batch.state.agent_id
        for sequence, fill in enumerate(step.fills):
            trade_rows.append(
                {
                    "decision_id": decision_id,
                    "sequence": sequence,
                    "race_id": batch.state.race_id,
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
        snapshot_rows.append(_snapshot_values(batch.state, step.equity, "cycle"))
    return trade_rows, snapshot_rows


def _drop_clashing_marks(session: Session, batches: Sequence[AgentBatch]) -> None:
    """A mark-to-market taken at the same time as a decision gives way to the decision's own
    snapshot (the portfolio after the step)."""
    for batch in batches:
        first, last = batch.steps[0].decision.cycle_time, batch.steps[-1].decision.cycle_time
        marked = select(EquitySnapshotRow.captured_at).where(
            EquitySnapshotRow.race_id == batch.state.race_id,
            EquitySnapshotRow.agent_id == batch.state.agent_id,
            EquitySnapshotRow.source == "mark",
            EquitySnapshotRow.captured_at >= first,
            EquitySnapshotRow.captured_at <= last,
        )
        clashes = set(session.scalars(marked)) & {s.decision.cycle_time for s in batch.steps}
        if clashes:
            session.execute(
                delete(EquitySnapshotRow).where(
                    EquitySnapshotRow.race_id == batch.state.race_id,
                    EquitySnapshotRow.agent_id == batch.state.agent_id,
                    EquitySnapshotRow.source == "mark",
                    EquitySnapshotRow.captured_at.in_(sorted(clashes)),
                )
            )


def _replace_positions(
    session: Session, batches: Sequence[AgentBatch], assets: Mapping[str, int]
) -> None:
    """Replace the batches' positions by those of their last step."""
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


def _update_batch_stats(
    session: Session, batches: Sequence[AgentBatch], health: HealthPolicy | None
) -> dict[int, bool]:
    """Update each agent's stats; the agents whose ``degraded`` flag changed."""
    changed: dict[int, bool] = {}
    for batch in batches:
        flip = update_stats(
            session,
            batch.state.agent_id,
            [s.equity for s in batch.steps],
            steps=batch.steps,
            health=health or HealthPolicy(),
            race_id=batch.state.race_id,
        )
        if flip is not None:
            changed[batch.state.agent_id] = flip
    return changed


def _insert_snapshots(session: Session, rows: list[tuple[Any, ...]]) -> None:
    insert_values(session, EquitySnapshotRow.__table__, _SNAPSHOT_KEYS, rows)


def write_marks(session: Session, marks: Sequence[tuple[PortfolioState, EquityPoint]]) -> int:
    """Mark-to-market snapshots; one per agent and time (existing ones are kept)."""
    written = 0
    for state, point in marks:
        exists = session.scalar(
            select(func.count())
            .select_from(EquitySnapshotRow)
            .where(
                EquitySnapshotRow.race_id == state.race_id,
                EquitySnapshotRow.agent_id == state.agent_id,
                EquitySnapshotRow.captured_at == point.time,
            )
        )
        if exists:
            continue
        _insert_snapshots(session, [_snapshot_values(state, point, "mark")])
        update_stats(session, state.agent_id, [point], race_id=state.race_id)
        written += 1
    return written
