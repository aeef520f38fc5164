"""Build a runnable agent from its stored spec. The composition root hands
:func:`build_agent` (bound to the services agents need) to the engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents.baselines import build_baseline
from race.clock import Clock, SystemClock
from race.domain.agent import Agent, AgentSpec
from race.domain.model import Provider
from race.settings import Settings


class AgentUnavailable(RuntimeError):
    """The agent cannot run with the current settings; the message says what is missing."""


@dataclass
class AgentServices:
    """Shared, long-lived pieces agents use (clients, limiters, breakers), built once."""

    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    shared: dict[str, Any] = field(default_factory=dict)


def build_agent(spec: AgentSpec, services: AgentServices) -> Agent:
    if spec.provider is Provider.MOCK:
        return build_baseline(spec.model, spec.params)
    raise AgentUnavailable(f"provider {spec.provider.value} is not available in this build")
