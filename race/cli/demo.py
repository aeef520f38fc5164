"""``python -m race demo``: the whole race on this machine, no cloud, no network.

On an empty database: migrate, seed the assets and the five baselines (plus the LLM and ML
agents whose settings are present), load the bundled real candles, train the ML model on the
data before the replay window, replay the most recent days hourly and print the standings.
Re-running it is safe: every step skips what is already done.

The replay is a backtest race of its own (``demo <start>..<end> every <interval>``, see
docs/races.md), judged by the settings' rules: the live race is never touched.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agents.baselines import DEFAULT_BASELINES
from race.bootstrap import App
from race.cli._common import open_app, progress_bar
from race.domain import jobs
from race.domain.model import Provider
from race.domain.race import Race, RaceKind, RaceRules
from race.domain.timeutil import floor_time, format_interval, parse_interval
from race.leaderboard import render_table, standings
from race.races import create_race, engine_for
from race.store import races as race_rows
from race.universe import NewAgent, add_agent, add_asset

log = logging.getLogger("race.demo")
REPORT_FILE = "race-report.html"
"""Written in the working directory when the replay ends (``python -m race report``)."""


def register(commands: Any) -> None:
    demo = commands.add_parser("demo", help="run the race locally on bundled real candles")
    demo.add_argument("--days", type=int, default=90, help="days to replay (default 90)")
    demo.add_argument("--interval", default="1h", help="decision interval (default 1h)")
    demo.add_argument(
        "--include-llm",
        action="store_true",
        help="also replay LLM and remote agents (one paid API call per agent and cycle: "
        "90 days hourly is ~2,160 calls per agent)",
    )
    demo.set_defaults(handler=cmd_demo)


def seed(app: App) -> list[str]:
    """Assets and agents, idempotently. Returns the names of the agents seeded now."""
    for symbol, coin in app.settings.asset_universe:
        add_asset(app.db, symbol, coin, app.clock)
    wanted = [
        NewAgent(
            name=spec["name"],
            provider=Provider.MOCK,
            model=spec["model"],
            strategy=spec["strategy"],
            params=spec["params"],
        )
        for spec in DEFAULT_BASELINES
    ]
    from agents.catalog import optional_agents

    wanted.extend(optional_agents(app.settings))
    created = []
    for new in wanted:
        _, was_created = add_agent(
            app.db, new, app.settings.starting_capital, app.clock, exist_ok=True
        )
        if was_created:
            created.append(new.name)
    return created


def cmd_demo(args: argparse.Namespace) -> int:
    if args.days <= 0:
        raise ValueError("--days must be positive")
    interval = parse_interval(args.interval)
    app = open_app(require_schema=False)
    print(f"database: {app.db.describe()}")
    app.db.upgrade()
    from race.races import record_live_race

    record_live_race(app.db, app.settings, app.clock)
    created = seed(app)
    if created:
        print(f"seeded agents: {', '.join(created)}")

    from race.ingest import ingest_sample

    bar, update = progress_bar(0, "loading bundled candles", unit="row")
    try:
        report = ingest_sample(app, on_progress=update)
    finally:
        bar.close()
    print(report.render())

    end = _replay_end(app)
    if end is None:
        print("no candles loaded: nothing to replay")
        return 1
    end = floor_time(end, interval)
    start = end - timedelta(days=args.days)
    _train_ml(app, start)
    agent_ids = _active_agents(app) if args.include_llm else _offline_agents(app)
    race = demo_race(app, start, end, interval, agent_ids)
    print(f"replaying {start.isoformat()} → {end.isoformat()} every {args.interval}")
    print(f"race {race.id}: {race.name} (a backtest; the live race is left alone)")
    bar, update = progress_bar(0, "replay")
    try:
        result = asyncio.run(
            engine_for(app, race).backfill(
                start, end, interval, on_progress=update, agent_ids=agent_ids
            )
        )
    finally:
        bar.close()
    with app.db.write() as session:
        race_rows.set_status(session, race.id, jobs.COMPLETED if result.finished else jobs.PARTIAL)
    print(
        f"{result.decisions} decisions ({result.fallbacks} fallbacks), {result.trades} trades "
        f"written this run\n"
    )
    with app.db.read() as session:
        print(render_table(standings(session, race_id=race.id)))
    from race.cli.report import write_report  # matplotlib: imported only to draw the report

    print(f"\nreport: {write_report(app, Path(REPORT_FILE), race=str(race.id))[0].resolve()}")
    return 0


def demo_race(
    app: App, start: datetime, end: datetime, interval: timedelta, agent_ids: list[int]
) -> Race:
    """The demo's backtest race of this window and interval: found (a re-run resumes it,
    agents seeded since join it) or created with the settings' rules, all ``agent_ids``
    among its participants."""
    name = f"demo {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M} every {format_interval(interval)}"
    with app.db.write() as session:
        found = race_rows.by_name(session, name)
        if found is not None:
            joined = set(race_rows.participants(session, found.id))
            capital = found.starting_capital or app.settings.starting_capital
            for agent_id in agent_ids:
                if agent_id not in joined:
                    race_rows.enter(session, found.id, agent_id, capital, app.clock.now())
            race_rows.set_status(session, found.id, jobs.RUNNING)
            return found
    new = race_rows.NewRace(
        name=name,
        kind=RaceKind.BACKTEST,
        start=start,
        end=end,
        interval_seconds=int(interval.total_seconds()),
        starting_capital=app.settings.starting_capital,
        rules=RaceRules.of(app.settings.costs, app.settings.limits),
        universe=[symbol for symbol, _ in app.settings.asset_universe],
        status=jobs.RUNNING,
    )
    return create_race(app.db, new, agent_ids, app.clock)


def _active_agents(app: App) -> list[int]:
    from race.store import agents as agent_rows

    with app.db.read() as session:
        return [row.id for row in agent_rows.active(session)]


def _offline_agents(app: App) -> list[int]:
    """Agents that decide without network calls: baselines and the in-process ML model."""
    from agents.registry import PROVIDER_NAMES, kind_of
    from race.store import agents as agent_rows

    with app.db.read() as session:
        rows = agent_rows.active(session)
    offline, skipped = [], []
    for row in rows:
        known = row.provider in PROVIDER_NAMES
        if known and not kind_of(Provider(row.provider), row.model).calls_provider:
            offline.append(row.id)
        else:
            skipped.append(row.name)
    if skipped:
        print(
            f"not replaying {', '.join(skipped)} (network agents; add --include-llm to replay "
            "them, or let `python -m race serve` run them live)"
        )
    return offline


def _replay_end(app: App) -> Any:
    """The newest time at which every enabled asset has a closed candle."""
    from race.store import assets as asset_rows

    with app.db.read() as session:
        latest = asset_rows.newest_closes_of_enabled(session)
    return min(latest) if latest else None


def _train_ml(app: App, until: Any) -> None:
    from race.store import agents as agent_rows

    with app.db.read() as session:
        has_ml = agent_rows.any_active_of(session, Provider.CUSTOM_ML.value)
    if not has_ml:
        return
    from agents.ml import DEFAULT_MODEL_NAME
    from race.store import ml_models

    with app.db.read() as session:
        existing = [
            r for r in ml_models.listing(session, DEFAULT_MODEL_NAME) if r.trained_until == until
        ]
    if existing:
        print(
            f"ML model {DEFAULT_MODEL_NAME}@{existing[0].version} already trained on the "
            f"candles before {until.isoformat()}"
        )
        return
    from race.ml_service import train_model  # scikit-learn: only imported to train

    report = train_model(app, until)
    print(report.render() if hasattr(report, "render") else report)
