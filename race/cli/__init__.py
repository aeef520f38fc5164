"""``python -m race …`` — the command line. Each command group lives in its own module with
a ``register(subparsers)`` function; :data:`COMMAND_MODULES` lists them."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from race.store.database import DatabaseError
from race.store.lease import BackfillRefused

COMMAND_MODULES = (
    "race.cli.core",
    "race.cli.market",
    "race.cli.demo",
    "race.cli.agents",
    "race.cli.ml",
    "race.cli.serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m race",
        description="AI Trading Race: agents race simulated crypto portfolios.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from race.logging_setup import configure_logging

    configure_logging(level=logging.DEBUG if args.verbose else None)
    try:
        return int(args.handler(args) or 0)
    except DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BackfillRefused as exc:  # another backfill runs (demo, backfill)
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (ValueError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: finished work is saved; run the same command again to resume",
            file=sys.stderr,
        )
        return 130
