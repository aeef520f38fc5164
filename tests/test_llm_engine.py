"""LLM agents through the real engine (``app.engine.run_cycle``) against a loopback
provider, asserting what lands in SQL — on SQLite and, when configured, PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from race.bootstrap import bootstrap
from race.clock import ManualClock
from race.domain.model import Provider
from race.store.tables import DecisionRow, TradeRow
from tests.factories import HOUR, insert_candles, make_candles, seed_agent, seed_assets, wave_prices
from tests.openai_server import OpenAIServer, completion, server_error

START = datetime(2024, 1, 1, tzinfo=UTC)
KEY = "gsk_live_SECRET_1a2b3c4d5e6f"
BUY = {
    "reasoning": "Uptrend with RSI below 70: buying BTC.",
    "orders": [{"asset": "BTC", "side": "BUY", "quantity": 0.2}],
    "cited_rules": ["R4"],
}


@pytest.fixture
def server():
    with OpenAIServer() as running:
        yield running


@pytest.fixture
def llm_app(database_url, server):
    clock = ManualClock(START + 100 * HOUR)
    application = bootstrap(
        overrides={
            "RACE_DATABASE_URL": database_url,
            "LLAMA_BASE_URL": server.base_url,
            "LLAMA_API_KEY": KEY,
            "LLM_MAX_RETRIES": "1",
        },
        clock=clock,
    )
    seed_assets(application)
    for symbol, base in (("BTC", 40000.0), ("ETH", 2000.0)):
        insert_candles(application, make_candles(symbol, START, wave_prices(100, base=base)))
    yield application
    application.close()


def decisions(app, agent_id=None):
    with app.db.read() as session:
        query = select(DecisionRow).order_by(DecisionRow.cycle_time, DecisionRow.agent_id)
        if agent_id is not None:
            query = query.where(DecisionRow.agent_id == agent_id)
        rows = list(session.scalars(query))
        session.expunge_all()
        return rows


def by_model(replies):
    """Answer by the requested model: several agents share one provider in a cycle."""

    def respond(request):
        return replies[request.json["model"]]

    return respond


def test_cycle_stores_prompt_raw_output_tokens_cost_and_model(llm_app, server):
    good = seed_agent(llm_app, "Llama Good", Provider.LLAMA, model="llama-3.3-70b-versatile")
    down = seed_agent(llm_app, "Llama Down", Provider.LLAMA, model="llama-3.1-8b-instant")
    server.default = by_model(
        {
            "llama-3.3-70b-versatile": completion(BUY, prompt_tokens=1500, completion_tokens=120),
            "llama-3.1-8b-instant": server_error(503),
        }
    )
    cycle_time = START + 99 * HOUR
    report = asyncio.run(llm_app.engine.run_cycle(cycle_time))
    assert report.decided == 2
    assert report.fallbacks == 1
    assert report.trades == 1

    [row] = decisions(llm_app, good)
    assert row.action == "BUY" and row.asset_symbol == "BTC"
    assert row.quantity == Decimal("0.2")
    assert not row.fallback and row.fallback_reason is None
    assert row.rationale == BUY["reasoning"]
    assert row.cited_rules == ["R4"]
    assert json.loads(row.raw_output) == BUY
    assert row.prompt.startswith("[system]")
    assert "Decision time: 2024-01-05T03:00:00+00:00" in row.prompt
    assert row.model == "llama-3.3-70b-versatile"
    assert (row.prompt_tokens, row.completion_tokens) == (1500, 120)
    assert row.cost_usd == Decimal("0.0009798")  # (1500 × 0.59 + 120 × 0.79) per million
    assert row.latency_ms is not None
    assert row.details["provider"] == "Llama"
    with llm_app.db.read() as session:
        trade = session.scalar(select(TradeRow).where(TradeRow.agent_id == good))
    assert trade is not None and trade.quantity == Decimal("0.2")

    [failed] = decisions(llm_app, down)
    assert failed.fallback and failed.action == "HOLD"
    assert "HTTP 503" in failed.fallback_reason
    assert "after 2 attempts" in failed.fallback_reason
    assert failed.prompt.startswith("[system]")  # the audit shows what was asked
    assert failed.model == "llama-3.1-8b-instant"
    assert failed.cost_usd is None

    for stored in decisions(llm_app):
        text = json.dumps(
            {c.name: str(getattr(stored, c.name)) for c in DecisionRow.__table__.columns}
        )
        assert KEY not in text


def test_bad_output_and_bad_orders_are_recorded_with_reasons(llm_app, server):
    junk = seed_agent(llm_app, "Junk", Provider.LLAMA, model="llama-3.3-70b-versatile")
    mixed = seed_agent(llm_app, "Mixed", Provider.LLAMA, model="llama-3.1-8b-instant")
    server.default = by_model(
        {
            "llama-3.3-70b-versatile": completion("Sure! I'd buy BTC here."),
            "llama-3.1-8b-instant": completion(
                {
                    "reasoning": "Two good, three bad.",
                    "orders": [
                        {"asset": "DOGE", "side": "BUY", "quantity": 5},
                        {"asset": "BTC", "side": "BUY", "quantity": 0.1},
                        {"asset": "ETH", "side": "HODL", "quantity": 1},
                        {"asset": "ETH", "side": "BUY", "quantity": -2},
                        {"asset": "ETH", "side": "BUY", "quantity": 1},
                    ],
                    "cited_rules": [],
                }
            ),
        }
    )
    asyncio.run(llm_app.engine.run_cycle(START + 99 * HOUR))
    [bad] = decisions(llm_app, junk)
    assert bad.fallback and "not valid JSON" in bad.fallback_reason
    assert bad.raw_output == "Sure! I'd buy BTC here."
    assert bad.prompt_tokens == 1187 and bad.cost_usd is not None
    [row] = decisions(llm_app, mixed)
    assert not row.fallback
    assert not row.was_validated
    codes = [(e["order"], e["code"]) for e in row.validation_errors]
    assert codes == [(0, "unknown_asset"), (2, "bad_side"), (3, "non_positive_quantity")]
    with llm_app.db.read() as session:
        trades = list(session.scalars(select(TradeRow).where(TradeRow.agent_id == mixed)))
    assert sorted(t.quantity for t in trades) == [Decimal("0.1"), Decimal("1")]


def worst_case_usd(prompt_chars: int, max_tokens: int = 500) -> Decimal:
    """The most a llama-3.3-70b-versatile call may cost (0.59 / 0.79 USD per million):
    ⌈prompt chars / 4⌉ tokens in, max_tokens out."""
    return (-(-prompt_chars // 4) * Decimal("0.59") + max_tokens * Decimal("0.79")) / 10**6


def test_daily_budget_exhausts_then_resets_at_the_utc_day_boundary(llm_app, server):
    agent = seed_agent(
        llm_app,
        "Budgeted",
        Provider.LLAMA,
        model="llama-3.3-70b-versatile",
        params={"daily_budget_usd": 0.0015},
    )
    server.default = completion(
        {"reasoning": "Holding.", "orders": [], "cited_rules": []},
        prompt_tokens=2000,
        completion_tokens=100,
    )  # each call costs 0.001259 USD
    late = datetime(2024, 1, 4, 21, tzinfo=UTC)
    times = [late, late + HOUR, late + 2 * HOUR, late + 3 * HOUR, late + 4 * HOUR]
    for cycle_time in times:  # 21:00, 22:00, 23:00, then 00:00 and 01:00 of Jan 5
        asyncio.run(llm_app.engine.run_cycle(cycle_time))
    rows = decisions(llm_app, agent)
    assert [r.cycle_time for r in rows] == times
    # A second call the same day could take the spend over 0.0015 USD (0.001259 spent + a
    # worst case above 0.000241): refused before it is made, so a day never overshoots.
    assert [r.fallback for r in rows] == [False, True, True, False, True]
    worst = worst_case_usd(rows[0].details["promptChars"])
    assert worst <= Decimal("0.0015") < Decimal("0.001259") + worst
    for refused in (rows[1], rows[2], rows[4]):
        assert refused.fallback_reason.startswith(
            "budget exhausted: spent 0.001259 of 0.0015 USD today (UTC) and the next call "
            "may cost up to "
        )
        assert refused.cost_usd is None
    assert "resumes 2024-01-05T00:00:00+00:00" in rows[1].fallback_reason
    assert "resumes 2024-01-06T00:00:00+00:00" in rows[4].fallback_reason
    assert [r.cost_usd for r in rows] == [
        Decimal("0.001259"),
        None,
        None,
        Decimal("0.001259"),
        None,
    ]
    assert len(server.requests) == 2  # no call that could overshoot was made


def test_answers_without_usage_are_charged_an_estimate_that_counts_against_the_budget(
    llm_app, server
):
    agent = seed_agent(
        llm_app,
        "No usage",
        Provider.LLAMA,
        model="llama-3.3-70b-versatile",
        params={"daily_budget_usd": 0.0015},
    )
    content = {"reasoning": "Holding.", "orders": [], "cited_rules": []}
    server.default = completion(content, usage=False)
    first = START + 99 * HOUR
    for cycle_time in (first, first + HOUR):
        asyncio.run(llm_app.engine.run_cycle(cycle_time))
    rows = decisions(llm_app, agent)
    chars = rows[0].details["promptChars"]
    prompt_tokens, completion_tokens = -(-chars // 4), -(-len(json.dumps(content)) // 4)
    estimate = (prompt_tokens * Decimal("0.59") + completion_tokens * Decimal("0.79")) / 10**6
    assert not rows[0].fallback
    assert (rows[0].prompt_tokens, rows[0].completion_tokens) == (prompt_tokens, completion_tokens)
    assert rows[0].cost_usd == estimate
    assert rows[0].details["usageEstimated"] == ["prompt", "completion"]
    # The estimate was spent: the second call's worst case no longer fits in the budget.
    assert worst_case_usd(chars) <= Decimal("0.0015") < estimate + worst_case_usd(chars)
    assert rows[1].fallback
    assert rows[1].fallback_reason.startswith(
        f"budget exhausted: spent {estimate.normalize():f} of 0.0015 USD today (UTC)"
    )
    assert len(server.requests) == 1


def test_backfill_with_an_llm_agent_uses_the_same_path(llm_app, server):
    agent = seed_agent(llm_app, "Replayed", Provider.LLAMA, model="llama-3.3-70b-versatile")
    server.default = completion(BUY)
    report = asyncio.run(
        llm_app.engine.backfill(START + 95 * HOUR, START + 99 * HOUR, timedelta(hours=1))
    )
    assert report.decisions == 5
    rows = decisions(llm_app, agent)
    assert len(rows) == 5
    assert all(r.prompt and r.cost_usd for r in rows)
    assert len(server.requests) == 5
