"""``python -m race races compare RACE OTHER`` (issue 13 §5): two races' leaderboards side by
side with each agent's rank change; an agent only in RACE is named; bad input is one line
and exit 2."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from race.bootstrap import App
from race.leaderboard import standings
from tests.test_backtest import _cli, cli_db  # noqa: F401 - the fixture

WINDOW = ["--start", "2024-01-03T00:00Z", "--end", "2024-01-04T12:00Z"]


def _backtest(capsys: pytest.CaptureFixture[str], *more: str) -> None:
    code, _, err = _cli(["backtest", *WINDOW, *more], capsys)
    assert code == 0, err


def test_two_races_side_by_side_with_rank_changes(
    cli_db: App,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    _backtest(capsys, "--name", "cheap")
    _backtest(capsys, "--name", "dear", "--fee", "0.02", "--agents", "Buy & Hold,Random Walker")
    with cli_db.db.read() as session:
        cheap = {s.name: s for s in standings(session, race_id=2)}
        dear = {s.name: s for s in standings(session, race_id=3)}
    code, out, err = _cli(["races", "compare", "cheap", "dear"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "race 3 (dear) against race 2 (cheap)"
    assert lines[1].split() == [
        "#",
        "Agent",
        "race",
        "2",
        "(USD)",
        "race",
        "3",
        "(USD)",
        "Change",
        "Rank",
    ]
    for name, standing in dear.items():
        row = next(line for line in lines[3:] if f" {name} " in line)
        was = cheap[name]
        assert f"{was.current_value:,.2f}" in row and f"{standing.current_value:,.2f}" in row
        places = was.rank - standing.rank
        moved = "=" if places == 0 else f"▲{places}" if places > 0 else f"▼{-places}"
        assert row.split()[0] == str(standing.rank) and row.endswith(moved)
    assert lines[-1] == "not in race 3: SMA Cross 10/30"
    code, out, err = _cli(["races", "compare", "2", "3", "--json"], capsys)
    assert code == 0, err
    rows = json.loads(out)
    by_agent = {r["agent"]: r for r in rows}
    hold = by_agent["Buy & Hold"]
    assert hold["equity"] == float(dear["Buy & Hold"].current_value)
    assert hold["firstEquity"] == float(cheap["Buy & Hold"].current_value)
    assert Decimal(str(hold["change"])) == Decimal(str(hold["equity"])) - Decimal(
        str(hold["firstEquity"])
    )
    assert hold["equity"] < hold["firstEquity"], "a tenfold fee costs the buyer"
    assert by_agent["SMA Cross 10/30"]["rankChange"] == "missing"
    assert by_agent["SMA Cross 10/30"]["rank"] is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["races", "compare", "live", "nope"], "no race 'nope'"),
        (["races", "compare", "99", "live"], "no race '99'"),
        (["races", "compare", "live", "LIVE"], "compared with itself"),
    ],
)
def test_bad_comparisons_are_one_line_and_exit_2(
    cli_db: App,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    code, out, err = _cli(argv, capsys)
    assert code == 2 and not out
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_races_list_keeps_its_columns_with_long_names(
    cli_db: App,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    _backtest(capsys, "--name", "a backtest whose name is much longer than the column was")
    code, out, err = _cli(["races", "list"], capsys)
    assert code == 0, err
    header, *rows = out.splitlines()
    column = header.index("kind")
    assert [row[column:].split()[0] for row in rows] == ["live", "backtest"]
