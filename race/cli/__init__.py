"""``python -m race …`` — the command line. Each command group lives in its own module with
a ``register(subparsers)`` function; :data:`COMMAND_MODULES` lists them."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from race.settings_files import SettingsSources, read_sources, settings_dir
from race.store.database import DatabaseError
from race.store.lease import BackfillRefused
from race.store.urls import mask_text

COMMAND_MODULES = (
    "race.cli.core",
    "race.cli.market",
    "race.cli.demo",
    "race.cli.agents",
    "race.cli.decisions",
    "race.cli.ml",
    "race.cli.serve",
    "race.cli.report",
    "race.cli.races",
    "race.cli.backtest",
    "race.cli.whatif",
    "race.cli.bundle",
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


def report_origins(sources: SettingsSources) -> None:
    """Under ``-v``: where each setting that is set came from (never its value)."""
    from race.settings import setting_names

    log = logging.getLogger("race.settings")
    for name, origin in sorted(sources.origins(sorted(set(setting_names().values()))).items()):
        log.debug("setting %s from %s", name, origin)
    if not sources.files:
        log.debug("no .env or local.settings.json in %s", settings_dir())


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Expected failures (database, bad input, files, Ctrl-C) end as one
    line on stderr, never a traceback: exit 2 (130 for Ctrl-C)."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        from race.logging_setup import configure_logging

        configure_logging(level=logging.DEBUG if args.verbose else None)
        sources = read_sources()  # a malformed settings file: one error, exit 2
        if args.verbose:
            report_origins(sources)
        return int(args.handler(args) or 0)
    except DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:  # e.g. a read-only SQLite file met by a write
        print(f"error: {_unusable(exc)}", file=sys.stderr)
        return 2
    except BackfillRefused as exc:  # another backfill runs (demo, backfill)
        print(f"error: {exc}", file=sys.stderr)
        return 3
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
    finally:
        from race.cli._common import close_apps

        close_apps()
