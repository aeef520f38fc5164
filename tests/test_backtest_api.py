"""``POST /api/admin/races`` (issue 13 §7): starts a backtest race as a job run by the same
runner as the backfills (202 + the job and the race id), with the rows the CLI's backtest
writes; bad bodies are 4xx JSON, LLM participants a 409."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from race.api import create_api
from race.bootstrap import App, bootstrap
from race.clock import ManualClock
from race.domain.model import Provider
from race.races import engine_for
from race.store import jobs as job_rows
from race.usecases import backfill as backfilling
from tests.factories import HOUR, seed_agent, seed_baselines
from tests.test_backtest import START, _backtest, _market, _rows

KEY = "backtest-admin-key-0123456789"
HEADERS = {"X-API-Key": KEY}


@pytest.fixture
def admin(database_url: str, clock: ManualClock) -> Iterator[tuple[App, TestClient]]:
    app = bootstrap(
        overrides={"RACE_DATABASE_URL": database_url, "RACE_ADMIN_KEY": KEY}, clock=clock
    )
    _market(app)
    seed_baselines(app, ["buy_and_hold", "sma_cross", "random"])
    seed_agent(app, "Llama", Provider.LLAMA, "llama-3.3-70b-versatile")
    clock.advance(10 * 24 * 3600)
    api = create_api(app, resume_jobs=False)
    yield app, TestClient(api)
    api.state.jobs.join(timeout=60)
    app.close()


def _post(client: TestClient, body: Any, status: int, headers: dict[str, str] = HEADERS) -> Any:
    answer = client.post("/api/admin/races", json=body, headers=headers)
    assert answer.status_code == status, answer.text
    return answer.json()


def test_a_backtest_job_writes_the_rows_of_the_cli_backtest(
    admin: tuple[App, TestClient],
) -> None:
    app, client = admin
    body = {
        "start": (START + 50 * HOUR).isoformat(),
        "end": (START + 100 * HOUR).isoformat(),
        "agents": ["Buy & Hold", "sma cross 10/30", "Random Walker"],
        "fee": 0.002,
        "startingCapital": 50000,
        "name": "api run",
    }
    accepted = _post(client, body, 202)
    assert accepted["status"] == "accepted"
    assert accepted["statusUrl"] == f"/api/admin/jobs/{accepted['jobId']}"
    assert accepted["raceUrl"] == f"/api/races/{accepted['raceId']}"
    client.app.state.jobs.join(timeout=60)  # type: ignore[attr-defined]
    job = client.get(accepted["statusUrl"], headers=HEADERS).json()
    assert job["status"] == "completed" and job["params"]["race"] == int(accepted["raceId"])
    race = client.get(accepted["raceUrl"]).json()
    assert race["name"] == "api run" and race["kind"] == "backtest"
    assert race["status"] == "completed" and race["rules"]["feeRate"] == 0.002
    assert race["startingCapital"] == 50000 and race["counts"]["decisions"] == 51 * 3
    board = client.get(f"/api/leaderboard?race={accepted['raceId']}").json()
    assert len(board) == 3
    # The same backtest from the CLI's code path writes the same rows.
    same = _backtest(
        app,
        agents=("Buy & Hold", "SMA Cross 10/30", "Random Walker"),
        fee=Decimal("0.002"),
        starting_capital=Decimal("50000"),
    )
    assert _rows(app, same) == _rows(app, int(accepted["raceId"]))
    _post(client, body, 400)  # the name is taken now


GOOD = {"start": "2024-01-03T00:00:00Z", "end": "2024-01-04T00:00:00Z"}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 400, "start and end required"),
        ([1], 400, "body must be a JSON object"),
        ({**GOOD, "colour": "red"}, 400, "unknown field(s) colour"),
        ({**GOOD, "start": "2024-01-05T00:00:00Z"}, 400, "is before start"),
        ({**GOOD, "start": 5}, 400, "start must be a string"),
        ({**GOOD, "end": "2025-01-01T00:00:00Z"}, 400, "is in the future"),
        ({**GOOD, "interval": "10s"}, 400, "interval"),
        ({"start": "2023-01-01T00:00:00Z", "end": "2023-01-02T00:00:00Z"}, 400, "no candles"),
        ({**GOOD, "fee": -0.1}, 400, "fee must be ≥ 0"),
        ({**GOOD, "fee": "0.1"}, 400, "fee must be a number"),
        ({**GOOD, "slippageBps": -1}, 400, "slippage (bps) must be ≥ 0"),
        ({**GOOD, "startingCapital": 0}, 400, "starting capital (USD) must be > 0"),
        ({**GOOD, "maxPosition": 2}, 400, "max position"),
        ({**GOOD, "maxOrder": True}, 400, "maxOrder must be a number"),
        ({**GOOD, "agents": "Buy & Hold"}, 400, "agents must be a list"),
        ({**GOOD, "agents": ["nobody"]}, 400, "unknown agent 'nobody'"),
        ({**GOOD, "agents": ["Llama"]}, 409, "agent(s) Llama call a paid or remote provider"),
        ({**GOOD, "name": "live"}, 400, "a race named 'live' already exists"),
    ],
)
def test_bad_backtest_bodies_are_json_errors(
    admin: tuple[App, TestClient], body: Any, status: int, message: str
) -> None:
    app, client = admin
    answer = _post(client, body, status)
    assert message in answer["message"], answer
    with app.db.read() as session:
        from race.store import races as race_rows

        assert len(race_rows.all_races(session)) == 1  # nothing created


def test_backtests_need_the_admin_key(admin: tuple[App, TestClient]) -> None:
    _, client = admin
    _post(client, GOOD, 401, headers={})
    schema = client.get("/api/openapi.json").json()
    operation = schema["paths"]["/api/admin/races"]["post"]
    assert {"202", "400", "401", "409"} <= set(operation["responses"])
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert {"start", "end", "agents", "fee", "startingCapital"} <= set(body["properties"])


def test_a_new_runner_resumes_an_api_backtest_but_not_a_cli_one(
    admin: tuple[App, TestClient],
) -> None:
    """``serve`` (re)starting resumes the jobs handed to a runner — an admin request's
    backtest among them — but never a backtest a terminal started (it may have paid LLM
    calls to confirm): that one is resumed by ``backtest --resume``."""
    from race.api.admin_races import start_backtest_job
    from race.backtest import BacktestRequest, create_backtest, plan_backtest
    from race.jobs import LocalJobRunner, unfinished_jobs

    app, _ = admin
    body = {"start": (START + 50 * HOUR).isoformat(), "end": (START + 60 * HOUR).isoformat()}
    accepted, handed = start_backtest_job(app, json.dumps(body).encode())
    request = BacktestRequest(start=START + 50 * HOUR, end=START + 60 * HOUR)
    typed = create_backtest(app, plan_backtest(app, request))
    own = engine_for(app, typed).deps  # the CLI's job: created running, by its own process
    cli_job = backfilling._job(own, START + 50 * HOUR, START + 60 * HOUR, HOUR, 11)
    assert unfinished_jobs(app) == [handed]
    runner = LocalJobRunner(app)
    assert runner.resume_unfinished() == [handed]
    runner.join(timeout=60)
    with app.db.read() as session:
        assert job_rows.by_id(session, handed).status == "completed"
        assert job_rows.by_id(session, cli_job).status == "running"
    assert int(accepted.raceId) != typed.id
