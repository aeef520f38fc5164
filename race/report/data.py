"""Build :class:`~race.report.model.ReportData` from the database: the standings and equity
curves from the read repositories, every agent's figures from :func:`race.analysis.analyse`
(the one place that assembles them, the same figures the API serves); nothing is computed
here but the drawdown series of the charts.

* The standings (rank, final equity, return) are the leaderboard's
  (:func:`race.leaderboard.standings`).
* The buy-and-hold benchmark is :func:`race.analysis.buy_and_hold`: the starting capital
  split equally over the assets, bought at the race's first snapshot time (no fee) and
  marked at every snapshot time of the longest curve — the benchmark every agent's
  P(beat buy-and-hold) is computed against over its own period.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from race.analysis import AgentAnalysis, RaceAnalysis, buy_and_hold
from race.domain.timeutil import parse_iso
from race.leaderboard import Standing, standings
from race.report.model import AgentReport, LeaderboardRow, Point, ReportData
from race.report.series import drawdown
from race.store.reads.analysis import closes_from
from race.store.reads.equity import EquityPoint, equity_points

LIVE = "live"
"""The live race's name (docs/races.md)."""
BENCHMARK_NAME = "buy-and-hold (equal weights, no fee)"


def _points(rows: Sequence[EquityPoint]) -> list[Point]:
    return [Point(parse_iso(r.captured_at), r.total_value) for r in rows]


def _agent(standing: Standing, equity: list[Point], analysis: AgentAnalysis) -> AgentReport:
    return AgentReport(
        agent_id=standing.agent_id,
        name=standing.name,
        provider=standing.provider,
        model=standing.model,
        equity=equity,
        drawdown=drawdown(equity),
        leaderboard=LeaderboardRow(
            rank=standing.rank,
            starting_capital=float(standing.starting_capital),
            final_equity=float(standing.current_value),
            return_pct=standing.return_pct,
            max_drawdown_pct=standing.max_drawdown_pct,
            significance=analysis.significance,
        ),
        behaviour=analysis.behaviour if equity else None,
        cost=analysis.efficiency,
        contamination=analysis.contamination,
    )


def _benchmark(
    board: Sequence[Standing],
    curves: Mapping[int, list[Point]],
    session: Session,
) -> list[Point]:
    longest = max(curves.values(), key=len, default=[])
    if not longest or not board:
        return []
    capital = board[0].starting_capital
    closes = closes_from(session, longest[0].time)
    series = buy_and_hold(capital, [p.time for p in longest], closes)
    return [Point(t, v) for t, v in series]


def report_data(
    session: Session,
    analysis: RaceAnalysis,
    *,
    now: datetime,
    race: str = LIVE,
    race_id: int | None = None,
) -> ReportData:
    """The report of the race named ``race`` (id ``race_id``; None: the live race) as of
    ``now``, with every agent's figures from ``analysis`` (:func:`race.analysis.analyse` of
    the same database and race)."""
    if race != LIVE and race_id is None:
        raise LookupError(f"unknown race {race!r}: give its id too (race.races.find_race)")
    board = standings(session, race_id=race_id)
    curves = {
        s.agent_id: _points(equity_points(session, s.agent_id, None, None, None, race_id))
        for s in board
    }
    times = [p.time for points in curves.values() if points for p in (points[0], points[-1])]
    start, end = (min(times), max(times)) if times else (None, None)
    benchmark = _benchmark(board, curves, session)
    agents = [
        _agent(s, curves[s.agent_id], analysis.agents[s.agent_id])
        for s in board
        if s.agent_id in analysis.agents
    ]
    return ReportData(
        race=race,
        start=start,
        end=end,
        generated_at=now,
        agents=agents,
        buy_and_hold=benchmark,
        buy_and_hold_name=BENCHMARK_NAME if benchmark else None,
    )
