"""Logging: readable text by default, JSON under the Functions host or with
``RACE_LOG_FORMAT=json``."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

_CONTEXT_KEYS = ("cycle_id", "agent_id", "provider", "correlation_id", "job_id", "asset")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure_logging(level: int | None = None, fmt: str | None = None) -> None:
    fmt = (
        fmt
        or os.environ.get("RACE_LOG_FORMAT")
        or ("json" if os.environ.get("FUNCTIONS_WORKER_RUNTIME") else "text")
    )
    if level is None:
        name = os.environ.get("RACE_LOG_LEVEL", "INFO").upper()
        level = getattr(logging, name, logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "alembic.runtime.migration", "openai"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
