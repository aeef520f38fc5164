"""Asking an agent for its decision within a deadline: the one place where an agent's
failure (an exception, a timeout, a late in-process answer, something that is not an
:class:`~race.domain.agent.AgentAnswer`) becomes a failure value — a recorded reason —
instead of an exception, so the caller always gets an :class:`Asked` back.

Agents that do I/O are awaited with :func:`asyncio.wait_for` (the event loop cancels them
at the deadline). An agent marked ``in_process`` runs on the event loop and cannot be
interrupted; with ``discard_late`` its answer is dropped all the same when it took longer
than the deadline, measured on the injected clock's ``monotonic()``, so the rule is the same
for every agent kind.

How a failure is worded is the caller's (:class:`Wording`): the engine records
:data:`AGENT_WORDING`; an ensemble words its members' abstentions its own way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from race.clock import Clock
from race.domain.agent import Agent, AgentAnswer, AgentContext


def _unchanged(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True)
class Wording:
    """The reason recorded for each way of failing. ``{timeout}`` and ``{elapsed}`` are
    seconds, ``{kind}`` the exception's class name, ``{message}`` its scrubbed text (cut to
    ``message_limit``), ``{answered}`` the type name of what came back instead of an answer;
    the whole reason is cut to ``reason_limit``."""

    timed_out: str
    late: str
    failed: str
    not_an_answer: str
    message_limit: int | None = None
    reason_limit: int | None = None

    def cut(self, reason: str) -> str:
        return reason if self.reason_limit is None else reason[: self.reason_limit]


AGENT_WORDING = Wording(
    timed_out="agent timed out after {timeout:g} s",
    late="agent timed out after {timeout:g} s (answered after {elapsed:.2f} s; answer discarded)",
    failed="agent failed: {kind}: {message}",
    not_an_answer="agent answered {answered}, not an AgentAnswer",
    message_limit=500,
)
"""How the engine records an agent that did not answer."""


@dataclass(frozen=True, slots=True)
class Asked:
    """What asking gave: the answer, or ``None`` and the recorded reason (``failure``).
    ``latency_ms`` is how long the ask took on the clock, whatever its outcome."""

    answer: AgentAnswer | None
    failure: str | None
    latency_ms: int

    @property
    def pair(self) -> tuple[AgentAnswer | None, str | None]:
        """``(answer, failure)``, as the engine's step takes them."""
        return self.answer, self.failure


async def ask_within(
    agent: Agent,
    context: AgentContext,
    *,
    seconds: float,
    clock: Clock,
    wording: Wording = AGENT_WORDING,
    scrub: Callable[[str], str] = _unchanged,
    discard_late: bool = True,
    fill_latency: bool = True,
) -> Asked:
    """Ask ``agent`` to decide on ``context`` within ``seconds`` (the timeout).

    Never raises for the agent's own failures (cancellation is passed on). ``scrub`` cleans
    an exception's text before it is recorded (e.g. redacting secrets). With
    ``fill_latency``, an answer from an agent that is not in-process and that did not say
    its own latency gets the measured one."""
    in_process = bool(getattr(agent, "in_process", False))
    monotonic = clock.monotonic
    started = monotonic()
    try:
        if in_process:
            answer = await agent.decide(context)
            took = monotonic() - started
            if discard_late and took > seconds:
                reason = wording.late.format(timeout=seconds, elapsed=took)
                return Asked(None, wording.cut(reason), int((monotonic() - started) * 1000))
        else:
            answer = await asyncio.wait_for(agent.decide(context), seconds)
    except TimeoutError:
        reason = wording.timed_out.format(timeout=seconds)
        return Asked(None, wording.cut(reason), int((monotonic() - started) * 1000))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        message = scrub(str(exc))
        if wording.message_limit is not None:
            message = message[: wording.message_limit]
        reason = wording.failed.format(kind=exc.__class__.__name__, message=message)
        return Asked(None, wording.cut(reason), int((monotonic() - started) * 1000))
    latency_ms = int((monotonic() - started) * 1000)
    if type(answer) is not AgentAnswer and not isinstance(answer, AgentAnswer):
        reason = wording.not_an_answer.format(answered=type(answer).__name__)
        return Asked(None, wording.cut(reason), latency_ms)
    if fill_latency and answer.latency_ms is None and not in_process:
        answer.latency_ms = latency_ms
    return Asked(answer, None, latency_ms)
