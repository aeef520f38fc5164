"""The analytics' background refresh in a worker process (:mod:`race.analysis_worker`):
it runs in another process, its figures equal the in-process computation's exactly (a full
refresh, and one agent's change with the pairs it touches), ``App.close`` stops the worker,
a failing or dying worker leaves the leaderboard serving without the extra keys, and where
no process can be started the refresh computes in its thread."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import update

from race import analysis_cache
from race.analysis import ranked_records
from race.analysis_cache import Analyser
from race.analysis_worker import WORKER_NICENESS
from race.api import create_api, queries
from race.bootstrap import App, bootstrap
from race.store.database import Database
from race.store.reads.standings import AgentRecord, agent_records
from race.store.tables import AgentStatsRow
from tests.api_data import LAST_CANDLE, build_race
from tests.factories import HOUR

OVERRIDES = {"RACE_MODEL_CUTOFFS": "buy_and_hold=2024-02,random=2023-06-30"}
EXTRAS = ("psr", "returnInterval", "pBeatBuyAndHold", "analyticsAsOf")


@pytest.fixture
def race(database_url, clock):
    application = bootstrap(overrides={"RACE_DATABASE_URL": database_url, **OVERRIDES}, clock=clock)
    agents = build_race(application)
    clock.advance((LAST_CANDLE + HOUR - clock.now()).total_seconds())
    yield application, agents
    application.close()


def background(app: App) -> Analyser:
    """An analyser that leaves everything to the background refresh, closed with ``app``."""
    analyser = Analyser.from_settings(app.settings)
    analyser.inline_snapshots = 0
    app.on_close(analyser.close)
    return analyser


def records(app: App) -> list[AgentRecord]:
    with app.db.read() as session:
        return ranked_records(agent_records(session))


def in_process(app: App, ranked: list[AgentRecord]) -> tuple[dict, dict]:
    """The figures computed here, by the inline path, with a fresh cache."""
    here = Analyser.from_settings(app.settings)
    with app.db.read() as session:
        analyses = here.agents(session, ranked)
    return analyses, here.rank_steps(ranked)


def refreshed(analyser: Analyser, db: Database, ranked: list[AgentRecord]) -> None:
    assert analyser.refresh(db, ranked), "something was stale: a refresh started"
    analyser.join(120)


def children() -> set[int]:
    return {p.pid for p in multiprocessing.active_children()}


def test_the_refresh_runs_in_a_worker_and_equals_the_in_process_figures(race):
    app, agents = race
    analyser = background(app)
    ranked = records(app)
    refreshed(analyser, app.db, ranked)
    assert analyser.worker_pid is not None and analyser.worker_pid != os.getpid()
    assert analyser.worker_pid in children()
    if hasattr(os, "getpriority"):  # the worker yields the CPU to the requests
        own = os.getpriority(os.PRIO_PROCESS, 0)
        worker = os.getpriority(os.PRIO_PROCESS, analyser.worker_pid)
        assert worker == min(19, own + WORKER_NICENESS)
    assert not analyser.stale(ranked) and analyser.misses == len(ranked)
    analyses, steps = analyser.latest(ranked)
    expected_analyses, expected_steps = in_process(app, ranked)
    assert analyses == expected_analyses
    assert steps == expected_steps and len(steps) == len(ranked) - 1

    # One agent's stats change: the worker analyses it alone and compares the pairs it is
    # in, with its neighbours' curves sent from this process's cache.
    with app.db.write() as session:
        session.execute(
            update(AgentStatsRow)
            .where(AgentStatsRow.agent_id == agents["random"])
            .values(cost_usd=Decimal(3), prompt_tokens=1000, completion_tokens=500)
        )
    changed = records(app)
    job = analyser._job(app.db, changed)
    assert [r.agent_id for r in job.analyse] == [agents["random"]]
    assert job.pairs and all(agents["random"] in pair for pair in job.pairs)
    assert set(job.curves) == {a for pair in job.pairs for a in pair} - {agents["random"]}
    refreshed(analyser, app.db, changed)
    assert analyser.misses == len(ranked) + 1
    analyses, steps = analyser.latest(changed)
    expected_analyses, expected_steps = in_process(app, changed)
    assert analyses == expected_analyses and steps == expected_steps
    assert analyses[agents["random"]].efficiency.spend_usd == Decimal(3)


def test_app_close_stops_the_worker_process(race):
    app, _ = race
    api = create_api(app)  # the API's analyser is closed with the app
    analyser = api.state.context.analyser
    analyser.inline_snapshots = 0
    with app.db.read() as session:
        queries.leaderboard(session, analyser, app.db)  # starts the background refresh
    analyser.join(120)
    pid = analyser.worker_pid
    assert pid is not None and pid in children()
    app.close()
    assert pid not in children()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped, not a zombie
    assert analyser._refreshing is not None and not analyser._refreshing.is_alive()
    assert analyser.refresh(app.db, [*records(app)][:0]) is False


def test_closing_while_a_refresh_runs_abandons_it(race, caplog):
    app, _ = race
    analyser = background(app)
    ranked = records(app)
    before = children()
    caplog.set_level(logging.INFO, logger="race.analysis")
    assert analyser.refresh(app.db, ranked)
    analyser.close()  # at once: the worker is starting or computing
    assert children() <= before, "no worker process is left"
    assert analyser._refreshing is not None and not analyser._refreshing.is_alive()
    assert "refresh failed" not in caplog.text
    assert analyser.refresh(app.db, ranked) is False, "a closed analyser starts nothing"


def unreachable(app: App, tmp_path: Path) -> Database:
    """A database of the same backend that the worker cannot reach."""
    if app.db.is_sqlite:
        folder = tmp_path / "gone"
        folder.mkdir()
        db = Database(f"sqlite:///{folder / 'race.db'}")
        folder.rmdir()
        return db
    return Database("postgresql+psycopg://postgres@127.0.0.1:1/race", connect_timeout_seconds=2)


def test_a_failing_worker_leaves_the_leaderboard_without_extras(race, caplog, tmp_path):
    app, _ = race
    analyser = background(app)
    broken = unreachable(app, tmp_path)
    caplog.set_level(logging.WARNING, logger="race.analysis")
    with app.db.read() as session:
        board = queries.leaderboard(session, analyser, broken)
    analyser.join(120)
    assert board and all(e.model_dump().get(k) is None for e in board for k in EXTRAS)
    assert "analytics refresh failed" in caplog.text
    reason = "does not exist" if app.db.is_sqlite else "database unreachable"
    assert reason in caplog.text, caplog.text
    with app.db.read() as session:  # still served, still without the figures
        again = queries.leaderboard(session, analyser, broken)
    analyser.join(120)
    assert [e.model_dump()["currentValue"] for e in again] == [
        e.model_dump()["currentValue"] for e in board
    ]
    assert all(e.model_dump().get("psr") is None for e in again)
    # The same worker serves the next refresh once the database is back.
    refreshed(analyser, app.db, records(app))
    assert not analyser.stale(records(app))
    broken.dispose()


def test_a_dead_worker_is_replaced(race, caplog):
    app, agents = race
    analyser = background(app)
    refreshed(analyser, app.db, records(app))
    first = analyser.worker_pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    with app.db.write() as session:
        session.execute(
            update(AgentStatsRow)
            .where(AgentStatsRow.agent_id == agents["random"])
            .values(cost_usd=Decimal(1))
        )
    for _ in range(2):  # the pool may learn of the death from this refresh: then the next
        if analyser.stale(records(app)):
            refreshed(analyser, app.db, records(app))
    assert not analyser.stale(records(app))
    assert analyser.worker_pid not in (None, first, os.getpid())


class NoProcesses(ProcessPoolExecutor):
    """A host where no process can be started (as where semaphores are missing)."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        raise OSError("no process here")


def test_without_processes_the_refresh_computes_in_its_thread(race, caplog, monkeypatch):
    app, _ = race
    monkeypatch.setattr(analysis_cache, "ProcessPoolExecutor", NoProcesses)
    analyser = background(app)
    ranked = records(app)
    caplog.set_level(logging.WARNING, logger="race.analysis")
    refreshed(analyser, app.db, ranked)
    assert analyser.in_process and "no worker process (no process here)" in caplog.text
    assert analyser.worker_pid is None and not analyser.stale(ranked)
    assert analyser.latest(ranked) == in_process(app, ranked)
