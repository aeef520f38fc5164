"""The one place that assembles an agent's analytics: its stored curve, trades and decisions
(:mod:`race.store.reads.analysis`) through the pure functions of :mod:`race.domain`
(significance, behaviour, efficiency, contamination). Formulas: ``docs/analytics.md``.

Public entry points:

* :func:`analyse` ``(db, settings, clock) -> RaceAnalysis`` — every agent's figures (the
  HTML report calls this);
* :class:`race.analysis_cache.Analyser` — the same per agent, cached: the API keeps one
  per app.

**Benchmark.** Buy-and-hold over the agent's own period: the starting capital split equally
over the assets that have a close at or before the agent's first snapshot, bought at those
closes (no fee) and marked at each snapshot time at the latest close at or before it. The
two curves are paired on the agent's snapshot times.

**Cache.** An agent's analysis is kept with its *version*: the stored stats the engine
updates with every snapshot, trade and decision (snapshot count, last snapshot time,
decision and trade counts, current value), which the leaderboard reads anyway. A read whose
version matches costs nothing; an agent whose stats changed is recomputed once — one read
of its curve, trades and decisions (O(n) rows) and a bootstrap of O(B · n / L) — by the
first request after the change, and every later request until the next change is a hit.
The cache holds one entry per agent, so its size is bounded by the number of agents.
The leaderboard computes small stale work (≤ ``INLINE_SNAPSHOTS`` snapshots in all) within
the request; above that it never waits: it serves what is cached (``latest``; an agent
analysed one cycle ago shows that cycle's figures, with ``analyticsAsOf``) and starts one
background refresh (``refresh``), computed in a worker process (:mod:`race.analysis_worker`)
so that it does not hold the request threads' GIL. The per-agent endpoints and
:func:`analyse` compute what is missing before they answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from race.analysis_cache import Analyser

from race.domain.behaviour import Behaviour, Decision, Trade, behaviour
from race.domain.contamination import (
    ContaminationFlag,
    contamination,
)
from race.domain.efficiency import Efficiency, efficiency
from race.domain.model import Action, Side
from race.domain.significance import Comparison, Significance, significance
from race.leaderboard import ranked
from race.store.reads import analysis as reads
from race.store.reads.standings import AgentRecord, agent_records

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)

__all__ = [
    "AgentAnalysis",
    "DecisionAnalytics",
    "RaceAnalysis",
    "TradeExtremes",
    "analyse",
    "buy_and_hold",
    "decision_analytics",
    "ranked_records",
    "trade_extremes",
]


@dataclass(frozen=True)
class DecisionAnalytics:
    """What an agent's decisions were: counts by action, cited rule, recorded regime and
    fallback reason (each by count, descending, then name)."""

    decisions: int
    actions: dict[str, int]
    cited_rules: dict[str, int]
    regimes: dict[str, int]
    fallbacks: int
    fallback_reasons: dict[str, int]
    mean_confidence: float | None


@dataclass(frozen=True)
class TradeExtremes:
    """Per asset, the biggest realised win and loss of a single SELL (None without one)."""

    biggest_win: Decimal | None
    biggest_loss: Decimal | None


@dataclass(frozen=True)
class AgentAnalysis:
    """Everything the analytics say about one agent, independent of how curves are drawn."""

    agent_id: int
    name: str
    model: str | None
    starting_capital: Decimal
    final_equity: Decimal
    period_start: datetime | None
    period_end: datetime | None
    snapshots: int
    max_drawdown_pct: float | None
    buy_and_hold_return: float | None
    """Total return (fraction) of the buy-and-hold benchmark over the agent's period."""
    significance: Significance
    behaviour: Behaviour
    efficiency: Efficiency
    contamination: ContaminationFlag
    decisions: DecisionAnalytics
    trade_extremes: dict[str, TradeExtremes]


@dataclass(frozen=True)
class RaceAnalysis:
    computed_at: datetime
    agents: dict[int, AgentAnalysis]
    """By agent id, every agent that has a portfolio."""
    rank_order: list[int]
    """Agent ids in leaderboard order (current value descending, then id)."""
    rank_steps: dict[int, Comparison]
    """By agent id: its paired comparison with the next rank down (``significant`` False:
    the two ranks may be swapped by luck). The last rank has none."""


def _ranked(counter: Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def decision_analytics(facts: Sequence[reads.DecisionFact]) -> DecisionAnalytics:
    rules: Counter[str] = Counter()
    for f in facts:
        rules.update(str(r) for r in (f.cited_rules or []))
    confidences = [f.confidence for f in facts if f.confidence is not None]
    return DecisionAnalytics(
        decisions=len(facts),
        actions=_ranked(Counter(f.action for f in facts)),
        cited_rules=_ranked(rules),
        regimes=_ranked(Counter(f.regime or "UNKNOWN" for f in facts)),
        fallbacks=sum(1 for f in facts if f.fallback),
        fallback_reasons=_ranked(
            Counter((f.fallback_reason or "unspecified") for f in facts if f.fallback)
        ),
        mean_confidence=sum(confidences) / len(confidences) if confidences else None,
    )


def trade_extremes(trades: Sequence[reads.TradeFact]) -> dict[str, TradeExtremes]:
    out: dict[str, TradeExtremes] = {}
    for asset in sorted({t.asset for t in trades}):
        pnl = [t.realized_pnl for t in trades if t.asset == asset and t.realized_pnl is not None]
        wins = [p for p in pnl if p > 0]
        losses = [p for p in pnl if p < 0]
        out[asset] = TradeExtremes(
            biggest_win=max(wins) if wins else None,
            biggest_loss=min(losses) if losses else None,
        )
    return out


def _micros(times: Sequence[datetime]) -> npt.NDArray[np.int64]:
    return np.array([(t - EPOCH) // MICROSECOND for t in times], dtype=np.int64)


def buy_and_hold(
    capital: Decimal,
    times: Sequence[datetime],
    closes: Mapping[str, Sequence[tuple[datetime, Decimal]]],
) -> list[tuple[datetime, float]]:
    """The benchmark's value at each of ``times`` (ascending): ``capital`` split equally
    over the assets with a positive close at or before ``times[0]``, bought there and marked
    at the latest close at or before each time. Empty when no asset has such a close.
    Floats (a statistic's input), vectorised: one binary search per time and asset."""
    if not times:
        return []
    at = _micros(times)
    total = np.zeros(len(times), dtype=float)
    count = 0
    for series in closes.values():
        if not series:
            continue
        close_times = _micros([t for t, _ in series])
        values = np.array([float(v) for _, v in series], dtype=float)
        entry = int(np.searchsorted(close_times, at[0], side="right")) - 1
        if entry < 0 or values[entry] <= 0:
            continue
        marks = np.searchsorted(close_times, at, side="right") - 1  # ≥ entry: times ascend
        total += values[marks] / values[entry]
        count += 1
    if count == 0:
        return []
    return list(zip(times, (total * (float(capital) / count)).tolist(), strict=True))


def benchmark_closes(
    session: Session, records: Sequence[AgentRecord]
) -> dict[str, list[tuple[datetime, Decimal]]]:
    """The closes the analyses of ``records`` read (their buy-and-hold benchmark, the
    latest marks): from the entry price at their first snapshot on, in each record's race."""
    firsts = [
        reads.first_snapshot(session, [r.agent_id for r in records if r.race_id == race], race)
        for race in {r.race_id for r in records}
    ]
    known = [t for t in firsts if t is not None]
    return reads.closes_from(session, min(known) if known else None)


def _max_drawdown_pct(values: Sequence[Decimal]) -> float | None:
    peak: Decimal | None = None
    worst = 0.0
    for v in values:
        peak = v if peak is None or v > peak else peak
        if peak > 0:
            worst = max(worst, float((peak - v) / peak * 100))
    return worst if values else None


def analyse_agent(
    session: Session,
    record: AgentRecord,
    cutoffs: Mapping[str, date],
    closes: Mapping[str, Sequence[tuple[datetime, Decimal]]],
) -> AgentAnalysis:
    """One agent's analysis from the database (uncached)."""
    return _analyse(session, record, cutoffs, closes)[0]


@dataclass(frozen=True)
class _Curve:
    """A compact copy of a curve for the rank comparisons: epoch microseconds and values."""

    times: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    origin: float

    def points(self) -> list[tuple[Any, float]]:
        """``(epoch microseconds, value)``: :func:`~race.domain.significance.compare` only
        orders and matches the labels, so integers serve (no datetime is rebuilt)."""
        return list(zip(self.times.tolist(), self.values.tolist(), strict=True))


def _analyse(
    session: Session,
    record: AgentRecord,
    cutoffs: Mapping[str, date],
    closes: Mapping[str, Sequence[tuple[datetime, Decimal]]],
) -> tuple[AgentAnalysis, _Curve]:
    points = reads.curve(session, record.agent_id, record.race_id)
    trades = reads.trade_facts(session, record.agent_id, record.race_id)
    facts = reads.decision_facts(session, record.agent_id, record.race_id)
    capital = record.starting_capital
    curve = [(p.time, p.total_value) for p in points]
    bench = buy_and_hold(capital, [t for t, _ in curve], closes)
    final = curve[-1][1] if curve else capital
    sig = significance(curve, origin=capital, benchmark=bench or None, benchmark_origin=capital)
    marks = {a: s[-1][1] for a, s in closes.items() if s}
    stats = record.stats
    start = curve[0][0] if curve else None
    compact = _Curve(
        times=_micros([t for t, _ in curve]),
        values=np.array([float(v) for _, v in curve], dtype=float),
        origin=float(capital),
    )
    analysis = AgentAnalysis(
        agent_id=record.agent_id,
        name=record.name,
        model=record.model,
        starting_capital=capital,
        final_equity=final,
        period_start=start,
        period_end=curve[-1][0] if curve else None,
        snapshots=len(curve),
        max_drawdown_pct=_max_drawdown_pct([v for _, v in curve]),
        buy_and_hold_return=bench[-1][1] / float(capital) - 1 if bench and capital else None,
        significance=sig,
        behaviour=behaviour(
            points,
            [
                Trade(t.time, t.asset, Side(t.side), t.quantity, t.notional, t.fee, t.realized_pnl)
                for t in trades
            ],
            [Decision(f.time, Action(f.action), f.asset, f.confidence, f.fallback) for f in facts],
            marks=marks,
            prices=closes,
        ),
        efficiency=efficiency(
            capital,
            final,
            stats.cost_usd if stats else None,
            stats.prompt_tokens if stats else None,
            stats.completion_tokens if stats else None,
        ),
        contamination=(
            contamination(record.model, start, cutoffs)
            if start is not None
            else ContaminationFlag(record.model, None, None, "no snapshot yet: no race period")
        ),
        decisions=decision_analytics(facts),
        trade_extremes=trade_extremes(trades),
    )
    return analysis, compact


def ranked_records(records: Sequence[AgentRecord]) -> list[AgentRecord]:
    """``records`` in leaderboard order (:func:`race.leaderboard.ranked`)."""
    by_id = {r.agent_id: r for r in records}
    return [by_id[s.agent_id] for s in ranked(list(records))]


def analyse(
    db: Any,
    settings: Any,
    clock: Any,
    analyser: Analyser | None = None,
    race_id: int | None = None,
) -> RaceAnalysis:
    """Every agent's analysis (inactive ones included), as of ``clock.now()``, and the
    paired comparison of each leaderboard rank with the next one down.

    ``db`` is a :class:`race.store.database.Database`, ``settings`` the app's settings (its
    ``RACE_MODEL_CUTOFFS`` extend the cut-off table), ``clock`` a :class:`race.clock.Clock`.
    Pass an ``analyser`` to reuse its cache across calls (one per race); ``race_id``: the
    race (default: the live race)."""
    from race.analysis_cache import Analyser

    worker = analyser or Analyser.from_settings(settings)
    with db.read() as session:
        records = agent_records(session, race_id=race_id)
        agents = worker.agents(session, records)
    order = ranked_records(records)
    return RaceAnalysis(
        computed_at=clock.now(),
        agents=dict(sorted(agents.items())),
        rank_order=[r.agent_id for r in order],
        rank_steps=worker.rank_steps(order),
    )
