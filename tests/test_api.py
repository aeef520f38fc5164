"""The leaderboard API against the contract (docs/api.md), on real rows."""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from race.api import create_api
from race.api import models as m
from race.bootstrap import bootstrap
from race.store.tables import Base
from tests.api_data import LAST_CANDLE, REPLAY_END, START, build_race, candle_close
from tests.factories import HOUR

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)$")
ADMIN_KEY = "test-admin-key-0123456789"

AGENT_SUMMARY = {"id", "name", "strategy", "isActive", "totalValue", "percentChange", "lastUpdated"}
AGENT_DETAIL = {"id", "name", "strategy", "isActive", "createdAt", "latestSnapshot", "performance"}
PERFORMANCE = {
    "agentId",
    "initialValue",
    "currentValue",
    "totalReturn",
    "percentReturn",
    "maxDrawdown",
    "sharpeRatio",
    "totalTrades",
    "winningTrades",
    "losingTrades",
    "winRate",
    "calculatedAt",
}
SNAPSHOT = {
    "id",
    "portfolioId",
    "agentId",
    "capturedAt",
    "totalValue",
    "cashValue",
    "positionsValue",
    "unrealizedPnL",
    "percentChange",
}
LEADER = {"agent", "currentValue", "performancePercent", "drawdown"}
LEADER_AGENT = {"id", "name", "modelType", "provider", "isActive", "createdAt"}
TRADE = {
    "id",
    "assetSymbol",
    "executedAt",
    "quantity",
    "price",
    "side",
    "totalValue",
    "rationale",
    "detectedRegime",
}
PRICE = {
    "symbol",
    "name",
    "price",
    "change24h",
    "changePercent24h",
    "high24h",
    "low24h",
    "updatedAt",
}
PORTFOLIO = {"portfolioId", "agentId", "cash", "positions", "asOf", "totalValue"}
POSITION = {"assetSymbol", "quantity", "averagePrice", "currentPrice"}
DECISION = {
    "id",
    "agentId",
    "timestamp",
    "action",
    "asset",
    "quantity",
    "rationale",
    "citedRuleIds",
    "detectedRegime",
    "portfolioValueBefore",
    "portfolioValueAfter",
    "marketConditions",
    "wasValidated",
    "validationErrors",
    "createdAt",
}
HEALTH = {"status", "timestamp", "database", "activeAgentCount", "latestCandleTime"}


def number(value):
    return isinstance(value, int | float) and not isinstance(value, bool)


@pytest.fixture
def race(database_url, clock):
    application = bootstrap(
        overrides={"RACE_DATABASE_URL": database_url, "RACE_ADMIN_KEY": ADMIN_KEY}, clock=clock
    )
    agents = build_race(application)
    clock.advance((LAST_CANDLE + HOUR - clock.now()).total_seconds())
    client = TestClient(create_api(application), raise_server_exceptions=False)
    yield application, client, agents
    client.app.state.jobs.join(timeout=30)
    application.close()


def get(client, url, status=200):
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def test_agents_list_shape_and_order(race):
    _, client, agents = race
    body = get(client, "/api/agents")
    assert len(body) == len(agents)
    for item in body:
        assert set(item) >= AGENT_SUMMARY
        m.AgentSummary.model_validate(item)
        assert isinstance(item["id"], str)
        assert number(item["totalValue"]) and number(item["percentChange"])
        assert ISO.match(item["lastUpdated"])
    values = [a["totalValue"] for a in body]
    assert values == sorted(values, reverse=True)
    idle = next(a for a in body if a["name"] == "Idle Newcomer")
    assert idle["totalValue"] == 100000.0
    assert idle["percentChange"] == 0
    assert idle["isActive"] is False


def test_agent_detail_with_performance(race):
    _, client, agents = race
    body = get(client, f"/api/agents/{agents['buy_and_hold']}")
    assert set(body) >= AGENT_DETAIL
    m.AgentDetail.model_validate(body)
    assert set(body["performance"]) >= PERFORMANCE
    assert set(body["latestSnapshot"]) >= SNAPSHOT
    perf = body["performance"]
    assert perf["initialValue"] == 100000.0
    assert perf["totalReturn"] == pytest.approx(perf["currentValue"] - 100000.0)
    assert perf["percentReturn"] == pytest.approx(perf["totalReturn"] / 1000.0, abs=1e-4)
    assert perf["maxDrawdown"] >= 0
    assert perf["totalTrades"] >= 2
    assert 0 <= perf["winRate"] <= 100
    assert ISO.match(perf["calculatedAt"]) and ISO.match(body["createdAt"])
    idle = get(client, f"/api/agents/{agents['idle']}")
    assert idle["latestSnapshot"] is None
    assert idle["performance"]["sharpeRatio"] is None
    assert idle["performance"]["totalTrades"] == 0


def test_equity_ascending_with_range_and_downsampling(race):
    _, client, agents = race
    agent = agents["sma_cross"]
    full = get(client, f"/api/agents/{agent}/equity")
    assert len(full) == 122  # 121 cycles + the final mark
    for item in full:
        assert set(item) >= SNAPSHOT
        m.EquitySnapshot.model_validate(item)
    times = [s["capturedAt"] for s in full]
    assert times == sorted(times)
    assert full[0]["percentChange"] == 0
    start, end = START + 100 * HOUR, START + 110 * HOUR
    ranged = get(
        client,
        f"/api/agents/{agent}/equity?from={start.isoformat()}&to="
        f"{end.isoformat().replace('+00:00', 'Z')}",
    )
    assert len(ranged) == 11
    assert ranged[0]["percentChange"] == 0  # relative to the first of the returned range
    small = get(client, f"/api/agents/{agent}/equity?maxPoints=10")
    assert len(small) <= 10
    values = [s["totalValue"] for s in full]
    kept = [s["totalValue"] for s in small]
    assert small[0]["capturedAt"] == full[0]["capturedAt"]
    assert small[-1]["capturedAt"] == full[-1]["capturedAt"]
    assert max(values) in kept and min(values) in kept


def test_leaderboard_shape_and_order(race):
    _, client, agents = race
    body = get(client, "/api/leaderboard")
    assert len(body) == len(agents)
    for entry in body:
        assert set(entry) >= LEADER
        assert set(entry["agent"]) >= LEADER_AGENT
        m.LeaderboardEntry.model_validate(entry)
        assert entry["agent"]["modelType"] in {"Llama", "OpenAI", "AzureOpenAI", "CustomML", "Mock"}
        assert entry["drawdown"] >= 0
    values = [e["currentValue"] for e in body]
    assert values == sorted(values, reverse=True)
    assert [e["rank"] for e in body] == list(range(1, len(body) + 1))
    sma = next(e for e in body if e["agent"]["name"] == "SMA Cross 10/30")
    assert sma["agent"]["provider"] == "Long while SMA10 > SMA30"  # the strategy text
    assert sma["degraded"] is False


def test_trades_page_newest_first_with_bounds(race):
    _, client, agents = race
    agent = agents["random"]
    page = get(client, f"/api/agents/{agent}/trades")
    assert set(page) == {"trades", "totalCount", "limit", "offset"}
    assert page["limit"] == 50 and page["offset"] == 0
    assert page["totalCount"] >= len(page["trades"]) > 0
    m.TradePage.model_validate(page)
    for trade in page["trades"]:
        assert set(trade) >= TRADE
        assert trade["side"] in ("Buy", "Sell")
        assert trade["totalValue"] == pytest.approx(trade["quantity"] * trade["price"], rel=1e-9)
        assert isinstance(trade["rationale"], str)
    times = [t["executedAt"] for t in page["trades"]]
    assert times == sorted(times, reverse=True)
    second = get(client, f"/api/agents/{agent}/trades?limit=1&offset=1")
    assert second["trades"][0]["id"] == page["trades"][1]["id"]
    assert len(get(client, f"/api/agents/{agent}/trades?limit=500")["trades"]) == page["totalCount"]
    for bad in ("0", "501", "-1", "abc", "1.5", ""):
        body = get(client, f"/api/agents/{agent}/trades?limit={bad}", 400)
        assert "limit" in body["message"]
    assert "offset" in get(client, f"/api/agents/{agent}/trades?offset=-1", 400)["message"]


def test_market_prices(race):
    _, client, _ = race
    body = get(client, "/api/market/prices")
    assert [p["symbol"] for p in body] == ["BTC", "ETH"]
    for price in body:
        assert set(price) >= PRICE
        m.MarketPrice.model_validate(price)
    btc = get(client, "/api/market/prices/btc")
    last, day_before = candle_close(199, "BTC"), candle_close(175, "BTC")
    assert btc["price"] == float(last)
    assert btc["change24h"] == pytest.approx(float(last - day_before))
    assert btc["changePercent24h"] == pytest.approx(
        float((last - day_before) / day_before * 100), abs=1e-6
    )
    closes = [candle_close(i, "BTC") for i in range(176, 200)]
    opens = [candle_close(i, "BTC") for i in range(175, 199)]
    highs = [
        (max(o, c) * Decimal("1.005")).quantize(Decimal("1e-8"))
        for o, c in zip(opens, closes, strict=True)
    ]
    assert btc["high24h"] == pytest.approx(float(max(highs)), rel=1e-8)
    assert btc["updatedAt"] == LAST_CANDLE.isoformat()
    assert get(client, "/api/market/prices/DOGE", 404)["message"]
    assert get(client, "/api/market/prices/b%20tc", 400)["message"]


def test_portfolio(race):
    _, client, agents = race
    body = get(client, f"/api/agents/{agents['buy_and_hold']}/portfolio")
    assert set(body) >= PORTFOLIO
    m.Portfolio.model_validate(body)
    assert {p["assetSymbol"] for p in body["positions"]} == {"BTC", "ETH"}
    for position in body["positions"]:
        assert set(position) >= POSITION
    total = body["cash"] + sum(p["quantity"] * p["currentPrice"] for p in body["positions"])
    assert body["totalValue"] == pytest.approx(total, rel=1e-12)
    assert body["asOf"] == REPLAY_END.isoformat()


def test_decisions_newest_first_with_json_strings(race):
    _, client, agents = race
    body = get(client, f"/api/agents/{agents['rsi_reversion']}/decisions?limit=5")
    assert len(body) == 5
    for decision in body:
        assert set(decision) >= DECISION
        m.DecisionLog.model_validate(decision)
        assert decision["action"] in ("BUY", "SELL", "HOLD")
        assert isinstance(json.loads(decision["citedRuleIds"]), list)
        assert isinstance(json.loads(decision["marketConditions"]), dict)
        assert decision["validationErrors"] is None or all(
            isinstance(message, str) for message in json.loads(decision["validationErrors"])
        )
        assert all(isinstance(rule, str) for rule in json.loads(decision["citedRuleIds"]))
        assert isinstance(decision["rationale"], str) and decision["rationale"]
        assert decision["detectedRegime"]
    stamps = [d["timestamp"] for d in body]
    assert stamps == sorted(stamps, reverse=True)
    assert len(get(client, f"/api/agents/{agents['rsi_reversion']}/decisions")) == 50
    for bad in ("0", "501", "-1", "abc", ""):
        body = get(client, f"/api/agents/{agents['rsi_reversion']}/decisions?limit={bad}", 400)
        assert "limit" in body["message"]
    assert len(get(client, f"/api/agents/{agents['rsi_reversion']}/decisions?limit=500")) == 121


@pytest.mark.parametrize(
    "bad",
    [
        "abc",
        "1.5",
        "-3",
        "0",
        "1;DROP TABLE agents",
        "%E2%82%AC",
        "1%20OR%201=1",
        "99999999999999999999999",
    ],
)
def test_malformed_ids_are_400(race, bad):
    _, client, _ = race
    for path in ("", "/equity", "/trades", "/portfolio", "/decisions"):
        body = get(client, f"/api/agents/{bad}{path}", 400)
        assert "agent id" in body["message"]


def test_unknown_ids_are_404(race):
    _, client, _ = race
    for path in ("", "/equity", "/trades", "/portfolio", "/decisions"):
        assert "no agent" in get(client, f"/api/agents/424242{path}", 404)["message"]
    assert get(client, "/api/no/such/thing", 404)["message"]


def test_bad_dates_and_points_are_400(race):
    _, client, agents = race
    url = f"/api/agents/{agents['cash']}/equity"
    assert "from" in get(client, f"{url}?from=yesterday", 400)["message"]
    reversed_range = get(client, f"{url}?from=2024-02-01&to=2024-01-01", 400)["message"]
    assert reversed_range == "to 2024-01-01T00:00:00+00:00 is before from 2024-02-01T00:00:00+00:00"
    assert "maxPoints" in get(client, f"{url}?maxPoints=1", 400)["message"]
    assert "maxPoints" in get(client, f"{url}?maxPoints=x", 400)["message"]


def test_cors_allows_configured_origins_only(race):
    _, client, _ = race
    ok = client.get("/api/leaderboard", headers={"Origin": "http://localhost:5173"})
    assert ok.headers["access-control-allow-origin"] == "http://localhost:5173"
    refused = client.get("/api/leaderboard", headers={"Origin": "http://evil.example"})
    assert refused.status_code == 200
    assert "access-control-allow-origin" not in refused.headers


def test_health(race):
    _, client, _ = race
    body = get(client, "/api/health")
    assert set(body) >= HEALTH
    # Its last cycle (the replay's end) is 20 h old: degraded, not down.
    assert body["status"] == "Degraded" and body["database"] == "Connected"
    assert len(body["reasons"]) == 1 and "RACE_HEALTH_MAX_CYCLE_AGE" in body["reasons"][0]
    assert body["activeAgentCount"] == 5
    assert body["latestCandleTime"] == LAST_CANDLE.isoformat()
    assert body["latestCandleAgeSeconds"] == pytest.approx(3600.0)
    assert body["lastCycle"] == {"time": REPLAY_END.isoformat(), "status": "completed"}


def test_unreachable_database_is_503_json(clock):
    application = bootstrap(
        overrides={"RACE_DATABASE_URL": "postgresql+psycopg://race:pw@127.0.0.1:1/none"},
        clock=clock,
    )
    client = TestClient(create_api(application), raise_server_exceptions=False)
    health = client.get("/api/health")
    assert health.status_code == 503
    assert health.json()["status"] == "Unhealthy"
    assert health.json()["database"] == "Disconnected"
    board = client.get("/api/leaderboard")
    assert board.status_code == 503
    assert "RACE_DATABASE_URL" in board.json()["message"]
    assert "pw@" not in board.json()["message"]
    application.close()


def test_reads_never_write(race):
    application, client, agents = race

    def counts():
        with application.db.read() as session:
            return {
                t.name: session.scalar(select(func.count()).select_from(t))
                for t in Base.metadata.sorted_tables
            }

    before = counts()
    agent = agents["sma_cross"]
    for url in (
        "/api/agents",
        f"/api/agents/{agent}",
        f"/api/agents/{agent}/equity",
        "/api/leaderboard",
        f"/api/agents/{agent}/trades",
        "/api/market/prices",
        "/api/market/prices/ETH",
        f"/api/agents/{agent}/portfolio",
        f"/api/agents/{agent}/decisions",
        "/api/health",
        f"/api/agents/{agents['idle']}/portfolio",
    ):
        client.get(url)
    assert counts() == before


# ---------------------------------------------------------------- admin


def test_admin_is_forbidden_without_a_configured_key(database_url, clock):
    application = bootstrap(overrides={"RACE_DATABASE_URL": database_url}, clock=clock)
    client = TestClient(create_api(application))
    response = client.post("/api/admin/cycles", headers={"X-API-Key": "anything"})
    assert response.status_code == 403
    assert "RACE_ADMIN_KEY" in response.json()["message"]
    application.close()


def test_admin_needs_the_right_key(race):
    application, client, _ = race
    with application.db.read() as session:
        from race.store.tables import DecisionRow

        before = session.scalar(select(func.count()).select_from(DecisionRow))
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": ADMIN_KEY[:-1]}):
        for path in ("/api/admin/cycles", "/api/admin/ingest", "/api/admin/agents/1/run"):
            response = client.post(path, headers=headers)
            assert response.status_code == 401, path
            assert response.json() == {"message": "missing or wrong X-API-Key"}
        response = client.post(
            "/api/admin/backfills",
            headers=headers,
            json={"start": "2024-01-01", "end": "2024-01-02"},
        )
        assert response.status_code == 401
    with application.db.read() as session:
        from race.store.tables import DecisionRow

        assert session.scalar(select(func.count()).select_from(DecisionRow)) == before


def test_admin_runs_a_cycle_and_one_agent(race, clock):
    _, client, agents = race
    headers = {"X-API-Key": ADMIN_KEY}
    response = client.post("/api/admin/agents/" + str(agents["cash"]) + "/run", headers=headers)
    assert response.status_code == 200
    run = response.json()
    assert run["decided"] == 1
    slot = run["cycleTime"]
    assert slot == (LAST_CANDLE + HOUR).isoformat()  # the schedule slot of "now"
    response = client.post("/api/admin/cycles", headers=headers)
    assert response.status_code == 200
    assert response.json()["cycleTime"] == slot
    assert response.json()["decided"] == 4  # the cash agent had already decided
    again = client.post("/api/admin/cycles", headers=headers, json={"at": slot})
    assert again.json()["decided"] == 0
    assert client.post("/api/admin/agents/999/run", headers=headers).status_code == 404
    assert client.post("/api/admin/agents/x/run", headers=headers).status_code == 400


def test_admin_backfill_is_a_job_with_a_status_url(race):
    application, client, _ = race
    headers = {"X-API-Key": ADMIN_KEY}
    from race.domain.model import Provider
    from race.universe import NewAgent, add_agent

    add_agent(
        application.db,
        NewAgent(name="Late Joiner", provider=Provider.MOCK, model="cash"),
        application.settings.starting_capital,
        application.clock,
    )
    body = {
        "start": (START + 60 * HOUR).isoformat(),
        "end": (START + 90 * HOUR).isoformat(),
        "interval": "1h",
    }
    response = client.post("/api/admin/backfills", headers=headers, json=body)
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["statusUrl"] == f"/api/admin/jobs/{accepted['jobId']}"
    client.app.state.jobs.join(timeout=60)
    job = client.get(accepted["statusUrl"], headers=headers).json()
    assert job["status"] == "completed"
    assert job["done"] == job["total"] == 31
    assert client.get(accepted["statusUrl"]).status_code == 401
    assert client.get("/api/admin/jobs/77777", headers=headers).status_code == 404
    assert client.get("/api/admin/jobs/abc", headers=headers).status_code == 400
    for bad in (
        {"start": "nope", "end": "2024-01-02"},
        {"start": "2024-01-02", "end": "2024-01-01"},
        {"start": "2024-01-01", "end": "2024-01-02", "interval": "fortnight"},
        {"start": "2024-01-01"},
        [1, 2],
    ):
        response = client.post("/api/admin/backfills", headers=headers, json=bad)
        assert response.status_code == 400, bad
        assert response.json()["message"]


def test_admin_bodies_are_capped(race):
    _, client, _ = race
    headers = {"X-API-Key": ADMIN_KEY}
    big = {"start": "2024-01-01", "end": "2024-01-02", "pad": "x" * 20_000}
    response = client.post("/api/admin/backfills", headers=headers, json=big)
    assert response.status_code == 413
    assert "larger" in response.json()["message"]


def test_openapi_documents_400_message_never_422(race):
    _, client, _ = race
    spec = get(client, "/api/openapi.json")
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "422" not in responses, (method, path)
            if operation.get("parameters") or operation.get("requestBody"):
                assert "400" in responses, (method, path)
                body = responses["400"]["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    # And the app does answer 400 {message} where FastAPI would say 422 {detail}.
    body = get(client, "/api/agents/1/trades?limit=abc", 400)
    assert set(body) == {"message"}


def test_openapi_is_served_under_api(race):
    _, client, _ = race
    spec = get(client, "/api/openapi.json")
    for path in (
        "/api/agents",
        "/api/agents/{agent_id}",
        "/api/agents/{agent_id}/equity",
        "/api/leaderboard",
        "/api/agents/{agent_id}/trades",
        "/api/market/prices",
        "/api/market/prices/{symbol}",
        "/api/agents/{agent_id}/portfolio",
        "/api/agents/{agent_id}/decisions",
        "/api/health",
    ):
        assert path in spec["paths"], path
    assert client.get("/api/docs").status_code == 200


def test_percent_change_vs_first_in_range(race):
    _, client, agents = race
    items = get(
        client,
        f"/api/agents/{agents['buy_and_hold']}/equity?from={(START + 120 * HOUR).isoformat()}",
    )
    first = items[0]["totalValue"]
    for item in items:
        assert item["percentChange"] == pytest.approx(
            (item["totalValue"] - first) / first * 100, abs=1e-5
        )
    assert timedelta(0) < REPLAY_END - START


@pytest.mark.parametrize(
    "query",
    [
        "limit=1000000000000000000000000000000",
        "limit=1%27%20OR%20%271%27=%271",
        "offset=%F0%9F%92%A5",
    ],
)
def test_hostile_query_parameters_are_400(race, query):
    _, client, agents = race
    body = get(client, f"/api/agents/{agents['cash']}/trades?{query}", 400)
    assert body["message"]


@pytest.mark.parametrize(
    "value", ["%27%20OR%201=1--", "%E2%98%83", "2024-13-45T99:00:00Z", "x" * 65]
)
def test_hostile_dates_are_400(race, value):
    _, client, agents = race
    get(client, f"/api/agents/{agents['cash']}/equity?from={value}", 400)


def test_unicode_and_injection_in_symbols_are_400(race):
    _, client, _ = race
    for symbol in ("%E2%82%BF", "BTC%27--", "B%20T%20C"):
        get(client, f"/api/market/prices/{symbol}", 400)


# ---------------------------------------------------------------- admin: key first, sizes


def test_the_admin_key_is_checked_before_the_body(race, database_url, clock):
    _, client, _ = race
    malformed = b"{oops"
    for path in ("/api/admin/backfills", "/api/admin/cycles", "/api/admin/agents/1/run"):
        for headers in ({}, {"X-API-Key": "wrong"}):
            response = client.post(
                path, headers={**headers, "Content-Type": "application/json"}, content=malformed
            )
            assert response.status_code == 401, (path, response.text)
            assert response.json() == {"message": "missing or wrong X-API-Key"}
        # Even an oversized body: nothing about it is read without the key.
        response = client.post(path, content=b"x" * 50_000)
        assert response.status_code == 401
    assert client.get("/api/admin/jobs/abc").status_code == 401  # not 400: key first
    with_key = client.post(
        "/api/admin/backfills",
        headers={"X-API-Key": ADMIN_KEY, "Content-Type": "application/json"},
        content=malformed,
    )
    assert with_key.status_code == 400
    disabled = bootstrap(overrides={"RACE_DATABASE_URL": database_url}, clock=clock)
    try:
        off = TestClient(create_api(disabled))
        response = off.post("/api/admin/backfills", content=malformed)
        assert response.status_code == 403
        assert "RACE_ADMIN_KEY" in response.json()["message"]
    finally:
        disabled.close()


def _chunks(total: int, size: int = 1000):
    sent = 0
    while sent < total:
        part = min(size, total - sent)
        sent += part
        yield b" " * part


def test_a_chunked_admin_body_over_the_cap_is_413(race):
    _, client, _ = race
    headers = {"X-API-Key": ADMIN_KEY, "Content-Type": "application/json"}
    response = client.post("/api/admin/cycles", headers=headers, content=_chunks(20_000))
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert response.status_code == 413, response.text
    assert "larger than 16384 bytes" in response.json()["message"]

    # Under the cap, a chunked body reaches the handler whole.
    def body():
        yield b'{"start": "2024-01-03T12:00:00+00:00", '
        yield b'"end": "2024-01-03T14:00:00+00:00", "interval": "1h"}'

    response = client.post("/api/admin/backfills", headers=headers, content=body())
    assert response.status_code == 202, response.text


# ---------------------------------------------------------------- admin: extreme input


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"start": "0874-01-01T00:00:00Z", "end": "2000-01-01T00:00:00Z", "interval": "400000D"},
            "start",
        ),
        (
            {"start": "1990-01-01T00:00:00Z", "end": "2000-01-01T00:00:00Z", "interval": "400000D"},
            "interval",
        ),
        ({"start": "9999-12-31T23:59:59Z", "end": "9999-12-31T23:59:59Z"}, "start"),
        ({"start": "2024-01-01T00:00:00Z", "end": "9999-12-31T23:59:59Z"}, "end"),
        ({"start": "0001-01-01T00:00:00+01:00", "end": "2024-01-01T00:00:00Z"}, "start"),
        ({"start": "2024-01-01", "end": "2024-01-02", "interval": "999999w"}, "interval"),
        ({"start": "2024-01-01", "end": "2024-01-02", "interval": 3600}, "interval"),
        ({"start": "2024-01-01", "end": "2024-01-02", "agents": [1]}, "agents"),
    ],
)
def test_extreme_backfills_are_400_naming_the_field(race, body, field):
    application, client, _ = race
    response = client.post("/api/admin/backfills", headers={"X-API-Key": ADMIN_KEY}, json=body)
    assert response.status_code == 400, response.text
    assert field in response.json()["message"]
    with application.db.read() as session:
        from race.store.tables import JobRow

        assert session.scalar(select(func.count()).select_from(JobRow)) == 1, "no job made"


@pytest.mark.parametrize(
    "at", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00"]
)
def test_extreme_cycle_times_are_400_naming_the_field(race, at):
    _, client, agents = race
    headers = {"X-API-Key": ADMIN_KEY}
    for path in ("/api/admin/cycles", f"/api/admin/agents/{agents['cash']}/run"):
        response = client.post(path, headers=headers, json={"at": at})
        assert response.status_code == 400, (path, response.text)
        assert response.json()["message"].startswith("at ")


def test_admin_runs_in_the_future_are_refused_and_change_nothing(race):
    application, client, agents = race
    from race.store.tables import JobRow, PortfolioRow

    def timelines():
        with application.db.read() as session:
            return sorted(session.execute(select(PortfolioRow.agent_id, PortfolioRow.as_of)))

    before = timelines()
    headers = {"X-API-Key": ADMIN_KEY}
    future = (application.clock.now() + timedelta(days=30)).isoformat()
    for path in ("/api/admin/cycles", f"/api/admin/agents/{agents['cash']}/run"):
        response = client.post(path, headers=headers, json={"at": future})
        assert response.status_code == 400, (path, response.text)
        assert "is in the future" in response.json()["message"]
    response = client.post(
        "/api/admin/backfills", headers=headers, json={"start": START.isoformat(), "end": future}
    )
    assert response.status_code == 400, response.text
    assert "is in the future" in response.json()["message"]
    with application.db.read() as session:
        assert session.scalar(select(func.count()).select_from(JobRow)) == 1, "no job made"
    assert timelines() == before


def test_extreme_equity_ranges_are_400(race):
    _, client, agents = race
    for value in ("0001-01-01T00:00:00%2B01:00", "9999-12-31T23:59:59-01:00"):
        body = get(client, f"/api/agents/{agents['cash']}/equity?from={value}", 400)
        assert "from" in body["message"]


# ---------------------------------------------------------------- CORS preflight


def test_a_refused_preflight_is_json(race):
    _, client, _ = race
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key",
    }
    ok = client.options(
        "/api/admin/cycles", headers={"Origin": "http://localhost:4173", **preflight}
    )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "http://localhost:4173"
    refused = client.options(
        "/api/admin/cycles", headers={"Origin": "http://evil.example", **preflight}
    )
    assert refused.status_code == 400
    assert refused.headers["content-type"] == "application/json"
    assert "access-control-allow-origin" not in refused.headers
    message = refused.json()["message"]
    assert "origin" in message and "RACE_CORS_ORIGINS" in message


# ---------------------------------------------------------------- scripted agents


def scripted_race(database_url, clock, answers, **overrides):
    """A race whose agents (by name) answer from ``answers[name](n)``, n = their decision
    count so far; default settings otherwise."""
    from race.domain.model import Provider
    from tests.factories import insert_candles, make_candles, seed_agent, seed_assets, wave_prices

    calls = dict.fromkeys(answers, 0)

    class Scripted:
        def __init__(self, name):
            self.name = name

        async def decide(self, context):
            n = calls[self.name]
            calls[self.name] += 1
            return answers[self.name](n)

    application = bootstrap(
        overrides={"RACE_DATABASE_URL": database_url, "RACE_ADMIN_KEY": ADMIN_KEY, **overrides},
        clock=clock,
        agent_builder=lambda spec: Scripted(spec.name),
    )
    seed_assets(application)
    insert_candles(application, make_candles("BTC", START, wave_prices(100, base=40000.0)))
    insert_candles(application, make_candles("ETH", START, wave_prices(100, base=2000.0)))
    ids = {name: seed_agent(application, name, Provider.LLAMA, "m") for name in answers}
    return application, ids


def test_a_decision_log_lists_every_executed_order(database_url, clock):
    from race.domain.agent import AgentAnswer

    def two_orders(n):
        if n == 0:
            return AgentAnswer(
                orders=[
                    {"asset": "BTC", "side": "BUY", "quantity": Decimal("0.25")},
                    {"asset": "ETH", "side": "BUY", "quantity": Decimal("2")},
                ],
                reasoning="both",
            )
        if n == 1:
            return AgentAnswer(
                orders=[{"asset": "ETH", "side": "SELL", "quantity": Decimal("1")}],
                reasoning="trim",
            )
        return AgentAnswer.hold("wait")

    application, ids = scripted_race(database_url, clock, {"Two Orders": two_orders})
    try:
        import asyncio

        asyncio.run(application.engine.backfill(START + 60 * HOUR, START + 62 * HOUR, HOUR))
        client = TestClient(create_api(application))
        agent = ids["Two Orders"]
        logs = get(client, f"/api/agents/{agent}/decisions")
        assert [d["action"] for d in logs] == ["HOLD", "SELL", "BUY"]
        trades = get(client, f"/api/agents/{agent}/trades")["trades"]
        price = {(t["assetSymbol"], t["side"].upper()): t["price"] for t in trades}
        hold, sell, buy = logs
        assert set(buy) >= DECISION
        m.DecisionLog.model_validate(buy)
        # The contract's fields show the first fill, as before…
        assert (buy["asset"], buy["quantity"]) == ("BTC", 0.25)
        # …and ``orders`` every executed order, in execution order.
        assert buy["orders"] == [
            {"asset": "BTC", "side": "BUY", "quantity": 0.25, "price": price[("BTC", "BUY")]},
            {"asset": "ETH", "side": "BUY", "quantity": 2.0, "price": price[("ETH", "BUY")]},
        ]
        assert sell["orders"] == [
            {"asset": "ETH", "side": "SELL", "quantity": 1.0, "price": price[("ETH", "SELL")]}
        ]
        assert hold["orders"] == []
    finally:
        application.close()


def test_degraded_shows_on_the_leaderboard_and_the_agent(database_url, clock):
    """Default settings: degraded when more than 50 % of the last 20 decisions fell back."""
    from race.domain.agent import AgentAnswer

    def failing(fallbacks):
        def answer(n):
            if n >= 20 - fallbacks:
                return AgentAnswer.fallback("provider down")
            return AgentAnswer.hold("fine")

        return answer

    application, ids = scripted_race(
        database_url, clock, {"Mostly Failing": failing(11), "Half Failing": failing(10)}
    )
    try:
        import asyncio

        assert application.settings.degraded_window == 20
        assert application.settings.degraded_threshold == 0.5
        asyncio.run(application.engine.backfill(START + 60 * HOUR, START + 79 * HOUR, HOUR))
        client = TestClient(create_api(application))
        board = {e["agent"]["name"]: e for e in get(client, "/api/leaderboard")}
        assert board["Mostly Failing"]["fallbacks"] == 11
        assert board["Mostly Failing"]["degraded"] is True
        assert board["Half Failing"]["degraded"] is False  # 50 % does not exceed 50 %
        failing_detail = get(client, f"/api/agents/{ids['Mostly Failing']}")
        assert failing_detail["performance"]["degraded"] is True
        assert failing_detail["performance"]["fallbackRate"] == pytest.approx(0.55)
        half = get(client, f"/api/agents/{ids['Half Failing']}")
        assert half["performance"]["degraded"] is False
        summaries = {a["name"]: a["degraded"] for a in get(client, "/api/agents")}
        assert summaries == {"Mostly Failing": True, "Half Failing": False}
    finally:
        application.close()


@contextmanager
def race_behind_coingecko(database_url, clock, key):
    """The test race with admin enabled, fed by a loopback CoinGecko (Demo key
    ``cg-demo``) that the app calls with ``key``; the clock 3.5 h after the last candle."""
    from tests.coingecko_server import FakeCoinGecko

    with FakeCoinGecko(now=clock.now, demo_key="cg-demo") as server:
        application = bootstrap(
            overrides={
                "RACE_DATABASE_URL": database_url,
                "RACE_ADMIN_KEY": ADMIN_KEY,
                "COINGECKO_BASE_URL": server.base_url,
                "COINGECKO_API_KEY": key,
            },
            clock=clock,
        )
        try:
            build_race(application)
            clock.advance((LAST_CANDLE + 3 * HOUR + HOUR / 2 - clock.now()).total_seconds())
            yield application, server, TestClient(create_api(application))
        finally:
            application.close()


def test_admin_ingest_over_http(database_url, clock):
    from race.store.tables import CandleRow, EquitySnapshotRow

    with race_behind_coingecko(database_url, clock, "cg-demo") as (application, server, client):

        def candles():
            with application.db.read() as session:
                return session.scalar(select(func.count()).select_from(CandleRow))

        before = candles()
        response = client.post("/api/admin/ingest", headers={"X-API-Key": ADMIN_KEY})
        assert response.status_code == 200, response.text
        result = response.json()
        assert server.requests, "CoinGecko was called"
        assert server.requests[0].headers["x-cg-demo-api-key"] == "cg-demo"
        assert result["ok"] is True and result["errors"] == {}
        assert result["totals"]["inserted"] == candles() - before > 0
        newest = LAST_CANDLE + 3 * HOUR
        assert result["markedAt"] == newest.isoformat()
        assert result["marked"] == 5
        with application.db.read() as session:
            marked = session.scalar(
                select(func.count())
                .select_from(EquitySnapshotRow)
                .where(EquitySnapshotRow.captured_at == newest)
            )
        assert marked == 5
        prices = get(client, "/api/market/prices")
        assert {p["updatedAt"] for p in prices} == {newest.isoformat()}


def test_admin_ingest_with_a_refused_coingecko_key_is_a_502_naming_the_setting(database_url, clock):
    with race_behind_coingecko(database_url, clock, "cg-wrong-key-123") as (_, _, client):
        response = client.post("/api/admin/ingest", headers={"X-API-Key": ADMIN_KEY})
        assert response.status_code == 502, response.text
        message = response.json()["message"]
        assert message.startswith("CoinGecko: ") and "COINGECKO_API_KEY" in message
        assert "cg-wrong-key-123" not in response.text
