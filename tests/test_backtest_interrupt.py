"""Ctrl-C (SIGINT) stops ``python -m race backtest`` with its committed chunks kept and one
line naming ``--resume RACE``; that command ends with the rows of an uninterrupted run."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

from race.backtest import BacktestRequest, create_backtest, plan_backtest, run_backtest
from tests.digest import digest
from tests.factories import HOUR
from tests.test_crash_safety import ROOT, START, prepare, progress
from tests.waiting import wait_until


def test_ctrl_c_stops_a_backtest_and_resume_finishes_it(tmp_path, sqlite_template, clock):
    begin, end = START + 60 * HOUR, START + 1260 * HOUR
    total = int((end - begin) / HOUR) + 1
    clock.advance((end - clock.now()).total_seconds() + 3600)
    reference = prepare(tmp_path / "reference.db", sqlite_template, clock)
    race = create_backtest(reference, plan_backtest(reference, BacktestRequest(begin, end)))
    assert asyncio.run(run_backtest(reference, race)).finished
    expected = digest(reference.db)

    victim = prepare(tmp_path / "victim.db", sqlite_template, clock)
    env = {
        **os.environ,
        "RACE_DATABASE_URL": f"sqlite:///{tmp_path / 'victim.db'}",
        "PYTHONPATH": str(ROOT),
        "RACE_BACKFILL_CHUNK_CYCLES": "20",
    }
    command = [sys.executable, "-m", "race", "backtest", "--start", begin.isoformat()]
    command += ["--end", end.isoformat()]
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_until(
        lambda: process.poll() is not None or progress(victim) >= 40,
        lambda: f"the backtest to pass 40 cycles (at {progress(victim)})",
        limit_s=60,
        interval=0.002,
    )
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=20)
    stopped_at = progress(victim)
    assert process.returncode == 130, err[-2000:]
    assert f"race {race.id}: " in out
    last = err.strip().splitlines()[-1]
    assert last == (
        f"interrupted: finished chunks are saved; resume with "
        f"`python -m race backtest --resume {race.id}`"
    ), err[-2000:]
    assert "Traceback" not in err
    assert 40 <= stopped_at < total - 300, (stopped_at, total)

    resume = [sys.executable, "-m", "race", "backtest", "--resume", str(race.id)]
    final = subprocess.run(resume, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr[-2000:]
    assert f"{total}/{total} cycles" in final.stdout
    assert digest(victim.db) == expected
