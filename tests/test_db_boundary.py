"""The database password never leaves the settings (issue 10 item 3), wherever the URL
holds it: userinfo, ``?password=``, ``odbc_connect=…PWD=…`` (raw or URL-encoded), or a URL
that does not parse. Anonymous 503 bodies name the setting only — no host, user, port or
database name — while the logs keep a masked URL for the operator."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from fastapi.testclient import TestClient

from race.api import create_api
from race.bootstrap import bootstrap
from race.cli import main
from race.settings import load_settings
from race.store.database import PUBLIC_MESSAGES, Database, DatabaseError
from race.store.urls import safe_url, scrub, url_secrets
from tests.test_function_app import ADMIN_KEY, Out, admin_request, call, function_app

SECRET = "Zq9-s3cr@t!pw"
ODBC = f"DRIVER={{ODBC Driver 18}};SERVER=dbhost.example;UID=raceuser;PWD={SECRET};"
FORMS = {
    "userinfo": f"postgresql+psycopg://raceuser:{quote(SECRET, safe='')}@127.0.0.1:1/racedb",
    "query": f"postgresql+psycopg://raceuser@127.0.0.1:1/racedb?password={quote(SECRET, safe='')}",
    "odbc-encoded": f"mssql+pyodbc:///?odbc_connect={quote_plus(ODBC)}",
    "odbc-raw": f"mssql+pyodbc:///?odbc_connect={ODBC}",
}
MALFORMED = {
    "bad-port": f"postgresql+psycopg://raceuser:{SECRET}@dbhost:notaport/racedb",
    "not-a-url": f"host=dbhost user=raceuser password={SECRET}",
    "space": f"postgresql+psycopg://raceuser:{SECRET} x@dbhost/racedb",  # parses; fails later
}
PG_FORMS = ("userinfo", "query")


def leaks(text: str) -> list[str]:
    """The forms of the password found in ``text``."""
    forms = {SECRET, quote(SECRET, safe=""), quote_plus(SECRET), "s3cr"}
    return [form for form in forms if form in text]


@pytest.mark.parametrize("form", sorted(FORMS))
def test_safe_url_hides_the_password_in_every_position(form: str) -> None:
    url = FORMS[form]
    shown = safe_url(url)
    assert leaks(shown) == [], shown
    assert "***" in shown
    assert SECRET in url_secrets(url)
    assert leaks(scrub(f"driver said: could not connect with {url}", url)) == []
    assert SECRET in load_settings({"RACE_DATABASE_URL": url}).secret_values()


@pytest.mark.parametrize("form", ["bad-port", "not-a-url"])
def test_a_malformed_url_is_refused_without_printing_it(form: str) -> None:
    with pytest.raises(DatabaseError) as raised:
        Database(MALFORMED[form])
    assert leaks(str(raised.value)) == [], str(raised.value)
    assert "RACE_DATABASE_URL" in str(raised.value)
    assert leaks(safe_url(MALFORMED[form])) == []


@pytest.fixture
def unreachable(request: pytest.FixtureRequest, clock: Any) -> Iterator[Any]:
    application = bootstrap(overrides={"RACE_DATABASE_URL": FORMS[request.param]}, clock=clock)
    yield application
    application.close()


@pytest.mark.parametrize("unreachable", PG_FORMS, indirect=True)
def test_anonymous_503_bodies_name_only_the_setting(
    unreachable: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = TestClient(create_api(unreachable, resume_jobs=False), raise_server_exceptions=False)
    with caplog.at_level(logging.WARNING):
        for path in ("/api/leaderboard", "/api/agents", "/api/agents/1", "/api/market/prices"):
            response = client.get(path)
            assert response.status_code == 503, (path, response.text)
            message = response.json()["message"]
            assert message == PUBLIC_MESSAGES["unreachable"], message
            for private in ("127.0.0.1", "raceuser", "racedb", ":1", SECRET):
                assert private not in response.text, (private, response.text)
        health = client.get("/api/health")
        assert health.status_code == 503 and leaks(health.text) == []
        assert "raceuser" not in health.text and "racedb" not in health.text
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "RACE_DATABASE_URL=" in logged  # the operator still sees which database
    assert leaks(logged) == [], logged


@pytest.mark.parametrize("form", [*PG_FORMS, "odbc-encoded", "odbc-raw", *sorted(MALFORMED)])
def test_cli_errors_are_one_line_without_the_password(
    form: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RACE_DATABASE_URL", {**FORMS, **MALFORMED}[form])
    monkeypatch.setenv("RACE_DB_CONNECT_TIMEOUT_SECONDS", "2")
    assert main(["leaderboard"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("error: ") and "RACE_DATABASE_URL" in err, err
    assert leaks(err) == [], err


def test_start_backfill_503_names_only_the_setting(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("RACE_DATABASE_URL", FORMS["query"])
    monkeypatch.setenv("RACE_ADMIN_KEY", ADMIN_KEY)
    function_app.runtime.cache_clear()
    function_app.asgi.cache_clear()
    try:
        body = b'{"start":"2024-01-01","end":"2024-01-02"}'
        queue = Out()
        response = call(
            "start_backfill", admin_request("POST", "api/admin/backfills", body=body), queue
        )
        assert response.status_code == 503
        assert json.loads(response.get_body()) == {"message": PUBLIC_MESSAGES["unreachable"]}
        assert queue.values == []
        assert leaks("\n".join(r.getMessage() for r in caplog.records)) == []
    finally:
        function_app.runtime().close()
        function_app.runtime.cache_clear()
        function_app.asgi.cache_clear()


@pytest.mark.parametrize("form", sorted(FORMS))
def test_the_log_scrubs_the_database_password(form: str) -> None:
    """Whatever logs a driver error or a URL: the configured log handler scrubs every form
    of the password (it counts as a secret)."""
    import io

    from race.logging_setup import configure_logging

    stream = io.StringIO()
    root = logging.getLogger()
    before = list(root.handlers), root.level
    secrets = load_settings({"RACE_DATABASE_URL": FORMS[form]}).secret_values()
    configure_logging(level=logging.INFO, fmt="text", secrets=secrets, stream=stream)
    try:
        logging.getLogger("race.test").warning("connect failed: %s", FORMS[form])
        logging.getLogger("race.test").warning("password is %s", SECRET)
    finally:
        for handler in list(root.handlers):
            if handler not in before[0]:
                root.removeHandler(handler)
        root.setLevel(before[1])
    assert "connect failed" in stream.getvalue()
    assert leaks(stream.getvalue()) == [], stream.getvalue()
