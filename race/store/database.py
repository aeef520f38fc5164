"""Engines, sessions and migrations for the configured ``RACE_DATABASE_URL``.

SQLite runs in WAL mode with a busy timeout, so concurrent writers wait instead of failing,
and write transactions start with ``BEGIN IMMEDIATE`` (a deferred transaction that reads
first could not wait for the write lock). PostgreSQL and SQL Server use the driver's
transactions; every writer uses optimistic version checks and unique keys, which hold on
any backend.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from race.store.urls import safe_url, scrub

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_SECONDS = 3.0
STATEMENT_TIMEOUT_SECONDS = 30.0
LIBPQ_MIN_CONNECT_TIMEOUT = 2  # libpq treats anything lower as 2 s
TCP_KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}


PUBLIC_MESSAGES = {
    "unreachable": "database unavailable: check RACE_DATABASE_URL",
    "timeout": "database unavailable (no answer in time): check RACE_DATABASE_URL",
    "schema": "database schema is behind the code: run `python -m race db upgrade`",
    "config": "database misconfigured: check RACE_DATABASE_URL",
    "read_only": "database is read-only: check RACE_DATABASE_URL (file and folder writable)",
    "error": "database error: check RACE_DATABASE_URL",
}


class DatabaseError(RuntimeError):
    """The database cannot be used; the message names ``RACE_DATABASE_URL`` (never the
    password). ``kind`` is one of :data:`PUBLIC_MESSAGES`' keys; ``public`` is the short
    line for anonymous answers: it names the setting, never host, user, port or database."""

    def __init__(self, message: str, *, kind: str = "unreachable") -> None:
        super().__init__(message)
        self.kind = kind if kind in PUBLIC_MESSAGES else "error"

    @property
    def public(self) -> str:
        return PUBLIC_MESSAGES[self.kind]


class DatabaseTimeout(DatabaseError):
    """The database did not answer within a deadline (it hangs: connections stall)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="timeout")


# SQLSTATEs / messages of a schema older than the code (a migration not applied yet).
_SCHEMA_SQLSTATES = ("42P01", "42703")
_SCHEMA_TEXT = ("no such table", "no such column", "does not exist", "invalid column name")


def _scheme(url: str) -> str:
    """The part before ``://`` of a URL that does not parse, if it looks like a scheme (the
    rest may hold a password in a form nothing can recognise)."""
    head, sep, _ = url.partition("://")
    if sep and head.replace("+", "").replace("-", "").replace(".", "").isalnum():
        return head[:40]
    return "?"


def _first_line(exc: BaseException) -> str:
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return detail[0] if detail else exc.__class__.__name__


def schema_outdated(exc: BaseException) -> bool:
    """Whether ``exc`` says a table or column is missing (migrations not applied)."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(code, str) and code in _SCHEMA_SQLSTATES:
        return True
    text_ = str(orig).lower()
    return any(marker in text_ for marker in _SCHEMA_TEXT) and (
        "table" in text_ or "column" in text_ or "relation" in text_
    )


class _Deadline:
    """A client-side deadline for the database work of one thread (see
    :meth:`Database.bounded`): when it passes, the sockets of the connections that work
    uses are shut down, so a read blocked on a database that stopped answering (the
    connection stalls instead of failing) returns at once with a disconnect error."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._connections: list[Any] = []

    def remaining(self) -> float:
        return self.ends - time.monotonic()

    def watch(self, dbapi_connection: Any) -> None:
        with self._lock:
            self._connections.append(dbapi_connection)
            expired = self.expired
        if expired:
            _shut_down(dbapi_connection)

    def forget(self, dbapi_connection: Any) -> None:
        """The connection went back to the pool: another thread may take it next."""
        with self._lock:
            self._connections = [c for c in self._connections if c is not dbapi_connection]

    def expire(self) -> None:
        with self._lock:  # under the lock: a connection is never cut after its check-in
            self.expired = True
            for connection in self._connections:
                _shut_down(connection)


_active = threading.local()


def _current_deadline() -> _Deadline | None:
    return getattr(_active, "deadline", None)


def _shut_down(dbapi_connection: Any) -> None:
    """Shut the socket of a DBAPI connection down (psycopg 3 or 2); the driver then sees a
    closed connection and SQLAlchemy invalidates it."""
    connection = getattr(dbapi_connection, "driver_connection", None) or dbapi_connection
    fileno: int | None = None
    with suppress(Exception):
        pgconn = getattr(connection, "pgconn", None)
        fileno = pgconn.socket if pgconn is not None else connection.fileno()
    if fileno is None or fileno < 0:
        return
    with suppress(OSError):
        duplicate = socket.socket(fileno=os.dup(fileno))
        try:
            duplicate.shutdown(socket.SHUT_RDWR)
        finally:
            duplicate.close()


class _DeadlinePool(QueuePool):
    """A queue pool whose checkout wait is also bounded by the thread's deadline (a read
    never waits 30 s for a connection that hung writers hold)."""

    @property  # type: ignore[override]
    def _timeout(self) -> float:
        base = float(self.__dict__.get("_base_timeout", 30.0))
        deadline = _current_deadline()
        if deadline is None:
            return base
        return max(0.01, min(base, deadline.remaining()))

    @_timeout.setter
    def _timeout(self, value: float) -> None:
        self.__dict__["_base_timeout"] = value


# SQLAlchemy names a pool's logger after its class: keep this one as quiet as its own
# (``sqlalchemy.pool`` logs "Pool recreating", "Invalidate connection" at INFO).
logging.getLogger(f"{__name__}.{_DeadlinePool.__name__}").setLevel(logging.WARNING)


def _server_setup(engine: Engine, connect_timeout: float, statement_timeout: float) -> None:
    """Connect and statement timeouts (PostgreSQL), and the hooks of :meth:`Database.bounded`."""
    postgres = engine.dialect.name == "postgresql"

    @event.listens_for(engine, "do_connect")
    def _on_do_connect(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        if not postgres:
            return
        limit = connect_timeout
        deadline = _current_deadline()
        if deadline is not None:
            left = deadline.remaining()
            if left < 0.5:
                deadline.expired = True
                raise DatabaseTimeout(
                    f"database did not answer within {deadline.seconds:g} s "
                    "(RACE_DB_READ_TIMEOUT_SECONDS)"
                )
            limit = min(limit, left)
        cparams["connect_timeout"] = max(LIBPQ_MIN_CONNECT_TIMEOUT, math.ceil(limit))
        # A peer that vanishes (packets dropped, not refused) is noticed in about a minute,
        # not after the kernel's 15-minute retransmission limit; the URL may override these.
        for key, value in TCP_KEEPALIVE.items():
            cparams.setdefault(key, value)
        if statement_timeout > 0:
            option = f"-c statement_timeout={int(statement_timeout * 1000)}"
            cparams["options"] = f"{cparams.get('options', '')} {option}".strip()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        deadline = _current_deadline()
        if deadline is not None:
            deadline.watch(dbapi_connection)

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection: Any, _record: Any) -> None:
        deadline = _current_deadline()
        if deadline is not None and dbapi_connection is not None:
            deadline.forget(dbapi_connection)

    ping = engine.dialect.do_ping

    def do_ping(dbapi_connection: Any) -> bool:
        deadline = _current_deadline()
        if deadline is not None:
            deadline.watch(dbapi_connection)
        return bool(ping(dbapi_connection))

    engine.dialect.do_ping = do_ping  # type: ignore[method-assign]


def _sqlite_setup(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """Owns one SQLAlchemy engine. Build it once per process (composition root).

    ``sqlite_busy_timeout_ms``: how long a SQLite writer waits for the write lock before
    "database is locked" (the default suits the race; tests shorten it)."""

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        pool_size: int | None = None,
        sqlite_busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
        connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS,
        statement_timeout_seconds: float = STATEMENT_TIMEOUT_SECONDS,
    ) -> None:
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError):
            raise DatabaseError(
                "RACE_DATABASE_URL is not a valid SQLAlchemy URL "
                f"(scheme {_scheme(url)!r}; expected dialect+driver://user:password@host/db)",
                kind="config",
            ) from None
        self.url = parsed
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.dialect == "sqlite":
            database = parsed.database or ""
            if database in ("", ":memory:"):
                raise DatabaseError(
                    "RACE_DATABASE_URL points at an in-memory SQLite database; use a file, "
                    "e.g. sqlite:///race.db",
                    kind="config",
                )
            folder = Path(database).expanduser().resolve().parent
            if not folder.is_dir():
                raise DatabaseError(
                    f"RACE_DATABASE_URL={safe_url(parsed)}: folder {folder} does not exist",
                    kind="config",
                )
            kwargs["connect_args"] = {
                "timeout": sqlite_busy_timeout_ms / 1000,
                "check_same_thread": False,
            }
        else:
            kwargs["pool_pre_ping"] = True
            kwargs["poolclass"] = _DeadlinePool
            if pool_size is not None:
                kwargs["pool_size"] = pool_size
        try:
            self.engine = create_engine(parsed, **kwargs)
        except (ArgumentError, ImportError) as exc:
            raise DatabaseError(
                f"RACE_DATABASE_URL={safe_url(parsed)} cannot be used: {scrub(str(exc), url)}",
                kind="config",
            ) from None
        if self.dialect == "sqlite":
            _sqlite_setup(self.engine, sqlite_busy_timeout_ms)
        else:
            _server_setup(self.engine, connect_timeout_seconds, statement_timeout_seconds)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Database({safe_url(self.url)})"

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def describe(self) -> str:
        return safe_url(self.url)

    def _detail(self, exc: BaseException) -> str:
        """The first line of a driver error, with the password scrubbed (a driver may quote
        its connection string)."""
        return scrub(_first_line(exc), self.url)

    def unavailable(self, exc: BaseException) -> DatabaseError:
        """One line for a database that cannot be used (unreachable, read-only, or its
        schema is behind the code), naming the setting and never the password."""
        if isinstance(exc, DatabaseError):
            return exc
        read_only = self._read_only(exc)
        if read_only is not None:
            return DatabaseError(
                f"RACE_DATABASE_URL={self.describe()}: {read_only}", kind="read_only"
            )
        if schema_outdated(exc):
            return DatabaseError(
                f"RACE_DATABASE_URL={self.describe()} has an outdated schema "
                f"({self._detail(exc)}): run `python -m race db upgrade`",
                kind="schema",
            )
        return DatabaseError(
            f"database unreachable at RACE_DATABASE_URL={self.describe()}: {self._detail(exc)}"
        )

    def _read_only(self, exc: BaseException) -> str | None:
        """What is read-only when SQLite failed to open or write its file ("unable to open
        database file", "attempt to write a readonly database"): the folder (where SQLite
        creates the file and its -wal/-shm companions) or the file, named; else None."""
        if not self.is_sqlite:
            return None
        detail = _first_line(exc).lower()
        if "unable to open database file" not in detail and "readonly database" not in detail:
            return None
        database = self.url.database or ""
        if database.startswith("file:"):
            database = database[5:].split("?", 1)[0]
        path = Path(database).expanduser().resolve()
        fix = "make it writable for this user, or point RACE_DATABASE_URL elsewhere"
        if path.parent.is_dir() and not os.access(path.parent, os.W_OK | os.X_OK):
            return (
                f"the folder {path.parent} is read-only: SQLite needs to create the database "
                f"file and its -wal/-shm files there ({fix})"
            )
        if path.exists() and not os.access(path, os.W_OK):
            return f"the database file {path} is read-only ({fix})"
        if "readonly database" in detail:
            return f"the database file {path} is read-only ({_first_line(exc)})"
        return None

    def failed(self, exc: DBAPIError, what: str) -> DatabaseError:
        """One line for a database error that escaped the retries of ``what``."""
        if isinstance(exc, OperationalError) or exc.connection_invalidated or schema_outdated(exc):
            error = self.unavailable(exc)
            return DatabaseError(f"{what} failed: {error}", kind=error.kind)
        return DatabaseError(
            f"{what} failed at RACE_DATABASE_URL={self.describe()}: "
            f"{exc.__class__.__name__}: {self._detail(exc)}",
            kind="error",
        )

    @contextmanager
    def bounded(self, seconds: float | None) -> Iterator[None]:
        """The database work of this thread inside the block ends within about ``seconds``
        (None or ≤ 0: no bound): waiting for a pooled connection, connecting and every
        statement. Past the deadline the connections in use are shut down and the block
        raises :class:`DatabaseTimeout`. For reads (API): a database that hangs answers 503
        within a few seconds instead of blocking for the whole stall. No effect on SQLite
        (it has its own busy timeout)."""
        if not seconds or seconds <= 0 or self.is_sqlite or _current_deadline() is not None:
            yield
            return
        deadline = _Deadline(seconds)
        timer = threading.Timer(seconds, deadline.expire)
        timer.daemon = True
        _active.deadline = deadline
        timer.start()
        try:
            yield
        except (DBAPIError, PoolTimeout, DatabaseError) as exc:
            if deadline.expired or isinstance(exc, PoolTimeout):
                raise DatabaseTimeout(
                    f"database unreachable at RACE_DATABASE_URL={self.describe()}: no answer "
                    f"within {seconds:g} s"
                ) from None
            raise
        finally:
            timer.cancel()
            _active.deadline = None

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads. Never commits."""
        session = self._sessions()
        try:
            yield session
        except DBAPIError as exc:
            if (
                exc.connection_invalidated
                or isinstance(exc, OperationalError)
                or schema_outdated(exc)
            ):
                raise self.unavailable(exc) from exc
            raise
        finally:
            # close() ends the transaction without committing; loaded objects stay readable.
            session.close()

    @contextmanager
    def rolled_back(self) -> Iterator[Session]:
        """A write transaction that is always rolled back: to try statements (in
        savepoints) without keeping any of them."""
        session = self._sessions()
        if self.is_sqlite:
            session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction: commits on success, rolls back on any error."""
        session = self._sessions()
        if self.is_sqlite:
            session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def ping(self, *, create: bool = False) -> None:
        """Raise :class:`DatabaseError` (naming the setting) unless the database answers.
        A SQLite file that does not exist is an error too, unless ``create`` (connecting
        would create an empty file: only ``db upgrade`` may)."""
        if not create:
            self.require_file()
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except (OperationalError, DBAPIError) as exc:
            raise self.unavailable(exc) from None

    def has_schema(self) -> bool:
        with self.engine.connect() as connection:
            return inspect(connection).has_table("alembic_version")

    def require_file(self) -> None:
        """A SQLite database file that does not exist is a :class:`DatabaseError` naming
        `db upgrade` (any other database: nothing to check)."""
        url = self.engine.url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            path = Path(url.database)
            if not url.database.startswith("file:") and not path.exists():
                raise DatabaseError(
                    f"RACE_DATABASE_URL={self.describe()}: no such database file "
                    f"{str(path)!r}: run `python -m race db upgrade` (or `python -m race demo`)",
                    kind="schema",
                )

    def require_schema(self) -> None:
        self.ping()
        if not self.has_schema():
            raise DatabaseError(
                f"RACE_DATABASE_URL={self.describe()} has no race schema yet: run "
                "`python -m race db upgrade` (or `python -m race demo`)",
                kind="schema",
            )

    def upgrade(self, revision: str = "head") -> None:
        """Apply Alembic migrations up to ``revision``."""
        from alembic import command

        self.ping(create=True)
        with self.engine.begin() as connection:
            config = alembic_config(connection)
            command.upgrade(config, revision)

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(connection: Any | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config
