"""one job-status vocabulary: ingest jobs say ``completed``, not ``done``

Backfill jobs always ended ``completed``; ingest jobs (kinds ``ingest`` and ``sample``)
ended ``done``. From here every job uses :mod:`race.domain.jobs`' statuses, so the rows
already written ``done`` become ``completed``. Downgrade gives the ingest jobs their old
word back (backfill jobs keep ``completed``, which they always had).

The statuses are spelled out here, not imported: a migration is history and must keep
meaning what it meant when it was written.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_JOBS = sa.table("jobs", sa.column("kind", sa.String), sa.column("status", sa.String))
_INGEST_KINDS = ("ingest", "sample")


def upgrade() -> None:
    op.execute(_JOBS.update().where(_JOBS.c.status == "done").values(status="completed"))


def downgrade() -> None:
    op.execute(
        _JOBS.update()
        .where(_JOBS.c.status == "completed", _JOBS.c.kind.in_(_INGEST_KINDS))
        .values(status="done")
    )
