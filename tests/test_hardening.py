"""Concurrency and database faults (issue 6 §2–3): one market view per cycle while ingestion
writes, SQLite writers that wait, a database lost mid-cycle or after the last agent step
(completed by the next timer tick), a database missing at start."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.exc import OperationalError

from race.bootstrap import bootstrap
from race.cli import main
from race.domain.agent import AgentAnswer
from race.domain.model import Provider
from race.store.database import SQLITE_BUSY_TIMEOUT_MS, Database, DatabaseError
from race.store.tables import CycleRow, DecisionRow, EquitySnapshotRow, TradeRow
from tests.conftest import PG_URL
from tests.factories import (
    HOUR,
    insert_candles,
    live_key,
    make_candles,
    seed_agent,
    seed_assets,
    wave_prices,
)
from tests.tcp_proxy import tcp_proxy
from tests.test_engine import Scripted, app_with
from tests.waiting import wait_until_async

START = datetime(2024, 1, 1, tzinfo=UTC)
T = START + 80 * HOUR
SLOT = timedelta(minutes=15)  # the default decision schedule


def seed(application, eth_until=T):
    seed_assets(application)
    insert_candles(application, make_candles("BTC", START, wave_prices(100, base=40000.0)))
    n = int((eth_until - START) / HOUR)  # ETH candles stop before eth_until
    insert_candles(application, make_candles("ETH", START, wave_prices(n, base=2000.0)))


def count(application, table, *where):
    with application.db.read() as session:
        return session.scalar(select(func.count()).select_from(table).where(*where))


def test_candles_written_during_a_cycle_do_not_change_its_view(database_url, clock):
    """Ingestion lands ETH's candle closing at T while the cycle runs: every agent of that
    cycle still sees the view read at its start; the next cycle sees the new candle."""
    writer = bootstrap(overrides={"RACE_DATABASE_URL": database_url}, clock=clock)
    landed = threading.Event()

    async def ingest_then_hold(context):
        insert_candles(writer, make_candles("ETH", T, [D("2100")]))
        landed.set()
        return AgentAnswer.hold("saw the market")

    async def late_reader(context):
        # decides after the candle landed
        await wait_until_async(landed.is_set, "the candle to land", limit_s=10)
        return AgentAnswer.hold("saw the market too")

    agents = {"first": Scripted(ingest_then_hold), "second": Scripted(late_reader)}
    application = app_with(database_url, clock, agents)
    seed(application)
    for name in agents:
        seed_agent(application, name, Provider.LLAMA, "m")
    asyncio.run(application.engine.run_cycle(T))
    assert landed.is_set()
    with application.db.read() as session:  # both answered: no fallback for a timed-out wait
        assert not session.scalars(select(DecisionRow).where(DecisionRow.fallback)).all()
    first, second = (agents[n].seen[0].market for n in ("first", "second"))
    assert first is second
    assert first.candles["ETH"][-1].close_time == T - HOUR
    asyncio.run(application.engine.run_cycle(T + HOUR))
    assert agents["second"].seen[1].market.candles["ETH"][-1].close_time == T
    application.close()
    writer.close()


def hold_sqlite_write_lock(
    path: str, release: threading.Event, at_most: float
) -> tuple[threading.Thread, threading.Event]:
    """Another connection takes SQLite's write lock and keeps it until ``release`` is set,
    or for ``at_most`` seconds. Returns its thread and an event set once it let go."""
    locked, released = threading.Event(), threading.Event()

    def hold() -> None:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        blocker.execute("UPDATE assets SET name = name")
        locked.set()
        release.wait(at_most)
        blocker.execute("COMMIT")
        released.set()
        blocker.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert locked.wait(30), "the lock was never taken"
    return thread, released


def test_sqlite_connections_use_wal_and_the_configured_busy_timeout(tmp_path):
    """On a real connection of a file no one configured before: WAL (readers never wait for
    the writer) and our busy timeout (pysqlite's default would be 5000 ms)."""
    for busy_ms, name in ((SQLITE_BUSY_TIMEOUT_MS, "default.db"), (250, "short.db")):
        db = Database(f"sqlite:///{tmp_path / name}", sqlite_busy_timeout_ms=busy_ms)
        with db.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == busy_ms
        db.dispose()
    assert SQLITE_BUSY_TIMEOUT_MS > 5000


def test_a_sqlite_writer_gives_up_after_the_configured_busy_timeout(sqlite_url):
    """The waiting is ours: with a 200 ms busy timeout a writer fails while the lock is still
    held (pysqlite's own 5 s default would have outwaited the lock, let go after 3 s at
    most, and succeeded)."""
    db = Database(sqlite_url, sqlite_busy_timeout_ms=200)
    release = threading.Event()
    thread, released = hold_sqlite_write_lock(urlsplit(sqlite_url).path, release, at_most=3.0)
    try:
        with pytest.raises(OperationalError, match="database is locked"), db.write() as session:
            session.execute(select(func.count()).select_from(CycleRow))
        assert not released.is_set()  # it gave up on its own, the lock still held
    finally:
        release.set()
        thread.join()
        db.dispose()


def test_sqlite_writers_wait_for_the_lock_instead_of_failing(sqlite_url, clock):
    """A cycle's write meets a lock held by another connection: it waits for it, then
    completes (the lock is let go only after the cycle started writing)."""
    application = app_with(sqlite_url, clock, {})
    seed(application)
    seed_agent(application, "cash", Provider.MOCK, "cash")
    writing, release = threading.Event(), threading.Event()

    def on_statement(conn, cursor, statement, *args) -> None:
        if statement.lstrip().upper().startswith(("BEGIN IMMEDIATE", "INSERT", "UPDATE")):
            writing.set()

    event.listen(application.db.engine, "before_cursor_execute", on_statement)
    thread, released = hold_sqlite_write_lock(urlsplit(sqlite_url).path, release, at_most=30)

    def let_go_once_writing() -> None:
        writing.wait(30)
        time.sleep(0.3)  # the lock stays a while longer: the writer has to wait for it
        release.set()

    letter = threading.Thread(target=let_go_once_writing)
    letter.start()
    try:
        report = asyncio.run(application.engine.run_cycle(T))
        finished_after_release = released.is_set()
    finally:
        release.set()
        letter.join()
        thread.join()
        event.remove(application.db.engine, "before_cursor_execute", on_statement)
    assert writing.is_set()
    assert finished_after_release  # it waited for the lock…
    assert report.decided == 1  # …and did not fail
    application.close()


@pytest.mark.skipif(not PG_URL, reason="needs RACE_TEST_POSTGRES_URL")
def test_database_lost_mid_cycle_fails_fast_and_the_next_run_completes(pg_url, clock, caplog):
    from tests.conftest import _truncate_pg

    _truncate_pg(pg_url)
    parts = urlsplit(pg_url)
    with tcp_proxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        netloc = parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
        proxied = urlunsplit(parts._replace(netloc=netloc))
        cut = {"done": False}

        async def pull_the_plug(context):
            if not cut["done"]:
                cut["done"] = True
                proxy.cut()
            return AgentAnswer(
                orders=[{"asset": "ETH", "side": "BUY", "quantity": 1}], reasoning="buy"
            )

        application = app_with(proxied, clock, {"plug": Scripted(pull_the_plug)})
        seed(application, eth_until=T + HOUR)
        early = seed_agent(application, "early", Provider.MOCK, "buy_and_hold")
        plug = seed_agent(application, "plug", Provider.LLAMA, "m")
        with (
            caplog.at_level(logging.WARNING, logger="race.store"),
            pytest.raises(DatabaseError, match="RACE_DATABASE_URL"),
        ):
            asyncio.run(application.engine.run_cycle(T))
        # Bounded retries (said as "attempt n of m"), then it fails fast.
        retries = [r.getMessage() for r in caplog.records if "transient" in r.getMessage()]
        assert all(re.search(r"attempt [12] of 3\)", m) for m in retries), retries
        proxy.restore()
        # No partial step: the early agent's step is whole, the cut one left nothing.
        assert count(application, DecisionRow, DecisionRow.agent_id == early) == 1
        assert count(application, EquitySnapshotRow, EquitySnapshotRow.agent_id == early) == 1
        for table, column in (
            (DecisionRow, DecisionRow.agent_id),
            (EquitySnapshotRow, EquitySnapshotRow.agent_id),
            (TradeRow, TradeRow.agent_id),
        ):
            assert count(application, table, column == plug) == 0
        with application.db.read() as session:
            assert session.get(CycleRow, live_key(session, T)).status == "running"
        # The next timer tick (slot T + 15 min, not T again) completes the missed work first
        # — only that — then runs its own slot.
        run = asyncio.run(application.engine.run_scheduled(T + SLOT, trigger="timer"))
        assert [r.cycle_time for r in run.caught_up] == [T]
        assert run.caught_up[0].decided == 1
        assert run.caught_up[0].skipped == {early: "already decided for this cycle"}
        assert run.cycle.decided == 2
        assert count(application, DecisionRow, DecisionRow.cycle_time == T) == 2
        assert count(application, DecisionRow, DecisionRow.cycle_time == T + SLOT) == 2
        assert count(application, TradeRow, TradeRow.agent_id == plug) == 2
        with application.db.read() as session:
            assert session.get(CycleRow, live_key(session, T)).status == "completed"
            assert session.get(CycleRow, live_key(session, T + SLOT)).status == "completed"
        application.close()


def proxied_url(pg_url: str, proxy) -> str:
    parts = urlsplit(pg_url)
    netloc = parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
    return urlunsplit(parts._replace(netloc=netloc))


def cut_at(target, proxy, should_cut, *, restore: bool = False):
    """Cut the proxy (and restore it at once if ``restore``: a blip) right before the
    first statement ``should_cut(statement)`` accepts; ``target`` is an engine or the
    Engine class (every engine, e.g. the CLI's). Returns the listener, to remove."""
    armed = [True]

    def before(conn, cursor, statement, parameters, context, executemany):
        if armed[0] and should_cut(statement):
            armed[0] = False
            proxy.cut()
            if restore:
                proxy.restore()

    event.listen(target, "before_cursor_execute", before)
    return before


def after_the_last_step():
    """Accepts the first statement on the cycles table after the decisions were written:
    the cycle row's finish, once every agent step has committed."""
    state = {"decided": False}

    def should_cut(statement: str) -> bool:
        if "INSERT INTO decisions" in statement:
            state["decided"] = True
            return False
        return state["decided"] and re.search(r"\bcycles\b", statement) is not None

    return should_cut


@pytest.fixture
def pg_proxy(pg_url):
    if not PG_URL:
        pytest.skip("needs RACE_TEST_POSTGRES_URL")
    from tests.conftest import _truncate_pg

    _truncate_pg(pg_url)
    parts = urlsplit(pg_url)
    with tcp_proxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        yield proxy, proxied_url(pg_url, proxy)


def seeded_over(url, clock):
    application = app_with(url, clock, {})
    seed(application, eth_until=T + HOUR)
    agent = seed_agent(application, "bh", Provider.MOCK, "buy_and_hold")
    return application, agent


def test_database_lost_after_the_last_step_is_one_clear_error(pg_proxy, clock):
    proxy, url = pg_proxy
    application, agent = seeded_over(url, clock)
    listener = cut_at(application.db.engine, proxy, after_the_last_step())
    try:
        with pytest.raises(DatabaseError, match="RACE_DATABASE_URL") as raised:
            asyncio.run(application.engine.run_cycle(T))
    finally:
        event.remove(application.db.engine, "before_cursor_execute", listener)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"cycle {T.isoformat()} row failed")
    proxy.restore()
    assert count(application, DecisionRow, DecisionRow.agent_id == agent) == 1
    with application.db.read() as session:
        assert session.get(CycleRow, live_key(session, T)).status == "running"
    run = asyncio.run(application.engine.run_scheduled(T + SLOT))
    assert run.caught_up[0].skipped == {agent: "already decided for this cycle"}
    with application.db.read() as session:
        assert session.get(CycleRow, live_key(session, T)).status == "completed"
    application.close()


def test_a_blip_after_the_last_step_is_retried(pg_proxy, clock):
    proxy, url = pg_proxy
    application, _ = seeded_over(url, clock)
    listener = cut_at(application.db.engine, proxy, after_the_last_step(), restore=True)
    try:
        report = asyncio.run(application.engine.run_cycle(T))
    finally:
        event.remove(application.db.engine, "before_cursor_execute", listener)
    assert report.decided == 1
    with application.db.read() as session:
        row = session.get(CycleRow, live_key(session, T))
        assert (row.status, row.decisions) == ("completed", 1)
    application.close()


def test_the_cli_reports_a_database_lost_after_the_last_step_in_one_line(
    pg_proxy, clock, monkeypatch, capsys
):
    proxy, url = pg_proxy
    application, _ = seeded_over(url, clock)
    monkeypatch.setenv("RACE_DATABASE_URL", url)
    root_handlers = list(logging.getLogger().handlers)
    listener = cut_at(Engine, proxy, after_the_last_step())
    try:
        assert main(["cycle", "--at", T.isoformat()]) == 2
    finally:
        event.remove(Engine, "before_cursor_execute", listener)
        for handler in logging.getLogger().handlers:
            if handler not in root_handlers:
                logging.getLogger().removeHandler(handler)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: cycle ") and "RACE_DATABASE_URL" in last
    application.close()


def test_mark_to_market_and_job_rows_retry_a_blip_and_fail_clearly(pg_proxy, clock):
    proxy, url = pg_proxy
    application, _ = seeded_over(url, clock)
    asyncio.run(application.engine.run_cycle(T))

    def marks(statement: str) -> bool:
        return "INSERT INTO equity_snapshots" in statement

    def jobs(statement: str) -> bool:
        return re.search(r"\bjobs\b", statement) is not None

    engine = application.db.engine
    for should_cut, work in (
        (marks, lambda t: application.engine.snapshot(t)),
        (jobs, lambda t: application.engine.backfill_job(t, t + HOUR, HOUR)),
    ):
        listener = cut_at(engine, proxy, should_cut, restore=True)
        try:
            assert work(T + SLOT)  # a blip: retried, done
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        listener = cut_at(engine, proxy, should_cut)
        try:
            with pytest.raises(DatabaseError, match="RACE_DATABASE_URL"):
                work(T + 2 * SLOT)
        finally:
            event.remove(engine, "before_cursor_execute", listener)
            proxy.restore()
    assert count(application, EquitySnapshotRow, EquitySnapshotRow.source == "mark") == 1
    application.close()


def test_unreachable_database_at_start_is_one_clear_line(monkeypatch, capsys):
    monkeypatch.setenv("RACE_DATABASE_URL", "postgresql+psycopg://race:s3cret@127.0.0.1:1/race")
    assert main(["cycle"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "RACE_DATABASE_URL" in err[0]
    assert "s3cret" not in err[0]


def test_a_pinned_view_whose_candles_were_deleted_is_refused_by_name(database_url, clock):
    from sqlalchemy import delete

    from race.store.tables import CandleRow

    application = app_with(database_url, clock, {})
    seed(application)
    cash = seed_agent(application, "cash", Provider.MOCK, "cash")
    asyncio.run(application.engine.run_cycle(T, agent_ids=[cash]))
    seed_agent(application, "late", Provider.MOCK, "cash")
    with application.db.write() as session:
        session.execute(delete(CandleRow).where(CandleRow.close_time == T - 2 * HOUR))
    with pytest.raises(
        LookupError, match=re.escape(f"pinned for cycle {T.isoformat()} names 50 BTC")
    ):
        asyncio.run(application.engine.run_cycle(T))
    application.close()


def test_a_schema_behind_the_code_is_one_clear_error(database_url, clock):
    """Code deployed before `db upgrade`: the cycles table lacks its new column."""
    from alembic import command

    from race.store.database import alembic_config

    application = app_with(database_url, clock, {})
    seed(application)
    seed_agent(application, "cash", Provider.MOCK, "cash")
    with application.db.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0004")
    try:
        with pytest.raises(DatabaseError, match=r"outdated schema .*python -m race db upgrade"):
            asyncio.run(application.engine.run_cycle(T))
    finally:
        application.db.upgrade()
        application.close()
