"""Test-only driver: one process that runs one cycle when a start barrier opens.

``python tests/cycle_driver.py DATABASE_URL CYCLE_TIME BARRIER_DIR [--scheduled]``

The process builds the whole object graph and touches the database first (imports,
connection pool, agents), then writes ``BARRIER_DIR/ready-<pid>`` and waits for
``BARRIER_DIR/go`` before calling the engine, so every process of a concurrency test
starts its cycle within milliseconds of the others (without a barrier, process start-up
jitter lets the first process finish before the last one reads, and the concurrency
guards are never exercised). It prints the cycle's report as JSON on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from race.bootstrap import bootstrap  # noqa: E402
from race.store import repository as repo  # noqa: E402
from tests.waiting import wait_until  # noqa: E402

BARRIER_TIMEOUT_S = 120.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("cycle_time", type=datetime.fromisoformat)
    parser.add_argument("barrier_dir", type=Path)
    parser.add_argument("--scheduled", action="store_true", help="run_scheduled, not run_cycle")
    args = parser.parse_args()
    app = bootstrap(overrides={"RACE_DATABASE_URL": args.database_url})
    try:
        with app.db.read() as session:  # warm up: connection, agents built
            for spec in repo.active_agents(session):
                app.engine.agent_for(spec)
        (args.barrier_dir / f"ready-{os.getpid()}").touch()
        go = args.barrier_dir / "go"
        try:
            wait_until(go.exists, "the barrier to open", BARRIER_TIMEOUT_S, interval=0.001)
        except AssertionError as exc:
            print(exc, file=sys.stderr)
            return 3
        if args.scheduled:
            run = asyncio.run(app.engine.run_scheduled(args.cycle_time, trigger="timer"))
            print(json.dumps(run.as_dict()))
        else:
            report = asyncio.run(app.engine.run_cycle(args.cycle_time))
            print(json.dumps(report.as_dict()))
    finally:
        app.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
