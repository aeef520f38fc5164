"""A backfill killed with SIGKILL at random moments, then resumed, ends with exactly the
rows of an uninterrupted run (issue 6 §1)."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from race.bootstrap import bootstrap
from race.store.tables import JobRow
from tests.digest import digest
from tests.factories import (
    HOUR,
    insert_candles,
    make_candles,
    seed_assets,
    seed_baselines,
    wave_prices,
)
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2023, 1, 1, tzinfo=UTC)
KILLS = int(os.environ.get("RACE_TEST_KILLS", "10"))


def prepare(path: Path, template: Path, clock):
    shutil.copy(template, path)
    app = bootstrap(overrides={"RACE_DATABASE_URL": f"sqlite:///{path}"}, clock=clock)
    seed_assets(app)
    seed_baselines(app)
    n = 2600
    insert_candles(
        app, make_candles("BTC", START, wave_prices(n, base=30000.0, period=97, drift=0.0002))
    )
    insert_candles(app, make_candles("ETH", START, wave_prices(n, base=1800.0, period=61)))
    return app


def kill_at_progress(
    command: list[str],
    env: dict[str, str],
    progress_of: Callable[[], int],
    last_target: int,
    rng: random.Random,
    poll: float,
    max_delay: float,
) -> list[int]:
    """Start ``command`` again and again, each time SIGKILLing it up to ``max_delay`` s
    after ``progress_of()`` passes the next of KILLS targets drawn in
    ``[1, last_target)`` — kill points by progress, not by wall-clock time, so the test does
    not depend on how fast this machine works, and kills land both between and inside
    commits. Returns the progress seen after each kill."""
    seen = []
    for target in sorted(rng.sample(range(1, last_target), KILLS)):
        target = max(target, progress_of() + 1)  # each run does some work of its own
        process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(
            lambda p=process, t=target: p.poll() is not None or progress_of() >= t,
            lambda t=target: f"the run to pass progress {t} (at {progress_of()})",
            limit_s=60,
            interval=poll,
        )
        time.sleep(rng.uniform(0.0, max_delay))  # the kill point: inside or between commits
        assert process.poll() is None, "the run finished before its kill point"
        process.send_signal(signal.SIGKILL)
        process.wait()
        seen.append(progress_of())
    return seen


def backfill_cli(
    path: Path, begin: datetime, end: datetime, *, chunk_cycles: int
) -> tuple[dict[str, str], list[str]]:
    """The environment and command line of `python -m race backfill` over ``path``, hourly
    from ``begin`` to ``end``, committing every ``chunk_cycles`` cycles."""
    env = {
        **os.environ,
        "RACE_DATABASE_URL": f"sqlite:///{path}",
        "PYTHONPATH": str(ROOT),
        "RACE_BACKFILL_CHUNK_CYCLES": str(chunk_cycles),
    }
    command = [sys.executable, "-m", "race", "backfill", "--start", begin.isoformat()]
    command += ["--end", end.isoformat(), "--interval", "1h"]
    return env, command


def progress(app) -> int:
    with app.db.read() as session:
        job = session.scalar(select(JobRow))
        return job.done if job else 0


def test_backfill_survives_sigkill_at_random_points(tmp_path, sqlite_template, clock):
    begin, end = START + 60 * HOUR, START + 2500 * HOUR
    reference = prepare(tmp_path / "reference.db", sqlite_template, clock)
    asyncio.run(reference.engine.backfill(begin, end, HOUR))
    expected = digest(reference.db)

    victim = prepare(tmp_path / "victim.db", sqlite_template, clock)
    env, command = backfill_cli(tmp_path / "victim.db", begin, end, chunk_cycles=40)
    total = int((end - begin) / HOUR) + 1
    chunk = int(env["RACE_BACKFILL_CHUNK_CYCLES"])
    rng = random.Random(20240101)
    seen = kill_at_progress(
        command, env, lambda: progress(victim), total - 3 * chunk, rng, 0.002, 0.02
    )
    kills = len(seen)
    assert kills >= min(KILLS, 10), f"only {kills} kills before the backfill finished"
    assert len(set(seen)) > 1, seen  # the kills landed at different points
    assert progress(victim) < total  # the final run below still has work to do
    final = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    assert digest(victim.db) == expected


def candle_rows(app) -> list[tuple]:
    from race.store.tables import Asset, CandleRow

    with app.db.read() as session:
        rows = session.execute(
            select(
                Asset.symbol,
                CandleRow.close_time,
                CandleRow.open,
                CandleRow.high,
                CandleRow.low,
                CandleRow.close,
                CandleRow.volume,
                CandleRow.interval_seconds,
                CandleRow.source,
            )
            .join(Asset, Asset.id == CandleRow.asset_id)
            .order_by(Asset.symbol, CandleRow.close_time)
        ).all()
    return [tuple(row) for row in rows]


def candle_count(app) -> int:
    from sqlalchemy import func

    from race.store.tables import CandleRow

    with app.db.read() as session:
        return session.scalar(select(func.count()).select_from(CandleRow))


def test_ingest_survives_sigkill_at_random_points(tmp_path, sqlite_template):
    from race.clock import ManualClock
    from race.ingest import ingest_coingecko
    from race.universe import add_asset
    from tests.coingecko_server import FakeCoinGecko

    # Close to the wall clock: the CLI runs on the real clock, and CoinGecko's Demo history
    # window (365 days) is counted from it.
    now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    coins = {"BTC": "bitcoin", "ETH": "ethereum"}
    begin, end = now - timedelta(days=250), now - timedelta(days=2)

    def fresh(name: str):
        path = tmp_path / name
        shutil.copy(sqlite_template, path)
        app = bootstrap(
            overrides={
                "RACE_DATABASE_URL": f"sqlite:///{path}",
                "COINGECKO_BASE_URL": server.base_url,
                "COINGECKO_API_KEY": "demo-key",
                "COINGECKO_RANGE_CHUNK_DAYS": "15",
            },
            clock=ManualClock(now),
        )
        for symbol, coin in coins.items():
            add_asset(app.db, symbol, coin, app.clock)
        return app, path

    with FakeCoinGecko(now=lambda: now, demo_key="demo-key", latency=0.05) as server:
        reference, _ = fresh("reference.db")
        report = asyncio.run(ingest_coingecko(reference, start=begin, end=end))
        assert report.ok
        expected = candle_rows(reference)
        assert len(expected) > len(coins) * 240 * 24 * 0.9

        victim, path = fresh("victim.db")
        env = {
            **os.environ,
            "RACE_DATABASE_URL": f"sqlite:///{path}",
            "PYTHONPATH": str(ROOT),
            "COINGECKO_BASE_URL": server.base_url,
            "COINGECKO_API_KEY": "demo-key",
            "COINGECKO_RANGE_CHUNK_DAYS": "15",
            "COINGECKO_CALLS_PER_MINUTE": "6000",
        }
        command = [
            sys.executable,
            "-m",
            "race",
            "ingest",
            "--source",
            "coingecko",
            "--start",
            begin.isoformat(),
            "--end",
            end.isoformat(),
        ]
        # Kill points by progress here are stored candles.
        total, step = len(expected), 15 * 24
        rng = random.Random(7)
        seen = kill_at_progress(
            command, env, lambda: candle_count(victim), total - 3 * step, rng, 0.005, 0.03
        )
        kills = len(seen)
        assert kills >= min(KILLS, 10), f"only {kills} kills before the ingestion finished"
        assert len(set(seen)) > 1
        final = subprocess.run(
            command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert final.returncode == 0, final.stderr[-2000:]
        assert candle_rows(victim) == expected
