"""``/api/admin/*``: run a cycle or one agent now, ingest now, start a backfill and poll
its job. Every route needs ``X-API-Key`` (checked first by :class:`AdminGate
<race.api.middleware.AdminGate>`); the checks of a backfill request are shared with the
Functions host's ``start_backfill``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Path, Request, Security

from race.api import models as m
from race.api import queries as q
from race.api._requests import ApiError, check_json_body
from race.api.auth import ADMIN_KEY_HEADER, ADMIN_PREFIX, authorize_admin
from race.api.context import (
    ID_PATTERN,
    AgentId,
    ApiContext,
    Context,
    RawBody,
    agent_key,
    request_time,
)
from race.api.errors import ADMIN_ERRORS
from race.api.routing import AreaRouter
from race.jobs import BackfillSpec, check_time_range, create_backfill_job, parse_backfill_request
from race.schedule import scheduled_time


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


def require_admin(
    request: Request, x_api_key: Annotated[str | None, Security(ADMIN_KEY_HEADER)]
) -> None:
    """Also checked, first of all, by :class:`AdminGate`; this documents the scheme."""
    authorize_admin(request.app.state.context.app.settings, x_api_key)


router = AreaRouter(tags=["admin"], dependencies=[Depends(require_admin)])


def _run_async(work: Callable[[], Awaitable[Any]]) -> Any:
    """Run engine work in its own event loop thread (the engine's DB calls block)."""
    return asyncio.run(work())


def _slot(context: ApiContext, body: m.CycleRequest | None) -> datetime:
    """The schedule slot of ``at`` (default: now); 400 naming ``at`` when out of range."""
    now = context.app.clock.now()
    at = request_time(body.at if body else None, "at") or now
    if at > now:
        # A cycle after now would move every portfolio past the live cycles to come.
        raise ApiError(400, f"at {at.isoformat()} is in the future (now {now.isoformat()})")
    try:
        return scheduled_time(context.app.settings.decision_schedule, check_time_range(at, "at"))
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


@router.post(f"{ADMIN_PREFIX}/cycles", response_model=m.CycleRun, responses=ADMIN_ERRORS)
def run_cycle_now(context: Context, body: m.CycleRequest | None = None) -> m.CycleRun:
    """Run the decision cycle of the current schedule slot (or of ``at``)."""
    cycle_time = _slot(context, body)
    report = _run_async(lambda: context.app.engine.run_cycle(cycle_time, trigger="admin"))
    return m.CycleRun(**report.as_dict())


@router.post(
    f"{ADMIN_PREFIX}/agents/{{agent_id}}/run", response_model=m.CycleRun, responses=ADMIN_ERRORS
)
def run_agent_now(
    agent_id: AgentId, context: Context, body: m.CycleRequest | None = None
) -> m.CycleRun:
    """Run one agent for the current schedule slot (or ``at``)."""
    key = agent_key(agent_id)
    cycle_time = _slot(context, body)
    with context.reading() as session:
        if not q.agent_exists(session, key):
            raise ApiError(404, f"no agent {key}")
    report = _run_async(
        lambda: context.app.engine.run_cycle(cycle_time, trigger="admin", agent_ids=[key])
    )
    return m.CycleRun(**report.as_dict())


INGEST_ERRORS: dict[int | str, dict[str, Any]] = {
    **ADMIN_ERRORS,
    502: {
        "model": m.ErrorBody,
        "description": "CoinGecko refused the key, or no asset could be fetched",
    },
}


@router.post(f"{ADMIN_PREFIX}/ingest", response_model=dict[str, Any], responses=INGEST_ERRORS)
def ingest_now(context: Context) -> dict[str, Any]:
    """Fetch new candles from CoinGecko now, then mark every portfolio to market. 200
    with the report (``errors`` per asset) when at least one asset could be fetched;
    502 when none could (CoinGecko unreachable or refusing) or the key is refused."""
    from market.coingecko import CoinGeckoError
    from race.services import ingest_and_mark

    app = context.app
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


@router.post(
    f"{ADMIN_PREFIX}/backfills",
    response_model=m.JobAccepted,
    status_code=202,
    responses=ADMIN_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": m.BackfillRequest.model_json_schema()}},
        }
    },
)
def start_backfill(raw: RawBody, context: Context) -> m.JobAccepted:
    """Start (or resume) a backfill ``{start, end, interval}``; it runs in chunks. Poll
    the status URL. Times from 1970 to before 2200, an interval of at most 31 days."""
    spec = backfill_spec(raw, context.app.clock.now())  # the Functions host's parser too
    try:
        job_id = create_backfill_job(context.app, spec)
    except ValueError as exc:  # e.g. no candles in the range
        raise ApiError(400, str(exc)) from None
    context.runner.submit(job_id)
    return job_accepted(job_id)


@router.get(f"{ADMIN_PREFIX}/jobs/{{job_id}}", response_model=m.Job, responses=ADMIN_ERRORS)
def get_job(
    job_id: Annotated[str, Path(max_length=40, pattern=ID_PATTERN)], context: Context
) -> m.Job:
    text = job_id.strip()
    if not text.isdigit() or len(text) > 18 or int(text) <= 0:
        raise ApiError(400, f"job id must be a positive integer, got {job_id[:40]!r}")
    with context.reading() as session:
        found = q.job(session, int(text))
    if found is None:
        raise ApiError(404, f"no job {text}")
    return found
