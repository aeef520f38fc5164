"""``POST /api/admin/ingest`` (API and Functions): 200 with the report when at least one
asset was fetched, per-asset errors included; 502 with a JSON message when none could be
(CoinGecko unreachable or failing) — against the loopback CoinGecko and a closed port."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import azure.functions as func
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func as sqlfunc
from sqlalchemy import select

from race.api import create_api, nothing_fetched
from race.bootstrap import App, bootstrap
from race.clock import ManualClock
from race.store.tables import CandleRow
from tests.coingecko_server import FakeCoinGecko, Reply
from tests.factories import HOUR, seed_assets
from tests.test_function_app import _Context, call

ADMIN_KEY = "ingest-admin-key-0123456789"
HEADERS = {"X-API-Key": ADMIN_KEY}


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def overrides(database_url: str, base_url: str) -> dict[str, Any]:
    return {
        "RACE_DATABASE_URL": database_url,
        "RACE_ADMIN_KEY": ADMIN_KEY,
        "COINGECKO_BASE_URL": base_url,
        "COINGECKO_API_KEY": "cg-demo",
        "COINGECKO_MAX_ATTEMPTS": "1",
        "COINGECKO_TIMEOUT_SECONDS": "2",
    }


@contextmanager
def race_at(database_url: str, clock: ManualClock, base_url: str) -> Iterator[App]:
    application = bootstrap(overrides=overrides(database_url, base_url), clock=clock)
    try:
        seed_assets(application)
        clock.advance(3 * HOUR.total_seconds())
        yield application
    finally:
        application.close()


def candles(application: App) -> int:
    with application.db.read() as session:
        return int(session.scalar(select(sqlfunc.count()).select_from(CandleRow)) or 0)


def test_every_asset_fetched_is_a_200_without_errors(database_url, clock):
    with (
        FakeCoinGecko(now=clock.now, demo_key="cg-demo") as server,
        race_at(database_url, clock, server.base_url) as application,
    ):
        response = TestClient(create_api(application)).post("/api/admin/ingest", headers=HEADERS)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True and body["errors"] == {}
    assert body["totals"]["inserted"] > 0


def test_some_assets_fetched_is_a_200_with_the_others_errors(database_url, clock):
    with (
        FakeCoinGecko(now=clock.now, demo_key="cg-demo") as server,
        race_at(database_url, clock, server.base_url) as application,
    ):
        del server.coins["ethereum"]  # CoinGecko answers 404 "coin not found" for ETH
        response = TestClient(create_api(application)).post("/api/admin/ingest", headers=HEADERS)
        stored = candles(application)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is False
    assert set(body["errors"]) == {"ETH"} and body["errors"]["ETH"]
    assets = {a["symbol"]: a for a in body["assets"]}
    assert assets["BTC"]["error"] is None and assets["BTC"]["inserted"] == stored > 0
    assert assets["ETH"]["error"] == body["errors"]["ETH"]


def test_coingecko_unreachable_is_a_502_with_a_json_message(database_url, clock):
    base_url = f"http://127.0.0.1:{closed_port()}/api/v3"
    with race_at(database_url, clock, base_url) as application:
        response = TestClient(create_api(application)).post("/api/admin/ingest", headers=HEADERS)
        assert candles(application) == 0
    assert response.status_code == 502, response.text
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["message"]
    assert message.startswith("CoinGecko: no asset could be fetched: BTC: ")
    assert "(nor ETH)" in message
    assert "cg-demo" not in response.text


def test_coingecko_failing_every_asset_is_a_502(database_url, clock):
    with (
        FakeCoinGecko(now=clock.now, demo_key="cg-demo") as server,
        race_at(database_url, clock, server.base_url) as application,
    ):
        server.queue(*[Reply.server_error(503) for _ in range(6)])
        response = TestClient(create_api(application)).post("/api/admin/ingest", headers=HEADERS)
    assert response.status_code == 502, response.text
    assert "no asset could be fetched" in response.json()["message"]
    assert "503" in response.json()["message"]


def test_the_502_rule_on_reports():
    fine: dict[str, Any] = {"assets": [{"symbol": "BTC"}], "errors": {}}
    assert nothing_fetched(fine) is None
    assert nothing_fetched({"assets": [], "errors": {}}) is None  # nothing to fetch
    partial = {"assets": [{}, {}], "errors": {"ETH": "x"}}
    assert nothing_fetched(partial) is None
    failed = nothing_fetched({"assets": [{}], "errors": {"BTC": "down"}})
    assert failed == "CoinGecko: no asset could be fetched: BTC: down"


# ---------------------------------------------------------------- the Functions host


@pytest.fixture
def hosted(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import function_app

    def start(base_url: str) -> App:
        for name, value in overrides(database_url, base_url).items():
            monkeypatch.setenv(name, value)
        function_app.runtime.cache_clear()
        function_app.asgi.cache_clear()
        race = function_app.runtime()
        seed_assets(race)
        return race

    yield start
    function_app.runtime().close()
    function_app.runtime.cache_clear()
    function_app.asgi.cache_clear()


def call_admin_ingest() -> func.HttpResponse:
    request = func.HttpRequest(
        "POST", "http://localhost/api/admin/ingest", headers=HEADERS, route_params={}, body=b""
    )
    return call("admin_ingest", request, _Context())


def test_the_functions_admin_ingest_is_a_502_when_coingecko_is_unreachable(hosted):
    start = hosted
    start(f"http://127.0.0.1:{closed_port()}/api/v3")
    response = call_admin_ingest()
    assert response.status_code == 502, response.get_body()
    assert response.mimetype == "application/json"
    assert "no asset could be fetched" in json.loads(response.get_body())["message"]


def test_the_functions_admin_ingest_reports_per_asset_errors_with_a_200(hosted):
    start = hosted
    with FakeCoinGecko(demo_key="cg-demo") as server:
        del server.coins["bitcoin"]
        start(server.base_url)
        response = call_admin_ingest()
    assert response.status_code == 200, response.get_body()
    body = json.loads(response.get_body())
    assert set(body["errors"]) == {"BTC"}
    assert body["totals"]["inserted"] > 0
