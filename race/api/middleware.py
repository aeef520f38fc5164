"""The ASGI middleware around the routes, outermost last: the secret policy on every
body, CORS, the read gate, the admin key, the admin body's size cap, then its JSON."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from race.api._requests import ApiError, check_json_body
from race.api.auth import ADMIN_PREFIX, authorize_admin
from race.api.errors import error_response
from race.secrets import SecretPolicy


class ReadGate:
    """Lets at most ``limit`` per-agent reads (GET ``/api/agents/{id}/…``) run at once;
    the rest wait their turn in arrival order.

    A dashboard fans out one equity and one decisions request per agent. The handlers run
    in worker threads that share one interpreter lock: unbounded, such a burst would be
    interleaved slice by slice, every request finishing late together, instead of one
    after another. The shared reads (leaderboard, prices, the agent list, health) are not
    queued behind a burst: they stay as quick as the polls of every open tab need."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self._gate: asyncio.Semaphore | None = None

    def _gated(self, scope: Scope) -> bool:
        return (
            self.limit > 0
            and scope["type"] == "http"
            and scope["method"] in ("GET", "HEAD")
            and scope["path"].startswith("/api/agents/")
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._gated(scope):
            await self.app(scope, receive, send)
            return
        if self._gate is None:  # created in the serving event loop
            self._gate = asyncio.Semaphore(self.limit)
        async with self._gate:
            await self.app(scope, receive, send)


class RedactBodies:
    """The secret policy (:mod:`race.secrets`) on every response body: a configured secret
    (or an escaped form of it) that reached an answer by any path is replaced by
    ``[redacted:SETTING]`` before the body leaves (the length is set again)."""

    def __init__(self, app: ASGIApp, policy: SecretPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") == "HEAD" or not self.policy:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def buffered(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            text = body.decode("utf-8", errors="surrogateescape")
            clean = self.policy.redact(text)
            if clean != text:
                body = clean.encode("utf-8", errors="surrogateescape")
                headers = [
                    (name, value)
                    for name, value in start["headers"]
                    if name.lower() != b"content-length"
                ]
                headers.append((b"content-length", str(len(body)).encode()))
                start = {**start, "headers": headers}
            await send(start)
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, buffered)


def _is_admin(scope: Scope, prefix: str = ADMIN_PREFIX) -> bool:
    path = scope["path"]
    return scope["type"] == "http" and (path == prefix or path.startswith(prefix + "/"))


class AdminGate:
    """Checks ``X-API-Key`` of every ``/api/admin/*`` request before anything else reads
    it (body, routing, validation): 403 when ``RACE_ADMIN_KEY`` is not set, 401 when the key
    is missing or wrong. A request without the right key learns nothing about its body."""

    def __init__(self, app: ASGIApp, settings: Any) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_admin(scope):
            await self.app(scope, receive, send)
            return
        presented = next(
            (value for name, value in scope.get("headers") or [] if name.lower() == b"x-api-key"),
            None,
        )
        try:
            authorize_admin(self.settings, presented)
        except ApiError as exc:
            await error_response(exc.status, exc.message)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuses admin requests whose body exceeds ``limit`` bytes (413), declared or not: a
    body sent without ``Content-Length`` (chunked) is read here, at most ``limit`` bytes of
    it, before the app sees it."""

    def __init__(self, app: ASGIApp, limit: int, prefix: str = ADMIN_PREFIX) -> None:
        self.app, self.limit, self.prefix = app, limit, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_admin(scope, self.prefix):
            await self.app(scope, receive, send)
            return
        too_large = error_response(413, f"request body larger than {self.limit} bytes")
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class JsonBody:
    """Checks a non-empty admin request body before the app reads it: 415 unless it is sent
    as ``Content-Type: application/json``, 400 saying where it stops being JSON or that it
    nests too deep (:mod:`race.api._requests`). Inside :class:`BodyLimit`, so the body is
    already capped."""

    def __init__(self, app: ASGIApp, prefix: str = ADMIN_PREFIX) -> None:
        self.app, self.prefix = app, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_admin(scope, self.prefix):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        content_type = dict(scope.get("headers") or []).get(b"content-type")
        try:
            check_json_body(content_type, body)
        except ApiError as exc:
            await error_response(exc.status, exc.message)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class JsonCORSMiddleware(CORSMiddleware):
    """Starlette's CORS middleware, answering a refused preflight with JSON
    ``{"message": …}`` (like every other error) instead of plain text."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        reason = bytes(response.body).decode("utf-8", "replace")
        headers = {
            name: value
            for name, value in response.headers.items()
            if name.lower() not in ("content-type", "content-length")
        }
        return JSONResponse(
            {"message": f"{reason} (allowed origins: RACE_CORS_ORIGINS)"},
            status_code=response.status_code,
            headers=headers,
        )


def install_middleware(api: FastAPI, settings: Any) -> None:
    """Outermost last: the secret policy on every body, CORS, then the read gate, then the
    admin key, then the body cap, then the body's JSON."""
    api.add_middleware(JsonBody)
    api.add_middleware(BodyLimit, limit=settings.admin_max_body_bytes)
    api.add_middleware(AdminGate, settings=settings)
    api.add_middleware(ReadGate, limit=settings.api_read_concurrency)
    api.add_middleware(
        JsonCORSMiddleware,
        allow_origins=list(settings.cors_origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["X-API-Key", "Content-Type"],
        allow_credentials=False,
        max_age=600,
    )
    api.add_middleware(RedactBodies, policy=settings.secret_policy())
