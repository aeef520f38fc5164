"""Hostile LLM answers through a real cycle (loopback OpenAI-compatible server, SQLite and
PostgreSQL): NaN/±Infinity quantities, NUL characters, absurd token counts, the provider
key echoed in every field, 1 MB strings, wrong types. Each ends as a recorded HOLD (or a
clipped order) with its reason, every other agent decides, the cycle completes, and the key
appears nowhere in the database nor in any API answer (issue 10)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from race.api import create_api
from race.bootstrap import App, bootstrap
from race.clock import ManualClock
from race.domain.model import Provider
from race.domain.sanitize import MAX_COUNT
from race.store.tables import AgentStatsRow, Base, CycleRow, DecisionRow
from tests.factories import (
    HOUR,
    insert_candles,
    live_key,
    make_candles,
    seed_agent,
    seed_assets,
    wave_prices,
)
from tests.openai_server import OpenAIServer, Reply, completion, completion_body

START = datetime(2024, 1, 1, tzinfo=UTC)
KEY = "gsk_live_HOSTILE_9f8e7d6c5b4a"
ESCAPED_KEY = "".join(f"\\u{ord(c):04x}" for c in KEY)
BUY = '{"asset": "BTC", "side": "BUY", "quantity": 0.1}'
MEGA = "x" * 1_000_000


def raw(text: str, **kwargs: Any) -> Reply:
    """A completion whose content is ``text`` exactly (it need not be valid JSON)."""
    return completion(text, **kwargs)


def answer(orders: str, reasoning: str = '"hostile"', extra: str = "") -> str:
    return f'{{"reasoning": {reasoning}, "orders": [{orders}]{extra}}}'


# name -> (reply, what the stored decision must say)
CASES: dict[str, tuple[Reply, str]] = {
    "nan-quantity": (
        raw(answer('{"asset": "BTC", "side": "BUY", "quantity": NaN}')),
        "must be finite",
    ),
    "inf-quantity": (
        raw(answer('{"asset": "BTC", "side": "BUY", "quantity": Infinity}')),
        "must be finite",
    ),
    "minus-inf-quantity": (
        raw(answer('{"asset": "ETH", "side": "SELL", "quantity": -Infinity}')),
        "must be finite",
    ),
    "nan-confidence": (
        raw(answer(BUY, extra=', "confidence": NaN, "note": [NaN, Infinity]')),
        "non-JSON numbers",
    ),
    "nul-reasoning": (raw(answer(BUY, reasoning='"hold\\u0000 me\\u0001"')), "control"),
    "nul-asset": (raw(answer('{"asset": "BT\\u0000C", "side": "BUY", "quantity": 1}')), "BTC"),
    "tokens-huge": (
        Reply(body=completion_body(answer(BUY), prompt_tokens=10**12, completion_tokens=10**13)),
        "clamped",
    ),
    "tokens-negative": (
        Reply(body=completion_body(answer(BUY), prompt_tokens=-5, completion_tokens=-(10**12))),
        "clamped",
    ),
    "key-everywhere": (
        Reply(
            body=completion_body(
                answer(
                    f'{{"asset": "{KEY}", "side": "{KEY}", "quantity": 1, "{KEY}": "{KEY}"}}',
                    reasoning=f'"my key is {KEY} and {ESCAPED_KEY}"',
                    extra=f', "cited_rules": ["{KEY}"], "confidence": 0.5, "k": "{KEY}"',
                ),
                model=KEY,
            )
        ),
        "not traded",
    ),
    "key-escaped-only": (
        raw(answer('{"asset": "' + ESCAPED_KEY + '", "side": "BUY", "quantity": 1}')),
        "not traded",
    ),
    "mega-strings": (
        raw(
            answer(
                f'{{"asset": "{MEGA}", "side": "BUY", "quantity": 1}}',
                reasoning=f'"{MEGA}"',
                extra=f', "cited_rules": ["{MEGA}"]',
            )
        ),
        "not traded",
    ),
    "wrong-types": (
        raw(answer('{"asset": 7, "side": ["BUY"], "quantity": "lots"}, 5, null, "BUY BTC"')),
        "",
    ),
    "orders-not-a-list": (raw('{"reasoning": "r", "orders": {"BTC": NaN}}'), "must be a list"),
    "reasoning-number": (raw('{"reasoning": NaN, "orders": []}'), "schema"),
    "not-json": (raw("\u0000\u0000NaN" + MEGA[:2000]), "not valid JSON"),
}


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as running:
        yield running


@pytest.fixture
def hostile_app(database_url: str, server: OpenAIServer) -> Iterator[App]:
    clock = ManualClock(START + 100 * HOUR)
    application = bootstrap(
        overrides={
            "RACE_DATABASE_URL": database_url,
            "LLAMA_BASE_URL": server.base_url,
            "LLAMA_API_KEY": KEY,
            "LLM_MAX_RETRIES": "0",
            "RACE_AGENT_CONCURRENCY": "8",
        },
        clock=clock,
    )
    seed_assets(application)
    for symbol, base in (("BTC", 40000.0), ("ETH", 2000.0)):
        insert_candles(application, make_candles(symbol, START, wave_prices(100, base=base)))
    yield application
    application.close()


def dump(app: App) -> str:
    parts = []
    with app.db.read() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)):
                parts.append(json.dumps(dict(row._mapping), default=str))
    return "\n".join(parts)


def key_forms() -> list[str]:
    return [KEY, ESCAPED_KEY, KEY.lower(), KEY[:20]]


def test_hostile_answers_end_as_recorded_holds_and_leak_nothing(hostile_app, server):
    app = hostile_app
    ids = {name: seed_agent(app, name, Provider.LLAMA, model=f"m-{name}") for name in CASES}
    ids["good"] = seed_agent(app, "good", Provider.LLAMA, model="m-good")
    ids["cash"] = seed_agent(app, "cash", Provider.MOCK, "cash")
    replies = {f"m-{name}": reply for name, (reply, _) in CASES.items()}
    replies["m-good"] = raw(answer(BUY, reasoning='"a fine buy"'))
    server.default = lambda request: replies[request.json["model"]]

    cycle_time = START + 99 * HOUR
    report = asyncio.run(app.engine.run_cycle(cycle_time))
    assert report.status == "completed", report
    assert report.decided == len(ids), report
    assert not report.errors
    with app.db.read() as session:
        rows = {r.agent_id: r for r in session.scalars(select(DecisionRow))}
        cycle = session.get(CycleRow, live_key(session, cycle_time))
        stats = {s.agent_id: s for s in session.scalars(select(AgentStatsRow))}
    assert cycle is not None and cycle.status == "completed"
    assert cycle.decisions == len(ids)
    good = rows[ids["good"]]
    assert good.action == "BUY" and good.asset_symbol == "BTC" and not good.fallback
    assert rows[ids["cash"]].fallback is False

    for name, (_, expected) in CASES.items():
        row = rows[ids[name]]
        said = " ".join(
            [
                row.rationale,
                row.fallback_reason or "",
                json.dumps(row.validation_errors),
                json.dumps(row.details),
            ]
        )
        if name == "nul-asset":
            # The NUL is removed from the asset... and the order is refused with the reason.
            assert row.action == "HOLD" and row.validation_errors, name
        elif name in ("nan-confidence", "nul-reasoning"):
            # The order is fine; the non-finite confidence is dropped, the NUL removed, and
            # that is noted.
            assert row.action == "BUY" and row.confidence is None, name
        elif name.startswith("tokens-"):
            # A valid order with absurd usage: the order stands, the counts are clamped.
            assert row.action == "BUY", name
            assert 0 <= row.prompt_tokens <= MAX_COUNT and 0 <= row.completion_tokens <= MAX_COUNT
            assert row.cost_usd is None or Decimal(0) <= row.cost_usd <= Decimal(10**6)
        else:
            assert row.action == "HOLD", (name, row.action)
            assert row.fallback or row.validation_errors, name
            assert not row.was_validated, name
        assert expected in said, (name, said[:500])
        for text in (row.rationale, row.raw_output or "", row.fallback_reason or ""):
            assert "\x00" not in text, name
        assert len(row.rationale) <= 8000 and len(row.raw_output or "") <= 64_000, name

    huge = rows[ids["tokens-huge"]]
    assert (huge.prompt_tokens, huge.completion_tokens) == (MAX_COUNT, MAX_COUNT)
    negative = rows[ids["tokens-negative"]]
    assert (negative.prompt_tokens, negative.completion_tokens) == (0, 0)
    assert stats[ids["tokens-huge"]].prompt_tokens == MAX_COUNT
    assert stats[ids["tokens-negative"]].completion_tokens == 0
    nan = rows[ids["nan-quantity"]]
    assert nan.validation_errors[0]["code"] == "bad_quantity"
    assert "NaN" not in json.dumps(nan.proposed_orders)
    mega = rows[ids["mega-strings"]]
    assert "truncated" in mega.raw_output
    assert "[redacted:LLAMA_API_KEY]" in rows[ids["key-everywhere"]].rationale

    # The key: nowhere in the database, nowhere in any API answer.
    stored = dump(app)
    client = TestClient(create_api(app))
    bodies = [client.get(f"/api/agents/{agent}/decisions").text for agent in ids.values()]
    bodies += [client.get(f"/api/agents/{agent}").text for agent in ids.values()]
    bodies += [client.get(url).text for url in ("/api/leaderboard", "/api/agents", "/api/health")]
    assert "[redacted:LLAMA_API_KEY]" in "".join(bodies)
    for form in key_forms():
        assert form not in stored, form
        for body in bodies:
            assert form not in body, form
