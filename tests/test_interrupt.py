"""Ctrl-C (SIGINT) stops a backfill of in-process agents promptly, keeps the committed
chunks, and the same command resumes to the rows of an uninterrupted run."""

from __future__ import annotations

import asyncio
import signal
import subprocess

from tests.digest import digest
from tests.factories import HOUR
from tests.test_crash_safety import ROOT, START, backfill_cli, prepare, progress
from tests.waiting import wait_until


def test_ctrl_c_stops_a_backfill_and_the_same_command_resumes(tmp_path, sqlite_template, clock):
    begin, end = START + 60 * HOUR, START + 2500 * HOUR
    total = int((end - begin) / HOUR) + 1
    reference = prepare(tmp_path / "reference.db", sqlite_template, clock)
    asyncio.run(reference.engine.backfill(begin, end, HOUR))
    expected = digest(reference.db)

    victim = prepare(tmp_path / "victim.db", sqlite_template, clock)
    env, command = backfill_cli(tmp_path / "victim.db", begin, end, chunk_cycles=20)
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_until(
        lambda: process.poll() is not None or progress(victim) >= 40,
        lambda: f"the backfill to pass 40 cycles (at {progress(victim)})",
        limit_s=60,
        interval=0.002,
    )
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=20)
    stopped_at = progress(victim)
    assert process.returncode == 130, err[-2000:]
    assert "interrupted: finished work is saved" in err
    assert "Traceback" not in err
    # Stopped within a chunk or two of the signal, far from the end of the range.
    assert 40 <= stopped_at < total - 500, (stopped_at, total)

    final = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr[-2000:]
    assert digest(victim.db) == expected
