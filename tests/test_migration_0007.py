"""Migration 0007: 64-bit token counts (decisions, agent_stats) and ``cycles.attempts``,
upgraded from 0006 with rows in place and downgraded again, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
from datetime import datetime

import sqlalchemy as sa
from alembic import command
from sqlalchemy import text

from race.store.database import Database, alembic_config

PG_URL = os.environ.get("RACE_TEST_POSTGRES_URL")
T0 = datetime(2024, 1, 1)
BIG = 5 * 10**9  # beyond 32 bits


def _seed(db: Database) -> None:
    fixed = 0 if db.is_sqlite else "0"
    with db.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO agents (id, name, provider, model, strategy, instructions, params, "
                "is_active, created_at) VALUES (1, 'a', 'Mock', 'cash', '', '', '{}', true, :t)"
            ),
            {"t": T0},
        )
        connection.execute(
            text(
                "INSERT INTO cycles (cycle_time, status, trigger, agents_total, decisions, "
                "fallbacks, skipped, trades) VALUES (:t, 'running', 'timer', 1, 0, 0, 0, 0)"
            ),
            {"t": T0},
        )
        connection.execute(
            text(
                "INSERT INTO decisions (id, agent_id, cycle_time, action, rationale, "
                "cited_rules, regime, market_conditions, value_before, value_after, "
                "was_validated, proposed_orders, fallback, prompt_tokens, completion_tokens, "
                "details) VALUES (1, 1, :t, 'HOLD', 'r', '[]', 'x', '{}', :v, :v, true, '[]', "
                "false, 1500, 120, '{}')"
            ),
            {"t": T0, "v": fixed},
        )


def _columns(db: Database, table: str) -> dict[str, sa.types.TypeEngine]:
    with db.engine.connect() as connection:
        return {c["name"]: c["type"] for c in sa.inspect(connection).get_columns(table)}


def test_0007_widens_token_counts_and_adds_attempts(empty_db: Database) -> None:
    db = empty_db
    db.upgrade("0006")
    _seed(db)
    db.upgrade("0007")
    assert db.current_revision() == "0007"
    cycles = _columns(db, "cycles")
    assert "attempts" in cycles
    with db.engine.begin() as connection:
        assert connection.execute(text("SELECT attempts FROM cycles")).scalar_one() == 0
        tokens = connection.execute(
            text("SELECT prompt_tokens, completion_tokens FROM decisions")
        ).one()
        assert tuple(tokens) == (1500, 120)  # rows kept
        connection.execute(text("UPDATE decisions SET prompt_tokens = :n"), {"n": BIG})
        assert connection.execute(text("SELECT prompt_tokens FROM decisions")).scalar_one() == BIG
    if not db.is_sqlite:
        for table in ("decisions", "agent_stats"):
            columns = _columns(db, table)
            for name in ("prompt_tokens", "completion_tokens"):
                assert isinstance(columns[name], sa.BigInteger), (table, name)

    with db.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0006")
    assert db.current_revision() == "0006"
    assert "attempts" not in _columns(db, "cycles")
    with db.engine.connect() as connection:
        stored = connection.execute(text("SELECT prompt_tokens FROM decisions")).scalar_one()
    # Back to 32 bits, a count beyond them is capped (SQLite keeps it: INTEGER is 64-bit).
    assert stored == (BIG if db.is_sqlite else 2**31 - 1)
    db.upgrade("0007")  # and forward again
    assert db.current_revision() == "0007"
