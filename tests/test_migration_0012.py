"""Migration 0012: an existing database moves into ONE live race without losing a row, on
a populated SQLite and PostgreSQL database.

The pre-0012 database is built by a real replay (a backfill of the baselines over stored
candles, a live cycle and a mark-to-market) written at head, then downgraded to 0011 (the
downgrade drops exactly what 0012 added). Every row of every table is read raw at 0011, the
database upgraded, and every row read again: the same values, each scoped row in the live
race. The leaderboard reads the same before and after, and a second round trip gives the
same 0011 rows back."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from race.bootstrap import bootstrap
from race.clock import ManualClock
from race.leaderboard import standings
from race.races import record_live_race
from race.store.database import Database, alembic_config
from tests.factories import HOUR, insert_candles, make_candles, seed_assets, seed_baselines
from tests.factories import wave_prices as waves

START = datetime(2024, 3, 1, tzinfo=UTC)
TABLES = (
    "assets",
    "agents",
    "candles",
    "portfolios",
    "positions",
    "decisions",
    "trades",
    "equity_snapshots",
    "agent_stats",
    "cycles",
    "jobs",
)
SCOPED = ("portfolios", "decisions", "trades", "equity_snapshots", "agent_stats", "cycles")


def _url(db: Database) -> str:
    return db.url.render_as_string(hide_password=False)


def _populate(db: Database) -> list[dict[str, Any]]:
    """A real replay into the database; the leaderboard it gives."""
    clock = ManualClock(START + timedelta(days=5))
    app = bootstrap(overrides={"RACE_DATABASE_URL": _url(db)}, clock=clock, db=db)
    seed_assets(app)
    seed_baselines(app)
    for symbol, base in (("BTC", 40_000.0), ("ETH", 2_000.0)):
        closes = waves(24 * 4, base=base, amplitude=0.08, period=30)
        insert_candles(app, make_candles(symbol, START, closes))
    first, last = START + 60 * HOUR, START + 80 * HOUR
    report = asyncio.run(app.engine.backfill(first, last, HOUR))
    assert report.decisions > 0
    asyncio.run(app.engine.run_cycle(last + HOUR))
    assert app.engine.snapshot(last + 90 * timedelta(minutes=1)) > 0
    return _board(db)


def _board(db: Database) -> list[dict[str, Any]]:
    with db.read() as session:
        return [asdict(s) for s in standings(session)]


def _dump(db: Database) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, raw (as the driver returns it), in primary-key order."""
    found: dict[str, list[dict[str, Any]]] = {}
    with db.engine.connect() as connection:
        inspector = sa.inspect(connection)
        for table in TABLES:
            keys = inspector.get_pk_constraint(table)["constrained_columns"]
            order = ", ".join(keys)
            result = connection.exec_driver_sql(f"SELECT * FROM {table} ORDER BY {order}")
            found[table] = [dict(row._mapping) for row in result]
    return found


def test_a_populated_database_moves_into_one_live_race(empty_db: Database) -> None:
    db = empty_db
    db.upgrade()
    board = _populate(db)
    db.downgrade("0011")
    assert db.current_revision() == "0011"
    before = _dump(db)
    assert all(before[table] for table in TABLES if table not in ("positions", "jobs"))
    assert len(before["decisions"]) > 100 and before["trades"] and before["positions"]

    db.upgrade()
    after = _dump(db)
    with db.engine.connect() as connection:
        races = [dict(r._mapping) for r in connection.exec_driver_sql("SELECT * FROM races")]
        joined = connection.exec_driver_sql(
            "SELECT race_id, agent_id FROM race_participants ORDER BY agent_id"
        ).all()
    assert len(races) == 1
    live = races[0]
    assert (live["name"], live["kind"], live["status"], live["end_time"]) == (
        "live",
        "live",
        "running",
        None,
    )
    assert live["rules"] is None and live["interval_seconds"] is None
    assert Decimal(str(live["starting_capital"])) in (Decimal("100000"), Decimal(10**13))
    assert [tuple(r) for r in joined] == [(live["id"], p["agent_id"]) for p in before["portfolios"]]
    for table in TABLES:
        rows = after[table]
        assert len(rows) == len(before[table]), table
        if table in SCOPED:
            assert {row.pop("race_id") for row in rows} == {live["id"]}, table
        assert rows == before[table], table
    assert _board(db) == board

    # The live race records the app's rules once (``db upgrade`` does it), then keeps them.
    app = bootstrap(overrides={"RACE_DATABASE_URL": _url(db)}, clock=ManualClock(START), db=db)
    assert set(record_live_race(db, app.settings, app.clock)) == {
        "rules",
        "interval_seconds",
        "universe",
    }
    assert record_live_race(db, app.settings, app.clock) == []

    db.downgrade("0011")
    assert _dump(db) == before


def test_downgrade_is_refused_while_another_race_exists(empty_db: Database) -> None:
    db = empty_db
    db.upgrade()
    with db.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO races (name, kind, start_time, status, created_at) "
                "VALUES ('bt', 'backtest', :t, 'completed', :t)"
            ),
            {"t": START},
        )
    with pytest.raises(RuntimeError, match="besides the live one"):
        db.downgrade("0011")
    assert db.current_revision() == "0012"


def test_sqlite_with_foreign_keys_on_is_told_how_to_migrate(empty_db: Database) -> None:
    """Alembic run on a connection with SQLite's foreign keys on (not through
    ``Database.upgrade``) stops before it changes anything, saying how to run it."""
    if not empty_db.is_sqlite:
        pytest.skip("SQLite only")
    db = empty_db
    db.upgrade()
    _populate(db)
    with pytest.raises(RuntimeError, match="foreign keys off"), db.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0011")
    assert db.current_revision() == "0012"
