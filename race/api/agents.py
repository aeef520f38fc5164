"""``/api/agents``: every agent, one agent's detail, equity curve, trades, portfolio and
decisions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Query
from fastapi.responses import Response

from race.api import models as m
from race.api import queries as q
from race.api._requests import ApiError
from race.api.context import (
    AgentId,
    ApiContext,
    Context,
    RaceParam,
    agent_key,
    race_key,
    request_time,
)
from race.api.errors import ERRORS
from race.api.routing import AreaRouter
from race.api.serialise import json_bytes

router = AreaRouter(tags=["agents"])

From = Annotated[
    str | None,
    Query(
        alias="from",
        max_length=64,
        description="ISO-8601 start (UTC)",
        json_schema_extra={"format": "date-time"},
    ),
]
To = Annotated[
    str | None,
    Query(
        max_length=64, description="ISO-8601 end (UTC)", json_schema_extra={"format": "date-time"}
    ),
]
MaxPoints = Annotated[
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
]
Limit = Annotated[int, Query(ge=1, le=500)]


@router.get("/api/agents", response_model=list[m.AgentSummary], responses=ERRORS)
def list_agents(context: Context, race: RaceParam = None) -> list[m.AgentSummary]:
    """Every agent of the race (default: the live race), by latest equity (descending)."""
    with context.reading() as session:
        return q.agent_summaries(session, race_key(session, race))


@router.get("/api/agents/{agent_id}", response_model=m.AgentDetail, responses=ERRORS)
def get_agent(agent_id: AgentId, context: Context, race: RaceParam = None) -> m.AgentDetail:
    key = agent_key(agent_id)
    with context.reading() as session:
        detail = q.agent_detail(session, key, context.app.clock.now(), race_key(session, race))
    if detail is None:
        raise ApiError(404, f"no agent {key}")
    return detail


def _curve(
    context: ApiContext,
    key: int,
    start: datetime | None,
    end: datetime | None,
    max_points: int | None,
    race: str | None,
) -> bytes:
    """The serialised curve, from the cache while the curve's version holds; 404 when no
    such agent (or race) exists."""
    with context.reading() as session:
        race_id = race_key(session, race)
        request = (key, start, end, max_points, race_id)
        version = q.curve_version(session, key, race_id)
        if version is None and not q.agent_exists(session, key):
            raise ApiError(404, f"no agent {key}")
        body = None if version is None else context.curves.get(request, version)
        if body is None:
            body = json_bytes(q.equity(session, key, start, end, max_points, race_id))
            if version is not None:
                context.curves.put(request, version, body)
    return body


@router.get(
    "/api/agents/{agent_id}/equity", response_model=list[m.EquitySnapshot], responses=ERRORS
)
def get_equity(
    agent_id: AgentId,
    context: Context,
    from_: From = None,
    to: To = None,
    max_points: MaxPoints = None,
    race: RaceParam = None,
) -> Response:
    """The equity curve, ascending; ``maxPoints`` downsamples it evenly in time, always
    keeping the first, the last, the highest and the lowest point (a 90-day curve of
    5-minute snapshots holds 26,000 points: the default keeps a dashboard's 50 curves
    light)."""
    key = agent_key(agent_id)
    start, end = request_time(from_, "from"), request_time(to, "to")
    if start is not None and end is not None and end < start:
        # Refused like the CLI refuses a reversed range (end before start).
        raise ApiError(400, f"to {end.isoformat()} is before from {start.isoformat()}")
    if max_points is None:
        max_points = context.app.settings.api_equity_default_max_points or None
    body = _curve(context, key, start, end, max_points, race)
    # Built in the EquitySnapshot shape (tests validate it) and serialised once per
    # version of the curve: dashboards ask the same curves again and again.
    return Response(body, media_type="application/json")


@router.get("/api/agents/{agent_id}/trades", response_model=m.TradePage, responses=ERRORS)
def get_trades(
    agent_id: AgentId,
    context: Context,
    limit: Limit = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    race: RaceParam = None,
) -> m.TradePage:
    key = agent_key(agent_id)
    with context.reading() as session:
        race_id = race_key(session, race)
        if not q.agent_exists(session, key):
            raise ApiError(404, f"no agent {key}")
        return q.trades(session, key, limit, offset, race_id)


@router.get("/api/agents/{agent_id}/portfolio", response_model=m.Portfolio, responses=ERRORS)
def get_portfolio(agent_id: AgentId, context: Context, race: RaceParam = None) -> m.Portfolio:
    key = agent_key(agent_id)
    with context.reading() as session:
        found = q.portfolio(session, key, race_key(session, race))
    if found is None:
        raise ApiError(404, f"no agent {key}")
    return found


@router.get(
    "/api/agents/{agent_id}/decisions", response_model=list[m.DecisionLog], responses=ERRORS
)
def get_decisions(
    agent_id: AgentId, context: Context, limit: Limit = 50, race: RaceParam = None
) -> list[m.DecisionLog]:
    key = agent_key(agent_id)
    with context.reading() as session:
        race_id = race_key(session, race)
        if not q.agent_exists(session, key):
            raise ApiError(404, f"no agent {key}")
        return q.decisions(session, key, limit, race_id)
