"""``python -m race …`` — the command line. Each command group lives in its own module with
a ``register(subparsers)`` function; :data:`COMMAND_MODULES` lists them."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from sqlalchemy.exc import OperationalError

from race.store.database import DatabaseError

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


def _unusable(exc: OperationalError) -> str:
    """One line for a database that failed a command midway (read-only, gone away), in
    the words of :meth:`race.store.database.Database.unavailable`: the setting named, the
    password hidden."""
    from race.settings import load_settings
    from race.store.database import Database

    try:
        return str(Database(load_settings().database_url).unavailable(exc))
    except Exception:  # the settings themselves are broken: say what the driver said
        return f"the database failed: {type(exc.orig or exc).__name__}"


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
    except OperationalError as exc:  # e.g. a read-only SQLite file met by a write
        print(f"error: {_unusable(exc)}", file=sys.stderr)
        return 2
    except (ValueError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: finished work is saved; run the same command again to resume",
            file=sys.stderr,
        )
        return 130
