"""Helpers shared by the command modules."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from race.bootstrap import App, bootstrap
from race.domain.timeutil import parse_iso

_OPENED: list[App] = []


def open_app(*, require_schema: bool = True) -> App:
    """The app for one command; :func:`close_apps` (run by ``main`` when the command ends)
    closes it, so no database connection outlives the command."""
    app = bootstrap()
    _OPENED.append(app)
    if require_schema:
        app.db.require_schema()
    return app


def close_apps() -> None:
    while _OPENED:
        _OPENED.pop().close()


def iso_arg(value: str) -> datetime:
    try:
        return parse_iso(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def progress_bar(
    total: int, desc: str, *, unit: str = "cycle"
) -> tuple[Any, Callable[[int, int], None]]:
    """A tqdm bar on stderr and an ``on_progress(done, total)`` callback that drives it."""
    from tqdm import tqdm

    bar = tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        dynamic_ncols=True,
        disable=None,
        mininterval=0.5,
    )

    def update(done: int, total_now: int) -> None:
        bar.total = total_now
        bar.n = done
        bar.refresh()

    return bar, update
