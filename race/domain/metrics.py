"""Performance metrics of an equity curve (conventions: DESIGN.md §9).

* Returns are simple returns between consecutive snapshots.
* Annualised for a 24/7 market: periods per year = 365 days / mean snapshot spacing.
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
    """Running statistics of one equity curve; JSON-serialisable via :meth:`to_state`."""

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

    def add(self, time: datetime, value: Decimal | float) -> None:
        v = float(value)
        if self.count == 0:
            self.first_time = time
            self.first_value = v
            self.peak = v
        else:
            if self.last_time is not None and time <= self.last_time:
                raise ValueError(f"snapshot at {time} is not after {self.last_time}")
            if self.last_value != 0:
                r = v / self.last_value - 1.0
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

    @property
    def periods_per_year(self) -> float | None:
        if self.n_returns < 1 or self.first_time is None or self.last_time is None:
            return None
        spacing = (self.last_time - self.first_time) / self.n_returns
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


def equity_stats(points: list[tuple[datetime, Decimal]]) -> EquityStats:
    stats = EquityStats()
    for time, value in points:
        stats.add(time, value)
    return stats
