"""The core commands as a user runs them: db upgrade, cycle, backfill, snapshot, leaderboard."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from race.bootstrap import bootstrap
from race.cli import main
from race.store.tables import DecisionRow
from tests.factories import (
    HOUR,
    insert_candles,
    make_candles,
    seed_assets,
    seed_baselines,
    wave_prices,
)

START = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def seeded(sqlite_url, monkeypatch, clock):
    monkeypatch.setenv("RACE_DATABASE_URL", sqlite_url)
    application = bootstrap(overrides={"RACE_DATABASE_URL": sqlite_url}, clock=clock)
    seed_assets(application)
    seed_baselines(application)
    for symbol, base in (("BTC", 40000.0), ("ETH", 2000.0)):
        insert_candles(application, make_candles(symbol, START, wave_prices(200, base=base)))
    yield application
    application.close()


def decisions(app):
    with app.db.read() as session:
        return session.scalar(select(func.count()).select_from(DecisionRow))


def test_db_upgrade_creates_the_schema(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RACE_DATABASE_URL", f"sqlite:///{tmp_path / 'fresh.db'}")
    assert main(["db", "upgrade"]) == 0
    assert "at revision" in capsys.readouterr().out
    assert main(["db", "current"]) == 0
    assert capsys.readouterr().out.strip()
    assert main(["leaderboard"]) == 0  # empty but valid
    assert "no agents yet" in capsys.readouterr().out


def test_db_commands_hide_alembic_info_lines_unless_verbose(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RACE_DATABASE_URL", f"sqlite:///{tmp_path / 'quiet.db'}")
    assert main(["db", "upgrade"]) == 0
    assert main(["db", "current"]) == 0
    assert "alembic" not in capsys.readouterr().err  # no "setup plugin …", "Running upgrade …"
    monkeypatch.setenv("RACE_DATABASE_URL", f"sqlite:///{tmp_path / 'verbose.db'}")
    assert main(["-v", "db", "upgrade"]) == 0
    err = capsys.readouterr().err
    assert "INFO    alembic.runtime.migration: Running upgrade" in err


def test_commands_on_a_missing_database_name_the_setting(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RACE_DATABASE_URL", f"sqlite:///{tmp_path / 'nowhere' / 'x.db'}")
    assert main(["leaderboard"]) == 2
    assert "RACE_DATABASE_URL" in capsys.readouterr().err
    monkeypatch.setenv("RACE_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    for command in (["cycle"], ["leaderboard"], ["agents", "list"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "no such database file" in err and "db upgrade" in err
        assert not (tmp_path / "empty.db").exists()  # a read leaves no empty file behind
    (tmp_path / "empty.db").touch()  # a file without the schema
    assert main(["cycle"]) == 2
    assert "has no race schema yet" in capsys.readouterr().err


def test_cycle_at_a_time_runs_once(seeded, capsys):
    at = (START + 100 * HOUR + HOUR / 3).isoformat()  # 20 minutes into the hour
    assert main(["cycle", "--at", at, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # Floored to RACE_DECISION_SCHEDULE (every 15 minutes), as the timer does.
    assert report["cycleTime"] == (START + 100 * HOUR + HOUR / 4).isoformat()
    assert report["decided"] == 5
    assert main(["cycle", "--at", at]) == 0
    assert "0 decided" in capsys.readouterr().out
    assert decisions(seeded) == 5


def test_cycle_follows_the_configured_schedule(seeded, capsys, monkeypatch):
    monkeypatch.setenv("RACE_DECISION_SCHEDULE", "0 0 */4 * * *")
    assert main(["cycle", "--at", (START + 102 * HOUR).isoformat(), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cycleTime"] == (START + 100 * HOUR).isoformat()


def test_cycle_in_the_future_is_refused(seeded, capsys):
    assert main(["cycle", "--at", "2999-01-01T00:00:00Z"]) == 2
    assert "is in the future" in capsys.readouterr().err
    assert decisions(seeded) == 0


def test_backfill_into_the_future_is_refused(seeded, capsys):
    code = main(["backfill", "--start", START.isoformat(), "--end", "2999-01-01T00:00:00Z"])
    assert code == 2
    assert "is in the future" in capsys.readouterr().err
    assert decisions(seeded) == 0


def test_bad_time_argument_is_a_usage_error(seeded, capsys):
    with pytest.raises(SystemExit) as info:
        main(["cycle", "--at", "yesterday"])
    assert info.value.code == 2
    assert "not an ISO-8601" in capsys.readouterr().err


def test_backfill_reports_and_resumes(seeded, capsys):
    args = [
        "backfill",
        "--start",
        (START + 60 * HOUR).isoformat(),
        "--end",
        (START + 100 * HOUR).isoformat(),
        "--interval",
        "1h",
        "--json",
    ]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["doneCycles"] == first["totalCycles"] == 41
    assert first["decisions"] == 41 * 5
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["decisions"] == 0
    assert main(["backfill", "--start", "2024-01-02", "--end", "2024-01-01"]) == 2
    assert "before start" in capsys.readouterr().err
    assert (
        main(
            ["backfill", "--start", "2024-01-01", "--end", "2024-01-02", "--interval", "fortnight"]
        )
        == 2
    )
    assert "interval" in capsys.readouterr().err


def test_leaderboard_table_and_json(seeded, capsys):
    main(
        [
            "backfill",
            "--start",
            (START + 60 * HOUR).isoformat(),
            "--end",
            (START + 150 * HOUR).isoformat(),
        ]
    )
    capsys.readouterr()
    assert main(["leaderboard"]) == 0
    table = capsys.readouterr().out
    for header in (
        "Agent",
        "Provider",
        "Equity (USD)",
        "Return %",
        "Max DD %",
        "Sharpe",
        "Trades",
        "Fees (USD)",
    ):
        assert header in table
    assert main(["leaderboard", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    equities = [r["currentValue"] for r in rows]
    assert equities == sorted(equities, reverse=True)
    cash = next(r for r in rows if r["agent"]["name"] == "Cash Keeper")
    assert cash["currentValue"] == 100000.0
    assert cash["totalTrades"] == 0


def test_snapshot_marks_at_the_newest_close(seeded, capsys):
    main(["cycle", "--at", (START + 100 * HOUR).isoformat()])
    capsys.readouterr()
    assert main(["snapshot"]) == 0
    assert "marked 5 portfolio(s)" in capsys.readouterr().out


def test_backfill_of_named_agents_only(seeded, capsys):
    args = [
        "backfill",
        "--start",
        (START + 60 * HOUR).isoformat(),
        "--end",
        (START + 70 * HOUR).isoformat(),
        "--agent",
        "Cash Keeper",
        "--agent",
        "Random Walker",
        "--json",
    ]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["decisions"] == 11 * 2
    assert (
        main(
            [
                "backfill",
                "--start",
                START.isoformat(),
                "--end",
                START.isoformat(),
                "--agent",
                "Nobody",
            ]
        )
        == 2
    )
    assert "unknown agent(s): Nobody" in capsys.readouterr().err


def test_the_cli_starts_without_the_web_stack():
    """Every CLI process (a backfill restarted after a kill, each test's subprocess) starts
    without importing FastAPI: only the commands that serve or show an API record load it."""
    import subprocess
    import sys

    code = (
        "import sys; from race.cli import build_parser; build_parser(); "
        "loaded = [m for m in ('fastapi', 'starlette', 'race.api') if m in sys.modules]; "
        "sys.exit(', '.join(loaded) or None)"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
