"""Build a runnable agent from its stored spec. The composition root hands
:func:`build_agent` (bound to the services agents need) to the engine.

Providers: ``Mock`` → a baseline (model = baseline kind); ``Llama``, ``OpenAI``,
``AzureOpenAI`` → :class:`~agents.llama.LlamaAgent`; ``CustomML`` → by model:
``remote`` → :class:`~agents.remote_ml.RemoteMLAgent`, ``ensemble`` →
:class:`~agents.ensemble.EnsembleAgent`, anything else → the in-process
:class:`~agents.ml.MLAgent` (model = artifact name).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.baselines import BaselineConfigError, build_baseline
from agents.config import AgentConfigError
from race.clock import Clock, SystemClock
from race.domain.agent import Agent, AgentSpec
from race.domain.model import Provider
from race.settings import Settings

REMOTE_MODEL = "remote"
ENSEMBLE_MODEL = "ensemble"


class AgentUnavailable(RuntimeError):
    """The agent cannot run with the current settings; the message says what is missing."""


@dataclass
class AgentServices:
    """Shared, long-lived pieces agents use (clients, limiters, breakers), built once."""

    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    shared: dict[str, Any] = field(default_factory=dict)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    """Where settings named by agent params live (a remote model's ``api_key_setting``)."""


def build_agent(spec: AgentSpec, services: AgentServices) -> Agent:
    """The agent for ``spec``; :class:`AgentConfigError` (a ValueError) for bad params."""
    if spec.provider is Provider.MOCK:
        try:
            return build_baseline(spec.model, spec.params)
        except BaselineConfigError as exc:
            raise AgentConfigError(str(exc)) from None
    if spec.provider in (Provider.LLAMA, Provider.OPENAI, Provider.AZURE_OPENAI):
        from agents.llama import LlamaAgent

        return LlamaAgent(spec, services.settings, services.clock, services.shared)
    if spec.provider is Provider.CUSTOM_ML:
        kind = (spec.model or "").strip().lower()
        if kind == REMOTE_MODEL:
            from agents.remote_ml import RemoteMLAgent

            return RemoteMLAgent(
                spec, services.settings, services.clock, services.shared, services.environ
            )
        if kind == ENSEMBLE_MODEL:
            from agents.ensemble import EnsembleAgent

            return EnsembleAgent(spec, services, build_agent)
        from agents.ml import MLAgent

        return MLAgent(spec, services.settings, services.shared)
    raise AgentUnavailable(f"provider {spec.provider.value} is not available in this build")


def configuration_notes(
    spec: AgentSpec, settings: Settings, environ: Mapping[str, str] | None = None
) -> list[str]:
    """What is missing for ``spec`` to actually decide (it would HOLD with the reason). For
    an ensemble, also what each member misses (that member abstains until it is fixed)."""
    environ = os.environ if environ is None else environ
    notes = [f"{gap}: the agent will HOLD until then" for gap in _gaps(spec, settings, environ)]
    if spec.provider is Provider.CUSTOM_ML and (spec.model or "").strip().lower() == (
        ENSEMBLE_MODEL
    ):
        from agents.ensemble import EnsembleAgent

        services = AgentServices(settings=settings, environ=environ)
        try:
            ensemble = EnsembleAgent(spec, services, build_agent)
        except ValueError:
            return notes  # refused when the agent is built, with the reason
        for member in ensemble.members:
            for gap in _gaps(member.spec, settings, environ):
                notes.append(f"ensemble member {member.name!r}: {gap}: it abstains until then")
    return notes


def _gaps(spec: AgentSpec, settings: Settings, environ: Mapping[str, str]) -> list[str]:
    from agents.providers import PROVIDER_ENDPOINT, endpoint

    gaps: list[str] = []
    kind = (spec.model or "").strip().lower()
    key = PROVIDER_ENDPOINT.get(spec.provider)
    if key is not None:
        missing = endpoint(settings, key).missing
        if missing:
            gaps.append(missing)
    elif spec.provider is Provider.CUSTOM_ML and kind == REMOTE_MODEL:
        from agents.remote_ml import key_setting_param

        try:
            name = key_setting_param(spec.params)
        except ValueError:
            name = None  # refused when the agent is built, with the reason
        if name is not None and not (environ.get(name) or "").strip():
            gaps.append(f"{name} is not set (named by param 'api_key_setting')")
    elif spec.provider is Provider.CUSTOM_ML and kind != ENSEMBLE_MODEL:
        from agents.ml import DEFAULT_MODEL_NAME, ArtifactStore

        store = ArtifactStore(settings.ml_artifact_dir, spec.model or DEFAULT_MODEL_NAME)
        if not store.list():
            gaps.append(
                f"no trained model in {store.directory} (run `python -m race ml train --until ISO`)"
            )
    return gaps
