"""agents.registry: the one table of agent kinds, and how a spec finds its kind."""

from __future__ import annotations

import pytest

from agents.baselines import BASELINES
from agents.registry import (
    ENSEMBLE_MODEL,
    KINDS,
    PROVIDER_NAMES,
    REMOTE_MODEL,
    AgentServices,
    build_agent,
    default_model,
    kind_of,
)
from race.domain.agent import AgentSpec
from race.domain.model import Provider
from race.settings import load_settings


def test_every_provider_has_exactly_one_kind_for_any_other_model() -> None:
    for provider in Provider:
        catch_all = [k for k in KINDS if k.provider is provider and k.model is None]
        assert len(catch_all) == 1, provider
    assert tuple(p.value for p in Provider) == PROVIDER_NAMES
    assert len({k.name for k in KINDS}) == len(KINDS)


@pytest.mark.parametrize(
    ("provider", "model", "kind"),
    [
        (Provider.MOCK, "sma_cross", "baseline"),
        (Provider.MOCK, None, "baseline"),
        (Provider.LLAMA, "llama-3.3-70b-versatile", "llama"),
        (Provider.OPENAI, "gpt-4o-mini", "openai"),
        (Provider.AZURE_OPENAI, "my-deployment", "azure_openai"),
        (Provider.CUSTOM_ML, None, "ml"),
        (Provider.CUSTOM_ML, "direction-gb", "ml"),
        (Provider.CUSTOM_ML, "remote", "remote_ml"),
        (Provider.CUSTOM_ML, " Remote ", "remote_ml"),
        (Provider.CUSTOM_ML, "ENSEMBLE", "ensemble"),
        (Provider.CUSTOM_ML, "remote-ish", "ml"),
    ],
)
def test_a_spec_finds_its_kind_by_provider_and_model(
    provider: Provider, model: str | None, kind: str
) -> None:
    assert kind_of(provider, model).name == kind


def test_only_baselines_and_the_in_process_model_decide_without_an_outside_service() -> None:
    offline = {k.name for k in KINDS if not k.calls_provider}
    assert offline == {"baseline", "ml"}
    assert kind_of(Provider.CUSTOM_ML, REMOTE_MODEL).calls_provider
    assert kind_of(Provider.CUSTOM_ML, ENSEMBLE_MODEL).calls_provider


def test_default_models_come_from_the_settings() -> None:
    settings = load_settings(
        {"LLAMA_MODEL": "llama-x", "OPENAI_MODEL": "gpt-x", "AZURE_OPENAI_DEPLOYMENT": "dep-x"}
    )
    assert default_model(Provider.LLAMA, settings) == "llama-x"
    assert default_model(Provider.OPENAI, settings) == "gpt-x"
    assert default_model(Provider.AZURE_OPENAI, settings) == "dep-x"
    assert default_model(Provider.CUSTOM_ML, settings) == "direction-gb"
    assert default_model(Provider.MOCK, settings) is None
    assert kind_of(Provider.MOCK, None).model_choices == tuple(sorted(BASELINES))


def test_build_agent_uses_the_kinds_factory() -> None:
    services = AgentServices(settings=load_settings({}))
    spec = AgentSpec(id=1, name="b", provider=Provider.MOCK, model="buy_and_hold")
    baseline = build_agent(spec, services)
    assert type(baseline) is type(BASELINES["buy_and_hold"]({}))
    ensemble = build_agent(
        AgentSpec(
            id=2,
            name="e",
            provider=Provider.CUSTOM_ML,
            model=" Ensemble",
            params={"members": [{"provider": "Mock", "model": "cash"}]},
        ),
        services,
    )
    assert type(ensemble).__name__ == "EnsembleAgent"
    assert [m.spec.model for m in ensemble.members] == ["cash"]  # type: ignore[attr-defined]
