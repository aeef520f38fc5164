"""equity curves: index on (agent, total value, time) for the API's downsampling

``GET /api/agents/{id}/equity?maxPoints=N`` keeps the highest and the lowest point of the
range; with this index each is one seek instead of a scan of the whole curve.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_equity_snapshots_agent_value",
        "equity_snapshots",
        ["agent_id", "total_value", "captured_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_equity_snapshots_agent_value", table_name="equity_snapshots")
