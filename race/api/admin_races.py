"""``POST /api/admin/races``: start a backtest race as a job (202 + the job and the race),
worked by the same job runner as the backfills (docs/races.md, docs/api.md). The checks
are :mod:`race.backtest`'s, as for ``python -m race backtest``; LLM and remote agents are
refused here (409: their paid calls need the CLI's confirmation)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from fastapi import Depends
from pydantic import Field

from race.api import models as m
from race.api._requests import ApiError, check_json_body, parse_json_body
from race.api.admin import job_accepted, require_admin
from race.api.auth import ADMIN_PREFIX, authorize_admin
from race.api.context import Context, RawBody
from race.api.errors import ADMIN_ERRORS
from race.api.routing import AreaRouter
from race.backtest import (
    BacktestRequest,
    NetworkAgentRefused,
    NoParticipants,
    backtest_job,
    create_backtest,
    plan_backtest,
)
from race.bootstrap import App
from race.domain import jobs
from race.jobs import BackfillSpec

router = AreaRouter(tags=["admin"], dependencies=[Depends(require_admin)])

NUMBERS = {
    "fee": "fee",
    "slippageBps": "slippage_bps",
    "maxPosition": "max_position",
    "maxOrder": "max_order",
    "startingCapital": "starting_capital",
}
FIELDS = ("start", "end", "interval", "agents", "name", *NUMBERS)
MAX_AGENTS = 100


class BacktestStart(m.Model):
    """The body of ``POST /api/admin/races``."""

    start: datetime
    end: datetime
    interval: str = Field(
        default="1h",
        pattern=r"^[0-9]{1,6}[smhdwSMHDW]$",
        description="decision interval, e.g. 15m, 1h, 1d",
    )
    agents: list[str] | None = Field(
        default=None,
        max_length=MAX_AGENTS,
        description="participants by name or id (default: every active agent that calls no "
        "outside provider); LLM and remote agents are refused (409)",
    )
    name: str | None = Field(
        default=None, min_length=1, max_length=100, description="default: from the range"
    )
    fee: float | None = Field(default=None, ge=0, le=0.5, description="fee rate")
    slippageBps: float | None = Field(default=None, ge=0, le=5000)
    maxPosition: float | None = Field(
        default=None, gt=0, le=1, description="max position, a fraction of equity"
    )
    maxOrder: float | None = Field(default=None, gt=0, description="max order notional, USD")
    startingCapital: float | None = Field(default=None, gt=0, le=1e15, description="USD")


class BacktestAccepted(m.JobAccepted):
    raceId: str
    raceUrl: str


def _text(data: Mapping[str, Any], field: str, default: str | None = None) -> str | None:
    value = data.get(field, default)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 100:
        raise ApiError(400, f"{field} must be a string of at most 100 characters")
    return value


def _number(data: Mapping[str, Any], field: str) -> Decimal | None:
    value = data.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(400, f"{field} must be a number")
    return Decimal(str(value))


def _agents(data: Mapping[str, Any]) -> tuple[str, ...] | None:
    value = data.get("agents")
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) > MAX_AGENTS
        or not all(isinstance(a, str) and len(a) <= 100 for a in value)
    ):
        raise ApiError(
            400, f"agents must be a list of at most {MAX_AGENTS} agent names or ids (strings)"
        )
    return tuple(value)


def backtest_request(raw: bytes, now: datetime) -> BacktestRequest:
    """The request of a body; :class:`ApiError` 400 naming the bad field."""
    data = parse_json_body(raw) if raw else None
    if not isinstance(data, Mapping):
        raise ApiError(400, "body must be a JSON object: {start, end, interval?, agents?, …}")
    unknown = sorted(str(key)[:40] for key in data if key not in FIELDS)
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(unknown)}: known are {', '.join(FIELDS)}")
    texts = {field: _text(data, field) for field in ("start", "end")}
    missing = [field for field, value in texts.items() if value is None]
    if missing:
        raise ApiError(400, f"{' and '.join(missing)} required")
    try:
        spec = BackfillSpec.parse(
            texts["start"] or "", texts["end"] or "", _text(data, "interval", "1h") or ""
        )
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    if spec.end > now:
        raise ApiError(
            400,
            f"end {spec.end.isoformat()} is in the future (now {now.isoformat()}): a backtest "
            "replays only times that have passed",
        )
    numbers = {target: _number(data, field) for field, target in NUMBERS.items()}
    return BacktestRequest(
        start=spec.start,
        end=spec.end,
        interval=spec.interval,
        agents=_agents(data),
        name=_text(data, "name"),
        **numbers,  # type: ignore[arg-type]
    )


RACE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ADMIN_ERRORS,
    409: {
        "model": m.ErrorBody,
        "description": "an LLM or remote agent among the participants, or no agent to race",
    },
}


@router.post(
    f"{ADMIN_PREFIX}/races",
    response_model=BacktestAccepted,
    status_code=202,
    responses=RACE_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": BacktestStart.model_json_schema()}},
        }
    },
)
def start_backtest(raw: RawBody, context: Context) -> BacktestAccepted:
    """Start a backtest: a new race of kind ``backtest`` (the settings' rules with the
    body's changes, frozen), replayed as a job in chunks. Poll the status URL; the race's
    leaderboard is ``GET /api/leaderboard?race=ID``."""
    accepted, job_id = start_backtest_job(context.app, raw)
    context.runner.submit(job_id)
    return accepted


def start_backtest_job(app: App, raw: bytes) -> tuple[BacktestAccepted, int]:
    """The backtest a body asks for, created with its (queued) job: the answer and the job
    id, for a runner or a queue. :class:`ApiError` (400, 409) when it cannot start."""
    request = backtest_request(raw, app.clock.now())
    try:
        plan = plan_backtest(app, request)
        race = create_backtest(app, plan, status=jobs.QUEUED)
    except (NetworkAgentRefused, NoParticipants) as exc:
        raise ApiError(409, str(exc)) from None
    except ValueError as exc:  # a bad field, an unknown agent, no candles, a name taken
        raise ApiError(400, str(exc)) from None
    job_id = backtest_job(app, race)
    accepted = job_accepted(job_id)
    answer = BacktestAccepted(
        **accepted.model_dump(), raceId=str(race.id), raceUrl=f"/api/races/{race.id}"
    )
    return answer, job_id


def admin_backtest_start(
    app: App, presented: str | None, body: bytes, *, content_type: str | None
) -> tuple[BacktestAccepted, int]:
    """The Functions host's ``start_backtest``, checked as the API checks it: the key first
    (403/401), then the size (413), the body's type (415) and JSON (400), then its fields."""
    authorize_admin(app.settings, presented)
    if len(body) > app.settings.admin_max_body_bytes:
        raise ApiError(413, f"request body larger than {app.settings.admin_max_body_bytes} bytes")
    check_json_body(content_type, body)
    return start_backtest_job(app, body)
