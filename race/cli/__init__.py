"""``python -m race …`` — the command line. Each command group lives in its own module with
a ``register(subparsers)`` function; :data:`COMMAND_MODULES` lists them."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from race.store.database import DatabaseError
from race.store.urls import mask_text

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
    """Run one command. Expected failures (database, bad input, files, Ctrl-C) end as one
    line on stderr, never a traceback: exit 2 (130 for Ctrl-C)."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        from race.logging_setup import configure_logging

        configure_logging(level=logging.DEBUG if args.verbose else None)
        return int(args.handler(args) or 0)
    except DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:  # a setting: one line, never its value (it may be a secret)
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        what = "settings" if exc.title == "Settings" else exc.title
        print(f"error: invalid {what}: {mask_text(problems)}", file=sys.stderr)
        return 2
    except (ValueError, LookupError) as exc:
        print(f"error: {mask_text(str(exc))}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        line = mask_text(detail[0]) if detail else exc.__class__.__name__
        print(
            f"error: database error ({exc.__class__.__name__}): {line[:300]}; "
            "check RACE_DATABASE_URL",
            file=sys.stderr,
        )
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: finished work is saved; run the same command again to resume",
            file=sys.stderr,
        )
        return 130
