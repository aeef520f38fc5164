"""The driver-level bulk read (``race.store.bulk.select_values``) returns what SQLAlchemy's
result rows return, value for value (Decimal exponents and UTC times included), on both
engines: a replay's candle tape is loaded through it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from race.store.bulk import select_values
from race.store.tables import CandleRow
from race.store.views import _CANDLE_COLUMNS, CandleTape, market_view
from tests.factories import seed_assets

T = datetime(2024, 3, 1, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _rows(app, asset_id, prices):
    with app.db.write() as session:
        for i, (price, volume, quote) in enumerate(prices):
            session.add(
                CandleRow(
                    asset_id=asset_id,
                    close_time=T + i * HOUR,
                    open=price,
                    high=price + 1,
                    low=price,
                    close=price,
                    volume=volume,
                    quote_volume_24h=quote,
                    interval_seconds=3600,
                    source="t",
                )
            )


def _same(fast, slow):
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow, strict=True):
        assert tuple(map(repr, a)) == tuple(map(repr, b))


PRICES = [
    (D("0.00000001"), None, None),
    (D("42000.12345678"), D("1.5"), D("123456789012.34")),
    (D("-3.5"), D("0"), None),
    (D("92233720367.54775807"), None, D("0.01")),
    (D("1"), D("2.25"), D("5")),
]


def test_select_values_equals_result_rows_on_both_engines(app):
    ids = seed_assets(app)
    _rows(app, ids["BTC"], PRICES)
    queries = [
        select(*_CANDLE_COLUMNS)
        .where(CandleRow.asset_id == ids["BTC"], CandleRow.close_time >= T + HOUR)
        .order_by(CandleRow.close_time),
        select(*_CANDLE_COLUMNS)
        .where(CandleRow.asset_id == ids["BTC"], CandleRow.close_time < T + 4 * HOUR)
        .order_by(CandleRow.close_time.desc())
        .limit(2),
        select(CandleRow.id, CandleRow.source).where(CandleRow.asset_id == -1),
        # an IN list is rendered at execution: SQLAlchemy runs it
        select(CandleRow.close_time, CandleRow.close)
        .where(CandleRow.close.in_([D("1"), D("-3.5"), D("7")]))
        .order_by(CandleRow.close_time),
    ]
    with app.db.read() as session:
        for query in queries:
            _same(select_values(session, query), [tuple(r) for r in session.execute(query)])
        assert select_values(session, queries[0])[0][1] == D("42000.12345678")
        assert select_values(session, queries[0])[0][0].tzinfo is UTC
        assert [close for _, close in select_values(session, queries[3])] == [D("-3.5"), D("1")]


def test_the_tape_holds_the_views_candles(app):
    ids = seed_assets(app)
    _rows(app, ids["BTC"], PRICES)
    with app.db.read() as session:
        tape = CandleTape.load(session, {"BTC": ids["BTC"]}, T + 2 * HOUR, T + 4 * HOUR, 2, None)
        for hours in (2, 3, 4):
            stored = market_view(session, T + hours * HOUR, {"BTC": ids["BTC"]}, 2, None)
            assert list(tape.view(T + hours * HOUR).candles["BTC"]) == stored.candles["BTC"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prices=st.lists(
        st.tuples(
            st.decimals(min_value=D("-1e10"), max_value=D("1e10"), places=8),
            st.one_of(st.none(), st.decimals(min_value=0, max_value=D("1e9"), places=8)),
            st.one_of(st.none(), st.decimals(min_value=0, max_value=D("1e15"), places=2)),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_select_values_equals_result_rows_for_any_values(sqlite_app, prices):
    ids = seed_assets(sqlite_app)  # the same rows for every example (add_asset finds them)
    with sqlite_app.db.write() as session:
        session.query(CandleRow).delete()
    _rows(sqlite_app, ids["BTC"], prices)
    query = select(*_CANDLE_COLUMNS).order_by(CandleRow.close_time)
    with sqlite_app.db.read() as session:
        _same(select_values(session, query), [tuple(r) for r in session.execute(query)])
