"""Engines, sessions and migrations for the configured ``RACE_DATABASE_URL``.

SQLite runs in WAL mode with a busy timeout, so concurrent writers wait instead of failing,
and write transactions start with ``BEGIN IMMEDIATE`` (a deferred transaction that reads
first could not wait for the write lock). PostgreSQL and SQL Server use the driver's
transactions; every writer uses optimistic version checks and unique keys, which hold on
any backend.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from race.store.connections import (
    _active,
    _current_deadline,
    _Deadline,
    _DeadlinePool,
    _server_setup,
    _sqlite_setup,
)
from race.store.errors import PUBLIC_MESSAGES as PUBLIC_MESSAGES  # re-exported
from race.store.errors import (
    DatabaseError,
    DatabaseTimeout,
    _first_line,
    _scheme,
    schema_outdated,
)
from race.store.urls import safe_url, scrub

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_SECONDS = 3.0
STATEMENT_TIMEOUT_SECONDS = 30.0


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
        return self.has_table("alembic_version")

    def has_table(self, name: str) -> bool:
        with self.engine.connect() as connection:
            return inspect(connection).has_table(name)

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
        self._migrate(lambda config: command.upgrade(config, revision))

    def downgrade(self, revision: str) -> None:
        """Undo Alembic migrations down to ``revision``."""
        from alembic import command

        self.require_schema()
        self._migrate(lambda config: command.downgrade(config, revision))

    def _migrate(self, run: Callable[[Any], None]) -> None:
        """``run`` (an Alembic command) in one transaction. On SQLite, batch migrations
        rebuild tables that others reference: foreign keys are off while they run (set
        outside the transaction, the only place the pragma works) and every reference is
        checked before the commit."""
        with self.engine.connect() as connection:
            raw: Any = connection.connection.dbapi_connection
            if self.is_sqlite:
                raw.execute("PRAGMA foreign_keys = OFF")
            try:
                with connection.begin():
                    run(alembic_config(connection))
                    if self.is_sqlite:
                        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                        if broken:
                            raise DatabaseError(
                                f"migration left {len(broken)} broken reference(s), first: "
                                f"{tuple(broken[0])}; nothing was changed",
                                kind="schema",
                            )
            finally:
                if self.is_sqlite:
                    raw.execute("PRAGMA foreign_keys = ON")

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
