"""One secret policy (issue 10): every secret of the settings — provider keys, the admin
and CoinGecko keys, an agent's own key, the database URL's password in any position — is
replaced by ``[redacted:SETTING]`` in every stored and served field, in its escaped forms
too (JSON ``\\uXXXX``, percent-encoding, ``repr``); anonymous 503 bodies name the setting,
never host, user or database."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from datetime import UTC, datetime
from urllib.parse import quote, quote_plus

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from race.api import create_api
from race.bootstrap import bootstrap
from race.clock import ManualClock
from race.domain.agent import AgentAnswer
from race.domain.model import Provider
from race.logging_setup import RedactingFilter
from race.secrets import SecretPolicy, database_passwords
from race.settings import load_settings
from race.store.database import safe_url
from race.store.tables import Base, DecisionRow
from tests.factories import HOUR, seed_agent
from tests.test_engine import Scripted, app_with, seed_market

ODD = "k3y/with+odd\"chars'\\end"
KEY = "gsk_live_POLICY_0a1b2c3d4e5f"
ADMIN = "admin-POLICY-9z8y7x6w"
DB_PW = "hunter2-query-pw"
START = datetime(2024, 1, 1, tzinfo=UTC)


def test_every_escaped_form_is_redacted_with_the_settings_name() -> None:
    policy = SecretPolicy({"LLAMA_API_KEY": ODD})
    forms = {
        "plain": ODD,
        "json": json.dumps(ODD)[1:-1],
        "json-unicode": "".join(f"\\u{ord(c):04x}" for c in ODD),
        "json-unicode-upper": "".join(f"\\u{ord(c):04X}" for c in ODD),
        "url": quote(ODD, safe=""),
        "url-plus": quote_plus(ODD),
        "repr": repr(ODD)[1:-1],
    }
    for name, form in forms.items():
        text = f"before {form} after"
        cleaned = policy.redact(text)
        assert cleaned == "before [redacted:LLAMA_API_KEY] after", (name, cleaned)
    assert policy.redact("nothing here") == "nothing here"
    assert policy.redact_value({"k": [f"x{ODD}", {ODD: 1}]}) == {
        "k": ["x[redacted:LLAMA_API_KEY]", {"[redacted:LLAMA_API_KEY]": 1}]
    }


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://race:{DB_PW}@db.example:5432/race",
        f"postgresql+psycopg://race@db.example/race?password={DB_PW}&sslmode=require",
        f"postgresql+psycopg://race@db.example/race?sslmode=require&password={quote(DB_PW)}",
        "mssql+pyodbc:///?odbc_connect="
        + quote(f"DRIVER={{ODBC Driver 18}};SERVER=db;UID=race;PWD={DB_PW};"),
    ],
)
def test_the_database_password_is_a_secret_in_any_position(url: str) -> None:
    assert DB_PW in database_passwords(url) or quote(DB_PW) in database_passwords(url)
    settings = load_settings({"RACE_DATABASE_URL": url})
    assert DB_PW in settings.secret_values()
    assert DB_PW not in safe_url(url)
    assert "RACE_DATABASE_URL" in settings.secret_policy().redact(f"pw={DB_PW}")


def test_settings_name_each_secret() -> None:
    settings = load_settings(
        {
            "LLAMA_API_KEY": KEY,
            "RACE_ADMIN_KEY": ADMIN,
            "COINGECKO_API_KEY": "cg-POLICY-123456",
            "RACE_DATABASE_URL": f"postgresql://u:{DB_PW}@h/d",
        }
    )
    policy = settings.secret_policy()
    text = f"{KEY} {ADMIN} cg-POLICY-123456 {DB_PW}"
    assert policy.redact(text) == (
        "[redacted:LLAMA_API_KEY] [redacted:RACE_ADMIN_KEY] [redacted:COINGECKO_API_KEY] "
        "[redacted:RACE_DATABASE_URL]"
    )


def test_logs_are_redacted_in_escaped_forms_too() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(SecretPolicy({"LLAMA_API_KEY": KEY})))
    log = logging.getLogger("race.test.policy")
    log.addHandler(handler)
    log.propagate = False
    try:
        escaped = "".join(f"\\u{ord(c):04x}" for c in KEY)
        log.warning("raw %s, escaped %s, url %s", KEY, escaped, quote(KEY))
    finally:
        log.removeHandler(handler)
        log.propagate = True
    text = stream.getvalue()
    assert KEY not in text and escaped not in text
    assert text.count("[redacted:LLAMA_API_KEY]") == 3


def test_anonymous_503_bodies_name_the_setting_only() -> None:
    url = f"postgresql+psycopg://raceuser@127.0.0.1:1/secretdb?password={DB_PW}"
    application = bootstrap(overrides={"RACE_DATABASE_URL": url}, clock=ManualClock(START))
    client = TestClient(create_api(application), raise_server_exceptions=False)
    bodies = []
    for path in ("/api/leaderboard", "/api/agents", "/api/agents/1/decisions", "/api/health"):
        response = client.get(path)
        assert response.status_code == 503, path
        bodies.append(response.text)
    application.close()
    assert "RACE_DATABASE_URL" in bodies[0]
    for body in bodies:
        for private in (DB_PW, "raceuser", "127.0.0.1", "secretdb"):
            assert private not in body, (private, body)


@pytest.mark.parametrize("where", ["environment", "local.settings.json"])
def test_an_agents_own_key_and_any_served_secret_are_redacted(
    database_url, clock, monkeypatch, tmp_path, where
):
    """An agent's key (named by its ``api_key_setting``, in the environment or only in a
    settings file) echoed in its answer is redacted in storage; a secret stored by another
    path (an agent's name) is redacted in API bodies."""
    own_key = "own-model-key-POLICY-55aa"
    if where == "environment":
        monkeypatch.setenv("MY_MODEL_API_KEY", own_key)
    else:
        monkeypatch.delenv("MY_MODEL_API_KEY", raising=False)
        monkeypatch.setenv("RACE_SETTINGS_DIR", str(tmp_path))
        (tmp_path / "local.settings.json").write_text(
            json.dumps({"IsEncrypted": False, "Values": {"MY_MODEL_API_KEY": own_key}})
        )
    echo = Scripted(
        lambda c: AgentAnswer(
            orders=[{"asset": own_key, "side": "BUY", "quantity": 1}],
            reasoning=f"key {own_key}",
            raw_output=json.dumps({"k": own_key}, ensure_ascii=True).replace(
                own_key, "".join(f"\\u{ord(ch):04x}" for ch in own_key)
            ),
        )
    )
    application = app_with(database_url, clock, {"echo": echo}, RACE_ADMIN_KEY=ADMIN)
    seed_market(application, n=100)
    agent = seed_agent(
        application, "echo", Provider.LLAMA, "m", params={"api_key_setting": "MY_MODEL_API_KEY"}
    )
    named = seed_agent(application, f"agent {ADMIN}", Provider.MOCK, "cash")
    report = asyncio.run(application.engine.run_cycle(START + 80 * HOUR))
    assert report.decided == 2
    with application.db.read() as session:
        row = session.scalar(select(DecisionRow).where(DecisionRow.agent_id == agent))
        dump = "\n".join(
            json.dumps(dict(r._mapping), default=str)
            for table in Base.metadata.sorted_tables
            for r in session.execute(select(table))
        )
    assert "[redacted:MY_MODEL_API_KEY]" in row.rationale
    assert own_key not in dump
    assert "\\u006f\\u0077\\u006e" not in dump  # the escaped form is gone too
    client = TestClient(create_api(application))
    bodies = [
        client.get(f"/api/agents/{agent}/decisions").text,
        client.get("/api/agents").text,
        client.get(f"/api/agents/{named}").text,
        client.get("/api/leaderboard").text,
    ]
    application.close()
    for body in bodies:
        assert own_key not in body and ADMIN not in body
    assert "[redacted:RACE_ADMIN_KEY]" in bodies[1]


def test_a_malformed_database_url_never_shows_its_password() -> None:
    from race.store.database import Database, DatabaseError

    with pytest.raises(DatabaseError) as caught:
        Database(f"not a url {DB_PW}")
    assert DB_PW not in str(caught.value)
    assert "RACE_DATABASE_URL" in str(caught.value)
