"""The ``remote`` ML agent against a faithful loopback restatement of the original race's
model service (tests/ml_service.py): the service accepts our request as is, its decimal
answers, HOLD orders, limit prices and signals land on the decision, and its 401, 422,
429, 500 and 503 become HOLDs with their reason (retried where the contract allows)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select

from race.bootstrap import App, bootstrap
from race.clock import ManualClock
from race.domain.model import Provider
from race.store.tables import DecisionRow, TradeRow
from tests.factories import HOUR, insert_candles, make_candles, seed_agent, seed_assets, wave_prices
from tests.ml_service import MLService, OrderOut, PredictRequest, PredictResponse, SignalOut
from tests.openai_server import OpenAIServer, Reply

START = datetime(2024, 1, 1, tzinfo=UTC)
T = START + 99 * HOUR
KEY = "ml-service-SECRET-key-31"


def scripted(request: PredictRequest) -> PredictResponse:
    """BUY BTC with an advisory limit, HOLD ETH: quantities go out as decimal strings."""
    return PredictResponse(
        request_id=request.request_id,
        agent_id=request.agent_id,
        created_at=datetime(2024, 1, 5, 3, 0, 1, tzinfo=UTC),
        orders=[
            OrderOut(
                asset_symbol="BTC",
                side="BUY",
                quantity=Decimal("0.05"),
                limit_price=Decimal("40123.5"),
            ),
            OrderOut(asset_symbol="ETH", side="HOLD", quantity=Decimal(0)),
        ],
        signals=[
            SignalOut(
                feature="BTC.rsi_14",
                value=28.5,
                rule="rsi_14 < 30",
                fired=True,
                contribution="bullish",
            )
        ],
        reasoning="BTC oversold; ETH flat.",
    )


def all_hold(request: PredictRequest) -> PredictResponse:
    return PredictResponse(
        request_id=request.request_id,
        agent_id=request.agent_id,
        created_at=datetime(2024, 1, 5, 3, 0, 1, tzinfo=UTC),
        orders=[OrderOut(asset_symbol="BTC", side="HOLD", quantity=Decimal(0))],
        reasoning="nothing to do",
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T)


@pytest.fixture
def service(clock: ManualClock) -> Iterator[MLService]:
    with MLService(api_key=KEY, now=clock.monotonic) as running:
        yield running


def make_app(database_url: str, clock: ManualClock, url: str, **overrides: str) -> App:
    values = {
        "RACE_DATABASE_URL": database_url,
        "REMOTE_ML_URL": url,
        "REMOTE_ML_API_KEY": KEY,
        "LLM_MAX_RETRIES": "1",
        **overrides,
    }
    application = bootstrap(overrides=values, clock=clock)
    seed_assets(application)
    insert_candles(application, make_candles("BTC", START, wave_prices(100, base=40000.0)))
    insert_candles(
        application, make_candles("ETH", START, wave_prices(100, base=2000.0), volume=None)
    )
    return application


@pytest.fixture
def app(database_url: str, clock: ManualClock, service: MLService) -> Iterator[App]:
    application = make_app(database_url, clock, service.url)
    yield application
    application.close()


def remote_agent(app: App) -> int:
    return seed_agent(app, "Remote Model", Provider.CUSTOM_ML, model="remote")


def decision(app: App, agent_id: int) -> DecisionRow:
    with app.db.read() as session:
        row = session.scalar(select(DecisionRow).where(DecisionRow.agent_id == agent_id))
        assert row is not None
        session.expunge_all()
        return row


def cycle(app: App, at: datetime = T) -> None:
    asyncio.run(app.engine.run_cycle(at))


def test_the_service_accepts_our_request_and_its_answer_is_traded(app, service):
    service.model = scripted
    agent = remote_agent(app)
    cycle(app)
    [request] = service.predictions
    assert request.status == 200
    body = request.body
    assert body["agentId"] == str(agent)
    assert request.headers["idempotency-key"] == f"{agent}:2024-01-05T03:00:00Z"
    eth = [c for c in body["candles"] if c["symbol"] == "ETH"]
    assert eth and all(c["volume"] == 0 and c["volumeKnown"] is False for c in eth)
    btc = [c for c in body["candles"] if c["symbol"] == "BTC"]
    assert all(isinstance(c["volume"], float) and c["volumeKnown"] is True for c in btc)
    # The service's answer carries its decimals as strings (pydantic v2), as the original.
    answer = json.loads(decision(app, agent).raw_output)
    assert answer["orders"][0]["quantity"] == "0.05"

    row = decision(app, agent)
    assert not row.fallback
    assert (row.action, row.asset_symbol, row.quantity) == ("BUY", "BTC", Decimal("0.05"))
    assert row.rationale == "BTC oversold; ETH flat."
    assert row.model == "remote:momentum-1.2.0"
    assert not row.validation_errors  # the HOLD order is no order, not a dropped one
    assert row.details["orders"] == [
        {"assetSymbol": "BTC", "side": "BUY", "quantity": "0.05", "limitPrice": "40123.5"},
        {"assetSymbol": "ETH", "side": "HOLD", "quantity": "0", "limitPrice": None},
    ]
    assert row.details["signals"] == [
        {
            "feature": "BTC.rsi_14",
            "value": 28.5,
            "rule": "rsi_14 < 30",
            "fired": True,
            "contribution": "bullish",
        }
    ]
    with app.db.read() as session:
        assert len(list(session.scalars(select(TradeRow)))) == 1


def test_the_default_model_answers_a_real_cycle(app, service):
    agent = remote_agent(app)
    cycle(app)
    row = decision(app, agent)
    assert not row.fallback, row.fallback_reason
    assert row.rationale.startswith("momentum: ")
    assert {o["assetSymbol"] for o in row.details["orders"]} == {"BTC", "ETH"}
    assert len(row.details["signals"]) == 2
    assert not row.validation_errors


def test_an_answer_of_holds_only_is_a_hold_not_a_fallback(app, service):
    service.model = all_hold
    agent = remote_agent(app)
    cycle(app)
    row = decision(app, agent)
    assert (row.action, row.fallback) == ("HOLD", False)
    assert row.rationale == "nothing to do"
    assert not row.validation_errors


def test_the_restated_schema_refuses_what_the_original_refuses(app, service):
    """The loopback service is as strict as the original: the request our agent sent before
    (integer agentId, null volume) is a 422; unknown keys, snake_case and numeric strings
    are accepted."""
    remote_agent(app)
    service.model = all_hold
    cycle(app)
    good = service.predictions[0].body
    headers = {"X-API-Key": KEY}

    def post(body: dict) -> httpx.Response:
        return httpx.post(f"{service.url}/predict", json=body, headers=headers, timeout=5)

    assert post(good).status_code == 200
    assert post({**good, "agentId": 7}).status_code == 422
    candles = [dict(c) for c in good["candles"]]
    candles[0]["volume"] = None
    refused = post({**good, "candles": candles})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"][:3] == ["body", "candles", 0]
    snake = {k: v for k, v in good.items() if k not in ("agentId", "schemaVersion")}
    snake.update(agent_id="7", schema_version="1.0", somethingElse=[1])
    snake["portfolio"] = {**good["portfolio"], "cash": "100000.00"}
    assert post(snake).status_code == 200
    assert httpx.post(f"{service.url}/predict", json=good, timeout=5).status_code == 401  # no key


def test_a_wrong_key_is_a_hold_naming_the_key_without_retrying(database_url, clock, service):
    app = make_app(database_url, clock, service.url, REMOTE_ML_API_KEY="not-the-key")
    try:
        agent = remote_agent(app)
        cycle(app)
        row = decision(app, agent)
        assert row.fallback and row.action == "HOLD"
        assert "HTTP 401: the service refused the API key" in row.fallback_reason
        assert "Invalid or missing API key" in row.fallback_reason
        assert [r.status for r in service.predictions] == [401]
        assert "not-the-key" not in row.fallback_reason + (row.raw_output or "")
    finally:
        app.close()


def test_rate_limited_is_retried_after_retry_after_with_the_same_keys(app, service, clock):
    service.rate_limit, service.window, service.retry_after = 1, 5.0, 5
    service.model = scripted
    service.exhaust()  # an earlier call used this minute's request
    agent = remote_agent(app)
    cycle(app)
    row = decision(app, agent)
    assert not row.fallback, row.fallback_reason
    assert row.details["attempts"] == 2
    assert [r.status for r in service.predictions] == [429, 200]
    assert clock.sleeps == [5.0]  # the service's Retry-After, not our back-off
    assert len({r.headers["idempotency-key"] for r in service.predictions}) == 1
    assert len({r.body["requestId"] for r in service.predictions}) == 1


def test_rate_limited_beyond_the_decision_time_holds_naming_the_wait(app, service, clock):
    service.rate_limit, service.retry_after = 1, 600
    service.exhaust()
    agent = remote_agent(app)
    cycle(app)
    row = decision(app, agent)
    assert row.fallback and row.action == "HOLD"
    assert "rate limited by the service (HTTP 429, retry after 600 s)" in row.fallback_reason
    assert [r.status for r in service.predictions] == [429]
    assert clock.sleeps == []


def test_not_initialised_is_retried_then_holds(app, service):
    service.ready = False
    agent = remote_agent(app)
    cycle(app)
    row = decision(app, agent)
    assert row.fallback
    assert "service not ready (HTTP 503): Model not initialised (after 2 attempts)" in (
        row.fallback_reason
    )
    assert [r.status for r in service.predictions] == [503, 503]


def test_a_service_without_a_key_configured_holds_with_its_detail(app, service):
    service.api_key = None
    agent = remote_agent(app)
    cycle(app)
    row = decision(app, agent)
    assert row.fallback
    assert "HTTP 500: API key not configured (after 2 attempts)" in row.fallback_reason


def test_a_422_holds_with_the_fields_the_service_named(database_url, clock):
    detail = [
        {"type": "string_type", "loc": ["body", "agentId"], "msg": "Input should be a valid string"}
    ]
    with OpenAIServer() as server:
        server.default = Reply(status=422, body={"detail": detail})
        app = make_app(database_url, clock, server.root_url)
        try:
            agent = remote_agent(app)
            cycle(app)
            row = decision(app, agent)
        finally:
            app.close()
    assert row.fallback
    assert row.fallback_reason == (
        "remote model: HTTP 422: the service refused the request: "
        "agentId: Input should be a valid string"
    )
    assert len(server.requests) == 1


def test_an_answer_for_another_request_is_refused(app, service):
    def stale(request: PredictRequest) -> PredictResponse:
        return scripted(request).model_copy(update={"request_id": "someone-else"})

    service.model = stale
    agent = remote_agent(app)
    cycle(app)
    row = decision(app, agent)
    assert row.fallback and "answers request 'someone-else'" in row.fallback_reason


def test_a_mistyped_order_is_dropped_and_the_others_kept(database_url, clock):
    answer = {
        "schemaVersion": "1.0",
        "modelVersion": "m",
        "agentId": "1",
        "createdAt": "2024-01-05T03:00:01Z",
        "orders": [
            {"assetSymbol": "BTC", "side": "BUY", "quantity": "lots"},
            {"assetSymbol": "ETH", "side": "BUY", "quantity": 1, "limitPrice": None},
            {"assetSymbol": "BTC", "side": "hold"},
        ],
        "signals": [],
        "reasoning": "two orders",
    }
    with OpenAIServer() as server:
        server.default = lambda recorded: Reply(
            body={**answer, "requestId": recorded.json["requestId"]}
        )
        app = make_app(database_url, clock, server.root_url)
        try:
            agent = remote_agent(app)
            cycle(app)
            row = decision(app, agent)
        finally:
            app.close()
    assert not row.fallback, row.fallback_reason
    assert (row.action, row.asset_symbol, row.quantity) == ("BUY", "ETH", Decimal(1))
    assert [n["code"] for n in row.validation_errors] == ["bad_quantity"]
    assert row.details["orders"] == [
        {"invalid": {"assetSymbol": "BTC", "side": "BUY", "quantity": "lots"}},
        {"assetSymbol": "ETH", "side": "BUY", "quantity": "1", "limitPrice": None},
        {"assetSymbol": "BTC", "side": "HOLD", "quantity": None, "limitPrice": None},
    ]  # a loosely typed HOLD is still no order, not a dropped one
