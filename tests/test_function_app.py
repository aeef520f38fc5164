"""function_app.py indexed and invoked through the real azure-functions SDK."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest
from freezegun import freeze_time
from sqlalchemy import func as sqlfunc
from sqlalchemy import select

import function_app
from race.settings import DECISION_SCHEDULE, INGEST_SCHEDULE
from race.store.database import Database
from race.store.tables import CandleRow, CycleRow, DecisionRow, EquitySnapshotRow, JobRow
from tests.api_data import LAST_CANDLE, START, build_race
from tests.factories import HOUR

FUNCTIONS = {f.get_function_name(): f for f in function_app.app.get_functions()}
ADMIN_KEY = "functions-admin-key-42"


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


def start_auth(found):
    return found["httpTrigger"]["authLevel"]


def test_functions_are_indexed_with_their_triggers():
    assert set(FUNCTIONS) == {
        "ingest_market",
        "run_cycle",
        "start_backfill",
        "backfill_chunk",
        "http_api",
    }
    assert bindings("ingest_market")["timerTrigger"]["schedule"] == INGEST_SCHEDULE
    assert bindings("run_cycle")["timerTrigger"]["schedule"] == DECISION_SCHEDULE
    http = bindings("http_api")["httpTrigger"]
    assert http["route"] == "{*route}"
    assert http["authLevel"] == func.AuthLevel.ANONYMOUS
    assert start_auth(bindings("start_backfill")) == func.AuthLevel.ANONYMOUS
    start = bindings("start_backfill")
    assert start["httpTrigger"]["route"] == "api/admin/backfills"
    assert start["queue"]["queueName"] == "race-backfill"
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
    function_app.runtime.cache_clear()
    function_app.asgi.cache_clear()
    race = function_app.runtime()
    build_race(race)
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
        cycle = session.get(CycleRow, slot)
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


def test_ingest_timer_fetches_then_marks(hosted, monkeypatch, request):
    from tests.coingecko_server import FakeCoinGecko

    now = LAST_CANDLE + 3 * HOUR + HOUR / 12
    with FakeCoinGecko(now=lambda: now, demo_key="cg-demo-key") as server:
        monkeypatch.setenv("COINGECKO_BASE_URL", server.base_url)
        monkeypatch.setenv("COINGECKO_API_KEY", "cg-demo-key")
        function_app.runtime.cache_clear()
        race = function_app.runtime()
        request.addfinalizer(race.close)
        before = count(race.db, CandleRow)
        with freeze_time(now):
            call("ingest_market", TimerRequest(past_due=False))
        assert server.requests, "the timer called CoinGecko"
        assert server.requests[0].headers["x-cg-demo-api-key"] == "cg-demo-key"
        assert count(race.db, CandleRow) > before
        newest = LAST_CANDLE + 3 * HOUR
        assert count(race.db, EquitySnapshotRow, EquitySnapshotRow.captured_at == newest) == 5


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
        "POST", "http://localhost/api/admin/backfills", body=body, headers={"X-API-Key": ADMIN_KEY}
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
    bad = func.HttpRequest(
        "POST",
        "http://localhost/api/admin/backfills",
        body=b"{oops",
        headers={"X-API-Key": ADMIN_KEY},
    )
    assert call("start_backfill", bad, Out()).status_code == 400
    huge = func.HttpRequest(
        "POST",
        "http://localhost/api/admin/backfills",
        body=b"x" * 20000,
        headers={"X-API-Key": ADMIN_KEY},
    )
    assert call("start_backfill", huge, Out()).status_code == 413


def test_scheduled_time_is_never_the_wall_clock():
    from race.schedule import scheduled_time

    late = datetime(2024, 5, 1, 10, 29, 59, tzinfo=UTC)
    assert scheduled_time(DECISION_SCHEDULE, late) == datetime(2024, 5, 1, 10, 15, tzinfo=UTC)


def test_http_api_runs_an_admin_cycle_into_sql(hosted):
    slot = LAST_CANDLE + 2 * HOUR
    body = json.dumps({"at": (slot + HOUR / 6).isoformat()}).encode()  # 10 min into a slot

    def post(key):
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["X-API-Key"] = key
        return func.HttpRequest(
            "POST",
            "http://localhost/api/admin/cycles",
            headers=headers,
            route_params={"route": "api/admin/cycles"},
            body=body,
        )

    for key in (None, "wrong"):
        response = call("http_api", post(key), _Context())
        assert response.status_code == 401
        assert json.loads(response.get_body()) == {"message": "missing or wrong X-API-Key"}
    assert count(hosted.db, DecisionRow, DecisionRow.cycle_time == slot) == 0
    response = call("http_api", post(ADMIN_KEY), _Context())
    assert response.status_code == 200, response.get_body()
    run = json.loads(response.get_body())
    assert run["cycleTime"] == slot.isoformat()
    assert run["decided"] == 5
    assert count(hosted.db, DecisionRow, DecisionRow.cycle_time == slot) == 5
    with hosted.db.read() as session:
        assert session.get(CycleRow, slot).trigger == "admin"


def test_late_timers_log_past_due(hosted, caplog):
    slot = LAST_CANDLE + 3 * HOUR
    with caplog.at_level("WARNING", logger="race.functions"), freeze_time(slot + HOUR / 5):
        call("run_cycle", TimerRequest(past_due=True))
    assert any(
        "past due" in r.getMessage() and slot.isoformat() in r.getMessage() for r in caplog.records
    )
    assert count(hosted.db, DecisionRow, DecisionRow.cycle_time == slot) == 5


def test_the_llm_stack_is_imported_with_the_app():
    import sys

    assert "agents.llama" in sys.modules
    assert function_app.QUEUE_CONNECTION == "AzureWebJobsStorage"
