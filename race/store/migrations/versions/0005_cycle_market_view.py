"""cycles: the market view each cycle pinned (so every run of a cycle sees the same candles)

The first run of a cycle records exactly which candles its agents saw (their ids, per
asset); later runs of the same cycle, in any process, rebuild that view instead of reading
the candles again — a late candle landing between two runs can no longer split a cycle's
agents between two views.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cycles") as batch:
        batch.add_column(sa.Column("market_view", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cycles") as batch:
        batch.drop_column("market_view")
