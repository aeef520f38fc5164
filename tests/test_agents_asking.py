"""agents.asking: one ask with a deadline, whose every failure is a recorded reason."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from agents.asking import AGENT_WORDING, Asked, Wording, ask_within
from agents.ensemble import MEMBER_WORDING
from race.clock import ManualClock
from race.domain.agent import AgentAnswer, AgentContext

CONTEXT = cast(AgentContext, object())
"""The agents here never read their context; asking only passes it on."""


class Fake:
    """An agent whose ``decide`` runs ``behaviour`` (and records the context it got)."""

    def __init__(
        self, behaviour: Callable[[AgentContext], Awaitable[Any]], *, in_process: bool
    ) -> None:
        self.behaviour = behaviour
        self.in_process = in_process
        self.seen: list[AgentContext] = []

    async def decide(self, context: AgentContext) -> Any:
        self.seen.append(context)
        return await self.behaviour(context)


def clock() -> ManualClock:
    return ManualClock(datetime(2024, 1, 1, tzinfo=UTC))


def ask(agent: Fake, manual: ManualClock, seconds: float = 2.0, **options: Any) -> Asked:
    return asyncio.run(ask_within(agent, CONTEXT, seconds=seconds, clock=manual, **options))


def taking(manual: ManualClock, seconds: float, result: Any) -> Callable[..., Awaitable[Any]]:
    """A decision that takes ``seconds`` on the fake clock, then returns ``result``."""

    async def behaviour(_: AgentContext) -> Any:
        manual.advance(seconds)
        return result

    return behaviour


@pytest.mark.parametrize("in_process", [False, True])
def test_an_answer_in_time_is_returned_with_its_latency_on_the_clock(in_process: bool) -> None:
    manual = clock()
    answer = AgentAnswer(orders=[], reasoning="fine")
    agent = Fake(taking(manual, 1.5, answer), in_process=in_process)
    asked = ask(agent, manual)
    assert asked.answer is answer and asked.failure is None
    assert asked.pair == (answer, None)
    assert asked.latency_ms == 1500
    assert agent.seen == [CONTEXT]
    # the measured latency is filled in for agents doing I/O only (in-process agents
    # report their own, or none)
    assert answer.latency_ms == (None if in_process else 1500)


def test_an_agents_own_latency_is_kept() -> None:
    manual = clock()
    answer = AgentAnswer(orders=[], reasoning="fine", latency_ms=7)
    asked = ask(Fake(taking(manual, 1.0, answer), in_process=False), manual)
    assert asked.answer is answer and answer.latency_ms == 7 and asked.latency_ms == 1000


def test_fill_latency_off_leaves_the_answer_as_it_came() -> None:
    manual = clock()
    answer = AgentAnswer(orders=[], reasoning="fine")
    asked = ask(Fake(taking(manual, 1.0, answer), in_process=False), manual, fill_latency=False)
    assert asked.answer is answer and answer.latency_ms is None


def test_an_in_process_answer_later_than_the_deadline_on_the_clock_is_discarded() -> None:
    manual = clock()
    agent = Fake(taking(manual, 2.5, AgentAnswer(reasoning="late")), in_process=True)
    asked = ask(agent, manual, seconds=2.0)
    assert asked.answer is None
    assert asked.failure == ("agent timed out after 2 s (answered after 2.50 s; answer discarded)")
    assert asked.latency_ms == 2500


def test_an_in_process_answer_exactly_at_the_deadline_is_kept() -> None:
    manual = clock()
    answer = AgentAnswer(reasoning="just in time")
    asked = ask(Fake(taking(manual, 2.0, answer), in_process=True), manual, seconds=2.0)
    assert asked.answer is answer and asked.failure is None


def test_a_late_in_process_answer_is_kept_when_lateness_is_not_judged() -> None:
    manual = clock()
    answer = AgentAnswer(reasoning="late but wanted")
    agent = Fake(taking(manual, 9.0, answer), in_process=True)
    asked = ask(agent, manual, seconds=2.0, discard_late=False)
    assert asked.answer is answer and asked.failure is None


def test_an_agent_doing_io_is_cancelled_at_the_deadline() -> None:
    cancelled: list[bool] = []

    async def never(_: AgentContext) -> AgentAnswer:
        try:
            await asyncio.Event().wait()  # no answer, ever
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        raise AssertionError("unreachable")

    asked = ask(Fake(never, in_process=False), clock(), seconds=0.01)
    assert asked.answer is None
    assert asked.failure == "agent timed out after 0.01 s"
    assert cancelled == [True]


def test_a_failure_becomes_its_scrubbed_reason_cut_to_the_message_limit() -> None:
    async def boom(_: AgentContext) -> AgentAnswer:
        raise RuntimeError("key sk-SECRET rejected " + "x" * 600)

    asked = ask(
        Fake(boom, in_process=False),
        clock(),
        scrub=lambda text: text.replace("sk-SECRET", "[redacted]"),
    )
    assert asked.answer is None
    assert asked.failure is not None
    assert asked.failure.startswith("agent failed: RuntimeError: key [redacted] rejected xxx")
    assert "sk-SECRET" not in asked.failure
    prefix = len("agent failed: RuntimeError: ")
    assert len(asked.failure) == prefix + AGENT_WORDING.message_limit  # type: ignore[operator]


def test_something_else_than_an_answer_is_a_failure() -> None:
    async def garbage(_: AgentContext) -> dict[str, str]:
        return {"action": "BUY"}

    asked = ask(Fake(garbage, in_process=True), clock())
    assert asked.answer is None
    assert asked.failure == "agent answered dict, not an AgentAnswer"


def test_cancellation_is_passed_on_not_recorded() -> None:
    async def cancelled(_: AgentContext) -> AgentAnswer:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        ask(Fake(cancelled, in_process=False), clock())


def test_a_callers_wording_and_reason_limit() -> None:
    async def boom(_: AgentContext) -> AgentAnswer:
        raise ValueError("y" * 400)

    asked = ask(Fake(boom, in_process=False), clock(), wording=MEMBER_WORDING)
    assert asked.failure == ("ValueError: " + "y" * 400)[:300]

    async def never(_: AgentContext) -> AgentAnswer:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    custom = Wording(
        timed_out="slow ({timeout:g})",
        late="late",
        failed="bad",
        not_an_answer="odd {answered}",
    )
    assert ask(Fake(never, in_process=False), clock(), 0.01, wording=custom).failure == (
        "slow (0.01)"
    )
