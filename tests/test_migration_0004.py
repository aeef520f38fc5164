"""Migration 0004 moves CoinGecko's rolling 24 h USD volumes out of ``candles.volume`` into
``quote_volume_24h`` (and back on downgrade), on SQLite (scaled integers, rescaled) and on
PostgreSQL (NUMERIC, rounded)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from decimal import Decimal as D

import sqlalchemy as sa
from sqlalchemy import text

from race.store.database import Database

PG_URL = os.environ.get("RACE_TEST_POSTGRES_URL")
T0 = datetime(2024, 1, 1)  # naive on purpose: raw rows, as the column type would store them

ASSETS = sa.table(
    "assets",
    *(sa.column(c) for c in ("id", "symbol", "name", "coingecko_id", "enabled", "created_at")),
)
CANDLES = sa.table(
    "candles",
    *(
        sa.column(c)
        for c in (
            "id",
            "asset_id",
            "close_time",
            "open",
            "high",
            "low",
            "close",
            "volume",
            "interval_seconds",
            "source",
        )
    ),
)

# id: (source, volume before) -> (volume, quote_volume_24h) after the upgrade
ROWS = {
    1: ("coingecko:range", D("1234.56789012"), (None, D("1234.57"))),
    2: ("coingecko:range", D("10.125"), (None, D("10.12"))),  # half-even
    3: ("coingecko:range", D("10.135"), (None, D("10.14"))),
    4: ("coingecko:range", D("0"), (None, None)),  # CoinGecko's "unknown"
    5: ("coingecko:range", None, (None, None)),
    6: ("coingecko:ohlc", None, (None, None)),
    7: ("sample:binance_spot", D("12.5"), (D("12.5"), None)),  # base volume: stays
    8: ("coingecko:range", D("92000000000"), (None, D("92000000000"))),
}
# after the downgrade: range volumes come back from the cents (0 stays unknown)
DOWN = {
    1: D("1234.57"),
    2: D("10.12"),
    3: D("10.14"),
    4: None,
    5: None,
    6: None,
    7: D("12.5"),
    8: D("92000000000"),
}


def _raw(value: D | None, scale: int, sqlite: bool) -> object:
    if value is None or not sqlite:
        return value
    return int(value.scaleb(scale))


def _value(raw: object, scale: int, sqlite: bool) -> D | None:
    if raw is None:
        return None
    return D(int(raw)).scaleb(-scale) if sqlite else D(raw)


def _seed(db: Database) -> None:
    sqlite = db.is_sqlite
    price = _raw(D("40000.12345678"), 8, sqlite)
    with db.engine.begin() as connection:
        connection.execute(
            sa.insert(ASSETS),
            [
                dict(
                    id=1,
                    symbol="BTC",
                    name="Bitcoin",
                    coingecko_id="bitcoin",
                    enabled=True,
                    created_at=T0,
                )
            ],
        )
        connection.execute(
            sa.insert(CANDLES),
            [
                dict(
                    id=row_id,
                    asset_id=1,
                    close_time=T0 + timedelta(hours=row_id),
                    open=price,
                    high=price,
                    low=price,
                    close=price,
                    volume=_raw(volume, 8, sqlite),
                    interval_seconds=3600,
                    source=source,
                )
                for row_id, (source, volume, _) in ROWS.items()
            ],
        )


def _read(db: Database, columns: str) -> dict[int, tuple]:
    with db.engine.connect() as connection:
        rows = connection.execute(text(f"SELECT id, {columns} FROM candles ORDER BY id"))
        return {row[0]: tuple(row[1:]) for row in rows}


def _check_upgrade_and_downgrade(db: Database) -> None:
    db.upgrade("0003")
    _seed(db)
    db.upgrade("0004")
    sqlite = db.is_sqlite
    after = {
        row_id: (_value(volume, 8, sqlite), _value(quote_volume, 2, sqlite))
        for row_id, (volume, quote_volume) in _read(db, "volume, quote_volume_24h").items()
    }
    assert after == {row_id: expected for row_id, (_, _, expected) in ROWS.items()}
    if sqlite:  # integers of cents, not of 1e-8 units
        raw = _read(db, "quote_volume_24h")
        assert raw[1] == (123457,) and raw[8] == (9_200_000_000_000,)
    prices = _read(db, "close")
    assert len({p for (p,) in prices.values()}) == 1  # nothing else touched

    from alembic import command

    from race.store.database import alembic_config

    with db.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0003")
    assert db.current_revision() == "0003"
    back = {row_id: _value(v, 8, sqlite) for row_id, (v,) in _read(db, "volume").items()}
    assert back == DOWN
    with db.engine.connect() as connection:
        columns = {c["name"] for c in sa.inspect(connection).get_columns("candles")}
    assert "quote_volume_24h" not in columns
    db.upgrade("0004")  # and forward again
    assert db.current_revision() == "0004"
    assert _read(db, "volume, quote_volume_24h")[7] == (_raw(D("12.5"), 8, sqlite), None)


def test_0004_moves_range_volumes(empty_db: Database) -> None:
    _check_upgrade_and_downgrade(empty_db)
