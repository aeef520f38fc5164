"""Migration 0010: one job-status vocabulary. Ingest jobs written ``done`` before become
``completed``; backfill jobs (always ``completed``) and unfinished jobs are left alone;
downgrade gives only the ingest jobs ``done`` back. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import command
from sqlalchemy import text

from race.store.database import Database, alembic_config

T0 = datetime(2024, 1, 1)  # naive on purpose: raw rows
JOBS = sa.table(
    "jobs",
    *(
        sa.column(c)
        for c in (
            "id",
            "kind",
            "key",
            "params",
            "status",
            "total",
            "done",
            "created_at",
            "updated_at",
        )
    ),
)
BEFORE = {
    1: ("ingest", "done"),
    2: ("sample", "done"),
    3: ("backfill", "completed"),
    4: ("ingest", "running"),
    5: ("ingest", "partial"),
    6: ("backfill", "failed"),
    7: ("ingest", "failed"),
}


def _insert(db: Database) -> None:
    with db.engine.begin() as connection:
        connection.execute(
            sa.insert(JOBS),
            [
                dict(
                    id=job_id,
                    kind=kind,
                    key=f"{kind}:{job_id}",
                    params="{}",
                    status=status,
                    total=1,
                    done=1,
                    created_at=T0,
                    updated_at=T0,
                )
                for job_id, (kind, status) in BEFORE.items()
            ],
        )


def _statuses(db: Database) -> dict[int, str]:
    with db.engine.connect() as connection:
        return dict(connection.execute(text("SELECT id, status FROM jobs ORDER BY id")).all())


def test_0010_rewrites_done_to_completed_and_back_for_ingest_jobs(empty_db):
    db = empty_db
    db.upgrade("0009")
    _insert(db)
    db.upgrade("0010")
    assert db.current_revision() == "0010"
    assert _statuses(db) == {
        1: "completed",
        2: "completed",
        3: "completed",
        4: "running",
        5: "partial",
        6: "failed",
        7: "failed",
    }

    with db.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "-1")
    assert db.current_revision() == "0009"
    assert _statuses(db) == {job_id: status for job_id, (_, status) in BEFORE.items()}

    db.upgrade("0010")
    assert _statuses(db)[1] == "completed"
