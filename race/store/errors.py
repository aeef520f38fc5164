"""What the store says when the database cannot be used: one line naming
``RACE_DATABASE_URL`` (never the password), and a short public line for anonymous answers."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

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
