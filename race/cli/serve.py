"""``python -m race serve``: the HTTP API (uvicorn) plus the schedules, in-process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

from race.cli._common import open_app

log = logging.getLogger("race.serve")


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


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    _Server = _server_class()

    from race.api import create_api
    from race.jobs import LocalJobRunner
    from race.scheduler import Scheduler

    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be between 1 and 65535, got {args.port}")
    app = open_app()
    runner = LocalJobRunner(app)
    api = create_api(app, jobs=runner)
    config = uvicorn.Config(
        api, host=args.host, port=args.port, log_config=None, access_log=False, lifespan="off"
    )
    server = _Server(config)
    scheduler = None if args.no_schedule else Scheduler(app)

    async def main() -> None:
        tasks = []
        if scheduler is not None:
            tasks.append(asyncio.create_task(scheduler.run()))
            log.info(
                "schedules: ingest %r, decisions %r",
                app.settings.ingest_schedule,
                app.settings.decision_schedule,
            )
        log.info("serving the API on http://%s:%d/api (docs: /api/docs)", args.host, args.port)
        try:
            await server.serve()
        finally:
            if scheduler is not None:
                scheduler.stop()
            for task in tasks:
                try:
                    await asyncio.wait_for(task, timeout=30)
                except TimeoutError:
                    log.warning("a scheduled run is still going; leaving it to finish")

    asyncio.run(main())
    log.info("stopped")
    app.close()
    return 0
