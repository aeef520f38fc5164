"""A race with real rows for the API tests: assets, baselines, candles, a replay, marks."""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import os
import shutil
import sqlite3
import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Integer, create_engine, text

from race.bootstrap import App
from race.store.tables import Base
from tests.factories import (
    HOUR,
    insert_candles,
    make_candles,
    seed_agent,
    seed_assets,
    seed_baselines,
    wave_prices,
)

START = datetime(2024, 1, 1, tzinfo=UTC)
REPLAY_START = START + 60 * HOUR
REPLAY_END = START + 180 * HOUR
LAST_CANDLE = START + 199 * HOUR


_BUILT: dict[str, tuple[str, dict[str, int]]] = {}
"""Races already built in this process: key → (where the rows are kept, agent ids)."""


def build_race(app: App) -> dict[str, int]:
    """The race below in ``app``'s empty, migrated database. Built once per process for the
    same backend, clock and settings, then restored row for row (the same rows a new build
    writes: the replay is deterministic) — the API tests read it, they need not re-run it."""
    key = _race_key(app)
    built = _BUILT.get(key)
    if built is not None:
        _restore(app, built[0])
        return dict(built[1])
    agents = _build_race(app)
    _BUILT[key] = (_keep(app, key), dict(agents))
    return agents


def _race_key(app: App) -> str:
    settings = app.settings.model_dump(mode="json", exclude={"database_url"})
    what = f"{app.db.dialect}|{app.clock.now().isoformat()}|{sorted(settings.items())!r}"
    return hashlib.sha256(what.encode()).hexdigest()[:16]


_KEPT = Path(tempfile.mkdtemp(prefix="race-built-"))
atexit.register(shutil.rmtree, _KEPT, True)


def _keep(app: App, key: str) -> str:
    if app.db.is_sqlite:
        target = _KEPT / f"{key}.db"
        with sqlite3.connect(app.db.url.database) as source, sqlite3.connect(target) as copy:
            source.backup(copy)
        return str(target)
    schema = f"race_built_{os.getpid()}_{key}"
    with app.db.engine.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        for table in Base.metadata.sorted_tables:
            connection.execute(
                text(f'CREATE TABLE "{schema}"."{table.name}" AS SELECT * FROM "{table.name}"')
            )
    url = app.db.url.render_as_string(hide_password=False)
    atexit.register(_drop_schema, url, schema)
    return schema


def _restore(app: App, kept: str) -> None:
    if app.db.is_sqlite:
        app.db.engine.dispose()
        with sqlite3.connect(kept) as source, sqlite3.connect(app.db.url.database) as target:
            source.backup(target)
        return
    with app.db.engine.begin() as connection:
        for table in Base.metadata.sorted_tables:
            connection.execute(
                text(f'INSERT INTO "{table.name}" SELECT * FROM "{kept}"."{table.name}"')
            )
            for column in table.primary_key.columns:
                if isinstance(column.type, Integer) and column.autoincrement in (True, "auto"):
                    connection.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', "
                            f"'{column.name}'), COALESCE(MAX(\"{column.name}\"), 0) + 1, false) "
                            f'FROM "{table.name}" '
                            f"WHERE pg_get_serial_sequence('\"{table.name}\"', '{column.name}') "
                            "IS NOT NULL"
                        )
                    )


def _drop_schema(url: str, schema: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()


def _build_race(app: App) -> dict[str, int]:
    seed_assets(app)
    agents = seed_baselines(app)
    agents["idle"] = seed_agent(app, "Idle Newcomer", model="cash", strategy="never ran")
    btc = wave_prices(200, base=40000.0, period=37, amplitude=0.08)
    eth = wave_prices(200, base=2000.0, period=23, amplitude=0.12)
    insert_candles(app, make_candles("BTC", START, btc))
    insert_candles(app, make_candles("ETH", START, eth))
    from race.universe import set_agent_active

    set_agent_active(app.db, "Idle Newcomer", False)
    asyncio.run(app.engine.backfill(REPLAY_START, REPLAY_END, HOUR))
    app.engine.snapshot(LAST_CANDLE)
    return agents


def candle_close(index: int, symbol: str) -> Decimal:
    prices = (
        wave_prices(200, base=40000.0, period=37, amplitude=0.08)
        if symbol == "BTC"
        else wave_prices(200, base=2000.0, period=23, amplitude=0.12)
    )
    return prices[index]
