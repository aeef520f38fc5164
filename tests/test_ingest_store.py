"""The candle store queries and the bulk insert (race/store/candles.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text

from race.domain.model import Candle
from race.store import candles as store
from tests.factories import insert_candles, seed_assets

HOUR = timedelta(hours=1)
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def row(
    asset_id: int, when: datetime, price: str, volume: str | None, quote: str | None = None
) -> dict:
    value = Decimal(price)
    return {
        "asset_id": asset_id,
        "close_time": when,
        "open": value,
        "high": value,
        "low": value,
        "close": value,
        "volume": None if volume is None else Decimal(volume),
        "quote_volume_24h": None if quote is None else Decimal(quote),
        "interval_seconds": 3600,
        "source": "test",
    }


def test_bulk_insert_writes_exactly_what_the_orm_types_write(app):
    ids = seed_assets(app)
    btc, eth = ids["BTC"], ids["ETH"]
    # the same values through the Core/ORM path (factories) and through insert_new
    insert_candles(app, [Candle("BTC", T0, *[Decimal("123.456789012")] * 4, Decimal("0.5"))])
    with app.db.write() as session:
        inserted = store.insert_new(
            session,
            [row(eth, T0, "123.456789012", "0.5"), row(eth, T0 + HOUR, "1.00000001", None)],
        )
    assert inserted is None or inserted == {T0, T0 + HOUR}
    with app.db.read() as session:
        stored = store.stored_values(session, eth, T0, T0 + HOUR)
        assert stored[T0] == store.stored_values(session, btc, T0, T0)[T0]
        assert stored[T0 + HOUR] == (*[Decimal("1.00000001")] * 4, None, None)
        assert store.latest_close(session, eth) == T0 + HOUR
        assert store.close_times(session, eth, T0, T0 + HOUR) == [T0, T0 + HOUR]
        assert store.candle_at(session, eth, "ETH", T0 + HOUR).close == Decimal("1.00000001")
        assert store.candle_at(session, eth, "ETH", T0 - HOUR) is None
        raw = session.execute(
            text("SELECT asset_id, close_time, open, volume FROM candles ORDER BY asset_id")
        ).all()
        # byte for byte the same representation on this backend
        assert raw[0][1:] == raw[1][1:]
        coverage = store.coverage(session)
        assert (coverage[eth].candles, coverage[eth].first_close, coverage[eth].last_close) == (
            2,
            T0,
            T0 + HOUR,
        )


def test_insert_skips_rows_another_writer_stored_on_postgresql(app):
    ids = seed_assets(app)
    insert_candles(app, [Candle("BTC", T0, *[Decimal(1)] * 4, None)])
    if app.db.dialect != "postgresql":
        return  # SQLite serialises writers (BEGIN IMMEDIATE): the caller read first
    with app.db.write() as session:
        inserted = store.insert_new(
            session, [row(ids["BTC"], T0, "2", None), row(ids["BTC"], T0 + HOUR, "2", None)]
        )
    assert inserted == {T0 + HOUR}
    with app.db.read() as session:
        assert store.stored_values(session, ids["BTC"], T0, T0)[T0][3] == Decimal(1)


def test_bulk_insert_holds_a_24h_usd_volume_beyond_the_8_decimal_limit(app):
    """CoinGecko's BTC 24 h volume reached 1.9e11 USD (2024-12-06): more than a scale-8
    column holds on SQLite (9.2e10), well within the scale-2 quote volume column."""
    ids = seed_assets(app)
    volume = "190460293531.54"
    with app.db.write() as session:
        store.insert_new(session, [row(ids["BTC"], T0, "97201.5", None, volume)])
    with app.db.read() as session:
        values = store.stored_values(session, ids["BTC"], T0, T0)[T0]
        candle = store.candle_at(session, ids["BTC"], "BTC", T0)
        raw = session.execute(text("SELECT quote_volume_24h FROM candles")).scalar_one()
    assert values[4:] == (None, Decimal(volume))
    assert candle is not None and candle.quote_volume_24h == Decimal(volume)
    if app.db.dialect == "sqlite":
        assert raw == 19046029353154  # an integer count of cents
