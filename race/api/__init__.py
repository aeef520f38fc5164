"""The leaderboard API (``docs/api.md``) and the admin triggers, as one ASGI app.

The same app is served by ``python -m race serve`` (uvicorn) and, through
``function_app.py``, by the Azure Functions host. Reads never write. Every error is JSON
``{"message": …}`` with the right status: 400 for a bad parameter, 404 for an unknown id,
401/403 for admin calls without a valid key, 413 for an oversized body, 415 for a body not
sent as ``application/json`` (400 when it is not JSON, or nests too deep), 502 when an
admin ingest could fetch no asset, 503 when the database is unreachable.

One router per area (:mod:`~race.api.agents`, :mod:`~race.api.leaderboard`, :mod:`~race.api.races`,
:mod:`~race.api.market`, :mod:`~race.api.analytics`, :mod:`~race.api.health`,
:mod:`~race.api.admin`) over the read repositories of :mod:`race.store.reads`; the
middleware in :mod:`~race.api.middleware`, the error handlers in :mod:`~race.api.errors`.
"""

from __future__ import annotations

import functools

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from race.analysis_cache import Analyser
from race.api import (
    admin,
    admin_races,
    agents,
    analytics,
    health,
    leaderboard,
    market,
    models_router,
    races,
)
from race.api import models as m
from race.api._cache import VersionedCache
from race.api._requests import ApiError
from race.api.admin import admin_backfill_spec, backfill_spec, job_accepted, nothing_fetched
from race.api.auth import ADMIN_KEY_HEADER, ADMIN_PREFIX, authorize_admin
from race.api.context import ApiContext
from race.api.errors import ADMIN_ERRORS, ERRORS, install_error_handlers, openapi_without_422
from race.api.middleware import (
    AdminGate,
    BodyLimit,
    JsonBody,
    JsonCORSMiddleware,
    ReadGate,
    RedactBodies,
    install_middleware,
)
from race.bootstrap import App
from race.jobs import LocalJobRunner

__all__ = [
    "ADMIN_ERRORS",
    "ADMIN_KEY_HEADER",
    "ADMIN_PREFIX",
    "DOCS_STATIC",
    "ERRORS",
    "AdminGate",
    "ApiError",
    "BodyLimit",
    "JsonBody",
    "JsonCORSMiddleware",
    "ReadGate",
    "RedactBodies",
    "admin_backfill_spec",
    "authorize_admin",
    "backfill_spec",
    "create_api",
    "job_accepted",
    "nothing_fetched",
]

DOCS_STATIC = "/api/docs/static"


def _docs_app() -> FastAPI:
    # Swagger UI's script, style and icon come from the fastapi-offline package, served under
    # /api/docs/static: the docs page works offline and behind networks that block CDNs.
    return FastAPIOffline(
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
    api = _docs_app()
    context = ApiContext(
        app=app,
        runner=runner,
        curves=VersionedCache(int(app.settings.api_curve_cache_mb * 1024 * 1024)),
        read_timeout=app.settings.db_read_timeout_seconds,
        analyser=Analyser.from_settings(app.settings),
    )
    app.on_close(context.analyser.close)  # its worker process, if a refresh started one
    api.state.race = app
    api.state.jobs = runner
    api.state.curves = context.curves
    api.state.context = context
    install_error_handlers(api, context.unavailable)
    # analytics first: its /decisions/analytics precedes agents' parametrised routes
    areas = (
        analytics,
        agents,
        leaderboard,
        market,
        health,
        admin,
        admin_races,
        models_router,
        races,
    )
    for area in areas:
        area.router.install(api)
    install_middleware(api, app.settings)
    api.openapi = functools.partial(openapi_without_422, api)  # type: ignore[method-assign]
    return api
