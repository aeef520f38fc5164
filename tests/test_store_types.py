"""Money comes back exactly and time comes back UTC-aware, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal as D

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from race.store.database import Database, DatabaseError
from race.store.tables import CandleRow
from tests.factories import seed_assets

T = datetime(2024, 3, 1, 12, tzinfo=UTC)


def _store(app, asset_id, value, when=T):
    with app.db.write() as session:
        session.add(
            CandleRow(
                asset_id=asset_id,
                close_time=when,
                open=value,
                high=value,
                low=value,
                close=value,
                volume=None,
                interval_seconds=3600,
                source="t",
            )
        )
    with app.db.read() as session:
        return session.scalar(select(CandleRow).where(CandleRow.close_time == when))


@pytest.mark.parametrize(
    "value", ["0.00000001", "12345678901.12345678", "-3.5", "0", "42000.1", "0.1"]
)
def test_fixed_scale_round_trip_is_exact(app, value):
    ids = seed_assets(app)
    row = _store(app, ids["BTC"], D(value))
    assert row.close == D(value)
    assert isinstance(row.close, D)
    assert row.volume is None


def test_values_are_rounded_half_even_to_eight_places(app):
    ids = seed_assets(app)
    row = _store(app, ids["BTC"], D("1.000000005"))
    assert row.close == D("1.00000000")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=st.decimals(min_value=D("-1e10"), max_value=D("1e10"), places=8))
def test_any_eight_place_value_round_trips(sqlite_app, value):
    ids = seed_assets(sqlite_app)
    when = T + timedelta(seconds=abs(hash(value)) % 10_000_000)
    with sqlite_app.db.write() as session:
        session.merge(
            CandleRow(
                id=1,
                asset_id=ids["BTC"],
                close_time=when,
                open=value,
                high=value,
                low=value,
                close=value,
                volume=value,
                interval_seconds=60,
                source="t",
            )
        )
    with sqlite_app.db.read() as session:
        row = session.get(CandleRow, 1)
    assert row.close == value and row.volume == value


def test_floats_and_naive_datetimes_are_refused(app):
    ids = seed_assets(app)
    with pytest.raises(Exception, match="Decimal"):
        _store(app, ids["BTC"], 1.5)
    with pytest.raises(Exception, match="naive"):
        _store(app, ids["BTC"], D(1), when=datetime(2024, 1, 1))


def test_other_offsets_are_converted_to_utc(app):
    ids = seed_assets(app)
    paris = timezone(timedelta(hours=1))
    row = _store(app, ids["BTC"], D(1), when=datetime(2024, 3, 1, 13, tzinfo=paris))
    assert row.close_time == T
    assert row.close_time.utcoffset() == timedelta(0)


def test_bad_urls_name_the_setting(tmp_path):
    with pytest.raises(DatabaseError, match="RACE_DATABASE_URL"):
        Database("not a url")
    with pytest.raises(DatabaseError, match=r"RACE_DATABASE_URL.*does not exist"):
        Database(f"sqlite:///{tmp_path}/missing/dir/race.db")
    with pytest.raises(DatabaseError, match="in-memory"):
        Database("sqlite://")
    db = Database(f"sqlite:///{tmp_path}/new.db")
    with pytest.raises(DatabaseError, match="no such database file"):
        db.require_schema()
    assert not (tmp_path / "new.db").exists()
    (tmp_path / "new.db").touch()
    with pytest.raises(DatabaseError, match="no race schema yet"):
        db.require_schema()
    unreachable = Database("postgresql+psycopg://postgres:hunter2@127.0.0.1:1/none")
    with pytest.raises(DatabaseError, match="RACE_DATABASE_URL") as info:
        unreachable.ping()
    assert "hunter2" not in str(info.value)


BTC_RECORD_24H_USD_VOLUME = D("190460293531.53802")  # CoinGecko, 2024-12-06 (shared/data)


def test_a_24h_usd_volume_beyond_9e10_round_trips_in_the_cents_column(app):
    ids = seed_assets(app)
    with app.db.write() as session:
        session.add(
            CandleRow(
                asset_id=ids["BTC"],
                close_time=T,
                open=D("97201.5"),
                high=D("97201.5"),
                low=D("97201.5"),
                close=D("97201.5"),
                volume=None,
                quote_volume_24h=BTC_RECORD_24H_USD_VOLUME,
                interval_seconds=3600,
                source="t",
            )
        )
    with app.db.read() as session:
        row = session.scalar(select(CandleRow).where(CandleRow.close_time == T))
    assert row.quote_volume_24h == D("190460293531.54")  # to the cent, half-even
    assert row.volume is None


def test_the_8_decimal_column_refuses_it_on_sqlite_with_a_clear_error(sqlite_app):
    ids = seed_assets(sqlite_app)
    limit = r"out of range .* 8 decimals on SQLite .*9\.223e\+10"
    with pytest.raises(Exception, match=limit), sqlite_app.db.write() as session:
        session.add(
            CandleRow(
                asset_id=ids["BTC"],
                close_time=T,
                open=D(1),
                high=D(1),
                low=D(1),
                close=D(1),
                volume=BTC_RECORD_24H_USD_VOLUME,
                interval_seconds=3600,
                source="t",
            )
        )


def test_fixed_scales():
    from market.validation import QUOTE_VOLUME_SCALE
    from race.store.types import Fixed

    assert Fixed().scale == 8 and Fixed(scale=2).sqlite_limit == D(2**63 - 1).scaleb(-2)
    assert CandleRow.__table__.c.quote_volume_24h.type.scale == QUOTE_VOLUME_SCALE
    assert CandleRow.__table__.c.volume.type.scale == 8
    with pytest.raises(ValueError, match="scale"):
        Fixed(scale=-1)
    assert repr(Fixed(scale=2)) == "Fixed(scale=2)"  # autogenerated migrations keep it
    # a different scale is a different type for SQLAlchemy's statement cache
    assert Fixed(scale=2)._static_cache_key != Fixed()._static_cache_key


@settings(max_examples=200, deadline=None)
@given(
    units=st.one_of(st.none(), st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1)),
    scale=st.sampled_from([8, 2, 0]),
)
def test_the_sqlite_money_reader_is_process_result_value(units, scale):
    """The one-closure reader of a replay's candle tape gives the same Decimal, exponent
    included, as the generic path (the stored integer through process_result_value)."""
    from sqlalchemy.dialects import sqlite

    from race.store.types import Fixed

    dialect = sqlite.dialect()
    column = Fixed(scale=scale)
    fast = column.result_processor(dialect, None)
    expected = column.process_result_value(units, dialect)
    assert str(fast(units)) == str(expected)


@settings(max_examples=200, deadline=None)
@given(
    when=st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    form=st.sampled_from(["stored", "seconds", "offset", "none"]),
)
def test_the_sqlite_time_reader_is_process_result_value(when, form):
    """The same for times: SQLite's text (as the race writes it, without microseconds, with
    an offset) parsed and made UTC-aware exactly as the generic path does."""
    from sqlalchemy import DateTime
    from sqlalchemy.dialects import sqlite

    from race.store.types import UTCDateTime

    dialect = sqlite.dialect()
    text = {
        "stored": when.replace(tzinfo=None).isoformat(" ", "microseconds"),
        "seconds": when.replace(tzinfo=None, microsecond=0).isoformat(" "),
        "offset": when.isoformat(" "),
        "none": None,
    }[form]
    column = UTCDateTime()
    parse = DateTime().dialect_impl(dialect).result_processor(dialect, None)
    expected = column.process_result_value(None if text is None else parse(text), dialect)
    got = column.result_processor(dialect, None)(text)
    assert got == expected
    assert (got is None) or (got.tzinfo is UTC and got.isoformat() == expected.isoformat())
