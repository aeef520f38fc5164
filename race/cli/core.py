"""Core commands: db, cycle, snapshot, backfill, leaderboard."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from race.cli._common import iso_arg, open_app, progress_bar
from race.domain.timeutil import floor_time, format_interval, parse_interval
from race.leaderboard import render_table, standings
from race.schedule import scheduled_time

if TYPE_CHECKING:
    from race.usecases.reports import BackfillReport


def register(commands: Any) -> None:
    db = commands.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="apply migrations (Alembic) up to head")
    upgrade.add_argument("--revision", default="head")
    upgrade.set_defaults(handler=cmd_db_upgrade)
    current = db_sub.add_parser("current", help="show the schema revision")
    current.set_defaults(handler=cmd_db_current)

    cycle = commands.add_parser("cycle", help="run one decision cycle now (or at --at)")
    cycle.add_argument(
        "--at",
        type=iso_arg,
        help=(
            "decision time T (ISO-8601, UTC; not in the future), run as the "
            "RACE_DECISION_SCHEDULE slot that holds it; default: now"
        ),
    )
    cycle.add_argument("--json", action="store_true", help="print the report as JSON")
    cycle.set_defaults(handler=cmd_cycle)

    snapshot = commands.add_parser("snapshot", help="mark every portfolio to market")
    snapshot.add_argument("--at", type=iso_arg, help="time (default: newest candle close)")
    snapshot.set_defaults(handler=cmd_snapshot)

    backfill = commands.add_parser(
        "backfill", help="replay a past range over stored candles (resumable)"
    )
    backfill.add_argument("--start", type=iso_arg, required=True, help="ISO-8601 start (UTC)")
    backfill.add_argument("--end", type=iso_arg, required=True, help="ISO-8601 end (UTC)")
    backfill.add_argument("--interval", default="1h", help="decision interval (default 1h)")
    backfill.add_argument(
        "--agent",
        action="append",
        metavar="NAME|ID",
        help="replay only this agent, by name or id (repeatable; default: every active agent)",
    )
    backfill.add_argument("--json", action="store_true", help="print the report as JSON")
    backfill.set_defaults(handler=cmd_backfill)

    board = commands.add_parser("leaderboard", help="print the standings")
    board.add_argument("--json", action="store_true", help="JSON instead of a table")
    board.add_argument(
        "--race", metavar="RACE", help="race name or id (default: the live race; `races list`)"
    )
    board.set_defaults(handler=cmd_leaderboard)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    app = open_app(require_schema=False)
    app.db.upgrade(args.revision)
    print(f"database {app.db.describe()} at revision {app.db.current_revision()}")
    if app.db.has_table("races"):
        from race.races import record_live_race

        filled = record_live_race(app.db, app.settings, app.clock)
        if filled:
            print(f"live race: recorded {', '.join(filled)} from the settings (now frozen)")
    return 0


def cmd_db_current(args: argparse.Namespace) -> int:
    app = open_app(require_schema=False)
    app.db.ping()
    print(app.db.current_revision() or "(empty: run `python -m race db upgrade`)")
    return 0


def cmd_cycle(args: argparse.Namespace) -> int:
    app = open_app()
    now = app.clock.now()
    at = args.at or now
    if at > now:
        print(
            f"error: --at {at.isoformat()} is in the future (now {now.isoformat()}): a cycle "
            "decides on candles closed by its time",
            file=sys.stderr,
        )
        return 2
    # The slot of RACE_DECISION_SCHEDULE that holds ``at``: the same cycle id the timer uses.
    cycle_time = scheduled_time(app.settings.decision_schedule, at)
    report = asyncio.run(app.engine.run_cycle(cycle_time, trigger="manual"))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    elif report.status == "skipped":
        print(f"cycle {cycle_time.isoformat()}: skipped: {report.reason}", file=sys.stderr)
    else:
        print(
            f"cycle {cycle_time.isoformat()}: {report.status}, {report.decided} decided, "
            f"{report.fallbacks} fallbacks, {report.trades} trades, "
            f"{len(report.skipped)} skipped"
        )
        for agent_id, reason in report.skipped.items():
            print(f"  skipped agent {agent_id}: {reason}")
        for agent_id, error in report.errors.items():
            print(f"  error agent {agent_id}: {error}")
    if report.status == "skipped":
        return 3
    return 0 if report.status == "completed" else 1


def cmd_snapshot(args: argparse.Namespace) -> int:
    from race.market_queries import newest_close

    app = open_app()
    now = app.clock.now()
    if args.at is not None and args.at > now:
        print(
            f"error: --at {args.at.isoformat()} is in the future (now {now.isoformat()}): a "
            "mark uses candles closed by its time",
            file=sys.stderr,
        )
        return 2
    at = args.at or newest_close(app.db)
    if at is None:
        print("no candles yet: nothing to mark")
        return 0
    written, stale = app.engine.mark(at)
    if stale is not None:
        print(f"mark to market at {at.isoformat()}: skipped: {stale}", file=sys.stderr)
        return 3
    print(f"marked {written} portfolio(s) to market at {at.isoformat()}")
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    from race.engine import BackfillRefused, check_backfill_interval

    app = open_app()
    now = app.clock.now()
    if args.end > now:
        print(
            f"error: --end {args.end.isoformat()} is in the future (now {now.isoformat()}): "
            "a replay runs only over times that have passed; live cycles take it from there",
            file=sys.stderr,
        )
        return 2
    interval = check_backfill_interval(parse_interval(args.interval))
    if args.end < args.start:
        raise ValueError(
            f"backfill end {args.end.isoformat()} is before start {args.start.isoformat()}"
        )
    agent_ids = _agent_ids(app, args.agent) if args.agent else None
    cycles = _cycle_count(args.start, args.end, interval)
    print(
        f"backfill {args.start.isoformat()} → {args.end.isoformat()} every "
        f"{format_interval(interval)}: {cycles:,} cycle(s)",
        file=sys.stderr,
        flush=True,
    )
    bar, update = progress_bar(0, "backfill")
    try:
        report = asyncio.run(
            app.engine.backfill(
                args.start, args.end, interval, on_progress=update, agent_ids=agent_ids
            )
        )
    except BackfillRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    finally:
        bar.close()
    _print_backfill_report(report, args)
    return 0


def _cycle_count(start: datetime, end: datetime, interval: timedelta) -> int:
    """How many grid times of ``interval`` lie in ``[start, end]``."""
    first = floor_time(start, interval)
    if first < start:
        first += interval
    return 0 if first > end else (end - first) // interval + 1


def _print_backfill_report(report: BackfillReport, args: argparse.Namespace) -> None:
    """The backfill's waits and skips on stderr, then its report (JSON with ``--json``)."""
    if report.waited_for is not None and report.waited_seconds:
        print(
            f"waited {report.waited_seconds:.1f} s for {report.waited_for}",
            file=sys.stderr,
        )
    for agent_id, reason in report.skipped.items():
        print(f"skipped agent {agent_id}: {reason}", file=sys.stderr)
    if report.stale_cycles:
        print(
            f"{report.stale_cycles} cycle(s) skipped: market view stale (RACE_MAX_PRICE_AGE)",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(
            f"backfill {report.start.isoformat()} → {report.end.isoformat()} every "
            f"{args.interval}: {report.done_cycles}/{report.total_cycles} cycles, "
            f"{report.decisions} decisions, {report.fallbacks} fallbacks, "
            f"{report.trades} trades"
        )


def _agent_ids(app: Any, refs: list[str]) -> list[int]:
    """The ids of the agents named (any case) or numbered in ``refs``."""
    from race.universe import UniverseError, find_agent

    ids: list[int] = []
    unknown: list[str] = []
    with app.db.read() as session:
        for ref in refs:
            try:
                ids.append(find_agent(session, ref).id)
            except UniverseError:
                unknown.append(ref)
    if unknown:
        raise LookupError(
            f"unknown agent(s): {', '.join(unknown)} (see `python -m race agents list`)"
        )
    return list(dict.fromkeys(ids))


def cmd_leaderboard(args: argparse.Namespace) -> int:
    app = open_app()
    race_id = None
    if args.race is not None:
        from race.races import find_race

        race_id = find_race(app.db, args.race).id
    if args.json:
        # The API's entries, field for field (GET /api/leaderboard): one vocabulary.
        from race.analysis_cache import Analyser
        from race.api.queries import leaderboard

        with app.db.read() as session:
            analyser = Analyser.from_settings(app.settings)
            entries = leaderboard(session, analyser, race_id=race_id)
        print(json.dumps([entry.model_dump() for entry in entries], indent=2))
        return 0
    with app.db.read() as session:
        rows = standings(session, race_id=race_id)
    print(render_table(rows))
    return 0
