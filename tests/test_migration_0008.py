"""Migration 0008: agent names unique regardless of case. Agents already there whose names
differ only in case are renamed (the oldest keeps its name), then the index refuses new
duplicates; downgrade drops it. SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import os
from datetime import datetime

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import text

from race.store.database import Database, alembic_config

PG_URL = os.environ.get("RACE_TEST_POSTGRES_URL")
T0 = datetime(2024, 1, 1)  # naive on purpose: raw rows
AGENTS = sa.table(
    "agents",
    *(
        sa.column(c)
        for c in (
            "id",
            "name",
            "strategy",
            "provider",
            "model",
            "instructions",
            "params",
            "is_active",
            "created_at",
        )
    ),
)
NAMES = {
    1: "Cash Keeper",
    2: "Momentum",
    3: "cash keeper",
    4: "CASH KEEPER",
    5: "cash keeper (id 4)",  # the name a rename would pick is taken: it picks another
}


def _insert(db: Database, rows: dict[int, str]) -> None:
    with db.engine.begin() as connection:
        connection.execute(
            sa.insert(AGENTS),
            [
                dict(
                    id=agent_id,
                    name=name,
                    strategy="",
                    provider="Mock",
                    model="cash",
                    instructions="",
                    params="{}",
                    is_active=True,
                    created_at=T0,
                )
                for agent_id, name in rows.items()
            ],
        )


def _names(db: Database) -> dict[int, str]:
    with db.engine.connect() as connection:
        return dict(connection.execute(text("SELECT id, name FROM agents ORDER BY id")).all())


def test_0008_resolves_existing_duplicates_then_refuses_new_ones(empty_db, caplog):
    db = empty_db
    db.upgrade("0006")
    _insert(db, NAMES)
    with caplog.at_level(logging.WARNING, logger="race.migrations"):
        db.upgrade("0008")
    after = _names(db)
    assert after[1] == "Cash Keeper" and after[2] == "Momentum"  # the oldest keeps its name
    assert after[3] == "cash keeper (id 3)"
    assert after[4].lower() not in {after[i].lower() for i in (1, 2, 3, 5)}
    assert after[4].endswith("(id 4)")
    assert after[5] == "cash keeper (id 4)"
    assert len({name.lower() for name in after.values()}) == len(after)
    warned = [r.getMessage() for r in caplog.records if r.name == "race.migrations"]
    assert len(warned) == 2 and "agent 3 renamed from 'cash keeper'" in warned[0]

    with pytest.raises(sa.exc.IntegrityError):
        _insert(db, {6: "MOMENTUM"})

    with db.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "-1")
    _insert(db, {6: "MOMENTUM"})  # no index any more
    with db.engine.begin() as connection:
        connection.execute(text("DELETE FROM agents WHERE id = 6"))
    db.upgrade("0008")
    assert db.current_revision() == "0008"
