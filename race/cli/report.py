"""``python -m race report``: the race as one self-contained HTML file, charts optionally
as PNG files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from race.bootstrap import App
from race.cli._common import open_app

LIVE = "live"


def register(commands: Any) -> None:
    report = commands.add_parser(
        "report",
        help="write the race report: one self-contained HTML file with charts",
        description="Write the race report: equity curves and drawdowns of every agent "
        "(with buy-and-hold), the leaderboard with 95 %% bootstrap intervals, behaviour and "
        "cost tables and the flags (not significant, possibly contaminated). The file "
        "needs no network to open.",
    )
    report.add_argument(
        "--race",
        default=LIVE,
        help="the race to report, by name or id (default: live, the live race; "
        "see `python -m race races list`)",
    )
    report.add_argument(
        "--out", type=Path, required=True, help="the HTML file to write (e.g. report.html)"
    )
    report.add_argument(
        "--png",
        type=Path,
        metavar="DIR",
        help="also write each chart as DIR/<chart>.png (DIR is created if missing)",
    )
    report.set_defaults(handler=cmd_report)


def write_report(app: App, out: Path, *, race: str = LIVE, png: Path | None = None) -> list[Path]:
    """Write the report of ``race`` (a name or id) to ``out`` (and the charts to ``png``);
    the files written, the HTML first. ValueError for an unknown race, LookupError for a
    race without snapshots."""
    from race.analysis import analyse
    from race.races import find_race
    from race.report.data import report_data
    from race.report.render import write_html, write_pngs

    found = find_race(app.db, race)
    race_id = None if found.is_live else found.id
    analysis = analyse(app.db, app.settings, app.clock, race_id=race_id)
    with app.db.read() as session:
        data = report_data(session, analysis, now=app.clock.now(), race=found.name, race_id=race_id)
    if data.start is None:
        raise LookupError(
            "no agent has an equity snapshot yet: nothing to report "
            "(run `python -m race demo` or let the race run)"
        )
    written = [write_html(data, out)]
    if png is not None:
        written.extend(write_pngs(data, png))
    return written


def cmd_report(args: argparse.Namespace) -> int:
    if args.out.is_dir():
        raise ValueError(f"--out {args.out} is a directory: give the HTML file to write")
    app = open_app()
    for path in write_report(app, args.out, race=args.race, png=args.png):
        print(path)
    return 0
