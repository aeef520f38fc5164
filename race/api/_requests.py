"""Request bodies checked in words, before anything parses them.

A body is JSON sent as JSON: one with another (or no) ``Content-Type`` is a 415 naming the
header to send; one that is not JSON says where parsing stopped (line and column); one
nested deeper than :data:`MAX_JSON_DEPTH` is a 400 (Python's parser would recurse until a
``RecursionError``). Shared by the API's middleware and the Functions ``start_backfill``.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects a request body may have (the admin bodies are
flat objects: anything deeper is a mistake or an attack on the parser)."""

JSON_HEADER = "Content-Type: application/json"

# A string (possibly unterminated: it then runs to the end) or one bracket.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


class ApiError(Exception):
    """An error answer: ``status`` and a one-line ``message`` for ``{"message": …}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def is_json_media_type(content_type: str | bytes | None) -> bool:
    """Whether ``content_type`` is ``application/json`` or ``application/*+json`` (any
    parameters, e.g. ``; charset=utf-8``)."""
    if content_type is None:
        return False
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def require_json_content_type(content_type: str | bytes | None, body: bytes) -> None:
    """A non-empty ``body`` must be sent as JSON: :class:`ApiError` 415 naming the header
    otherwise (an empty body needs no type)."""
    if not body or is_json_media_type(content_type):
        return
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    sent = "no Content-Type" if not content_type else f"Content-Type {content_type[:80]!r}"
    raise ApiError(415, f"the body must be JSON sent with the header {JSON_HEADER} (got {sent})")


def json_depth(body: bytes) -> int:
    """How deep arrays and objects nest in ``body`` (brackets inside strings not counted)."""
    depth = deepest = 0
    for token in _TOKENS.finditer(body):
        char = token.group()[:1]
        if char in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif char in (b"]", b"}"):
            depth -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json_body(body: bytes) -> Any:
    """The JSON value of ``body``; :class:`ApiError` 400 saying what is wrong in words:
    not UTF-8, nested too deep, or where parsing stopped."""
    depth = json_depth(body)
    if depth > MAX_JSON_DEPTH:
        raise ApiError(
            400,
            f"the body is not acceptable JSON: arrays and objects nest {depth} levels deep, "
            f"at most {MAX_JSON_DEPTH} are allowed",
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, f"the body is not UTF-8 text: invalid byte at position {exc.start}"
        ) from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        message = exc.msg[:1].lower() + exc.msg[1:]
        raise ApiError(
            400,
            f"the body is not valid JSON: parsing stopped at line {exc.lineno}, column "
            f"{exc.colno} ({message})",
        ) from None
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {str(exc)[:120]}") from None


def check_json_body(content_type: str | bytes | None, body: bytes) -> Any:
    """A request body checked in order: its type (415), then its JSON (400). Returns the
    parsed value (None for an empty body)."""
    require_json_content_type(content_type, body)
    return parse_json_body(body) if body else None
