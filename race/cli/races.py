"""``python -m race races list|show|delete``: the races of the database (docs/races.md)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from race.cli._common import open_app
from race.domain.race import Race
from race.races import RaceSummary, delete_race, list_races, show_race


def register(commands: Any) -> None:
    races = commands.add_parser("races", help="the races: list, show, delete")
    sub = races.add_subparsers(dest="races_command", required=True)
    listing = sub.add_parser("list", help="every race, by id")
    listing.add_argument("--json", action="store_true", help="the API's GET /api/races")
    listing.set_defaults(handler=cmd_races_list)
    show = sub.add_parser("show", help="one race: rules, participants, counts")
    show.add_argument("race", metavar="RACE", help="race name or id")
    show.add_argument("--json", action="store_true", help="the API's GET /api/races/{id}")
    show.set_defaults(handler=cmd_races_show)
    delete = sub.add_parser(
        "delete",
        help="delete a race and everything of it, in one transaction (never the live race)",
    )
    delete.add_argument("race", metavar="RACE", help="race name or id")
    delete.set_defaults(handler=cmd_races_delete)


def _when(race: Race) -> str:
    end = race.end.isoformat() if race.end is not None else "open-ended"
    return f"{race.start.isoformat()} .. {end}"


def cmd_races_list(args: argparse.Namespace) -> int:
    app = open_app()
    found = list_races(app.db)
    if args.json:
        from race.api.races import race_summary

        print(json.dumps([race_summary(r).model_dump() for r in found], indent=2))
        return 0
    print(f"{'id':>4}  {'name':<24} {'kind':<8} {'status':<9} period")
    for race in found:
        print(f"{race.id:>4}  {race.name:<24} {race.kind.value:<8} {race.status:<9} {_when(race)}")
    return 0


def _detail(summary: RaceSummary) -> list[str]:
    race, counts = summary.race, summary.counts
    rules = race.rules.to_json() if race.rules is not None else None
    return [
        f"race {race.id}: {race.name} ({race.kind.value})",
        f"  status            {race.status}",
        f"  period            {_when(race)}",
        f"  interval          {race.interval_seconds or '(not recorded)'} s",
        f"  starting capital  {race.starting_capital or '(not recorded)'} USD",
        f"  universe          {', '.join(race.universe) if race.universe else '(not recorded)'}",
        f"  rules             {json.dumps(rules) if rules else '(not recorded)'}",
        f"  participants      {', '.join(map(str, summary.participants)) or '(none)'}",
        f"  rows              {counts.decisions} decisions, {counts.trades} trades, "
        f"{counts.snapshots} snapshots, {counts.cycles} cycles",
    ]


def cmd_races_show(args: argparse.Namespace) -> int:
    app = open_app()
    summary = show_race(app.db, args.race)
    if args.json:
        from race.api.races import race_detail

        detail = race_detail(summary.race, summary.counts, summary.participants)
        print(json.dumps(detail.model_dump(), indent=2))
        return 0
    print("\n".join(_detail(summary)))
    return 0


def cmd_races_delete(args: argparse.Namespace) -> int:
    app = open_app()
    summary = delete_race(app.db, args.race)
    race, counts = summary.race, summary.counts
    print(
        f"deleted race {race.id} ({race.name}): {counts.participants} participants, "
        f"{counts.decisions} decisions, {counts.trades} trades, {counts.snapshots} snapshots, "
        f"{counts.cycles} cycles"
    )
    return 0
