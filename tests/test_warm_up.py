"""The start-up warm-up (:meth:`race.bootstrap.App.warm_up`): the paths that run cycles build
the active agents and prepare their providers when the app is built, so the first cycle
builds nothing; the warm-up never calls a provider, and a failing one is logged, not raised."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import race.bootstrap
from agents.llama import LlamaAgent
from race.bootstrap import App, bootstrap
from race.clock import ManualClock
from race.domain.agent import Agent, AgentSpec
from race.domain.model import Provider
from race.store.tables import DecisionRow
from tests.factories import HOUR, insert_candles, make_candles, seed_agent, seed_assets, wave_prices
from tests.openai_server import OpenAIServer, Recorded, Reply, completion

START = datetime(2024, 1, 1, tzinfo=UTC)
KEY = "gsk_live_WARMUP_9f8e7d6c5b4a"
HOLD = {"reasoning": "Nothing compelling: hold.", "orders": [], "cited_rules": []}


@pytest.fixture
def provider() -> Iterator[tuple[OpenAIServer, list[Recorded]]]:
    """A loopback provider that records every call; the tests say when one is allowed."""
    calls: list[Recorded] = []

    def answer(request: Recorded) -> Reply:
        calls.append(request)
        return completion(HOLD)

    with OpenAIServer() as server:
        server.default = answer
        yield server, calls


def overrides(sqlite_url: str, server: OpenAIServer) -> dict[str, str]:
    return {
        "RACE_DATABASE_URL": sqlite_url,
        "LLAMA_BASE_URL": server.base_url,
        "LLAMA_API_KEY": KEY,
        "LLM_MAX_RETRIES": "0",
    }


@pytest.fixture
def race_db(sqlite_url: str, provider: tuple[OpenAIServer, list[Recorded]]) -> str:
    """Two LLM agents and a baseline, with candles, in the database at ``sqlite_url``."""
    server, _ = provider
    setup = bootstrap(overrides=overrides(sqlite_url, server), clock=ManualClock(START))
    try:
        seed_assets(setup)
        for symbol, base in (("BTC", 40000.0), ("ETH", 2000.0)):
            insert_candles(setup, make_candles(symbol, START, wave_prices(60, base=base)))
        seed_agent(setup, "Llama A", Provider.LLAMA, "llama-3.3-70b-versatile")
        seed_agent(setup, "Llama B", Provider.LLAMA, "llama-3.3-70b-versatile")
        seed_agent(setup, "Cash", Provider.MOCK, "cash")
    finally:
        setup.close()
    return sqlite_url


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the agents built by the composition root's builder, in order."""
    built: list[str] = []
    real: Callable[..., Agent] = race.bootstrap.build_agent

    def counting(spec: AgentSpec, services: Any) -> Agent:
        built.append(spec.name)
        return real(spec, services)

    monkeypatch.setattr(race.bootstrap, "build_agent", counting)
    return built


def cycle(app: App, at: datetime) -> int:
    asyncio.run(app.engine.run_cycle(at))
    with app.db.read() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(DecisionRow).where(DecisionRow.cycle_time == at)
            )
        )


def test_warm_up_at_bootstrap_builds_every_agent_and_calls_no_provider(
    race_db: str, provider: tuple[OpenAIServer, list[Recorded]], builds: list[str]
) -> None:
    server, calls = provider
    app = bootstrap(overrides=overrides(race_db, server), clock=ManualClock(START), warm_up=True)
    try:
        assert sorted(builds) == ["Cash", "Llama A", "Llama B"]
        assert app.warmed is not None
        assert app.warmed.agents == 3 and app.warmed.failures == []
        runtime = app.services.shared["llm.provider.llama"]
        assert runtime._tls is not None  # the CA bundle loaded at start-up
        assert runtime.clients.open_clients == 0  # no client kept: they are made per loop
        assert calls == []  # the warm-up sent nothing to the provider
        # The cycle decides with the agents built at start-up: it builds none.
        assert cycle(app, START + 50 * HOUR) == 3
        assert len(builds) == 3
        assert len(calls) == 2  # the two LLM agents' calls, made by the cycle
        assert app.warmed_up() is app.warmed  # once per app
    finally:
        app.close()


def test_without_warm_up_bootstrap_builds_nothing(
    race_db: str, provider: tuple[OpenAIServer, list[Recorded]], builds: list[str]
) -> None:
    """One-shot commands bootstrap without the warm-up: their start-up is not made slower."""
    server, calls = provider
    app = bootstrap(overrides=overrides(race_db, server), clock=ManualClock(START))
    try:
        assert builds == [] and app.warmed is None
        assert cycle(app, START + 50 * HOUR) == 3
        assert sorted(builds) == ["Cash", "Llama A", "Llama B"]
        assert len(calls) == 2
    finally:
        app.close()


def test_a_failing_agent_warm_up_is_logged_with_secrets_redacted(
    race_db: str,
    provider: tuple[OpenAIServer, list[Recorded]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, calls = provider

    def broken(self: LlamaAgent) -> None:
        raise RuntimeError(f"cannot prepare the client for key {KEY}")

    monkeypatch.setattr(LlamaAgent, "warm_up", broken)
    with caplog.at_level("WARNING", logger="race.bootstrap"):
        app = bootstrap(
            overrides=overrides(race_db, server), clock=ManualClock(START), warm_up=True
        )
    try:
        assert app.warmed is not None and len(app.warmed.failures) == 2
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 2
        assert all("warm-up incomplete" in w and "cannot prepare" in w for w in warnings)
        assert not any(KEY in w for w in warnings)
        assert calls == []
        # The start-up went on, and the cycle still decides for every agent.
        assert cycle(app, START + 50 * HOUR) == 3
    finally:
        app.close()


def test_a_warm_up_without_its_database_is_logged_and_creates_no_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "absent.db"
    with caplog.at_level("WARNING", logger="race.bootstrap"):
        app = bootstrap(
            overrides={"RACE_DATABASE_URL": f"sqlite:///{missing}"},
            clock=ManualClock(START),
            warm_up=True,
        )
    try:
        assert app.warmed is not None and app.warmed.agents == 0
        assert len(app.warmed.failures) == 1
        assert any(
            "warm-up incomplete" in r.getMessage() and "no such database file" in r.getMessage()
            for r in caplog.records
        )
        assert not missing.exists()
    finally:
        app.close()
