"""SQLAlchemy 2.0 typed models. Schema changes go through Alembic (``migrations/``).

Rows that a replay writes (decisions, trades, equity snapshots) hold no wall-clock value:
everything in them follows from the candles, the agents and their seeds, so two replays of
the same range produce identical rows.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from race.domain.model import Provider
from race.store.types import Fixed, UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

BigId = BigInteger().with_variant(Integer(), "sqlite")
BigCount = BigInteger().with_variant(Integer(), "sqlite")
"""A 64-bit count (SQLite's INTEGER already is one; migration 0007)."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Asset(Base):
    __tablename__ = "assets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    symbol: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    coingecko_id: Mapped[str] = mapped_column(String(64))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CandleRow(Base):
    __tablename__ = "candles"
    __table_args__ = (UniqueConstraint("asset_id", "close_time"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"))
    close_time: Mapped[datetime] = mapped_column(UTCDateTime)
    open: Mapped[Decimal] = mapped_column(Fixed)
    high: Mapped[Decimal] = mapped_column(Fixed)
    low: Mapped[Decimal] = mapped_column(Fixed)
    close: Mapped[Decimal] = mapped_column(Fixed)
    volume: Mapped[Decimal | None] = mapped_column(Fixed, nullable=True)
    """Base-asset volume traded within the candle (e.g. BTC); NULL when unknown."""
    quote_volume_24h: Mapped[Decimal | None] = mapped_column(Fixed(scale=2), nullable=True)
    """The source's rolling 24-hour volume in the quote currency (USD) reported at the
    candle's close (CoinGecko's ``total_volumes``), in cents; NULL when unknown. Not a
    per-candle volume. Scale 2 (``market.validation.QUOTE_VOLUME_SCALE``): on SQLite the
    column holds up to 9.2e16 USD."""
    interval_seconds: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(32))


class AgentRow(Base):
    __tablename__ = "agents"
    __table_args__ = (
        # Migration 0006: a CHECK constraint on servers, two triggers on SQLite.
        CheckConstraint(
            "provider IN (" + ", ".join(f"'{p.value}'" for p in Provider) + ")",
            name="provider",
        ),
        # Migration 0008: names are unique case-insensitively.
        Index("ix_agents_name_lower", func.lower(text("name")), unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    strategy: Mapped[str] = mapped_column(String(500), default="")
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    instructions: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


RACE_KINDS = ("live", "backtest", "whatif")


class RaceRow(Base):
    """A race (migration 0012; docs/races.md): every row an agent's steps write belongs to a
    (race, agent) pair; agents are defined once and take part in many races."""

    __tablename__ = "races"
    __table_args__ = (
        CheckConstraint("kind IN (" + ", ".join(f"'{k}'" for k in RACE_KINDS) + ")", name="kind"),
        Index("ix_races_name_lower", func.lower(text("name")), unique=True),
        # At most one live race: the one the timers, ``serve`` and the admin triggers drive.
        Index(
            "ix_races_one_live",
            "kind",
            unique=True,
            sqlite_where=text("kind = 'live'"),
            postgresql_where=text("kind = 'live'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    start_time: Mapped[datetime] = mapped_column(UTCDateTime)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # NULL: open
    interval_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    starting_capital: Mapped[Decimal | None] = mapped_column(Fixed, nullable=True)
    rules: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    """:class:`race.domain.race.RaceRules`, frozen; NULL until recorded (docs/races.md)."""
    universe: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # race.domain.jobs' vocabulary
    source_race_id: Mapped[int | None] = mapped_column(ForeignKey("races.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RaceParticipantRow(Base):
    __tablename__ = "race_participants"

    race_id: Mapped[int] = mapped_column(ForeignKey("races.id"), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), primary_key=True)


class PortfolioRow(Base):
    __tablename__ = "portfolios"
    __table_args__ = (UniqueConstraint("race_id", "agent_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    race_id: Mapped[int] = mapped_column(ForeignKey("races.id"))
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    cash: Mapped[Decimal] = mapped_column(Fixed)
    starting_capital: Mapped[Decimal] = mapped_column(Fixed)
    as_of: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    """Decision time of the last step applied: the portfolio's place on its timeline."""
    version: Mapped[int] = mapped_column(Integer, default=0)
    """Bumped by every step; writers compare-and-set it (optimistic concurrency)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PositionRow(Base):
    __tablename__ = "positions"
    __table_args__ = (UniqueConstraint("portfolio_id", "asset_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    portfolio_id: Mapped[int] = mapped_column(ForeignKey("portfolios.id"))
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"))
    quantity: Mapped[Decimal] = mapped_column(Fixed)
    average_price: Mapped[Decimal] = mapped_column(Fixed)
    cost_basis: Mapped[Decimal] = mapped_column(Fixed)


class CycleRow(Base):
    __tablename__ = "cycles"

    race_id: Mapped[int] = mapped_column(ForeignKey("races.id"), primary_key=True)
    cycle_time: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(16))
    agents_total: Mapped[int] = mapped_column(Integer, default=0)
    decisions: Mapped[int] = mapped_column(Integer, default=0)
    fallbacks: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    trades: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    """Runs of this cycle (migration 0007): catch-up gives up a slot after
    ``engine.MAX_CYCLE_ATTEMPTS`` of them."""
    market_view: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True), nullable=True
    )
    """The candles the cycle's agents see, pinned by its first run (ids per asset, see
    ``repository.ViewPin``): later runs and other processes rebuild exactly this view
    (migration 0005). Null on rows written before it and on backfill rows."""
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Why the cycle is ``skipped`` (e.g. its market view was stale; migration 0009)."""


class DecisionRow(Base):
    __tablename__ = "decisions"
    __table_args__ = (
        UniqueConstraint("race_id", "agent_id", "cycle_time"),
        Index("ix_decisions_agent_fallback", "agent_id", "fallback"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    race_id: Mapped[int] = mapped_column(ForeignKey("races.id"))
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    cycle_time: Mapped[datetime] = mapped_column(UTCDateTime)
    action: Mapped[str] = mapped_column(String(8))
    asset_symbol: Mapped[str | None] = mapped_column(String(16), nullable=True)
    quantity: Mapped[Decimal | None] = mapped_column(Fixed, nullable=True)
    rationale: Mapped[str] = mapped_column(Text)
    cited_rules: Mapped[list[str]] = mapped_column(JSON)
    regime: Mapped[str] = mapped_column(String(32))
    market_conditions: Mapped[dict[str, Any]] = mapped_column(JSON)
    value_before: Mapped[Decimal] = mapped_column(Fixed)
    value_after: Mapped[Decimal] = mapped_column(Fixed)
    was_validated: Mapped[bool] = mapped_column(Boolean)
    validation_errors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    proposed_orders: Mapped[list[Any]] = mapped_column(JSON)
    fallback: Mapped[bool] = mapped_column(Boolean)
    fallback_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    raw_output: Mapped[str | None] = mapped_column(Text, nullable=True)
    prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    latency_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    prompt_tokens: Mapped[int | None] = mapped_column(BigCount, nullable=True)
    completion_tokens: Mapped[int | None] = mapped_column(BigCount, nullable=True)
    cost_usd: Mapped[Decimal | None] = mapped_column(Fixed, nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    model_version: Mapped[str | None] = mapped_column(String(100), nullable=True)
    """The version of the stored model (``ml_models.version``) the decision used; NULL for
    agents without one and for rows written before migration 0011."""


class TradeRow(Base):
    __tablename__ = "trades"
    __table_args__ = (
        UniqueConstraint("decision_id", "sequence"),
        Index("ix_trades_race_agent_time", "race_id", "agent_id", "executed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    race_id: Mapped[int] = mapped_column(ForeignKey("races.id"))
    decision_id: Mapped[int] = mapped_column(ForeignKey("decisions.id"))
    sequence: Mapped[int] = mapped_column(Integer)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"))
    executed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[Decimal] = mapped_column(Fixed)
    reference_price: Mapped[Decimal] = mapped_column(Fixed)
    price: Mapped[Decimal] = mapped_column(Fixed)
    notional: Mapped[Decimal] = mapped_column(Fixed)
    fee: Mapped[Decimal] = mapped_column(Fixed)
    slippage_cost: Mapped[Decimal] = mapped_column(Fixed)
    realized_pnl: Mapped[Decimal | None] = mapped_column(Fixed, nullable=True)


class EquitySnapshotRow(Base):
    __tablename__ = "equity_snapshots"
    __table_args__ = (
        UniqueConstraint("race_id", "agent_id", "captured_at"),
        # The API's downsampled curves keep the range's highest and lowest point: one
        # seek each (migration 0003; the race leads since 0012).
        Index(
            "ix_equity_snapshots_race_value", "race_id", "agent_id", "total_value", "captured_at"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    race_id: Mapped[int] = mapped_column(ForeignKey("races.id"))
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    portfolio_id: Mapped[int] = mapped_column(ForeignKey("portfolios.id"))
    captured_at: Mapped[datetime] = mapped_column(UTCDateTime)
    total_value: Mapped[Decimal] = mapped_column(Fixed)
    cash_value: Mapped[Decimal] = mapped_column(Fixed)
    positions_value: Mapped[Decimal] = mapped_column(Fixed)
    unrealized_pnl: Mapped[Decimal] = mapped_column(Fixed)
    source: Mapped[str] = mapped_column(String(8))
    """``cycle`` (after a decision) or ``mark`` (mark-to-market between cycles)."""


class AgentStatsRow(Base):
    """Leaderboard figures kept up to date as snapshots and trades land, so reads never
    recompute them from the whole equity curve."""

    __tablename__ = "agent_stats"

    race_id: Mapped[int] = mapped_column(ForeignKey("races.id"), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), primary_key=True)
    equity_state: Mapped[dict[str, Any]] = mapped_column(JSON)
    snapshot_count: Mapped[int] = mapped_column(Integer, default=0)
    last_captured_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    current_value: Mapped[Decimal] = mapped_column(Fixed)
    max_drawdown_pct: Mapped[float] = mapped_column(Float, default=0.0)
    sharpe: Mapped[float | None] = mapped_column(Float, nullable=True)
    sortino: Mapped[float | None] = mapped_column(Float, nullable=True)
    volatility_pct: Mapped[float | None] = mapped_column(Float, nullable=True)
    total_trades: Mapped[int] = mapped_column(Integer, default=0)
    winning_trades: Mapped[int] = mapped_column(Integer, default=0)
    losing_trades: Mapped[int] = mapped_column(Integer, default=0)
    fees_paid: Mapped[Decimal] = mapped_column(Fixed)
    decisions: Mapped[int] = mapped_column(Integer, default=0)
    fallbacks: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigCount, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigCount, default=0)
    cost_usd: Mapped[Decimal] = mapped_column(Fixed)
    recent_fallbacks: Mapped[str] = mapped_column(String(100), default="")
    """The last (up to 100) decisions, oldest first: ``1`` a fallback HOLD, ``0`` not."""
    degraded: Mapped[bool] = mapped_column(Boolean, default=False)
    """Fallback rate over the recent window above the threshold (settings)."""


class JobRow(Base):
    """A long-running job (backfill, ingestion range) with a cursor, so it resumes."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(200), unique=True)
    """Identity of the work (kind + parameters): a retried request finds the same job."""
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    cursor: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LeaseRow(Base):
    """A named lease (``backfill``): only its holder writes; renewed while it works, taken
    over once expired (migration 0009)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    """``host:pid:token`` of the process and run holding it."""
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    description: Mapped[str | None] = mapped_column(String(400), nullable=True)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MLModelRow(Base):
    """A trained ML model (migration 0011): the artifact's bytes with what it was trained on,
    so every instance and process decides with the same model. The local artifact folder
    is only a cache of ``artifact``, keyed by ``sha256``.

    ``status``: ``candidate`` (stored, never promoted), ``promoted`` (the one the agent uses;
    at most one per name), ``retired`` (was promoted, replaced: ``ml rollback`` can restore
    it), ``rolled_back`` (was promoted, rolled back from: never restored by a rollback)."""

    __tablename__ = "ml_models"
    __table_args__ = (
        UniqueConstraint("name", "version"),
        Index("ix_ml_models_name_status", "name", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(100))
    artifact: Mapped[bytes] = mapped_column(LargeBinary)
    """The fitted estimator, ``joblib``-serialised (BYTEA on PostgreSQL)."""
    sha256: Mapped[str] = mapped_column(String(64))
    """Hex SHA-256 of ``artifact``: the cache key, checked on every read of the cache."""
    size_bytes: Mapped[int] = mapped_column(BigCount)
    trained_until: Mapped[datetime] = mapped_column(UTCDateTime)
    """Only candles closed strictly before this were read."""
    train_start: Mapped[datetime] = mapped_column(UTCDateTime)
    train_end: Mapped[datetime] = mapped_column(UTCDateTime)
    test_start: Mapped[datetime] = mapped_column(UTCDateTime)
    test_end: Mapped[datetime] = mapped_column(UTCDateTime)
    horizon: Mapped[int] = mapped_column(Integer)
    features: Mapped[list[str]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    """Held-out metrics, finite numbers only (NaN/inf stored as null)."""
    info: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The rest of the training metadata (symbols, classifier, library versions…)."""
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Why the model was (or was not) promoted, or rolled back."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    promoted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    """When it was last promoted (``ml rollback`` restores the latest-promoted retired one)."""
