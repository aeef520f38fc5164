"""candles: quote_volume_24h (CoinGecko's rolling 24 h USD volume) apart from volume

``candles.volume`` means base-asset volume traded within the candle (NULL when unknown).
Candles built from CoinGecko's ``/market_chart/range`` used to store its rolling 24-hour USD
``total_volumes`` there; they move to the new ``quote_volume_24h`` column (scale 2: cents;
on SQLite a 64-bit integer of cents, so volumes of hundreds of billions fit), and their
``volume`` becomes NULL. A stored 0 (CoinGecko's "unknown" for early dates) becomes NULL.

The values are moved in Python, row by row, rounding half-even from 8 to 2 decimals: on
SQLite the stored integers are counts of 1e-8 units and become counts of 1e-2 units; on
PostgreSQL (and SQL Server) the NUMERIC values are rounded. The downgrade moves them back;
a value the old column cannot hold on SQLite (beyond 9.2e10) stays NULL there.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import sqlalchemy as sa
from alembic import op

import race.store.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

RANGE_SOURCE = "coingecko:range"
_OLD_SCALE, _NEW_SCALE = 8, 2
_MAX_SQLITE = 2**63 - 1
_BATCH = 5000

# Untyped columns: the raw stored values (integers on SQLite, NUMERIC elsewhere).
_candles = sa.table(
    "candles",
    sa.column("id"),
    sa.column("source"),
    sa.column("volume"),
    sa.column("quote_volume_24h"),
)


def _to_decimal(raw: Any, scale: int, sqlite: bool) -> Decimal:
    return Decimal(int(raw)).scaleb(-scale) if sqlite else Decimal(raw)


def _to_raw(value: Decimal, scale: int, sqlite: bool) -> Any:
    value = value.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_EVEN)
    if not sqlite:
        return value
    scaled = int(value.scaleb(scale))
    return scaled if abs(scaled) <= _MAX_SQLITE else None


def _move(source_column: str, target_column: str, source_scale: int, target_scale: int) -> None:
    """For range-sourced rows: target = source (rescaled; 0 → NULL), source = NULL."""
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    source = _candles.c[source_column]
    rows = bind.execute(
        sa.select(_candles.c.id, source).where(
            _candles.c.source == RANGE_SOURCE, source.is_not(None)
        )
    ).all()
    update = (
        sa.update(_candles)
        .where(_candles.c.id == sa.bindparam("row_id"))
        .values({source_column: None, target_column: sa.bindparam("moved")})
    )
    changes = []
    for row_id, raw in rows:
        value = _to_decimal(raw, source_scale, sqlite)
        moved = None if value == 0 else _to_raw(value, target_scale, sqlite)
        changes.append({"row_id": row_id, "moved": moved})
    for start in range(0, len(changes), _BATCH):
        bind.execute(update, changes[start : start + _BATCH])


def upgrade() -> None:
    with op.batch_alter_table("candles") as batch:
        batch.add_column(
            sa.Column("quote_volume_24h", race.store.types.Fixed(scale=2), nullable=True)
        )
    _move("volume", "quote_volume_24h", _OLD_SCALE, _NEW_SCALE)


def downgrade() -> None:
    _move("quote_volume_24h", "volume", _NEW_SCALE, _OLD_SCALE)
    with op.batch_alter_table("candles") as batch:
        batch.drop_column("quote_volume_24h")
