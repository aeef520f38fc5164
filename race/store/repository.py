"""Queries and writes of the race, on a SQLAlchemy session. No business rules here: the
rows written are those the pure core computed."""

from __future__ import annotations

import bisect
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, delete, func, insert, or_, select, text, update
from sqlalchemy.orm import Session

from race.domain.agent import AgentSpec
from race.domain.metrics import EquityStats
from race.domain.model import Candle, MarketView, Portfolio, Position, Provider
from race.domain.money import ZERO
from race.domain.step import EquityPoint, StepResult
from race.store.tables import (
    AgentRow,
    AgentStatsRow,
    Asset,
    CandleRow,
    DecisionRow,
    EquitySnapshotRow,
    PortfolioRow,
    PositionRow,
    TradeRow,
)
from race.store.types import UTCDateTime


class ConcurrentUpdate(RuntimeError):
    """Another writer moved a portfolio first; the caller reloads and skips or retries."""


@dataclass
class PortfolioState:
    agent_id: int
    portfolio_id: int
    version: int
    as_of: datetime | None
    portfolio: Portfolio
    starting_capital: Decimal
    created_at: datetime | None = None
    """When the agent joined the race (its portfolio row was created)."""


# ---------------------------------------------------------------- assets and agents


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


def portfolio_states(session: Session, agent_ids: Sequence[int]) -> dict[int, PortfolioState]:
    if not agent_ids:
        return {}
    rows = session.execute(
        select(PortfolioRow).where(PortfolioRow.agent_id.in_(list(agent_ids)))
    ).scalars()
    states: dict[int, PortfolioState] = {}
    by_portfolio: dict[int, PortfolioState] = {}
    for row in rows:
        state = PortfolioState(
            agent_id=row.agent_id,
            portfolio_id=row.id,
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
    session: Session, cycle_time: datetime, agent_ids: Sequence[int] | None = None
) -> dict[int, Decimal]:
    """Per agent, the summed ``cost_usd`` of its decisions earlier in ``cycle_time``'s UTC day."""
    day_start = cycle_time.replace(hour=0, minute=0, second=0, microsecond=0)
    query = (
        select(DecisionRow.agent_id, func.sum(DecisionRow.cost_usd))
        .where(
            DecisionRow.cycle_time >= day_start,
            DecisionRow.cycle_time < cycle_time,
            DecisionRow.cost_usd.is_not(None),
        )
        .group_by(DecisionRow.agent_id)
    )
    if agent_ids is not None:
        query = query.where(DecisionRow.agent_id.in_(list(agent_ids)))
    return {agent_id: total or ZERO for agent_id, total in session.execute(query)}


def decided_agents(session: Session, cycle_time: datetime) -> set[int]:
    return set(
        session.scalars(select(DecisionRow.agent_id).where(DecisionRow.cycle_time == cycle_time))
    )


# ---------------------------------------------------------------- market views


def market_view(
    session: Session,
    as_of: datetime,
    symbols: Mapping[str, int],
    depth: int,
    max_price_age: timedelta | None,
) -> MarketView:
    """The last ``depth`` candles closed at or before ``as_of`` for each asset."""
    return read_market_view(session, as_of, symbols, depth, max_price_age)[0]


@dataclass(frozen=True)
class ViewPin:
    """Exactly which candles a market view holds: per asset (in view order) the ids of its
    candles, as inclusive ranges of consecutive ids, and the price-age rule. Candle rows are
    never updated or deleted, so a pin rebuilds the same view in any later run or process;
    ids, unlike close-time bounds or a maximum id, also exclude a late candle that fills a
    gap or whose insert committed out of id order."""

    assets: tuple[tuple[str, int, tuple[tuple[int, int], ...]], ...]
    """(symbol, asset id, id ranges)."""
    max_price_age_seconds: float | None

    @classmethod
    def of(
        cls, ids: Mapping[str, tuple[int, Sequence[int]]], max_price_age: timedelta | None
    ) -> ViewPin:
        assets = []
        for symbol, (asset_id, candle_ids) in ids.items():
            ranges: list[tuple[int, int]] = []
            for candle_id in sorted(candle_ids):
                if ranges and candle_id == ranges[-1][1] + 1:
                    ranges[-1] = (ranges[-1][0], candle_id)
                else:
                    ranges.append((candle_id, candle_id))
            assets.append((symbol, asset_id, tuple(ranges)))
        age = None if max_price_age is None else max_price_age.total_seconds()
        return cls(tuple(assets), age)

    def candle_count(self, symbol: str) -> int:
        for name, _, ranges in self.assets:
            if name == symbol:
                return sum(last - first + 1 for first, last in ranges)
        return 0

    def to_json(self) -> dict[str, Any]:
        return {
            "assets": [
                {"symbol": symbol, "assetId": asset_id, "candleIds": [list(r) for r in ranges]}
                for symbol, asset_id, ranges in self.assets
            ],
            "maxPriceAgeSeconds": self.max_price_age_seconds,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ViewPin:
        try:
            assets = tuple(
                (
                    str(item["symbol"]),
                    int(item["assetId"]),
                    tuple((int(first), int(last)) for first, last in item["candleIds"]),
                )
                for item in data["assets"]
            )
            age = data["maxPriceAgeSeconds"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"stored cycle market view is malformed: {exc!r}") from None
        return cls(assets, None if age is None else float(age))


def read_market_view(
    session: Session,
    as_of: datetime,
    symbols: Mapping[str, int],
    depth: int,
    max_price_age: timedelta | None,
) -> tuple[MarketView, ViewPin]:
    """:func:`market_view` and the pin that rebuilds it (:func:`pinned_market_view`)."""
    candles: dict[str, list[Candle]] = {}
    ids: dict[str, tuple[int, list[int]]] = {}
    for symbol, asset_id in symbols.items():
        rows = list(
            session.execute(
                select(CandleRow)
                .where(CandleRow.asset_id == asset_id, CandleRow.close_time <= as_of)
                .order_by(CandleRow.close_time.desc())
                .limit(depth)
            ).scalars()
        )
        rows.reverse()
        candles[symbol] = [_candle(symbol, row) for row in rows]
        ids[symbol] = (asset_id, [row.id for row in rows])
    view = MarketView(as_of=as_of, candles=candles, max_price_age=max_price_age)
    return view, ViewPin.of(ids, max_price_age)


class PinnedViewLost(LookupError):
    """A pinned view names candles that are no longer stored (rows were deleted by hand)."""


def pinned_market_view(session: Session, as_of: datetime, pin: ViewPin) -> MarketView:
    """The view ``pin`` describes, candle for candle."""
    candles: dict[str, list[Candle]] = {}
    for symbol, asset_id, ranges in pin.assets:
        rows: list[CandleRow] = []
        if ranges:
            rows = list(
                session.execute(
                    select(CandleRow)
                    .where(
                        CandleRow.asset_id == asset_id,
                        or_(*(CandleRow.id.between(first, last) for first, last in ranges)),
                    )
                    .order_by(CandleRow.close_time)
                ).scalars()
            )
        expected = pin.candle_count(symbol)
        if len(rows) != expected or any(row.close_time > as_of for row in rows):
            raise PinnedViewLost(
                f"the market view pinned for cycle {as_of.isoformat()} names {expected} "
                f"{symbol} candles closed by then, but {len(rows)} such rows are stored: "
                "candle rows were deleted or changed"
            )
        candles[symbol] = [_candle(symbol, row) for row in rows]
    seconds = pin.max_price_age_seconds
    age = None if seconds is None else timedelta(seconds=seconds)
    return MarketView(as_of=as_of, candles=candles, max_price_age=age)


def _candle(symbol: str, row: CandleRow) -> Candle:
    return Candle(
        symbol,
        row.close_time,
        row.open,
        row.high,
        row.low,
        row.close,
        row.volume,
        row.quote_volume_24h,
    )


@dataclass
class CandleTape:
    """Candles of a range held in memory, to build the same views as :func:`market_view`
    without a query per cycle (backfills)."""

    depth: int
    max_price_age: timedelta | None
    series: dict[str, list[Candle]] = field(default_factory=dict)
    times: dict[str, list[datetime]] = field(default_factory=dict)
    closes: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        session: Session,
        symbols: Mapping[str, int],
        start: datetime,
        end: datetime,
        depth: int,
        max_price_age: timedelta | None,
    ) -> CandleTape:
        tape = cls(depth=depth, max_price_age=max_price_age)
        for symbol, asset_id in symbols.items():
            head = list(
                session.execute(
                    select(CandleRow)
                    .where(CandleRow.asset_id == asset_id, CandleRow.close_time < start)
                    .order_by(CandleRow.close_time.desc())
                    .limit(depth)
                ).scalars()
            )
            head.reverse()
            body = session.execute(
                select(CandleRow)
                .where(
                    CandleRow.asset_id == asset_id,
                    CandleRow.close_time >= start,
                    CandleRow.close_time <= end,
                )
                .order_by(CandleRow.close_time)
            ).scalars()
            series = [_candle(symbol, row) for row in head] + [_candle(symbol, r) for r in body]
            tape.series[symbol] = series
            tape.times[symbol] = [c.close_time for c in series]
            tape.closes[symbol] = [float(c.close) for c in series]
        return tape

    def view(self, as_of: datetime) -> MarketView:
        candles: dict[str, Sequence[Candle]] = {}
        closes: dict[str, list[float]] = {}
        for symbol, series in self.series.items():
            stop = bisect.bisect_right(self.times[symbol], as_of)
            first = max(0, stop - self.depth)
            candles[symbol] = series[first:stop]
            closes[symbol] = self.closes[symbol][first:stop]
        return MarketView(
            as_of=as_of, candles=candles, max_price_age=self.max_price_age, close_floats=closes
        )


# ---------------------------------------------------------------- writing steps


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
        "model_version": d.model_version,
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


FALLBACK_HISTORY = 100
"""Decisions kept per agent in ``agent_stats.recent_fallbacks`` (its column length): the
largest fallback-rate window there is."""


@dataclass(frozen=True)
class HealthPolicy:
    """When an agent counts as degraded: more than ``threshold`` of its last ``window``
    decisions were fallback HOLDs. Judged only on a full window (an agent with fewer than
    ``window`` decisions is never degraded: two early failures are not a broken provider).
    ``window`` 0 turns the guard off; it cannot exceed :data:`FALLBACK_HISTORY`."""

    window: int = 20
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.window <= FALLBACK_HISTORY:
            raise ValueError(
                f"degraded window must be between 0 (off) and {FALLBACK_HISTORY} decisions "
                f"(the stored history), not {self.window}"
            )
        if not 0 <= self.threshold <= 1:
            raise ValueError(
                f"degraded threshold must be a fraction in [0, 1], not {self.threshold}"
            )

    def degraded(self, recent: str) -> bool:
        if self.window == 0 or len(recent) < self.window:
            return False
        tail = recent[-self.window :]
        return tail.count("1") / self.window > self.threshold


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
    ids = _allocate_ids(session, DecisionRow, len(decision_rows))
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


@dataclass(frozen=True)
class _InsertPlan:
    sql: str
    plain: list[tuple[int, Any]]
    """Columns converted value by value (money, booleans…)."""
    shared: list[tuple[int, Any]]
    """Columns whose values are often one object repeated (times, JSON): converted once."""
    pick: Any
    """Row dict → tuple of values in ``keys`` order."""
    order: Any
    """Values in ``keys`` order → the driver's positional order (None: named parameters)."""
    keys: tuple[str, ...]


_INSERTS: dict[tuple[str, str, tuple[str, ...]], _InsertPlan] = {}
_SHARED_TYPES = (JSON, UTCDateTime)


def _plan(dialect: Any, table: Any, keys: tuple[str, ...]) -> _InsertPlan:
    compiled = table.insert().compile(dialect=dialect, column_keys=list(keys))
    plain, shared = [], []
    for index, key in enumerate(keys):
        column_type = table.c[key].type
        processor = column_type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            (shared if isinstance(column_type, _SHARED_TYPES) else plain).append((index, processor))
    order = (
        operator.itemgetter(*[keys.index(name) for name in compiled.positiontup])
        if compiled.positional
        else None
    )
    return _InsertPlan(compiled.string, plain, shared, operator.itemgetter(*keys), order, keys)


def bulk_insert(session: Session, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """``INSERT`` many rows through the driver's ``executemany``, with each column's own bind
    processing (fixed-scale money, UTC datetimes, JSON) but without SQLAlchemy's per-row
    parameter machinery: several times faster for the big batches a replay writes. Every row
    must have the same keys (at least two). Values shared by many rows (a cycle's time, its
    market conditions, empty lists) are converted once per call."""
    if not rows:
        return
    connection = session.connection()
    keys = tuple(rows[0])
    cache_key = (connection.dialect.name, table.name, keys)
    plan = _INSERTS.get(cache_key)
    if plan is None:
        plan = _INSERTS[cache_key] = _plan(connection.dialect, table, keys)
    memo: dict[Any, Any] = {}
    params: list[Any] = []
    for row in rows:
        values = list(plan.pick(row))
        for i, processor in plan.plain:
            value = values[i]
            if value is not None:
                values[i] = processor(value)
        for i, processor in plan.shared:
            value = values[i]
            if value is None:
                continue
            # Equal-but-distinct empty containers share a key; other objects go by identity
            # (they stay alive in ``rows`` for the whole call, so ids are not reused).
            marker = id(value) if value or isinstance(value, datetime) else (type(value), 0)
            converted = memo.get(marker)
            if converted is None:
                converted = memo[marker] = processor(value)
            values[i] = converted
        params.append(
            plan.order(values) if plan.order is not None else dict(zip(keys, values, strict=True))
        )
    connection.exec_driver_sql(plan.sql, params)


def _allocate_ids(session: Session, table: type[DecisionRow], count: int) -> list[int] | None:
    """Ids for ``count`` new rows without RETURNING (much faster for big batches): the
    table's sequence on PostgreSQL; on SQLite max + 1, safe because write transactions hold
    the database's write lock (BEGIN IMMEDIATE). Other backends: None (use RETURNING)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        sequence = f"{table.__tablename__}_id_seq"
        return list(
            session.scalars(
                text("SELECT nextval(CAST(:seq AS regclass)) FROM generate_series(1, :n)"),
                {"seq": sequence, "n": count},
            )
        )
    if dialect == "sqlite":
        start = (session.scalar(select(func.max(table.id))) or 0) + 1
        return list(range(start, start + count))
    return None


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


# ---------------------------------------------------------------- leaderboard stats


def _starting_capital(session: Session, agent_id: int) -> Decimal | None:
    return session.scalar(
        select(PortfolioRow.starting_capital).where(PortfolioRow.agent_id == agent_id)
    )


def _empty_stats(session: Session, agent_id: int) -> AgentStatsRow:
    starting = _starting_capital(session, agent_id)
    return AgentStatsRow(
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


def recompute_equity_stats(session: Session, agent_id: int) -> EquityStats:
    """The agent's equity statistics rebuilt from its stored curve, starting at its starting
    capital (also how a state stored before ``origin`` existed is brought up to date)."""
    stats = EquityStats.starting_at(_starting_capital(session, agent_id))
    rows = session.execute(
        select(EquitySnapshotRow.captured_at, EquitySnapshotRow.total_value)
        .where(EquitySnapshotRow.agent_id == agent_id)
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
) -> bool | None:
    """Fold new equity points and steps into the agent's leaderboard row. A point older than
    the newest one already counted triggers a full recompute of the equity statistics.
    Returns the new ``degraded`` value when the steps changed it, else None."""
    row = session.get(AgentStatsRow, agent_id)
    if row is None:
        row = _empty_stats(session, agent_id)
        session.add(row)
    stats = EquityStats.from_state(row.equity_state)
    ordered = sorted(points, key=lambda p: p.time)
    # A state stored before the curve had its origin (the starting capital) lacks the key.
    legacy = "origin" not in row.equity_state
    if legacy or (stats.last_time is not None and ordered and ordered[0].time <= stats.last_time):
        # Out of order (a late cycle after a later mark) or a state from before the origin
        # existed: rebuild from the stored curve.
        session.flush()
        stats = recompute_equity_stats(session, agent_id)
        latest = session.scalar(
            select(EquitySnapshotRow.total_value)
            .where(EquitySnapshotRow.agent_id == agent_id)
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
    decisions = fallbacks = prompt_tokens = completion_tokens = 0
    trades = winning = losing = 0
    fees = cost = ZERO
    for step in steps:
        decision = step.decision
        decisions += 1
        fallbacks += decision.fallback
        prompt_tokens += decision.prompt_tokens or 0
        completion_tokens += decision.completion_tokens or 0
        if decision.cost_usd:
            cost += decision.cost_usd
        for fill in step.fills:
            trades += 1
            fees += fill.fee
            if fill.realized_pnl is not None:
                if fill.realized_pnl > 0:
                    winning += 1
                else:
                    losing += 1
    if decisions:
        row.decisions += decisions
        row.fallbacks += fallbacks
        row.prompt_tokens += prompt_tokens
        row.completion_tokens += completion_tokens
        row.cost_usd += cost
    flip: bool | None = None
    if steps:
        recent = (row.recent_fallbacks or "") + "".join(
            "1" if step.decision.fallback else "0" for step in steps
        )
        row.recent_fallbacks = recent[-FALLBACK_HISTORY:]
        degraded = (health or HealthPolicy()).degraded(row.recent_fallbacks)
        if degraded != bool(row.degraded):
            row.degraded = degraded
            flip = degraded
    if trades:
        row.total_trades += trades
        row.winning_trades += winning
        row.losing_trades += losing
        row.fees_paid += fees
    return flip


def latest_snapshot_times(session: Session, agent_ids: Sequence[int]) -> dict[int, datetime | None]:
    rows = session.execute(
        select(AgentStatsRow.agent_id, AgentStatsRow.last_captured_at).where(
            AgentStatsRow.agent_id.in_(list(agent_ids))
        )
    )
    return {agent_id: last for agent_id, last in rows}
