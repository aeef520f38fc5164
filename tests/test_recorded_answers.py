"""Recorded answers replayed (race/domain/recorded.py, agents/recorded.py): an LLM agent's
decisions, replayed by an agent that answers from the record, give the same rows under the
same rules, and under a doubled fee a lower equity, without one call to the provider — on
SQLite and, when configured, PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from agents.recorded import RecordedAgent
from race.bootstrap import bootstrap
from race.clock import ManualClock
from race.domain.agent import AgentSpec
from race.domain.model import Provider
from race.domain.recorded import RecordedAnswer, answer_of
from race.store.reads.recorded import recorded_answers
from race.store.tables import AgentRow, DecisionRow, EquitySnapshotRow, TradeRow
from tests.factories import HOUR, insert_candles, make_candles, seed_agent, seed_assets, wave_prices
from tests.openai_server import OpenAIServer, Recorded, Reply, completion, server_error

START = datetime(2024, 1, 1, tzinfo=UTC)
FIRST, LAST = START + 60 * HOUR, START + 95 * HOUR
MODEL = "llama-3.3-70b-versatile"


def _order(side: str, asset: str, quantity: Any) -> dict[str, Any]:
    return {"asset": asset, "side": side, "quantity": quantity}


def _say(reasoning: str | None, *orders: dict[str, Any], **more: Any) -> Reply:
    body: dict[str, Any] = {"orders": list(orders), **more}
    if reasoning is not None:
        body["reasoning"] = reasoning
    return completion(body)


FENCED = json.dumps({"reasoning": "Trim.", "orders": [_order("SELL", "BTC", 0.2)]})
SCRIPT: list[Reply] = [
    _say("Uptrend: buying.", _order("BUY", "BTC", 0.4), confidence=0.8),
    _say("Adding ETH.", _order("BUY", "ETH", 3), cited_rules=["R4"]),
    completion("not json at all"),
    _say(None, _order("BUY", "BTC", 0.1)),  # no reasoning: refused
    completion(f"```json\n{FENCED}\n```"),
    _say("Odd orders.", _order("BUY", "DOGE", 1), _order("BUY", "BTC", "NaN")),
    server_error(),
    _say("Holding."),
    _say("Big buy.", _order("BUY", "BTC", 50)),
    _say("Exit.", _order("SELL", "BTC", 100), _order("SELL", "ETH", 3)),
]


@pytest.fixture
def server():
    with OpenAIServer() as running:
        count = iter(range(10**6))

        def respond(_: Recorded) -> Reply:
            return SCRIPT[next(count) % len(SCRIPT)]

        running.default = respond
        yield running


def _app(database_url: str, server: OpenAIServer, builder: Any = None, fee: str = "0.001") -> Any:
    overrides = {
        "RACE_DATABASE_URL": database_url,
        "LLAMA_BASE_URL": server.base_url,
        "LLAMA_API_KEY": "gsk_test_recorded_0123456789",
        "LLM_MAX_RETRIES": "0",
        "RACE_FEE_RATE": fee,
    }
    return bootstrap(
        overrides=overrides, clock=ManualClock(START + 100 * HOUR), agent_builder=builder
    )


def _rows(app: Any, table: Any, agent_id: int, skip: tuple[str, ...]) -> list[dict[str, Any]]:
    with app.db.read() as session:
        order = table.cycle_time if table is DecisionRow else table.id
        query = select(table).where(table.agent_id == agent_id).order_by(order)
        return [
            {c.key: getattr(row, c.key) for c in table.__table__.columns if c.key not in skip}
            for row in session.scalars(query)
        ]


def _set_active(app: Any, agent_id: int, active: bool) -> None:
    with app.db.write() as session:
        session.get(AgentRow, agent_id).is_active = active


def _replay(app: Any) -> None:
    asyncio.run(app.engine.backfill(FIRST, LAST, timedelta(hours=1)))


def test_replayed_answers_give_the_same_rows_and_a_doubled_fee_costs_equity(database_url, server):
    app = _app(database_url, server)
    seed_assets(app)
    for symbol, base in (("BTC", 40000.0), ("ETH", 2000.0)):
        insert_candles(app, make_candles(symbol, START, wave_prices(100, base=base)))
    source = seed_agent(app, "Llama", Provider.LLAMA, model=MODEL)
    _replay(app)
    app.close()
    calls = len(server.requests)
    assert calls == 36

    def builder_for(twin: int) -> Any:
        def build(spec: AgentSpec) -> Any:
            assert spec.id == twin, "only the twin decides: the source has passed every cycle"
            with probe.db.read() as session:
                return RecordedAgent(
                    recorded_answers(session, None, source, FIRST, LAST), "agent 1"
                )

        return build

    probe = _app(database_url, server)
    twin = seed_agent(probe, "Twin", Provider.MOCK, model="cash")
    dearer = seed_agent(probe, "Dearer twin", Provider.MOCK, model="cash")
    for agent, fee in ((twin, "0.001"), (dearer, "0.002")):
        replaying = _app(database_url, server, builder_for(agent), fee=fee)
        other = dearer if agent == twin else twin
        _set_active(replaying, other, False)  # only this agent takes part
        _replay(replaying)
        _set_active(replaying, other, True)
        replaying.close()
    assert len(server.requests) == calls, "a replay of recorded answers called the provider"

    skip = ("id", "agent_id", "decision_id", "portfolio_id")
    source_rows = _rows(probe, DecisionRow, source, skip)
    assert len(source_rows) == 36
    assert sum(r["fallback"] for r in source_rows) >= 8 and any(
        r["raw_output"] for r in source_rows
    )
    assert _rows(probe, DecisionRow, twin, skip) == source_rows
    assert _rows(probe, TradeRow, twin, skip) == _rows(probe, TradeRow, source, skip)
    snapshots = _rows(probe, EquitySnapshotRow, source, skip)
    assert _rows(probe, EquitySnapshotRow, twin, skip) == snapshots
    trades = _rows(probe, TradeRow, source, skip)
    dearer_trades = _rows(probe, TradeRow, dearer, skip)
    assert len(trades) >= 6 and len(dearer_trades) == len(trades)
    assert all(d["fee"] > t["fee"] for d, t in zip(dearer_trades, trades, strict=True))
    dearer_decisions = _rows(probe, DecisionRow, dearer, skip)
    assert [d["fallback"] for d in dearer_decisions] == [d["fallback"] for d in source_rows]
    dearer_last = _rows(probe, EquitySnapshotRow, dearer, skip)[-1]["total_value"]
    assert dearer_last < snapshots[-1]["total_value"]
    probe.close()


def _recorded(**fields: Any) -> RecordedAnswer:
    base: dict[str, Any] = dict(
        cycle_time=START,
        rationale="",
        cited_rules=[],
        regime="SIDEWAYS",
        market_regime="SIDEWAYS",
        proposed_orders=[],
        fallback=False,
        fallback_reason=None,
    )
    return RecordedAnswer(**{**base, **fields})


def test_answer_of_each_kind_of_record() -> None:
    raw = json.dumps({"reasoning": "Buy.", "orders": [_order("BUY", "BTC", 1)], "confidence": 0.4})
    parsed = answer_of(_recorded(raw_output=raw, cited_rules=["R1"], cost_usd=Decimal("0.01")))
    assert parsed.orders == [_order("BUY", "BTC", 1)] and parsed.reasoning == "Buy."
    assert (parsed.confidence, parsed.cited_rules, parsed.cost_usd) == (
        0.4,
        ["R1"],
        Decimal("0.01"),
    )
    assert parsed.fallback_reason is None and parsed.regime is None
    own = answer_of(_recorded(regime="BULLISH", rationale="r", proposed_orders=[{"a": 1}]))
    assert own.regime == "BULLISH" and own.orders == [{"a": 1}] and own.reasoning == "r"
    failed = answer_of(_recorded(fallback=True, fallback_reason="agent timed out after 20 s"))
    assert failed.fallback_reason == "agent timed out after 20 s" and failed.orders == []
    judged = answer_of(
        _recorded(
            fallback=True,
            fallback_reason="orders could not be read: TypeError",
            rationale="HOLD (fallback): orders could not be read: TypeError | agent said: go",
            proposed_orders=[_order("BUY", "BTC", "1")],
        )
    )
    assert judged.fallback_reason is None and judged.reasoning == "go"
    assert judged.orders == [_order("BUY", "BTC", Decimal("1"))]  # a Decimal stored as text


def test_a_quantity_refused_as_text_stays_text_and_a_remote_body_is_not_parsed() -> None:
    note = {"order": 1, "code": "bad_quantity", "message": "quantity must be a number, got str"}
    orders = [_order("BUY", "BTC", "0.5"), _order("BUY", "ETH", "2"), _order("SELL", "BTC", "x")]
    answer = answer_of(_recorded(proposed_orders=orders, validation_errors=[note]))
    assert [o["quantity"] for o in answer.orders] == [Decimal("0.5"), "2", "x"]
    body = json.dumps({"orders": [{"assetSymbol": "BTC", "side": "BUY", "quantity": 0.5}]})
    remote = answer_of(_recorded(raw_output=body, proposed_orders=orders[:1]), parse_raw=False)
    assert remote.orders == [_order("BUY", "BTC", Decimal("0.5"))] and remote.raw_output == body
    cut = answer_of(_recorded(raw_output='{"reasoning": "cut of'))
    assert cut.fallback_reason is not None and "not valid JSON" in cut.fallback_reason


def test_a_cycle_without_a_record_holds_saying_so() -> None:
    from race.domain.agent import AgentContext

    context = AgentContext.__new__(AgentContext)
    object.__setattr__(context, "cycle_time", START)
    answer = asyncio.run(RecordedAgent({}, "race 7").decide(context))
    assert answer.fallback_reason == f"no recorded answer at {START.isoformat()} in race 7"


def _raw(**fields: Any) -> str:
    return json.dumps({"reasoning": "r", "orders": [], **fields})


@pytest.mark.parametrize(
    ("volunteered", "kept"),
    [(0.0, 0.0), (1.0, 1.0), (0.5, 0.5), (1.5, None), (-0.1, None), (True, None), ("0.5", None)],
)
def test_a_volunteered_confidence_is_kept_only_within_0_and_1(volunteered, kept) -> None:
    assert answer_of(_recorded(raw_output=_raw(confidence=volunteered))).confidence == kept


def test_the_recorded_confidence_wins_over_the_raw_one() -> None:
    assert answer_of(_recorded(raw_output=_raw(confidence=0.9), confidence=0.3)).confidence == 0.3
    assert answer_of(_recorded(confidence=0.3)).confidence == 0.3  # no raw output


def test_every_kind_of_answer_keeps_the_call_s_accounting() -> None:
    accounting = dict(prompt="p", model="m", latency_ms=5, cost_usd=Decimal("0.2"))
    for recorded in (
        _recorded(raw_output='{"reasoning": "cut', **accounting),
        _recorded(fallback=True, fallback_reason="budget", **accounting),
        _recorded(rationale="ml", cited_rules=["R2"], **accounting),
    ):
        answer = answer_of(recorded)
        assert (answer.prompt, answer.model, answer.latency_ms) == ("p", "m", 5)
        assert answer.cost_usd == Decimal("0.2")
    assert answer.cited_rules == ["R2"]


def test_a_fallback_without_a_reason_says_so() -> None:
    answer = answer_of(_recorded(fallback=True, fallback_reason=None))
    assert answer.fallback_reason == "fallback recorded without a reason"


def test_the_answer_s_orders_are_copies_of_the_record_s() -> None:
    recorded = _recorded(proposed_orders=[_order("BUY", "BTC", "1"), "not a mapping"])
    answer = answer_of(recorded)
    assert answer.orders == [_order("BUY", "BTC", Decimal("1")), "not a mapping"]
    answer.orders[0]["side"] = "SELL"
    assert recorded.proposed_orders[0] == _order("BUY", "BTC", "1")
