"""``/api/health``: the database, the active agents, the newest candle and cycle; Degraded
(with reasons) when ingestion or the cycles fall behind, 503 when the database is
unreachable."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from race.api import models as m
from race.api import queries as q
from race.api.context import ApiContext, Context
from race.api.routing import AreaRouter
from race.domain.timeutil import format_interval, iso
from race.store.database import DatabaseError
from race.store.reads.health import HealthFacts

log = logging.getLogger("race.api")

router = AreaRouter(tags=["health"])


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 86_400:
        return f"{seconds // 86_400} d {seconds % 86_400 // 3600} h"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def health_reasons(
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


def unhealthy(now: datetime) -> dict[str, Any]:
    """The body of a probe that could not reach the database."""
    return {
        "status": "Unhealthy",
        "timestamp": iso(now),
        "database": "Disconnected",
        "activeAgentCount": 0,
        "latestCandleTime": None,
        "latestCandleAgeSeconds": None,
        "lastCycle": None,
    }


def healthy(now: datetime, facts: HealthFacts, reasons: list[str]) -> dict[str, Any]:
    """The body of a probe that reached the database: Healthy, or Degraded with reasons."""
    latest = facts.latest_candle
    return {
        **unhealthy(now),
        "status": "Degraded" if reasons else "Healthy",
        "reasons": reasons,
        "database": "Connected",
        "activeAgentCount": facts.active_agents,
        "latestCandleTime": iso(latest),
        "latestCandleAgeSeconds": None
        if latest is None
        else round((now - latest).total_seconds(), 3),
        "lastCycle": None
        if facts.last_cycle_time is None
        else {"time": iso(facts.last_cycle_time), "status": facts.last_cycle_status},
    }


def _log_change(context: ApiContext, reasons: list[str]) -> None:
    """Logs when the race turns degraded or healthy again, not every probe."""
    if reasons and not context.degraded[0]:
        log.warning("health: degraded: %s", "; ".join(reasons))
    elif context.degraded[0] and not reasons:
        log.info("health: healthy again")
    context.degraded[0] = bool(reasons)


@router.get(
    "/api/health",
    response_model=m.Health,
    responses={503: {"model": m.Health, "description": "unhealthy"}},
)
def get_health(context: Context) -> JSONResponse:
    app = context.app
    now = app.clock.now()
    try:
        with app.db.bounded(context.read_timeout):
            app.db.ping()
            with app.db.read() as session:
                facts = q.health_facts(session)
    except (DatabaseError, OperationalError) as exc:
        log.warning("health: database unreachable: %s", app.db.unavailable(exc))
        return JSONResponse(m.Health(**unhealthy(now)).model_dump(), status_code=503)
    reasons = health_reasons(app.settings, now, facts.latest_candle, facts.last_completed)
    _log_change(context, reasons)
    return JSONResponse(m.Health(**healthy(now, facts, reasons)).model_dump(), status_code=200)
