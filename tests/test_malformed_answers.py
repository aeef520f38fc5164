"""An agent implementation that builds a malformed :class:`AgentAnswer` (wrong field types)
becomes a recorded fallback HOLD naming what was wrong; the cycle completes for everyone."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

import pytest
from sqlalchemy import select

from race.domain.agent import AgentAnswer
from race.domain.model import Provider
from race.store.tables import DecisionRow
from tests.factories import HOUR, seed_agent
from tests.test_engine import START, Scripted, app_with, seed_market

BUY = {"asset": "ETH", "side": "BUY", "quantity": 1}

MALFORMED = {
    "orders-int": (AgentAnswer(orders=5, reasoning="x"), "orders is int"),  # type: ignore[arg-type]
    "reasoning-none": (AgentAnswer(orders=[BUY], reasoning=None), "reasoning is NoneType"),  # type: ignore[arg-type]
    "rules-none": (
        AgentAnswer(orders=[BUY], reasoning="x", cited_rules=None),  # type: ignore[arg-type]
        "cited_rules is NoneType",
    ),
    "tokens-text": (
        AgentAnswer(orders=[BUY], reasoning="x", prompt_tokens="12"),  # type: ignore[arg-type]
        "prompt_tokens is str",
    ),
    "cost-float": (
        AgentAnswer(orders=[BUY], reasoning="x", cost_usd=0.1),  # type: ignore[arg-type]
        "cost_usd is not a finite Decimal",
    ),
    "confidence-nan": (
        AgentAnswer(orders=[BUY], reasoning="x", confidence=float("nan")),
        "confidence is not a finite number",
    ),
    "details-list": (
        AgentAnswer(orders=[BUY], reasoning="x", details=[1]),  # type: ignore[arg-type]
        "details is list",
    ),
}


@pytest.mark.parametrize("in_process", [False, True])
def test_malformed_answers_become_recorded_holds(database_url, clock, in_process):
    scripted = {
        name: Scripted(lambda c, a=answer: a, in_process=in_process)
        for name, (answer, _) in MALFORMED.items()
    }
    scripted["fine"] = Scripted(
        lambda c: AgentAnswer(orders=[BUY], reasoning="buy one", cost_usd=D("0.01"))
    )
    application = app_with(database_url, clock, scripted)
    seed_market(application, n=100)
    ids = {name: seed_agent(application, name) for name in scripted}
    ids["cash"] = seed_agent(application, "cash", Provider.MOCK, "cash")
    report = asyncio.run(application.engine.run_cycle(START + 80 * HOUR))
    assert report.status == "completed", report
    assert report.decided == len(ids)
    with application.db.read() as session:
        rows = {r.agent_id: r for r in session.scalars(select(DecisionRow))}
    for name, (_, reason) in MALFORMED.items():
        row = rows[ids[name]]
        assert row.fallback is True, name
        assert row.action == "HOLD", name
        assert "agent answer malformed" in row.fallback_reason, name
        assert reason in row.fallback_reason, (name, row.fallback_reason)
    fine = rows[ids["fine"]]
    assert fine.fallback is False and fine.action == "BUY" and fine.quantity == D(1)
    assert rows[ids["cash"]].fallback is False
    application.close()


def test_an_in_process_answer_later_than_the_timeout_is_discarded(database_url, clock):
    def slow(_):
        clock.advance(0.4)  # blocks the loop this long (on the injected clock), as a heavy
        # in-process model would
        return AgentAnswer(orders=[BUY], reasoning="late")

    scripted = {
        "slow": Scripted(slow, in_process=True),
        "quick": Scripted(lambda c: AgentAnswer(orders=[BUY], reasoning="x"), in_process=True),
    }
    application = app_with(database_url, clock, scripted, RACE_AGENT_TIMEOUT_SECONDS="0.2")
    seed_market(application, n=100)
    ids = {name: seed_agent(application, name) for name in scripted}
    report = asyncio.run(application.engine.run_cycle(START + 80 * HOUR))
    assert report.status == "completed"
    with application.db.read() as session:
        rows = {r.agent_id: r for r in session.scalars(select(DecisionRow))}
    late = rows[ids["slow"]]
    assert late.fallback is True and late.action == "HOLD"
    assert "timed out after 0.2 s" in late.fallback_reason
    assert "answer discarded" in late.fallback_reason
    assert rows[ids["quick"]].fallback is False and rows[ids["quick"]].action == "BUY"
    application.close()
