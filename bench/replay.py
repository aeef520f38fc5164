"""Replay benchmark: the bundled year, hourly, five baselines, BTC and ETH, on SQLite.

    python bench/replay.py [--days 365] [--repeat 5]

Prints persisted decisions per second (the median of --repeat runs, each on a fresh
database, and the best) and the peak resident memory of the process. Targets (on
the 2-core machine): ≥ 15,000 decisions/s (issue 12) and ≤ 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select

from agents.baselines import DEFAULT_BASELINES
from race.bootstrap import bootstrap
from race.domain.model import Provider
from race.domain.timeutil import floor_time
from race.ingest import ingest_sample
from race.store.tables import Asset, CandleRow, DecisionRow
from race.universe import NewAgent, add_agent, add_asset

HOUR = timedelta(hours=1)


def prepare(path: Path, days: int) -> tuple[object, object]:
    app = bootstrap(overrides={"RACE_DATABASE_URL": f"sqlite:///{path}"})
    app.db.upgrade()
    for symbol, coin in (("BTC", "bitcoin"), ("ETH", "ethereum")):
        add_asset(app.db, symbol, coin, app.clock)
    for spec in DEFAULT_BASELINES:
        add_agent(
            app.db,
            NewAgent(
                name=spec["name"],
                provider=Provider.MOCK,
                model=spec["model"],
                strategy=spec["strategy"],
                params=spec["params"],
            ),
            app.settings.starting_capital,
            app.clock,
        )
    ingest_sample(app)
    with app.db.read() as session:
        latest = (
            session.execute(
                select(func.max(CandleRow.close_time)).join(Asset).group_by(CandleRow.asset_id)
            )
            .scalars()
            .all()
        )
    end = floor_time(min(latest), HOUR)
    start = end - timedelta(days=days) + HOUR
    app.close()
    return start, end


def run_once(template: Path, workdir: Path, start: object, end: object) -> tuple[int, float]:
    path = workdir / "replay.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copy(template, path)
    app = bootstrap(overrides={"RACE_DATABASE_URL": f"sqlite:///{path}"})
    began = time.perf_counter()
    report = asyncio.run(app.engine.backfill(start, end, HOUR))
    elapsed = time.perf_counter() - began
    with app.db.read() as session:
        stored = session.scalar(select(func.count()).select_from(DecisionRow))
    app.close()
    assert stored == report.decisions, (stored, report.decisions)
    return stored, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        template = workdir / "template.db"
        t0 = time.perf_counter()
        start, end = prepare(template, args.days)
        print(
            f"prepared database with bundled candles in {time.perf_counter() - t0:.1f} s; "
            f"replaying {start.isoformat()} → {end.isoformat()} hourly, 5 baselines"
        )
        results = []
        for i in range(args.repeat):
            stored, elapsed = run_once(template, workdir, start, end)
            results.append((elapsed, stored))
            print(
                f"  run {i + 1}: {stored} decisions persisted in {elapsed:.2f} s "
                f"= {stored / elapsed:,.0f} decisions/s"
            )
        best, stored = min(results)
        median = statistics.median(elapsed for elapsed, _ in results)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"median: {stored / median:,.0f} persisted decisions/s ({stored} in {median:.2f} s), "
            f"best {stored / best:,.0f}/s; peak RSS {peak_mb:.0f} MB"
        )
        print(
            f"targets: >= 15,000 decisions/s {'OK' if stored / median >= 15000 else 'MISSED'}; "
            f"<= 300 MB {'OK' if peak_mb <= 300 else 'MISSED'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
