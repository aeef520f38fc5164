"""Reads behind an agent's analytics (:mod:`race.analysis`) and the model chat: one
decision's whole stored record, an agent's curve, trades and decisions as plain rows, the
close series of every asset, and the regimes the decisions recorded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from race.store import races
from race.store.tables import Asset, CandleRow, DecisionRow, EquitySnapshotRow, TradeRow


@dataclass(frozen=True)
class DecisionDetail:
    """Every stored column of one decision (prompt and raw answer included)."""

    id: int
    agent_id: int
    cycle_time: datetime
    action: str
    asset_symbol: str | None
    quantity: Decimal | None
    rationale: str
    cited_rules: list[str] | None
    regime: str
    market_conditions: dict[str, Any] | None
    value_before: Decimal
    value_after: Decimal
    was_validated: bool
    validation_errors: Any
    proposed_orders: Any
    fallback: bool
    fallback_reason: str | None
    raw_output: str | None
    prompt: str | None
    model: str | None
    latency_ms: int | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: Decimal | None
    confidence: float | None
    details: dict[str, Any] | None
    model_version: str | None
    race_id: int | None = None


@dataclass(frozen=True)
class CurvePoint:
    time: datetime
    total_value: Decimal
    positions_value: Decimal


@dataclass(frozen=True)
class TradeFact:
    time: datetime
    asset: str
    side: str
    quantity: Decimal
    notional: Decimal
    fee: Decimal
    realized_pnl: Decimal | None


@dataclass(frozen=True)
class DecisionFact:
    time: datetime
    action: str
    asset: str | None
    confidence: float | None
    fallback: bool
    fallback_reason: str | None
    regime: str | None
    cited_rules: list[str] | None


@dataclass(frozen=True)
class CycleRegimes:
    """The regimes the decisions of one cycle recorded, with how many recorded each."""

    cycle_time: datetime
    counts: dict[str, int]


def decision_detail(session: Session, decision_id: int) -> DecisionDetail | None:
    d = session.get(DecisionRow, decision_id)
    if d is None:
        return None
    return DecisionDetail(
        id=d.id,
        agent_id=d.agent_id,
        cycle_time=d.cycle_time,
        action=d.action,
        asset_symbol=d.asset_symbol,
        quantity=d.quantity,
        rationale=d.rationale,
        cited_rules=d.cited_rules,
        regime=d.regime,
        market_conditions=d.market_conditions,
        value_before=d.value_before,
        value_after=d.value_after,
        was_validated=d.was_validated,
        validation_errors=d.validation_errors,
        proposed_orders=d.proposed_orders,
        fallback=d.fallback,
        fallback_reason=d.fallback_reason,
        raw_output=d.raw_output,
        prompt=d.prompt,
        model=d.model,
        latency_ms=d.latency_ms,
        prompt_tokens=d.prompt_tokens,
        completion_tokens=d.completion_tokens,
        cost_usd=d.cost_usd,
        confidence=d.confidence,
        details=d.details,
        model_version=d.model_version,
        race_id=d.race_id,
    )


def curve(session: Session, agent_id: int, race_id: int | None = None) -> list[CurvePoint]:
    """The agent's whole equity curve, ascending."""
    rows = session.execute(
        select(
            EquitySnapshotRow.captured_at,
            EquitySnapshotRow.total_value,
            EquitySnapshotRow.positions_value,
        )
        .where(
            EquitySnapshotRow.race_id == races.resolve(session, race_id),
            EquitySnapshotRow.agent_id == agent_id,
        )
        .order_by(EquitySnapshotRow.captured_at)
    )
    return [CurvePoint(*row) for row in rows]


def trade_facts(session: Session, agent_id: int, race_id: int | None = None) -> list[TradeFact]:
    """The agent's trades, oldest first."""
    rows = session.execute(
        select(
            TradeRow.executed_at,
            Asset.symbol,
            TradeRow.side,
            TradeRow.quantity,
            TradeRow.notional,
            TradeRow.fee,
            TradeRow.realized_pnl,
        )
        .join(Asset, Asset.id == TradeRow.asset_id)
        .where(TradeRow.race_id == races.resolve(session, race_id), TradeRow.agent_id == agent_id)
        .order_by(TradeRow.executed_at, TradeRow.id)
    )
    return [TradeFact(*row) for row in rows]


def decision_facts(
    session: Session, agent_id: int, race_id: int | None = None
) -> list[DecisionFact]:
    """The agent's decisions (what analytics count), oldest first."""
    rows = session.execute(
        select(
            DecisionRow.cycle_time,
            DecisionRow.action,
            DecisionRow.asset_symbol,
            DecisionRow.confidence,
            DecisionRow.fallback,
            DecisionRow.fallback_reason,
            DecisionRow.regime,
            DecisionRow.cited_rules,
        )
        .where(
            DecisionRow.race_id == races.resolve(session, race_id),
            DecisionRow.agent_id == agent_id,
        )
        .order_by(DecisionRow.cycle_time)
    )
    return [DecisionFact(*row) for row in rows]


def close_series(
    session: Session, start: datetime | None = None, end: datetime | None = None
) -> dict[str, list[tuple[datetime, Decimal]]]:
    """Every asset's closes in ``[start, end]``, ascending, by symbol."""
    query = select(Asset.symbol, CandleRow.close_time, CandleRow.close).join(
        Asset, Asset.id == CandleRow.asset_id
    )
    if start is not None:
        query = query.where(CandleRow.close_time >= start)
    if end is not None:
        query = query.where(CandleRow.close_time <= end)
    out: dict[str, list[tuple[datetime, Decimal]]] = {}
    for symbol, time, close in session.execute(query.order_by(Asset.symbol, CandleRow.close_time)):
        out.setdefault(symbol, []).append((time, close))
    return out


def first_snapshot(
    session: Session, agent_ids: Sequence[int], race_id: int | None = None
) -> datetime | None:
    """The first snapshot time of these agents in the race (None: none yet)."""
    return session.scalar(
        select(func.min(EquitySnapshotRow.captured_at)).where(
            EquitySnapshotRow.race_id == races.resolve(session, race_id),
            EquitySnapshotRow.agent_id.in_(list(agent_ids)),
        )
    )


def closes_from(
    session: Session, first: datetime | None
) -> dict[str, list[tuple[datetime, Decimal]]]:
    """What the analytics read of the market for curves that start at ``first``
    (:func:`race.analysis.buy_and_hold` and the latest marks): every asset's closes from the
    earliest of the assets' last closes at or before ``first`` (an entry price) to the latest
    stored — not the whole history before it. ``first`` None: every close."""
    if first is None:
        return close_series(session)
    latest = (
        select(func.max(CandleRow.close_time).label("entry"))
        .where(CandleRow.close_time <= first)
        .group_by(CandleRow.asset_id)
        .subquery()
    )
    start = session.scalar(select(func.min(latest.c.entry)))
    return close_series(session, first if start is None else start)


def recent_closes(session: Session, symbol: str, count: int) -> list[tuple[datetime, Decimal]]:
    """The asset's last ``count`` closes, ascending."""
    rows = session.execute(
        select(CandleRow.close_time, CandleRow.close)
        .join(Asset, Asset.id == CandleRow.asset_id)
        .where(Asset.symbol == symbol)
        .order_by(CandleRow.close_time.desc())
        .limit(count)
    ).all()
    return [(t, c) for t, c in reversed(rows)]


def regime_history(session: Session, limit: int, race_id: int | None = None) -> list[CycleRegimes]:
    """Per cycle of the race (default: live; newest first, at most ``limit`` cycles), the
    regimes its decisions recorded and how many recorded each."""
    race = races.resolve(session, race_id)
    times = list(
        session.scalars(
            select(DecisionRow.cycle_time)
            .where(DecisionRow.race_id == race)
            .group_by(DecisionRow.cycle_time)
            .order_by(DecisionRow.cycle_time.desc())
            .limit(limit)
        )
    )
    if not times:
        return []
    counts: dict[datetime, dict[str, int]] = {t: {} for t in times}
    rows = session.execute(
        select(DecisionRow.cycle_time, DecisionRow.regime, func.count())
        .where(DecisionRow.race_id == race, DecisionRow.cycle_time.in_(times))
        .group_by(DecisionRow.cycle_time, DecisionRow.regime)
    )
    for time, regime, n in rows:
        counts[time][regime] = int(n)
    return [CycleRegimes(t, dict(sorted(counts[t].items()))) for t in times]
