"""API load benchmark: 50 agents × 90 days of 5-minute equity snapshots (~1.3 M rows) on
SQLite, the API served by `python -m race serve` (uvicorn) on loopback, and dashboard-shaped
load for 30 s: dashboards opening during the window (leaderboard, prices, agents, then one
equity request with maxPoints=500 and one decisions request per agent, at most 6 in flight
like a browser, then polling), plus tabs already open that only poll the leaderboard (every
30 s) and the prices (every 60 s).

    python bench/api_load.py [--seconds 30] [--dashboards 10] [--viewers 100] [--db PATH]

Targets (issue 5): GET /api/leaderboard p95 ≤ 50 ms; per-agent equity with maxPoints=500
p95 ≤ 100 ms; zero errors. The database is generated once and reused with --db. The first
dashboard's equity requests are reported apart ("1st tab"): nothing is cached for them yet.
With --cold the window starts as soon as the new server answers, while its analytics are
computed in the background (in a worker process): the run says when they settled.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import select, update  # noqa: E402

from race.bootstrap import bootstrap  # noqa: E402
from race.domain.metrics import EquityStats  # noqa: E402
from race.domain.model import Action, Provider  # noqa: E402
from race.domain.money import quantize  # noqa: E402
from race.store.repository import bulk_insert  # noqa: E402
from race.store.tables import (  # noqa: E402
    AgentStatsRow,
    CandleRow,
    DecisionRow,
    EquitySnapshotRow,
    PortfolioRow,
)
from race.universe import NewAgent, add_agent, add_asset  # noqa: E402

AGENTS = 50
DAYS = 90
STEP = timedelta(minutes=5)
END = datetime(2026, 11, 1, tzinfo=UTC)
START = END - timedelta(days=DAYS)


def build(path: Path) -> None:
    """Generate the database: assets with hourly candles, agents, 5-minute snapshots,
    hourly decisions, and their leaderboard stats."""
    app = bootstrap(overrides={"RACE_DATABASE_URL": f"sqlite:///{path}"})
    app.db.upgrade()
    rng = random.Random(7)
    assets = {}
    for symbol, coin, base in (("BTC", "bitcoin", 60000.0), ("ETH", "ethereum", 3000.0)):
        row, _ = add_asset(app.db, symbol, coin, app.clock)
        assets[symbol] = row.id
        price, rows, t = base, [], START + timedelta(hours=1)
        while t <= END:
            move = rng.gauss(0, 0.006)
            close = price * (1 + move)
            rows.append(
                {
                    "asset_id": row.id,
                    "close_time": t,
                    "open": quantize(Decimal(str(price))),
                    "high": quantize(Decimal(str(max(price, close) * 1.002))),
                    "low": quantize(Decimal(str(min(price, close) * 0.998))),
                    "close": quantize(Decimal(str(close))),
                    "volume": Decimal("12.5"),
                    "interval_seconds": 3600,
                    "source": "bench",
                }
            )
            price, t = close, t + timedelta(hours=1)
        with app.db.write() as session:
            bulk_insert(session, CandleRow.__table__, rows)
    times = []
    t = START
    while t <= END:
        times.append(t)
        t += STEP
    started = time.perf_counter()
    for n in range(AGENTS):
        agent, _ = add_agent(
            app.db,
            NewAgent(
                name=f"Agent {n:02d}",
                provider=Provider.MOCK,
                model="cash",
                strategy=f"bench strategy {n}",
            ),
            Decimal(100000),
            app.clock,
        )
        with app.db.read() as session:
            portfolio_id, race_id = session.execute(
                select(PortfolioRow.id, PortfolioRow.race_id).where(
                    PortfolioRow.agent_id == agent.id
                )
            ).one()
        value, stats, snapshots, decisions = (
            100000.0,
            EquityStats.starting_at(Decimal(100000)),
            [],
            [],
        )
        drift = rng.uniform(-0.00002, 0.00004)
        for i, when in enumerate(times):
            value *= 1 + drift + rng.gauss(0, 0.0015)
            total = quantize(Decimal(str(round(value, 8))))
            stats.add(when, total)
            snapshots.append(
                {
                    "race_id": race_id,
                    "agent_id": agent.id,
                    "portfolio_id": portfolio_id,
                    "captured_at": when,
                    "total_value": total,
                    "cash_value": quantize(total / 2),
                    "positions_value": total - quantize(total / 2),
                    "unrealized_pnl": Decimal(0),
                    "source": "mark",
                }
            )
            if i % 12 == 0:
                decisions.append(
                    {
                        "race_id": race_id,
                        "agent_id": agent.id,
                        "cycle_time": when,
                        "action": Action.HOLD.value,
                        "asset_symbol": None,
                        "quantity": None,
                        "rationale": "bench hold",
                        "cited_rules": [],
                        "regime": "SIDEWAYS",
                        "market_conditions": {"asOf": when.isoformat()},
                        "value_before": total,
                        "value_after": total,
                        "was_validated": True,
                        "validation_errors": None,
                        "proposed_orders": [],
                        "fallback": False,
                        "fallback_reason": None,
                        "raw_output": None,
                        "prompt": None,
                        "model": "cash",
                        "latency_ms": None,
                        "prompt_tokens": None,
                        "completion_tokens": None,
                        "cost_usd": None,
                        "confidence": None,
                        "details": {},
                    }
                )
        with app.db.write() as session:
            bulk_insert(session, EquitySnapshotRow.__table__, snapshots)
            bulk_insert(session, DecisionRow.__table__, decisions)
            session.execute(
                update(AgentStatsRow)
                .where(AgentStatsRow.agent_id == agent.id)
                .values(
                    equity_state=stats.to_state(),
                    snapshot_count=stats.count,
                    last_captured_at=stats.last_time,
                    current_value=snapshots[-1]["total_value"],
                    max_drawdown_pct=stats.max_drawdown_pct,
                    sharpe=stats.sharpe,
                    sortino=stats.sortino,
                    volatility_pct=stats.volatility_pct,
                    decisions=len(decisions),
                )
            )
            session.execute(
                update(PortfolioRow).where(PortfolioRow.id == portfolio_id).values(as_of=END)
            )
        print(
            f"\r  agent {n + 1}/{AGENTS}: {len(snapshots) * (n + 1):,} snapshots "
            f"({time.perf_counter() - started:.0f} s)",
            end="",
            flush=True,
        )
    print()
    app.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def dashboard(
    client: httpx.AsyncClient,
    delay: float,
    stop: float,
    samples: dict[str, list[float]],
    errors: list[str],
    *,
    cold: bool = False,
) -> None:
    """One browser tab: page load (leaderboard, prices, agents, then one equity and one
    decisions request per agent, at most 6 in flight like a browser's per-host limit), then
    the polls (leaderboard every 30 s, prices every 60 s) until the window ends."""
    await asyncio.sleep(delay)
    lanes = asyncio.Semaphore(6)

    async def timed(kind: str, url: str) -> httpx.Response | None:
        async with lanes:
            began = time.perf_counter()
            try:
                response = await client.get(url)
            except httpx.HTTPError as exc:
                errors.append(f"{exc.__class__.__name__} {url}")
                return None
            samples[kind].append((time.perf_counter() - began) * 1000)
            if response.status_code != 200:
                errors.append(f"{response.status_code} {url}")
            return response

    first = await asyncio.gather(
        timed("leaderboard", "/api/leaderboard"),
        timed("prices", "/api/market/prices"),
        timed("agents", "/api/agents"),
    )
    agents = first[2].json() if first[2] is not None else []
    await asyncio.gather(
        *(
            request
            for agent in agents
            for request in (
                timed(
                    "equity maxPoints=500" + (" (1st tab)" if cold else ""),
                    f"/api/agents/{agent['id']}/equity?maxPoints=500",
                ),
                timed("decisions limit=5", f"/api/agents/{agent['id']}/decisions?limit=5"),
            )
        )
    )
    next_board, next_prices = time.perf_counter() + 30, time.perf_counter() + 60
    while (now := time.perf_counter()) < stop:
        await asyncio.sleep(max(0.0, min(next_board, next_prices, stop) - now))
        if time.perf_counter() >= stop:
            break
        if time.perf_counter() >= next_board:
            await timed("leaderboard", "/api/leaderboard")
            next_board += 30
        if time.perf_counter() >= next_prices:
            await timed("prices", "/api/market/prices")
            next_prices += 60


async def viewer(
    client: httpx.AsyncClient,
    rng: random.Random,
    stop: float,
    samples: dict[str, list[float]],
    errors: list[str],
) -> None:
    """A tab opened earlier and left open: it only polls (leaderboard every 30 s, prices
    every 60 s), at its own phase."""
    now = time.perf_counter()
    next_board, next_prices = now + rng.uniform(0, 30), now + rng.uniform(0, 60)
    while (now := time.perf_counter()) < stop:
        await asyncio.sleep(max(0.0, min(next_board, next_prices, stop) - now))
        for kind, url, due in (
            ("leaderboard", "/api/leaderboard", next_board),
            ("prices", "/api/market/prices", next_prices),
        ):
            if time.perf_counter() >= stop or time.perf_counter() < due:
                continue
            began = time.perf_counter()
            try:
                response = await client.get(url)
            except httpx.HTTPError as exc:
                errors.append(f"{exc.__class__.__name__} {url}")
                continue
            samples[kind].append((time.perf_counter() - began) * 1000)
            if response.status_code != 200:
                errors.append(f"{response.status_code} {url}")
            if kind == "leaderboard":
                next_board += 30
            else:
                next_prices += 60


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def load(
    base: str, seconds: float, dashboards: int, viewers: int = 0
) -> tuple[dict[str, list[float]], list[str]]:
    """``dashboards`` tabs opening evenly over the first two thirds of the window, and
    ``viewers`` tabs already open that only poll."""
    samples: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    rng = random.Random(5)
    limits = httpx.Limits(max_connections=6 * dashboards + 20)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        stop = time.perf_counter() + seconds
        spread = seconds * 2 / 3
        await asyncio.gather(
            *(
                dashboard(
                    client,
                    spread * i / max(1, dashboards),
                    stop,
                    samples,
                    errors,
                    cold=i == 0,
                )
                for i in range(dashboards)
            ),
            *(viewer(client, rng, stop, samples, errors) for _ in range(viewers)),
        )
    return samples, errors


def settle_analytics(base: str, started: float, limit: float = 600.0) -> None:
    """Wait until the leaderboard's analytics are computed (the background refresh a new
    server starts): every agent has figures and every rank its comparison. ``started``:
    when the server was started (``time.perf_counter()``)."""
    while time.perf_counter() - started < limit:
        board = httpx.get(f"{base}/api/leaderboard", timeout=60).json()
        if all(e["analyticsAsOf"] is not None for e in board) and all(
            e["pBeatNextRank"] is not None for e in board[:-1]
        ):
            print(f"analytics settled {time.perf_counter() - started:.1f} s after start-up")
            return
        time.sleep(1.0)
    raise SystemExit(f"analytics not settled within {limit:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument(
        "--dashboards",
        type=int,
        default=10,
        help="browser tabs opening during the window (default 10)",
    )
    parser.add_argument(
        "--viewers",
        type=int,
        default=100,
        help="tabs already open that only poll leaderboard and prices (default 100)",
    )
    parser.add_argument("--db", type=Path, help="database file (generated if missing)")
    parser.add_argument(
        "--cold",
        action="store_true",
        help="measure while the new server still computes the analytics in the background "
        "(default: wait until the leaderboard's analytics are settled, then measure)",
    )
    args = parser.parse_args()
    temporary = None
    if args.db is None:
        temporary = tempfile.TemporaryDirectory()
        args.db = Path(temporary.name) / "api-load.db"
    if not args.db.exists():
        print(f"generating {AGENTS} agents × {DAYS} days of 5-minute snapshots in {args.db} …")
        began = time.perf_counter()
        build(args.db)
        print(f"generated in {time.perf_counter() - began:.0f} s")
    port = free_port()
    env = {
        **os.environ,
        "RACE_DATABASE_URL": f"sqlite:///{args.db}",
        "PYTHONPATH": str(ROOT),
        "RACE_LOG_LEVEL": "WARNING",
    }
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "race", "serve", "--port", str(port), "--no-schedule"],
        env=env,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        if not args.cold:
            settle_analytics(base, started)
        asyncio.run(load(base, 2, 1))  # warm-up
        window = time.perf_counter() - started
        samples, errors = asyncio.run(load(base, args.seconds, args.dashboards, args.viewers))
        if args.cold:  # the window was cold until then (the worker's start included)
            print(f"measured from {window:.1f} s to {window + args.seconds:.1f} s after start-up")
            settle_analytics(base, started)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        if temporary is not None:
            temporary.cleanup()
    total = sum(len(v) for v in samples.values())
    print(
        f"\n{total:,} requests in {args.seconds:.0f} s from {args.dashboards} dashboards "
        f"opening and {args.viewers} open tabs polling "
        f"({total / args.seconds:,.0f} req/s), {len(errors)} errors"
    )
    print(f"{'endpoint':<32} {'count':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for kind, values in sorted(samples.items()):
        print(
            f"{kind:<32} {len(values):>7} {statistics.median(values):>8.1f} "
            f"{percentile(values, 0.95):>8.1f} {percentile(values, 0.99):>8.1f} "
            f"{max(values):>8.1f}"
        )
    board = percentile(samples["leaderboard"], 0.95)
    equity = percentile(
        samples["equity maxPoints=500"] + samples["equity maxPoints=500 (1st tab)"], 0.95
    )
    print(
        f"\ntargets: leaderboard p95 {board:.1f} ms ≤ 50 {'OK' if board <= 50 else 'MISSED'}; "
        f"equity p95 {equity:.1f} ms ≤ 100 {'OK' if equity <= 100 else 'MISSED'}; "
        f"errors {len(errors)} {'OK' if not errors else 'MISSED'}"
    )
    for error in errors[:10]:
        print("  ", error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
