"""Unit tests of race.domain.metrics: edge cases of every statistic (mutation-tested).

Expected values are computed independently (``statistics`` module, closed forms)."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from race.domain.metrics import (
    YEAR,
    EquityStats,
    Performance,
    TradeStats,
    equity_stats,
    trade_stats,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def curve(*values: str | float, step: timedelta = HOUR) -> list[tuple[datetime, Decimal]]:
    return [(T0 + i * step, Decimal(str(v))) for i, v in enumerate(values)]


def test_year_is_365_days() -> None:
    assert timedelta(days=365) == YEAR


def test_empty_curve() -> None:
    s = equity_stats([])
    assert (s.count, s.n_returns, s.first_time, s.last_time) == (0, 0, None, None)
    assert s.periods_per_year is None
    assert s.std is None and s.sharpe is None and s.sortino is None
    assert s.volatility_pct is None
    assert s.max_drawdown_pct == 0.0


def test_one_point_without_origin_has_no_return() -> None:
    s = equity_stats(curve(100))
    assert (s.count, s.n_returns, s.first_value, s.last_value, s.peak) == (
        1,
        0,
        100.0,
        100.0,
        100.0,
    )
    assert s.first_time == T0 and s.last_time == T0
    assert s.periods_per_year is None and s.sharpe is None


def test_one_point_with_origin_is_one_return() -> None:
    s = equity_stats(curve(90), origin=Decimal(100))
    assert s.n_returns == 1
    assert s.mean == pytest.approx(-0.1)
    assert s.downside_sq == pytest.approx(0.01)
    assert s.peak == 100.0
    assert s.max_drawdown == pytest.approx(0.1)
    assert s.max_drawdown_pct == pytest.approx(10.0)
    assert s.std is None and s.sharpe is None and s.sortino is None
    assert s.periods_per_year is None and s.volatility_pct is None


def test_origin_starts_the_peak_even_below_the_first_value() -> None:
    s = equity_stats(curve(110, 99), origin=100)
    assert s.peak == 110.0
    assert s.max_drawdown == pytest.approx(0.1)


def test_zero_origin_or_zero_value_counts_no_return() -> None:
    s = equity_stats(curve(0, 0, 5), origin=0)
    assert s.n_returns == 0
    assert s.max_drawdown == 0.0
    assert s.peak == 5.0


def test_negative_peak_records_no_drawdown() -> None:
    s = equity_stats(curve(-10, -20))
    assert s.peak == -10.0
    assert s.max_drawdown == 0.0
    assert s.n_returns == 1
    assert s.mean == pytest.approx(1.0)


def test_drawdown_is_the_maximum_over_time() -> None:
    s = equity_stats(curve(100, 50, 120, 100, 130))
    assert s.max_drawdown == pytest.approx(0.5)
    assert s.peak == 130.0


def test_welford_matches_the_textbook_statistics() -> None:
    values = [100, 103, 99, 99, 104.5, 101]
    s = equity_stats(curve(*values), origin=100)
    returns = [b / a - 1 for a, b in zip([100, *values], values, strict=False)]
    assert s.n_returns == len(returns) == 6
    assert s.mean == pytest.approx(statistics.fmean(returns))
    assert s.std == pytest.approx(statistics.stdev(returns))
    assert s.m2 == pytest.approx(statistics.variance(returns) * 5)
    assert s.downside_sq == pytest.approx(sum(r * r for r in returns if r < 0))
    periods = 365 * 24
    assert s.periods_per_year == pytest.approx(periods)
    assert s.sharpe == pytest.approx(
        statistics.fmean(returns) / statistics.stdev(returns) * math.sqrt(periods)
    )
    downside = math.sqrt(sum(min(r, 0) ** 2 for r in returns) / len(returns))
    assert s.sortino == pytest.approx(statistics.fmean(returns) / downside * math.sqrt(periods))
    assert s.volatility_pct == pytest.approx(statistics.stdev(returns) * math.sqrt(periods) * 100)


def test_periods_per_year_uses_the_mean_spacing_of_real_snapshots() -> None:
    points = [
        (T0, Decimal(1)),
        (T0 + timedelta(days=1), Decimal(2)),
        (T0 + timedelta(days=3), Decimal(3)),
    ]
    assert equity_stats(points, origin=1).periods_per_year == pytest.approx(365 / 1.5)
    two = equity_stats(curve(1, 2, step=timedelta(days=5)))
    assert two.periods_per_year == pytest.approx(73.0)


def test_periods_per_year_of_a_degenerate_state() -> None:
    assert EquityStats(count=2, first_time=T0, last_time=T0).periods_per_year is None
    assert EquityStats(count=2, first_time=T0 + HOUR, last_time=T0).periods_per_year is None
    assert EquityStats(count=2, first_time=None, last_time=T0).periods_per_year is None
    assert EquityStats(count=2, first_time=T0, last_time=None).periods_per_year is None
    assert EquityStats(
        count=2, first_time=T0, last_time=T0 + HOUR
    ).periods_per_year == pytest.approx(8760)


def test_snapshots_must_move_forward() -> None:
    s = equity_stats(curve(100, 101))
    with pytest.raises(ValueError, match="is not after"):
        s.add(T0 + HOUR, Decimal(102))
    with pytest.raises(ValueError, match="is not after"):
        s.add(T0, Decimal(102))
    assert s.count == 2
    s.add(T0 + 2 * HOUR + timedelta(microseconds=1), Decimal(102))
    assert s.count == 3


def test_flat_curve_has_zero_deviation_and_no_ratios() -> None:
    s = equity_stats(curve(100, 100, 100, 100), origin=100)
    assert s.n_returns == 4
    assert s.std == 0.0
    assert s.sharpe is None and s.sortino is None
    assert s.volatility_pct == 0.0
    assert s.max_drawdown == 0.0
    assert s.downside_sq == 0.0


def test_constant_growth_has_no_sharpe_and_no_sortino() -> None:
    s = equity_stats(curve(100, 110, 121, 133.1), origin=None)
    assert s.n_returns == 3
    assert s.std is not None and s.std < 1e-12
    assert s.sharpe is None
    assert s.sortino is None
    assert s.downside_sq == 0.0


def test_two_returns_are_the_minimum_for_ratios() -> None:
    s = equity_stats(curve(110, 99), origin=100)
    assert s.n_returns == 2
    returns = [0.1, -0.1]
    assert s.std == pytest.approx(statistics.stdev(returns))
    assert s.sharpe == pytest.approx(0.0, abs=1e-9)
    assert s.sortino == pytest.approx(0.0, abs=1e-9)
    short = equity_stats(curve(110, 99))
    assert short.n_returns == 1 and short.sortino is None and short.std is None


def test_negative_variance_from_rounding_is_zero() -> None:
    state = EquityStats(n_returns=3, m2=-1e-18)
    assert state.std == 0.0
    state = EquityStats(n_returns=3, m2=8.0)
    assert state.std == pytest.approx(2.0)


def test_tiny_deviation_boundaries() -> None:
    base = {"count": 3, "first_time": T0, "last_time": T0 + 2 * timedelta(days=365), "n_returns": 2}
    # std exactly 1e-15: still undefined; sqrt(periods) == 1 here
    at = EquityStats(**base, mean=1e-15, m2=1e-30)
    assert at.std == pytest.approx(1e-15)
    assert at.sharpe is None
    above = EquityStats(**base, mean=3e-15, m2=(3e-15) ** 2)
    assert above.sharpe == pytest.approx(1.0)
    d_at = EquityStats(**base, mean=1e-15, m2=1.0, downside_sq=2e-30)
    assert d_at.sortino is None
    d_above = EquityStats(**base, mean=4e-15, m2=1.0, downside_sq=2 * (2e-15) ** 2)
    assert d_above.sortino == pytest.approx(2.0)


def test_ratios_scale_with_the_square_root_of_periods() -> None:
    base = {
        "count": 2,
        "first_time": T0,
        "n_returns": 2,
        "mean": 0.5,
        "m2": 1.0,
        "downside_sq": 2.0,
    }
    yearly = EquityStats(**base, last_time=T0 + YEAR)
    quarterly = EquityStats(**base, last_time=T0 + YEAR / 4)
    assert yearly.sharpe == pytest.approx(0.5)
    assert quarterly.sharpe == pytest.approx(1.0)
    assert yearly.sortino == pytest.approx(0.5)
    assert quarterly.sortino == pytest.approx(1.0)
    assert yearly.volatility_pct == pytest.approx(100.0)
    assert quarterly.volatility_pct == pytest.approx(200.0)


def test_ratios_need_periods() -> None:
    no_time = EquityStats(count=2, n_returns=3, mean=0.1, m2=1.0, downside_sq=1.0)
    assert no_time.std == pytest.approx(math.sqrt(0.5))
    assert no_time.sharpe is None
    assert no_time.sortino is None
    assert no_time.volatility_pct is None


def test_starting_at() -> None:
    assert EquityStats.starting_at(None).origin is None
    s = EquityStats.starting_at(Decimal("1000.5"))
    assert s.origin == 1000.5 and isinstance(s.origin, float)
    assert s.count == 0


def test_state_round_trip_continues_the_same_curve() -> None:
    points = curve(100, 95, 120, 80, 90)
    whole = equity_stats(points, origin=Decimal(100))
    part = equity_stats(points[:3], origin=Decimal(100))
    state = part.to_state()
    assert state["first_time"] == T0.isoformat()
    assert state["last_time"] == (T0 + 2 * HOUR).isoformat()
    assert state["origin"] == 100.0
    resumed = EquityStats.from_state(state)
    assert resumed == part
    for time, value in points[3:]:
        resumed.add(time, value)
    assert resumed == whole
    assert state["first_time"] == T0.isoformat(), "from_state must not alter its input"


def test_empty_state_round_trip() -> None:
    state = EquityStats().to_state()
    assert state["first_time"] is None and state["last_time"] is None
    assert EquityStats.from_state(state) == EquityStats()


def test_trade_stats() -> None:
    stats = trade_stats(
        [None, Decimal("1.5"), Decimal(0), Decimal("-2"), None, Decimal("0.00000001")],
        [Decimal("0.000000014"), Decimal("1"), Decimal("0.000000011")],
    )
    assert stats.total_trades == 6
    assert stats.winning == 2
    assert stats.losing == 2
    assert stats.closed == 4
    assert stats.fees_paid == Decimal("1.00000002")
    assert stats.win_rate_pct == pytest.approx(50.0)


def test_trade_stats_empty() -> None:
    stats = trade_stats([], [])
    assert stats == TradeStats()
    assert stats.fees_paid == Decimal(0) and isinstance(stats.fees_paid, Decimal)
    assert stats.closed == 0
    assert stats.win_rate_pct is None
    only_buys = trade_stats([None, None], [])
    assert (only_buys.total_trades, only_buys.closed, only_buys.win_rate_pct) == (2, 0, None)


def test_win_rate() -> None:
    assert TradeStats(winning=1, losing=3).win_rate_pct == pytest.approx(25.0)
    assert TradeStats(winning=0, losing=2).win_rate_pct == 0.0
    assert TradeStats(winning=2, losing=0).win_rate_pct == pytest.approx(100.0)


def test_performance() -> None:
    p = Performance(initial_value=Decimal(1000), current_value=Decimal("1100.123456789"))
    assert p.total_return == Decimal("100.12345679")
    assert p.percent_return == pytest.approx(10.0123456789)
    loss = Performance(initial_value=Decimal(200), current_value=Decimal(150))
    assert loss.total_return == Decimal("-50")
    assert loss.percent_return == pytest.approx(-25.0)
    assert Performance(initial_value=Decimal(0), current_value=Decimal(5)).percent_return == 0.0
    assert p.equity == EquityStats() and p.trades == TradeStats()


def test_drawdown_below_a_peak_of_one() -> None:
    assert equity_stats(curve("0.5", "0.25")).max_drawdown == pytest.approx(0.5)
    assert equity_stats(curve(1, "0.75")).max_drawdown == pytest.approx(0.25)
