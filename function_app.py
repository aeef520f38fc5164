"""Azure Functions entry point (Python v2 programming model). Wiring only: every function
calls a ``race`` service. The only module that imports ``azure.functions``.

- ``ingest_market`` (timer, RACE_INGEST_SCHEDULE): new candles, then mark to market.
- ``run_cycle`` (timer, RACE_DECISION_SCHEDULE): the cycle of the scheduled slot. The
  functions that run cycles warm the app up once first (:func:`cycle_runtime`).
- ``retrain_ml`` (timer, RACE_ML_RETRAIN_SCHEDULE; absent when ``off``): the ML models
  retrained on the candles before the slot, promoted only when not worse
  (:func:`race.ml_service.retrain`).
- ``admin_cycles``, ``admin_agent_run``, ``admin_ingest``, ``admin_job`` (HTTP, auth level
  FUNCTION): the admin routes of the ASGI app, behind a function key on Azure; the app
  checks ``X-API-Key`` as well.
- ``start_backfill`` (HTTP POST api/admin/backfills, FUNCTION): a job row + a queue message.
- ``backfill_chunk`` (queue): one time-boxed chunk of a job, re-queued until done.
- ``http_api`` (catch-all HTTP, anonymous): the ASGI app of ``race.api`` — the dashboard's
  read API. The host routes literal segments before the catch-all, so admin paths reach the
  functions above; one that still lands here is refused.

On SQLite the app refuses to start unless ``RACE_ALLOW_SQLITE_ON_HOST=true`` (a local
``func start``): see :func:`refuse_sqlite_on_host`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from urllib.parse import unquote, urlsplit

import azure.functions as func
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

import agents.llama  # noqa: F401 - imported at worker start: the first cycle pays no import
from race.api import (
    ADMIN_PREFIX,
    ApiError,
    admin_backfill_spec,
    create_api,
    job_accepted,
)
from race.bootstrap import App, bootstrap
from race.jobs import create_backfill_job, run_backfill_chunk
from race.logging_setup import configure_logging
from race.schedule import scheduled_time
from race.services import ingest_and_mark
from race.settings import Settings, load_settings
from race.store.database import DatabaseError

log = logging.getLogger("race.functions")


def refuse_sqlite_on_host(settings: Settings) -> None:
    """On a Functions plan a SQLite file sits on a read-only or per-instance disk: every
    instance would race on its own database. Refused, in one log line, unless
    ``RACE_ALLOW_SQLITE_ON_HOST=true`` says this is a local ``func start``."""
    try:
        backend = make_url(settings.database_url).get_backend_name()
    except ArgumentError:
        backend = settings.database_url.partition(":")[0].lower()
    if backend == "sqlite" and not settings.allow_sqlite_on_host:
        message = (
            "refusing to start: RACE_DATABASE_URL is a SQLite database, which the Functions "
            "host cannot share between instances; set RACE_DATABASE_URL to PostgreSQL, or "
            "RACE_ALLOW_SQLITE_ON_HOST=true for a local func start"
        )
        log.critical(message)
        raise RuntimeError("SQLite refused on the Functions host (see the log line above)")


SETTINGS = load_settings()
refuse_sqlite_on_host(SETTINGS)
QUEUE_CONNECTION = SETTINGS.queue_connection
ADMIN = func.AuthLevel.FUNCTION

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@functools.cache
def runtime() -> App:
    """The object graph, built once per worker process (on first use)."""
    configure_logging()
    return bootstrap()


async def cycle_runtime() -> App:
    """The object graph for the functions that run cycles, warmed up before its first one
    (:meth:`App.warm_up`: agents built, SDK imported, a pooled connection; never raises),
    off the event loop. A worker's first cycle then costs what the others do."""
    race = runtime()
    if race.warmed is None:
        await asyncio.to_thread(race.warmed_up)
    return race


@functools.cache
def asgi() -> func.AsgiMiddleware:
    # Backfills travel on the queue here: no in-process runner resumes them.
    return func.AsgiMiddleware(create_api(runtime(), resume_jobs=False))


def _json(status: int, body: object) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


async def _forward(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await asgi().handle_async(req, context)


@app.timer_trigger(arg_name="timer", schedule=SETTINGS.ingest_schedule, use_monitor=True)
async def ingest_market(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.warning("ingest_market is running late (past due)")
    result = await ingest_and_mark(runtime())
    log.info(
        "ingested %s new candles, marked %s portfolios",
        result["totals"]["inserted"],
        result["marked"],
    )
    if result["errors"]:
        log.warning("ingestion incomplete: %s", result["errors"])


@app.timer_trigger(arg_name="timer", schedule=SETTINGS.decision_schedule, use_monitor=True)
async def run_cycle(timer: func.TimerRequest) -> None:
    race = await cycle_runtime()
    cycle_time = scheduled_time(SETTINGS.decision_schedule, race.clock.now())
    if timer.past_due:
        log.warning("run_cycle is running late (past due): cycle %s", cycle_time.isoformat())
    await race.engine.run_scheduled(cycle_time, trigger="timer")


if SETTINGS.ml_retrain_schedule is not None:

    @app.timer_trigger(arg_name="timer", schedule=SETTINGS.ml_retrain_schedule, use_monitor=True)
    async def retrain_ml(timer: func.TimerRequest) -> None:
        from race.ml_service import retrain  # scikit-learn: imported when a slot trains

        race = runtime()
        slot = scheduled_time(SETTINGS.ml_retrain_schedule or "", race.clock.now())
        if timer.past_due:
            log.warning("retrain_ml is running late (past due): slot %s", slot.isoformat())
        for outcome in await asyncio.to_thread(retrain, race, slot):
            log.info(
                "retrain_ml %s: %s@%s %s (%s)",
                slot.isoformat(),
                outcome.name,
                outcome.version,
                outcome.status,
                outcome.reason,
            )


@app.route(route="api/admin/cycles", methods=["POST"], auth_level=ADMIN)
async def admin_cycles(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    await cycle_runtime()
    return await _forward(req, context)


@app.route(route="api/admin/agents/{id}/run", methods=["POST"], auth_level=ADMIN)
async def admin_agent_run(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    await cycle_runtime()
    return await _forward(req, context)


@app.route(route="api/admin/ingest", methods=["POST"], auth_level=ADMIN)
async def admin_ingest(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _forward(req, context)


@app.route(route="api/admin/jobs/{id}", methods=["GET"], auth_level=ADMIN)
async def admin_job(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _forward(req, context)


@app.route(route="api/admin/backfills", methods=["POST"], auth_level=ADMIN)
@app.queue_output(arg_name="queue", queue_name=SETTINGS.backfill_queue, connection=QUEUE_CONNECTION)
async def start_backfill(req: func.HttpRequest, queue: func.Out[str]) -> func.HttpResponse:
    race = runtime()
    try:
        spec = admin_backfill_spec(
            race.settings,
            req.headers.get("x-api-key"),
            req.get_body(),
            race.clock.now(),
            content_type=req.headers.get("content-type"),
        )
        job_id = create_backfill_job(race, spec)
    except ApiError as exc:
        return _json(exc.status, {"message": exc.message})
    except ValueError as exc:  # e.g. no candles in the range
        return _json(400, {"message": str(exc)})
    except (DatabaseError, OperationalError) as exc:
        # The body names the setting only; host, user, database and password stay in the log.
        error = race.db.unavailable(exc)
        log.warning("backfill not started: %s", error)
        return _json(503, {"message": error.public})
    queue.set(json.dumps({"jobId": job_id}))
    return _json(202, job_accepted(job_id).model_dump())


@app.route(route="api/admin/races", methods=["POST"], auth_level=ADMIN)
@app.queue_output(arg_name="queue", queue_name=SETTINGS.backfill_queue, connection=QUEUE_CONNECTION)
async def start_backtest(req: func.HttpRequest, queue: func.Out[str]) -> func.HttpResponse:
    """A backtest race (race/api/admin_races.py): its job travels on the backfill queue."""
    from race.api.admin_races import admin_backtest_start

    race = runtime()
    try:
        accepted, job_id = admin_backtest_start(
            race,
            req.headers.get("x-api-key"),
            req.get_body(),
            content_type=req.headers.get("content-type"),
        )
    except ApiError as exc:
        return _json(exc.status, {"message": exc.message})
    except (DatabaseError, OperationalError) as exc:
        error = race.db.unavailable(exc)
        log.warning("backtest not started: %s", error)
        return _json(503, {"message": error.public})
    queue.set(json.dumps({"jobId": job_id}))
    return _json(202, accepted.model_dump())


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
    # Decoded as the ASGI adapter decodes it (``/api/%61dmin`` is ``/api/admin``).
    path = unquote(urlsplit(req.url).path).rstrip("/").lower()
    if req.method != "OPTIONS" and (path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")):
        # Never past the function key: admin calls go through the functions above.
        return _json(404, {"message": f"no such endpoint: {req.method} {path[:200]}"})
    return await _forward(req, context)
