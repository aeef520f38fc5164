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
from datetime import UTC, datetime
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
    env = {
        **os.environ,
        "RACE_DATABASE_URL": f"sqlite:///{tmp_path / 'victim.db'}",
        "PYTHONPATH": str(ROOT),
        "RACE_BACKFILL_CHUNK_CYCLES": "40",
    }
    command = [
        sys.executable,
        "-m",
        "race",
        "backfill",
        "--start",
        begin.isoformat(),
        "--end",
        end.isoformat(),
        "--interval",
        "1h",
    ]
    rng = random.Random(20240101)
    kills = 0
    finished = False
    seen = []
    while kills < KILLS and not finished:
        before = progress(victim)
        process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        # Wait until this run has done some work of its own, then kill at a random moment.
        deadline = time.monotonic() + 30
        while process.poll() is None and progress(victim) == before and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.25))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            seen.append(progress(victim))
        else:
            finished = True
    assert kills >= min(KILLS, 10), f"only {kills} kills before the backfill finished"
    assert len(set(seen)) > 1, seen  # the kills landed at different points
    final = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    assert digest(victim.db) == expected
