"""Live ingestion and backfills from the loopback CoinGecko into SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from market import validation as v
from market.coingecko import CoinGeckoAuthError
from race.bootstrap import bootstrap
from race.clock import ManualClock
from race.domain.model import Candle
from race.ingest import IngestReport, ingest_coingecko
from race.store.tables import Asset, CandleRow, JobRow
from race.universe import add_asset
from tests.coingecko_server import FakeCoinGecko, Reply, Request
from tests.factories import insert_candles

HOUR = timedelta(hours=1)
KEY = "CG-ingest-key-93b1"
NOW = datetime(2024, 1, 1, tzinfo=UTC)
SETTLE = timedelta(seconds=900)  # COINGECKO_SETTLE_SECONDS's default


@pytest.fixture
def clock() -> ManualClock:
    """A quarter past NOW: the candle closing at NOW has just settled."""
    return ManualClock(NOW + SETTLE)


@pytest.fixture
def server(clock):
    with FakeCoinGecko(now=clock.now, demo_key=KEY) as fake:
        yield fake


@pytest.fixture
def make_app(database_url, clock, server):
    apps = []

    def build(**overrides):
        settings = {
            "RACE_DATABASE_URL": database_url,
            "COINGECKO_BASE_URL": server.base_url,
            "COINGECKO_API_KEY": KEY,
            **overrides,
        }
        built = bootstrap(overrides=settings, clock=clock)
        apps.append(built)
        return built

    yield build
    for built in apps:
        built.close()


@pytest.fixture
def app(make_app):
    return make_app()


def ingest(app, **kwargs) -> IngestReport:
    return asyncio.run(ingest_coingecko(app, **kwargs))


def stored(app, symbol: str) -> list[CandleRow]:
    with app.db.read() as session:
        return list(
            session.scalars(
                select(CandleRow)
                .join(Asset, Asset.id == CandleRow.asset_id)
                .where(Asset.symbol == symbol)
                .order_by(CandleRow.close_time)
            )
        )


def test_live_ingestion_on_an_empty_database(app, server):
    progress: list[tuple[int, int]] = []
    report = ingest(app, on_progress=lambda done, total: progress.append((done, total)))
    assert report.ok and report.plan == "demo"
    assert "seeded the asset universe from RACE_ASSETS" in report.notes
    expected = [NOW - 7 * 24 * HOUR + i * HOUR for i in range(7 * 24 + 1)]  # RACE_INGEST_LOOKBACK
    for symbol in ("BTC", "ETH"):
        result = report.asset(symbol)
        assert result.inserted == len(expected) and result.calls == 1
        assert result.rejected_total == 0 and result.conflicts == 0
        assert result.latest_close_time == NOW
        rows = stored(app, symbol)
        assert [r.close_time for r in rows] == expected
        assert all(r.source == "coingecko:range" and r.interval_seconds == 3600 for r in rows)
        # /market_chart/range has CoinGecko's rolling 24 h USD volume, no per-candle volume
        assert all(r.volume is None and r.quote_volume_24h > 0 for r in rows)
    assert [r.endpoint for r in server.requests] == ["market_chart/range"] * 2
    assert all(r.headers["x-cg-demo-api-key"] == KEY for r in server.requests)
    assert progress[0] == (0, 2) and progress[-1] == (2, 2)


def test_the_timer_fetches_only_what_is_missing_and_never_an_open_candle(app, server, clock):
    ingest(app)
    server.requests.clear()
    clock.advance(10 * 60)  # 00:25: the 01:00 candle is still forming
    report = ingest(app)
    assert server.requests == []  # up to date: no call at all
    assert report.inserted == 0 and "up to date" in report.asset("BTC").notes
    clock.advance(3600)  # 01:25
    report = ingest(app)
    assert [r.query.get("days") for r in server.requests] == ["1", "1"]  # one /ohlc each
    btc = report.asset("BTC")
    assert (btc.inserted, btc.open, btc.unchanged, btc.conflicts) == (1, 1, 0, 0)
    rows = stored(app, "BTC")
    assert rows[-1].close_time == NOW + HOUR  # 02:00 (still open at 01:25) is not stored
    assert rows[-1].source == "coingecko:ohlc"
    # /ohlc has no volume of either kind: NULL, never a fake 0
    assert rows[-1].volume is None and rows[-1].quote_volume_24h is None


def test_live_ingestion_after_a_long_pause_starts_at_the_lookback(make_app, clock):
    app = make_app(RACE_INGEST_LOOKBACK="2d")
    add_asset(app.db, "BTC", "bitcoin", app.clock)
    insert_candles(app, [Candle("BTC", NOW - 30 * 24 * HOUR, *[Decimal(40000)] * 4, None)])
    report = ingest(app, symbols=["BTC"])
    btc = report.asset("BTC")
    assert btc.inserted == 2 * 24 + 1
    assert "RACE_INGEST_LOOKBACK" in btc.notes[0] and "--start" in btc.notes[0]


def test_a_backfill_is_chunked_paced_and_complete(app, server):
    start, end = datetime(2023, 9, 1, tzinfo=UTC), datetime(2023, 12, 1, tzinfo=UTC)
    report = ingest(app, symbols=["BTC"], start=start, end=end)
    btc = report.asset("BTC")
    hours = int((end - start) / HOUR) + 1
    assert btc.inserted == hours and not btc.gaps and btc.calls == 2
    assert [r.close_time for r in stored(app, "BTC")] == [start + i * HOUR for i in range(hours)]
    ranges = server.requests_to("market_chart/range")
    assert len(ranges) == 2
    for request in ranges:
        span = int(request.query["to"]) - int(request.query["from"])
        assert span < 90 * 86400  # hourly points
    with app.db.read() as session:
        job = session.scalar(select(JobRow))
    assert (job.kind, job.status, job.cursor, job.done, job.total) == (
        "ingest",
        "completed",
        end,
        2,
        2,
    )
    assert btc.job_id == job.id


def test_re_running_inserts_nothing(app, server):
    start, end = datetime(2023, 12, 20, tzinfo=UTC), datetime(2023, 12, 31, tzinfo=UTC)
    first = ingest(app, start=start, end=end)
    assert first.inserted == 2 * (11 * 24 + 1)
    calls = len(server.requests)
    again = ingest(app, start=start, end=end)  # the same backfill: its job is done
    assert again.inserted == 0 and len(server.requests) == calls
    overlapping = ingest(app, start=start - 24 * HOUR, end=end)  # refetches the overlap
    btc = overlapping.asset("BTC")
    assert (btc.inserted, btc.unchanged, btc.conflicts) == (24, 11 * 24 + 1, 0)
    with app.db.read() as session:
        assert session.scalar(select(func.count()).select_from(CandleRow)) == 2 * (12 * 24 + 1)


def test_retries_exhausted_leave_nothing_half_written_and_the_backfill_resumes(
    make_app, server, caplog
):
    app = make_app(COINGECKO_MAX_ATTEMPTS="3")
    start, end = datetime(2023, 9, 1, tzinfo=UTC), datetime(2023, 12, 1, tzinfo=UTC)
    server.queue(Reply(), *[Reply.server_error(502)] * 3, endpoint="market_chart/range")
    report = ingest(app, start=start, end=end)
    assert not report.ok
    btc, eth = report.asset("BTC"), report.asset("ETH")
    assert "3 attempts" in btc.error and "502" in btc.error
    assert eth.error.startswith("not tried")  # no hammering a failing API
    rows = stored(app, "BTC")
    first_chunk = rows[-1].close_time
    assert rows[0].close_time == start and len(rows) == int((first_chunk - start) / HOUR) + 1
    assert stored(app, "ETH") == []
    with app.db.read() as session:
        jobs = {j.params["symbol"]: j for j in session.scalars(select(JobRow))}
    assert jobs["BTC"].status == "failed" and jobs["BTC"].cursor == first_chunk
    assert "502" in jobs["BTC"].error
    assert jobs["ETH"].status == "failed" and jobs["ETH"].cursor is None

    server.requests.clear()
    resumed = ingest(app, start=start, end=end)
    assert resumed.ok
    assert "resumed job" in resumed.asset("BTC").notes[0]
    first_request = server.requests_to("market_chart/range")[0]
    assert int(first_request.query["from"]) == int((first_chunk + HOUR - 2 * HOUR).timestamp())
    hours = int((end - start) / HOUR) + 1
    for symbol in ("BTC", "ETH"):
        assert len(stored(app, symbol)) == hours
    assert resumed.asset("BTC").unchanged == 0  # resumed, not refetched


def test_a_bad_key_fails_fast_and_writes_nothing(make_app, server):
    app = make_app(COINGECKO_API_KEY="not-the-key")
    with pytest.raises(CoinGeckoAuthError, match="COINGECKO_API_KEY"):
        ingest(app)
    assert len(server.requests) == 1
    with app.db.read() as session:
        assert session.scalar(select(func.count()).select_from(CandleRow)) == 0


def test_an_unknown_coin_id_fails_that_asset_only(app, server):
    add_asset(app.db, "BTC", "bitcoin", app.clock)
    add_asset(app.db, "FOO", "foo-coin", app.clock)
    report = ingest(app)
    assert not report.ok
    assert "'foo-coin'" in report.errors["FOO"]
    foo = report.asset("FOO")
    # it fetched nothing: no window covered, so no gaps (not its whole week "missing")
    assert (foo.gaps, foo.missing, foo.first_close, foo.last_close) == ([], 0, None, None)
    assert report.asset("BTC").inserted > 0


def test_bad_rows_from_the_api_are_counted_and_never_stored(app, server, clock, caplog):
    ingest(app, symbols=["BTC"])  # up to 00:00
    clock.advance(3 * 3600 + 600)  # 03:25: settled up to 03:10
    half = timedelta(minutes=30)

    def ms(when: datetime) -> int:
        return int(when.timestamp() * 1000)

    rows = [
        [ms(NOW + half), 40000, 40100, 39900, 40050],
        [ms(NOW + 2 * half), 40050, 40100, 39900, float("nan")],  # NaN: 01:00 incomplete
        [ms(NOW + 3 * half), 40050, 40100, 39000, 40060],
        [ms(NOW + 4 * half), 40060, 40100, 40200, 40070],  # high < low: 02:00 incomplete
        [ms(NOW + 5 * half), 40070, 40100, 40000, 40080],
        [ms(NOW + 6 * half), 40080, 40100, 40000, 40090],  # 03:00 complete
        [ms(NOW + 6 * half), 40080, 40100, 40000, 40090],  # duplicate
        [ms(NOW + 7 * half), 40090, 40100, 40000, 40095],  # 03:30: open at 03:25
        [ms(NOW + 6 * half), "40080"],
    ]
    server.queue(Reply.json(rows), endpoint="ohlc")
    caplog.set_level(logging.WARNING)
    report = ingest(app, symbols=["BTC"])
    btc = report.asset("BTC")
    assert dict(btc.rejected) == {
        v.NON_FINITE: 1,
        v.HIGH_BELOW_LOW: 1,
        v.MALFORMED: 1,
        v.INCOMPLETE: 2,
    }
    assert (btc.inserted, btc.duplicates, btc.open, btc.fetched) == (1, 1, 1, len(rows))
    assert [r.close_time for r in stored(app, "BTC")][-1] == NOW + 3 * HOUR
    assert btc.gaps == [v.Gap(NOW + HOUR, NOW + 2 * HOUR, 2)]
    assert "rejected non_finite" in caplog.text and "incomplete_bucket" in caplog.text


def test_a_changed_value_for_a_stored_candle_is_a_conflict_not_an_overwrite(app, server, caplog):
    add_asset(app.db, "BTC", "bitcoin", app.clock)
    planted = Candle("BTC", NOW - 5 * HOUR, *[Decimal("39012.6")] * 4, Decimal(1))
    insert_candles(app, [planted], source="earlier")
    caplog.set_level(logging.WARNING)
    report = ingest(app, symbols=["BTC"], start=NOW - 10 * HOUR, end=NOW)
    btc = report.asset("BTC")
    assert (btc.inserted, btc.conflicts) == (10, 1)
    row = next(r for r in stored(app, "BTC") if r.close_time == planted.close_time)
    assert (row.close, row.source) == (Decimal("39012.6"), "earlier")
    assert "already stored with other values" in caplog.text


def test_an_implausible_jump_against_the_stored_candle_is_rejected(make_app, server, clock):
    # History checks relaxed: this is the adjacent-candle jump rule alone (with them, the
    # later candles are 8x the stored close too: tests/test_ingest_plausibility.py).
    app = make_app(RACE_CANDLE_MAX_DEVIATION="100", RACE_CANDLE_MAX_DAY_MOVE="100")
    add_asset(app.db, "BTC", "bitcoin", app.clock)
    insert_candles(app, [Candle("BTC", NOW - 3 * HOUR, *[Decimal(5000)] * 4, None)])
    report = ingest(app, symbols=["BTC"])
    btc = report.asset("BTC")
    assert btc.rejected == {v.IMPLAUSIBLE_MOVE: 1}  # 22:00 is 8x the stored 21:00 close
    assert [r.close_time for r in stored(app, "BTC")] == [
        NOW - 3 * HOUR,
        NOW - HOUR,
        NOW,
    ]


def test_demo_backfills_stop_at_365_days(app, server):
    end = NOW - timedelta(days=340)
    report = ingest(app, symbols=["ETH"], start=datetime(2022, 1, 1, tzinfo=UTC), end=end)
    eth = report.asset("ETH")
    assert any("365 days" in note for note in eth.notes)
    earliest = NOW + SETTLE - timedelta(days=365)  # the clock's now, minus the history limit
    assert earliest < eth.first_close <= earliest + 4 * HOUR
    assert eth.inserted == int((end - eth.first_close) / HOUR) + 1 and eth.error is None
    ranges = server.requests_to("market_chart/range")
    assert len(ranges) == 1
    assert all(r.path.endswith("/coins/ethereum/market_chart/range") for r in ranges)


def test_the_report_is_json_and_text(app):
    report = ingest(app, symbols=["BTC"])
    data = json.loads(json.dumps(report.as_dict()))
    assert data["source"] == "coingecko" and data["ok"] is True
    asset = data["assets"][0]
    for key in (
        "fetched",
        "inserted",
        "duplicates",
        "conflicts",
        "rejected",
        "gaps",
        "latestCloseTime",
    ):
        assert key in asset
    assert asset["latestCloseTime"] == NOW.isoformat()
    text = report.render()
    assert "BTC" in text and "inserted" in text and "latest close" in text


def test_two_ingestions_at_once_store_each_candle_once(app, server):
    add_asset(app.db, "BTC", "bitcoin", app.clock)
    reports: list[IngestReport] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            reports.append(ingest(app, symbols=["BTC"], start=NOW - 48 * HOUR, end=NOW))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(stored(app, "BTC")) == 49
    inserted = sum(r.inserted for r in reports)
    assert inserted == 49
    assert all(r.asset("BTC").conflicts == 0 for r in reports)


# ---------------------------------------------------------------- settling


def test_a_candle_is_stored_only_once_settled_not_from_a_cached_answer(app, server, clock):
    """CoinGecko caches /ohlc: at 01:00:05 its answer may still be built from 00:50 data,
    the 01:00 candle stamped as if closed. Stored only once 15 minutes have passed."""
    add_asset(app.db, "BTC", "bitcoin", app.clock)
    ingest(app, symbols=["BTC"], start=NOW - 5 * HOUR, end=NOW - HOUR)  # up to 23:00
    server.stale_by = timedelta(minutes=10)
    clock.advance((NOW + HOUR + timedelta(seconds=5) - clock.now()).total_seconds())
    report = ingest(app, symbols=["BTC"])  # at 01:00:05
    btc = report.asset("BTC")
    assert server.requests_to("ohlc")[-1].query["days"] == "1"
    assert (btc.inserted, btc.open) == (1, 1)  # 00:00 stored; 01:00 not settled: open
    assert stored(app, "BTC")[-1].close_time == NOW
    clock.advance(20 * 60)  # 01:20:05, the cached answer is as of 01:10
    report = ingest(app, symbols=["BTC"])
    assert report.asset("BTC").inserted == 1
    last = stored(app, "BTC")[-1]
    assert last.close_time == NOW + HOUR
    true_close = round(server.coins["bitcoin"].price(NOW + HOUR), 2)
    assert last.close == Decimal(str(true_close))  # the real close, not the 00:50 price


def test_backfills_stop_at_the_last_settled_close_and_the_setting_moves_it(make_app, clock):
    clock.advance(50 * 60)  # 01:05
    for settle, last_stored in (("900", NOW), ("0", NOW + HOUR)):
        app = make_app(COINGECKO_SETTLE_SECONDS=settle)
        report = ingest(app, symbols=["BTC"], start=NOW - 3 * HOUR, end=NOW + HOUR)
        btc = report.asset("BTC")
        assert stored(app, "BTC")[-1].close_time == last_stored
        if settle == "900":
            assert any("COINGECKO_SETTLE_SECONDS" in note for note in btc.notes)
        with app.db.write() as session:
            session.query(CandleRow).delete()
            session.query(JobRow).delete()


# ---------------------------------------------------------------- volumes


def test_a_24h_usd_volume_beyond_9e10_is_stored_exactly(app, server):
    """BTC's 24 h USD volume reached 1.9e11 (CoinGecko, 2024-12-06): more than an 8-decimal
    column holds on SQLite. It goes to quote_volume_24h, in cents, on every backend."""
    server.coins["bitcoin"].volume = 1.9e11
    report = ingest(app, symbols=["BTC"])
    assert report.ok, report.errors
    rows = stored(app, "BTC")
    assert len(rows) == 7 * 24 + 1
    # what the fake answered: the volume of each candle's close point (the last at or
    # before its close)
    request = Request(
        "GET",
        "/api/v3/coins/bitcoin/market_chart/range",
        {
            "vs_currency": "usd",
            "from": str(int((rows[0].close_time - 2 * HOUR).timestamp())),
            "to": str(int(rows[-1].close_time.timestamp())),
        },
        {"x-cg-demo-api-key": KEY},
    )
    status, body, _ = server.answer(request)
    assert status == 200
    at_close: dict[datetime, Decimal] = {}
    for stamp, value in body["total_volumes"]:
        when = datetime.fromtimestamp(stamp / 1000, UTC)
        close = when.replace(minute=0, second=0, microsecond=0) + (
            HOUR if when.minute or when.second or when.microsecond else timedelta(0)
        )
        at_close[close] = Decimal(str(value))
    for row in rows:
        assert row.volume is None
        assert row.quote_volume_24h > Decimal("9.3e10")
        assert row.quote_volume_24h == at_close[row.close_time]


def test_a_coingecko_volume_of_zero_is_unknown_not_zero(app, server):
    server.add_coin("early-coin", 100.0, volume=0.0)  # CoinGecko's 0 for early dates
    add_asset(app.db, "OLD", "early-coin", app.clock)
    report = ingest(app, symbols=["OLD"])
    old = report.asset("OLD")
    assert old.inserted == 7 * 24 + 1 and old.rejected_total == 0
    assert all(r.volume is None and r.quote_volume_24h is None for r in stored(app, "OLD"))
    assert any("read as unknown" in note for note in old.notes)


def test_bad_range_points_are_rejected_and_counted(app, server):
    """NaN and string prices, duplicated points, unusable and missing total_volumes."""
    add_asset(app.db, "BTC", "bitcoin", app.clock)
    start, end = NOW - 6 * HOUR, NOW

    def ms(when: datetime) -> int:
        return int(when.timestamp() * 1000)

    minutes = timedelta(minutes=3)
    hours = [start - 2 * HOUR + i * HOUR + minutes for i in range(8)]  # 16:03 … 23:03
    prices = [[ms(t), 40000 + 10 * i] for i, t in enumerate(hours)]
    prices[3][1] = float("nan")  # 19:03: the 20:00 candle has no point left
    prices[5][1] = "40050"  # 21:03: a string; the 22:00 candle has no point left
    prices.append([ms(hours[6]), 40060])  # an identical duplicate of 22:03
    prices.append([ms(hours[7]), 40099])  # a differing duplicate of 23:03
    volumes = [[ms(t), 2.0e10] for t in hours]
    volumes[1][1] = float("nan")  # 17:03, the close point of 18:00
    volumes[2][1] = "lots"  # 18:03, the close point of 19:00
    volumes[4][1] = -5
    server.queue(
        Reply.json({"prices": prices, "market_caps": [], "total_volumes": volumes}),
        endpoint="market_chart/range",
    )
    report = ingest(app, symbols=["BTC"], start=start, end=end)
    btc = report.asset("BTC")
    assert btc.fetched == len(prices)
    assert dict(btc.rejected) == {
        v.NON_FINITE: 1,  # the NaN price
        v.NOT_A_NUMBER: 2,  # the string price, the string volume
        v.BAD_VOLUME: 2,  # NaN and negative volumes: the point stays, its volume is unknown
        # 21:00 and 23:00: one point each and none in the hour before their open
        v.INCOMPLETE: 2,
    }
    assert (btc.duplicates, btc.duplicates_differing) == (2, 1)
    rows = {r.close_time: r for r in stored(app, "BTC")}
    assert sorted(rows) == [NOW - 6 * HOUR, NOW - 5 * HOUR, NOW]
    assert btc.missing == 4  # 20:00 … 23:00, reported as a gap
    # their close points' volumes were NaN and a string: unknown, not 0
    assert rows[NOW - 6 * HOUR].quote_volume_24h is None
    assert rows[NOW - 5 * HOUR].quote_volume_24h is None
    assert rows[NOW].quote_volume_24h == Decimal("20000000000.00")
    assert rows[NOW].close == Decimal(40070)  # the first 23:03 point, not its differing twin
    assert all(r.volume is None for r in rows.values())

    server.queue(Reply.json({"prices": prices[:8]}), endpoint="market_chart/range")
    later = ingest(app, symbols=["BTC"], start=start - 2 * HOUR, end=start - HOUR)
    assert any("no total_volumes" in note for note in later.asset("BTC").notes)


# ---------------------------------------------------------------- failures


def refuse_inserts(app, asset_id: int) -> None:
    """A real store error for one asset: a trigger that aborts its candle inserts."""
    with app.db.engine.begin() as connection:
        if app.db.dialect == "sqlite":
            connection.exec_driver_sql(
                f"CREATE TRIGGER refuse_asset BEFORE INSERT ON candles "
                f"WHEN NEW.asset_id = {asset_id} BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
            )
        else:
            connection.exec_driver_sql(
                "CREATE FUNCTION refuse_candles() RETURNS trigger AS "
                "$$ BEGIN RAISE EXCEPTION 'disk says no'; END $$ LANGUAGE plpgsql"
            )
            connection.exec_driver_sql(
                f"CREATE TRIGGER refuse_asset BEFORE INSERT ON candles FOR EACH ROW "
                f"WHEN (NEW.asset_id = {asset_id}) EXECUTE FUNCTION refuse_candles()"
            )


def allow_inserts(app) -> None:
    with app.db.engine.begin() as connection:
        if app.db.dialect == "sqlite":
            connection.exec_driver_sql("DROP TRIGGER IF EXISTS refuse_asset")
        else:
            connection.exec_driver_sql("DROP TRIGGER IF EXISTS refuse_asset ON candles")
            connection.exec_driver_sql("DROP FUNCTION IF EXISTS refuse_candles()")


@pytest.fixture
def refusing(app):
    yield lambda asset_id: refuse_inserts(app, asset_id)
    allow_inserts(app)


def test_an_unexpected_store_error_fails_that_asset_only(app, server, refusing):
    add_asset(app.db, "BTC", "bitcoin", app.clock)
    add_asset(app.db, "ETH", "ethereum", app.clock)
    with app.db.read() as session:
        refusing(session.scalar(select(Asset.id).where(Asset.symbol == "BTC")))
    start, end = datetime(2023, 9, 1, tzinfo=UTC), datetime(2023, 12, 1, tzinfo=UTC)
    report = ingest(app, start=start, end=end)
    assert not report.ok
    btc, eth = report.asset("BTC"), report.asset("ETH")
    assert "storing the candles" in btc.error and "disk says no" in btc.error
    assert "INSERT" not in btc.error  # the driver's message, not SQLAlchemy's statement
    assert (btc.inserted, btc.gaps, btc.calls) == (0, [], 1)  # stopped after the failed chunk
    assert stored(app, "BTC") == []
    assert eth.error is None and eth.inserted == int((end - start) / HOUR) + 1
    with app.db.read() as session:
        jobs = {j.params["symbol"]: j for j in session.scalars(select(JobRow))}
    assert jobs["BTC"].status == "failed" and "disk says no" in jobs["BTC"].error
    assert jobs["ETH"].status == "completed"


def test_a_price_beyond_any_column_is_rejected_and_the_others_ingest(sqlite_url, clock, server):
    """The audit's crash: a ValueError from the fixed-scale type aborted the whole run; such
    a price is now a rejected candle with its reason, before it reaches SQL."""
    app = bootstrap(
        overrides={
            "RACE_DATABASE_URL": sqlite_url,
            "COINGECKO_BASE_URL": server.base_url,
            "COINGECKO_API_KEY": KEY,
        },
        clock=clock,
    )
    try:
        server.add_coin("giant", 2.0e11)  # a price an 8-decimal SQLite column cannot hold
        add_asset(app.db, "GIANT", "giant", app.clock)
        add_asset(app.db, "BTC", "bitcoin", app.clock)
        report = ingest(app)
        giant, btc = report.asset("GIANT"), report.asset("BTC")
        assert giant.error is None and giant.inserted == 0
        assert set(giant.rejected) == {v.PRICE_TOO_LARGE} and giant.rejected_total > 0
        assert btc.error is None and btc.inserted == 7 * 24 + 1
    finally:
        app.close()


def test_the_keyless_public_plan_end_to_end(database_url, clock):
    with FakeCoinGecko(now=clock.now) as keyless:  # answers without any key
        app = bootstrap(
            overrides={
                "RACE_DATABASE_URL": database_url,
                "COINGECKO_BASE_URL": keyless.base_url,
                "COINGECKO_PLAN": "public",
            },
            clock=clock,
        )
        try:
            report = ingest(app)
            assert report.ok and report.plan == "public"
            assert report.asset("BTC").inserted == report.asset("ETH").inserted == 7 * 24 + 1
            assert [r.path for r in keyless.requests] == [
                "/api/v3/coins/bitcoin/market_chart/range",
                "/api/v3/coins/ethereum/market_chart/range",
            ]
            for request in keyless.requests:
                assert not {"x-cg-demo-api-key", "x-cg-pro-api-key"} & set(request.headers)
                assert request.headers["user-agent"].startswith("ai-trading-race/")
        finally:
            app.close()
