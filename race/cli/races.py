"""``python -m race races list|show|delete``: the races of the database (docs/races.md)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from race.cli._common import open_app
from race.domain.race import Race
from race.races import RaceError, RaceSummary, delete_race, find_race, list_races, show_race


def register(commands: Any) -> None:
    races = commands.add_parser("races", help="the races: list, show, compare, delete")
    sub = races.add_subparsers(dest="races_command", required=True)
    listing = sub.add_parser("list", help="every race, by id")
    listing.add_argument("--json", action="store_true", help="the API's GET /api/races")
    listing.set_defaults(handler=cmd_races_list)
    show = sub.add_parser("show", help="one race: rules, participants, counts")
    show.add_argument("race", metavar="RACE", help="race name or id")
    show.add_argument("--json", action="store_true", help="the API's GET /api/races/{id}")
    show.set_defaults(handler=cmd_races_show)
    compare = sub.add_parser(
        "compare", help="two races' leaderboards side by side, with each agent's rank change"
    )
    compare.add_argument("first", metavar="RACE", help="the race compared against (name or id)")
    compare.add_argument("second", metavar="OTHER", help="the race compared (name or id)")
    compare.add_argument("--json", action="store_true", help="the rows as JSON")
    compare.set_defaults(handler=cmd_races_compare)
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
    width = max([24, *(len(race.name) for race in found)])  # names are up to 200 characters
    print(f"{'id':>4}  {'name':<{width}} {'kind':<8} {'status':<9} period")
    for race in found:
        print(
            f"{race.id:>4}  {race.name:<{width}} {race.kind.value:<8} {race.status:<9} "
            f"{_when(race)}"
        )
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


def cmd_races_compare(args: argparse.Namespace) -> int:
    """OTHER's standings beside RACE's: each agent's rank and equity in both, the change and
    the rank change (``▲n`` up n places, ``▼n`` down, ``=``, ``new`` when RACE lacks it);
    RACE's agents that OTHER lacks are named after the table."""
    from race.whatif_board import compare_standings, missing_from, render_comparison

    app = open_app()
    first, second = find_race(app.db, args.first), find_race(app.db, args.second)
    if first.id == second.id:
        raise RaceError(f"race {first.name!r} compared with itself: name two different races")
    rows = compare_standings(app.db, first.id, second.id)
    missing = missing_from(app.db, first.id, second.id)
    if args.json:
        gone = [_gone(name) for name in missing]
        print(json.dumps([_compared(row) for row in rows] + gone, indent=2))
        return 0
    labels = (f"race {first.id}", f"race {second.id}")
    print(render_comparison(rows, first, second, labels))
    if missing:
        print(f"not in race {second.id}: {', '.join(missing)}")
    return 0


def _gone(name: str) -> dict[str, Any]:
    """An agent of the first race that the other lacks (``rankChange``: ``missing``)."""
    keys = ("rank", "firstRank", "firstEquity", "equity", "change")
    return {"agent": name, **dict.fromkeys(keys), "rankChange": "missing"}


def _compared(row: Any) -> dict[str, Any]:
    def money(value: Any) -> float | None:
        return None if value is None else float(value)

    return {
        "agent": row.name,
        "rank": row.rank,
        "firstRank": row.source_rank,
        "firstEquity": money(row.source_equity),
        "equity": money(row.equity),
        "change": money(row.change),
        "rankChange": row.moved,
    }
