"""Time guards (issue 10 §7): a stale market view skips the cycle or mark with the reason
(no decisions, no snapshot) and says so on the CLI, in the API and the log; health is
Degraded when candles or cycles are old; future marks, empty ranges and sub-minute
intervals are refused up front."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from freezegun import freeze_time
from sqlalchemy import func, select

from race.api import create_api
from race.bootstrap import App, bootstrap
from race.cli import main
from race.clock import ManualClock, SystemClock
from race.jobs import parse_backfill_request
from race.scheduler import Scheduler, _outcome, race_jobs
from race.store.tables import CycleRow, DecisionRow, EquitySnapshotRow
from tests.factories import (
    HOUR,
    insert_candles,
    live_key,
    make_candles,
    seed_assets,
    seed_baselines,
    wave_prices,
)
from tests.test_serve import run_until

START = datetime(2023, 12, 28, tzinfo=UTC)
CANDLES = 48
LAST = START + (CANDLES - 1) * HOUR  # newest candle: 2023-12-29T23:00
ADMIN_KEY = "time-guards-admin-key"


def seed(app: App) -> dict[str, int]:
    seed_assets(app)
    ids = seed_baselines(app, ("cash", "buy_and_hold"))
    for symbol, base in (("BTC", 40000.0), ("ETH", 2000.0)):
        insert_candles(app, make_candles(symbol, START, wave_prices(CANDLES, base=base)))
    return ids


def count(app: App, table: Any) -> int:
    with app.db.read() as session:
        return session.scalar(select(func.count()).select_from(table)) or 0


@pytest.fixture
def race(database_url: str) -> Iterator[tuple[App, ManualClock, dict[str, int]]]:
    clock = ManualClock(LAST + timedelta(hours=7))  # past RACE_MAX_PRICE_AGE (6 h)
    app = bootstrap(
        overrides={"RACE_DATABASE_URL": database_url, "RACE_ADMIN_KEY": ADMIN_KEY}, clock=clock
    )
    ids = seed(app)
    yield app, clock, ids
    app.close()


def test_a_stale_cycle_is_skipped_with_its_reason_then_runs_once_fresh(
    race: tuple[App, ManualClock, dict[str, int]], caplog: pytest.LogCaptureFixture
) -> None:
    app, _, _ = race
    slot = LAST + timedelta(hours=7)
    with caplog.at_level(logging.WARNING, logger="race.engine"):
        report = asyncio.run(app.engine.run_cycle(slot))
    assert report.status == "skipped" and report.decided == 0
    assert report.reason is not None
    assert "RACE_MAX_PRICE_AGE (6h)" in report.reason
    assert LAST.isoformat() in report.reason
    assert report.as_dict()["reason"] == report.reason
    assert any("skipped" in r.getMessage() and "stale" in r.getMessage() for r in caplog.records)
    assert count(app, DecisionRow) == 0 and count(app, EquitySnapshotRow) == 0
    with app.db.read() as session:
        row = session.get(CycleRow, live_key(session, slot))
        assert row is not None and row.status == "skipped" and row.reason == report.reason
    # A catch-up leaves a skipped slot alone (no retry storm on an old database)…
    scheduled = asyncio.run(app.engine.run_scheduled(slot + timedelta(minutes=15)))
    assert scheduled.caught_up == []
    assert _outcome(scheduled).startswith("skipped: market view stale")
    # …but once late candles land, the same cycle runs (and only once).
    late = make_candles("BTC", LAST + HOUR, wave_prices(7, base=41000.0))
    insert_candles(app, late)
    again = asyncio.run(app.engine.run_cycle(slot))
    assert again.status == "completed" and again.decided == 2
    with app.db.read() as session:
        row = session.get(CycleRow, live_key(session, slot))
        assert row is not None and row.status == "completed" and row.reason is None
    assert asyncio.run(app.engine.run_cycle(slot)).decided == 0


def test_a_fresh_cycle_is_not_skipped(race: tuple[App, ManualClock, dict[str, int]]) -> None:
    app, _, _ = race
    report = asyncio.run(app.engine.run_cycle(LAST + timedelta(hours=6)))
    assert report.status == "completed" and report.decided == 2


def test_a_stale_mark_writes_no_snapshot(race: tuple[App, ManualClock, dict[str, int]]) -> None:
    app, _, _ = race
    written, reason = app.engine.mark(LAST + timedelta(hours=7))
    assert written == 0 and reason is not None and "RACE_MAX_PRICE_AGE" in reason
    assert app.engine.snapshot(LAST + timedelta(hours=7)) == 0
    assert count(app, EquitySnapshotRow) == 0
    assert app.engine.mark(LAST)[1] is None and count(app, EquitySnapshotRow) == 2


def test_admin_runs_answer_skipped_with_the_reason(
    race: tuple[App, ManualClock, dict[str, int]],
) -> None:
    app, _, ids = race
    client = TestClient(create_api(app), raise_server_exceptions=False)
    headers = {"X-API-Key": ADMIN_KEY}
    one = client.post(f"/api/admin/agents/{ids['cash']}/run", headers=headers)
    assert one.status_code == 200
    assert one.json()["status"] == "skipped" and "RACE_MAX_PRICE_AGE" in one.json()["reason"]
    assert one.json()["decided"] == 0
    everyone = client.post("/api/admin/cycles", headers=headers)
    assert everyone.status_code == 200
    assert everyone.json()["status"] == "skipped" and everyone.json()["reason"]
    assert count(app, DecisionRow) == 0


def test_health_is_degraded_with_reasons_when_candles_or_cycles_are_old(
    race: tuple[App, ManualClock, dict[str, int]], caplog: pytest.LogCaptureFixture
) -> None:
    app, clock, _ = race
    client = TestClient(create_api(app), raise_server_exceptions=False)
    asyncio.run(app.engine.run_cycle(LAST))  # completed, 7 h ago; the candle too
    with caplog.at_level(logging.INFO, logger="race.api"):
        old = client.get("/api/health")
        for _ in range(3):  # a probe every few seconds: the state change is logged once
            assert client.get("/api/health").json()["status"] == "Degraded"
    said = [r.getMessage() for r in caplog.records if "health: degraded" in r.getMessage()]
    assert len(said) == 1, said
    assert old.status_code == 200  # degraded, not down
    body = old.json()
    assert body["status"] == "Degraded" and body["database"] == "Connected"
    assert len(body["reasons"]) == 2
    assert "RACE_HEALTH_MAX_CANDLE_AGE" in body["reasons"][0] and "7 h" in body["reasons"][0]
    assert "RACE_HEALTH_MAX_CYCLE_AGE" in body["reasons"][1]
    assert body["latestCandleTime"] == LAST.isoformat()  # the old fields stay

    now = clock.now()
    insert_candles(app, make_candles("BTC", now, wave_prices(1, base=41000.0)))
    assert asyncio.run(app.engine.run_cycle(now)).status == "completed"
    fresh = client.get("/api/health").json()
    assert fresh["status"] == "Healthy" and fresh["reasons"] == []

    clock.advance(90 * 60)  # the cycle is 1.5 h old (> 1 h), the candle too (not > 2 h)
    cycle_old = client.get("/api/health").json()
    assert cycle_old["status"] == "Degraded"
    assert len(cycle_old["reasons"]) == 1
    assert "RACE_HEALTH_MAX_CYCLE_AGE" in cycle_old["reasons"][0]

    clock.advance(3 * 86_400)
    reasons = client.get("/api/health").json()["reasons"]
    assert any("RACE_HEALTH_MAX_CANDLE_AGE" in r and "3 d" in r for r in reasons)


@pytest.fixture
def cli(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> Iterator[App]:
    monkeypatch.setenv("RACE_DATABASE_URL", sqlite_url)
    app = bootstrap(overrides={"RACE_DATABASE_URL": sqlite_url}, clock=clock)
    seed(app)
    yield app
    app.close()


def test_cli_cycle_on_a_stale_market_exits_3_with_the_reason(cli: App, capsys: Any) -> None:
    with freeze_time(LAST + timedelta(days=3)):
        assert main(["cycle"]) == 3
    err = capsys.readouterr().err
    assert "skipped: market view stale" in err and "RACE_MAX_PRICE_AGE" in err
    assert count(cli, DecisionRow) == 0
    with freeze_time(LAST + timedelta(days=3)):
        assert main(["cycle", "--at", (LAST + HOUR).isoformat(), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["decided"] == 2


def test_cli_snapshot_refuses_the_future_and_skips_a_stale_mark(cli: App, capsys: Any) -> None:
    with freeze_time(LAST + timedelta(days=3)):
        for future in ("2030-01-01", "9999-12-31"):
            assert main(["snapshot", "--at", future]) == 2
            assert "is in the future" in capsys.readouterr().err
        assert main(["snapshot", "--at", (LAST + timedelta(days=1)).isoformat()]) == 3
        assert "skipped: market view stale" in capsys.readouterr().err
        assert count(cli, EquitySnapshotRow) == 0
        assert main(["snapshot"]) == 0  # at the newest close: fresh
    assert count(cli, EquitySnapshotRow) == 2


def test_cli_backfill_refuses_a_range_without_candles_and_sub_minute_intervals(
    cli: App, capsys: Any
) -> None:
    with freeze_time(LAST + timedelta(days=3)):
        assert main(["backfill", "--start", "1999-01-01", "--end", "1999-01-03"]) == 2
        err = capsys.readouterr().err
        assert "no candles stored" in err and "Traceback" not in err
        first, last = START.isoformat(), (START + 2 * HOUR).isoformat()
        assert main(["backfill", "--start", first, "--end", last, "--interval", "1s"]) == 2
        assert "too short" in capsys.readouterr().err
        assert main(["backfill", "--start", first, "--end", last, "--interval", "1m"]) == 0
        err = capsys.readouterr().err
        assert "121 cycle(s)" in err.splitlines()[0]  # the count, before the run
    with pytest.raises(ValueError, match="too short"):
        parse_backfill_request({"start": first, "end": last, "interval": "30s"})


def test_admin_backfill_over_a_range_without_candles_is_a_400(
    race: tuple[App, ManualClock, dict[str, int]],
) -> None:
    app, _, _ = race
    client = TestClient(create_api(app), raise_server_exceptions=False)
    headers = {"X-API-Key": ADMIN_KEY}
    body = {"start": "1999-01-01T00:00:00Z", "end": "1999-01-03T00:00:00Z", "interval": "1h"}
    response = client.post("/api/admin/backfills", headers=headers, json=body)
    assert response.status_code == 400
    assert "no candles stored" in response.json()["message"]
    body["interval"] = "30s"
    response = client.post("/api/admin/backfills", headers=headers, json=body)
    assert response.status_code == 400 and "too short" in response.json()["message"]


def test_a_backfill_skips_the_stale_cycles_of_a_candle_gap(
    race: tuple[App, ManualClock, dict[str, int]],
) -> None:
    app, _, _ = race
    resume = LAST + 13 * HOUR  # 12 h without candles, then 6 more hours
    for symbol, base in (("BTC", 40000.0), ("ETH", 2000.0)):
        insert_candles(app, make_candles(symbol, resume, wave_prices(6, base=base)))
    first, last = LAST - 2 * HOUR, resume + 5 * HOUR
    report = asyncio.run(app.engine.backfill(first, last, HOUR))
    # Cycles LAST+7h … LAST+12h see no price younger than 6 h: skipped, with the reason.
    assert report.stale_cycles == 6 and report.finished
    assert report.decisions == 2 * (report.total_cycles - 6)
    with app.db.read() as session:
        stale = session.scalars(select(CycleRow).where(CycleRow.status == "skipped")).all()
        assert [row.cycle_time for row in stale] == [LAST + h * HOUR for h in range(7, 13)]
        assert all("RACE_MAX_PRICE_AGE" in (row.reason or "") for row in stale)
        at_gap = select(func.count()).where(DecisionRow.cycle_time == LAST + 8 * HOUR)
        assert session.scalar(at_gap) == 0
    again = asyncio.run(app.engine.backfill(first, last, HOUR))
    assert again.decisions == 0 and again.skipped == {}  # a stale cycle is no gap


def test_serve_schedule_records_and_logs_a_stale_cycle_as_skipped(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = bootstrap(
        overrides={"RACE_DATABASE_URL": sqlite_url, "RACE_DECISION_SCHEDULE": "* * * * * *"},
        clock=SystemClock(),
    )
    seed(app)  # candles of 2023: stale "now"
    jobs = [job for job in race_jobs(app) if job.name == "run_cycle"]
    scheduler = Scheduler(app, jobs)

    with caplog.at_level(logging.WARNING, logger="race.engine"):
        asyncio.run(run_until(scheduler, lambda: bool(scheduler.runs), "a scheduled run"))
    assert scheduler.runs
    assert all(o.startswith("skipped: market view stale") for *_, o in scheduler.runs)
    assert any("skipped: market view stale" in r.getMessage() for r in caplog.records)
    assert count(app, DecisionRow) == 0 and count(app, EquitySnapshotRow) == 0
    app.close()
