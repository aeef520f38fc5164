"""Managing agents as a new user does, on SQLite and PostgreSQL: unknown params refused
naming the valid ones; names printable, trimmed and unique regardless of case (in code and
by the index of migration 0008); ids wherever a name is accepted; ``--description``;
``agents show`` and ``agents remove``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select, text

from race.bootstrap import App, bootstrap
from race.cli import build_parser, main
from race.store.tables import (
    AgentRow,
    AgentStatsRow,
    DecisionRow,
    EquitySnapshotRow,
    PortfolioRow,
    PositionRow,
    TradeRow,
)
from tests.factories import HOUR, insert_candles, make_candles, seed_assets, wave_prices

START = datetime(2024, 1, 1, tzinfo=UTC)
MOCK = ["--provider", "Mock", "--model"]


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    monkeypatch.setenv("RACE_DATABASE_URL", database_url)
    app = bootstrap(overrides={"RACE_DATABASE_URL": database_url})
    yield app
    app.close()


def add(name: str, model: str = "cash", *extra: str) -> int:
    return main(["agents", "add", "--name", name, *MOCK, model, *extra])


def listed(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    assert main(["agents", "list", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def run_cycles(app: App, count: int) -> None:
    seed_assets(app)
    for symbol, base in (("BTC", 40000.0), ("ETH", 2000.0)):
        insert_candles(app, make_candles(symbol, START, wave_prices(60, base=base)))
    for index in range(count):
        report = asyncio.run(app.engine.run_cycle(START + (57 + index) * HOUR))
        assert report.status == "completed", report


# ---------------------------------------------------------------- params


def test_unknown_params_are_refused_naming_the_valid_ones(cli, capsys):
    for argv, valid in (
        ([*MOCK, "sma_cross", "--params", '{"fsat": 5}'], "valid params: assets, fast, fraction"),
        ([*MOCK, "cash", "--params", '{"fraction": 1}'], "valid params: assets)"),
        (["--provider", "Llama", "--params", '{"fsat": 5}'], "allowed: "),
    ):
        assert main(["agents", "add", "--name", "Typo", *argv]) == 2
        err = capsys.readouterr().err
        assert "unknown param(s)" in err
        assert valid in err
    assert listed(capsys) == []


# ---------------------------------------------------------------- names


def test_names_are_unique_regardless_of_case(cli, capsys):
    assert add("Cash Keeper") == 0
    capsys.readouterr()
    assert add("cash keeper") == 2
    err = capsys.readouterr().err
    assert "an agent named 'Cash Keeper' (id 1) already exists" in err
    assert "regardless of case" in err
    assert add("  CASH KEEPER  ") == 2
    assert [a["name"] for a in listed(capsys)] == ["Cash Keeper"]


def test_the_database_refuses_a_case_insensitive_duplicate(cli):
    """Migration 0008's unique index on lower(name), whatever code writes the row."""

    def insert(name: str) -> None:
        with cli.db.engine.begin() as connection:
            connection.execute(
                sa.insert(AgentRow.__table__).values(
                    name=name,
                    provider="Mock",
                    model="cash",
                    strategy="",
                    instructions="",
                    params={},
                    is_active=True,
                    created_at=START,
                )
            )

    insert("Twin")
    with pytest.raises(sa.exc.IntegrityError):
        insert("TWIN")


def test_names_are_printable_text(cli, capsys):
    for name, message in (
        ("Tab\tName", "control character '\\t'"),
        ("Two\nLines", "control character '\\n'"),
        ("Bell\x07", "control character '\\x07'"),
        ("   ", "1-100 characters"),
        ("x" * 101, "1-100 characters"),
        ("42", "only digits"),
    ):
        assert add(name) == 2
        assert message in capsys.readouterr().err
    assert listed(capsys) == []


def test_names_are_trimmed(cli, capsys):
    assert add("  Spaced Out  ") == 0
    assert "added agent 'Spaced Out'" in capsys.readouterr().out
    assert [a["name"] for a in listed(capsys)] == ["Spaced Out"]


# ---------------------------------------------------------------- ids and --description


def test_ids_are_accepted_wherever_a_name_is(cli, capsys):
    assert add("Alpha") == 0 and add("Beta") == 0
    capsys.readouterr()
    assert main(["agents", "disable", "2"]) == 0
    assert "disabled agent 'Beta' (id 2)" in capsys.readouterr().out
    assert [a["isActive"] for a in listed(capsys)] == [True, False]
    assert main(["agents", "enable", "beta"]) == 0  # any case
    assert "enabled agent 'Beta' (id 2)" in capsys.readouterr().out
    assert [a["isActive"] for a in listed(capsys)] == [True, True]
    assert main(["agents", "disable", "7"]) == 2
    assert "unknown agent '7'" in capsys.readouterr().err
    assert main(["agents", "show", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "Alpha"
    run_cycles(cli, 0)
    argv = ["backfill", "--start", (START + 55 * HOUR).isoformat()]
    argv += ["--end", (START + 57 * HOUR).isoformat(), "--json"]
    assert main([*argv, "--agent", "2", "--agent", "ALPHA"]) == 0
    assert json.loads(capsys.readouterr().out)["decisions"] == 3 * 2


def test_description_is_display_text_and_strategy_still_works(cli, capsys):
    assert add("Described", "cash", "--description", "Holds cash: the zero line") == 0
    assert add("Old Flag", "cash", "--strategy", "the old flag") == 0
    capsys.readouterr()
    assert [a["strategy"] for a in listed(capsys)] == ["Holds cash: the zero line", "the old flag"]
    parser = build_parser()
    add_help = parser._subparsers._group_actions[0].choices["agents"]  # type: ignore[union-attr]
    text_help = add_help._subparsers._group_actions[0].choices["add"].format_help()
    assert "--description" in text_help and "display text only" in text_help
    assert "--strategy" not in text_help  # a hidden alias


# ---------------------------------------------------------------- show


def test_show_has_summary_metrics_decisions_with_reasoning_and_trades(cli, capsys):
    assert add("Holder", "buy_and_hold", "--description", "Buys once, holds") == 0
    assert add("Idle") == 0
    run_cycles(cli, 3)
    capsys.readouterr()
    assert main(["agents", "show", "holder", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["id"] == "1" and report["name"] == "Holder" and report["isActive"] is True
    assert report["strategy"] == "Buys once, holds"
    assert report["params"] == {} and report["provider"] == "Mock"
    performance = report["performance"]
    for key in ("percentReturn", "sharpeRatio", "feesPaid", "totalTrades", "maxDrawdown"):
        assert key in performance
    assert performance["decisions"] == 3
    assert len(report["decisions"]) == 3
    newest = report["decisions"][0]
    assert newest["timestamp"] > report["decisions"][-1]["timestamp"]
    assert all(d["rationale"] for d in report["decisions"])
    assert report["trades"] and {"assetSymbol", "side", "price", "fee"} <= set(report["trades"][0])
    assert performance["totalTrades"] == len(report["trades"])

    assert main(["agents", "show", "1", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Holder (id 1) — Mock buy_and_hold, active")
    assert "Buys once, holds" in out
    assert "recent decisions (2, newest first):" in out
    assert "reasoning: " in out
    assert "recent trades (2, newest first):" in out
    assert "fees " in out and "sharpe " in out

    # notes: a decision's fallback reason and validation notes are shown
    with cli.db.write() as session:
        decision = session.scalars(select(DecisionRow).where(DecisionRow.agent_id == 2)).first()
        assert decision is not None
        decision.fallback, decision.fallback_reason = True, "agent timed out after 120 s"
        decision.validation_errors = [{"code": "cash", "message": "not enough cash"}]
    assert main(["agents", "show", "Idle", "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert "note: fallback: agent timed out after 120 s" in out
    assert "note: not enough cash" in out
    assert "recent trades (0, newest first):\n  none yet" in out

    assert main(["agents", "show", "Nobody"]) == 2
    assert "unknown agent 'Nobody'" in capsys.readouterr().err


# ---------------------------------------------------------------- remove


def counts(app: App, agent_id: int) -> dict[str, int]:
    with app.db.read() as session:
        out = {}
        for table in (
            AgentRow,
            PortfolioRow,
            AgentStatsRow,
            DecisionRow,
            TradeRow,
            EquitySnapshotRow,
        ):
            column = AgentRow.id if table is AgentRow else table.agent_id
            out[table.__tablename__] = int(
                session.scalar(select(func.count()).select_from(table).where(column == agent_id))
                or 0
            )
        out["positions"] = int(
            session.scalar(
                select(func.count())
                .select_from(PositionRow)
                .join(PortfolioRow, PortfolioRow.id == PositionRow.portfolio_id)
                .where(PortfolioRow.agent_id == agent_id)
            )
            or 0
        )
    return out


def test_remove_an_agent_that_never_decided(cli, capsys):
    assert add("Fresh") == 0 and add("Other") == 0
    capsys.readouterr()
    assert main(["agents", "remove", "fresh"]) == 0
    assert "removed agent 'Fresh' (id 1)" in capsys.readouterr().out
    assert set(counts(cli, 1).values()) == {0}
    assert [a["name"] for a in listed(capsys)] == ["Other"]
    assert add("Fresh") == 0  # the name is free again


def test_remove_is_refused_once_it_decided_unless_forced(cli, capsys):
    assert add("Holder", "buy_and_hold") == 0 and add("Keeper", "buy_and_hold") == 0
    run_cycles(cli, 2)
    before_other = counts(cli, 2)
    capsys.readouterr()
    assert main(["agents", "remove", "Holder"]) == 2
    err = capsys.readouterr().err
    assert "has 2 decision(s)" in err and "--force" in err and "agents disable" in err
    assert counts(cli, 1)["decisions"] == 2

    assert main(["agents", "remove", "1", "--force"]) == 0
    out = capsys.readouterr().out
    assert "removed agent 'Holder' (id 1) with 2 decision(s)" in out
    assert set(counts(cli, 1).values()) == {0}
    assert counts(cli, 2) == before_other  # the other agent's history is untouched
    assert before_other["trades"] > 0 and before_other["positions"] > 0


def test_a_forced_remove_is_one_transaction(cli, capsys):
    """When deleting the agent row fails, none of its history is gone."""
    assert add("Holder", "buy_and_hold") == 0
    run_cycles(cli, 2)
    before = counts(cli, 1)
    sqlite = cli.db.is_sqlite
    with cli.db.engine.begin() as connection:
        if sqlite:
            connection.execute(
                text(
                    "CREATE TRIGGER refuse_agent_delete BEFORE DELETE ON agents "
                    "BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
                )
            )
        else:
            connection.execute(
                text(
                    "CREATE FUNCTION refuse_agent_delete() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'refused by test'; END $$ LANGUAGE plpgsql"
                )
            )
            connection.execute(
                text(
                    "CREATE TRIGGER refuse_agent_delete BEFORE DELETE ON agents "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_agent_delete()"
                )
            )
    try:
        assert main(["agents", "remove", "Holder", "--force"]) == 2
        err = capsys.readouterr().err
        assert "refused by test" in err and "Traceback" not in err
        assert counts(cli, 1) == before
    finally:
        with cli.db.engine.begin() as connection:
            if sqlite:
                connection.execute(text("DROP TRIGGER refuse_agent_delete"))
            else:
                connection.execute(text("DROP TRIGGER refuse_agent_delete ON agents"))
                connection.execute(text("DROP FUNCTION refuse_agent_delete()"))
