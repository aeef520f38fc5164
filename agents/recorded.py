"""An agent that answers from a race's record instead of calling anyone: what a what-if
replay asks in place of an LLM, a remote model or any agent whose answers cannot be
recomputed (see :mod:`race.domain.recorded`). It never does I/O, so it runs in process."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from race.domain.agent import AgentAnswer, AgentContext
from race.domain.model import Provider
from race.domain.recorded import RecordedAnswer, answer_of

LANGUAGE_MODELS = frozenset({Provider.LLAMA, Provider.OPENAI, Provider.AZURE_OPENAI})
"""The providers whose raw output is a language model's answer (parsed again)."""


def recorded_agent(
    provider: Provider, answers: Mapping[datetime, RecordedAnswer], source: str
) -> RecordedAgent:
    """The recorded agent for an agent of ``provider``."""
    return RecordedAgent(answers, source, parse_raw=provider in LANGUAGE_MODELS)


class RecordedAgent:
    """Answers at each cycle what was recorded at that cycle; at a cycle without a record it
    holds, saying so (a what-if replays the source's cycles, so that is an agent that had
    not joined yet or was skipped)."""

    in_process = True

    def __init__(
        self, answers: Mapping[datetime, RecordedAnswer], source: str, *, parse_raw: bool = True
    ) -> None:
        self.answers = answers
        self.source = source
        """Where the answers come from, as the fallback reason names it (e.g. "race 3")."""
        self.parse_raw = parse_raw
        """Whether a raw output is a language model's answer (see :func:`answer_of`)."""

    async def decide(self, context: AgentContext) -> AgentAnswer:
        recorded = self.answers.get(context.cycle_time)
        if recorded is None:
            return AgentAnswer.fallback(
                f"no recorded answer at {context.cycle_time.isoformat()} in {self.source}"
            )
        return answer_of(recorded, parse_raw=self.parse_raw)
