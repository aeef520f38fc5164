"""Backfill jobs (race.jobs): a job row with a cursor, worked through in time-boxed chunks
(the queue-triggered function on Azure, a background thread locally), on real SQL."""

from __future__ import annotations

import asyncio
import re
import shutil
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from race.bootstrap import bootstrap
from race.jobs import (
    MAX_BACKFILL_CYCLES,
    BackfillSpec,
    LocalJobRunner,
    UnknownJobError,
    create_backfill_job,
    run_backfill_chunk,
    run_backfill_job,
)
from race.store.tables import DecisionRow, JobRow
from tests.digest import table_rows
from tests.factories import (
    HOUR,
    insert_candles,
    make_candles,
    seed_assets,
    seed_baselines,
    wave_prices,
)

START = datetime(2024, 1, 1, tzinfo=UTC)
FIRST, LAST = START + 60 * HOUR, START + 119 * HOUR


def seed(app) -> dict[str, int]:
    seed_assets(app)
    agents = seed_baselines(app)
    insert_candles(app, make_candles("BTC", START, wave_prices(130, base=40000.0, period=31)))
    insert_candles(app, make_candles("ETH", START, wave_prices(130, base=2000.0, period=17)))
    return agents


def job_row(app, job_id: int) -> JobRow:
    with app.db.read() as session:
        row = session.get(JobRow, job_id)
        assert row is not None
        return row


def decisions(app, *where) -> int:
    with app.db.read() as session:
        return session.scalar(select(func.count()).select_from(DecisionRow).where(*where))


@pytest.mark.parametrize(
    ("start", "end", "interval", "message"),
    [
        ("yesterday", "2024-01-02", "1h", "start"),
        ("2024-01-01", "2024-13-01", "1h", "end"),
        ("2024-01-02", "2024-01-01", "1h", "before start"),
        ("2024-01-01", "2024-01-02", "fortnight", "interval"),
        ("2024-01-01", "2024-01-02", "0h", "positive"),
        ("2000-01-01", "2030-01-01", "1m", f"{MAX_BACKFILL_CYCLES:,}"),
    ],
)
def test_a_bad_spec_names_its_field(start, end, interval, message):
    with pytest.raises(ValueError, match=message):
        BackfillSpec.parse(start, end, interval)


def test_spec_parses_dates_as_utc_and_sorts_agents():
    spec = BackfillSpec.parse("2024-01-01", "2024-01-02T06:00:00+02:00", "15m", [3, 1, 3])
    assert spec.start == START
    assert spec.end == datetime(2024, 1, 2, 4, tzinfo=UTC)
    assert spec.interval == timedelta(minutes=15)
    assert spec.agent_ids == (1, 3)


def test_the_same_request_finds_the_same_job(app):
    seed(app)
    spec = BackfillSpec(FIRST, LAST, HOUR)
    job = create_backfill_job(app, spec)
    assert create_backfill_job(app, spec) == job
    assert create_backfill_job(app, BackfillSpec(FIRST, LAST, 2 * HOUR)) != job
    row = job_row(app, job)
    assert (row.kind, row.status, row.total, row.done) == ("backfill", "queued", 60, 0)
    assert decisions(app) == 0, "creating a job does no work"
    # A worker runs it to the end; asked for again, it is queued again (nothing left to do).
    asyncio.run(run_backfill_chunk(app, job, max_seconds=60))
    assert job_row(app, job).status == "completed"
    assert create_backfill_job(app, spec) == job
    assert job_row(app, job).status == "queued"
    # A job a worker has running is not taken back to the queue by a repeated request.
    with app.db.write() as session:
        session.get(JobRow, job).status = "running"
    assert create_backfill_job(app, spec) == job
    assert job_row(app, job).status == "running"


@pytest.fixture
def chunky(database_url, clock):
    """An app whose backfills commit every 10 cycles."""
    application = bootstrap(
        overrides={"RACE_DATABASE_URL": database_url, "RACE_BACKFILL_CHUNK_CYCLES": "10"},
        clock=clock,
    )
    yield application
    application.close()


def test_chunks_resume_and_end_with_the_rows_of_one_run(chunky, tmp_path, sqlite_template, clock):
    agents = seed(chunky)
    job = create_backfill_job(chunky, BackfillSpec(FIRST, LAST, HOUR))
    calls, done = 0, []
    while True:
        # A tiny budget: each call stops after its first chunk, like a host's time limit.
        report = asyncio.run(run_backfill_chunk(chunky, job, max_seconds=1e-6))
        calls += 1
        done.append(job_row(chunky, job).done)
        if report.finished:
            break
        assert calls < 50
    assert calls == 6
    assert done == [10, 20, 30, 40, 50, 60]
    assert job_row(chunky, job).status == "completed"
    assert decisions(chunky) == 60 * len(agents)

    # The same backfill in one go, on a fresh database: identical rows.
    fresh_path = tmp_path / "whole.db"
    shutil.copy(sqlite_template, fresh_path)
    fresh = bootstrap(overrides={"RACE_DATABASE_URL": f"sqlite:///{fresh_path}"}, clock=clock)
    try:
        seed(fresh)
        assert asyncio.run(fresh.engine.backfill(FIRST, LAST, HOUR)).finished
        assert table_rows(fresh.db) == table_rows(chunky.db)
    finally:
        fresh.close()


def test_a_job_for_some_agents_runs_only_them(app):
    agents = seed(app)
    chosen = [agents["cash"], agents["random"]]
    spec = BackfillSpec.parse(FIRST.isoformat(), LAST.isoformat(), "1h", chosen)
    job = create_backfill_job(app, spec)
    assert job != create_backfill_job(app, BackfillSpec(FIRST, LAST, HOUR))
    report = asyncio.run(run_backfill_job(app, job, chunk_seconds=1e-6))
    assert report.finished and report.job_id == job
    assert decisions(app) == 60 * 2
    assert decisions(app, DecisionRow.agent_id.in_(chosen)) == 120


def test_unknown_jobs_and_broken_jobs(app):
    seed(app)
    with pytest.raises(UnknownJobError):
        asyncio.run(run_backfill_chunk(app, 987654, 1.0))
    job = create_backfill_job(app, BackfillSpec(FIRST, LAST, HOUR))
    with app.db.write() as session:  # a row whose parameters no longer make sense
        row = session.get(JobRow, job)
        row.params = {**row.params, "interval": "never"}
    with pytest.raises(ValueError, match="interval"):
        asyncio.run(run_backfill_chunk(app, job, 1.0))
    row = job_row(app, job)
    assert row.status == "failed"
    assert "interval" in row.error


def test_local_runner_works_a_job_in_the_background_once(app):
    agents = seed(app)
    job = create_backfill_job(app, BackfillSpec(FIRST, LAST, HOUR))
    runner = LocalJobRunner(app)
    assert runner.submit(job) is True
    second = runner.submit(job)  # still running, or already done and restarted harmlessly
    runner.join(timeout=60)
    assert second in (True, False)
    row = job_row(app, job)
    assert (row.status, row.done) == ("completed", 60)
    assert decisions(app) == 60 * len(agents)


def test_unfinished_jobs_resume_from_their_cursor_when_the_api_starts(chunky):
    """A local backfill stopped mid-way (SIGTERM to ``serve``) is left ``running``: the next
    ``create_api`` outside the Functions host goes on from its cursor."""
    from race.api import create_api
    from race.jobs import unfinished_jobs

    agents = seed(chunky)
    stopped = create_backfill_job(chunky, BackfillSpec(FIRST, LAST, HOUR))
    asyncio.run(run_backfill_chunk(chunky, stopped, max_seconds=1e-6))  # then the process died
    failed = create_backfill_job(chunky, BackfillSpec(FIRST, FIRST + 9 * HOUR, HOUR))
    with chunky.db.write() as session:
        session.get(JobRow, failed).status = "failed"
    assert (job_row(chunky, stopped).status, job_row(chunky, stopped).done) == ("running", 10)
    # Its cursor just moved: another process may be working it, so it is left alone...
    assert unfinished_jobs(chunky) == []
    create_api(chunky).state.jobs.join(timeout=60)
    assert job_row(chunky, stopped).done == 10
    # ...until nothing moved for longer than any live backfill stays quiet.
    chunky.clock.advance(61)
    assert unfinished_jobs(chunky) == [stopped]

    # Under the Functions host the queue carries jobs: nothing resumes in-process.
    hosted = create_api(chunky, resume_jobs=False)
    hosted.state.jobs.join(timeout=60)
    assert job_row(chunky, stopped).done == 10

    api = create_api(chunky)
    api.state.jobs.join(timeout=60)
    row = job_row(chunky, stopped)
    assert (row.status, row.done, row.total) == ("completed", 60, 60)
    assert job_row(chunky, failed).status == "failed"
    # Every cycle once: the chunk done before the stop was not redone.
    assert decisions(chunky) == 60 * len(agents)

    # A queued job (never started) is picked up too.
    queued = create_backfill_job(chunky, BackfillSpec(LAST + HOUR, LAST + 9 * HOUR, HOUR))
    assert job_row(chunky, queued).status == "queued"
    assert unfinished_jobs(chunky) == [queued]
    create_api(chunky).state.jobs.join(timeout=60)
    assert job_row(chunky, queued).status == "completed"
    assert unfinished_jobs(chunky) == []
    assert decisions(chunky) == 69 * len(agents)


def test_resuming_with_the_database_down_is_logged_not_raised(clock, caplog):
    application = bootstrap(
        overrides={"RACE_DATABASE_URL": "postgresql+psycopg://race:pw@127.0.0.1:1/none"},
        clock=clock,
    )
    try:
        with caplog.at_level("WARNING", logger="race.jobs"):
            assert LocalJobRunner(application).resume_unfinished() == []
        assert any("not resumed" in r.getMessage() for r in caplog.records)
        assert all("pw@" not in r.getMessage() for r in caplog.records)
    finally:
        application.close()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "start is required"),
        (b"[1]", "JSON object"),
        (b"{oops", "JSON object"),
        (b'{"start": "2024-01-01"}', "end is required"),
        (b'{"start": 20240101, "end": "2024-01-02"}', "start must be a string"),
        (b'{"start": "2024-01-01", "end": "2024-01-02", "interval": null}', "interval is"),
        (b'{"start": "2024-01-01", "end": "2024-01-02", "agents": [1]}', "unknown field(s) agents"),
        (b'{"start": "1969-12-31T23:59:59Z", "end": "2024-01-02"}', "start 1969"),
        (b'{"start": "2024-01-01", "end": "2200-01-01T00:00:00Z"}', "end 2200"),
        (b'{"start": "2024-01-01", "end": "2024-01-02", "interval": "32d"}', "interval"),
        (b'{"start": "2024-01-01", "end": "2024-01-02", "interval": "400000D"}', "interval"),
        (b'{"start": "2024-01-01", "end": "2024-01-02", "interval": "9999999999d"}', "too long"),
        (b'{"start": "0001-01-01T00:00:00+01:00", "end": "2024-01-02"}', "start"),
        (b'{"start": "2024-01-01", "end": "9999-12-31T23:59:59-01:00"}', "end"),
    ],
)
def test_the_request_parser_names_the_bad_field(body, message):
    from race.jobs import parse_backfill_request

    with pytest.raises(ValueError, match=re.escape(message)):
        parse_backfill_request(body)


def test_the_request_parser_accepts_the_documented_shape():
    from race.jobs import parse_backfill_request

    spec = parse_backfill_request(b'{"start": "2024-01-01", "end": "2024-01-02T00:00:00Z"}')
    assert (spec.start, spec.end, spec.interval) == (START, START + 24 * HOUR, HOUR)
    edge = parse_backfill_request(
        {"start": "1970-01-01T00:00:00Z", "end": "2199-12-31T23:59:59Z", "interval": "31d"}
    )
    assert edge.interval == timedelta(days=31)
