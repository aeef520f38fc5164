"""Property-based fuzzing of every API operation from its OpenAPI schema (schemathesis's
strategies driven by hypothesis): no 5xx, no response that violates the schema, bad input
answered with 4xx JSON ``{"message": …}``.

Two passes: every operation without the admin key (admin calls are refused before any
work), and the admin operations with the valid key, so they reach their handlers (against
a tiny race: no active agent, so a cycle or a backfill, however long, stays cheap).

``RACE_FUZZ_EXAMPLES`` sets the examples per operation (default 25 for CI; e.g. 500 for a
long soak run)."""

from __future__ import annotations

import os
import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.specs.openapi.checks import positive_data_acceptance

from race.api import create_api
from race.bootstrap import bootstrap
from race.clock import ManualClock
from race.universe import set_agent_active
from tests.api_data import LAST_CANDLE, START, build_race
from tests.conftest import NOW
from tests.factories import (
    HOUR,
    insert_candles,
    make_candles,
    seed_agent,
    seed_assets,
    wave_prices,
)

EXAMPLES = int(os.environ.get("RACE_FUZZ_EXAMPLES", "25"))
ADMIN_KEY = "fuzz-admin-key-0123456789"


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory, sqlite_template):
    path = tmp_path_factory.mktemp("fuzz") / "race.db"
    shutil.copy(sqlite_template, path)
    clock = ManualClock(NOW)
    application = bootstrap(
        overrides={"RACE_DATABASE_URL": f"sqlite:///{path}", "RACE_ADMIN_KEY": ADMIN_KEY},
        clock=clock,
    )
    build_race(application)
    clock.advance((LAST_CANDLE - clock.now()).total_seconds() + 3600)
    api = create_api(application)
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", api)
    yield schema
    api.state.jobs.join(timeout=60)
    application.close()


@pytest.fixture(scope="module")
def admin_target(tmp_path_factory, sqlite_template):
    """A tiny race for the keyed admin pass: two assets with a day of candles, CoinGecko on
    loopback, and one agent, inactive, so every admin operation does its real work cheaply."""
    from tests.coingecko_server import FakeCoinGecko

    path = tmp_path_factory.mktemp("fuzz-admin") / "race.db"
    shutil.copy(sqlite_template, path)
    clock = ManualClock(START + 30 * HOUR)
    with FakeCoinGecko(now=clock.now) as server:
        application = bootstrap(
            overrides={
                "RACE_DATABASE_URL": f"sqlite:///{path}",
                "RACE_ADMIN_KEY": ADMIN_KEY,
                "COINGECKO_BASE_URL": server.base_url,
                "COINGECKO_CALLS_PER_MINUTE": "100000",
                "RACE_INGEST_LOOKBACK": "1d",
                "RACE_BACKFILL_CHUNK_CYCLES": "1000000",
            },
            clock=clock,
        )
        seed_assets(application)
        insert_candles(application, make_candles("BTC", START, wave_prices(24, base=40000.0)))
        insert_candles(application, make_candles("ETH", START, wave_prices(24, base=2000.0)))
        seed_agent(application, "Benched")
        set_agent_active(application.db, "Benched", False)
        api = create_api(application)
        schema = schemathesis.openapi.from_asgi("/api/openapi.json", api)
        yield schema, api
        api.state.jobs.join(timeout=120)
        application.close()


def operations(schema, only_admin: bool = False):
    found = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if not only_admin or operation.path.startswith("/api/admin/"):
            found.append(operation)
    return found


def check(case, response, excluded=()) -> None:
    where = f"{case.method} {case.formatted_path} {case.query or ''} {case.body!r:.200}"
    assert response.status_code < 500, (where, response.text[:300])
    case.validate_response(response, excluded_checks=list(excluded))
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict), where
        assert isinstance(body.get("message"), str), where
        assert body["message"], where


def fuzz(operation, mode, call) -> None:
    strategy = operation.as_strategy(generation_mode=mode)

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        call(case)

    run()


def _breaks_only_the_key(case) -> bool:
    data = getattr(getattr(case.meta, "phase", None), "data", None)
    return str(getattr(data, "parameter", "")).lower() == "x-api-key"


def _reversed_range(case) -> bool:
    from datetime import datetime

    query = case.query or {}
    try:
        start = datetime.fromisoformat(str(query["from"]).replace("Z", "+00:00"))
        end = datetime.fromisoformat(str(query["to"]).replace("Z", "+00:00"))
        return end < start
    except (KeyError, ValueError, TypeError):
        return False


def _mode(kind):
    from schemathesis.generation import GenerationMode

    return GenerationMode.POSITIVE if kind == "positive" else GenerationMode.NEGATIVE


@pytest.mark.parametrize("kind", ["positive", "negative"])
def test_every_operation_conforms(fuzz_target, kind):
    ops = operations(fuzz_target)
    assert len(ops) >= 15

    def call(case):
        if case.headers:
            for name in [h for h in case.headers if h.lower() == "x-api-key"]:
                case.headers.pop(name)
        response = case.call()
        if "/api/admin/" in case.path:
            assert response.status_code == 401, response.text
        if (
            response.status_code == 400
            and _reversed_range(case)
            and "is before from" in response.json().get("message", "")
        ):
            # Two valid dates in the wrong order: the schema cannot say ``from <= to``; the
            # answer is a JSON 400 naming both, like the CLI's refusal.
            check(case, response, excluded=[positive_data_acceptance])
            return
        check(case, response)

    for operation in ops:
        try:
            fuzz(operation, _mode(kind), call)
        except Unsatisfiable:
            # No way to make invalid input for an operation without parameters.
            assert kind == "negative", operation.label


@pytest.mark.parametrize("kind", ["positive", "negative"])
def test_admin_operations_with_the_key_conform(admin_target, kind):
    schema, api = admin_target
    ops = operations(schema, only_admin=True)
    assert {op.path for op in ops} == {
        "/api/admin/cycles",
        "/api/admin/agents/{agent_id}/run",
        "/api/admin/ingest",
        "/api/admin/backfills",
        "/api/admin/races",
        "/api/admin/jobs/{job_id}",
    }
    statuses: dict[str, set[int]] = {}

    def call(case):
        # A negative case that only breaks the key is the unkeyed pass's business (401).
        assume(not _breaks_only_the_key(case))
        response = case.call(headers={"X-API-Key": ADMIN_KEY})
        statuses.setdefault(case.path, set()).add(response.status_code)
        assert response.status_code not in (401, 403), response.text
        # Valid JSON can still ask for what no handler accepts (a backfill from the year
        # 874, a cycle in 9999): the schema cannot say that, so a 400 for positive data
        # is fine here — as long as it is a 400 JSON naming the problem, never a 5xx.
        check(case, response, excluded=[positive_data_acceptance])

    for operation in ops:
        try:
            fuzz(operation, _mode(kind), call)
        except Unsatisfiable:
            assert kind == "negative", operation.label
    if kind == "positive":  # the key let every operation through to its handler
        assert 200 in statuses["/api/admin/ingest"], statuses
        assert statuses["/api/admin/backfills"] & {202, 400}, statuses
        assert statuses["/api/admin/cycles"] & {200, 400}, statuses
        assert statuses["/api/admin/races"] & {400, 409}, statuses
    api.state.jobs.join(timeout=120)


EDGES = {
    "/api/admin/backfills": [
        {"start": "0874-01-01T00:00:00Z", "end": "2000-01-01T00:00:00Z", "interval": "400000D"},
        {"start": "9999-12-31T23:59:59Z", "end": "9999-12-31T23:59:59Z"},
        {"start": "0001-01-01T00:00:00Z", "end": "0001-01-01T00:00:00Z", "interval": "999999w"},
        {"start": "0001-01-01T00:00:00+01:00", "end": "9999-12-31T23:59:59-01:00"},
        {"start": "1970-01-01T00:00:00Z", "end": "1970-01-01T01:00:00Z", "interval": "999999m"},
    ],
    "/api/admin/races": [
        {"start": "0874-01-01T00:00:00Z", "end": "2000-01-01T00:00:00Z", "interval": "400000D"},
        {"start": "9999-12-31T23:59:59Z", "end": "9999-12-31T23:59:59Z"},
        {"start": "0001-01-01T00:00:00+01:00", "end": "9999-12-31T23:59:59-01:00"},
        {"start": "1970-01-01T00:00:00Z", "end": "1970-01-01T01:00:00Z", "interval": "999999m"},
    ],
    "/api/admin/cycles": [
        {"at": "9999-12-31T23:59:59Z"},
        {"at": "0001-01-01T00:00:00Z"},
        {"at": "0001-01-01T00:00:00+01:00"},
        {"at": "9999-12-31T23:59:59-01:00"},
    ],
}
"""The ends of ``datetime`` that random generation seldom reaches (found by an audit)."""


def test_admin_operations_at_the_ends_of_time(admin_target):
    schema, api = admin_target
    for operation in operations(schema, only_admin=True):
        for body in EDGES.get(operation.path, []):
            case = operation.Case(body=body, media_type="application/json")
            response = case.call(headers={"X-API-Key": ADMIN_KEY})
            assert response.status_code == 400, (operation.path, body, response.text)
            check(case, response, excluded=[positive_data_acceptance])
    api.state.jobs.join(timeout=120)
