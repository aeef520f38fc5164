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
from race.domain.model import Candle
from race.ingest import IngestReport, ingest_coingecko
from race.store.tables import Asset, CandleRow, JobRow
from race.universe import add_asset
from tests.coingecko_server import FakeCoinGecko, Reply
from tests.factories import insert_candles

HOUR = timedelta(hours=1)
KEY = "CG-ingest-key-93b1"
NOW = datetime(2024, 1, 1, tzinfo=UTC)  # the conftest clock


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
        assert all(r.volume is not None for r in rows)  # /market_chart/range has volumes
    assert [r.endpoint for r in server.requests] == ["market_chart/range"] * 2
    assert all(r.headers["x-cg-demo-api-key"] == KEY for r in server.requests)
    assert progress[0] == (0, 2) and progress[-1] == (2, 2)


def test_the_timer_fetches_only_what_is_missing_and_never_an_open_candle(app, server, clock):
    ingest(app)
    server.requests.clear()
    clock.advance(10 * 60)  # 00:10: the 01:00 candle is still forming
    report = ingest(app)
    assert server.requests == []  # up to date: no call at all
    assert report.inserted == 0 and "up to date" in report.asset("BTC").notes
    clock.advance(3600)  # 01:10
    report = ingest(app)
    assert [r.query.get("days") for r in server.requests] == ["1", "1"]  # one /ohlc each
    btc = report.asset("BTC")
    assert (btc.inserted, btc.open, btc.unchanged, btc.conflicts) == (1, 1, 0, 0)
    rows = stored(app, "BTC")
    assert rows[-1].close_time == NOW + HOUR  # 02:00 (still open at 01:10) is not stored
    assert rows[-1].source == "coingecko:ohlc"
    assert rows[-1].volume is None  # /ohlc has no volume: NULL, never a fake 0


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
    assert (job.kind, job.status, job.cursor, job.done, job.total) == ("ingest", "done", end, 2, 2)
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
    assert report.asset("BTC").inserted > 0


def test_bad_rows_from_the_api_are_counted_and_never_stored(app, server, clock, caplog):
    ingest(app, symbols=["BTC"])  # up to 00:00
    clock.advance(3 * 3600 + 600)  # 03:10
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
        [ms(NOW + 7 * half), 40090, 40100, 40000, 40095],  # 03:30: open at 03:10
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
    planted = Candle("BTC", NOW - 5 * HOUR, *[Decimal("12345.6")] * 4, Decimal(1))
    insert_candles(app, [planted], source="earlier")
    caplog.set_level(logging.WARNING)
    report = ingest(app, symbols=["BTC"], start=NOW - 10 * HOUR, end=NOW)
    btc = report.asset("BTC")
    assert (btc.inserted, btc.conflicts) == (10, 1)
    row = next(r for r in stored(app, "BTC") if r.close_time == planted.close_time)
    assert (row.close, row.source) == (Decimal("12345.6"), "earlier")
    assert "already stored with other values" in caplog.text


def test_an_implausible_jump_against_the_stored_candle_is_rejected(app, server, clock):
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
    earliest = NOW - timedelta(days=365)
    assert earliest < eth.first_close <= earliest + 3 * HOUR
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
