"""Metrics against values computed by hand (docs/rules.md conventions)."""

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


def test_hand_computed_curve_from_its_origin():
    # Starting capital 100, then hourly snapshots 90 → 99 → 94.05:
    # returns −10 % (100 → 90, the first step), +10 %, −5 %.
    stats = equity_stats(curve([90, 99, 94.05]), origin=D(100))
    assert stats.n_returns == 3
    assert stats.mean == pytest.approx(-1 / 60)
    assert stats.std == pytest.approx(math.sqrt(39) / 60)  # deviations −5/60, 7/60, −2/60
    # Two real gaps of one hour: 8,760 periods a year (the origin adds no time).
    assert stats.periods_per_year == pytest.approx(8760)
    # Sharpe = (−1/60) / (√39/60) × √8760 = −√(8760/39)
    assert stats.sharpe == pytest.approx(-14.987174003640066)
    # downside = √((0.1² + 0.05²) / 3) = 1/√240 → Sortino = −√240/60 × √8760 = −√(8760/15)
    assert stats.sortino == pytest.approx(-24.166091947189145)
    assert stats.volatility_pct == pytest.approx(974.1663102366042)  # √39/60 × √8760 × 100
    # The running peak starts at the origin: 100 → 90 is the worst drawdown (99 → 94.05 is 5 %).
    assert stats.max_drawdown_pct == pytest.approx(10.0)
    assert equity_stats(curve([90, 99, 94.05])).max_drawdown_pct == pytest.approx(5.0)


def test_first_snapshot_below_the_origin_is_a_drawdown_but_one_return_has_no_ratio():
    one = equity_stats(curve([99.925]), origin=100)
    assert one.max_drawdown_pct == pytest.approx(0.075)
    assert one.n_returns == 1
    assert one.periods_per_year is None  # one snapshot: no spacing to annualise by
    assert one.sharpe is None and one.sortino is None and one.volatility_pct is None
    two = equity_stats(curve([99.925, 101]), origin=100)  # two returns from two snapshots
    assert two.n_returns == 2
    assert two.sharpe is not None and two.sortino is not None
    flat = equity_stats(curve([100, 100]), origin=100)  # zero deviation
    assert flat.sharpe is None and flat.sortino is None
    above = equity_stats(curve([101, 102]), origin=100)  # a new peak at once, no downside
    assert above.max_drawdown_pct == 0 and above.sortino is None


def test_daily_snapshots_from_an_origin_annualise_by_365():
    stats = equity_stats(curve([101, 100.5, 102], step=timedelta(days=1)), origin=100)
    assert stats.n_returns == 3
    assert stats.periods_per_year == pytest.approx(365)


def test_origin_round_trips_through_the_state():
    values = [99, 103, 101, 97, 104, 108, 102]
    whole = equity_stats(curve(values), origin=100)
    first = equity_stats(curve(values)[:1], origin=100)
    resumed = EquityStats.from_state(first.to_state())
    assert resumed.origin == 100
    for time, value in curve(values)[1:]:
        resumed.add(time, value)
    assert resumed == whole
    assert EquityStats.starting_at(D("100000")).origin == 100000.0
    assert EquityStats.starting_at(None).origin is None


def test_a_state_stored_before_the_origin_existed_still_loads_and_continues():
    # Exactly what was stored before the field existed: 100 → 110 → 99 (no "origin" key).
    old = {
        "count": 3,
        "first_time": "2024-01-01T00:00:00+00:00",
        "last_time": "2024-01-01T02:00:00+00:00",
        "first_value": 100.0,
        "last_value": 99.0,
        "peak": 110.0,
        "max_drawdown": 0.1,
        "n_returns": 2,
        "mean": 0.0,
        "m2": 0.02,
        "downside_sq": 0.01,
    }
    stats = EquityStats.from_state(old)
    assert stats.origin is None
    stats.add(T0 + 3 * H, D("108.9"))
    whole = equity_stats(curve([100, 110, 99, 108.9]))  # today's behaviour, no origin
    assert stats.count == whole.count == 4 and stats.n_returns == whole.n_returns == 3
    assert stats.sharpe == pytest.approx(whole.sharpe)
    assert stats.sortino == pytest.approx(whole.sortino)
    assert stats.volatility_pct == pytest.approx(whole.volatility_pct)
    assert stats.max_drawdown_pct == pytest.approx(10.0)
    assert stats.to_state()["origin"] is None


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
