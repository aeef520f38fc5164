"""Bounded retries of transient database errors: a dropped connection, a deadlock, a
serialization failure, SQLite's "database is locked". Anything else is raised at once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError

log = logging.getLogger("race.store")

T = TypeVar("T")

# SQLSTATE classes/codes that mean "try the same transaction again".
_TRANSIENT_SQLSTATES = ("40001", "40P01", "08000", "08001", "08003", "08004", "08006", "57P01")
_TRANSIENT_TEXT = (
    "database is locked",
    "deadlock",
    "could not serialize",
    "connection reset",
    "server closed the connection",
    "connection refused",
    "terminating connection",
    "ssl syscall error",
    "broken pipe",
)


def is_transient(exc: BaseException) -> bool:
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if isinstance(code, str) and code in _TRANSIENT_SQLSTATES:
        return True
    text = str(exc.orig).lower()
    return isinstance(exc, OperationalError) and any(t in text for t in _TRANSIENT_TEXT)


def with_db_retry(
    work: Callable[[], T],
    *,
    attempts: int = 3,
    delay: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
    what: str = "database write",
) -> T:
    """Run ``work`` (one whole transaction) again after a transient error, at most
    ``attempts`` times in all, waiting ``delay``, 2×``delay``… between tries."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except DBAPIError as exc:
            if attempt >= attempts or not is_transient(exc):
                raise
            wait = delay * 2 ** (attempt - 1)
            log.warning(
                "%s hit a transient database error (attempt %d of %d), retrying in %.1f s: %s",
                what,
                attempt,
                attempts,
                wait,
                str(exc.orig).splitlines()[0] if exc.orig else exc,
            )
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover
