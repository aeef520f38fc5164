"""The remote ML agent against a real HTTP server on loopback: the request it sends, its
headers, success through the engine, and every kind of failure as a HOLD with its reason."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from race.bootstrap import bootstrap
from race.clock import ManualClock
from race.domain.model import Provider
from race.store.tables import DecisionRow
from tests.factories import HOUR, insert_candles, make_candles, seed_agent, seed_assets, wave_prices
from tests.openai_server import OpenAIServer, Reply

START = datetime(2024, 1, 1, tzinfo=UTC)
T = START + 99 * HOUR
API_KEY = "remote-ml-SECRET-key-77"
PREDICTION = {
    "orders": [{"assetSymbol": "BTC", "side": "BUY", "quantity": 0.05}],
    "signals": [
        {
            "feature": "BTC.p_up",
            "value": 0.71,
            "rule": "p_up > 0.6",
            "fired": True,
            "contribution": "bullish",
        },
        {
            "feature": "ETH.p_up",
            "value": 0.49,
            "rule": "p_up > 0.6",
            "fired": False,
            "contribution": "neutral",
        },
    ],
    "reasoning": "Momentum model: BTC breakout.",
    "modelVersion": "lgbm-2024-01-01",
}


@pytest.fixture
def server():
    with OpenAIServer() as running:
        running.default = Reply(body=PREDICTION)
        yield running


def make_app(database_url, **overrides):
    values = {"RACE_DATABASE_URL": database_url, "REMOTE_ML_API_KEY": API_KEY}
    values.update(overrides)
    application = bootstrap(overrides=values, clock=ManualClock(T))
    seed_assets(application)
    insert_candles(application, make_candles("BTC", START, wave_prices(100, base=40000.0)))
    insert_candles(
        application, make_candles("ETH", START, wave_prices(100, base=2000.0), volume=None)
    )
    return application


@pytest.fixture
def remote_app(database_url, server):
    application = make_app(database_url, REMOTE_ML_URL=server.root_url)
    yield application
    application.close()


@pytest.fixture
def elsewhere():
    """Another remote model: same host, another port — another origin."""
    with OpenAIServer() as running:
        running.default = Reply(body=PREDICTION)
        yield running


def remote_agent(app, url, **params):
    return seed_agent(
        app,
        "Remote Model",
        Provider.CUSTOM_ML,
        model="remote",
        params={"url": url, **params},
        instructions="Long only, small sizes.",
    )


def decision(app, agent_id):
    with app.db.read() as session:
        row = session.scalar(select(DecisionRow).where(DecisionRow.agent_id == agent_id))
        session.expunge_all()
        return row


def test_success_sends_the_documented_request_and_trades(remote_app, server):
    agent = remote_agent(remote_app, f"{server.root_url}/models/v1/")
    report = asyncio.run(remote_app.engine.run_cycle(T))
    assert report.trades == 1
    row = decision(remote_app, agent)
    assert not row.fallback
    assert (row.action, row.asset_symbol, str(row.quantity)) == ("BUY", "BTC", "0.05000000")
    assert row.rationale == "Momentum model: BTC breakout."
    assert row.model == "remote:lgbm-2024-01-01"
    assert row.model_version == "lgbm-2024-01-01"  # the service's modelVersion, as the ML agent's
    assert row.details["signals"] == PREDICTION["signals"]
    assert json.loads(row.raw_output) == PREDICTION
    assert API_KEY not in json.dumps(row.details) + row.raw_output + row.rationale

    [request] = server.requests
    assert request.method == "POST"
    assert request.path == "/models/v1/predict"
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["idempotency-key"] == f"{agent}:2024-01-05T03:00:00Z"
    body = request.json
    assert body["schemaVersion"] == "1.0"
    assert uuid.UUID(body["requestId"])
    assert body["agentId"] == str(agent)
    assert body["instructions"] == "Long only, small sizes."
    assert body["portfolio"] == {"cash": 100000.0, "totalValue": 100000.0, "positions": []}
    btc = [c for c in body["candles"] if c["symbol"] == "BTC"]
    eth = [c for c in body["candles"] if c["symbol"] == "ETH"]
    assert len(btc) == len(eth) == 50
    assert btc[-1]["timestamp"] == "2024-01-05T03:00:00Z"  # nothing after T
    assert set(btc[-1]) == {
        "symbol",
        "timestamp",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "volumeKnown",
    }
    assert btc[-1]["volume"] == 10.0 and btc[-1]["volumeKnown"] is True
    assert eth[-1]["volume"] == 0 and eth[-1]["volumeKnown"] is False


def test_positions_are_sent_with_their_average_price(remote_app, server):
    agent = remote_agent(remote_app, server.root_url)
    asyncio.run(remote_app.engine.run_cycle(T))  # buys 0.05 BTC
    remote_app.clock.advance(3600)
    server.default = Reply(body={"orders": [], "reasoning": "hold"})
    asyncio.run(remote_app.engine.run_cycle(T + HOUR))
    body = server.requests[-1].json
    [position] = body["portfolio"]["positions"]
    assert position["symbol"] == "BTC" and position["quantity"] == 0.05
    assert position["averagePrice"] > 0
    assert body["portfolio"]["cash"] < 100000.0
    assert server.requests[-1].headers["idempotency-key"] == f"{agent}:2024-01-05T04:00:00Z"


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(status=400, body={"error": "bad schema"}), "HTTP 400"),
        (Reply(status=401, body={"error": "who are you"}), "HTTP 401"),
        (Reply(body="<html>oops</html>", content_type="text/html"), "invalid answer"),
        (Reply(body={"reasoning": "no orders key"}), "invalid answer: orders: Field required"),
        (Reply(body={"orders": "BUY BTC"}), "invalid answer: orders"),
        (Reply(body=[1, 2]), "invalid answer"),
    ],
)
def test_bad_answers_hold_with_the_reason_without_retrying(remote_app, server, reply, reason):
    agent = remote_agent(remote_app, server.root_url)
    server.default = reply
    report = asyncio.run(remote_app.engine.run_cycle(T))
    assert report.fallbacks == 1
    row = decision(remote_app, agent)
    assert row.fallback and row.action == "HOLD"
    assert reason in row.fallback_reason
    assert row.fallback_reason.startswith("remote model: ")
    assert len(server.requests) == 1


def test_server_errors_are_retried_with_the_same_idempotency_key(remote_app, server):
    agent = remote_agent(remote_app, server.root_url)
    server.script(Reply(status=503, body={}), Reply(drop=True))  # then the default: success
    asyncio.run(remote_app.engine.run_cycle(T))
    row = decision(remote_app, agent)
    assert not row.fallback and row.action == "BUY"
    assert row.details["attempts"] == 3
    keys = {r.headers["idempotency-key"] for r in server.requests}
    assert keys == {f"{agent}:2024-01-05T03:00:00Z"}
    assert len({r.json["requestId"] for r in server.requests}) == 1


def test_persistent_500_holds_after_the_retries(remote_app, server):
    agent = remote_agent(remote_app, server.root_url)
    server.default = Reply(status=500, body={"error": "boom"})
    asyncio.run(remote_app.engine.run_cycle(T))
    row = decision(remote_app, agent)
    assert row.fallback
    assert "HTTP 500: boom (after 4 attempts)" in row.fallback_reason
    assert len(server.requests) == 4
    assert remote_app.clock.sleeps and all(s < 10 for s in remote_app.clock.sleeps)
    # One failed decision is one breaker failure, not four.
    breaker, _ = remote_app.services.shared[f"remote_ml.{server.root_url}/predict"]
    assert breaker.consecutive_failures == 1 and breaker.state.value == "closed"


def test_the_global_key_never_goes_to_another_origin(remote_app, server, elsewhere):
    ours = remote_agent(remote_app, f"{server.root_url}/v2")
    theirs = seed_agent(
        remote_app,
        "Someone else's model",
        Provider.CUSTOM_ML,
        model="remote",
        params={"url": elsewhere.root_url},
    )
    report = asyncio.run(remote_app.engine.run_cycle(T))
    assert report.fallbacks == 0
    assert not decision(remote_app, theirs).fallback
    assert decision(remote_app, ours).details["url"] == f"{server.root_url}/v2/predict"
    [own] = server.requests
    assert own.headers["x-api-key"] == API_KEY  # REMOTE_ML_URL's origin gets the key
    [foreign] = elsewhere.requests
    assert "x-api-key" not in foreign.headers
    assert API_KEY not in json.dumps(foreign.headers) + foreign.body.decode()


def test_a_per_agent_key_comes_from_the_setting_its_param_names(remote_app, elsewhere, monkeypatch):
    monkeypatch.setenv("ELSEWHERE_MODEL_KEY", "elsewhere-own-key-42")
    agent = remote_agent(remote_app, elsewhere.root_url, api_key_setting="ELSEWHERE_MODEL_KEY")
    asyncio.run(remote_app.engine.run_cycle(T))
    row = decision(remote_app, agent)
    assert not row.fallback
    [request] = elsewhere.requests
    assert request.headers["x-api-key"] == "elsewhere-own-key-42"
    assert "elsewhere-own-key-42" not in json.dumps(row.details) + row.rationale


def test_a_per_agent_key_setting_that_is_not_set_holds_without_a_request(
    remote_app, elsewhere, monkeypatch
):
    monkeypatch.delenv("ELSEWHERE_MODEL_KEY", raising=False)
    agent = remote_agent(remote_app, elsewhere.root_url, api_key_setting="ELSEWHERE_MODEL_KEY")
    asyncio.run(remote_app.engine.run_cycle(T))
    row = decision(remote_app, agent)
    assert row.fallback
    assert "ELSEWHERE_MODEL_KEY is not set (named by param 'api_key_setting')" in (
        row.fallback_reason
    )
    assert elsewhere.requests == []


def build_with_key_setting(app, url: str, value):
    """Build a remote agent whose ``api_key_setting`` param is ``value``."""
    from agents.registry import AgentServices, build_agent
    from race.domain.agent import AgentSpec

    spec = AgentSpec(
        id=1,
        name="Keyed",
        provider=Provider.CUSTOM_ML,
        model="remote",
        params={"url": url, "api_key_setting": value},
    )
    return build_agent(spec, AgentServices(settings=app.settings))


@pytest.mark.parametrize("value", ["sk-live-1234-abcd", "", 42, "has space"])
def test_api_key_setting_must_be_a_setting_name(remote_app, server, value):
    from agents.config import AgentConfigError

    with pytest.raises(AgentConfigError, match="NAME of an environment setting"):
        build_with_key_setting(remote_app, server.root_url, value)


def test_timeout_holds(remote_app, server):
    agent = remote_agent(remote_app, server.root_url, timeout_seconds=0.2)
    server.default = Reply(body=PREDICTION, delay=2.0)
    settings_retries = remote_app.settings.llm_max_retries
    asyncio.run(remote_app.engine.run_cycle(T))
    row = decision(remote_app, agent)
    assert row.fallback and "timed out after 0.2 s" in row.fallback_reason
    assert len(server.requests) == 1 + settings_retries


def test_unreachable_server_holds(database_url):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = make_app(database_url, LLM_MAX_RETRIES="1")
    try:
        agent = remote_agent(app, f"http://127.0.0.1:{port}")
        asyncio.run(app.engine.run_cycle(T))
        row = decision(app, agent)
        assert row.fallback and "connection failed" in row.fallback_reason
        assert "after 2 attempts" in row.fallback_reason
    finally:
        app.close()


def test_remote_agent_needs_a_url(database_url):
    app = make_app(database_url)
    try:
        agent = seed_agent(app, "No URL", Provider.CUSTOM_ML, model="remote")
        asyncio.run(app.engine.run_cycle(T))
        row = decision(app, agent)
        assert row.fallback and "REMOTE_ML_URL" in row.fallback_reason
    finally:
        app.close()


@pytest.mark.parametrize(
    "name", ["RACE_ADMIN_KEY", "LLAMA_API_KEY", "coingecko_api_key", "AzureWebJobsStorage"]
)
def test_api_key_setting_cannot_name_a_secret_of_the_race(remote_app, server, name):
    from agents.config import AgentConfigError

    with pytest.raises(AgentConfigError, match="a setting of the race or its host"):
        build_with_key_setting(remote_app, server.root_url, name)


def test_a_per_agent_key_echoed_by_its_server_is_stored_nowhere(remote_app, elsewhere, monkeypatch):
    from tests.digest import table_rows

    secret = "elsewhere-echoed-key-77"
    monkeypatch.setenv("ELSEWHERE_MODEL_KEY", secret)
    elsewhere.default = Reply(body={**PREDICTION, "reasoning": f"I was called with {secret}"})
    agent = remote_agent(remote_app, elsewhere.root_url, api_key_setting="ELSEWHERE_MODEL_KEY")
    asyncio.run(remote_app.engine.run_cycle(T))
    row = decision(remote_app, agent)
    assert not row.fallback
    assert elsewhere.requests[0].headers["x-api-key"] == secret
    assert secret not in row.rationale and secret not in (row.raw_output or "")
    assert secret not in json.dumps(table_rows(remote_app.db), default=str)
