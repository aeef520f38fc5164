"""A database that hangs (issue 10 item 6): connections stall instead of refusing. Behind a
loopback proxy that stalls PostgreSQL, the API's reads answer 503 within 5 s (naming only
the setting), a scheduled run caught in the stall ends once the database recovers and the
next tick catches up: no decision or snapshot lost or duplicated."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from race.api import create_api
from race.domain.model import Provider
from race.store.database import Database, DatabaseError, DatabaseTimeout, _current_deadline
from race.store.tables import CycleRow, DecisionRow, EquitySnapshotRow
from tests.conftest import PG_URL
from tests.factories import seed_agent
from tests.tcp_proxy import TcpProxy, tcp_proxy
from tests.test_engine import app_with
from tests.test_hardening import HOUR, SLOT, T, proxied_url, seed
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(not PG_URL, reason="needs RACE_TEST_POSTGRES_URL")

ANSWER_WITHIN_S = 5.0
"""Issue 10's own bound: "reads answer 503 within 5 s" while the database hangs
(RACE_DB_READ_TIMEOUT_SECONDS, 3 s by default, lies below it). The only wall-clock bound
of these tests."""


@pytest.fixture
def stalling(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    from tests.conftest import _truncate_pg

    monkeypatch.setenv("RACE_DB_READ_TIMEOUT_SECONDS", "3")  # the default these tests bound
    _truncate_pg(pg_url)
    with tcp_proxy("127.0.0.1", 5432) as proxy:
        yield proxy, proxied_url(pg_url, proxy)


def timed_get(client: TestClient, path: str) -> tuple[Any, float]:
    started = time.perf_counter()
    response = client.get(path)
    return response, time.perf_counter() - started


def per_slot(application: Any, table: Any, column: Any) -> dict[Any, int]:
    with application.db.read() as session:
        rows = session.execute(select(column, func.count()).select_from(table).group_by(column))
        return {key: n for key, n in rows}


def test_reads_answer_503_within_5_s_while_the_database_hangs_and_runs_catch_up(
    stalling: tuple[TcpProxy, str], clock: Any
) -> None:
    proxy, url = stalling
    application = app_with(url, clock, {})
    seed(application, eth_until=T + HOUR)
    agents = [
        seed_agent(application, "bh", Provider.MOCK, "buy_and_hold"),
        seed_agent(application, "cash", Provider.MOCK, "cash"),
    ]
    asyncio.run(application.engine.run_scheduled(T))
    client = TestClient(create_api(application, resume_jobs=False), raise_server_exceptions=False)
    assert client.get("/api/leaderboard").status_code == 200  # pooled connections, warm

    proxy.stall()
    try:
        for path in ("/api/health", "/api/leaderboard"):
            response, took = timed_get(client, path)
            assert response.status_code == 503, (path, response.text)
            assert took < ANSWER_WITHIN_S, (path, took)
            if path != "/api/health":
                message = response.json()["message"]
                assert "RACE_DATABASE_URL" in message
                for leak in ("127.0.0.1", str(proxy.port), "postgres", "test", "search_path"):
                    assert leak not in message, (leak, message)

        # A scheduled run caught in the stall: it cannot finish until the database answers.
        outcome: dict[str, Any] = {}

        def tick() -> None:
            try:
                outcome["run"] = asyncio.run(application.engine.run_scheduled(T + SLOT))
            except DatabaseError as exc:
                outcome["error"] = exc

        held = proxy.held
        worker = threading.Thread(target=tick)
        worker.start()
        wait_until(lambda: proxy.held > held, "the scheduled run to be caught in the stall")
    finally:
        proxy.recover()
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert "run" in outcome or "RACE_DATABASE_URL" in str(outcome["error"])

    health, took = timed_get(client, "/api/health")
    assert health.status_code == 200 and took < ANSWER_WITHIN_S
    asyncio.run(application.engine.run_scheduled(T + 2 * SLOT))

    slots = [T, T + SLOT, T + 2 * SLOT]
    decisions = per_slot(application, DecisionRow, DecisionRow.cycle_time)
    assert decisions == {slot: len(agents) for slot in slots}
    with application.db.read() as session:
        statuses = session.execute(select(CycleRow.cycle_time, CycleRow.status)).all()
        assert {time_: status for time_, status in statuses} == dict.fromkeys(slots, "completed")
        # One snapshot per agent and time: nothing written twice.
        duplicates = session.execute(
            select(EquitySnapshotRow.agent_id, EquitySnapshotRow.captured_at)
            .group_by(EquitySnapshotRow.agent_id, EquitySnapshotRow.captured_at)
            .having(func.count() > 1)
        ).all()
        assert duplicates == []
        for slot in slots:
            marked = session.scalar(
                select(func.count())
                .select_from(EquitySnapshotRow)
                .where(EquitySnapshotRow.captured_at == slot)
            )
            assert marked == len(agents)
    application.close()


def test_connect_and_statement_timeouts_are_bounded(stalling: tuple[TcpProxy, str]) -> None:
    proxy, url = stalling
    db = Database(url, connect_timeout_seconds=2, statement_timeout_seconds=1)
    with db.engine.connect() as connection:
        assert connection.execute(text("SHOW statement_timeout")).scalar() == "1s"
        # TCP keepalives and a user timeout: a vanished peer is noticed in about a minute.
        dsn = connection.connection.driver_connection.info.dsn  # type: ignore[union-attr]
        assert "keepalives_idle=30" in dsn and "tcp_user_timeout=60000" in dsn, dsn
        assert "connect_timeout=2" in dsn, dsn
        # The URL's own options (the test schema's search_path) are kept.
        assert "race_test" in str(connection.execute(text("SHOW search_path")).scalar())
        with pytest.raises(Exception, match="statement timeout"):  # cancelled by the server
            connection.execute(text("SELECT pg_sleep(5)"))
    db.dispose()

    proxy.stall()
    try:
        fresh = Database(url, connect_timeout_seconds=2)
        started = time.perf_counter()
        with pytest.raises(DatabaseError, match="RACE_DATABASE_URL"):
            fresh.ping()
        assert time.perf_counter() - started < ANSWER_WITHIN_S
        # A bounded block turns a stalled pooled connection into DatabaseTimeout.
        fresh.dispose()
    finally:
        proxy.recover()

    db = Database(url)
    with db.engine.connect() as connection:  # warm one pooled connection
        connection.execute(text("SELECT 1"))
    proxy.stall()
    try:
        started = time.perf_counter()
        with pytest.raises(DatabaseTimeout) as raised, db.bounded(1.5), db.read() as session:
            session.execute(text("SELECT 1"))
        assert time.perf_counter() - started < ANSWER_WITHIN_S
        assert raised.value.kind == "timeout"
        assert "RACE_DATABASE_URL" in raised.value.public
    finally:
        proxy.recover()
    with db.bounded(3), db.read() as session:  # the pool heals: the cut connection is gone
        assert session.execute(text("SELECT 1")).scalar() == 1
    # A connection back in the pool before the deadline passes is never cut by it: another
    # read may be using it by then.
    with db.bounded(0.3):
        with db.read() as session:
            session.execute(text("SELECT 1"))
            raw = session.connection().connection.driver_connection
        deadline = _current_deadline()
        assert deadline is not None
        wait_until(lambda: deadline.expired, "the 0.3 s deadline to pass")
    assert raw is not None and raw.execute("SELECT 1").fetchone() == (1,)
    db.dispose()
