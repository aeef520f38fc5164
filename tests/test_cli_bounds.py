"""Bounded waits at the edges (issue 10 items 8 and "Bounded waits"): Ctrl-C at any moment of
a CLI command — even while it still imports — is exit 130 with one line, no traceback; the
server of ``serve`` closes connections whose request headers never finish (real sockets)
and idle keep-alive connections."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from race.api import create_api
from race.bootstrap import bootstrap
from race.cli.serve import server_config
from tests.test_crash_safety import ROOT
from tests.waiting import wait_until

CLOSE_WITHIN_S = 10.0
"""How long a client waits for the server (header timeout 1 s) to close its connection: a
generous safety net, not a measurement — a server that never closes fails the test."""


def loaded(pid: int, library: str) -> bool:
    """Whether process ``pid`` has mapped a shared library whose file name has ``library``
    in it: a point of its imports reached, seen from outside."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False
    return any(library in line.rsplit("/", 1)[-1] for line in maps.splitlines())


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize(
    "library",
    [
        "_cache_key_cy",  # early: SQLAlchemy's SQL layer is being imported
        "_row_cy",  # later: its engine (the store) is being imported
        "_pydantic_core",  # a Rust extension: an interrupt there is a pyo3 PanicException
    ],
)
def test_ctrl_c_while_the_cli_starts_is_one_line(sqlite_url: str, library: str) -> None:
    """SIGINT while the CLI still imports (it takes seconds, and the library marks how far it
    got): the answer is one line and exit 130."""
    env = {**os.environ, "RACE_DATABASE_URL": sqlite_url, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "race", "leaderboard"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def reached() -> bool:
            assert process.poll() is None, "the command finished before the signal"
            return loaded(process.pid, library)

        wait_until(reached, f"the CLI to load {library}", interval=0.001)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err, err


def slow_header_sockets(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        client.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")  # never the blank line
        sockets.append(client)
    return sockets


def closed_by_server(client: socket.socket, within: float) -> bool:
    client.settimeout(within)
    try:
        while True:
            data = client.recv(4096)
            if not data:
                return True
    except TimeoutError:
        return False
    except OSError:  # reset by the server
        return True


@pytest.fixture
def served(sqlite_url: str, clock: Any) -> Iterator[tuple[int, Any]]:
    application = bootstrap(
        overrides={
            "RACE_DATABASE_URL": sqlite_url,
            "RACE_HTTP_HEADER_TIMEOUT_SECONDS": "1",
            "RACE_HTTP_KEEP_ALIVE_SECONDS": "1",
        },
        clock=clock,
    )
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = server_config(
        application, create_api(application, resume_jobs=False), "127.0.0.1", port
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, "the server to start")
    yield port, application
    server.should_exit = True
    thread.join(timeout=10)
    listener.close()
    application.close()


def test_serve_closes_slow_header_and_idle_connections(served: tuple[int, Any]) -> None:
    port, application = served
    assert application.settings.http_header_timeout_seconds == 1
    slow = slow_header_sockets(port, 60)
    try:
        # Served meanwhile: slow clients hold no one up.
        assert httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=10).status_code == 200
        # Closed by the server (end of stream or reset), not given up on by the client.
        assert all(closed_by_server(client, CLOSE_WITHIN_S) for client in slow)
    finally:
        for client in slow:
            client.close()

    # A keep-alive connection: its second request may be slow too, but not for ever.
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert client.recv(65536).startswith(b"HTTP/1.1 200")
    client.sendall(b"GET /api/health HTTP/1.1\r\n")
    assert closed_by_server(client, CLOSE_WITHIN_S)
    client.close()

    # A client that sends its headers slowly but in time is answered.
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.sendall(b"GET /api/health HTTP/1.1\r\n")
    time.sleep(0.3)  # a slow client: its headers come in two parts, in time
    client.sendall(b"Host: x\r\n\r\n")
    assert client.recv(65536).startswith(b"HTTP/1.1 200")
    client.close()


def test_an_invalid_setting_is_one_line_without_its_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from race.cli import main

    monkeypatch.setenv("RACE_DB_READ_TIMEOUT_SECONDS", "-1")
    monkeypatch.setenv("RACE_DB_STATEMENT_TIMEOUT_SECONDS", "secret-looking-value")
    assert main(["leaderboard"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "RACE_DB_READ_TIMEOUT_SECONDS" in err and "RACE_DB_STATEMENT_TIMEOUT_SECONDS" in err
    assert "secret-looking-value" not in err and "-1" not in err, err
