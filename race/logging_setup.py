"""Logging: readable text by default, JSON under the Functions host or with
``RACE_LOG_FORMAT=json``. Every record carries the run's context — cycle id, agent id,
provider, correlation id — from :func:`log_context`, and configured secrets are scrubbed
from every message."""

from __future__ import annotations

import json
import logging
import os
import sys
import uuid
from collections.abc import Iterable
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any, TextIO

from race.secrets import SecretPolicy, policy_of

CONTEXT_KEYS = (
    "correlation_id",
    "cycle_id",
    "agent_id",
    "agent",
    "provider",
    "job_id",
    "trigger",
    "asset",
)
_context: ContextVar[dict[str, Any] | None] = ContextVar("race_log_context", default=None)


class log_context:
    """Add fields to every log record made inside the block (and in tasks it starts).

    A class rather than a generator-based context manager: a replay enters one per
    decision, thousands a second."""

    __slots__ = ("_token", "fields")

    def __init__(self, **fields: Any) -> None:
        self.fields = fields
        self._token: Token[dict[str, Any] | None] | None = None

    def __enter__(self) -> dict[str, Any]:
        added = {k: v for k, v in self.fields.items() if v is not None}
        merged = {**(_context.get() or {}), **added}
        self._token = _context.set(merged)
        return merged

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _context.reset(self._token)
            self._token = None


def new_correlation_id() -> str:
    return uuid.uuid4().hex[:16]


class ContextFilter(logging.Filter):
    """Copies the current :func:`log_context` onto each record (explicit extras win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class RedactingFilter(logging.Filter):
    """Replaces any configured secret (the one policy of :mod:`race.secrets`: escaped forms
    too) in a record's message, arguments and traceback with ``[redacted:SETTING]``."""

    def __init__(self, secrets: Iterable[str] | SecretPolicy) -> None:
        super().__init__()
        self.policy = policy_of(secrets)
        self.secrets = self.policy.values

    def _scrub(self, text: str) -> str:
        return self.policy.redact(text)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.policy:
            return True
        message = record.getMessage()
        scrubbed = self._scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and record.exc_info[1] is not None:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self._scrub(formatted)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                payload[key] = value
        if record.exc_text:
            payload["exception"] = record.exc_text
        elif record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = [
            f"{k}={getattr(record, k)}"
            for k in ("cycle_id", "agent", "provider", "correlation_id")
            if getattr(record, k, None) is not None
        ]
        return f"{text} [{' '.join(extras)}]" if extras else text


def _configured_secrets() -> SecretPolicy:
    try:
        from race.settings import load_settings

        return load_settings().secret_policy()
    except Exception:
        return SecretPolicy()


def configure_logging(
    level: int | None = None,
    fmt: str | None = None,
    secrets: Iterable[str] | SecretPolicy | None = None,
    stream: TextIO | None = None,
) -> None:
    fmt = (
        fmt
        or os.environ.get("RACE_LOG_FORMAT")
        or ("json" if os.environ.get("FUNCTIONS_WORKER_RUNTIME") else "text")
    )
    if level is None:
        name = os.environ.get("RACE_LOG_LEVEL", "INFO").upper()
        level = getattr(logging, name, logging.INFO)
    formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    redactor = RedactingFilter(_configured_secrets() if secrets is None else secrets)
    root = logging.getLogger()
    if os.environ.get("FUNCTIONS_WORKER_RUNTIME") and root.handlers:
        # Under the Functions host its worker already ships root records to the host (and
        # Application Insights): format and filter those handlers instead of adding one.
        for existing in root.handlers:
            existing.setFormatter(formatter)
            for old_filter in list(existing.filters):
                if isinstance(old_filter, ContextFilter | RedactingFilter):
                    existing.removeFilter(old_filter)
            existing.addFilter(ContextFilter())
            existing.addFilter(redactor)
        root.setLevel(level)
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter())
    handler.addFilter(redactor)
    for existing in list(root.handlers):
        if getattr(existing, "_race_handler", False):
            root.removeHandler(existing)
    handler._race_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in (
        "httpx",
        "httpx2",
        "httpcore",
        "openai",
        "azure",
        "uvicorn.access",
    ):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    # Alembic's INFO lines (plugins set up, each migration run) only with -v (DEBUG).
    logging.getLogger("alembic").setLevel(level if level <= logging.DEBUG else logging.WARNING)
