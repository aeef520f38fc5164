"""The composition root: settings → database → agents → engine. ``function_app.py``, the
CLI and the tests all build the object graph here, and nowhere else."""

from __future__ import annotations

import os
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agents.registry import AgentServices, build_agent
from race.clock import Clock, SystemClock
from race.domain.agent import Agent, AgentSpec
from race.engine import AgentBuilder, RaceEngine
from race.settings import Settings, load_settings
from race.settings_files import read_sources
from race.store.database import Database
from race.telemetry import Telemetry, telemetry_from_settings


@dataclass
class App:
    settings: Settings
    db: Database
    clock: Clock
    engine: RaceEngine
    services: AgentServices
    telemetry: Telemetry

    def close(self) -> None:
        self.telemetry.flush()
        self.db.dispose()


def bootstrap(
    settings: Settings | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    clock: Clock | None = None,
    db: Database | None = None,
    agent_builder: AgentBuilder | None = None,
) -> App:
    sources = read_sources()
    settings = settings or load_settings(overrides, sources=sources)
    clock = clock or SystemClock()
    db = db or Database(
        settings.database_url,
        connect_timeout_seconds=settings.db_connect_timeout_seconds,
        statement_timeout_seconds=settings.db_statement_timeout_seconds,
    )
    # Settings named by agent params (a remote model's key) are found in the files too.
    environ = ChainMap(os.environ, sources.file_values())  # type: ignore[arg-type]
    services = AgentServices(settings=settings, clock=clock, environ=environ, db=db)

    def default_builder(spec: AgentSpec) -> Agent:
        return build_agent(spec, services)

    telemetry = telemetry_from_settings(settings)
    engine = RaceEngine(
        db, settings, agent_builder or default_builder, clock=clock, telemetry=telemetry
    )
    return App(
        settings=settings, db=db, clock=clock, engine=engine, services=services, telemetry=telemetry
    )
