"""The ensemble agent: how votes combine (weights, confidence, abstentions, threshold), and
a real ensemble of LLM members (loopback provider) and a baseline through the engine."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from agents.ensemble import Vote, combine_votes, read_votes
from agents.registry import AgentServices, build_agent
from race.bootstrap import bootstrap
from race.clock import ManualClock
from race.domain.agent import AgentAnswer, AgentSpec
from race.domain.model import Provider, RiskLimits
from race.settings import load_settings
from tests.factories import HOUR, insert_candles, make_candles, seed_agent, seed_assets, wave_prices
from tests.openai_server import OpenAIServer, completion, server_error

ASSETS = ("BTC", "ETH")
START = datetime(2024, 1, 1, tzinfo=UTC)
T = START + 99 * HOUR


def vote(name, orders=(), *, weight=1.0, confidence=None, failure=None):
    answer = AgentAnswer(
        orders=[{"asset": a, "side": s, "quantity": q} for a, s, q in orders],
        reasoning=f"{name} says so",
        confidence=confidence,
        fallback_reason=failure,
    )
    return Vote(name, weight, answer, failure)


def combine(votes, threshold=0.5):
    read_votes(votes, ASSETS, RiskLimits())
    return combine_votes(votes, ASSETS, threshold)


def test_majority_buys_the_weighted_mean_quantity():
    orders, scores, confidence = combine(
        [
            vote("a", [("BTC", "BUY", 0.1)]),
            vote("b", [("BTC", "BUY", 0.3)]),
            vote("c"),  # HOLD counts as a vote for nothing
        ]
    )
    assert scores == {"BTC": pytest.approx(2 / 3, abs=1e-6), "ETH": 0.0}
    assert orders == [{"asset": "BTC", "side": "BUY", "quantity": Decimal("0.2")}]
    assert confidence == pytest.approx(2 / 3, abs=1e-6)


def test_weights_and_confidence_can_cancel_out():
    orders, scores, confidence = combine(
        [
            vote("bull", [("BTC", "BUY", 1)], weight=1, confidence=0.9),
            vote("bear", [("BTC", "SELL", 1)], weight=2, confidence=0.5),
        ]
    )
    assert scores["BTC"] == pytest.approx((0.9 - 1.0) / 3, abs=1e-6)
    assert orders == []
    assert confidence == pytest.approx(0.1 / 3, abs=1e-6)


def test_a_heavier_confident_member_carries_the_vote():
    orders, scores, _ = combine(
        [
            vote("big", [("ETH", "SELL", 2)], weight=3, confidence=1.0),
            vote("small", [("ETH", "BUY", 5)], weight=1, confidence=0.2),
        ]
    )
    assert scores["ETH"] == pytest.approx((-3 + 0.2) / 4, abs=1e-6)
    assert orders == [{"asset": "ETH", "side": "SELL", "quantity": Decimal("2")}]


def test_failed_members_abstain_instead_of_voting_hold():
    orders, scores, _ = combine(
        [vote("ok", [("BTC", "BUY", 0.5)]), vote("down", failure="provider unavailable")]
    )
    assert scores["BTC"] == 1.0
    assert orders == [{"asset": "BTC", "side": "BUY", "quantity": Decimal("0.5")}]


def test_threshold_and_per_asset_votes():
    votes = [
        vote("a", [("BTC", "BUY", 1), ("ETH", "SELL", 1)]),
        vote("b", [("BTC", "BUY", 3)]),
        vote("c", [("ETH", "BUY", 1)]),
        vote("d"),
    ]
    orders, scores, _ = combine(votes, threshold=0.5)
    assert scores == {"BTC": 0.5, "ETH": 0.0}
    assert orders == [{"asset": "BTC", "side": "BUY", "quantity": Decimal("2")}]
    orders, _, _ = combine([*votes[:3], vote("d")], threshold=0.51)
    assert orders == []


def test_bad_member_orders_are_read_by_the_core_parser_and_noted():
    votes = [vote("a", [("DOGE", "BUY", 1), ("BTC", "BUY", 0.1)]), vote("b", [("BTC", "BUY", -1)])]
    orders, scores, _ = combine(votes)
    assert scores["BTC"] == 0.5
    assert orders == [{"asset": "BTC", "side": "BUY", "quantity": Decimal("0.1")}]
    assert "not traded" in votes[0].dropped[0]
    assert "quantity must be > 0" in votes[1].dropped[0]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "param 'members' must be a non-empty list"),
        ({"members": []}, "non-empty list"),
        ({"members": [{"provider": "Skynet"}]}, "provider must be one of"),
        ({"members": [{"provider": "CustomML", "model": "ensemble"}]}, "cannot be nested"),
        ({"members": [{"provider": "Mock", "model": "cash", "weight": 0}]}, "weight must be > 0"),
        ({"members": [{"provider": "Mock", "model": "nope"}]}, "unknown baseline 'nope'"),
        (
            {"members": [{"provider": "Mock", "model": "cash", "name": "x"}] * 2},
            "unique string",
        ),
        ({"members": [{"provider": "Mock", "model": "cash"}], "treshold": 1}, "treshold"),
    ],
)
def test_bad_ensemble_config_is_refused(params, message):
    spec = AgentSpec(id=1, name="E", provider=Provider.CUSTOM_ML, model="ensemble", params=params)
    with pytest.raises(ValueError) as info:
        build_agent(spec, AgentServices(settings=load_settings()))
    assert message in str(info.value)


# ---------------------------------------------------------------- through the engine


@pytest.fixture
def server():
    with OpenAIServer() as running:
        yield running


@pytest.fixture
def ensemble_app(database_url, server):
    application = bootstrap(
        overrides={
            "RACE_DATABASE_URL": database_url,
            "LLAMA_BASE_URL": server.base_url,
            "LLAMA_API_KEY": "gsk-test-key-0001",
            "LLM_MAX_RETRIES": "0",
        },
        clock=ManualClock(T),
    )
    seed_assets(application)
    for symbol, base in (("BTC", 40000.0), ("ETH", 2000.0)):
        insert_candles(application, make_candles(symbol, START, wave_prices(100, base=base)))
    yield application
    application.close()


MEMBERS = [
    {"name": "big", "provider": "Llama", "model": "llama-3.3-70b-versatile", "weight": 2},
    {"name": "fast", "provider": "Llama", "model": "llama-3.1-8b-instant"},
    {"name": "cash", "provider": "Mock", "model": "cash"},
]


def by_model(replies):
    return lambda request: replies[request.json["model"]]


def test_ensemble_decision_keeps_every_members_vote(ensemble_app, server):
    agent = seed_agent(
        ensemble_app,
        "Committee",
        Provider.CUSTOM_ML,
        model="ensemble",
        params={"members": MEMBERS, "threshold": 0.5},
    )
    server.default = by_model(
        {
            "llama-3.3-70b-versatile": completion(
                {
                    "reasoning": "Strong uptrend.",
                    "orders": [{"asset": "BTC", "side": "BUY", "quantity": 0.2}],
                    "cited_rules": [],
                    "confidence": 0.8,
                },
                prompt_tokens=1000,
                completion_tokens=100,
            ),
            "llama-3.1-8b-instant": completion(
                {
                    "reasoning": "Agree.",
                    "orders": [{"asset": "BTC", "side": "BUY", "quantity": 0.1}],
                    "cited_rules": [],
                },
                prompt_tokens=1000,
                completion_tokens=50,
            ),
        }
    )
    report = asyncio.run(ensemble_app.engine.run_cycle(T))
    assert report.trades == 1
    from race.store.tables import DecisionRow

    with ensemble_app.db.read() as session:
        row = session.scalar(select(DecisionRow).where(DecisionRow.agent_id == agent))
    # score = (2 × 0.8 × 1 + 1 × 1 × 1 + 1 × 0) / 4 = 0.65 ≥ 0.5 → BUY
    assert (row.action, row.asset_symbol) == ("BUY", "BTC")
    assert row.quantity == Decimal("0.16153846")  # (1.6 × 0.2 + 1 × 0.1) / 2.6
    assert row.confidence == pytest.approx(0.65)
    assert row.model == "ensemble"
    members = {m["name"]: m for m in row.details["ensemble"]["members"]}
    assert members["big"]["votes"] == {"BTC": {"side": "BUY", "quantity": "0.2"}}
    assert members["big"]["confidence"] == 0.8
    assert members["fast"]["votes"]["BTC"]["side"] == "BUY"
    assert members["cash"]["votes"] == {} and not members["cash"]["abstained"]
    assert row.details["ensemble"]["scores"]["BTC"] == pytest.approx(0.65)
    assert (row.prompt_tokens, row.completion_tokens) == (2000, 150)
    # 70b: 1000 × 0.59 + 100 × 0.79; 8b: 1000 × 0.05 + 50 × 0.08 (USD per million tokens)
    assert row.cost_usd == Decimal("0.000669") + Decimal("0.000054")
    assert "=== member big ===" in row.prompt and "=== member fast ===" in row.prompt
    assert len(server.requests) == 2


def test_members_failing_abstain_and_all_failing_is_a_fallback(ensemble_app, server):
    agent = seed_agent(
        ensemble_app,
        "Fragile",
        Provider.CUSTOM_ML,
        model="ensemble",
        params={"members": MEMBERS[:2]},
    )
    server.default = server_error(500)
    asyncio.run(ensemble_app.engine.run_cycle(T))
    from race.store.tables import DecisionRow

    with ensemble_app.db.read() as session:
        row = session.scalar(select(DecisionRow).where(DecisionRow.agent_id == agent))
    assert row.fallback
    assert row.fallback_reason.startswith("every ensemble member failed — big: ")
    assert "HTTP 500" in row.fallback_reason
    assert all(m["abstained"] for m in row.details["ensemble"]["members"])
