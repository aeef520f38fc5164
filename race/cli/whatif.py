"""``python -m race whatif RACE [--fee …]``: replay a race under changed rules, from its
record, without one LLM or remote call (docs/races.md)."""

from __future__ import annotations

import argparse
from typing import Any

from race.cli._common import open_app, progress_bar


def register(commands: Any) -> None:
    whatif = commands.add_parser(
        "whatif",
        help="replay a race under changed rules from its record (no LLM or remote call)",
    )
    whatif.add_argument("race", metavar="RACE", help="the source race, by name or id")
    whatif.add_argument("--fee", metavar="F", help="taker fee rate, e.g. 0.002")
    whatif.add_argument("--slippage-bps", metavar="B", help="slippage in basis points")
    whatif.add_argument("--max-position", metavar="P", help="max fraction of equity per asset")
    whatif.add_argument("--max-order", metavar="USD", help="max order notional")
    whatif.add_argument("--starting-capital", metavar="USD", help="capital per participant")
    whatif.add_argument(
        "--name",
        help="the new race's name (default: from the source and the changes); an unfinished "
        "what-if of that name, source and rules is resumed",
    )
    whatif.set_defaults(handler=cmd_whatif)


def cmd_whatif(args: argparse.Namespace) -> int:
    from race.whatif import create_whatif, parse_changes, run_whatif
    from race.whatif_board import compare_standings, render_comparison

    changes = parse_changes(
        args.fee, args.slippage_bps, args.max_position, args.max_order, args.starting_capital
    )
    app = open_app()
    whatif = create_whatif(app, args.race, changes, args.name)
    race, source = whatif.race, whatif.source
    print(
        f"{'resuming ' if whatif.resumed else ''}race {race.id}: {race.name} — "
        f"{len(whatif.times)} cycles of race {source.id} "
        f"replayed from the record (baselines recomputed, no LLM or remote call)"
    )
    if whatif.not_replayed:
        print(f"not replayed (disabled since): {', '.join(whatif.not_replayed)}")
    if whatif.off_grid:
        print(f"{len(whatif.off_grid)} source cycle(s) off the interval grid are not replayed")
    bar, update = progress_bar(len(whatif.times), "what-if")
    try:
        totals = run_whatif(app, whatif, update)
    finally:
        bar.close()
    print(
        f"{totals.decisions} decisions ({totals.fallbacks} fallbacks), {totals.trades} trades "
        "written this run\n"
    )
    print(render_comparison(compare_standings(app.db, source.id, race.id), source, race))
    return 0 if totals.finished else 1
