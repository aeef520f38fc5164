"""What a race report shows: :class:`ReportData`, plain and documented, so the renderer
(:mod:`race.report.render`, :mod:`race.report.charts`) needs no database.

:mod:`race.report.data` builds it from the store; a test can build one by hand. The
analytics are the domain's own result types (:class:`~race.domain.significance.Significance`,
:class:`~race.domain.behaviour.Behaviour`, :class:`~race.domain.efficiency.Efficiency`,
:class:`~race.domain.contamination.ContaminationFlag`): their formulas are in
docs/analytics.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from race.domain.behaviour import Behaviour
from race.domain.contamination import ContaminationFlag
from race.domain.efficiency import Efficiency
from race.domain.significance import Significance


@dataclass(frozen=True)
class Point:
    """One point of a series: an aware UTC time and a value (USD for equity, percent for a
    drawdown)."""

    time: datetime
    value: float


@dataclass(frozen=True)
class LeaderboardRow:
    """An agent's place in the standings (ranked by final equity, as the leaderboard) and
    what the bootstrap says about it. ``return_pct`` is (final − starting) / starting in
    percent; ``significance.total_return_ci`` is its 95 % interval, as a fraction."""

    rank: int
    starting_capital: float
    final_equity: float
    return_pct: float
    max_drawdown_pct: float
    significance: Significance

    @property
    def significant(self) -> bool | None:
        """PSR(SR* = 0) ≥ 0.95; None when it cannot be computed (too few points)."""
        return self.significance.significant


@dataclass(frozen=True)
class AgentReport:
    """One participant.

    * ``equity``: its whole equity curve, ascending in time (the charts thin it).
    * ``drawdown``: per point, (value − running peak) / running peak in percent (≤ 0),
      from :func:`race.report.series.drawdown`.
    * ``behaviour``: None when it was not computed (no snapshot)."""

    agent_id: int
    name: str
    provider: str
    model: str | None
    equity: Sequence[Point]
    drawdown: Sequence[Point]
    leaderboard: LeaderboardRow
    behaviour: Behaviour | None
    cost: Efficiency
    contamination: ContaminationFlag
    is_benchmark: bool = False
    """True for the agent whose curve is :attr:`ReportData.buy_and_hold`."""

    @property
    def possibly_contaminated(self) -> bool:
        return self.contamination.possibly_contaminated is True


@dataclass(frozen=True)
class ReportData:
    """A whole race.

    * ``race``: its name (``live`` for the one race a database holds today).
    * ``start``/``end``: the first and last snapshot time of any agent (None without any).
    * ``generated_at``: when the report was made (from the injected clock).
    * ``agents``: in leaderboard order (rank 1 first).
    * ``buy_and_hold``: the benchmark's equity curve (empty when the race has none);
      ``buy_and_hold_name`` says where it comes from (e.g. the buy-and-hold baseline)."""

    race: str
    start: datetime | None
    end: datetime | None
    generated_at: datetime
    agents: Sequence[AgentReport]
    buy_and_hold: Sequence[Point] = ()
    buy_and_hold_name: str | None = None
