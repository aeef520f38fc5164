"""`python -m race serve` as a user runs it, and the in-process scheduler."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from race.bootstrap import bootstrap
from race.clock import SystemClock
from race.scheduler import ScheduledJob, Scheduler
from tests.api_data import REPLAY_END, build_race
from tests.factories import HOUR
from tests.waiting import wait_until, wait_until_async

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_and_stops_cleanly_on_sigterm(sqlite_url, clock):
    application = bootstrap(overrides={"RACE_DATABASE_URL": sqlite_url}, clock=clock)
    build_race(application)
    application.close()
    serve = Serve({"RACE_DATABASE_URL": sqlite_url}, "--no-schedule")
    try:
        health = serve.get("/api/health")
        assert health.status_code == 200
        # The race's candles are from 2024: up and answering, but degraded (stale data).
        assert health.json()["status"] == "Degraded" and health.json()["reasons"]
        board = serve.get("/api/leaderboard")
        assert board.status_code == 200
        assert len(board.json()) == 6
        # Its agents were built at start-up (App.warm_up), before the first cycle.
        serve.wait_for("the warm-up's log line", lambda: "warm-up: 5 agent(s) ready" in serve.log)
    finally:
        returncode = serve.stop()
    assert returncode == 0, serve.log
    assert "stopped" in serve.log


def serve_once(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m race serve` expected to refuse to start (it would otherwise run on)."""
    return subprocess.run(
        [sys.executable, "-m", "race", "serve", "--port", str(free_port())],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_refuses_a_database_without_schema(tmp_path):
    env = {
        **os.environ,
        "RACE_DATABASE_URL": f"sqlite:///{tmp_path / 'none.db'}",
        "PYTHONPATH": str(ROOT),
    }
    result = serve_once(env)
    assert result.returncode == 2
    assert "no such database file" in result.stderr and "db upgrade" in result.stderr
    assert not (tmp_path / "none.db").exists()  # and no empty file left behind
    (tmp_path / "none.db").touch()
    result = serve_once(env)
    assert result.returncode == 2
    assert "has no race schema yet" in result.stderr


async def run_until(scheduler: Scheduler, done: Callable[[], bool], what: str) -> None:
    """Run ``scheduler`` (on the real clock) until ``done()``, then stop it."""
    task = asyncio.create_task(scheduler.run())
    try:
        await wait_until_async(done, what)
    finally:
        scheduler.stop()
        await asyncio.wait_for(task, 30)


def test_scheduler_runs_each_slot_once_in_order(sqlite_url):
    application = bootstrap(overrides={"RACE_DATABASE_URL": sqlite_url}, clock=SystemClock())
    slots: list[datetime] = []

    async def record(slot: datetime) -> None:
        slots.append(slot)

    scheduler = Scheduler(application, [ScheduledJob("every second", "* * * * * *", record)])
    asyncio.run(run_until(scheduler, lambda: len(scheduler.runs) >= 2, "two runs"))
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
    asyncio.run(run_until(scheduler, lambda: len(scheduler.runs) >= 2, "two failed runs"))
    application.close()
    assert len(scheduler.runs) >= 2
    assert all(outcome == "failed: provider down" for *_, outcome in scheduler.runs)


# ---------------------------------------------------------------- database down, jobs

ADMIN_KEY = "serve-admin-key-0123456789"


class Serve:
    """``python -m race serve`` as a subprocess whose stderr is collected as it comes."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        # The port is free when chosen, but serve binds it only after its imports: another
        # server of a parallel test may take it meanwhile. Then serve exits (address in use)
        # or another server answers; start again on a new port until our API answers.
        for _ in range(5):
            self._start(env, args)
            if self._answers():
                return
            self.stop()
        raise AssertionError(f"serve never answered on a port of its own:\n{self.log}")

    def _start(self, env: dict[str, str], args: tuple[str, ...]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "race", "serve", "--port", str(self.port), *args],
            env={**os.environ, "PYTHONPATH": str(ROOT), "RACE_LOG_FORMAT": "text", **env},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _answers(self) -> bool:
        """Whether this serve's API answers on its port (its health body: ours, not another
        test's server); False once the process has exited (it could not bind the port)."""

        def up() -> bool | None:
            if self.process.poll() is not None:
                return False
            try:
                body = self.get("/api/health").json()
            except (httpx.TransportError, ValueError):
                return None
            return isinstance(body, dict) and "database" in body

        result: list[bool] = []

        def settled() -> bool:
            value = up()
            if value is not None:
                result.append(value)
            return value is not None

        wait_until(settled, lambda: f"serve to answer or exit:\n{self.log}", 60, interval=0.1)
        return result[-1]

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, what: str, test, timeout: float = 30.0):
        def found():
            try:
                value = test()
            except httpx.TransportError:
                value = None
            assert value or self.process.poll() is None, f"serve exited: {self.log}"
            return value

        return wait_until(found, lambda: f"{what}:\n{self.log}", timeout, interval=0.1)

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(f"{self.base}{path}", timeout=5, **kwargs)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        rc = self.process.wait(timeout=30)
        self._reader.join(timeout=5)
        assert self.process.stderr is not None
        self.process.stderr.close()
        return rc


def _prepared_race(path: Path, sqlite_template: Path, clock, *, only_idle: bool = False) -> int:
    """A migrated SQLite file with a race in it and a backfill job a stopped ``serve`` left
    ``running``: one chunk done (or, ``only_idle``, for the inactive agent only and not yet
    started). Returns the job id."""
    from race.jobs import BackfillSpec, create_backfill_job, run_backfill_chunk

    shutil.copy(sqlite_template, path)
    application = bootstrap(
        overrides={"RACE_DATABASE_URL": f"sqlite:///{path}", "RACE_BACKFILL_CHUNK_CYCLES": "10"},
        clock=clock,
    )
    try:
        agents = build_race(application)
        spec = BackfillSpec(
            REPLAY_END + HOUR,
            REPLAY_END + 19 * HOUR,
            HOUR,
            (agents["idle"],) if only_idle else None,
        )
        job = create_backfill_job(application, spec)
        if not only_idle:
            asyncio.run(run_backfill_chunk(application, job, max_seconds=1e-6))
        assert _job(application, job)[:2] == (("queued", 0) if only_idle else ("running", 10))
        with application.db.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return job
    finally:
        application.close()


def _completed(serve: Serve, job: int):
    body = serve.get(f"/api/admin/jobs/{job}", headers={"X-API-Key": ADMIN_KEY}).json()
    return body if body["status"] == "completed" else None


def _job(application, job_id: int) -> tuple[str, int, int]:
    from race.store.tables import JobRow

    with application.db.read() as session:
        row = session.get(JobRow, job_id)
        return row.status, row.done, row.total


def test_serve_resumes_an_interrupted_backfill_at_start(tmp_path, sqlite_template, clock):
    path = tmp_path / "race.db"
    job = _prepared_race(path, sqlite_template, clock)
    serve = Serve(
        {"RACE_DATABASE_URL": f"sqlite:///{path}", "RACE_ADMIN_KEY": ADMIN_KEY}, "--no-schedule"
    )
    try:
        status = serve.wait_for("the job to finish", lambda: _completed(serve, job))
        assert (status["done"], status["total"]) == (19, 19)
        assert f"resuming backfill job {job} from its cursor" in serve.log
    finally:
        assert serve.stop() == 0, serve.log


def test_serve_starts_with_the_database_down_and_recovers(tmp_path, sqlite_template, clock):
    """The database file cannot be opened at start (a directory stands where it should be):
    serve comes up anyway, says so once, answers 503, logs each failed scheduled run; once a
    migrated database is there, everything works without a restart."""
    path = tmp_path / "race.db"
    path.mkdir()
    url = f"sqlite:///{path}"
    serve = Serve(
        {
            "RACE_DATABASE_URL": url,
            "RACE_ADMIN_KEY": ADMIN_KEY,
            "RACE_DECISION_SCHEDULE": "* * * * * *",  # every second
            "RACE_INGEST_SCHEDULE": "0 0 0 1 1 *",  # not during the test
        }
    )
    try:
        health = serve.wait_for("health", lambda: serve.get("/api/health"))
        assert health.status_code == 503
        assert health.json()["database"] == "Disconnected"
        assert serve.get("/api/leaderboard").status_code == 503
        serve.wait_for(
            "a failed scheduled run",
            lambda: "run_cycle for" in serve.log and "failed: database unreachable" in serve.log,
        )
        down = [line for line in serve.lines if "serving anyway" in line]
        assert len(down) == 1, serve.log
        assert f"RACE_DATABASE_URL={url}" in down[0]
        failures = [line for line in serve.lines if "run_cycle for" in line and "failed" in line]
        assert all(f"RACE_DATABASE_URL={url}" in line for line in failures)

        # The database comes: created and migrated beside, then put in place at once.
        prepared = tmp_path / "prepared.db"
        job = _prepared_race(prepared, sqlite_template, clock, only_idle=True)
        path.rmdir()
        prepared.rename(path)

        health = serve.wait_for(
            "a healthy database",
            lambda: (r := serve.get("/api/health")).status_code == 200 and r,
        )
        assert health.json()["database"] == "Connected"
        board = serve.get("/api/leaderboard")
        assert board.status_code == 200 and len(board.json()) == 6
        serve.wait_for("the log of it", lambda: "database is back" in serve.log)
        assert f"database is back at RACE_DATABASE_URL={url}: schema ok" in serve.log

        def scheduled_cycle():
            application = bootstrap(overrides={"RACE_DATABASE_URL": url}, clock=clock)
            try:
                from sqlalchemy import select

                from race.store.tables import CycleRow

                with application.db.read() as session:
                    return session.scalar(select(CycleRow).where(CycleRow.trigger == "schedule"))
            finally:
                application.close()

        serve.wait_for("a scheduled cycle after the outage", scheduled_cycle)
        # The unfinished backfill job resumed once the database was back.
        serve.wait_for("the job", lambda: _completed(serve, job))
        assert f"resuming backfill job {job} from its cursor" in serve.log
    finally:
        assert serve.stop() == 0, serve.log
    assert "stopped" in serve.log


def test_serve_with_postgresql_down_then_back(pg_url, clock):
    """The same on PostgreSQL: the server unreachable (a cut proxy), then back. The URL's
    password never shows."""
    if pg_url is None:
        pytest.skip("needs RACE_TEST_POSTGRES_URL")
    from sqlalchemy.engine import make_url

    from tests.conftest import _truncate_pg
    from tests.tcp_proxy import tcp_proxy

    _truncate_pg(pg_url)
    application = bootstrap(overrides={"RACE_DATABASE_URL": pg_url}, clock=clock)
    build_race(application)
    application.close()
    real = make_url(pg_url)
    with tcp_proxy(real.host or "127.0.0.1", real.port or 5432) as proxy:
        proxy.cut()
        url = real.set(host="127.0.0.1", port=proxy.port, password="hunter2-never-shown")
        serve = Serve(
            {"RACE_DATABASE_URL": url.render_as_string(hide_password=False)}, "--no-schedule"
        )
        try:
            health = serve.wait_for("health", lambda: serve.get("/api/health"))
            assert health.status_code == 503
            assert "serving anyway" in serve.log and "RACE_DATABASE_URL=" in serve.log
            proxy.restore()
            serve.wait_for("recovery", lambda: serve.get("/api/health").status_code == 200)
            assert len(serve.get("/api/leaderboard").json()) == 6
            serve.wait_for("the log of it", lambda: "database is back" in serve.log)
        finally:
            assert serve.stop() == 0, serve.log
    assert "hunter2-never-shown" not in serve.log
    assert "***" in serve.log
