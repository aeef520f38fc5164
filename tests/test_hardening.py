"""Concurrency and database faults (issue 6 §2–3): one market view per cycle while ingestion
writes, SQLite writers that wait, a database lost mid-cycle, a database missing at start."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal as D
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import func, select

from race.bootstrap import bootstrap
from race.cli import main
from race.domain.agent import AgentAnswer
from race.domain.model import Provider
from race.store.database import DatabaseError
from race.store.tables import CycleRow, DecisionRow, EquitySnapshotRow, TradeRow
from tests.conftest import PG_URL
from tests.factories import (
    HOUR,
    insert_candles,
    make_candles,
    seed_agent,
    seed_assets,
    wave_prices,
)
from tests.tcp_proxy import tcp_proxy
from tests.test_engine import Scripted, app_with

START = datetime(2024, 1, 1, tzinfo=UTC)
T = START + 80 * HOUR


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

    async def ingest_then_hold(context):
        insert_candles(writer, make_candles("ETH", T, [D("2100")]))
        await asyncio.sleep(0.05)
        return AgentAnswer.hold("saw the market")

    async def late_reader(context):
        await asyncio.sleep(0.2)  # decides after the candle landed
        return AgentAnswer.hold("saw the market too")

    agents = {"first": Scripted(ingest_then_hold), "second": Scripted(late_reader)}
    application = app_with(database_url, clock, agents)
    seed(application)
    for name in agents:
        seed_agent(application, name, Provider.LLAMA, "m")
    asyncio.run(application.engine.run_cycle(T))
    first, second = (agents[n].seen[0].market for n in ("first", "second"))
    assert first is second
    assert first.candles["ETH"][-1].close_time == T - HOUR
    asyncio.run(application.engine.run_cycle(T + HOUR))
    assert agents["second"].seen[1].market.candles["ETH"][-1].close_time == T
    application.close()
    writer.close()


def test_sqlite_writers_wait_for_the_lock_instead_of_failing(sqlite_url, clock):
    application = app_with(sqlite_url, clock, {})
    seed(application)
    seed_agent(application, "cash", Provider.MOCK, "cash")
    path = urlsplit(sqlite_url).path
    locked = threading.Event()

    def hold_write_lock():
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        blocker.execute("UPDATE assets SET name = name")
        locked.set()
        time.sleep(1.5)
        blocker.execute("COMMIT")
        blocker.close()

    thread = threading.Thread(target=hold_write_lock)
    thread.start()
    locked.wait()
    started = time.perf_counter()
    report = asyncio.run(application.engine.run_cycle(T))
    waited = time.perf_counter() - started
    thread.join()
    assert report.decided == 1
    assert waited >= 1.0
    application.close()


@pytest.mark.skipif(not PG_URL, reason="needs RACE_TEST_POSTGRES_URL")
def test_database_lost_mid_cycle_fails_fast_and_the_next_run_completes(pg_url, clock):
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
        started = time.perf_counter()
        with pytest.raises(DatabaseError, match="RACE_DATABASE_URL"):
            asyncio.run(application.engine.run_cycle(T))
        assert time.perf_counter() - started < 15  # bounded retries, then fail fast
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
        # The next run completes the missed work, and only that.
        report = asyncio.run(application.engine.run_cycle(T))
        assert report.decided == 1
        assert count(application, DecisionRow) == 2
        assert count(application, TradeRow, TradeRow.agent_id == plug) == 1
        with application.db.read() as session:
            assert session.get(CycleRow, T).status == "completed"
        application.close()


def test_unreachable_database_at_start_is_one_clear_line(monkeypatch, capsys):
    monkeypatch.setenv("RACE_DATABASE_URL", "postgresql+psycopg://race:s3cret@127.0.0.1:1/race")
    started = time.perf_counter()
    assert main(["cycle"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert time.perf_counter() - started < 15
    assert len(err) == 1
    assert "RACE_DATABASE_URL" in err[0]
    assert "s3cret" not in err[0]
