"""decisions, agent_stats: 64-bit token counts; cycles: how many runs a slot took

A provider that reports (or an agent that claims) a huge token count no longer overflows a
32-bit column — the engine clamps counts to 10⁹ per decision, and the sums kept in
``agent_stats`` grow past 2³¹ over a long race. ``cycles.attempts`` counts the runs of a
cycle slot, so catch-up can give up a slot that keeps failing (it is finished with its
failures recorded) instead of retrying it on every tick.

SQLite's INTEGER is already 64-bit: only the new column is added there (no table rebuild,
which would break the foreign keys that reference these tables).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

WIDENED = (
    ("decisions", "prompt_tokens", True),
    ("decisions", "completion_tokens", True),
    ("agent_stats", "prompt_tokens", False),
    ("agent_stats", "completion_tokens", False),
)
INT32_MAX = 2**31 - 1


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if not sqlite:
        for table, column, nullable in WIDENED:
            op.alter_column(
                table,
                column,
                existing_type=sa.Integer(),
                type_=sa.BigInteger(),
                existing_nullable=nullable,
            )
    op.add_column(
        "cycles",
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    if sqlite:
        with op.batch_alter_table("cycles") as batch:
            batch.drop_column("attempts")
        return
    op.drop_column("cycles", "attempts")
    for table, column, nullable in WIDENED:
        # Counts beyond 32 bits cannot go back: they are capped at the narrow maximum.
        target = sa.table(table, sa.column(column))
        op.execute(target.update().where(target.c[column] > INT32_MAX).values({column: INT32_MAX}))
        op.alter_column(
            table,
            column,
            existing_type=sa.BigInteger(),
            type_=sa.Integer(),
            existing_nullable=nullable,
        )
