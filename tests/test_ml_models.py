"""Models that live in the database (issue 14, part 4): migration 0011 on a populated
database; two processes with different artifact folders deciding with the same stored
model; a corrupt cache file replaced from the database; the retraining timer promoting and
refusing by held-out metrics (on the injected clock); decisions carrying the model version;
``ml list/show/promote/rollback`` (a rollback switches the model the next cycle uses); and
``GET /api/models``. SQLite and, with ``RACE_TEST_POSTGRES_URL``, PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import pytest
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from race.api import create_api
from race.cli import main
from race.clock import ManualClock
from race.domain.model import Provider
from race.ml_service import promotion, retrain
from race.schedule import scheduled_time
from race.scheduler import race_jobs
from race.store import ml_models
from race.store.database import alembic_config
from race.store.tables import DecisionRow, MLModelRow
from tests import test_ml_agent
from tests.factories import seed_agent
from tests.test_docs import API_DOC, json_type, sections
from tests.test_ml_agent import UNTIL, make_app, prediction_app

# The session's bundled candles and trained model (trained once, shared with test_ml_agent).
bundled = test_ml_agent.bundled
real_app = test_ml_agent.real_app

ROOT = Path(__file__).resolve().parent.parent
VERSION = "20230201T000000Z-h4"
OLDER = "20230125T000000Z-h4"


def _copy_as(app, version: str, trained_until: datetime, *, promote: bool) -> None:
    """Another stored version of the bundled model (its bytes, an earlier cut-off)."""
    with app.db.write() as session:
        row = ml_models.find(session, "direction-gb", VERSION)
        data, _ = ml_models.artifact_of(session, row.id)
        ml_models.add(
            session,
            ml_models.NewModel(
                name="direction-gb",
                version=version,
                artifact=data,
                trained_until=trained_until,
                train_start=row.train_start,
                train_end=row.train_end,
                test_start=row.test_start,
                test_end=row.test_end,
                horizon=row.horizon,
                features=row.features,
                metrics=row.metrics,
                info=row.info,
            ),
            created_at=app.clock.now(),
            status=ml_models.PROMOTED if promote else ml_models.CANDIDATE,
            reason="test copy",
        )


def _versions_by_cycle(app, agent_id: int) -> dict[datetime, str | None]:
    with app.db.read() as session:
        return {
            r.cycle_time: r.model_version
            for r in session.scalars(select(DecisionRow).where(DecisionRow.agent_id == agent_id))
        }


# ---------------------------------------------------------------- migration 0011


def test_0011_adds_the_models_table_and_the_decisions_model_version(empty_db):
    db = empty_db
    db.upgrade("0010")
    t0 = datetime(2024, 1, 1)  # naive on purpose: raw rows
    with db.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO agents (id, name, strategy, provider, model, instructions, params, "
                "is_active, created_at) VALUES (1, 'A', '', 'Mock', 'cash', '', '{}', true, :t)"
            ),
            {"t": t0},
        )
        connection.execute(
            text(
                "INSERT INTO decisions (id, agent_id, cycle_time, action, rationale, cited_rules,"
                " regime, market_conditions, value_before, value_after, was_validated,"
                " proposed_orders, fallback, details) VALUES (1, 1, :t, 'HOLD', 'r', '[]',"
                " 'calm', '{}', 100, 100, true, '[]', false, '{}')"
            ),
            {"t": t0},
        )
    db.upgrade("0011")
    assert db.current_revision() == "0011"
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT id, model_version FROM decisions")).all() == [
            (1, None)
        ]
    # Bytes with NULs and every byte value, a 64-bit size: what BYTEA and BIGINT hold.
    artifact = bytes(range(256)) * 64
    with db.write() as session:
        ml_models.add(
            session,
            ml_models.NewModel(
                name="m",
                version="v1",
                artifact=artifact,
                trained_until=datetime(2024, 1, 1, tzinfo=UTC),
                train_start=datetime(2023, 1, 1, tzinfo=UTC),
                train_end=datetime(2023, 10, 1, tzinfo=UTC),
                test_start=datetime(2023, 10, 2, tzinfo=UTC),
                test_end=datetime(2023, 12, 31, tzinfo=UTC),
                horizon=4,
                features=["a\x00b"],
                metrics={"accuracy": float("nan"), "baselineAccuracy": float("inf"), "n": 3},
                info={"note": "x\x00y"},
            ),
            created_at=datetime(2024, 1, 2, tzinfo=UTC),
            status=ml_models.PROMOTED,
            reason="first\x00",
        )
    with db.read() as session:
        row = ml_models.find(session, "m", "v1")
        assert ml_models.artifact_of(session, row.id) == (
            artifact,
            hashlib.sha256(artifact).hexdigest(),
        )
        assert row.size_bytes == len(artifact)
        assert row.metrics == {"accuracy": None, "baselineAccuracy": None, "n": 3}
        assert row.features == ["ab"] and row.info == {"note": "xy"} and row.reason == "first"
        assert row.status == "promoted" and row.promoted_at == datetime(2024, 1, 2, tzinfo=UTC)

    with db.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "-1")
    assert db.current_revision() == "0010"
    inspector = sa.inspect(db.engine)
    assert "ml_models" not in inspector.get_table_names()
    assert "model_version" not in {c["name"] for c in inspector.get_columns("decisions")}
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM decisions")).scalar() == 1
    db.upgrade("0011")
    assert db.current_revision() == "0011"


# ---------------------------------------------------------------- one model for every process

_DECIDE = """
import asyncio, json, sys
from datetime import datetime
from race.bootstrap import bootstrap
from race.clock import ManualClock
from race.store import repository as repo
from tests.test_ml_agent import _context_at

at = datetime.fromisoformat(sys.argv[1])
app = bootstrap(clock=ManualClock(at))
with app.db.read() as session:
    [spec] = [s for s in repo.active_agents(session) if s.name == "ML"]
answer = asyncio.run(app.engine.agent_for(spec).decide(_context_at(app, spec, at)))
print(json.dumps({"version": answer.model_version, "fallback": answer.fallback_reason,
                  "signals": answer.details.get("signals")}))
app.close()
"""


def _decide_in_process(database_url: str, artifacts: Path, at: datetime) -> dict:
    env = {
        **os.environ,
        "RACE_DATABASE_URL": database_url,
        "RACE_ML_ARTIFACT_DIR": str(artifacts),
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", _DECIDE, at.isoformat()],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_two_processes_with_different_artifact_folders_decide_with_the_database_model(
    bundled, database_url, tmp_path
):
    app, report = prediction_app(bundled, database_url)
    try:
        seed_agent(app, "ML", Provider.CUSTOM_ML, model="direction-gb")
        with app.db.read() as session:
            digest = ml_models.promoted(session, "direction-gb").sha256
    finally:
        app.close()
    at = UNTIL + timedelta(hours=10)
    first = _decide_in_process(database_url, tmp_path / "instance-a", at)
    second = _decide_in_process(database_url, tmp_path / "instance-b", at)
    assert first["fallback"] is None and first["version"] == report.version == VERSION
    assert first == second
    assert set(first["signals"]) == {"BTC", "ETH"}
    for folder in ("instance-a", "instance-b"):  # each folder a cache of the stored bytes
        cached = tmp_path / folder / "cache" / f"{digest}.joblib"
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == digest


def test_a_corrupt_cache_file_is_replaced_from_the_database(bundled, sqlite_url, tmp_path, caplog):
    builder, report = prediction_app(bundled, sqlite_url)
    builder.close()
    app = make_app(sqlite_url, tmp_path / "cache-root")  # an empty cache of its own
    try:
        agent = seed_agent(app, "ML", Provider.CUSTOM_ML, model="direction-gb")
        with app.db.read() as session:
            digest = ml_models.promoted(session, "direction-gb").sha256
        cached = tmp_path / "cache-root" / "cache" / f"{digest}.joblib"
        cached.parent.mkdir(parents=True)
        cached.write_bytes(b"not a model at all")
        with caplog.at_level(logging.WARNING, logger="agents.ml"):
            asyncio.run(app.engine.run_cycle(UNTIL + timedelta(hours=10)))
        assert "is corrupt: replaced from the database" in caplog.text
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == digest
        assert set(_versions_by_cycle(app, agent).values()) == {report.version}
        with app.db.read() as session:
            row = session.scalar(select(DecisionRow).where(DecisionRow.agent_id == agent))
        assert row.fallback is False and row.model == f"direction-gb@{report.version}"
    finally:
        app.close()


# ---------------------------------------------------------------- the retraining timer


def test_the_retraining_timer_promotes_and_refuses_by_held_out_metrics(
    real_app, database_url, caplog
):
    clock = ManualClock(datetime(2023, 1, 25, 12, tzinfo=UTC))  # the timer's injected clock
    [job] = [j for j in race_jobs(real_app) if j.name == "retrain_ml"]
    assert job.expression == "0 0 3 * * 1"  # weekly by default

    def run_at(now: datetime) -> list:
        clock.advance((now - clock.now()).total_seconds())
        slot = scheduled_time(job.expression, clock.now())
        return asyncio.run(job.work(slot))

    # Wednesday 2023-01-25 → the slot of Monday 2023-01-23 03:00: nothing stored yet.
    [first] = run_at(datetime(2023, 1, 25, 12, tzinfo=UTC))
    assert (first.name, first.version, first.status) == (
        "direction-gb",
        "20230123T030000Z-h4",
        "promoted",
    )
    with real_app.db.read() as session:
        row = ml_models.promoted(session, "direction-gb")
        assert row.version == first.version
        assert row.trained_until == datetime(2023, 1, 23, 3, tzinfo=UTC)
        assert row.test_end < row.trained_until  # walk-forward: only candles before the slot
    # The promoted model now claims a held-out edge no retraining can approach.
    with real_app.db.write() as session:
        row = ml_models.promoted(session, "direction-gb")
        row.metrics = {**row.metrics, "accuracy": 1.0, "baselineAccuracy": 0.5}
    with caplog.at_level(logging.INFO, logger="race.ml"):
        [second] = run_at(datetime(2023, 1, 30, 3, 0, 0, tzinfo=UTC))
    assert second.version == "20230130T030000Z-h4" and second.status == "candidate"
    assert "stored, not promoted" in second.reason and "margin 0.01" in second.reason
    assert "20230130T030000Z-h4 not promoted" in caplog.text
    with real_app.db.read() as session:
        assert ml_models.promoted(session, "direction-gb").version == first.version
        stored = ml_models.find(session, "direction-gb", second.version)
        assert stored.status == "candidate" and stored.reason == second.reason
    # The same slot again (a repeated or late invocation) trains nothing.
    [again] = run_at(datetime(2023, 1, 31, tzinfo=UTC))
    assert (again.version, again.status) == (second.version, "exists")

    # A margin of a whole accuracy point tolerates anything: the next slot is promoted.
    wide = make_app(
        database_url, Path(real_app.settings.ml_artifact_dir), clock=clock
    )  # another instance
    wide.settings = wide.settings.model_copy(update={"ml_promote_margin": 1.0})
    try:
        clock.advance((datetime(2023, 2, 6, 3, tzinfo=UTC) - clock.now()).total_seconds())
        [third] = retrain(wide, scheduled_time(job.expression, clock.now()))
    finally:
        wide.close()
    assert (third.version, third.status) == ("20230206T030000Z-h4", "promoted")
    with real_app.db.read() as session:
        statuses = {r.version: r.status for r in ml_models.listing(session, "direction-gb")}
    assert statuses == {
        "20230206T030000Z-h4": "promoted",
        "20230130T030000Z-h4": "candidate",
        "20230123T030000Z-h4": "retired",
    }


def test_the_promotion_rule_compares_held_out_edges_within_the_margin():
    class Current:  # only the attributes the rule reads
        version = "old"
        trained_until = datetime(2024, 1, 1, tzinfo=UTC)
        metrics: ClassVar[dict[str, float]] = {
            "accuracy": 0.56,
            "baselineAccuracy": 0.52,
        }  # edge 0.04

    later = datetime(2024, 1, 8, tzinfo=UTC)
    ok, why = promotion({"accuracy": 0.55, "baselineAccuracy": 0.52}, later, Current, 0.01)
    assert ok and "≥" in why  # edge 0.03 ≥ 0.04 − 0.01
    ok, why = promotion({"accuracy": 0.549, "baselineAccuracy": 0.52}, later, Current, 0.01)
    assert not ok and "stored, not promoted" in why  # 0.029 < 0.03
    ok, _ = promotion({"accuracy": 0.549, "baselineAccuracy": 0.52}, later, Current, 0.02)
    assert ok
    ok, why = promotion({"accuracy": 0.9, "baselineAccuracy": 0.5}, later, None, 0.0)
    assert ok and "first" in why
    earlier = datetime(2023, 1, 1, tzinfo=UTC)
    ok, why = promotion({"accuracy": 0.9, "baselineAccuracy": 0.5}, earlier, Current, 1.0)
    assert not ok and "earlier cut-off" in why
    ok, why = promotion({"accuracy": None, "baselineAccuracy": 0.5}, later, Current, 1.0)
    assert not ok and "incomplete" in why


def test_the_retrain_setting_turns_the_timer_off(real_app):
    settings = real_app.settings.model_copy(update={"ml_retrain_schedule": None})
    off = replace(real_app, settings=settings)
    assert "retrain_ml" not in [j.name for j in race_jobs(off)]


# ---------------------------------------------------------------- lifecycle: CLI and API


def test_ml_list_show_promote_and_rollback_switch_the_model_the_next_cycle_uses(
    bundled, database_url, monkeypatch, capsys, tmp_path
):
    app, _ = prediction_app(bundled, database_url)
    try:
        agent = seed_agent(app, "ML", Provider.CUSTOM_ML, model="direction-gb")
        _copy_as(app, OLDER, UNTIL - timedelta(days=7), promote=False)
        monkeypatch.setenv("RACE_DATABASE_URL", database_url)
        monkeypatch.setenv("RACE_ML_ARTIFACT_DIR", str(tmp_path / "cli"))

        assert main(["ml", "list"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].startswith(f"* direction-gb@{VERSION}  promoted")
        assert lines[1].startswith(f"  direction-gb@{OLDER}  candidate")
        assert main(["ml", "list", "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert [(m["version"], m["promoted"]) for m in listed] == [(VERSION, True), (OLDER, False)]
        assert main(["ml", "show", VERSION, "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["trainedUntil"] == UNTIL.isoformat() and shown["horizon"] == 4
        assert shown["metrics"]["perSymbol"].keys() == {"BTC", "ETH"}
        assert shown["heldOutEdge"] == pytest.approx(
            shown["metrics"]["accuracy"] - shown["metrics"]["baselineAccuracy"], abs=1e-6
        )
        assert main(["ml", "show", VERSION]) == 0
        assert f"direction-gb@{VERSION}: promoted" in capsys.readouterr().out
        assert main(["ml", "show", "nope"]) == 2
        assert "no stored model version 'nope'" in capsys.readouterr().err

        first = UNTIL + timedelta(hours=1)
        asyncio.run(app.engine.run_cycle(first))
        assert main(["ml", "promote", OLDER]) == 0
        assert f"promoted direction-gb@{OLDER}" in capsys.readouterr().out
        second = UNTIL + timedelta(hours=2)
        asyncio.run(app.engine.run_cycle(second))
        assert main(["ml", "rollback"]) == 0
        assert f"rolled back direction-gb@{OLDER} → direction-gb@{VERSION}" in (
            capsys.readouterr().out
        )
        third = UNTIL + timedelta(hours=3)
        asyncio.run(app.engine.run_cycle(third))
        assert _versions_by_cycle(app, agent) == {first: VERSION, second: OLDER, third: VERSION}
        # The version rolled back from is never restored; nothing older was promoted.
        assert main(["ml", "rollback"]) == 2
        assert "nothing to roll back to" in capsys.readouterr().err
        with app.db.read() as session:
            statuses = {r.version: r.status for r in ml_models.listing(session)}
        assert statuses == {VERSION: "promoted", OLDER: "rolled_back"}
    finally:
        app.close()


def test_get_api_models_lists_the_stored_models_read_only(bundled, database_url):
    app, report = prediction_app(bundled, database_url)
    try:
        _copy_as(app, OLDER, UNTIL - timedelta(days=7), promote=False)
        client = TestClient(create_api(app))
        response = client.get("/api/models")
        assert response.status_code == 200
        body = response.json()
        assert [(m["name"], m["version"], m["status"]) for m in body] == [
            ("direction-gb", VERSION, "promoted"),
            ("direction-gb", OLDER, "candidate"),
        ]
        top = body[0]
        assert top["promoted"] is True and top["sha256"] == report.sha256
        assert top["trainedUntil"] == UNTIL.isoformat() and top["horizon"] == 4
        assert top["testWindow"][1] < UNTIL.isoformat()
        assert "perSymbol" not in top["metrics"] and "artifact" not in top
        assert client.get("/api/models", params={"name": "other"}).json() == []
        assert client.post("/api/models").status_code == 405
        with app.db.write() as session:
            session.execute(update(MLModelRow).values(status="retired"))
        assert {m["status"] for m in client.get("/api/models").json()} == {"retired"}
    finally:
        app.close()


def test_the_stored_model_shape_is_documented():
    from race.api.models_router import StoredModel

    section = sections(API_DOC.read_text(encoding="utf-8"))["StoredModel"]
    rows = {
        cells[0].strip(): cells[1].strip()
        for line in section.splitlines()
        if line.startswith("| `")
        for cells in [line.strip("|").split(" | ")]
    }
    for field, info in StoredModel.model_fields.items():
        assert rows.get(f"`{field}`") == json_type(info.annotation), field


def test_both_settings_are_in_the_example_and_the_infra_map():
    example = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    infra = json.loads((ROOT / "infra" / "settings.json").read_text())["settings"]
    for name in ("RACE_ML_RETRAIN_SCHEDULE", "RACE_ML_PROMOTE_MARGIN"):
        assert name in example and name in infra


def test_the_model_decided_with_is_the_promoted_one_or_for_the_past_the_latest_promoted(app):
    """At T: the promoted model when trained before T; else the latest-promoted retired one
    trained before T (a replay of the past); never a rolled-back, candidate or future one."""
    day = timedelta(days=1)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)

    def row(version: str, trained: int, status: str, promoted: int | None) -> MLModelRow:
        return MLModelRow(
            name="m", version=version, artifact=b"x", sha256="0" * 64, size_bytes=1,
            trained_until=t0 + trained * day, train_start=t0, train_end=t0, test_start=t0,
            test_end=t0, horizon=4, features=[], metrics={}, info={}, status=status,
            created_at=t0, promoted_at=None if promoted is None else t0 + promoted * day,
        )  # fmt: skip

    with app.db.write() as session:
        session.add_all(
            [
                row("old", 1, ml_models.RETIRED, 2),
                row("older-later", 0, ml_models.RETIRED, 5),
                row("undone", 3, ml_models.ROLLED_BACK, 6),
                row("candidate", 3, ml_models.CANDIDATE, None),
                row("current", 10, ml_models.PROMOTED, 11),
            ]
        )

    def usable(at_day: int) -> str | None:
        with app.db.read() as session:
            found = ml_models.usable(session, "m", t0 + at_day * day)
            return None if found is None else found.version

    assert usable(12) == "current"  # trained before T: the promoted one
    assert usable(10) == "current"  # trained exactly up to T
    assert usable(4) == "older-later"  # the past: latest-promoted of those trained before T
    assert usable(0) == "older-later"
    assert usable(-1) is None  # nothing trained before T: never a model of T's future
