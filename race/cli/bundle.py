"""``python -m race export RACE --out FILE`` and ``python -m race rescore FILE``: a race as a
self-describing bundle, and its re-score from the bundle alone (docs/races.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from race.cli._common import open_app

SHOWN = 10
"""Differences printed when a bundle does not match (the count says how many more)."""


def register(commands: Any) -> None:
    export = commands.add_parser(
        "export", help="write a race as a self-describing, re-scorable bundle (gzip'd JSON)"
    )
    export.add_argument("race", metavar="RACE", help="race name or id")
    export.add_argument("--out", required=True, type=Path, metavar="FILE", help="bundle file")
    export.set_defaults(handler=cmd_export)
    rescore = commands.add_parser(
        "rescore",
        help="re-score a bundle from itself alone and say whether it matches (exit 0) or not (1)",
    )
    rescore.add_argument("bundle", type=Path, metavar="FILE", help="a bundle from `export`")
    rescore.set_defaults(handler=cmd_rescore)


def cmd_export(args: argparse.Namespace) -> int:
    from race.bundle import export_race, write_bundle

    app = open_app()
    document = export_race(app, args.race)
    size = write_bundle(document, args.out)
    race = document["race"]
    symbols = ", ".join(series["symbol"] for series in document["candles"]) or "none"
    print(
        f"wrote {args.out} ({size:,} bytes): race {race['id']} ({race['name']}), "
        f"{len(document['participants'])} participants, {len(document['decisions'])} "
        f"decisions, {len(document['trades'])} trades, {len(document['snapshots'])} snapshots, "
        f"candles of {symbols}"
    )
    return 0


def cmd_rescore(args: argparse.Namespace) -> int:
    from race.clock import SystemClock
    from race.rescore import rescore
    from race.settings import load_settings

    result = rescore(args.bundle, load_settings(), SystemClock())
    counts = result.counts
    what = (
        f"race {result.race_name!r} re-scored from {args.bundle}: {counts['trades']} trades, "
        f"{counts['snapshots']} snapshots, {counts['agents']} agents"
    )
    if result.matches:
        print(f"{what}: MATCH (trades, snapshots and leaderboard as exported)")
        return 0
    print(f"{what}: DOES NOT MATCH ({len(result.differences)} differences)")
    for line in result.differences[:SHOWN]:
        print(f"  {line}")
    if len(result.differences) > SHOWN:
        print(f"  … and {len(result.differences) - SHOWN} more")
    return 1
