"""The composition root: settings → database → agents → engine. ``function_app.py``, the
CLI and the tests all build the object graph here, and nowhere else.

The paths that run cycles (``serve``, the Functions host's cycle functions, the latency
benchmark) also warm the app up at start-up (:meth:`App.warm_up`), so that the first cycle
costs what the others do: the active agents are built (which imports their kinds' modules:
pandas for the prompt's indicators), their providers' SDK is imported and CA bundle loaded,
and the database pool holds a connection. One-shot CLI commands do not warm up."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import ChainMap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.registry import AgentServices, build_agent
from race.clock import Clock, SystemClock
from race.domain.agent import Agent, AgentSpec
from race.engine import AgentBuilder, RaceEngine
from race.settings import Settings, load_settings
from race.settings_files import read_sources
from race.store import repository as repo
from race.store.database import Database
from race.telemetry import Telemetry, telemetry_from_settings

log = logging.getLogger("race.bootstrap")


@dataclass
class WarmUp:
    """What :meth:`App.warm_up` did: agents built, and what failed (logged, not raised)."""

    agents: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class App:
    settings: Settings
    db: Database
    clock: Clock
    engine: RaceEngine
    services: AgentServices
    telemetry: Telemetry
    build_agent: AgentBuilder | None = field(default=None, repr=False)
    """What the engine builds agents with (engines of other races use it too)."""
    warmed: WarmUp | None = field(default=None, init=False, repr=False)
    """What the warm-up did, once :meth:`warmed_up` has run it."""
    _warming: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _closing: list[Callable[[], None]] = field(default_factory=list, init=False, repr=False)

    def on_close(self, step: Callable[[], None]) -> None:
        """Run ``step`` when the app closes, before the database is disposed (the API's
        analytics worker process is stopped so)."""
        self._closing.append(step)

    def close(self) -> None:
        while self._closing:
            step = self._closing.pop()
            try:
                step()
            except Exception:  # closing goes on: the database is still disposed
                log.warning("a close step failed", exc_info=True)
        self.telemetry.flush()
        self.db.dispose()

    def warm_up(self) -> WarmUp:
        """Start-up work the first cycle would otherwise pay: a pooled database connection
        (reading the active agents), every active agent built and cached exactly as the
        cycle builds it (:meth:`RaceEngine.agent_for`), and each built agent's own
        ``warm_up()`` when it has one (a language-model agent imports the SDK and loads the
        CA bundle of its configured providers). Nothing is sent to a provider. A failure is
        logged and the start-up goes on: the cycle then pays, or reports, it as before."""
        started = time.perf_counter()
        done = WarmUp()
        redact = self.engine.policy.redact
        try:
            self.db.require_file()  # reading a missing SQLite file would create it empty
            with self.db.read() as session:
                specs = repo.active_agents(session)
        except Exception as exc:
            done.failures.append(f"active agents not read: {redact(str(exc))}")
            specs = []
        for spec in specs:
            try:
                agent = self.engine.agent_for(spec)  # a build failure comes back as a reason
                if isinstance(agent, str):
                    continue
                done.agents += 1
                prepare = getattr(agent, "warm_up", None)
                if callable(prepare):
                    prepare()
            except Exception as exc:
                done.failures.append(f"agent {spec.id} ({spec.name}): {redact(str(exc))}")
        done.seconds = time.perf_counter() - started
        for failure in done.failures:
            log.warning("warm-up incomplete (the first cycle pays for it): %s", failure)
        log.info("warm-up: %d agent(s) ready in %.2f s", done.agents, done.seconds)
        return done

    def warmed_up(self) -> WarmUp:
        """:meth:`warm_up` once for this app (callers at once wait for the one warm-up)."""
        with self._warming:
            if self.warmed is None:
                self.warmed = self.warm_up()
            return self.warmed


def bootstrap(
    settings: Settings | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    clock: Clock | None = None,
    db: Database | None = None,
    agent_builder: AgentBuilder | None = None,
    warm_up: bool = False,
) -> App:
    """The app; ``warm_up=True`` (the paths that run cycles) also runs :meth:`App.warm_up`,
    which never raises."""
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
    app = App(
        settings=settings,
        db=db,
        clock=clock,
        engine=engine,
        services=services,
        telemetry=telemetry,
        build_agent=agent_builder or default_builder,
    )
    if warm_up:
        app.warmed_up()
    return app
