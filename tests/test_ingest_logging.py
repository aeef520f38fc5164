"""Every ingestion run (live, range backfill, bundled sample) logs under its own
correlation id, as cycles do."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from race.bootstrap import bootstrap
from race.clock import ManualClock
from race.ingest import ingest_coingecko, ingest_sample
from race.logging_setup import configure_logging
from tests.coingecko_server import FakeCoinGecko, Reply
from tests.factories import seed_assets

KEY = "CG-logging-key-5e6f"
NOW = datetime(2024, 1, 1, 0, 15, tzinfo=UTC)


@pytest.fixture
def json_logs():
    stream = io.StringIO()
    root = logging.getLogger()
    before = list(root.handlers), root.level
    configure_logging(level=logging.INFO, fmt="json", secrets=[KEY], stream=stream)
    yield stream
    for handler in list(root.handlers):
        if handler not in before[0]:
            root.removeHandler(handler)
    root.setLevel(before[1])


def records(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_each_ingestion_run_logs_under_its_own_correlation_id(json_logs, sqlite_url):
    clock = ManualClock(NOW)
    with FakeCoinGecko(now=clock.now, demo_key=KEY) as server:
        app = bootstrap(
            overrides={
                "RACE_DATABASE_URL": sqlite_url,
                "COINGECKO_BASE_URL": server.base_url,
                "COINGECKO_API_KEY": KEY,
                "COINGECKO_MAX_ATTEMPTS": "2",
            },
            clock=clock,
        )
        try:
            seed_assets(app)
            server.queue(Reply.server_error(502), endpoint="market_chart/range")  # a retry log
            asyncio.run(ingest_coingecko(app))  # live
            live = records(json_logs)
            json_logs.truncate(0), json_logs.seek(0)
            start = NOW - timedelta(days=2)
            asyncio.run(ingest_coingecko(app, start=start, end=NOW - timedelta(days=1)))
            backfill = records(json_logs)
            json_logs.truncate(0), json_logs.seek(0)
            ingest_sample(
                app,
                symbols=["BTC"],
                start=datetime(2021, 4, 19, tzinfo=UTC),
                end=datetime(2021, 4, 20, tzinfo=UTC),
            )
            sample = records(json_logs)
        finally:
            app.close()
    ids = []
    for run in (live, backfill, sample):
        assert run, "the run logged something"
        assert all(len(r.get("correlation_id", "")) == 16 for r in run), run
        assert len({r["correlation_id"] for r in run}) == 1  # one id for the whole run
        ids.append(run[0]["correlation_id"])
    assert len(set(ids)) == 3  # a new one per run
    assert any("retry 1 of 1" in r["message"] for r in live)  # the client's logs carry it too
    summary = next(r for r in live if r["message"].startswith("ingest from coingecko"))
    assert "inserted" in summary["message"]
