"""races: a race is an entity; portfolios, decisions, trades, snapshots, stats and cycles
belong to a (race, agent) pair

Creates ``races`` and ``race_participants``, then moves everything already there into ONE
live race (named ``live``), so no row is lost: every agent with a portfolio becomes one of
its participants, every row of the scoped tables gets its id, and the unique keys take the
race in (decisions (race, agent, cycle time), snapshots (race, agent, time), portfolios
(race, agent), stats (race, agent), cycles (race, cycle time)).

The live race's start is its first recorded moment (the earliest portfolio, decision or
snapshot; the migration's time on an empty database) and its starting capital the one its
portfolios share. Its rules, interval and universe are left NULL here — a migration does
not read the app's settings (the process running it need not have them) — and are
recorded from the settings by ``python -m race db upgrade`` (and ``demo``) right after the
upgrade, then frozen (docs/races.md).

SQLite rebuilds the tables in batch mode; ``Database.upgrade`` runs migrations there with
foreign keys off and checks them all before committing. Downgrade is refused while a race
other than the live one exists (its rows would collide once the race is gone).

The columns are spelled out here, not imported: a migration is history.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from race.store.types import Fixed, UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

FK = "fk_{table}_race_id_races"
# (table, old unique constraint, its columns) swapped for one that leads with the race.
UNIQUES = (
    ("portfolios", "uq_portfolios_agent_id", ("agent_id",)),
    ("decisions", "uq_decisions_agent_id", ("agent_id", "cycle_time")),
    ("equity_snapshots", "uq_equity_snapshots_agent_id", ("agent_id", "captured_at")),
)
PRIMARY = (("agent_stats", ("agent_id",)), ("cycles", ("cycle_time",)))
SCOPED = ("portfolios", "decisions", "trades", "equity_snapshots", "agent_stats", "cycles")
INDEXES = (
    # (table, old name, old columns, new name, new columns)
    ("trades", "ix_trades_agent_time", ("agent_id", "executed_at"),
     "ix_trades_race_agent_time", ("race_id", "agent_id", "executed_at")),
    ("equity_snapshots", "ix_equity_snapshots_agent_value",
     ("agent_id", "total_value", "captured_at"),
     "ix_equity_snapshots_race_value", ("race_id", "agent_id", "total_value", "captured_at")),
)  # fmt: skip


def _create_tables() -> None:
    op.create_table(
        "races",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("start_time", UTCDateTime(), nullable=False),
        sa.Column("end_time", UTCDateTime(), nullable=True),
        sa.Column("interval_seconds", sa.Integer(), nullable=True),
        sa.Column("starting_capital", Fixed(), nullable=True),
        sa.Column("rules", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("universe", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source_race_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("kind IN ('live', 'backtest', 'whatif')", name=op.f("ck_races_kind")),
        sa.ForeignKeyConstraint(
            ["source_race_id"], ["races.id"], name=op.f("fk_races_source_race_id_races")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_races")),
    )
    op.create_index("ix_races_name_lower", "races", [sa.text("lower(name)")], unique=True)
    op.create_index(
        "ix_races_one_live",
        "races",
        ["kind"],
        unique=True,
        sqlite_where=sa.text("kind = 'live'"),
        postgresql_where=sa.text("kind = 'live'"),
    )
    op.create_table(
        "race_participants",
        sa.Column("race_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_race_participants_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(
            ["race_id"], ["races.id"], name=op.f("fk_race_participants_race_id_races")
        ),
        sa.PrimaryKeyConstraint("race_id", "agent_id", name=op.f("pk_race_participants")),
    )


def _first_moment(connection: sa.Connection) -> datetime:
    """The earliest portfolio, decision or snapshot time (now on an empty database)."""
    found: list[datetime] = []
    for table, column in (
        ("portfolios", "created_at"),
        ("decisions", "cycle_time"),
        ("equity_snapshots", "captured_at"),
    ):
        # Read through the column's own type, so SQLite's stored text comes back as a time.
        value = connection.scalar(
            sa.select(sa.func.min(sa.column(column, UTCDateTime()))).select_from(sa.table(table))
        )
        if value is not None:
            found.append(value)
    return min(found) if found else datetime.now(UTC)


def _create_live_race(connection: sa.Connection) -> int:
    capitals = connection.execute(
        sa.select(sa.column("starting_capital", Fixed()))
        .select_from(sa.table("portfolios"))
        .distinct()
    ).scalars()
    shared = list(capitals)
    races = sa.table(
        "races",
        sa.column("name", sa.String()),
        sa.column("kind", sa.String()),
        sa.column("start_time", UTCDateTime()),
        sa.column("starting_capital", Fixed()),
        sa.column("status", sa.String()),
        sa.column("created_at", UTCDateTime()),
    )
    connection.execute(
        races.insert().values(
            name="live",
            kind="live",
            start_time=_first_moment(connection),
            starting_capital=shared[0] if len(shared) == 1 else None,
            status="running",
            created_at=datetime.now(UTC),
        )
    )
    live = connection.scalar(sa.text("SELECT id FROM races WHERE kind = 'live'"))
    connection.execute(
        sa.text(
            "INSERT INTO race_participants (race_id, agent_id) "
            "SELECT DISTINCT :race, agent_id FROM portfolios"
        ),
        {"race": live},
    )
    return int(live)


def _require_foreign_keys_off(connection: sa.Connection) -> None:
    """SQLite rebuilds the tables in batch mode, dropping tables others reference: with its
    foreign keys on and rows referencing them, that fails midway. Say how to run it."""
    if connection.dialect.name != "sqlite":
        return
    if not connection.exec_driver_sql("PRAGMA foreign_keys").scalar():
        return
    for child in ("trades", "positions", "equity_snapshots"):
        if connection.exec_driver_sql(f"SELECT 1 FROM {child} LIMIT 1").first():  # noqa: S608
            raise RuntimeError(
                "migration 0012 rebuilds SQLite tables that others reference: run it with "
                "foreign keys off, as `python -m race db upgrade` (Database.upgrade) does"
            )


def upgrade() -> None:
    connection = op.get_bind()
    _require_foreign_keys_off(connection)
    _create_tables()
    live = _create_live_race(connection)
    for table in SCOPED:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("race_id", sa.Integer(), nullable=True))
        connection.execute(sa.text(f"UPDATE {table} SET race_id = :race"), {"race": live})  # noqa: S608
    for table in SCOPED:
        _scope(table)


def _scope(table: str) -> None:
    """The race column required and referenced, and the table's keys swapped."""
    with warnings.catch_warnings():
        # Rebuilding a table reflects the tables it references: SQLAlchemy cannot reflect
        # the expression indexes on lower(name) there (agents, races), nor needs them.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
        _scope_table(table)


def _scope_table(table: str) -> None:
    unique = {t: (name, cols) for t, name, cols in UNIQUES}
    primary = dict(PRIMARY)
    indexes = [i for i in INDEXES if i[0] == table]
    with op.batch_alter_table(table) as batch:
        for _, old, _, _, _ in indexes:
            batch.drop_index(old)
        batch.alter_column("race_id", existing_type=sa.Integer(), nullable=False)
        batch.create_foreign_key(FK.format(table=table), "races", ["race_id"], ["id"])
        if table in unique:
            name, cols = unique[table]
            batch.drop_constraint(name, type_="unique")
            batch.create_unique_constraint(f"uq_{table}_race_id", ["race_id", *cols])
        if table in primary:
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(f"pk_{table}", ["race_id", *primary[table]])
        for _, _, _, new, cols in indexes:
            batch.create_index(new, list(cols))


def downgrade() -> None:
    connection = op.get_bind()
    _require_foreign_keys_off(connection)
    others = connection.scalar(sa.text("SELECT count(*) FROM races WHERE kind <> 'live'"))
    if others:
        raise RuntimeError(
            f"{others} race(s) besides the live one exist: delete them first "
            "(`python -m race races delete RACE`), their rows would collide without races"
        )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
        for table in reversed(SCOPED):
            _unscope(table)
    op.drop_table("race_participants")
    op.drop_index("ix_races_one_live", table_name="races")
    op.drop_index("ix_races_name_lower", table_name="races")
    op.drop_table("races")


def _unscope(table: str) -> None:
    """The race column and the keys that lead with it dropped; the old keys back."""
    unique = {t: (name, cols) for t, name, cols in UNIQUES}
    primary = dict(PRIMARY)
    indexes = [i for i in INDEXES if i[0] == table]
    with op.batch_alter_table(table) as batch:
        for _, _, _, new, _ in indexes:
            batch.drop_index(new)
        if table in primary:
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(f"pk_{table}", list(primary[table]))
        if table in unique:
            name, cols = unique[table]
            batch.drop_constraint(f"uq_{table}_race_id", type_="unique")
            batch.create_unique_constraint(name, list(cols))
        batch.drop_constraint(FK.format(table=table), type_="foreignkey")
        batch.drop_column("race_id")
        for _, old, cols, _, _ in indexes:
            batch.create_index(old, list(cols))
