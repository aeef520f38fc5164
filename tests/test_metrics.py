"""Metrics against values computed by hand (DESIGN.md §9 conventions)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from race.domain.metrics import EquityStats, Performance, equity_stats, trade_stats

T0 = datetime(2024, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)


def curve(values, step=H):
    return [(T0 + i * step, D(str(v))) for i, v in enumerate(values)]


def test_hand_computed_hourly_curve():
    # 100 → 110 → 99 → 108.9: returns +10 %, −10 %, +10 %
    stats = equity_stats(curve([100, 110, 99, 108.9]))
    returns = [0.10, -0.10, 0.10]
    mean = sum(returns) / 3
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / 2)
    periods = 365 * 24
    assert stats.n_returns == 3
    assert stats.periods_per_year == pytest.approx(periods)
    assert stats.mean == pytest.approx(mean)
    assert stats.std == pytest.approx(std)
    assert stats.sharpe == pytest.approx(mean / std * math.sqrt(periods))
    downside = math.sqrt((0.10**2) / 3)  # mean over ALL periods of min(r, 0)²
    assert stats.sortino == pytest.approx(mean / downside * math.sqrt(periods))
    assert stats.volatility_pct == pytest.approx(std * math.sqrt(periods) * 100)
    assert stats.max_drawdown_pct == pytest.approx(10.0)  # 110 → 99


def test_drawdown_is_peak_to_trough_over_time():
    stats = equity_stats(curve([100, 120, 90, 130, 104]))
    # 120 → 90 is 25 %; 130 → 104 is 20 %: the max is 25 %.
    assert stats.max_drawdown_pct == pytest.approx(25.0)


def test_daily_snapshots_annualise_by_365():
    stats = equity_stats(curve([100, 101, 100.5, 102], step=timedelta(days=1)))
    assert stats.periods_per_year == pytest.approx(365)


def test_undefined_values_are_none_not_zero_or_inf():
    assert equity_stats([]).sharpe is None
    one = equity_stats(curve([100]))
    assert one.sharpe is None and one.sortino is None and one.volatility_pct is None
    two = equity_stats(curve([100, 101]))  # a single return: no sample std
    assert two.sharpe is None
    flat = equity_stats(curve([100, 100, 100]))  # zero deviation
    assert flat.sharpe is None
    assert flat.sortino is None
    rising = equity_stats(curve([100, 101, 103]))  # no downside
    assert rising.sortino is None
    assert rising.sharpe is not None


def test_state_round_trip_continues_identically():
    values = [100, 103, 101, 99, 104, 108, 102]
    whole = equity_stats(curve(values))
    first = equity_stats(curve(values)[:4])
    resumed = EquityStats.from_state(first.to_state())
    for time, value in curve(values)[4:]:
        resumed.add(time, value)
    assert resumed.sharpe == pytest.approx(whole.sharpe)
    assert resumed.sortino == pytest.approx(whole.sortino)
    assert resumed.max_drawdown_pct == pytest.approx(whole.max_drawdown_pct)


def test_out_of_order_points_are_refused():
    stats = equity_stats(curve([100, 101]))
    with pytest.raises(ValueError, match="not after"):
        stats.add(T0, D(100))


def test_win_rate_counts_closed_round_trips_only():
    # Two buys (no realised P&L), three sells: two winners, one loser.
    stats = trade_stats(
        [None, None, D("5"), D("-2"), D("0.01")], [D("1"), D("1"), D("0.5"), D("0.5"), D("0.5")]
    )
    assert stats.total_trades == 5
    assert stats.closed == 3
    assert stats.winning == 2 and stats.losing == 1
    assert stats.win_rate_pct == pytest.approx(200 / 3)
    assert stats.fees_paid == D("3.5")
    assert trade_stats([None], [D(1)]).win_rate_pct is None


def test_total_and_percent_return():
    perf = Performance(initial_value=D("100000"), current_value=D("112500.5"))
    assert perf.total_return == D("12500.5")
    assert perf.percent_return == pytest.approx(12.5005)
