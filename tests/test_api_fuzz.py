"""Property-based fuzzing of every API operation from its OpenAPI schema (schemathesis's
strategies driven by hypothesis): no 5xx, no response that violates the schema, bad input
answered with 4xx JSON ``{"message": …}``.

``RACE_FUZZ_EXAMPLES`` sets the examples per operation (default 25 for CI; e.g. 500 for a
long soak run)."""

from __future__ import annotations

import os
import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from race.api import create_api
from race.bootstrap import bootstrap
from race.clock import ManualClock
from tests.api_data import LAST_CANDLE, build_race
from tests.conftest import NOW

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


def operations(schema):
    found = []
    for result in schema.get_all_operations():
        found.append(result.ok())
    return found


def check(case, response) -> None:
    where = f"{case.method} {case.formatted_path} {case.query or ''}"
    assert response.status_code < 500, (where, response.text[:300])
    case.validate_response(response)
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict), where
        assert isinstance(body.get("message"), str), where
        assert body["message"], where


@pytest.mark.parametrize("kind", ["positive", "negative"])
def test_every_operation_conforms(fuzz_target, kind):
    from schemathesis.generation import GenerationMode

    mode = GenerationMode.POSITIVE if kind == "positive" else GenerationMode.NEGATIVE
    ops = operations(fuzz_target)
    assert len(ops) >= 15
    for operation in ops:
        strategy = operation.as_strategy(generation_mode=mode)

        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case):
            if "admin" in case.path and case.headers is not None:
                case.headers.pop("X-API-Key", None)
            check(case, case.call())

        try:
            run()
        except Unsatisfiable:
            # No way to make invalid input for an operation without parameters.
            assert kind == "negative", operation.label
