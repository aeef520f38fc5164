"""backfill lease and the reason of a skipped cycle

``leases``: one row per named lease (``backfill``: only one backfill writes at a time,
renewed per chunk, taken over once expired or when its holder process is gone).
``cycles.reason``: why a cycle was ``skipped`` (e.g. a stale market view).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import race.store.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("description", sa.String(length=400), nullable=True),
        sa.Column("acquired_at", race.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", race.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    with op.batch_alter_table("cycles") as batch:
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cycles") as batch:
        batch.drop_column("reason")
    op.drop_table("leases")
