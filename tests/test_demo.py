"""`python -m race demo` as a user runs it: a fresh machine, no network, one command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from race.store.database import Database
from race.store.tables import (
    AgentRow,
    AgentStatsRow,
    CandleRow,
    CycleRow,
    DecisionRow,
    EquitySnapshotRow,
    PortfolioRow,
    RaceRow,
    TradeRow,
)
from tests.report_html import embedded

ROOT = Path(__file__).resolve().parent.parent


SCOPED = (DecisionRow, TradeRow, EquitySnapshotRow, PortfolioRow, AgentStatsRow, CycleRow)


def live_rows(db: Database) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the live race, table by table, in id (or key) order."""
    with db.read() as session:
        live = session.scalar(select(RaceRow.id).where(RaceRow.kind == "live"))
        return {
            table.__tablename__: [
                tuple(row)
                for row in session.execute(
                    select(*table.__table__.columns)
                    .where(table.race_id == live)
                    .order_by(*table.__table__.primary_key.columns)
                )
            ]
            for table in SCOPED
        }


def run_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RACE_", "LLAMA_", "OPENAI_", "AZURE_", "TOGETHER_", "REMOTE_ML"))
    }
    env.update({"PYTHONPATH": str(ROOT), "RACE_ML_ARTIFACT_DIR": str(tmp_path / "ml")})
    return subprocess.run(
        [sys.executable, "-m", "race", "demo", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RACE_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "race", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_demo_runs_the_race_offline_and_is_safe_to_rerun(tmp_path):
    first = run_demo(tmp_path, "--days", "3")
    assert first.returncode == 0, first.stderr[-3000:]
    out = first.stdout
    for header in (
        "Agent",
        "Provider",
        "Equity (USD)",
        "Return %",
        "Max DD %",
        "Sharpe",
        "Trades",
        "Fees (USD)",
    ):
        assert header in out
    for name in (
        "Buy & Hold",
        "Cash Keeper",
        "SMA Cross 10/30",
        "RSI Reversion",
        "Random Walker",
        "ML Gradient Boost",
    ):
        assert name in out
    assert "held-out accuracy" in out  # the ML model was trained before the window
    # The demo ends by writing the report and printing its path.
    report = tmp_path / "race-report.html"
    assert out.strip().splitlines()[-1] == f"report: {report}"
    series = embedded(report.read_text(encoding="utf-8"), "equity")["series"]
    assert {"Buy & Hold", "Cash Keeper"} <= {s["name"] for s in series}
    assert len(series[0]["points"]) >= 3 * 24
    assert "alembic" not in first.stderr and "still open" not in first.stderr
    db = Database(f"sqlite:///{tmp_path / 'race.db'}")
    with db.read() as session:
        agents = session.scalar(select(func.count()).select_from(AgentRow))
        decisions = session.scalar(select(func.count()).select_from(DecisionRow))
        candles = session.scalar(select(func.count()).select_from(CandleRow))
    assert agents == 6
    assert decisions == 6 * (3 * 24 + 1)
    assert candles > 100_000
    # The replay is a backtest race of its own: the live race holds none of it.
    assert "a backtest; the live race is left alone" in out
    untouched = live_rows(db)
    for table in ("decisions", "trades", "equity_snapshots", "cycles"):
        assert untouched[table] == [], table
    with db.read() as session:  # the agents' live portfolios are as they were created
        versions = session.scalars(
            select(PortfolioRow.version).join(RaceRow).where(RaceRow.kind == "live")
        )
        assert set(versions) == {0}
    # The live race runs a few hours of the same window; the demo's re-run leaves it alone.
    window = re.search(r"replaying (\S+) → (\S+) every", out)
    assert window is not None
    live = run_cli(tmp_path, "backfill", "--start", window[1], "--end", window[1], "--json")
    assert live.returncode == 0, live.stderr[-3000:]
    assert run_cli(tmp_path, "snapshot", "--at", window[2]).returncode == 0
    before = live_rows(db)
    assert len(before["decisions"]) == 6 and len(before["equity_snapshots"]) == 12

    second = run_demo(tmp_path, "--days", "3")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "0 decisions (0 fallbacks), 0 trades written this run" in second.stdout
    assert "already trained" in second.stdout
    # the bundled files are unchanged: skipped by their content hash, not read again
    assert second.stdout.count("not read again") == 4
    assert "alembic" not in second.stderr and "still open" not in second.stderr
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(DecisionRow)) == decisions + 6
    assert live_rows(db) == before
    db.dispose()
