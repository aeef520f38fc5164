"""function_app.py indexed and invoked through the real azure-functions SDK."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest
from freezegun import freeze_time
from sqlalchemy import func as sqlfunc
from sqlalchemy import select, update

from race.bootstrap import bootstrap
from race.settings import DECISION_SCHEDULE, INGEST_SCHEDULE, ML_RETRAIN_SCHEDULE
from race.store.database import Database
from race.store.tables import (
    AgentRow,
    CandleRow,
    CycleRow,
    DecisionRow,
    EquitySnapshotRow,
    JobRow,
    PortfolioRow,
)
from tests.api_data import LAST_CANDLE, START, build_race
from tests.factories import HOUR, live_key

# These tests run the Functions app on SQLite: say it is a local ``func start``, as the
# example local.settings.json does (the variable is set for the import only). Other test
# modules import function_app from here.
with pytest.MonkeyPatch.context() as _import_env:
    _import_env.setenv("RACE_ALLOW_SQLITE_ON_HOST", "true")
    import function_app

FUNCTIONS = {f.get_function_name(): f for f in function_app.app.get_functions()}
ADMIN_KEY = "functions-admin-key-42"
ADMIN_ROUTES = {
    "admin_cycles": ("api/admin/cycles", ["POST"]),
    "admin_agent_run": ("api/admin/agents/{id}/run", ["POST"]),
    "admin_ingest": ("api/admin/ingest", ["POST"]),
    "admin_job": ("api/admin/jobs/{id}", ["GET"]),
    "start_backfill": ("api/admin/backfills", ["POST"]),
    "start_backtest": ("api/admin/races", ["POST"]),
}


def bindings(name):
    return {b.get_dict_repr()["type"]: b.get_dict_repr() for b in FUNCTIONS[name].get_bindings()}


def call(name, *args, **kwargs):
    result = FUNCTIONS[name].get_user_function()(*args, **kwargs)
    return asyncio.run(result) if asyncio.iscoroutine(result) else result


class Out:
    def __init__(self):
        self.values = []

    def set(self, value):
        self.values.append(value)

    def get(self):
        return self.values[-1]


def test_functions_are_indexed_with_their_triggers():
    assert set(FUNCTIONS) == {
        "ingest_market",
        "run_cycle",
        "retrain_ml",
        "backfill_chunk",
        "http_api",
        *ADMIN_ROUTES,
    }
    assert bindings("ingest_market")["timerTrigger"]["schedule"] == INGEST_SCHEDULE
    assert bindings("run_cycle")["timerTrigger"]["schedule"] == DECISION_SCHEDULE
    assert bindings("retrain_ml")["timerTrigger"]["schedule"] == ML_RETRAIN_SCHEDULE
    http = bindings("http_api")["httpTrigger"]
    assert http["route"] == "{*route}"
    assert http["authLevel"] == func.AuthLevel.ANONYMOUS
    assert [str(m.value) for m in http["methods"]] == ["GET", "POST", "OPTIONS", "HEAD"]
    # The write side: a function key on Azure (auth level FUNCTION) plus the app's own key.
    for name, (route, methods) in ADMIN_ROUTES.items():
        trigger = bindings(name)["httpTrigger"]
        assert trigger["authLevel"] == func.AuthLevel.FUNCTION, name
        assert trigger["route"] == route, name
        assert [str(m.value) for m in trigger["methods"]] == methods, name
    start = bindings("start_backfill")
    assert start["queue"]["queueName"] == "race-backfill"
    assert bindings("start_backtest")["queue"]["queueName"] == "race-backfill"
    chunk = bindings("backfill_chunk")
    assert chunk["queueTrigger"]["queueName"] == chunk["queue"]["queueName"] == "race-backfill"
    assert chunk["queueTrigger"]["connection"] == "AzureWebJobsStorage"
    host = json.loads((Path(__file__).resolve().parent.parent / "host.json").read_text())
    assert host["extensions"]["http"]["routePrefix"] == ""
    assert host["version"] == "2.0"


@pytest.fixture
def hosted(database_url, monkeypatch, clock):
    """The Functions runtime pointed at a test database with real rows."""
    monkeypatch.setenv("RACE_DATABASE_URL", database_url)
    monkeypatch.setenv("RACE_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("RACE_BACKFILL_CHUNK_CYCLES", "10")
    monkeypatch.setenv("RACE_BACKFILL_CHUNK_BUDGET_SECONDS", "0.000001")
    # The rows are built by a plain app on the test clock (so a worker builds them once and
    # restores them after: tests/api_data.py), then served by the Functions runtime.
    builder = bootstrap(
        overrides={"RACE_DATABASE_URL": database_url, "RACE_ADMIN_KEY": ADMIN_KEY}, clock=clock
    )
    try:
        build_race(builder)
    finally:
        builder.close()
    function_app.runtime.cache_clear()
    function_app.asgi.cache_clear()
    race = function_app.runtime()
    yield race
    race.close()
    function_app.runtime.cache_clear()
    function_app.asgi.cache_clear()


def count(db: Database, table, *where):
    with db.read() as session:
        return session.scalar(select(sqlfunc.count()).select_from(table).where(*where))


def test_run_cycle_timer_uses_the_scheduled_slot(hosted):
    late = LAST_CANDLE + HOUR + HOUR / 4 + HOUR / 12  # 20 minutes past the hour: slot :15
    with freeze_time(late):
        call("run_cycle", TimerRequest(past_due=True))
    slot = LAST_CANDLE + HOUR + HOUR / 4
    with hosted.db.read() as session:
        cycle = session.get(CycleRow, live_key(session, slot))
        assert cycle.status == "completed"
        assert cycle.trigger == "timer"
    assert count(hosted.db, DecisionRow, DecisionRow.cycle_time == slot) == 5


def test_two_timer_invocations_for_one_slot_make_one_cycle(hosted):
    slot = LAST_CANDLE + HOUR + HOUR / 2

    async def both():
        await asyncio.gather(
            FUNCTIONS["run_cycle"].get_user_function()(TimerRequest(past_due=False)),
            FUNCTIONS["run_cycle"].get_user_function()(TimerRequest(past_due=True)),
        )

    with freeze_time(slot + HOUR / 60):
        asyncio.run(both())
    assert count(hosted.db, DecisionRow, DecisionRow.cycle_time == slot) == 5
    assert count(hosted.db, CycleRow, CycleRow.cycle_time == slot) == 1


INGEST_NOW = LAST_CANDLE + 3 * HOUR + HOUR / 2  # the 3 h candle has closed (and settled)


@pytest.fixture
def coingecko(hosted, monkeypatch):
    """The Functions runtime with CoinGecko served by the loopback fake."""
    from tests.coingecko_server import FakeCoinGecko

    with FakeCoinGecko(now=lambda: INGEST_NOW, demo_key="cg-demo-key") as server:
        monkeypatch.setenv("COINGECKO_BASE_URL", server.base_url)
        monkeypatch.setenv("COINGECKO_API_KEY", "cg-demo-key")
        function_app.runtime.cache_clear()
        function_app.asgi.cache_clear()
        race = function_app.runtime()
        yield race, server
        race.close()


def test_ingest_timer_fetches_then_marks(coingecko, caplog):
    race, server = coingecko
    before = count(race.db, CandleRow)
    with freeze_time(INGEST_NOW), caplog.at_level("INFO", logger="race.functions"):
        call("ingest_market", TimerRequest(past_due=False))
    assert server.requests, "the timer called CoinGecko"
    assert server.requests[0].headers["x-cg-demo-api-key"] == "cg-demo-key"
    inserted = count(race.db, CandleRow) - before
    assert inserted > 0
    newest = LAST_CANDLE + 3 * HOUR
    assert count(race.db, EquitySnapshotRow, EquitySnapshotRow.captured_at == newest) == 5
    lines = [r.getMessage() for r in caplog.records if r.name == "race.functions"]
    assert f"ingested {inserted} new candles, marked 5 portfolios" in lines


def test_http_api_serves_the_dashboard(hosted):
    request = func.HttpRequest(
        "GET",
        "http://localhost/api/leaderboard",
        headers={"Origin": "http://localhost:5173"},
        route_params={"route": "api/leaderboard"},
        body=b"",
    )
    response = call("http_api", request, _Context())
    assert response.status_code == 200
    board = json.loads(response.get_body())
    assert len(board) == 6
    assert response.headers["access-control-allow-origin"] == "http://localhost:5173"
    missing = func.HttpRequest(
        "GET",
        "http://localhost/api/agents/987654",
        route_params={"route": "api/agents/987654"},
        body=b"",
    )
    response = call("http_api", missing, _Context())
    assert response.status_code == 404
    assert json.loads(response.get_body())["message"]


class _Context:
    invocation_id = "test-invocation"
    function_name = "http_api"
    function_directory = "."
    trace_context = None
    retry_context = None
    thread_local_storage = None


def test_backfill_over_http_and_queue(hosted):
    body = json.dumps(
        {
            "start": (START + 60 * HOUR).isoformat(),
            "end": (START + 100 * HOUR).isoformat(),
            "interval": "1h",
        }
    ).encode()
    from race.domain.model import Provider
    from race.universe import NewAgent, add_agent

    add_agent(
        hosted.db,
        NewAgent(name="Queue Joiner", provider=Provider.MOCK, model="cash"),
        hosted.settings.starting_capital,
        hosted.clock,
    )
    denied = func.HttpRequest(
        "POST", "http://localhost/api/admin/backfills", body=body, headers={"X-API-Key": "nope"}
    )
    queue = Out()
    response = call("start_backfill", denied, queue)
    assert response.status_code == 401
    assert queue.values == []
    request = func.HttpRequest(
        "POST",
        "http://localhost/api/admin/backfills",
        body=body,
        headers={"X-API-Key": ADMIN_KEY, "Content-Type": "application/json"},
    )
    response = call("start_backfill", request, queue)
    assert response.status_code == 202
    job_id = json.loads(response.get_body())["jobId"]
    assert json.loads(queue.get()) == {"jobId": int(job_id)}
    # The queue trigger works the job in chunks, re-queueing itself until done.
    hops = 0
    while queue.values:
        message = func.QueueMessage(body=queue.values.pop())
        call("backfill_chunk", message, queue)
        hops += 1
        assert hops < 20
    assert hops > 1
    with hosted.db.read() as session:
        job = session.get(JobRow, int(job_id))
        assert (job.status, job.done, job.total) == ("completed", 41, 41)
    # Its status, through the admin_job function.
    path = f"api/admin/jobs/{job_id}"
    status = call("admin_job", admin_request("GET", path, route_params={"id": job_id}), _Context())
    assert status.status_code == 200, status.get_body()
    assert json.loads(status.get_body())["status"] == "completed"
    denied = call("admin_job", admin_request("GET", path, None), _Context())
    assert denied.status_code == 401


def test_backtest_over_http_and_queue(hosted):
    body = json.dumps(
        {"start": (START + 60 * HOUR).isoformat(), "end": (START + 80 * HOUR).isoformat()}
    ).encode()
    queue = Out()
    denied = call("start_backtest", admin_request("POST", "api/admin/races", "nope", body), queue)
    assert denied.status_code == 401 and queue.values == []
    bad = call("start_backtest", admin_request("POST", "api/admin/races", body=b"{oops"), queue)
    assert bad.status_code == 400 and queue.values == []
    response = call("start_backtest", admin_request("POST", "api/admin/races", body=body), queue)
    assert response.status_code == 202, response.get_body()
    accepted = json.loads(response.get_body())
    assert json.loads(queue.get()) == {"jobId": int(accepted["jobId"])}
    hops = 0
    while queue.values:  # the backfill queue's trigger works the backtest's job too
        call("backfill_chunk", func.QueueMessage(body=queue.values.pop()), queue)
        hops += 1
        assert hops < 20
    from race.store import races as race_rows

    with hosted.db.read() as session:
        race = race_rows.get(session, int(accepted["raceId"]))
        counts = race_rows.counts(session, int(accepted["raceId"]))
    assert race is not None and race.status == "completed"
    assert counts.cycles == 21 and counts.decisions == 21 * counts.participants > 0


@pytest.mark.parametrize(
    ("body", "key", "status", "named"),
    [
        (b"{oops", ADMIN_KEY, 400, "JSON"),
        (b"{oops", None, 401, "X-API-Key"),  # the key is checked before the body
        (b"x" * 20000, ADMIN_KEY, 413, "larger"),
        (b"x" * 20000, "wrong", 401, "X-API-Key"),
        (b'{"start": 1, "end": "2024-01-02"}', ADMIN_KEY, 400, "start"),
        (
            b'{"start":"0874-01-01T00:00:00Z","end":"2000-01-01T00:00:00Z","interval":"400000D"}',
            ADMIN_KEY,
            400,
            "start",
        ),
        (
            b'{"start":"2000-01-01T00:00:00Z","end":"2001-01-01T00:00:00Z","interval":"400000D"}',
            ADMIN_KEY,
            400,
            "interval",
        ),
        (b'{"start":"9999-12-31T23:59:59Z","end":"9999-12-31T23:59:59Z"}', ADMIN_KEY, 400, "start"),
        (b'{"start":"2024-01-01","end":"9999-12-31T23:59:59-01:00"}', ADMIN_KEY, 400, "end"),
        (
            b'{"start":"2024-01-01","end":"2024-01-02","interval":"99999999999d"}',
            ADMIN_KEY,
            400,
            "interval",
        ),
        (b'{"start":"2040-01-01","end":"2040-01-02"}', ADMIN_KEY, 400, "is in the future"),
    ],
)
def test_start_backfill_refuses_bad_requests_before_any_work(hosted, body, key, status, named):
    queue = Out()
    jobs = count(hosted.db, JobRow)
    response = call(
        "start_backfill", admin_request("POST", "api/admin/backfills", key, body), queue
    )
    assert response.status_code == status, response.get_body()
    assert response.mimetype == "application/json"
    assert named in json.loads(response.get_body())["message"]
    assert queue.values == []
    assert count(hosted.db, JobRow) == jobs


def test_scheduled_time_is_never_the_wall_clock():
    from race.schedule import scheduled_time

    late = datetime(2024, 5, 1, 10, 29, 59, tzinfo=UTC)
    assert scheduled_time(DECISION_SCHEDULE, late) == datetime(2024, 5, 1, 10, 15, tzinfo=UTC)


def admin_request(method, path, key=ADMIN_KEY, body=b"", route_params=None):
    headers = {"Content-Type": "application/json", "x-functions-key": "host-checks-this"}
    if key is not None:
        headers["X-API-Key"] = key
    return func.HttpRequest(
        method,
        f"http://localhost/{path}",
        headers=headers,
        route_params=route_params or {},
        body=body,
    )


def test_admin_functions_run_a_cycle_and_one_agent_into_sql(hosted):
    slot = LAST_CANDLE + 2 * HOUR
    body = json.dumps({"at": (slot + HOUR / 6).isoformat()}).encode()  # 10 min into a slot
    for key in (None, "wrong"):
        request = admin_request("POST", "api/admin/cycles", key, body)
        response = call("admin_cycles", request, _Context())
        assert response.status_code == 401
        assert json.loads(response.get_body()) == {"message": "missing or wrong X-API-Key"}
    assert count(hosted.db, DecisionRow, DecisionRow.cycle_time == slot) == 0
    response = call(
        "admin_cycles", admin_request("POST", "api/admin/cycles", body=body), _Context()
    )
    assert response.status_code == 200, response.get_body()
    run = json.loads(response.get_body())
    assert run["cycleTime"] == slot.isoformat()
    assert run["decided"] == 5
    assert count(hosted.db, DecisionRow, DecisionRow.cycle_time == slot) == 5
    with hosted.db.read() as session:
        assert session.get(CycleRow, live_key(session, slot)).trigger == "admin"

    later = slot + HOUR
    agent = 1
    path = f"api/admin/agents/{agent}/run"
    body = json.dumps({"at": later.isoformat()}).encode()
    request = admin_request("POST", path, body=body, route_params={"id": str(agent)})
    response = call("admin_agent_run", request, _Context())
    assert response.status_code == 200, response.get_body()
    assert json.loads(response.get_body())["decided"] == 1
    assert count(hosted.db, DecisionRow, DecisionRow.cycle_time == later) == 1
    assert (
        count(
            hosted.db, DecisionRow, DecisionRow.agent_id == agent, DecisionRow.cycle_time == later
        )
        == 1
    )
    # Extreme input is a 400 naming the field, never a 500.
    for extreme in ("9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00"):
        bad = json.dumps({"at": extreme}).encode()
        response = call(
            "admin_cycles", admin_request("POST", "api/admin/cycles", body=bad), _Context()
        )
        assert response.status_code == 400, extreme
        assert "at" in json.loads(response.get_body())["message"]


def test_admin_ingest_function_fetches_and_marks(coingecko):
    race, server = coingecko
    before = count(race.db, CandleRow)
    with freeze_time(INGEST_NOW):
        denied = call("admin_ingest", admin_request("POST", "api/admin/ingest", "nope"), _Context())
        assert denied.status_code == 401
        assert server.requests == []
        response = call("admin_ingest", admin_request("POST", "api/admin/ingest"), _Context())
    assert response.status_code == 200, response.get_body()
    result = json.loads(response.get_body())
    assert result["ok"] is True
    assert result["totals"]["inserted"] == count(race.db, CandleRow) - before > 0
    assert result["marked"] == 5
    assert result["markedAt"] == (LAST_CANDLE + 3 * HOUR).isoformat()


def test_the_catch_all_never_serves_admin_routes(hosted):
    """The anonymous catch-all must not become a way around the function key."""
    encoded = ("GET", "api/admin%2Fjobs/1"), ("GET", "api/%61dmin/jobs/1"), ("GET", "API/ADMIN")
    for method, path in (("POST", "api/admin/cycles"), ("GET", "api/admin/jobs/1"), *encoded):
        request = admin_request(method, path, route_params={"route": path})
        response = call("http_api", request, _Context())
        assert response.status_code == 404
        assert json.loads(response.get_body())["message"].startswith("no such endpoint")
    assert count(hosted.db, CycleRow, CycleRow.trigger == "admin") == 0


def test_late_timers_log_past_due(hosted, caplog):
    slot = LAST_CANDLE + 3 * HOUR
    with caplog.at_level("WARNING", logger="race.functions"), freeze_time(slot + HOUR / 5):
        call("run_cycle", TimerRequest(past_due=True))
    assert any(
        "past due" in r.getMessage() and slot.isoformat() in r.getMessage() for r in caplog.records
    )
    assert count(hosted.db, DecisionRow, DecisionRow.cycle_time == slot) == 5


def test_the_functions_that_run_cycles_warm_the_app_up_first(hosted):
    """The worker's first cycle finds its agents built (App.warm_up); the dashboard's
    requests do not warm up."""
    response = call("http_api", admin_request("GET", "api/leaderboard"), _Context())
    assert response.status_code == 200
    assert hosted.warmed is None
    slot = LAST_CANDLE + 2 * HOUR
    with freeze_time(slot + HOUR / 60):
        call("run_cycle", TimerRequest(past_due=False))
    assert hosted.warmed is not None
    assert hosted.warmed.agents == 5 and hosted.warmed.failures == []
    assert count(hosted.db, DecisionRow, DecisionRow.cycle_time == slot) == 5


def test_the_llm_stack_is_imported_with_the_app():
    import sys

    assert "agents.llama" in sys.modules
    assert function_app.QUEUE_CONNECTION == "AzureWebJobsStorage"


def test_the_timer_completes_a_cycle_cut_short_in_an_earlier_slot(hosted):
    cut = LAST_CANDLE + 5 * HOUR
    with hosted.db.write() as session:
        first = min(session.scalars(select(AgentRow.id)))
        # The fixture's agents joined on the wall clock; here they race since START.
        session.execute(update(PortfolioRow).values(created_at=START))
    # A run of slot `cut` that decided one agent only (the host died, the database went away).
    asyncio.run(hosted.engine.run_cycle(cut, trigger="timer", agent_ids=[first]))
    assert count(hosted.db, DecisionRow, DecisionRow.cycle_time == cut) == 1
    with freeze_time(cut + HOUR / 4 + HOUR / 60):  # the next slot's timer
        call("run_cycle", TimerRequest(past_due=False))
    assert count(hosted.db, DecisionRow, DecisionRow.cycle_time == cut) == 5
    assert count(hosted.db, DecisionRow, DecisionRow.cycle_time == cut + HOUR / 4) == 5
    with hosted.db.read() as session:
        assert session.get(CycleRow, live_key(session, cut)).status == "completed"


def _import_function_app(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """``import function_app`` in a fresh interpreter, as the Functions worker does, with
    only ``settings`` (no local.settings.json or .env of the checkout)."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("RACE_")}
    env.update(settings, RACE_SETTINGS_DIR=str(tmp_path), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        [sys.executable, "-c", "import function_app"],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_host_refuses_sqlite_in_one_line_naming_the_setting(tmp_path):
    sqlite_url = f"sqlite:///{tmp_path / 'race.db'}"
    for allow in ({}, {"RACE_ALLOW_SQLITE_ON_HOST": "false"}):
        run = _import_function_app(tmp_path, RACE_DATABASE_URL=sqlite_url, **allow)
        assert run.returncode != 0
        lines = [line for line in run.stderr.splitlines() if "refusing to start" in line]
        assert len(lines) == 1, run.stderr
        assert "RACE_DATABASE_URL" in lines[0] and "RACE_ALLOW_SQLITE_ON_HOST" in lines[0]
        assert str(tmp_path) not in lines[0]  # the setting is named, its value is not
    # The default database (no RACE_DATABASE_URL at all) is SQLite too.
    assert "refusing to start" in _import_function_app(tmp_path).stderr
    assert not (tmp_path / "race.db").exists()


def test_the_host_starts_on_sqlite_when_told_it_is_a_local_func_start(tmp_path):
    sqlite_url = f"sqlite:///{tmp_path / 'race.db'}"
    run = _import_function_app(
        tmp_path, RACE_DATABASE_URL=sqlite_url, RACE_ALLOW_SQLITE_ON_HOST="true"
    )
    assert run.returncode == 0, run.stderr
    assert "refusing to start" not in run.stderr


def test_the_host_starts_on_postgresql_without_the_flag(tmp_path):
    # Importing connects nothing (the object graph is built on first use): any URL does.
    url = "postgresql+psycopg://race:secret@127.0.0.1:1/race?sslmode=require"
    run = _import_function_app(tmp_path, RACE_DATABASE_URL=url)
    assert run.returncode == 0, run.stderr
    assert "refusing to start" not in run.stderr
