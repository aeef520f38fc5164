"""`python -m race serve` as a user runs it, and the in-process scheduler."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from race.bootstrap import bootstrap
from race.clock import SystemClock
from race.scheduler import ScheduledJob, Scheduler
from tests.api_data import build_race

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_and_stops_cleanly_on_sigterm(sqlite_url, clock):
    application = bootstrap(overrides={"RACE_DATABASE_URL": sqlite_url}, clock=clock)
    build_race(application)
    application.close()
    port = free_port()
    env = {**os.environ, "RACE_DATABASE_URL": sqlite_url, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "race", "serve", "--port", str(port), "--no-schedule"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"{base}/api/health", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read()
                assert time.monotonic() < deadline, "serve did not come up"
                time.sleep(0.1)
        assert health.status_code == 200
        assert health.json()["status"] == "Healthy"
        board = httpx.get(f"{base}/api/leaderboard", timeout=5)
        assert board.status_code == 200
        assert len(board.json()) == 6
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "stopped" in err


def test_serve_refuses_a_database_without_schema(tmp_path):
    env = {
        **os.environ,
        "RACE_DATABASE_URL": f"sqlite:///{tmp_path / 'none.db'}",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-m", "race", "serve", "--port", str(free_port())],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "db upgrade" in result.stderr


def test_scheduler_runs_each_slot_once_in_order(sqlite_url):
    application = bootstrap(overrides={"RACE_DATABASE_URL": sqlite_url}, clock=SystemClock())
    slots: list[datetime] = []

    async def record(slot: datetime) -> None:
        slots.append(slot)

    scheduler = Scheduler(application, [ScheduledJob("every second", "* * * * * *", record)])

    async def run_for(seconds: float) -> None:
        task = asyncio.create_task(scheduler.run())
        await asyncio.sleep(seconds)
        scheduler.stop()
        await asyncio.wait_for(task, 5)

    asyncio.run(run_for(2.6))
    application.close()
    assert len(slots) >= 2
    assert all(s.microsecond == 0 and s.tzinfo == UTC for s in slots)
    assert len(set(slots)) == len(slots)
    assert slots == sorted(slots)
    assert [outcome for *_, outcome in scheduler.runs] == ["ok"] * len(slots)


def test_a_failing_run_does_not_stop_the_schedule(sqlite_url):
    application = bootstrap(overrides={"RACE_DATABASE_URL": sqlite_url}, clock=SystemClock())

    async def boom(slot: datetime) -> None:
        raise RuntimeError("provider down")

    scheduler = Scheduler(application, [ScheduledJob("boom", "* * * * * *", boom)])

    async def run_for(seconds: float) -> None:
        task = asyncio.create_task(scheduler.run())
        await asyncio.sleep(seconds)
        scheduler.stop()
        await asyncio.wait_for(task, 5)

    asyncio.run(run_for(2.4))
    application.close()
    assert len(scheduler.runs) >= 2
    assert all(outcome == "failed: provider down" for *_, outcome in scheduler.runs)
