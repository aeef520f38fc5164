"""The leaderboard API (``docs/api.md``) and the admin triggers, as one ASGI app.

The same app is served by ``python -m race serve`` (uvicorn) and, through
``function_app.py``, by the Azure Functions host. Reads never write. Every error is JSON
``{"message": …}`` with the right status: 400 for a bad parameter, 404 for an unknown id,
401/403 for admin calls without a valid key, 413 for an oversized body, 415 for a body not
sent as ``application/json`` (400 when it is not JSON, or nests too deep), 502 when an
admin ingest could fetch no asset, 503 when the database is unreachable.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from fastapi_offline import FastAPIOffline
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from race.api import models as m
from race.api import queries as q
from race.api._cache import VersionedCache
from race.api._requests import ApiError, check_json_body
from race.bootstrap import App
from race.domain.timeutil import format_interval, iso, parse_iso
from race.jobs import (
    BackfillSpec,
    LocalJobRunner,
    check_time_range,
    create_backfill_job,
    parse_backfill_request,
)
from race.schedule import scheduled_time
from race.secrets import SecretPolicy
from race.store.database import DatabaseError

log = logging.getLogger("race.api")

ADMIN_PREFIX = "/api/admin"
DOCS_STATIC = "/api/docs/static"

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": m.ErrorBody, "description": "bad parameter"},
    404: {"model": m.ErrorBody, "description": "unknown id"},
    503: {"model": m.ErrorBody, "description": "database unreachable"},
}
ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    401: {"model": m.ErrorBody, "description": "missing or wrong X-API-Key"},
    403: {"model": m.ErrorBody, "description": "admin disabled: RACE_ADMIN_KEY is not set"},
    413: {"model": m.ErrorBody, "description": "body too large"},
    415: {"model": m.ErrorBody, "description": "a body not sent as Content-Type: application/json"},
}


def _json_bytes(content: Any) -> bytes:
    """As :class:`JSONResponse` renders ``content``."""
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


_FRIENDLY = {
    "agent_id": "agent id must be a positive integer",
    "job_id": "job id must be a positive integer",
    "symbol": "symbol must be 1 to 16 letters or digits",
}


_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), "a number" if isinstance(value, int | float) else "null")


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = [str(p) for p in error.get("loc", ()) if p not in ("query", "path", "body")]
        name = ".".join(where) or "request"
        if tuple(error.get("loc", ())) == ("body",) and error.get("type") in (
            "model_attributes_type",
            "dict_type",
            "model_type",
        ):
            parts.append(f"the body must be a JSON object, got {_json_type(error.get('input'))}")
        elif name in _FRIENDLY:
            parts.append(f"{_FRIENDLY[name]}, got {str(error.get('input'))[:40]!r}")
        else:
            parts.append(f"{name}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


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
            await _error(exc.status, exc.message)(scope, receive, send)
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
        too_large = _error(413, f"request body larger than {self.limit} bytes")
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
            await _error(exc.status, exc.message)(scope, receive, send)
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


def authorize_admin(settings: Any, presented: str | bytes | None) -> None:
    """Admin calls need ``X-API-Key`` equal to ``RACE_ADMIN_KEY`` (constant-time compare):
    401 when missing or wrong; 403 when no key is configured (admin disabled, never open)."""
    configured = settings.admin_key
    if configured is None or not configured.get_secret_value():
        raise ApiError(403, "admin endpoints are disabled: set RACE_ADMIN_KEY to enable them")
    if isinstance(presented, str):
        presented = presented.encode("utf-8", "surrogateescape")
    if presented is None or not hmac.compare_digest(
        presented, configured.get_secret_value().encode("utf-8")
    ):
        raise ApiError(401, "missing or wrong X-API-Key")


def backfill_spec(body: bytes | str | None, now: datetime) -> BackfillSpec:
    """The backfill a request body asks for (:func:`race.jobs.parse_backfill_request`), or
    :class:`ApiError` 400 naming the bad field (an ``end`` after ``now`` included)."""
    try:
        return parse_backfill_request(body, now=now)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def admin_backfill_spec(
    settings: Any,
    presented: str | None,
    body: bytes,
    now: datetime,
    *,
    content_type: str | None,
) -> BackfillSpec:
    """``start_backfill`` of the Functions host, checked like the API checks it: the key
    first (403/401), then the size (413), then the body's type (415) and JSON (400), then
    its fields (400)."""
    authorize_admin(settings, presented)
    if len(body) > settings.admin_max_body_bytes:
        raise ApiError(413, f"request body larger than {settings.admin_max_body_bytes} bytes")
    check_json_body(content_type, body)
    return backfill_spec(body, now)


def nothing_fetched(result: dict[str, Any]) -> str | None:
    """The 502 message of an ingestion report (``ingest_and_mark``'s) in which every asset
    failed (none could be fetched), naming each asset's error; None when at least one
    asset was fetched (its report is a 200, with the other assets' ``errors``)."""
    assets = result.get("assets") or []
    errors: dict[str, str] = result.get("errors") or {}
    if not assets or len(errors) < len(assets):
        return None
    symbol, error = next(iter(errors.items()))
    others = f" (nor {', '.join(list(errors)[1:])})" if len(errors) > 1 else ""
    return f"CoinGecko: no asset could be fetched: {symbol}: {error}{others}"[:2000]


def job_accepted(job_id: int) -> m.JobAccepted:
    return m.JobAccepted(
        jobId=str(job_id), status="accepted", statusUrl=f"{ADMIN_PREFIX}/jobs/{job_id}"
    )


ADMIN_KEY_HEADER = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="equal to RACE_ADMIN_KEY (admin endpoints are disabled without it)",
)


async def _raw_body(request: Request) -> bytes:
    return await request.body()


RawBody = Annotated[bytes, Depends(_raw_body)]
"""The request body as sent, for a handler that parses it itself."""

ID_PATTERN = r"^[1-9][0-9]{0,17}$"
AgentId = Annotated[
    str, Path(description="agent id (a positive integer)", max_length=40, pattern=ID_PATTERN)
]


def _agent_id(raw: str) -> int:
    text = raw.strip()
    if not text.isdigit() or len(text) > 18 or int(text) <= 0:
        raise ApiError(400, f"agent id must be a positive integer, got {raw[:40]!r}")
    return int(text)


def _time(raw: datetime | str | None, name: str) -> datetime | None:
    """A request time as aware UTC; :class:`ApiError` 400 naming ``name`` when it is not
    one or lies beyond what ``datetime`` holds once in UTC."""
    if raw is None:
        return None
    try:
        if isinstance(raw, datetime):
            return raw.replace(tzinfo=UTC) if raw.tzinfo is None else raw.astimezone(UTC)
        if len(raw) > 6 and raw[-6] == " " and raw[-3] == ":":  # "+00:00" sent unencoded
            raw = f"{raw[:-6]}+{raw[-5:]}"
        return parse_iso(raw, field=name)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ApiError(400, f"{name} {str(raw)[:64]!r} is out of range") from None


def _health_reasons(
    settings: Any, now: datetime, latest: datetime | None, completed: datetime | None
) -> list[str]:
    """Why the race is ``Degraded``: its newest candle is older than
    ``RACE_HEALTH_MAX_CANDLE_AGE``, or its last completed cycle older than
    ``RACE_HEALTH_MAX_CYCLE_AGE`` (nothing is judged before the first candle or cycle)."""
    reasons = []
    candle_age = settings.health_max_candle_age
    if latest is not None and now - latest > candle_age:
        reasons.append(
            f"newest candle closed {latest.isoformat()}, {_age(now - latest)} ago "
            f"(RACE_HEALTH_MAX_CANDLE_AGE {format_interval(candle_age)}): ingestion is behind"
        )
    cycle_age = settings.health_max_cycle_age
    if completed is not None and now - completed > cycle_age:
        reasons.append(
            f"last completed cycle {completed.isoformat()}, {_age(now - completed)} ago "
            f"(RACE_HEALTH_MAX_CYCLE_AGE {format_interval(cycle_age)}): cycles are not "
            "completing"
        )
    return reasons


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 86_400:
        return f"{seconds // 86_400} d {seconds % 86_400 // 3600} h"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def create_api(
    app: App, *, jobs: LocalJobRunner | None = None, resume_jobs: bool = True
) -> FastAPI:
    """The ASGI app over ``app`` (the composition root's object graph).

    Without ``jobs``, backfills run in this process (:class:`LocalJobRunner`) and, unless
    ``resume_jobs`` is False (the Functions host, where a queue carries the jobs), the
    unfinished ones left by a stopped process are resumed from their cursor."""
    runner = jobs or LocalJobRunner(app)
    if jobs is None and resume_jobs:
        runner.resume_unfinished()
    # Swagger UI's script, style and icon come from the fastapi-offline package, served under
    # /api/docs/static: the docs page works offline and behind networks that block CDNs.
    api = FastAPIOffline(
        static_url=DOCS_STATIC,
        title="AI Trading Race",
        version="1.0",
        summary="Leaderboard, agents, market and admin triggers of the AI trading race.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        swagger_ui_oauth2_redirect_url="/api/docs/oauth2-redirect",
        responses={503: {"model": m.ErrorBody, "description": "database unreachable"}},
    )
    api.state.race = app
    api.state.jobs = runner
    curves = VersionedCache(int(app.settings.api_curve_cache_mb * 1024 * 1024))
    api.state.curves = curves

    read_timeout = app.settings.db_read_timeout_seconds

    def unavailable(exc: BaseException) -> ApiError:
        """503 naming the setting only (the body is anonymous); the details are logged."""
        error = app.db.unavailable(exc)
        log.warning("database unavailable: %s", error)
        return ApiError(503, error.public)

    @contextmanager
    def reading() -> Iterator[Session]:
        try:
            with app.db.bounded(read_timeout), app.db.read() as session:
                yield session
        except (OperationalError, DatabaseError) as exc:
            raise unavailable(exc) from None

    # ------------------------------------------------------------ errors

    @api.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message)

    @api.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, _describe(exc))

    @api.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return _error(404, f"no such endpoint: {request.url.path[:200]}")
        return _error(exc.status_code, str(exc.detail))

    @api.exception_handler(DatabaseError)
    async def _database(_: Request, exc: DatabaseError) -> JSONResponse:
        error = unavailable(exc)
        return _error(error.status, error.message)

    @api.exception_handler(OperationalError)
    async def _unreachable(_: Request, exc: OperationalError) -> JSONResponse:
        error = unavailable(exc)
        return _error(error.status, error.message)

    @api.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path[:200])
        return _error(500, "internal error (logged)")

    # ------------------------------------------------------------ reads

    @api.get("/api/agents", response_model=list[m.AgentSummary], responses=ERRORS, tags=["agents"])
    def list_agents() -> list[m.AgentSummary]:
        """Every agent, by latest equity (descending)."""
        with reading() as session:
            return q.agent_summaries(session)

    @api.get(
        "/api/agents/{agent_id}", response_model=m.AgentDetail, responses=ERRORS, tags=["agents"]
    )
    def get_agent(agent_id: AgentId) -> m.AgentDetail:
        key = _agent_id(agent_id)
        with reading() as session:
            detail = q.agent_detail(session, key, app.clock.now())
        if detail is None:
            raise ApiError(404, f"no agent {key}")
        return detail

    @api.get(
        "/api/agents/{agent_id}/equity",
        response_model=list[m.EquitySnapshot],
        responses=ERRORS,
        tags=["agents"],
    )
    def get_equity(
        agent_id: AgentId,
        from_: Annotated[
            str | None,
            Query(
                alias="from",
                max_length=64,
                description="ISO-8601 start (UTC)",
                json_schema_extra={"format": "date-time"},
            ),
        ] = None,
        to: Annotated[
            str | None,
            Query(
                max_length=64,
                description="ISO-8601 end (UTC)",
                json_schema_extra={"format": "date-time"},
            ),
        ] = None,
        max_points: Annotated[
            int | None,
            Query(
                alias="maxPoints",
                ge=2,
                le=100_000,
                description=(
                    "at most this many points: evenly spread in time, always keeping the "
                    "first, the last, the highest and the lowest. Without it, at most "
                    "RACE_API_EQUITY_DEFAULT_MAX_POINTS (default 1000; 0 = the whole range)"
                ),
            ),
        ] = None,
    ) -> JSONResponse:
        """The equity curve, ascending; ``maxPoints`` downsamples it evenly in time, always
        keeping the first, the last, the highest and the lowest point (a 90-day curve of
        5-minute snapshots holds 26,000 points: the default keeps a dashboard's 50 curves
        light)."""
        key = _agent_id(agent_id)
        start, end = _time(from_, "from"), _time(to, "to")
        if start is not None and end is not None and end < start:
            # Refused like the CLI refuses a reversed range (end before start).
            raise ApiError(400, f"to {end.isoformat()} is before from {start.isoformat()}")
        if max_points is None:
            max_points = app.settings.api_equity_default_max_points or None
        request = (key, start, end, max_points)
        with reading() as session:
            version = q.curve_version(session, key)
            if version is None and not q.agent_exists(session, key):
                raise ApiError(404, f"no agent {key}")
            body = None if version is None else curves.get(request, version)
            if body is None:
                body = _json_bytes(q.equity(session, key, start, end, max_points))
                if version is not None:
                    curves.put(request, version, body)
        # Built in the EquitySnapshot shape (tests validate it) and serialised once per
        # version of the curve: dashboards ask the same curves again and again.
        return Response(body, media_type="application/json")

    @api.get(
        "/api/leaderboard",
        response_model=list[m.LeaderboardEntry],
        responses=ERRORS,
        tags=["leaderboard"],
    )
    def get_leaderboard() -> list[m.LeaderboardEntry]:
        with reading() as session:
            return q.leaderboard(session)

    @api.get(
        "/api/agents/{agent_id}/trades",
        response_model=m.TradePage,
        responses=ERRORS,
        tags=["agents"],
    )
    def get_trades(
        agent_id: AgentId,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> m.TradePage:
        key = _agent_id(agent_id)
        with reading() as session:
            if not q.agent_exists(session, key):
                raise ApiError(404, f"no agent {key}")
            return q.trades(session, key, limit, offset)

    @api.get(
        "/api/agents/{agent_id}/portfolio",
        response_model=m.Portfolio,
        responses=ERRORS,
        tags=["agents"],
    )
    def get_portfolio(agent_id: AgentId) -> m.Portfolio:
        key = _agent_id(agent_id)
        with reading() as session:
            found = q.portfolio(session, key)
        if found is None:
            raise ApiError(404, f"no agent {key}")
        return found

    @api.get(
        "/api/agents/{agent_id}/decisions",
        response_model=list[m.DecisionLog],
        responses=ERRORS,
        tags=["agents"],
    )
    def get_decisions(
        agent_id: AgentId, limit: Annotated[int, Query(ge=1, le=500)] = 50
    ) -> list[m.DecisionLog]:
        key = _agent_id(agent_id)
        with reading() as session:
            if not q.agent_exists(session, key):
                raise ApiError(404, f"no agent {key}")
            return q.decisions(session, key, limit)

    @api.get(
        "/api/market/prices", response_model=list[m.MarketPrice], responses=ERRORS, tags=["market"]
    )
    def get_prices() -> list[m.MarketPrice]:
        with reading() as session:
            return q.market_prices(session)

    @api.get(
        "/api/market/prices/{symbol}",
        response_model=m.MarketPrice,
        responses=ERRORS,
        tags=["market"],
    )
    def get_price(
        symbol: Annotated[str, Path(max_length=16, pattern=r"^[A-Za-z0-9]{1,16}$")],
    ) -> m.MarketPrice:
        clean = symbol.strip()
        with reading() as session:
            asset = q.asset_by_symbol(session, clean)
            price = None if asset is None else q.market_price(session, asset)
        if price is None:
            raise ApiError(404, f"no prices for {clean.upper()}")
        return price

    degraded_since: list[bool] = [False]  # health logs the change, not every probe

    @api.get(
        "/api/health",
        response_model=m.Health,
        responses={503: {"model": m.Health, "description": "unhealthy"}},
        tags=["health"],
    )
    def get_health() -> JSONResponse:
        now = app.clock.now()
        body: dict[str, Any] = {
            "status": "Unhealthy",
            "timestamp": iso(now),
            "database": "Disconnected",
            "activeAgentCount": 0,
            "latestCandleTime": None,
            "latestCandleAgeSeconds": None,
            "lastCycle": None,
        }
        try:
            with app.db.bounded(read_timeout):
                app.db.ping()
                with app.db.read() as session:
                    active, latest, cycle = q.health_facts(session)
                    completed = q.last_completed_cycle(session)
        except (DatabaseError, OperationalError) as exc:
            log.warning("health: database unreachable: %s", app.db.unavailable(exc))
            return JSONResponse(m.Health(**body).model_dump(), status_code=503)
        reasons = _health_reasons(app.settings, now, latest, completed)
        if reasons and not degraded_since[0]:
            log.warning("health: degraded: %s", "; ".join(reasons))
        elif degraded_since[0] and not reasons:
            log.info("health: healthy again")
        degraded_since[0] = bool(reasons)
        body.update(
            status="Degraded" if reasons else "Healthy",
            reasons=reasons,
            database="Connected",
            activeAgentCount=active,
            latestCandleTime=iso(latest),
            latestCandleAgeSeconds=None
            if latest is None
            else round((now - latest).total_seconds(), 3),
            lastCycle=None
            if cycle is None
            else {"time": iso(cycle.cycle_time), "status": cycle.status},
        )
        return JSONResponse(m.Health(**body).model_dump(), status_code=200)

    # ------------------------------------------------------------ admin

    def require_admin(x_api_key: Annotated[str | None, Security(ADMIN_KEY_HEADER)]) -> None:
        """Also checked, first of all, by :class:`AdminGate`; this documents the scheme."""
        authorize_admin(app.settings, x_api_key)

    Admin = Depends(require_admin)

    def _run_async(work: Callable[[], Awaitable[Any]]) -> Any:
        """Run engine work in its own event loop thread (the engine's DB calls block)."""
        return asyncio.run(work())

    def _slot(body: m.CycleRequest | None) -> datetime:
        """The schedule slot of ``at`` (default: now); 400 naming ``at`` when out of range."""
        now = app.clock.now()
        at = _time(body.at if body else None, "at") or now
        if at > now:
            # A cycle after now would move every portfolio past the live cycles to come.
            raise ApiError(400, f"at {at.isoformat()} is in the future (now {now.isoformat()})")
        try:
            return scheduled_time(app.settings.decision_schedule, check_time_range(at, "at"))
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None

    @api.post(
        "/api/admin/cycles",
        response_model=m.CycleRun,
        responses=ADMIN_ERRORS,
        dependencies=[Admin],
        tags=["admin"],
    )
    def run_cycle_now(body: m.CycleRequest | None = None) -> m.CycleRun:
        """Run the decision cycle of the current schedule slot (or of ``at``)."""
        cycle_time = _slot(body)
        report = _run_async(lambda: app.engine.run_cycle(cycle_time, trigger="admin"))
        return m.CycleRun(**report.as_dict())

    @api.post(
        "/api/admin/agents/{agent_id}/run",
        response_model=m.CycleRun,
        responses=ADMIN_ERRORS,
        dependencies=[Admin],
        tags=["admin"],
    )
    def run_agent_now(agent_id: AgentId, body: m.CycleRequest | None = None) -> m.CycleRun:
        """Run one agent for the current schedule slot (or ``at``)."""
        key = _agent_id(agent_id)
        cycle_time = _slot(body)
        with reading() as session:
            if not q.agent_exists(session, key):
                raise ApiError(404, f"no agent {key}")
        report = _run_async(
            lambda: app.engine.run_cycle(cycle_time, trigger="admin", agent_ids=[key])
        )
        return m.CycleRun(**report.as_dict())

    @api.post(
        "/api/admin/ingest",
        response_model=dict[str, Any],
        responses={
            **ADMIN_ERRORS,
            502: {
                "model": m.ErrorBody,
                "description": "CoinGecko refused the key, or no asset could be fetched",
            },
        },
        dependencies=[Admin],
        tags=["admin"],
    )
    def ingest_now() -> dict[str, Any]:
        """Fetch new candles from CoinGecko now, then mark every portfolio to market. 200
        with the report (``errors`` per asset) when at least one asset could be fetched;
        502 when none could (CoinGecko unreachable or refusing) or the key is refused."""
        from market.coingecko import CoinGeckoError
        from race.services import ingest_and_mark

        try:
            result = _run_async(lambda: ingest_and_mark(app))
        except CoinGeckoError as exc:
            # A refused key, a plan limit, CoinGecko down: the upstream's answer, named
            # (the client's messages never carry the key), not a 500 of ours.
            raise ApiError(502, f"CoinGecko: {exc}") from None
        failure = nothing_fetched(result)
        if failure is not None:
            raise ApiError(502, failure)
        return result

    @api.post(
        "/api/admin/backfills",
        response_model=m.JobAccepted,
        status_code=202,
        responses=ADMIN_ERRORS,
        dependencies=[Admin],
        tags=["admin"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": m.BackfillRequest.model_json_schema()}},
            }
        },
    )
    def start_backfill(raw: RawBody) -> m.JobAccepted:
        """Start (or resume) a backfill ``{start, end, interval}``; it runs in chunks. Poll
        the status URL. Times from 1970 to before 2200, an interval of at most 31 days."""
        spec = backfill_spec(raw, app.clock.now())  # the Functions start_backfill's parser too
        try:
            job_id = create_backfill_job(app, spec)
        except ValueError as exc:  # e.g. no candles in the range
            raise ApiError(400, str(exc)) from None
        runner.submit(job_id)
        return job_accepted(job_id)

    @api.get(
        "/api/admin/jobs/{job_id}",
        response_model=m.Job,
        responses=ADMIN_ERRORS,
        dependencies=[Admin],
        tags=["admin"],
    )
    def get_job(job_id: Annotated[str, Path(max_length=40, pattern=ID_PATTERN)]) -> m.Job:
        text = job_id.strip()
        if not text.isdigit() or len(text) > 18 or int(text) <= 0:
            raise ApiError(400, f"job id must be a positive integer, got {job_id[:40]!r}")
        with reading() as session:
            found = q.job(session, int(text))
        if found is None:
            raise ApiError(404, f"no job {text}")
        return found

    # ------------------------------------------------------------ middleware

    # Outermost last: the secret policy on every body, CORS, then the read gate, then the
    # admin key, then the body cap, then the body's JSON.
    api.add_middleware(JsonBody)
    api.add_middleware(BodyLimit, limit=app.settings.admin_max_body_bytes)
    api.add_middleware(AdminGate, settings=app.settings)
    api.add_middleware(ReadGate, limit=app.settings.api_read_concurrency)
    api.add_middleware(
        JsonCORSMiddleware,
        allow_origins=list(app.settings.cors_origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["X-API-Key", "Content-Type"],
        allow_credentials=False,
        max_age=600,
    )
    api.add_middleware(RedactBodies, policy=app.settings.secret_policy())
    api.openapi = functools.partial(_openapi_without_422, api)  # type: ignore[method-assign]
    return api


def _openapi_without_422(api: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, less the 422 ``{detail}`` response it documents for every route
    with parameters: this API answers a bad request 400 ``{message}`` (documented on each
    route), never 422."""
    if api.openapi_schema is None:
        schema = FastAPI.openapi(api)  # builds and caches it in api.openapi_schema
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                if isinstance(operation, dict):
                    operation.get("responses", {}).pop("422", None)
        components = schema.get("components", {}).get("schemas", {})
        text = json.dumps(schema.get("paths", {}))
        for name in ("HTTPValidationError", "ValidationError"):
            if f"#/components/schemas/{name}" not in text:
                components.pop(name, None)
        api.openapi_schema = schema
    return api.openapi_schema
