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
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from race.secrets import SecretPolicy, database_passwords

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000


class DatabaseError(RuntimeError):
    """The database cannot be used; the message names ``RACE_DATABASE_URL``."""


def safe_url(url: str | URL) -> str:
    """The URL with any password hidden (``user:password@``, ``?password=…``,
    ``odbc_connect=…PWD=…``): for logs and error messages."""
    raw = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    userinfo = re.search(r"//[^:/@]*:(.+)@[^@]*$", raw)
    if userinfo and "@" in userinfo.group(1):
        # An unescaped "@" in the password: a parser would show part of it as the host.
        return f"{raw.split('://', 1)[0]}://<hidden: the password holds an unescaped @>"
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"
    return _hide_passwords(shown, raw)


def _scheme_of(url: str) -> str:
    """What can be shown of a malformed URL: its scheme, if it has one (never the rest)."""
    match = re.match(r"([A-Za-z][A-Za-z0-9+_.-]{0,29})://", url)
    return f"it starts with {match.group(1)!r}" if match else "it has no scheme"


def _hide_passwords(text: str, url: str) -> str:
    return SecretPolicy(
        {f"RACE_DATABASE_URL#{i}": p for i, p in enumerate(database_passwords(url))}
    ).redact(text)


# SQLSTATEs / messages of a schema older than the code (a migration not applied yet).
_SCHEMA_SQLSTATES = ("42P01", "42703")
_SCHEMA_TEXT = ("no such table", "no such column", "does not exist", "invalid column name")


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
    ) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise DatabaseError(
                "RACE_DATABASE_URL is not a valid SQLAlchemy URL "
                f"(expected dialect+driver://user:password@host/database; {_scheme_of(url)})"
            ) from None
        self.url = parsed
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.dialect == "sqlite":
            database = parsed.database or ""
            if database in ("", ":memory:"):
                raise DatabaseError(
                    "RACE_DATABASE_URL points at an in-memory SQLite database; use a file, "
                    "e.g. sqlite:///race.db"
                )
            folder = Path(database).expanduser().resolve().parent
            if not folder.is_dir():
                raise DatabaseError(
                    f"RACE_DATABASE_URL={safe_url(parsed)}: folder {folder} does not exist"
                )
            kwargs["connect_args"] = {
                "timeout": sqlite_busy_timeout_ms / 1000,
                "check_same_thread": False,
            }
        else:
            kwargs["pool_pre_ping"] = True
            if pool_size is not None:
                kwargs["pool_size"] = pool_size
            if self.dialect == "postgresql":
                kwargs.setdefault("connect_args", {})["connect_timeout"] = 10
        try:
            self.engine = create_engine(parsed, **kwargs)
        except (ArgumentError, ImportError) as exc:
            raise DatabaseError(
                f"RACE_DATABASE_URL={safe_url(parsed)} cannot be used: "
                f"{_hide_passwords(str(exc), url)}"
            ) from None
        if self.dialect == "sqlite":
            _sqlite_setup(self.engine, sqlite_busy_timeout_ms)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Database({safe_url(self.url)})"

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def describe(self) -> str:
        return safe_url(self.url)

    def unavailable(self, exc: BaseException) -> DatabaseError:
        """One line for a database that cannot be used (unreachable, read-only, or its
        schema is behind the code), naming the setting and never the password."""
        read_only = self._read_only(exc)
        if read_only is not None:
            return DatabaseError(f"RACE_DATABASE_URL={self.describe()}: {read_only}")
        if schema_outdated(exc):
            return DatabaseError(
                f"RACE_DATABASE_URL={self.describe()} has an outdated schema "
                f"({_first_line(exc)}): run `python -m race db upgrade`"
            )
        return DatabaseError(
            f"database unreachable at RACE_DATABASE_URL={self.describe()}: {_first_line(exc)}"
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
            return DatabaseError(f"{what} failed: {error}")
        return DatabaseError(
            f"{what} failed at RACE_DATABASE_URL={self.describe()}: "
            f"{exc.__class__.__name__}: {_first_line(exc)}"
        )

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
                    f"{str(path)!r}: run `python -m race db upgrade` (or `python -m race demo`)"
                )

    def require_schema(self) -> None:
        self.ping()
        if not self.has_schema():
            raise DatabaseError(
                f"RACE_DATABASE_URL={self.describe()} has no race schema yet: run "
                "`python -m race db upgrade` (or `python -m race demo`)"
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
