"""Market data commands: ``ingest`` (CoinGecko or the bundled sample) and ``assets``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from race.cli._common import iso_arg, open_app, progress_bar
from race.domain.timeutil import iso


def register(commands: Any) -> None:
    ingest = commands.add_parser(
        "ingest",
        help="fetch candles from CoinGecko, or load the bundled sample",
        description=(
            "Without --start: live ingestion, everything missing since each asset's last "
            "stored candle. With --start [--end]: a backfill of that range, split into the "
            "chunks CoinGecko allows, paced, and resumable (run the same command again)."
        ),
    )
    ingest.add_argument(
        "--source",
        choices=("coingecko", "sample"),
        default="coingecko",
        help="coingecko (default; COINGECKO_* settings) or sample (bundled real candles)",
    )
    ingest.add_argument("--start", type=iso_arg, help="ISO-8601 start (UTC), candle close time")
    ingest.add_argument("--end", type=iso_arg, help="ISO-8601 end (UTC); default: now")
    ingest.add_argument(
        "--asset",
        dest="assets",
        action="append",
        metavar="SYMBOL",
        help="only this asset (repeatable); default: every enabled asset",
    )
    ingest.add_argument("--json", action="store_true", help="print the report as JSON")
    ingest.set_defaults(handler=cmd_ingest)

    assets = commands.add_parser("assets", help="the asset universe (what races)")
    sub = assets.add_subparsers(dest="assets_command", required=True)
    add = sub.add_parser("add", help="add an asset (or re-enable it)")
    add.add_argument("symbol", metavar="SYMBOL", help="ticker, e.g. SOL")
    add.add_argument("coingecko_id", metavar="COINGECKO_ID", help="CoinGecko coin id, e.g. solana")
    add.add_argument("--name", help="display name (default: derived from the id)")
    add.add_argument("--disabled", action="store_true", help="add it disabled")
    add.set_defaults(handler=cmd_assets_add)
    listing = sub.add_parser("list", help="list assets with their stored candles")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    listing.set_defaults(handler=cmd_assets_list)
    for name, enabled in (("enable", True), ("disable", False)):
        toggle = sub.add_parser(name, help=f"{name} an asset (ingestion and trading)")
        toggle.add_argument("symbol", metavar="SYMBOL")
        toggle.set_defaults(handler=cmd_assets_toggle, enabled=enabled)


def cmd_ingest(args: argparse.Namespace) -> int:
    from market.coingecko import CoinGeckoError
    from race.ingest import ingest_coingecko, ingest_sample

    if args.end is not None and args.start is None:
        raise ValueError("--end needs --start")
    app = open_app()
    try:
        bar, update = progress_bar(
            0, f"ingest {args.source}", unit="row" if args.source == "sample" else "call"
        )
        try:
            if args.source == "sample":
                report = ingest_sample(
                    app, symbols=args.assets, start=args.start, end=args.end, on_progress=update
                )
            else:
                report = asyncio.run(
                    ingest_coingecko(
                        app, symbols=args.assets, start=args.start, end=args.end, on_progress=update
                    )
                )
        finally:
            bar.close()
    except CoinGeckoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        app.close()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.render())
    for symbol, error in report.errors.items():
        print(f"error: {symbol}: {error}", file=sys.stderr)
    return 0 if report.ok else 1


def cmd_assets_add(args: argparse.Namespace) -> int:
    from race.universe import add_asset

    app = open_app()
    try:
        row, created = add_asset(
            app.db, args.symbol, args.coingecko_id, app.clock, args.name, enabled=not args.disabled
        )
    finally:
        app.close()
    state = "enabled" if row.enabled else "disabled"
    verb = "added" if created else "already present"
    print(f"{row.symbol} ({row.coingecko_id}, {row.name}): {verb}, {state}")
    return 0


def cmd_assets_toggle(args: argparse.Namespace) -> int:
    from race.universe import set_asset_enabled

    app = open_app()
    try:
        row = set_asset_enabled(app.db, args.symbol, args.enabled)
    finally:
        app.close()
    print(f"{row.symbol}: {'enabled' if row.enabled else 'disabled'}")
    return 0


def cmd_assets_list(args: argparse.Namespace) -> int:
    from race.store.candles import coverage
    from race.universe import list_assets

    app = open_app()
    try:
        rows = list_assets(app.db)
        with app.db.read() as session:
            stored = coverage(session)
    finally:
        app.close()
    items = [
        {
            "symbol": row.symbol,
            "coingeckoId": row.coingecko_id,
            "name": row.name,
            "enabled": row.enabled,
            "candles": stored[row.id].candles if row.id in stored else 0,
            "firstClose": iso(stored[row.id].first_close) if row.id in stored else None,
            "lastClose": iso(stored[row.id].last_close) if row.id in stored else None,
        }
        for row in rows
    ]
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    if not items:
        print("no assets: add one with `python -m race assets add BTC bitcoin`")
        return 0
    header = ("symbol", "coingecko id", "name", "enabled", "candles", "first close", "last close")
    table = [
        (
            i["symbol"],
            i["coingeckoId"],
            i["name"],
            "yes" if i["enabled"] else "no",
            f"{i['candles']:,}",
            i["firstClose"] or "-",
            i["lastClose"] or "-",
        )
        for i in items
    ]
    widths = [max(len(h), *(len(str(r[n])) for r in table)) for n, h in enumerate(header)]
    for line in (header, tuple("-" * w for w in widths), *table):
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    return 0
