"""models that live in the database: the ``ml_models`` table and ``decisions.model_version``

Trained ML models were files in a local folder no other instance saw. From here each
model's artifact bytes, hash, training window, features and metrics are a row of
``ml_models`` (the folder becomes a cache keyed by hash), and every decision records the
model version it used (NULL for the rows written before, and for agents without one).
Downgrade drops both.

The columns are spelled out here, not imported: a migration is history and must keep
meaning what it meant when it was written.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from race.store.types import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ml_models",
        sa.Column("id", _BIG, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("artifact", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", _BIG, nullable=False),
        sa.Column("trained_until", UTCDateTime(timezone=True), nullable=False),
        sa.Column("train_start", UTCDateTime(timezone=True), nullable=False),
        sa.Column("train_end", UTCDateTime(timezone=True), nullable=False),
        sa.Column("test_start", UTCDateTime(timezone=True), nullable=False),
        sa.Column("test_end", UTCDateTime(timezone=True), nullable=False),
        sa.Column("horizon", sa.Integer(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("promoted_at", UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ml_models"),
        sa.UniqueConstraint("name", "version", name="uq_ml_models_name"),
    )
    op.create_index("ix_ml_models_name_status", "ml_models", ["name", "status"])
    op.add_column("decisions", sa.Column("model_version", sa.String(100), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+): the column has no index or constraint, and a batch
    # rebuild of ``decisions`` would reflect (and warn about) the agents' expression index.
    op.drop_column("decisions", "model_version")
    op.drop_index("ix_ml_models_name_status", table_name="ml_models")
    op.drop_table("ml_models")
