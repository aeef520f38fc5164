"""The dashboard's decision shapes, down to the element types of the contract's
string-encoded JSON fields (``citedRuleIds``, ``marketConditions``, ``validationErrors``), on
every request that serves decisions: the home page's feed (``limit=5``) and an agent's
decision history (``limit=50``, the default). Real decisions with notes: an LLM agent whose
orders are clipped, refused and dropped, a remote model, a baseline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from race.api import create_api
from race.api import models as m
from race.api.queries import validation_fields
from race.bootstrap import App, bootstrap
from race.clock import ManualClock
from race.domain.model import Provider
from tests.factories import HOUR, insert_candles, make_candles, seed_agent, seed_assets, wave_prices
from tests.ml_service import MLService, OrderOut, PredictRequest, PredictResponse
from tests.openai_server import OpenAIServer, completion

START = datetime(2024, 1, 1, tzinfo=UTC)
T = START + 99 * HOUR
LLM_ANSWER = {
    "reasoning": "All in on BTC, short ETH, and something odd.",
    "orders": [
        {"asset": "BTC", "side": "BUY", "quantity": 5},
        {"asset": "ETH", "side": "SELL", "quantity": 1},
        {"asset": "BTC", "side": "SHORT", "quantity": 1},
    ],
    "cited_rules": ["R4", "R7"],
}
FEED, HISTORY = "limit=5", "limit=50"
STRING_ENCODED = {"citedRuleIds": list, "marketConditions": dict, "validationErrors": list}
"""The contract's fields that are strings holding JSON, and the JSON type they hold."""


def remote_answer(request: PredictRequest) -> PredictResponse:
    return PredictResponse(
        request_id=request.request_id,
        agent_id=request.agent_id,
        created_at=datetime(2024, 1, 5, 3, 0, 1, tzinfo=UTC),
        orders=[
            OrderOut(asset_symbol="BTC", side="BUY", quantity=Decimal("0.05")),
            OrderOut(asset_symbol="ETH", side="HOLD", quantity=Decimal(0)),
        ],
        reasoning="remote model: BTC up",
    )


@pytest.fixture
def race(database_url: str) -> Iterator[tuple[TestClient, dict[str, int]]]:
    clock = ManualClock(T)
    with OpenAIServer() as llm, MLService(api_key="k-contract", now=clock.monotonic) as ml:
        llm.default = completion(LLM_ANSWER)
        ml.model = remote_answer
        app: App = bootstrap(
            overrides={
                "RACE_DATABASE_URL": database_url,
                "LLAMA_BASE_URL": llm.base_url,
                "LLAMA_API_KEY": "gsk-contract-key-123",
                "REMOTE_ML_URL": ml.url,
                "REMOTE_ML_API_KEY": "k-contract",
                "LLM_MAX_RETRIES": "0",
            },
            clock=clock,
        )
        try:
            seed_assets(app)
            for symbol, base in (("BTC", 40000.0), ("ETH", 2000.0)):
                insert_candles(
                    app, make_candles(symbol, START, wave_prices(102, base=base), volume=None)
                )
            agents = {
                "llm": seed_agent(app, "Llama", Provider.LLAMA, model="llama-3.3-70b-versatile"),
                "remote": seed_agent(app, "Remote", Provider.CUSTOM_ML, model="remote"),
                "cash": seed_agent(app, "Cash Keeper", model="cash"),
            }
            for hour in range(2):
                clock.advance(3600 if hour else 0)
                asyncio.run(app.engine.run_cycle(T + hour * HOUR))
            yield TestClient(create_api(app), raise_server_exceptions=False), agents
        finally:
            app.close()


def served_decisions(client: TestClient, agent_id: int, query: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/agents/{agent_id}/decisions?{query}")
    assert response.status_code == 200, response.text
    return response.json()


def check_string_encoded(decision: dict[str, Any]) -> None:
    for name, kind in STRING_ENCODED.items():
        value = decision[name]
        if name == "validationErrors" and value is None:
            continue
        assert isinstance(value, str), (name, value)
        decoded = json.loads(value)
        assert isinstance(decoded, kind), (name, decoded)
        if kind is list:
            assert all(isinstance(item, str) and item.strip() for item in decoded), (
                name,
                decoded,
            )
        else:
            assert all(isinstance(key, str) for key in decoded), (name, decoded)
    if decision["validationErrors"] is not None:
        messages = json.loads(decision["validationErrors"])
        assert messages and all(len(text) <= 240 for text in messages)
        assert len(decision["validationNotes"]) == len(messages)
    else:
        assert decision["validationNotes"] == []


def test_every_string_encoded_field_holds_json_of_the_contract_element_type(race):
    client, agents = race
    for query in (FEED, HISTORY):
        seen = 0
        for agent_id in agents.values():
            body = served_decisions(client, agent_id, query)
            assert body
            for decision in body:
                m.DecisionLog.model_validate(decision)
                check_string_encoded(decision)
                seen += 1
        assert seen == 6


def test_validation_errors_are_readable_messages_and_the_notes_stay_structured(race):
    client, agents = race
    for query in (FEED, HISTORY):
        check_llm_and_remote(client, agents, query)


def check_llm_and_remote(client: TestClient, agents: dict[str, int], query: str) -> None:
    latest = served_decisions(client, agents["llm"], query)[0]
    assert json.loads(latest["citedRuleIds"]) == ["R4", "R7"]
    messages = json.loads(latest["validationErrors"])
    notes = latest["validationNotes"]
    assert {n["outcome"] for n in notes} == {"dropped", "clipped", "refused"}
    by_code = {n["code"]: text for n, text in zip(notes, messages, strict=True)}
    assert by_code["bad_side"] == "BTC dropped: side must be BUY or SELL, got 'SHORT'"
    assert by_code["no_position"] == "ETH refused: cannot sell ETH: no position (no shorting)"
    clipped = [text for n, text in zip(notes, messages, strict=True) if n["outcome"] == "clipped"]
    assert clipped and all(text.startswith("BTC clipped to ") for text in clipped)
    for note in notes:
        assert set(note) == {"order", "asset", "code", "outcome", "message", "requested", "final"}
        assert isinstance(note["order"], int)
    # The remote model's HOLD order is no order: nothing to report.
    for decision in served_decisions(client, agents["remote"], query):
        assert decision["validationErrors"] is None and decision["validationNotes"] == []


def test_the_openapi_schema_types_the_fields_as_the_contract_does(race):
    client, _ = race
    schema = client.get("/api/openapi.json")
    if schema.status_code == 404:
        schema = client.get("/openapi.json")
    decision = schema.json()["components"]["schemas"]["DecisionLog"]["properties"]
    assert decision["citedRuleIds"]["type"] == "string"
    assert {t.get("type") for t in decision["validationErrors"]["anyOf"]} == {"string", "null"}
    assert decision["validationNotes"]["type"] == "array"


def test_stored_notes_of_any_vintage_are_served_as_strings():
    """Notes stored as objects become messages; a plain string note stays itself."""
    text, notes = validation_fields(
        [
            {
                "order": 0,
                "asset": "BTC",
                "code": "max_notional",
                "outcome": "clipped",
                "message": "clipped to the maximum order notional of 25000 USD",
                "requested": "5",
                "final": "0.6",
            },
            {
                "order": 2,
                "asset": None,
                "code": "bad_order_shape",
                "outcome": "dropped",
                "message": "order must be an object with asset, side and quantity, got str",
            },
            "cited_rules was a string, not a list: read as one rule",
        ]
    )
    assert json.loads(text or "") == [
        "BTC clipped to the maximum order notional of 25000 USD",
        "order 2 dropped: order must be an object with asset, side and quantity, got str",
        "cited_rules was a string, not a list: read as one rule",
    ]
    assert [n.code for n in notes] == ["max_notional", "bad_order_shape", "note"]
    assert validation_fields(None) == (None, [])
    assert validation_fields([]) == (None, [])
