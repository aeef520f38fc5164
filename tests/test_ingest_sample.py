"""Loading the bundled real candles into SQL: the real numbers, measured."""

from __future__ import annotations

import gzip
import logging
import shutil
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import delete, select

from market import sample
from market import validation as v
from market.sample import read_sample, sample_files
from market.validation import Gap
from race.bootstrap import bootstrap
from race.domain.model import Candle
from race.ingest import ingest_sample
from race.store.tables import Asset, CandleRow, JobRow
from race.universe import add_asset
from tests.factories import insert_candles, seed_assets

HOUR = timedelta(hours=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def candles(app, symbol: str, start=None, end=None) -> dict[datetime, CandleRow]:
    query = (
        select(CandleRow).join(Asset, Asset.id == CandleRow.asset_id).where(Asset.symbol == symbol)
    )
    if start is not None:
        query = query.where(CandleRow.close_time >= start)
    if end is not None:
        query = query.where(CandleRow.close_time <= end)
    with app.db.read() as session:
        return {row.close_time: row for row in session.scalars(query)}


@pytest.mark.slow
def test_loading_all_the_bundled_data(sqlite_app, caplog):
    app = sqlite_app
    caplog.set_level(logging.INFO)
    seed_assets(app)
    progress: list[tuple[int, int]] = []
    started = time.perf_counter()
    report = ingest_sample(app, on_progress=lambda done, total: progress.append((done, total)))
    elapsed = time.perf_counter() - started
    assert report.ok and report.source == "sample"
    assert progress[-1] == (120_101, 120_101)  # every data row of the four files
    expected = {
        # fetched, inserted, unchanged, duplicates, differing, conflicts, open, rejected,
        # gaps, missing hours (the last, partial row of a file is no open candle: dropped)
        "BTC": (60_050, 55_816, 1_582, 2_649, 2_649, 1, 0, {v.IMPLAUSIBLE_RANGE: 1}, 11, 23),
        "ETH": (60_051, 55_815, 1_582, 2_649, 2_648, 1, 0, {v.IMPLAUSIBLE_RANGE: 2}, 12, 24),
    }
    for symbol, numbers in expected.items():
        a = report.asset(symbol)
        measured = (
            a.fetched,
            a.inserted,
            a.unchanged,
            a.duplicates,
            a.duplicates_differing,
            a.conflicts,
            a.open,
            dict(a.rejected),
            len(a.gaps),
            a.missing,
        )
        assert measured == numbers, symbol
        assert a.first_close == utc(2017, 8, 17, 6)  # the first (04:00) row is implausible
        assert a.latest_close_time == a.last_close == utc(2023, 12, 30, 20)
        assert "date text disagrees with unix (unix used): 91" in a.notes
    btc = candles(app, "BTC")
    assert len(btc) == 55_816
    assert utc(2017, 8, 17, 5) not in btc  # 16,199.91 / 4,261.32: rejected, not "fixed"
    # where exports overlap the newer one wins: the old file's 51,080.59 is a conflict
    assert btc[utc(2021, 4, 23, 2)].close == Decimal("51048.59")
    # the old export's last row was still open: the final values (newer export) are stored
    assert btc[utc(2021, 6, 10, 1)].close == Decimal("36948.32")
    # duplicated hours keep the full-precision (unix ms) row
    assert btc[utc(2020, 8, 2, 0)].open == Decimal("11783.31")
    assert btc[utc(2020, 8, 2, 0)].volume == Decimal("2194.598589")
    eth = candles(app, "ETH", start=utc(2023, 12, 30))
    assert max(eth) == utc(2023, 12, 30, 20)  # 21:00 was still open at export time
    assert utc(2017, 8, 22, 5) not in candles(app, "ETH", end=utc(2017, 8, 23))
    gaps = report.asset("BTC").gaps
    assert gaps[0] == Gap(utc(2017, 9, 22, 21), utc(2017, 9, 23, 0), 4)
    assert Gap(utc(2023, 3, 24, 14), utc(2023, 3, 24, 14), 1) in gaps
    assert "still open" not in caplog.text  # no messages about 2021 candles
    header = report.render().splitlines()[1].split()
    assert "open" not in header and "skipped" in header
    print(f"\nbundled sample loaded in {elapsed:.2f} s")

    # Loading again changes nothing: see test_loading_a_range_on_each_backend (the same code
    # path on a week of the overlap, where the differing hour is reported again, never applied).


def test_loading_a_range_on_each_backend(app):
    seed_assets(app)
    start, end = utc(2021, 4, 19), utc(2021, 4, 26)
    report = ingest_sample(app, symbols=["BTC"], start=start, end=end)
    for symbol in ("BTC",):
        a = report.asset(symbol)
        # 169 hours, of which 2 (04-20 03:00, 04:00) and 3 (04-25 06:00-08:00) are missing in
        # both exports; the old export repeats the other 164, one of them with another close
        assert (a.inserted, a.unchanged, a.conflicts, a.duplicates) == (164, 163, 1, 0)
        assert a.gaps == [
            Gap(utc(2021, 4, 20, 3), utc(2021, 4, 20, 4), 2),
            Gap(utc(2021, 4, 25, 6), utc(2021, 4, 25, 8), 3),
        ]
        assert (a.first_close, a.last_close) == (start, end)
    stored = candles(app, "BTC")
    assert min(stored) == start and max(stored) == end
    assert stored[utc(2021, 4, 23, 2)].close == Decimal("51048.59")
    assert all(row.source == "sample:binance_spot" for row in stored.values())
    with app.db.read() as session:  # each file loaded is a finished job of kind sample
        jobs = [(j.kind, j.status, j.done == j.total) for j in session.scalars(select(JobRow))]
    assert jobs == [("sample", "completed", True)] * 2
    # the bundled files are unchanged: not read again, and the report says so
    again = ingest_sample(app, symbols=["BTC"], start=start, end=end)
    btc = again.asset("BTC")
    assert (btc.fetched, btc.inserted, btc.unchanged, btc.conflicts) == (0, 0, 0, 0)
    assert btc.skipped == 164 + 164
    assert btc.gaps == a.gaps and (btc.first_close, btc.last_close) == (start, end)
    assert sum("not read again" in note for note in btc.notes) == 2
    # another range is other work: read
    other = ingest_sample(app, symbols=["BTC"], start=start, end=end + HOUR).asset("BTC")
    assert other.skipped == 0 and other.inserted == 1


def test_a_file_is_read_again_when_its_candles_or_its_content_changed(app, monkeypatch, tmp_path):
    seed_assets(app)
    start, end = utc(2021, 4, 19), utc(2021, 4, 26)
    ingest_sample(app, symbols=["BTC"], start=start, end=end)
    with app.db.write() as session:  # a candle deleted since: its file loads again
        session.execute(delete(CandleRow).where(CandleRow.close_time == utc(2021, 4, 22)))
    again = ingest_sample(app, symbols=["BTC"], start=start, end=end).asset("BTC")
    assert (again.inserted, again.unchanged, again.conflicts) == (1, 163, 0)
    assert again.skipped == 164  # the other export did not change
    assert ingest_sample(app, symbols=["BTC"], start=start, end=end).asset("BTC").fetched == 0
    # the same rows in a file with other bytes (recompressed): another hash, read again
    data = tmp_path / "data"
    shutil.copytree(sample.DATA_DIR, data)
    old = data / sample_files("BTC")[1].name
    old.write_bytes(gzip.compress(gzip.decompress(old.read_bytes()), compresslevel=1, mtime=0))
    monkeypatch.setattr(sample, "DATA_DIR", data)
    changed = ingest_sample(app, symbols=["BTC"], start=start, end=end).asset("BTC")
    assert (changed.inserted, changed.unchanged, changed.conflicts) == (0, 163, 1)
    assert changed.skipped == 164 and changed.fetched > 0


def test_the_partial_last_row_of_a_file_is_dropped_quietly(database_url, clock, caplog):
    caplog.set_level(logging.INFO)
    for interval, first_close, last_close in (
        ("1h", utc(2023, 12, 28), utc(2023, 12, 30, 20)),
        ("1d", utc(2023, 12, 28), utc(2023, 12, 30)),  # Dec 30's day was not over either
    ):
        app = bootstrap(
            overrides={"RACE_DATABASE_URL": database_url, "RACE_CANDLE_INTERVAL": interval},
            clock=clock,
        )
        try:
            seed_assets(app)
            report = ingest_sample(app, symbols=["ETH"], start=utc(2023, 12, 28))
            eth = report.asset("ETH")
            assert eth.open == 0 and eth.rejected_total == 0, interval
            stored = [t for t, row in candles(app, "ETH").items() if row.interval_seconds > 0]
            assert (min(stored), max(stored)) == (first_close, last_close), interval
        finally:
            with app.db.write() as session:
                session.execute(delete(CandleRow))
            app.close()
    assert "still open" not in caplog.text


def test_resampled_to_four_hours(database_url, clock):
    app = bootstrap(
        overrides={"RACE_DATABASE_URL": database_url, "RACE_CANDLE_INTERVAL": "4h"}, clock=clock
    )
    try:
        seed_assets(app)
        report = ingest_sample(app, symbols=["BTC"], start=utc(2021, 4, 19), end=utc(2021, 4, 22))
        btc = report.asset("BTC")
        stored = candles(app, "BTC")
        assert sorted(stored) == [utc(2021, 4, 19) + 4 * HOUR * i for i in range(19) if i != 7]
        # 04-20 04:00 would need the 03:00 and 04:00 hours, missing from both exports
        assert btc.rejected == {v.INCOMPLETE: 2}  # once per export
        assert btc.gaps == [Gap(utc(2021, 4, 20, 4), utc(2021, 4, 20, 4), 1)]
        row = stored[utc(2021, 4, 21)]  # hours closing 21:00, 22:00, 23:00, 00:00
        hourly = {
            r.close_time: r
            for r in read_sample(sample_files("BTC")[0], start=utc(2021, 4, 20, 21)).rows[:4]
        }
        parts = [hourly[utc(2021, 4, 20, 21) + HOUR * i] for i in range(4)]
        assert row.open == parts[0].open and row.close == parts[-1].close
        assert row.high == max(p.high for p in parts) and row.low == min(p.low for p in parts)
        assert row.volume == sum((p.volume for p in parts), Decimal(0))
        assert row.interval_seconds == 4 * 3600
    finally:
        app.close()


def test_a_finer_interval_than_the_data_is_refused(database_url, clock):
    app = bootstrap(
        overrides={"RACE_DATABASE_URL": database_url, "RACE_CANDLE_INTERVAL": "30m"}, clock=clock
    )
    try:
        with pytest.raises(ValueError, match="RACE_CANDLE_INTERVAL=30m"):
            ingest_sample(app)
    finally:
        app.close()


def test_assets_are_chosen_by_symbol(sqlite_app):
    app = sqlite_app
    seed_assets(app, (("BTC", "bitcoin"), ("ETH", "ethereum"), ("SOL", "solana")))
    with pytest.raises(LookupError, match=r"DOGE.*assets add"):
        ingest_sample(app, symbols=["DOGE"])
    report = ingest_sample(
        app, symbols=["sol", "btc"], start=utc(2023, 12, 1), end=utc(2023, 12, 2)
    )
    assert [a.symbol for a in report.assets] == ["BTC"]
    assert any("SOL: no bundled data" in note for note in report.notes)
    assert report.asset("BTC").inserted == 25


def test_the_stored_candle_before_the_range_is_the_jump_reference(sqlite_url, clock):
    # History checks relaxed: this is the adjacent-candle jump rule alone (with them, the
    # later candles are 17x the stored close too: tests/test_ingest_plausibility.py).
    relaxed = {"RACE_CANDLE_MAX_DEVIATION": "100", "RACE_CANDLE_MAX_DAY_MOVE": "100"}
    app = bootstrap(overrides={"RACE_DATABASE_URL": sqlite_url, **relaxed}, clock=clock)
    add_asset(app.db, "BTC", "bitcoin", app.clock)
    start = utc(2023, 1, 10)
    insert_candles(app, [Candle("BTC", start - HOUR, *[Decimal(1000)] * 4, None)])
    report = ingest_sample(app, symbols=["BTC"], start=start, end=start + 5 * HOUR)
    btc = report.asset("BTC")
    assert btc.rejected == {v.IMPLAUSIBLE_MOVE: 1}  # ~17,200 after a stored 1,000
    assert sorted(candles(app, "BTC"))[1] == start + HOUR
    app.close()


def test_a_store_error_for_one_asset_leaves_the_others_loaded(app):
    from tests.test_ingest_coingecko import allow_inserts, refuse_inserts

    ids = seed_assets(app)
    refuse_inserts(app, ids["BTC"])
    try:
        start, end = utc(2021, 4, 19), utc(2021, 4, 20)
        report = ingest_sample(app, start=start, end=end)
    finally:
        allow_inserts(app)
    assert not report.ok
    btc, eth = report.asset("BTC"), report.asset("ETH")
    assert "disk says no" in btc.error and btc.inserted == 0
    assert candles(app, "BTC") == {}
    assert eth.error is None and eth.inserted == 25 and len(candles(app, "ETH")) == 25
