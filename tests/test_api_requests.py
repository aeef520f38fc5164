"""Request errors said in words, through real HTTP (TestClient) and the Functions host: a
body not sent as JSON is a 415 naming the header; unparsable JSON says where it stopped;
deep JSON is a 400 (never a RecursionError 500); a reversed equity range is a 400; a
read-only SQLite folder or file is named as read-only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func as sqlfunc
from sqlalchemy import select

from race.api import create_api
from race.api._requests import MAX_JSON_DEPTH, json_depth, parse_json_body
from race.bootstrap import App, bootstrap
from race.store.tables import CycleRow, JobRow
from tests.factories import seed_agent
from tests.test_function_app import Out, _Context, call

ADMIN_KEY = "requests-admin-key-0123456789"
ROOT = Path(__file__).resolve().parent.parent
ADMIN_POSTS = ("/api/admin/cycles", "/api/admin/agents/1/run", "/api/admin/backfills")
DEEP = b"[" * 8000 + b"]" * 8000


@pytest.fixture
def race(database_url, clock) -> Iterator[tuple[App, TestClient]]:
    application = bootstrap(
        overrides={"RACE_DATABASE_URL": database_url, "RACE_ADMIN_KEY": ADMIN_KEY}, clock=clock
    )
    try:
        seed_agent(application, "Cash Keeper")
        yield application, TestClient(create_api(application), raise_server_exceptions=False)
    finally:
        application.close()


def post(client: TestClient, path: str, body: bytes, content_type: str | None) -> Any:
    headers = {"X-API-Key": ADMIN_KEY}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return client.post(path, headers=headers, content=body)


def rows(application: App, table: Any) -> int:
    with application.db.read() as session:
        return int(session.scalar(select(sqlfunc.count()).select_from(table)) or 0)


# ---------------------------------------------------------------- content type


@pytest.mark.parametrize(
    "content_type", [None, "application/x-www-form-urlencoded", "text/plain", "multipart/x"]
)
def test_a_body_not_sent_as_json_is_a_415_naming_the_header(race, content_type):
    application, client = race
    body = json.dumps({"at": "2023-12-31T00:00:00Z"}).encode()
    for path in ADMIN_POSTS:
        response = post(client, path, body, content_type)
        assert response.status_code == 415, (path, response.text)
        assert response.headers["content-type"].startswith("application/json")
        message = response.json()["message"]
        assert "Content-Type: application/json" in message, message
        assert "valid dictionary" not in message
    assert rows(application, CycleRow) == rows(application, JobRow) == 0


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "APPLICATION/JSON", "application/x+json"]
)
def test_json_media_types_pass_to_the_fields(race, content_type):
    _, client = race
    for path in ADMIN_POSTS[:2]:
        response = post(client, path, b'{"at": 5}', content_type)
        assert response.status_code == 400, response.text
        assert response.json()["message"].startswith("at")
    response = post(client, "/api/admin/backfills", b'{"start": 5}', content_type)
    assert response.status_code == 400 and "start" in response.json()["message"]


@pytest.mark.parametrize(
    ("body", "got"), [(b"[1]", "an array"), (b'"x"', "a string"), (b"1.5", "a number")]
)
def test_a_body_that_is_not_an_object_says_so(race, body, got):
    _, client = race
    for path in ADMIN_POSTS:
        response = post(client, path, body, "application/json")
        assert response.status_code == 400, response.text
        message = response.json()["message"]
        assert "JSON object" in message, message
        assert "valid dictionary" not in message
    response = post(client, ADMIN_POSTS[0], body, "application/json")
    assert response.json()["message"] == f"the body must be a JSON object, got {got}"


def test_an_empty_body_needs_no_content_type(race):
    _, client = race
    response = post(client, "/api/admin/backfills", b"", None)
    assert response.status_code == 400, response.text
    assert response.json()["message"] == "start is required"


# ---------------------------------------------------------------- unparsable and deep JSON


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b"not json", "line 1, column 1"),
        (b'{"at": }', "line 1, column 8"),
        (b'{\n  "at": "2024-01-01",\n  "x": nope\n}', "line 3, column 8"),
        (b'{"at": "2024-01-01"', "line 1, column 20"),
        (b'{"at": NaN}', "NaN"),
    ],
)
def test_unparsable_json_says_where_it_stopped(race, body, where):
    _, client = race
    for path in ADMIN_POSTS:
        response = post(client, path, body, "application/json")
        assert response.status_code == 400, (path, response.text)
        message = response.json()["message"]
        assert message.startswith("the body is not valid JSON"), message
        assert where in message, message
        assert "JSON decode error" not in message


def test_a_body_that_is_not_utf8_is_a_400(race):
    _, client = race
    response = post(client, "/api/admin/cycles", b'{"at": "\xff"}', "application/json")
    assert response.status_code == 400
    assert "not UTF-8" in response.json()["message"]


def test_deep_json_is_a_400_not_a_500(race):
    application, client = race
    for path in ADMIN_POSTS:
        response = post(client, path, DEEP, "application/json")
        assert response.status_code == 400, (path, response.text)
        message = response.json()["message"]
        assert "8000 levels deep" in message and f"at most {MAX_JSON_DEPTH}" in message
    # One level past the limit is refused; at the limit, the fields are checked as usual.
    too_deep = b'{"at": ' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}"
    response = post(client, "/api/admin/cycles", too_deep, "application/json")
    assert response.status_code == 400 and "levels deep" in response.json()["message"]
    at_limit = b'{"at": ' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1) + b"}"
    response = post(client, "/api/admin/cycles", at_limit, "application/json")
    assert response.status_code == 400 and response.json()["message"].startswith("at")
    assert rows(application, CycleRow) == 0


def test_brackets_inside_strings_are_not_nesting():
    text = json.dumps({"at": "[" * 100, "x": ['{\\"[[', {"y": "]]]"}]}).encode()
    assert json_depth(text) == 3
    assert parse_json_body(text)["at"] == "[" * 100
    assert json_depth(b'"unterminated [[[[') == 0


# ---------------------------------------------------------------- the equity range


def test_equity_from_after_to_is_a_400_in_the_cli_s_words(race):
    _, client = race
    url = "/api/agents/1/equity"
    response = client.get(f"{url}?from=2024-02-01T00:00:00Z&to=2024-01-01T00:00:00Z")
    assert response.status_code == 400, response.text
    assert response.json() == {
        "message": "to 2024-01-01T00:00:00+00:00 is before from 2024-02-01T00:00:00+00:00"
    }
    same = client.get(f"{url}?from=2024-01-01T00:00:00Z&to=2024-01-01T00:00:00Z")
    assert same.status_code == 200 and same.json() == []
    # The CLI (ingest, backfill) says it the same way: "end … is before start …".
    from race.ingest import _check_range
    from race.jobs import BackfillSpec

    jan, feb = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)
    expected = r"^end 2024-01-01T00:00:00\+00:00 is before start 2024-02-01T00:00:00\+00:00$"
    with pytest.raises(ValueError, match=expected):
        _check_range(feb, jan)
    with pytest.raises(ValueError, match=expected):
        BackfillSpec.parse(feb.isoformat(), jan.isoformat(), "1h")


# ---------------------------------------------------------------- the Functions host


@pytest.fixture
def hosted(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    import function_app

    monkeypatch.setenv("RACE_DATABASE_URL", database_url)
    monkeypatch.setenv("RACE_ADMIN_KEY", ADMIN_KEY)
    function_app.runtime.cache_clear()
    function_app.asgi.cache_clear()
    race = function_app.runtime()
    yield race
    race.close()
    function_app.runtime.cache_clear()
    function_app.asgi.cache_clear()


def request(path: str, body: bytes, content_type: str | None) -> func.HttpRequest:
    headers = {"X-API-Key": ADMIN_KEY}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return func.HttpRequest(
        "POST", f"http://localhost/{path}", headers=headers, route_params={}, body=body
    )


@pytest.mark.parametrize(
    ("body", "content_type", "status", "named"),
    [
        (b'{"start": "2024-01-01"}', None, 415, "Content-Type: application/json"),
        (b'{"start": "2024-01-01"}', "text/plain", 415, "Content-Type: application/json"),
        (b'{"start": }', "application/json", 400, "line 1, column 11"),
        (DEEP, "application/json", 400, "levels deep"),
    ],
)
def test_functions_check_bodies_in_the_same_words(hosted, body, content_type, status, named):
    queue = Out()
    response = call("start_backfill", request("api/admin/backfills", body, content_type), queue)
    assert response.status_code == status, response.get_body()
    assert named in json.loads(response.get_body())["message"]
    assert queue.values == []
    response = call("admin_cycles", request("api/admin/cycles", body, content_type), _Context())
    assert response.status_code == status, response.get_body()
    assert named in json.loads(response.get_body())["message"]
    assert rows(hosted, JobRow) == rows(hosted, CycleRow) == 0


# ---------------------------------------------------------------- read-only SQLite


def _unprivileged() -> list[str]:
    """A command prefix that runs without root's power over file permissions."""
    if os.geteuid() != 0:
        return []
    capsh = shutil.which("capsh")
    if capsh is None:
        pytest.skip("running as root without capsh: permissions cannot be enforced")
    return [capsh, "--drop=cap_dac_override,cap_dac_read_search", "--"]


def _race(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RACE_DATABASE_URL": url, "RACE_LOG_LEVEL": "WARNING"}
    prefix = _unprivileged()
    command = [sys.executable, "-m", "race", *args]
    if prefix:
        command = [*prefix, "-c", " ".join(f"'{part}'" for part in command)]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_a_read_only_database_folder_or_file_is_named_read_only(sqlite_url, tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        created = _race(f"sqlite:///{folder}/race.db", "db", "upgrade")
    finally:
        folder.chmod(0o755)
    assert created.returncode == 2, created.stderr
    assert f"the folder {folder} is read-only" in created.stderr, created.stderr
    assert "unable to open database file" not in created.stderr
    database = Path(sqlite_url.removeprefix("sqlite:///"))
    database.chmod(0o444)
    try:
        written = _race(sqlite_url, "assets", "add", "SOL", "solana")
    finally:
        database.chmod(0o644)
    assert written.returncode == 2, written.stderr
    assert f"the database file {database} is read-only" in written.stderr, written.stderr
    assert "Traceback" not in written.stderr
