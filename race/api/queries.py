"""Read-only queries behind the API. They never write; leaderboard figures come from the
per-agent stats kept up to date by the engine, not from the whole equity curve."""

from __future__ import annotations

import functools
import json
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    String,
    TextClause,
    column,
    func,
    select,
    text,
    type_coerce,
    values,
)
from sqlalchemy.orm import Session, aliased

from race.api import models as m
from race.domain.metrics import EquityStats
from race.domain.money import SCALE, ZERO
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
from race.store.types import UTCDateTime

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


def even_times(first: datetime, last: datetime, count: int) -> list[datetime]:
    """``count`` instants evenly spread strictly inside ``(first, last)``."""
    span = last - first
    return [first + span * k / (count + 1) for k in range(1, count + 1)]


_SNAPSHOT_COLUMNS = (
    EquitySnapshotRow.id,
    EquitySnapshotRow.portfolio_id,
    EquitySnapshotRow.agent_id,
    EquitySnapshotRow.captured_at,
    EquitySnapshotRow.total_value,
    EquitySnapshotRow.cash_value,
    EquitySnapshotRow.positions_value,
    EquitySnapshotRow.unrealized_pnl,
    EquitySnapshotRow.source,
)
_BATCH = 500
"""Ids or target times per statement (far below every backend's bind-parameter limit)."""
_KEEP = 4
"""First, last, highest, lowest: the points every downsampled curve keeps."""
_FAST_DIALECTS = ("sqlite", "postgresql")


def _sqlite_time(value: datetime) -> str:
    """How SQLAlchemy stores a UTC DATETIME on SQLite (text that sorts as time)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


@functools.cache
def _sample_statement(dialect: str, count: int) -> TextClause:
    """The snapshots ``:k0``..``:k3`` plus, for each of ``count`` target times, the agent's
    first snapshot at or after it (not after ``:last``): one index seek on (agent, time)
    per target, all in one statement. Plain SQL built once per (dialect, count), so it is
    compiled once; rows come back as the driver returns them."""
    target = "CAST(:t{} AS TIMESTAMP WITH TIME ZONE)" if dialect == "postgresql" else ":t{}"
    targets = ", ".join(f"({target.format(i)})" for i in range(count))
    keep = ", ".join(f":k{i}" for i in range(_KEEP))
    return text(
        f"WITH targets(t) AS (VALUES {targets}) "  # noqa: S608 - placeholders only
        "SELECT e.id, e.portfolio_id, e.agent_id, e.captured_at, e.total_value, "
        "e.cash_value, e.positions_value, e.unrealized_pnl, e.source "
        f"FROM equity_snapshots e WHERE e.id IN ({keep}) OR e.id IN ("
        "SELECT (SELECT s.id FROM equity_snapshots s WHERE s.agent_id = :agent "
        "AND s.captured_at >= targets.t AND s.captured_at <= :last "
        "ORDER BY s.captured_at LIMIT 1) FROM targets) "
        "ORDER BY e.captured_at"
    )


def _extreme_id(session: Session, where: list[Any], *, highest: bool) -> int | None:
    """The snapshot with the highest (or lowest) total value in the range: one seek on the
    (agent, total value, time) index; ties go to the latest (highest) or earliest (lowest)."""
    order = (
        (EquitySnapshotRow.total_value.desc(), EquitySnapshotRow.captured_at.desc())
        if highest
        else (EquitySnapshotRow.total_value, EquitySnapshotRow.captured_at)
    )
    return session.scalar(select(EquitySnapshotRow.id).where(*where).order_by(*order).limit(1))


def _rows_by_id(session: Session, columns: list[Any], ids: list[int]) -> list[Any]:
    rows: list[Any] = []
    for at in range(0, len(ids), _BATCH):
        chunk = ids[at : at + _BATCH]
        rows.extend(session.execute(select(*columns).where(EquitySnapshotRow.id.in_(chunk))))
    return rows


def _seek_ids(
    session: Session, agent_id: int, targets: list[datetime], last: datetime
) -> list[int]:
    """Portable form of the target seeks (any backend; slower to compile)."""
    found: list[int] = []
    inner = aliased(EquitySnapshotRow)
    for at in range(0, len(targets), _BATCH):
        source = values(column("t", UTCDateTime()), name="targets").data(
            [(t,) for t in targets[at : at + _BATCH]]
        )
        seek = (
            select(inner.id)
            .where(
                inner.agent_id == agent_id,
                inner.captured_at >= source.c.t,
                inner.captured_at <= last,
            )
            .order_by(inner.captured_at)
            .limit(1)
            .scalar_subquery()
        )
        found.extend(i for i in session.scalars(select(seek).select_from(source)) if i is not None)
    return found


def _downsampled(
    session: Session, agent_id: int, where: list[Any], max_points: int, columns: list[Any]
) -> list[Any] | None:
    """At most ``max_points`` snapshot rows of the range: always the first and the last,
    the highest and the lowest total value (when ``max_points`` ≥ 4), and the rest evenly
    spread in time (for each of evenly spaced instants, the first snapshot at or after it;
    a gap in the curve yields fewer points). ``None`` when the range holds no more than
    ``max_points`` snapshots (keep them all).

    The cost does not grow with the length of the curve: a count bounded by
    ``max_points``, two seeks for the ends, two for the extremes, one per target time."""
    probe = select(EquitySnapshotRow.id).where(*where).limit(max_points + 1).subquery()
    if (session.scalar(select(func.count()).select_from(probe)) or 0) <= max_points:
        return None
    ends = select(EquitySnapshotRow.id, EquitySnapshotRow.captured_at).where(*where).limit(1)
    first_id, first_at = session.execute(ends.order_by(EquitySnapshotRow.captured_at)).one()
    last_id, last_at = session.execute(ends.order_by(EquitySnapshotRow.captured_at.desc())).one()
    keep = [first_id, last_id]
    if max_points >= _KEEP:
        for highest in (True, False):
            extreme = _extreme_id(session, where, highest=highest)
            if extreme is not None and extreme not in keep:
                keep.append(extreme)
    targets = even_times(first_at, last_at, max_points - len(keep))
    dialect = session.get_bind().dialect.name
    if not targets:
        return _rows_by_id(session, columns, keep)
    if dialect not in _FAST_DIALECTS:
        ids = set(keep) | set(_seek_ids(session, agent_id, targets, last_at))
        return _rows_by_id(session, columns, sorted(ids))
    keep_params = {f"k{i}": keep[min(i, len(keep) - 1)] for i in range(_KEEP)}
    if dialect == "sqlite":
        times: list[Any] = [_sqlite_time(t) for t in targets]
        last: Any = _sqlite_time(last_at)
    else:
        times, last = list(targets), last_at
    rows: dict[int, Any] = {}
    for at in range(0, len(times), _BATCH):
        batch = times[at : at + _BATCH]
        params: dict[str, Any] = {f"t{i}": t for i, t in enumerate(batch)}
        params.update(keep_params, agent=agent_id, last=last)
        for row in session.execute(_sample_statement(dialect, len(batch)), params):
            rows[row[0]] = row
    return list(rows.values())


_EXACT_FLOAT = 2**53
_SQLITE_SCALE = 10.0**SCALE


def _sqlite_money(raw: int) -> float:
    """A stored SQLite amount (an integer count of 10⁻⁸) as the nearest float: a single
    correctly rounded division while both operands are exact doubles."""
    if -_EXACT_FLOAT < raw < _EXACT_FLOAT:
        return raw / _SQLITE_SCALE
    return float(Decimal(raw).scaleb(-SCALE))


def _sqlite_iso(raw: str) -> str:
    """Stored ``YYYY-MM-DD HH:MM:SS.ffffff`` → what :func:`iso` gives for that instant."""
    if len(raw) == 26 and raw[10] == " ":
        if raw.endswith(".000000"):
            return f"{raw[:10]}T{raw[11:19]}+00:00"
        return f"{raw[:10]}T{raw[11:]}+00:00"
    return datetime.fromisoformat(raw).replace(tzinfo=UTC).isoformat()


def _plain_iso(value: datetime) -> str:
    return iso(value) or ""


def curve_version(session: Session, agent_id: int) -> tuple[Any, ...] | None:
    """A value that changes with every write to the agent's equity curve: the engine
    updates the agent's stats row in the transaction of each snapshot it adds or replaces
    (a replaced mark comes with a new decision). None when the agent has no stats row."""
    row = session.execute(
        select(
            AgentStatsRow.snapshot_count,
            AgentStatsRow.last_captured_at,
            AgentStatsRow.current_value,
            AgentStatsRow.decisions,
        ).where(AgentStatsRow.agent_id == agent_id)
    ).first()
    return None if row is None else tuple(row)


def equity(
    session: Session,
    agent_id: int,
    start: datetime | None,
    end: datetime | None,
    max_points: int | None,
) -> list[dict[str, Any]]:
    """The equity curve of ``[start, end]``, ascending, downsampled to ``max_points``: plain
    dicts of the :class:`~race.api.models.EquitySnapshot` shape (the dashboard's hot path,
    serialised without building a model per point). ``percentChange`` is relative to the
    first point returned.

    On SQLite and PostgreSQL rows are read as the driver returns them (stored integers and
    time text on SQLite) and converted here: the generic result processors would otherwise
    dominate a 500-point response."""
    where: list[Any] = [EquitySnapshotRow.agent_id == agent_id]
    if start is not None:
        where.append(EquitySnapshotRow.captured_at >= start)
    if end is not None:
        where.append(EquitySnapshotRow.captured_at <= end)
    sqlite = session.get_bind().dialect.name == "sqlite"
    columns: list[Any] = list(_SNAPSHOT_COLUMNS)
    if sqlite:
        columns[3] = type_coerce(EquitySnapshotRow.captured_at, String)
        for i in range(4, 8):
            columns[i] = type_coerce(_SNAPSHOT_COLUMNS[i], BigInteger)
    rows = None
    if max_points is not None:
        rows = _downsampled(session, agent_id, where, max_points, columns)
    if rows is None:
        rows = list(
            session.execute(select(*columns).where(*where).order_by(EquitySnapshotRow.captured_at))
        )
    else:
        rows.sort(key=lambda r: r[3])  # time (text on SQLite sorts as time)
    money = _sqlite_money if sqlite else float
    when = _sqlite_iso if sqlite else _plain_iso
    first = money(rows[0][4]) if rows else 0.0
    out = []
    for r in rows:
        total = money(r[4])
        out.append(
            {
                "id": str(r[0]),
                "portfolioId": str(r[1]),
                "agentId": str(r[2]),
                "capturedAt": when(r[3]),
                "totalValue": total,
                "cashValue": money(r[5]),
                "positionsValue": money(r[6]),
                "unrealizedPnL": money(r[7]),
                "percentChange": round((total - first) / first * 100, 6) if first else None,
                "source": r[8],
            }
        )
    return out


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


MAX_NOTE_CHARS = 240


def _note_text(note: dict[str, Any]) -> str:
    """One short human-readable line, e.g. ``BTC clipped to the maximum order notional…``."""
    asset, order = note.get("asset"), note.get("order")
    subject = str(asset) if asset else "" if order is None else f"order {order}"
    message = str(note.get("message") or note.get("code") or "note").strip()
    outcome = str(note.get("outcome") or "").strip()
    if not outcome or message.lower().startswith(outcome.lower()):
        text = f"{subject} {message}"
    else:
        text = f"{subject} {outcome}: {message}"
    return text.strip()[:MAX_NOTE_CHARS]


def validation_fields(stored: Any) -> tuple[str | None, list[m.ValidationNote]]:
    """``validationErrors`` (a JSON array of strings, or None) and the structured notes, from
    the stored notes (objects; a plain string is taken as its own message)."""
    if not stored:
        return None, []
    texts: list[str] = []
    notes: list[m.ValidationNote] = []
    for item in stored if isinstance(stored, list) else [stored]:
        if isinstance(item, dict):
            texts.append(_note_text(item))
            order = item.get("order")
            notes.append(
                m.ValidationNote(
                    order=order if isinstance(order, int) and not isinstance(order, bool) else None,
                    asset=None if item.get("asset") is None else str(item["asset"]),
                    code=str(item.get("code") or "note"),
                    outcome=str(item.get("outcome") or ""),
                    message=str(item.get("message") or ""),
                    requested=None if item.get("requested") is None else str(item["requested"]),
                    final=None if item.get("final") is None else str(item["final"]),
                )
            )
        else:
            text = str(item)[:MAX_NOTE_CHARS]
            texts.append(text)
            notes.append(
                m.ValidationNote(
                    order=None,
                    asset=None,
                    code="note",
                    outcome="",
                    message=text,
                    requested=None,
                    final=None,
                )
            )
    return _json(texts), notes


def _executed_orders(session: Session, decision_ids: list[int]) -> dict[int, list[m.ExecutedOrder]]:
    orders: dict[int, list[m.ExecutedOrder]] = {}
    if not decision_ids:
        return orders
    rows = session.execute(
        select(TradeRow.decision_id, Asset.symbol, TradeRow.side, TradeRow.quantity, TradeRow.price)
        .join(Asset, Asset.id == TradeRow.asset_id)
        .where(TradeRow.decision_id.in_(decision_ids))
        .order_by(TradeRow.decision_id, TradeRow.sequence)
    )
    for decision_id, symbol, side, quantity, price in rows:
        orders.setdefault(decision_id, []).append(
            m.ExecutedOrder(
                asset=symbol,
                side="BUY" if side == "BUY" else "SELL",
                quantity=float(quantity),
                price=float(price),
            )
        )
    return orders


def decisions(session: Session, agent_id: int, limit: int) -> list[m.DecisionLog]:
    rows = list(
        session.scalars(
            select(DecisionRow)
            .where(DecisionRow.agent_id == agent_id)
            .order_by(DecisionRow.cycle_time.desc())
            .limit(limit)
        )
    )
    orders = _executed_orders(session, [d.id for d in rows])
    validation = {d.id: validation_fields(d.validation_errors) for d in rows}
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
            validationErrors=validation[d.id][0],
            createdAt=iso(d.cycle_time) or "",
            fallback=d.fallback,
            fallbackReason=d.fallback_reason,
            latencyMs=d.latency_ms,
            promptTokens=d.prompt_tokens,
            completionTokens=d.completion_tokens,
            costUsd=_f(d.cost_usd),
            model=d.model,
            confidence=_round(d.confidence),
            validationNotes=validation[d.id][1],
            orders=orders.get(d.id, []),
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


def last_completed_cycle(session: Session) -> datetime | None:
    """The time of the newest completed cycle."""
    return session.scalar(
        select(func.max(CycleRow.cycle_time)).where(CycleRow.status == "completed")
    )


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
