"""Recognisable keys (CoinGecko, Llama, admin) used in a real run never appear in the logs,
in errors, in stored prompts or anywhere in the database (issue 6 §5)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from race.api import create_api
from race.bootstrap import bootstrap
from race.clock import ManualClock
from race.domain.model import Provider
from race.ingest import ingest_coingecko
from race.logging_setup import configure_logging
from race.store.tables import Base
from tests.coingecko_server import FakeCoinGecko
from tests.factories import HOUR, seed_agent, seed_assets
from tests.openai_server import OpenAIServer, Reply, completion

CG_KEY = "cg-test-key-RECOGNISABLE-7f3a9c"
LLAMA_KEY = "llama-test-key-RECOGNISABLE-5d2e8b"
ADMIN_KEY = "admin-test-key-RECOGNISABLE-1c4f6a"
SECRETS = (CG_KEY, LLAMA_KEY, ADMIN_KEY)
NOW = datetime(2026, 3, 1, 12, 5, tzinfo=UTC)


@pytest.fixture
def captured_logs(monkeypatch):
    stream = io.StringIO()
    root = logging.getLogger()
    before = list(root.handlers), root.level
    yield stream
    for handler in list(root.handlers):
        if handler not in before[0]:
            root.removeHandler(handler)
    root.setLevel(before[1])


def all_rows_as_text(app) -> str:
    parts = []
    with app.db.read() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)):
                parts.append(json.dumps(dict(row._mapping), default=str))
    return "\n".join(parts)


def test_keys_never_reach_logs_errors_prompts_or_the_database(database_url, captured_logs):
    clock = ManualClock(NOW)
    leaky_error = Reply(
        status=401,
        body={
            "error": {
                "message": f"Invalid API Key: {LLAMA_KEY}",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        },
    )
    echo = completion(
        json.dumps({"reasoning": f"my key is {LLAMA_KEY}", "orders": [], "cited_rules": []})
    )
    with FakeCoinGecko(now=lambda: NOW, demo_key=CG_KEY) as coingecko, OpenAIServer() as llm:
        app = bootstrap(
            overrides={
                "RACE_DATABASE_URL": database_url,
                "COINGECKO_BASE_URL": coingecko.base_url,
                "COINGECKO_API_KEY": CG_KEY,
                "LLAMA_BASE_URL": llm.base_url,
                "LLAMA_API_KEY": LLAMA_KEY,
                "RACE_ADMIN_KEY": ADMIN_KEY,
                "LLM_MAX_RETRIES": "0",
            },
            clock=clock,
        )
        configure_logging(
            level=logging.DEBUG,
            fmt="json",
            secrets=app.settings.secret_values(),
            stream=captured_logs,
        )
        seed_assets(app)
        seed_agent(app, "Leaky Provider", Provider.LLAMA, "llama-3.3-70b-versatile")
        seed_agent(app, "Echoing Model", Provider.LLAMA, "llama-3.1-8b-instant")
        seed_agent(app, "Cash", Provider.MOCK, "cash")

        def by_model(request):
            return leaky_error if request.json["model"] == "llama-3.3-70b-versatile" else echo

        llm.default = by_model
        report = asyncio.run(ingest_coingecko(app))
        assert report.ok and report.inserted > 0
        assert coingecko.requests[0].headers["x-cg-demo-api-key"] == CG_KEY  # it was sent
        cycle = asyncio.run(app.engine.run_cycle(NOW.replace(minute=0) - HOUR))
        assert cycle.decided == 3
        assert llm.requests[0].headers["authorization"] == f"Bearer {LLAMA_KEY}"
        client = TestClient(create_api(app))
        assert client.post("/api/admin/cycles", headers={"X-API-Key": "wrong"}).status_code == 401
        ok = client.post("/api/admin/cycles", headers={"X-API-Key": ADMIN_KEY})
        assert ok.status_code == 200
        bodies = [
            client.get(url).text
            for url in (
                "/api/leaderboard",
                "/api/agents/1/decisions",
                "/api/agents/2/decisions",
                "/api/health",
            )
        ]
        logging.getLogger("race.test").info("a log line quoting the key %s", CG_KEY)
        stored = all_rows_as_text(app)
        app.close()
    logs = captured_logs.getvalue()
    assert "fallback" in stored  # the leaky provider's failure was recorded …
    assert "my key is" in stored  # … and the echoing model's answer too
    for secret in SECRETS:
        assert secret not in logs, f"{secret} leaked into the logs"
        assert secret not in stored, f"{secret} leaked into the database"
        for body in bodies:
            assert secret not in body, f"{secret} leaked through the API"
    assert "[redacted:" in logs
