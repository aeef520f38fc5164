"""Equity curves: downsampling (first, last, highest, lowest kept; the rest evenly spread
in time) on real SQL, and the per-version response cache of the equity endpoint."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from race.api import create_api
from race.api import models as m
from race.api import queries as q
from race.store.repository import bulk_insert
from race.store.tables import EquitySnapshotRow, PortfolioRow
from tests.api_data import LAST_CANDLE, build_race
from tests.factories import HOUR, seed_agent

T0 = datetime(2024, 3, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)


def curve(app, name: str, values: list[int], times: list[datetime]) -> int:
    agent = seed_agent(app, name)
    with app.db.read() as session:
        portfolio, race = session.execute(
            select(PortfolioRow.id, PortfolioRow.race_id).where(PortfolioRow.agent_id == agent)
        ).one()
    rows = [
        {
            "race_id": race,
            "agent_id": agent,
            "portfolio_id": portfolio,
            "captured_at": when,
            "total_value": Decimal(value) / 100,
            "cash_value": Decimal(value) / 100,
            "positions_value": Decimal(0),
            "unrealized_pnl": Decimal(0),
            "source": "mark",
        }
        for value, when in zip(values, times, strict=True)
    ]
    with app.db.write() as session:
        bulk_insert(session, EquitySnapshotRow.__table__, rows)
    return agent


def read(app, agent: int, max_points: int | None, start=None, end=None) -> list[dict]:
    with app.db.read() as session:
        return q.equity(session, agent, start, end, max_points)


def cases() -> list[tuple[str, list[int], list[datetime], int]]:
    """Regular and irregular curves, ties, plateaus, a spike, and sizes around maxPoints."""
    rng = random.Random(11)
    found = []
    for n, max_points in [(1, 2), (2, 2), (3, 2), (9, 3), (10, 10), (11, 10), (200, 4), (997, 50)]:
        values = [rng.randint(90_000_00, 110_000_00) for _ in range(n)]
        found.append(
            (f"regular-{n}-{max_points}", values, [T0 + STEP * i for i in range(n)], max_points)
        )
    gaps = [T0]
    for _ in range(299):
        gaps.append(gaps[-1] + STEP * rng.choice([1, 1, 1, 12, 288]))
    found.append(("gaps", [rng.randint(1, 10**9) for _ in gaps], gaps, 40))
    flat = [100_000_00] * 120
    found.append(("flat", flat, [T0 + STEP * i for i in range(120)], 7))
    spike = [100_000_00] * 150
    spike[77], spike[78] = 250_000_00, 1_00
    found.append(("spike", spike, [T0 + STEP * i for i in range(150)], 5))
    ties = [100_000_00 + (i % 3) for i in range(90)]
    found.append(("ties", ties, [T0 + STEP * i for i in range(90)], 6))
    return found


@pytest.mark.parametrize(("name", "values", "times", "max_points"), cases(), ids=lambda c: "")
def test_downsampling_keeps_ends_and_extremes(app, name, values, times, max_points):
    agent = curve(app, name, values, times)
    full = read(app, agent, None)
    assert [p["totalValue"] for p in full] == [v / 100 for v in values]
    sample = read(app, agent, max_points)
    for point in sample:
        m.EquitySnapshot.model_validate(point)
    stamps = [p["capturedAt"] for p in sample]
    assert stamps == sorted(set(stamps)), "ascending, no duplicates"
    assert {p["id"] for p in sample} <= {p["id"] for p in full}
    if len(full) <= max_points:
        assert sample == full
        return
    assert len(sample) <= max_points
    assert sample[0]["id"] == full[0]["id"] and sample[-1]["id"] == full[-1]["id"]
    totals = [p["totalValue"] for p in sample]
    if max_points >= 4:
        assert max(totals) == max(p["totalValue"] for p in full)
        assert min(totals) == min(p["totalValue"] for p in full)
    if name.startswith("regular"):  # evenly spaced points are all distinct
        assert len(sample) >= max_points - 3
    assert sample[0]["percentChange"] == 0
    first = sample[0]["totalValue"]
    for point in sample:
        change = (point["totalValue"] - first) / first * 100
        assert point["percentChange"] == pytest.approx(change, abs=1e-6)


def test_points_are_evenly_spread_in_time(app):
    n = 2000
    agent = curve(
        app, "even", [100_000_00 + i for i in range(n)], [T0 + STEP * i for i in range(n)]
    )
    sample = read(app, agent, 101)
    assert len(sample) == 101
    times = [datetime.fromisoformat(p["capturedAt"]) for p in sample]
    gaps = {b - a for a, b in itertools.pairwise(times)}
    # 1999 steps over 100 intervals: every gap is 19 or 20 steps.
    assert gaps <= {STEP * 19, STEP * 20, STEP * 21}


def test_ranges_are_inclusive_and_downsampled_inside(app):
    n = 600
    agent = curve(
        app,
        "ranged",
        [100_000_00 + (i * 7919) % 1000 for i in range(n)],
        [T0 + STEP * i for i in range(n)],
    )
    start, end = T0 + STEP * 100, T0 + STEP * 399
    ranged = read(app, agent, None, start, end)
    assert len(ranged) == 300
    assert ranged[0]["capturedAt"] == start.isoformat()
    assert ranged[-1]["capturedAt"] == end.isoformat()
    sample = read(app, agent, 30, start, end)
    assert sample[0]["capturedAt"] == start.isoformat()
    assert sample[-1]["capturedAt"] == end.isoformat()
    assert max(p["totalValue"] for p in sample) == max(p["totalValue"] for p in ranged)
    assert read(app, agent, 30, end, start) == []


def test_even_times():
    inside = q.even_times(T0, T0 + timedelta(hours=10), 4)
    assert inside == [T0 + timedelta(hours=2 * k) for k in range(1, 5)]
    assert q.even_times(T0, T0, 3) == [T0, T0, T0]
    assert q.even_times(T0, T0 + HOUR, 0) == []


def test_large_max_points_use_several_statements(app):
    n = 1500
    agent = curve(
        app, "big", [100_000_00 + i % 97 for i in range(n)], [T0 + STEP * i for i in range(n)]
    )
    sample = read(app, agent, 1200)  # more target times than one statement carries
    assert 1197 <= len(sample) <= 1200
    assert sample[0]["capturedAt"] == T0.isoformat()


# ---------------------------------------------------------------- the endpoint's cache


@pytest.fixture
def served(database_url, clock):
    from race.bootstrap import bootstrap

    application = bootstrap(overrides={"RACE_DATABASE_URL": database_url}, clock=clock)
    agents = build_race(application)
    client = TestClient(create_api(application))
    yield application, client, agents
    application.close()


def test_equity_responses_are_cached_per_version_of_the_curve(served):
    application, client, agents = served
    url = f"/api/agents/{agents['sma_cross']}/equity?maxPoints=50"
    curves = client.app.state.curves
    first = client.get(url)
    again = client.get(url)
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert curves.hits == 1
    # A new mark-to-market changes the curve: the next answer includes it.
    application.engine.snapshot(LAST_CANDLE + HOUR)
    after = client.get(url).json()
    assert after[-1]["capturedAt"] == (LAST_CANDLE + HOUR).isoformat()
    assert curves.hits == 1
    # Other parameters are other entries.
    assert len(client.get(f"/api/agents/{agents['sma_cross']}/equity?maxPoints=5").json()) == 5
    full = client.get(f"/api/agents/{agents['sma_cross']}/equity").json()
    assert full[-1]["id"] == after[-1]["id"]


def test_unknown_agent_is_404_and_an_agent_without_snapshots_has_an_empty_curve(served):
    _, client, agents = served
    assert client.get("/api/agents/4242/equity?maxPoints=10").status_code == 404
    idle = client.get(f"/api/agents/{agents['idle']}/equity?maxPoints=10")
    assert idle.status_code == 200
    assert idle.json() == []


# ---------------------------------------------------------------- the read gate


def test_per_agent_reads_queue_behind_the_gate_and_shared_reads_do_not():
    import asyncio

    from race.api import ReadGate

    running: dict[str, int] = {"now": 0, "peak": 0}
    order: list[str] = []

    async def slow_app(scope, receive, send):
        running["now"] += 1
        running["peak"] = max(running["peak"], running["now"])
        await asyncio.sleep(0.01)
        order.append(scope["path"])
        running["now"] -= 1

    async def burst(gate, paths):
        async def one(path):
            scope = {"type": "http", "method": "GET", "path": path}
            await gate(scope, None, None)

        await asyncio.gather(*(one(p) for p in paths))

    per_agent = [f"/api/agents/{i}/equity" for i in range(8)]
    asyncio.run(burst(ReadGate(slow_app, limit=2), per_agent))
    assert running["peak"] == 2
    assert order == per_agent, "served in arrival order"
    running["peak"] = 0
    shared = ["/api/leaderboard", "/api/market/prices", "/api/agents", "/api/health"] * 2
    asyncio.run(burst(ReadGate(slow_app, limit=2), shared))
    assert running["peak"] == len(shared)
    running["peak"] = 0
    asyncio.run(burst(ReadGate(slow_app, limit=0), per_agent))
    assert running["peak"] == len(per_agent), "0 = no limit"


def test_the_cache_holds_at_most_its_budget():
    from race.api._cache import VersionedCache

    cache = VersionedCache(max_bytes=10)
    cache.put("a", 1, b"1234")
    cache.put("b", 1, b"5678")
    assert cache.get("a", 1) == b"1234"  # a is now the most recent
    cache.put("c", 1, b"90ab")  # 12 bytes > 10: the least recent (b) goes
    assert cache.get("b", 1) is None
    assert cache.get("a", 1) == b"1234" and cache.get("c", 1) == b"90ab"
    assert cache.size == 8 and len(cache) == 2
    assert cache.get("a", 2) is None, "another version is a miss"
    cache.put("a", 2, b"xy")
    assert cache.get("a", 2) == b"xy" and cache.size == 6
    cache.put("huge", 1, b"x" * 11)
    assert cache.get("huge", 1) is None
    assert VersionedCache(0).get("a", 1) is None


@pytest.mark.parametrize(("default", "expected"), [("40", 40), ("0", 1200)])
def test_a_curve_asked_without_max_points_is_capped_by_the_setting(
    database_url, clock, default, expected
):
    from race.bootstrap import bootstrap

    application = bootstrap(
        overrides={
            "RACE_DATABASE_URL": database_url,
            "RACE_API_EQUITY_DEFAULT_MAX_POINTS": default,
        },
        clock=clock,
    )
    try:
        n = 1200
        agent = curve(
            application,
            "long",
            [100_000_00 + i % 50 for i in range(n)],
            [T0 + STEP * i for i in range(n)],
        )
        client = TestClient(create_api(application))
        points = client.get(f"/api/agents/{agent}/equity").json()
        assert len(points) == expected
        assert points[0]["capturedAt"] == T0.isoformat()
        assert points[-1]["capturedAt"] == (T0 + STEP * (n - 1)).isoformat()
        assert len(client.get(f"/api/agents/{agent}/equity?maxPoints=100000").json()) == n
    finally:
        application.close()
