"""Overlapping backfills take turns through the backfill lease (issue 10 §5): they wait for
each other (bounded by RACE_BACKFILL_WAIT_SECONDS) or refuse with one line naming the
running job; never a traceback, never a silent gap, never a second decision."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from race.bootstrap import App, bootstrap
from race.cli import main
from race.clock import ManualClock
from race.engine import BackfillRefused
from race.jobs import BackfillSpec, create_backfill_job, run_backfill_chunk, run_backfill_job
from race.store import lease as leases
from race.store.tables import JobRow, LeaseRow
from tests.conftest import _truncate_pg
from tests.digest import table_rows
from tests.factories import (
    HOUR,
    insert_candles,
    make_candles,
    seed_assets,
    seed_baselines,
    wave_prices,
)
from tests.waiting import wait_until, wait_until_async

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2023, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)
AGENTS = ("buy_and_hold", "sma_cross")


def seed(app: App) -> None:
    seed_assets(app)
    seed_baselines(app, AGENTS)
    n = 24 * 6
    insert_candles(app, make_candles("BTC", START - DAY, wave_prices(n, base=30000.0, period=29)))
    insert_candles(app, make_candles("ETH", START - DAY, wave_prices(n, base=1800.0, period=17)))


def rows(app: App) -> dict[str, list[dict[str, Any]]]:
    """Every replayed row, without surrogate ids (they depend on commit order)."""
    return {
        table: [{k: v for k, v in row.items() if k not in ("id", "decision_id")} for row in found]
        for table, found in table_rows(app.db).items()
    }


def command(begin: datetime, end: datetime) -> list[str]:
    return [
        sys.executable,
        "-m",
        "race",
        "backfill",
        "--start",
        begin.isoformat(),
        "--end",
        end.isoformat(),
    ]


def lease_holder(app: App) -> str | None:
    with app.db.read() as session:
        return session.scalar(select(LeaseRow.holder))


@pytest.mark.skipif(not os.environ.get("RACE_TEST_POSTGRES_URL"), reason="PostgreSQL only")
def test_three_overlapping_backfill_processes_equal_one_run(pg_url: str, clock) -> None:
    first, last = START, START + 4 * DAY
    reference = bootstrap(overrides={"RACE_DATABASE_URL": pg_url}, clock=clock)
    _truncate_pg(pg_url)
    seed(reference)
    asyncio.run(reference.engine.backfill(first, last, HOUR))
    expected = rows(reference)
    assert len(expected["decisions"]) == len(AGENTS) * (4 * 24 + 1)
    _truncate_pg(pg_url)
    seed(reference)

    env = {
        **os.environ,
        "RACE_DATABASE_URL": pg_url,
        "PYTHONPATH": str(ROOT),
        "RACE_BACKFILL_CHUNK_CYCLES": "2",
        "RACE_LOG_LEVEL": "WARNING",
    }
    runs = [
        (first, START + 3 * DAY, "20"),
        (START + DAY, last, "20"),
        (START + DAY / 2, START + 2 * DAY, "0"),
    ]
    processes = []
    for index, (begin, end, wait) in enumerate(runs):
        processes.append(
            subprocess.Popen(
                command(begin, end),
                env={**env, "RACE_BACKFILL_WAIT_SECONDS": wait},
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        if index == 0:
            # The earliest range takes the lease first (otherwise a later start would move
            # the fresh portfolios past its first day: said, but a different race).
            wait_until(
                lambda: lease_holder(reference) is not None or processes[0].poll() is not None,
                "the first backfill to take the lease",
                interval=0.02,
            )
    outcomes = []
    for process in processes:
        _, err = process.communicate(timeout=90)
        assert "Traceback" not in err, err
        assert process.returncode in (0, 3), err
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        if process.returncode == 3:
            assert len(errors) == 1, err
            assert errors[0].startswith("error: backfill refused: backfill job "), err
            assert "is running" in errors[0]
            outcomes.append("refused")
        else:
            assert not errors, err
            assert "skipped agent" not in err, err  # no gap: every cycle was decided once
            outcomes.append("waited" if "waited" in err else "ran")
    assert outcomes[0] == "ran", outcomes
    print("outcomes", outcomes)
    assert rows(reference) == expected
    assert lease_holder(reference) is None  # released by every run
    with reference.db.read() as session:
        statuses = dict(session.execute(select(JobRow.id, JobRow.status)).all())
    assert "failed" not in statuses.values()
    reference.close()


def hold_lease(app: App, holder: str, job_id: int, ttl: timedelta) -> None:
    with app.db.write() as session:
        leases.try_acquire(
            session,
            leases.BACKFILL,
            holder,
            job_id=job_id,
            description=f"backfill job {job_id} (2023-03-01 → 2023-03-02 every 1h)",
            now=app.clock.now(),
            ttl=ttl,
        )


def test_a_busy_lease_makes_a_backfill_wait_then_refuse_with_one_line(
    database_url: str, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    app = bootstrap(
        overrides={"RACE_DATABASE_URL": database_url, "RACE_BACKFILL_WAIT_SECONDS": "0.3"},
        clock=clock,
    )
    seed(app)
    hold_lease(app, "elsewhere:1:abc", 41, timedelta(minutes=5))
    with (
        caplog.at_level(logging.INFO, logger="race.engine"),
        pytest.raises(BackfillRefused) as refused,
    ):
        asyncio.run(app.engine.backfill(START, START + DAY, HOUR))
    # It waited first (said so), and refused only once its wait was over.
    said = [r.getMessage() for r in caplog.records if r.name == "race.engine"]
    assert any("waits (up to 0.3 s) for backfill job 41 (2023-03-01" in m for m in said), said
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("backfill refused: backfill job 41 (2023-03-01")
    assert rows(app)["decisions"] == []  # nothing written while another holds the lease

    # Expired: taken over, and the replay runs.
    clock.advance(6 * 60)
    report = asyncio.run(app.engine.backfill(START, START + DAY, HOUR))
    assert report.finished and report.decisions == len(AGENTS) * 25
    assert lease_holder(app) is None
    again = asyncio.run(app.engine.backfill(START, START + DAY, HOUR))
    assert again.decisions == 0 and not again.skipped  # retried: no second decision
    app.close()


def test_the_cli_refuses_with_one_line_and_exit_3(
    sqlite_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("RACE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("RACE_BACKFILL_WAIT_SECONDS", "0")
    app = bootstrap(overrides={"RACE_DATABASE_URL": sqlite_url}, clock=clock)
    seed(app)
    hold_lease(app, "elsewhere:1:abc", 41, timedelta(days=3650))
    code = main(["backfill", "--start", START.isoformat(), "--end", (START + DAY).isoformat()])
    err = capsys.readouterr().err
    assert code == 3
    assert "25 cycle(s)" in err  # the count, said before the run
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and "backfill job 41 (2023-03-01" in errors[0]
    assert "Traceback" not in err
    app.close()


def test_a_lease_of_a_dead_process_is_taken_over_at_once(app: App) -> None:
    seed(app)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holder = f"{leases.new_holder().split(':')[0]}:{dead.pid}:gone"
    hold_lease(app, holder, 7, timedelta(hours=1))
    report = asyncio.run(app.engine.backfill(START, START + DAY / 4, HOUR))
    assert report.finished and report.waited_for is None


def test_an_agent_already_past_the_range_is_named_with_its_gap(app: App) -> None:
    seed(app)
    later = asyncio.run(app.engine.backfill(START + DAY, START + 2 * DAY, HOUR))
    assert later.decisions == len(AGENTS) * 25 and not later.skipped
    earlier = asyncio.run(app.engine.backfill(START, START + 2 * DAY, HOUR))
    assert earlier.decisions == 0
    assert set(earlier.skipped) == set(seed_ids(app))
    reason = next(iter(earlier.skipped.values()))
    assert "24 cycle(s) from 2023-03-01T00:00:00+00:00 to 2023-03-01T23:00:00+00:00" in reason
    assert "not replayed" in reason
    # A range already decided cycle for cycle is no gap: nothing to say.
    covered = asyncio.run(app.engine.backfill(START + DAY, START + 2 * DAY, HOUR))
    assert covered.decisions == 0 and not covered.skipped


def seed_ids(app: App) -> list[int]:
    from race.universe import list_agents

    return [row.id for row in list_agents(app.db)]


def test_a_queued_chunk_finding_the_lease_busy_stays_unfinished(
    database_url: str, clock: ManualClock
) -> None:
    app = bootstrap(
        overrides={"RACE_DATABASE_URL": database_url, "RACE_BACKFILL_WAIT_SECONDS": "0"},
        clock=clock,
    )
    seed(app)
    hold_lease(app, "elsewhere:1:abc", 41, timedelta(minutes=5))
    spec = BackfillSpec(START, START + DAY / 4, HOUR)
    job = create_backfill_job(app, spec)
    report = asyncio.run(run_backfill_chunk(app, job, 5.0))
    assert not report.finished and report.done_cycles == 0 and report.refused
    with app.db.read() as session:
        assert session.get(JobRow, job).status == "running"  # not failed: a later call goes on
    clock.advance(6 * 60)
    assert asyncio.run(run_backfill_chunk(app, job, 5.0)).finished
    app.close()


def test_a_local_job_retries_until_the_lease_is_free(
    database_url: str, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    app = bootstrap(
        overrides={"RACE_DATABASE_URL": database_url, "RACE_BACKFILL_WAIT_SECONDS": "0"},
        clock=clock,
    )
    seed(app)
    hold_lease(app, "elsewhere:1:abc", 41, timedelta(minutes=5))
    job = create_backfill_job(app, BackfillSpec(START, START + DAY / 4, HOUR))
    calls: list[bool] = []

    def refusals() -> int:
        return sum("waits: backfill refused" in r.getMessage() for r in caplog.records)

    async def scenario() -> Any:
        worker = asyncio.create_task(run_backfill_job(app, job))
        await wait_until_async(lambda: refusals() >= 1, "a try refused while the lease is held")
        calls.append(worker.done())
        with app.db.write() as session:
            leases.release(session, leases.BACKFILL, "elsewhere:1:abc")
        return await asyncio.wait_for(worker, 30)

    with caplog.at_level(logging.WARNING, logger="race.jobs"):
        report = asyncio.run(scenario())
    assert calls == [False]  # refused, it did not give up: it tried again a second later
    assert report.finished and report.decisions == len(AGENTS) * 7
    app.close()
