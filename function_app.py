"""Azure Functions entry point (Python v2 programming model). Wiring only: every function
calls a ``race`` service. The only module that imports ``azure.functions``.

- ``ingest_market`` (timer, RACE_INGEST_SCHEDULE): new candles, then mark to market.
- ``run_cycle`` (timer, RACE_DECISION_SCHEDULE): the cycle of the scheduled slot.
- ``start_backfill`` (POST api/admin/backfills): a job row + a queue message.
- ``backfill_chunk`` (queue): one time-boxed chunk of a job, re-queued until done.
- ``http_api`` (catch-all HTTP, anonymous): the ASGI app of ``race.api`` — the dashboard API
  and the other admin triggers (admin calls check ``X-API-Key`` in the app itself).
"""

from __future__ import annotations

import functools
import json
import logging

import azure.functions as func

import agents.llama  # noqa: F401 - imported at worker start: the first cycle pays no import
from race.api import ApiError, authorize_admin, create_api
from race.bootstrap import App, bootstrap
from race.jobs import BackfillSpec, create_backfill_job, run_backfill_chunk
from race.logging_setup import configure_logging
from race.schedule import scheduled_time
from race.services import ingest_and_mark
from race.settings import load_settings

SETTINGS = load_settings()
QUEUE_CONNECTION = SETTINGS.queue_connection
log = logging.getLogger("race.functions")

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@functools.cache
def runtime() -> App:
    """The object graph, built once per worker process (on first use)."""
    configure_logging()
    return bootstrap()


@functools.cache
def asgi() -> func.AsgiMiddleware:
    return func.AsgiMiddleware(create_api(runtime()))


def _json(status: int, body: object) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


@app.timer_trigger(arg_name="timer", schedule=SETTINGS.ingest_schedule, use_monitor=True)
async def ingest_market(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.warning("ingest_market is running late (past due)")
    result = await ingest_and_mark(runtime())
    log.info(
        "ingested %s new candles, marked %s portfolios",
        result.get("inserted"),
        result.get("marked"),
    )


@app.timer_trigger(arg_name="timer", schedule=SETTINGS.decision_schedule, use_monitor=True)
async def run_cycle(timer: func.TimerRequest) -> None:
    race = runtime()
    cycle_time = scheduled_time(SETTINGS.decision_schedule, race.clock.now())
    if timer.past_due:
        log.warning("run_cycle is running late (past due): cycle %s", cycle_time.isoformat())
    await race.engine.run_cycle(cycle_time, trigger="timer")


@app.route(route="api/admin/backfills", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@app.queue_output(arg_name="queue", queue_name=SETTINGS.backfill_queue, connection=QUEUE_CONNECTION)
async def start_backfill(req: func.HttpRequest, queue: func.Out[str]) -> func.HttpResponse:
    race = runtime()
    try:
        authorize_admin(race.settings, req.headers.get("x-api-key"))
        body = req.get_body()
        if len(body) > race.settings.admin_max_body_bytes:
            raise ApiError(
                413, f"request body larger than {race.settings.admin_max_body_bytes} bytes"
            )
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise ApiError(400, "body must be JSON: {start, end, interval}") from None
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("start"), str)
            or not (isinstance(data.get("end"), str))
        ):
            raise ApiError(400, "body must be JSON: {start, end, interval}")
        try:
            spec = BackfillSpec.parse(data["start"], data["end"], str(data.get("interval", "1h")))
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
    except ApiError as exc:
        return _json(exc.status, {"message": exc.message})
    job_id = create_backfill_job(race, spec)
    queue.set(json.dumps({"jobId": job_id}))
    return _json(
        202, {"jobId": str(job_id), "status": "accepted", "statusUrl": f"/api/admin/jobs/{job_id}"}
    )


@app.queue_trigger(
    arg_name="message", queue_name=SETTINGS.backfill_queue, connection=QUEUE_CONNECTION
)
@app.queue_output(arg_name="queue", queue_name=SETTINGS.backfill_queue, connection=QUEUE_CONNECTION)
async def backfill_chunk(message: func.QueueMessage, queue: func.Out[str]) -> None:
    job_id = int(json.loads(message.get_body())["jobId"])
    race = runtime()
    report = await run_backfill_chunk(race, job_id, race.settings.backfill_chunk_budget_seconds)
    if not report.finished:
        queue.set(json.dumps({"jobId": job_id}))


@app.route(
    route="{*route}",
    methods=["GET", "POST", "OPTIONS", "HEAD"],
    auth_level=func.AuthLevel.ANONYMOUS,
)
async def http_api(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await asgi().handle_async(req, context)
