"""Performance metrics of an equity curve (conventions: docs/rules.md, "Metrics").

* Returns are simple returns between consecutive snapshots; the curve starts at its
  ``origin`` (the agent's starting capital), so the first snapshot's return is measured
  against it and the running peak starts there.
* Annualised for a 24/7 market: periods per year = 365 days / mean spacing of the real
  snapshots (the origin has no time of its own, none is invented for it).
* Sharpe = mean / std (ddof = 1) × √periods, risk-free 0.
* Sortino = mean / √(mean over ALL periods of min(r, 0)²) × √periods.
* Max drawdown = max over time of (running peak − value) / running peak, in percent.
* Volatility = std (ddof = 1) × √periods, in percent.
* Undefined (fewer than 2 returns, zero deviation) → ``None``, never 0, inf or 999.

:class:`EquityStats` folds snapshots one at a time (Welford), so a stored copy of its state
can be brought up to date with each new snapshot instead of re-reading the whole curve.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from race.domain.money import HUNDRED, ZERO, quantize

YEAR = timedelta(days=365)


@dataclass
class EquityStats:
    """Running statistics of one equity curve; JSON-serialisable via :meth:`to_state`.

    ``origin`` is the value the curve starts from before its first snapshot (the agent's
    starting capital). ``None`` (a state stored before the field existed) starts the curve at
    its first snapshot instead, so that snapshot's own step is not counted."""

    count: int = 0
    first_time: datetime | None = None
    last_time: datetime | None = None
    first_value: float = 0.0
    last_value: float = 0.0
    peak: float = 0.0
    max_drawdown: float = 0.0
    n_returns: int = 0
    mean: float = 0.0
    m2: float = 0.0
    downside_sq: float = 0.0
    origin: float | None = None

    def add(self, time: datetime, value: Decimal | float) -> None:
        v = float(value)
        previous: float | None
        if self.count == 0:
            self.first_time = time
            self.first_value = v
            previous = self.origin
            self.peak = v if self.origin is None else self.origin
        else:
            if self.last_time is not None and time <= self.last_time:
                raise ValueError(f"snapshot at {time} is not after {self.last_time}")
            previous = self.last_value
        if previous is not None and previous != 0:
            r = v / previous - 1.0
            self.n_returns += 1
            delta = r - self.mean
            self.mean += delta / self.n_returns
            self.m2 += delta * (r - self.mean)
            if r < 0:
                self.downside_sq += r * r
        if v > self.peak:
            self.peak = v
        elif self.peak > 0:
            self.max_drawdown = max(self.max_drawdown, (self.peak - v) / self.peak)
        self.count += 1
        self.last_time = time
        self.last_value = v

    @classmethod
    def starting_at(cls, starting_capital: Decimal | None) -> EquityStats:
        """Empty statistics of a curve whose origin is ``starting_capital`` (None: none)."""
        return cls(origin=None if starting_capital is None else float(starting_capital))

    @property
    def periods_per_year(self) -> float | None:
        """365 days / the mean spacing of the snapshots (None with fewer than two)."""
        if self.count < 2 or self.first_time is None or self.last_time is None:
            return None
        spacing = (self.last_time - self.first_time) / (self.count - 1)
        if spacing <= timedelta(0):
            return None
        return YEAR / spacing

    @property
    def std(self) -> float | None:
        if self.n_returns < 2:
            return None
        variance = self.m2 / (self.n_returns - 1)
        return math.sqrt(variance) if variance > 0 else 0.0

    @property
    def sharpe(self) -> float | None:
        std, periods = self.std, self.periods_per_year
        if std is None or periods is None or std <= 1e-15:
            return None
        return self.mean / std * math.sqrt(periods)

    @property
    def sortino(self) -> float | None:
        periods = self.periods_per_year
        if self.n_returns < 2 or periods is None:
            return None
        downside = math.sqrt(self.downside_sq / self.n_returns)
        if downside <= 1e-15:
            return None
        return self.mean / downside * math.sqrt(periods)

    @property
    def volatility_pct(self) -> float | None:
        std, periods = self.std, self.periods_per_year
        if std is None or periods is None:
            return None
        return std * math.sqrt(periods) * 100

    @property
    def max_drawdown_pct(self) -> float:
        return self.max_drawdown * 100

    def to_state(self) -> dict[str, Any]:
        state = asdict(self)
        for key in ("first_time", "last_time"):
            value = state[key]
            state[key] = value.isoformat() if value is not None else None
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EquityStats:
        data = dict(state)
        for key in ("first_time", "last_time"):
            if data.get(key):
                data[key] = datetime.fromisoformat(data[key])
        return cls(**data)


@dataclass(frozen=True)
class TradeStats:
    total_trades: int = 0
    winning: int = 0
    losing: int = 0
    fees_paid: Decimal = ZERO

    @property
    def closed(self) -> int:
        return self.winning + self.losing

    @property
    def win_rate_pct(self) -> float | None:
        """Winning closed round trips / closed round trips, in percent (None when none)."""
        return self.winning / self.closed * 100 if self.closed else None


@dataclass(frozen=True)
class Performance:
    initial_value: Decimal
    current_value: Decimal
    equity: EquityStats = field(default_factory=EquityStats)
    trades: TradeStats = field(default_factory=TradeStats)

    @property
    def total_return(self) -> Decimal:
        return quantize(self.current_value - self.initial_value)

    @property
    def percent_return(self) -> float:
        if self.initial_value == ZERO:
            return 0.0
        return float((self.current_value - self.initial_value) / self.initial_value * HUNDRED)


def trade_stats(realized_pnls: list[Decimal | None], fees: list[Decimal]) -> TradeStats:
    """A closed round trip is a SELL (it closes units bought earlier, at their average cost);
    it wins when its realised P&L, all fees included, is positive."""
    closed = [p for p in realized_pnls if p is not None]
    winning = sum(1 for p in closed if p > 0)
    return TradeStats(
        total_trades=len(realized_pnls),
        winning=winning,
        losing=len(closed) - winning,
        fees_paid=quantize(sum(fees, ZERO)),
    )


def equity_stats(
    points: list[tuple[datetime, Decimal]], origin: Decimal | float | None = None
) -> EquityStats:
    """The statistics of a whole curve; ``origin`` is its value before the first point."""
    stats = EquityStats(origin=None if origin is None else float(origin))
    for time, value in points:
        stats.add(time, value)
    return stats


def calmar_ratio(stats: EquityStats, max_drawdown_pct: float) -> float | None:
    """Annualised return over the curve (compounded from its first to its last snapshot,
    365-day year) / max drawdown; None when undefined: no curve, a first value or a growth
    not positive, no time between the ends, or no drawdown."""
    if (
        stats.first_time is None
        or stats.last_time is None
        or stats.first_value <= 0
        or max_drawdown_pct <= 0
    ):
        return None
    span = stats.last_time - stats.first_time
    if span <= timedelta(0):
        return None
    growth = stats.last_value / stats.first_value
    if growth <= 0:
        return None
    annual = growth ** (YEAR / span) - 1.0
    return annual / (max_drawdown_pct / 100.0)
