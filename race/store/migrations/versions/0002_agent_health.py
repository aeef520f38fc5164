"""agent health: recent fallback window and degraded flag on agent_stats

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agent_stats") as batch:
        batch.add_column(
            sa.Column("recent_fallbacks", sa.String(length=100), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("degraded", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("agent_stats") as batch:
        batch.drop_column("degraded")
        batch.drop_column("recent_fallbacks")
