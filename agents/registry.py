"""The agent kinds: the one table (:data:`KINDS`) that says which kinds of agent exist, how
each is built from its stored spec (building is also how its params are validated), what it
still needs from the settings, its default model and whether it calls an outside service.
The CLI, the demo and the API read it; the composition root hands :func:`build_agent`
(bound to the services agents need) to the engine.

A spec's kind is chosen by its provider and model (:func:`kind_of`): ``Mock`` → a baseline
(model = baseline kind); ``Llama``, ``OpenAI``, ``AzureOpenAI`` →
:class:`~agents.llama.LlamaAgent`; ``CustomML`` → by model: ``remote`` →
:class:`~agents.remote_ml.RemoteMLAgent`, ``ensemble`` →
:class:`~agents.ensemble.EnsembleAgent`, anything else → the in-process
:class:`~agents.ml.MLAgent` (model = artifact name).

The heavy modules (HTTP clients, scikit-learn) are imported by their factory, when an agent
of that kind is first built.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from agents import ensemble
from agents.baselines import BASELINES, BaselineConfigError, build_baseline
from agents.config import AgentConfigError
from agents.services import AgentServices
from race.domain.agent import Agent, AgentSpec
from race.domain.model import Provider
from race.settings import Settings

__all__ = [
    "ENSEMBLE_MODEL",
    "KINDS",
    "PROVIDER_NAMES",
    "REMOTE_MODEL",
    "AgentKind",
    "AgentServices",
    "AgentUnavailable",
    "build_agent",
    "configuration_notes",
    "default_model",
    "kind_of",
    "model_help",
]

REMOTE_MODEL = "remote"
ENSEMBLE_MODEL = ensemble.MODEL
PROVIDER_NAMES: tuple[str, ...] = tuple(p.value for p in Provider)
"""Every provider's name, as stored and as the API's ``modelType``."""

Gaps = Callable[[AgentSpec, Settings, Mapping[str, str]], list[str]]


class AgentUnavailable(RuntimeError):
    """The agent cannot run with the current settings; the message says what is missing."""


@dataclass(frozen=True, slots=True)
class AgentKind:
    """One kind of agent."""

    name: str
    provider: Provider
    model: str | None
    """The model name that selects this kind among its provider's; ``None``: any other."""
    model_help: str
    """What ``--model`` means for this kind."""
    build: Callable[[AgentSpec, AgentServices], Agent]
    """The agent for a spec; AgentConfigError (a ValueError) for bad params or model."""
    gaps: Gaps
    """What is missing from the settings for the agent to decide (it HOLDs until then)."""
    default_model: Callable[[Settings], str | None]
    calls_provider: bool
    """Whether deciding may reach an outside service (paid API, remote model): such agents
    are left out of an offline replay unless asked for."""
    model_choices: tuple[str, ...] = ()
    """When not empty, the model must be one of these (and has no default)."""


def _no_gaps(spec: AgentSpec, settings: Settings, environ: Mapping[str, str]) -> list[str]:
    return []


def _no_default(settings: Settings) -> str | None:
    return None


def _baseline(spec: AgentSpec, services: AgentServices) -> Agent:
    try:
        return build_baseline(spec.model, spec.params)
    except BaselineConfigError as exc:
        raise AgentConfigError(str(exc)) from None


def _llm(spec: AgentSpec, services: AgentServices) -> Agent:
    from agents.llama import LlamaAgent

    return LlamaAgent(spec, services.settings, services.clock, services.shared)


def _llm_gaps(spec: AgentSpec, settings: Settings, environ: Mapping[str, str]) -> list[str]:
    from agents.providers import PROVIDER_ENDPOINT, endpoint

    missing = endpoint(settings, PROVIDER_ENDPOINT[spec.provider]).missing
    return [missing] if missing else []


def _remote_ml(spec: AgentSpec, services: AgentServices) -> Agent:
    from agents.remote_ml import RemoteMLAgent

    return RemoteMLAgent(spec, services.settings, services.clock, services.shared, services.environ)


def _remote_ml_gaps(spec: AgentSpec, settings: Settings, environ: Mapping[str, str]) -> list[str]:
    from agents.remote_ml import key_setting_param

    try:
        name = key_setting_param(spec.params)
    except ValueError:
        return []  # refused when the agent is built, with the reason
    if name is not None and not (environ.get(name) or "").strip():
        return [f"{name} is not set (named by param 'api_key_setting')"]
    return []


def _ensemble(spec: AgentSpec, services: AgentServices) -> Agent:
    return ensemble.EnsembleAgent(spec, services, build_agent)


def _ml(spec: AgentSpec, services: AgentServices) -> Agent:
    from agents.ml import MLAgent

    return MLAgent(spec, services.settings, services.shared, services.db)


def _ml_gaps(spec: AgentSpec, settings: Settings, environ: Mapping[str, str]) -> list[str]:
    from agents.ml import DEFAULT_MODEL_NAME
    from race.store import ml_models
    from race.store.database import Database

    name = spec.model or DEFAULT_MODEL_NAME
    db = Database(settings.database_url)
    try:
        with db.read() as session:
            if ml_models.promoted(session, name) is not None:
                return []
    except Exception as exc:
        return [f"model {name!r} cannot be looked up in the database ({exc.__class__.__name__})"]
    finally:
        db.dispose()
    return [
        f"no trained model {name!r} promoted in the database "
        "(run `python -m race ml train --until ISO`)"
    ]


def _ml_default(settings: Settings) -> str | None:
    from agents.ml import DEFAULT_MODEL_NAME

    return DEFAULT_MODEL_NAME


KINDS: tuple[AgentKind, ...] = (
    AgentKind(
        name="llama",
        provider=Provider.LLAMA,
        model=None,
        model_help="model name (LLM)",
        build=_llm,
        gaps=_llm_gaps,
        default_model=lambda settings: settings.llama_model,
        calls_provider=True,
    ),
    AgentKind(
        name="openai",
        provider=Provider.OPENAI,
        model=None,
        model_help="model name (LLM)",
        build=_llm,
        gaps=_llm_gaps,
        default_model=lambda settings: settings.openai_model,
        calls_provider=True,
    ),
    AgentKind(
        name="azure_openai",
        provider=Provider.AZURE_OPENAI,
        model=None,
        model_help="deployment (AzureOpenAI)",
        build=_llm,
        gaps=_llm_gaps,
        default_model=lambda settings: settings.azure_openai_deployment,
        calls_provider=True,
    ),
    AgentKind(
        name="ml",
        provider=Provider.CUSTOM_ML,
        model=None,
        model_help="artifact name (CustomML)",
        build=_ml,
        gaps=_ml_gaps,
        default_model=_ml_default,
        calls_provider=False,
    ),
    AgentKind(
        name="remote_ml",
        provider=Provider.CUSTOM_ML,
        model=REMOTE_MODEL,
        model_help=f"'{REMOTE_MODEL}' (CustomML)",
        build=_remote_ml,
        gaps=_remote_ml_gaps,
        default_model=_no_default,
        calls_provider=True,
    ),
    AgentKind(
        name="ensemble",
        provider=Provider.CUSTOM_ML,
        model=ENSEMBLE_MODEL,
        model_help=f"'{ENSEMBLE_MODEL}' (CustomML)",
        build=_ensemble,
        gaps=_no_gaps,  # its members' gaps are listed by configuration_notes
        default_model=_no_default,
        calls_provider=True,  # its members may
    ),
    AgentKind(
        name="baseline",
        provider=Provider.MOCK,
        model=None,
        model_help="baseline kind (Mock)",
        build=_baseline,
        gaps=_no_gaps,
        default_model=_no_default,
        calls_provider=False,
        model_choices=tuple(sorted(BASELINES)),
    ),
)


def kind_of(provider: Provider, model: str | None) -> AgentKind:
    """The kind of an agent with this provider and model (:class:`AgentUnavailable` when
    the provider has none)."""
    name = (model or "").strip().lower()
    fallback: AgentKind | None = None
    for kind in KINDS:
        if kind.provider is not provider:
            continue
        if kind.model is not None and kind.model == name:
            return kind
        if kind.model is None and fallback is None:
            fallback = kind
    if fallback is None:
        raise AgentUnavailable(f"provider {provider.value} is not available in this build")
    return fallback


def default_model(provider: Provider, settings: Settings) -> str | None:
    """The model an agent of ``provider`` gets when none is given."""
    return kind_of(provider, None).default_model(settings)


def model_help() -> str:
    """What a model name means, kind by kind (for ``--model``'s help)."""
    helps = dict.fromkeys(kind.model_help for kind in KINDS)
    return ", ".join(helps)


def build_agent(spec: AgentSpec, services: AgentServices) -> Agent:
    """The agent for ``spec``; :class:`AgentConfigError` (a ValueError) for bad params."""
    return kind_of(spec.provider, spec.model).build(spec, services)


def configuration_notes(
    spec: AgentSpec, settings: Settings, environ: Mapping[str, str] | None = None
) -> list[str]:
    """What is missing for ``spec`` to actually decide (it would HOLD with the reason). For
    an ensemble, also what each member misses (that member abstains until it is fixed)."""
    environ = os.environ if environ is None else environ
    kind = kind_of(spec.provider, spec.model)
    notes = [f"{gap}: the agent will HOLD until then" for gap in kind.gaps(spec, settings, environ)]
    if kind.build is not _ensemble:
        return notes
    services = AgentServices(settings=settings, environ=environ)
    try:
        built = ensemble.EnsembleAgent(spec, services, build_agent)
    except ValueError:
        return notes  # refused when the agent is built, with the reason
    for member in built.members:
        member_kind = kind_of(member.spec.provider, member.spec.model)
        for gap in member_kind.gaps(member.spec, settings, environ):
            notes.append(f"ensemble member {member.name!r}: {gap}: it abstains until then")
    return notes
