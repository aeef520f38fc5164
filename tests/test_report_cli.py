"""`python -m race report` on a replayed race: the data it reads from the database, the
command's files, exit codes and errors, and `make demo` ending with the report."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from race.analysis import analyse, buy_and_hold
from race.bootstrap import bootstrap
from race.cli import main
from race.domain.model import Provider
from race.domain.significance import significance
from race.domain.timeutil import parse_iso
from race.leaderboard import standings
from race.report.data import BENCHMARK_NAME, report_data
from race.store.reads.analysis import close_series
from race.store.reads.equity import equity_points
from tests.factories import (
    HOUR,
    insert_candles,
    make_candles,
    seed_agent,
    seed_assets,
    seed_baselines,
    wave_prices,
)
from tests.report_html import embedded

START = datetime(2023, 12, 1, tzinfo=UTC)  # the replay ends before the clock's now
ROOT = Path(__file__).resolve().parent.parent
CHARTS = ("equity", "drawdown", "intervals")


def replay(app, hours: int = 48) -> None:
    seed_assets(app)
    seed_baselines(app)
    for symbol, base in (("BTC", 40000.0), ("ETH", 2000.0)):
        insert_candles(
            app, make_candles(symbol, START, wave_prices(hours + 40, base=base, drift=0.002))
        )
    asyncio.run(app.engine.backfill(START + 30 * HOUR, START + (30 + hours) * HOUR, HOUR))


def test_report_data_is_the_leaderboard_and_the_race_analysis(app):
    replay(app)
    llm = seed_agent(app, "GPT 4.1", provider=Provider.OPENAI, model="gpt-4.1")
    analysis = analyse(app.db, app.settings, app.clock)
    with app.db.read() as session:
        data = report_data(session, analysis, now=app.clock.now())
        board = standings(session)
        curves = {s.agent_id: equity_points(session, s.agent_id, None, None, None) for s in board}
        closes = close_series(session)
    assert [a.agent_id for a in data.agents] == [s.agent_id for s in board]
    assert data.start == START + 30 * HOUR and data.end == START + 78 * HOUR
    assert data.generated_at == app.clock.now()
    # The benchmark drawn: equal weights bought at the first snapshot, marked at every one.
    times = [parse_iso(p.captured_at) for p in max(curves.values(), key=len)]
    capital = board[0].starting_capital
    assert data.buy_and_hold_name == BENCHMARK_NAME
    assert [(p.time, p.value) for p in data.buy_and_hold] == buy_and_hold(capital, times, closes)
    assert data.buy_and_hold[0].value == pytest.approx(float(capital))
    for a, s in zip(data.agents, board, strict=True):
        row = a.leaderboard
        assert (row.rank, a.name) == (s.rank, s.name)
        assert row.final_equity == float(s.current_value)
        assert row.return_pct == s.return_pct
        points = [(parse_iso(p.captured_at), p.total_value) for p in curves[s.agent_id]]
        assert [(p.time, p.value) for p in a.equity] == points
        figures = analysis.agents[s.agent_id]
        # The same figures the API serves, computed in one place.
        assert row.significance == figures.significance
        assert a.cost == figures.efficiency and a.contamination == figures.contamination
        if s.agent_id == llm:  # no snapshot: no behaviour, no period to compare a cut-off with
            assert a.behaviour is None and a.equity == []
            assert a.contamination.possibly_contaminated is None
            continue
        assert a.behaviour == figures.behaviour
        assert a.behaviour.trades == s.total_trades
        assert a.behaviour.decisions == s.decisions
        assert row.significance.p_beat_benchmark is not None
        expected = significance(
            points,
            origin=s.starting_capital,
            benchmark=buy_and_hold(s.starting_capital, [t for t, _ in points], closes),
            benchmark_origin=s.starting_capital,
        )
        assert row.significance == expected


def test_a_named_race_needs_its_id(app):
    with app.db.read() as session, pytest.raises(LookupError, match="unknown race '2024-q1'"):
        report_data(
            session, analyse(app.db, app.settings, app.clock), now=app.clock.now(), race="2024-q1"
        )


@pytest.fixture
def replayed(sqlite_url, monkeypatch, clock):
    monkeypatch.setenv("RACE_DATABASE_URL", sqlite_url)
    application = bootstrap(overrides={"RACE_DATABASE_URL": sqlite_url}, clock=clock)
    replay(application, hours=24)
    yield application
    application.close()


def test_report_writes_the_html_and_the_pngs(replayed, tmp_path, capsys):
    out, charts = tmp_path / "report.html", tmp_path / "png" / "new"
    assert main(["report", "--out", str(out), "--png", str(charts)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out)] + [str(charts / f"{c}.png") for c in CHARTS]
    text = out.read_text(encoding="utf-8")
    with replayed.db.read() as session:
        board = standings(session)
    for chart in CHARTS:
        assert f'<figure id="chart-{chart}">' in text
    names = [s["name"] for s in embedded(text, "equity")["series"]]
    assert names == [s.name for s in board] + [BENCHMARK_NAME]  # the agents, then the benchmark
    for standing in board:
        assert f'<td class="name">{standing.name.replace("&", "&amp;")}</td>' in text
    assert sorted(p.name for p in charts.iterdir()) == sorted(f"{c}.png" for c in CHARTS)
    assert main(["report", "--race", "live", "--out", str(out)]) == 0  # --race live: the same


def test_report_errors_exit_2_with_one_line(replayed, tmp_path, capsys):
    assert main(["report", "--race", "2024-q1", "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no race '2024-q1'") and err.count("\n") == 1
    assert main(["report", "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["report", "--out", str(tmp_path / "missing" / "r.html")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not list(tmp_path.glob("*.html"))
    with pytest.raises(SystemExit) as exit_:
        main(["report"])  # --out is required
    assert exit_.value.code == 2
    assert "--out" in capsys.readouterr().err


def test_report_of_a_race_without_snapshots_is_refused(sqlite_url, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("RACE_DATABASE_URL", sqlite_url)
    assert main(["report", "--out", str(tmp_path / "r.html")]) == 2
    assert "no agent has an equity snapshot yet" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


def test_help_says_which_race_is_reported(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["report", "-h"])
    assert exit_.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "by name or id (default: live" in help_text and "--png DIR" in help_text
