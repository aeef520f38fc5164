"""Connection set-up per backend: SQLite pragmas and ``BEGIN IMMEDIATE`` writers; server
connect and statement timeouts, TCP keepalives, and the per-thread deadline of
:meth:`race.store.database.Database.bounded` (a pool whose checkout wait honours it, and
sockets shut down when it passes)."""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from contextlib import suppress
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.pool import QueuePool

from race.store.errors import DatabaseTimeout

LIBPQ_MIN_CONNECT_TIMEOUT = 2  # libpq treats anything lower as 2 s
TCP_KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}


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
