"""The one way tests wait for something to happen: poll a condition until it holds, with a
bounded deadline and a clear failure — never a fixed ``sleep`` that hopes it was long
enough. The deadline is a safety net (how long before we call it hung), not a measurement:
a machine under load only makes a passing test slower, never a failing one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

WAIT_TIMEOUT_S = 30.0
"""How long a test waits for something that should happen before it fails as hung."""

POLL_INTERVAL_S = 0.01


def _describe(what: str | Callable[[], str]) -> str:
    return what() if callable(what) else what


def wait_until(
    predicate: Callable[[], T],
    what: str | Callable[[], str],
    limit_s: float = WAIT_TIMEOUT_S,
    interval: float = POLL_INTERVAL_S,
) -> T:
    """Return the first truthy value of ``predicate()``, polled every ``interval`` s. Fails
    with ``timed out after … waiting for <what>`` when ``limit_s`` seconds pass first. An
    exception from ``predicate`` (e.g. an assertion that a process is still alive) ends the
    wait at once. ``what`` may be a callable, to describe the state at the time of failure."""
    deadline = time.monotonic() + limit_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {limit_s:g} s waiting for {_describe(what)}")
        time.sleep(interval)


async def wait_until_async(
    predicate: Callable[[], T],
    what: str | Callable[[], str],
    limit_s: float = WAIT_TIMEOUT_S,
    interval: float = POLL_INTERVAL_S,
) -> T:
    """:func:`wait_until` inside an event loop: polls without blocking the loop."""
    deadline = time.monotonic() + limit_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {limit_s:g} s waiting for {_describe(what)}")
        await asyncio.sleep(interval)
