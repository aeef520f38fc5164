"""The unit of work: transactions, and the one retry policy for transient database errors.

A unit of work runs one whole transaction (``work``, which opens its session through
:meth:`UnitOfWork.read` or :meth:`UnitOfWork.write`): a write commits only when the block
succeeds and rolls back otherwise (:meth:`race.store.database.Database.write`). A transient
error — a dropped connection, a deadlock, a serialization failure, SQLite's "database is
locked" — runs the same transaction again a bounded number of times, waiting on the injected
clock between tries; anything else is raised at once. There is no other retry of database
work: every use case goes through here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, StatementError
from sqlalchemy.orm import Session

from race.clock import Clock, SystemClock
from race.store.database import Database, DatabaseError

log = logging.getLogger("race.store")

T = TypeVar("T")
K = TypeVar("K")

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

UNSTORABLE_ERRORS = (StatementError, ValueError, TypeError, OverflowError)
"""Errors binding a value (before the database sees it): the step, not the database."""

RETRY_ATTEMPTS = 3
RETRY_DELAY_SECONDS = 0.2


def is_transient(exc: BaseException) -> bool:
    """Whether running the same transaction again may succeed."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if isinstance(code, str) and code in _TRANSIENT_SQLSTATES:
        return True
    text = str(exc.orig).lower()
    return isinstance(exc, OperationalError) and any(t in text for t in _TRANSIENT_TEXT)


def connection_lost(exc: BaseException) -> bool:
    """A real loss of the database (the connection dropped or could not be made), as
    opposed to a statement the database refused (bad data, a constraint): only the first
    is "database down"."""
    if isinstance(exc, DatabaseError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    return bool(
        exc.connection_invalidated or isinstance(exc, OperationalError) or is_transient(exc)
    )


def short_error(exc: BaseException) -> str:
    """One line naming a refused statement's error (not redacted: callers redact it)."""
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {detail[0] if detail else ''}"[:300]


class Unstorable(Exception):
    """The database refused what was written (a value, not the connection)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def with_db_retry(
    work: Callable[[], T],
    *,
    attempts: int = RETRY_ATTEMPTS,
    delay: float = RETRY_DELAY_SECONDS,
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


def blocking_sleep(clock: Clock) -> Callable[[float], None]:
    """A synchronous wait on ``clock``, for the retries of (synchronous) database work: the
    system clock waits for real; another clock (a test's manual clock) is moved by running
    its ``sleep`` to completion, which must not need an event loop to finish."""
    if isinstance(clock, SystemClock):
        return time.sleep

    def wait(seconds: float) -> None:
        _run_to_completion(clock.sleep(seconds))

    return wait


def _run_to_completion(coroutine: Coroutine[Any, Any, None]) -> None:
    try:
        while True:
            if coroutine.send(None) is not None:  # it awaits a real future: not a fake clock
                coroutine.close()
                raise RuntimeError("this clock's sleep needs an event loop")
    except StopIteration:
        return


class UnitOfWork:
    """Transactions over ``db`` and the one retry policy for transient errors."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        attempts: int = RETRY_ATTEMPTS,
        delay: float = RETRY_DELAY_SECONDS,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.attempts = attempts
        self.delay = delay
        self._sleep = sleep or blocking_sleep(clock)

    def read(self) -> AbstractContextManager[Session]:
        """A session for reads; never commits."""
        return self.db.read()

    def write(self) -> AbstractContextManager[Session]:
        """One write transaction: commits when the block succeeds, rolls back otherwise."""
        return self.db.write()

    def rolled_back(self) -> AbstractContextManager[Session]:
        """A transaction that is always rolled back (to try statements in savepoints)."""
        return self.db.rolled_back()

    def retrying(self, work: Callable[[], T], what: str) -> T:
        """``work`` with transient errors retried; every other error as it was raised."""
        return with_db_retry(
            work, attempts=self.attempts, delay=self.delay, sleep=self._sleep, what=what
        )

    def run(self, work: Callable[[], T], what: str) -> T:
        """``work`` (one whole transaction) with transient errors retried; a database error
        that remains becomes one clear :class:`DatabaseError`. ``IntegrityError`` passes
        through: callers read it as a race lost to another run."""
        try:
            return self.retrying(work, what)
        except IntegrityError:
            raise
        except DBAPIError as exc:
            raise self.db.failed(exc, what) from exc

    def store(self, work: Callable[[], T], what: str, redact: Callable[[str], str]) -> T:
        """Like :meth:`run`, but a statement the database refuses (a value, not the
        connection) is :class:`Unstorable` (its reason redacted by ``redact``);
        ``IntegrityError`` passes through."""
        try:
            return self.retrying(work, what)
        except IntegrityError:
            raise
        except DBAPIError as exc:
            raise self.refused(exc, what, redact) from exc
        except UNSTORABLE_ERRORS as exc:
            raise Unstorable(redact(short_error(exc))) from exc

    def refused(
        self, exc: DBAPIError, what: str, redact: Callable[[str], str]
    ) -> DatabaseError | Unstorable:
        """What a database error that escaped the retries means: the database lost
        (:class:`DatabaseError`), or a value it refused (:class:`Unstorable`)."""
        if connection_lost(exc):
            return self.db.failed(exc, what)
        return Unstorable(redact(short_error(exc)))

    def refusals(
        self, works: Mapping[K, Callable[[Session], object]], what: str
    ) -> dict[K, BaseException]:
        """Which of ``works`` the database refuses, with its error: each is tried in a
        savepoint of one transaction that is then rolled back (nothing is written). A lost
        database is a :class:`DatabaseError` for ``what``."""
        found: dict[K, BaseException] = {}
        with self.rolled_back() as session:
            for key, work in works.items():
                nested = session.begin_nested()
                try:
                    work(session)
                    session.flush()
                    nested.rollback()
                except DBAPIError as exc:
                    if connection_lost(exc):
                        raise self.db.failed(exc, what) from exc
                    nested.rollback()
                    found[key] = exc
                except UNSTORABLE_ERRORS as exc:
                    nested.rollback()
                    found[key] = exc
        return found
