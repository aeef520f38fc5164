"""``python -m race serve``: the HTTP API (uvicorn) plus the schedules, in-process.

It starts even when the database is unreachable (one log line names
``RACE_DATABASE_URL``): ``/api/health`` answers 503 and the scheduled runs fail with a clear
error until the database answers; then its schema is checked and the unfinished backfill
jobs resume. A database that answers but has no schema at start is refused (exit 2)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from race.cli._common import open_app
from race.store.database import DatabaseError

if TYPE_CHECKING:
    from race.bootstrap import App
    from race.jobs import LocalJobRunner
    from race.scheduler import ScheduledJob, Scheduler

log = logging.getLogger("race.serve")

DATABASE_RETRY_SECONDS = 2.0
"""How often an unreachable database is tried again."""


def register(commands: Any) -> None:
    serve = commands.add_parser("serve", help="serve the API and run the schedules")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=7071, help="port (default 7071)")
    serve.add_argument(
        "--no-schedule",
        action="store_true",
        help="API only: do not run the ingestion and decision schedules",
    )
    serve.set_defaults(handler=cmd_serve)


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """Stops gracefully on SIGTERM/SIGINT and then exits normally (uvicorn would
        re-raise the signal after shutting down, ending the process with -15)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {
                sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
            }
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
                if self._captured_signals:
                    log.info(
                        "received %s: shut down gracefully",
                        signal.Signals(self._captured_signals[-1]).name,
                    )

    return Server


def header_timeout_protocol(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, closing a connection whose request headers have not all
    arrived ``seconds`` after it opened (or after its previous response): slow-header
    clients cannot keep connections open for ever. 0 = no limit."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    base: Any = AutoHTTPProtocol

    class HeaderTimeoutProtocol(base):  # type: ignore[misc,valid-type]
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            if seconds <= 0:
                return
            if self._header_timer is not None:
                self._header_timer.cancel()
            waiting_for = self.cycle  # a new request replaces it once its headers are in
            self._header_timer = self.loop.call_later(seconds, self._headers_late, waiting_for)

        def _headers_late(self, waiting_for: object) -> None:
            self._header_timer = None
            if self.cycle is waiting_for and not self.transport.is_closing():
                log.debug("closing a connection whose request headers did not arrive in time")
                self.transport.close()

    return HeaderTimeoutProtocol


def server_config(app: App, api: Any, host: str, port: int) -> Any:
    """The uvicorn configuration of ``serve``: bounded header and keep-alive waits."""
    import uvicorn

    return uvicorn.Config(
        api,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        http=header_timeout_protocol(app.settings.http_header_timeout_seconds),
        timeout_keep_alive=max(1, round(app.settings.http_keep_alive_seconds)),
    )


def database_ready(app: App) -> bool:
    """Whether the database answers (with the race schema). Unreachable: logged once, False.
    Reachable without the schema, or a SQLite file that does not exist (connecting would
    create it empty): :class:`DatabaseError` naming ``db upgrade``."""
    app.db.require_file()
    try:
        app.db.ping()
    except DatabaseError as exc:
        log.error(
            "%s; serving anyway: /api/health answers 503 and scheduled runs fail until the "
            "database answers (tried again every %.0f s)",
            exc,
            DATABASE_RETRY_SECONDS,
        )
        return False
    app.db.require_schema()
    return True


async def wait_for_database(
    app: App, stop: asyncio.Event, on_ready: Callable[[], object], every: float
) -> None:
    """Try the database every ``every`` seconds until it answers with the race schema,
    then call ``on_ready`` once. A database that answers without the schema is logged (once)
    and waited for as well."""
    from sqlalchemy.exc import SQLAlchemyError

    told_schema = False
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=every)
            return
        except TimeoutError:
            pass
        try:
            await asyncio.to_thread(app.db.ping)
            has_schema = await asyncio.to_thread(app.db.has_schema)
        except (DatabaseError, SQLAlchemyError) as exc:  # still (or again) unreachable
            log.debug("database still unreachable: %s", exc)
            continue
        if not has_schema:
            if not told_schema:
                log.error(
                    "RACE_DATABASE_URL=%s answers but has no race schema yet: run `python -m "
                    "race db upgrade` (waiting for it)",
                    app.db.describe(),
                )
                told_schema = True
            continue
        log.info("database is back at RACE_DATABASE_URL=%s: schema ok", app.db.describe())
        on_ready()
        return


def _clear_errors(app: App, jobs: list[ScheduledJob]) -> list[ScheduledJob]:
    """The jobs, with a raw driver error turned into one naming ``RACE_DATABASE_URL``."""
    from sqlalchemy.exc import OperationalError

    def wrap(job: ScheduledJob) -> ScheduledJob:
        async def work(slot: datetime) -> object:
            try:
                return await job.work(slot)
            except OperationalError as exc:
                raise app.db.unavailable(exc) from None

        return replace(job, work=work)

    return [wrap(job) for job in jobs]


def cmd_serve(args: argparse.Namespace) -> int:
    _Server = _server_class()

    from race.api import create_api
    from race.jobs import LocalJobRunner
    from race.scheduler import Scheduler, race_jobs

    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be between 1 and 65535, got {args.port}")
    app = open_app(require_schema=False)
    ready = database_ready(app)
    if ready:  # start-up work the first cycle would pay (App.warm_up: logged, never raised)
        app.warmed_up()
    runner = LocalJobRunner(app)
    api = create_api(app, jobs=runner)
    config = server_config(app, api, args.host, args.port)
    server = _Server(config)
    scheduler = None if args.no_schedule else Scheduler(app, _clear_errors(app, race_jobs(app)))

    asyncio.run(_serve(app, server, runner, scheduler, ready, args.host, args.port))
    log.info("stopped")
    app.close()
    return 0


async def _serve(
    app: App,
    server: Any,
    runner: LocalJobRunner,
    scheduler: Scheduler | None,
    ready: bool,
    host: str,
    port: int,
) -> None:
    """Serve the API (and the schedules) until stopped; then stop the scheduler, log the
    interrupted backfill jobs and give running tasks 30 s to finish."""
    tasks = []
    stop_waiting = asyncio.Event()
    if ready:
        runner.resume_unfinished()
    else:
        tasks.append(
            asyncio.create_task(
                wait_for_database(
                    app, stop_waiting, runner.resume_unfinished, DATABASE_RETRY_SECONDS
                )
            )
        )
    if scheduler is not None:
        tasks.append(asyncio.create_task(scheduler.run()))
        log.info(
            "schedules: ingest %r, decisions %r",
            app.settings.ingest_schedule,
            app.settings.decision_schedule,
        )
    log.info("serving the API on http://%s:%d/api (docs: /api/docs)", host, port)
    try:
        await server.serve()
    finally:
        stop_waiting.set()
        if scheduler is not None:
            scheduler.stop()
        for job_id in runner.running():
            log.warning(
                "backfill job %s interrupted: it resumes from its cursor at the next start",
                job_id,
                extra={"job_id": job_id},
            )
        for task in tasks:
            try:
                await asyncio.wait_for(task, timeout=30)
            except TimeoutError:
                log.warning("a scheduled run is still going; leaving it to finish")
