"""Build :class:`~race.report.model.ReportData` from the database: the read repositories
give the rows, the domain functions (race/domain/significance.py, behaviour.py,
efficiency.py, contamination.py) compute; nothing is computed here.

* The standings (rank, final equity, return) are the leaderboard's
  (:func:`race.leaderboard.standings`).
* The buy-and-hold benchmark is the race's buy-and-hold baseline (model ``buy_and_hold``);
  a race without one has no P(beat buy-and-hold).
* The race starts at the first snapshot of any agent; the contamination flag compares that
  date with the model's training cut-off. Agents that call no language model (baselines,
  the ML agent) have no cut-off to compare.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from race.domain.behaviour import Decision, Trade, behaviour
from race.domain.contamination import contamination
from race.domain.efficiency import efficiency
from race.domain.model import Action, Provider, Side
from race.domain.significance import significance
from race.domain.timeutil import parse_iso
from race.leaderboard import Standing, standings
from race.report.model import AgentReport, LeaderboardRow, Point, ReportData
from race.report.series import drawdown
from race.store.reads.agents import decisions, trade_count, trades
from race.store.reads.equity import EquityPoint, equity_points
from race.store.reads.market import assets, latest_closes

LIVE = "live"
"""The one race a database holds today (named races come with another issue)."""
BENCHMARK_MODEL = "buy_and_hold"
LANGUAGE_MODEL_PROVIDERS = frozenset({Provider.LLAMA, Provider.OPENAI, Provider.AZURE_OPENAI})
_ALL = 2**31 - 1


@dataclass(frozen=True)
class _Snapshot:
    """An equity point as :func:`race.domain.behaviour.behaviour` reads it."""

    time: datetime
    total_value: Decimal
    positions_value: Decimal


def _points(rows: Sequence[EquityPoint]) -> list[Point]:
    return [Point(parse_iso(r.captured_at), r.total_value) for r in rows]


def _snapshots(rows: Sequence[EquityPoint]) -> list[_Snapshot]:
    return [
        _Snapshot(
            parse_iso(r.captured_at), Decimal(str(r.total_value)), Decimal(str(r.positions_value))
        )
        for r in rows
    ]


def _trades(session: Session, agent_id: int) -> list[Trade]:
    rows = trades(session, agent_id, trade_count(session, agent_id), 0)
    return [
        Trade(t.executed_at, t.symbol, Side(t.side), t.quantity, t.notional, t.fee, t.realized_pnl)
        for t in reversed(rows)
    ]


def _decisions(session: Session, agent_id: int) -> list[Decision]:
    return [
        Decision(d.cycle_time, Action(d.action), d.asset_symbol, d.confidence, d.fallback)
        for d in reversed(decisions(session, agent_id, _ALL))
    ]


def _agent(
    session: Session,
    standing: Standing,
    rows: Sequence[EquityPoint],
    benchmark: Standing | None,
    benchmark_curve: Sequence[Point],
    start: datetime | None,
    marks: Mapping[str, Decimal],
    cutoffs: Mapping[str, date] | None,
) -> AgentReport:
    equity = _points(rows)
    is_benchmark = benchmark is not None and standing.agent_id == benchmark.agent_id
    compare = benchmark is not None and not is_benchmark and bool(benchmark_curve)
    sig = significance(
        [(p.time, p.value) for p in equity],
        origin=standing.starting_capital,
        benchmark=[(p.time, p.value) for p in benchmark_curve] if compare else None,
        benchmark_origin=benchmark.starting_capital if compare and benchmark else None,
    )
    model = standing.model if standing.provider in LANGUAGE_MODEL_PROVIDERS else None
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
            significance=sig,
        ),
        behaviour=(
            behaviour(
                _snapshots(rows),
                _trades(session, standing.agent_id),
                _decisions(session, standing.agent_id),
                marks=marks,
            )
            if rows
            else None
        ),
        cost=efficiency(
            standing.starting_capital,
            standing.current_value,
            standing.cost_usd,
            standing.prompt_tokens,
            standing.completion_tokens,
        ),
        contamination=contamination(model, start or standing.created_at, cutoffs),
        is_benchmark=is_benchmark,
    )


def report_data(
    session: Session,
    *,
    now: datetime,
    race: str = LIVE,
    cutoffs: Mapping[str, date] | None = None,
) -> ReportData:
    """The report of ``race`` (only :data:`LIVE` for now) as of ``now``. ``cutoffs``: the
    training cut-off table (default: the built-in one)."""
    if race != LIVE:
        raise LookupError(f"unknown race {race!r}: only {LIVE!r} exists for now")
    board = standings(session)
    curves = {s.agent_id: equity_points(session, s.agent_id, None, None, None) for s in board}
    times = [
        parse_iso(r.captured_at) for rows in curves.values() if rows for r in (rows[0], rows[-1])
    ]
    start, end = (min(times), max(times)) if times else (None, None)
    benchmark = next((s for s in board if s.model == BENCHMARK_MODEL), None)
    benchmark_curve = _points(curves[benchmark.agent_id]) if benchmark else []
    symbols = {a.id: a.symbol for a in assets(session)}
    marks = {symbols[i]: close for i, close in latest_closes(session).items() if i in symbols}
    agents = [
        _agent(session, s, curves[s.agent_id], benchmark, benchmark_curve, start, marks, cutoffs)
        for s in board
    ]
    return ReportData(
        race=race,
        start=start,
        end=end,
        generated_at=now,
        agents=agents,
        buy_and_hold=benchmark_curve,
        buy_and_hold_name=benchmark.name if benchmark else None,
    )
