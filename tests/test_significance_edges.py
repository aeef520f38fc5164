"""race.domain.sharpe, race.domain.bootstrap and race.domain.significance at their
bounds: a variance term or standard deviation exactly at its limit, a resample that
overflows (no interval), exactly 5 % of zero-variance resamples (an interval), and the
resample count and seed passed through."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from statistics import NormalDist

import numpy as np
import pytest

from race.domain.bootstrap import block_starts, compare, quantile_interval, ranking_verdicts
from race.domain.sharpe import ZERO_STD, Moments, min_track_record_length, moments
from race.domain.significance import significance

T0 = datetime(2024, 1, 1, tzinfo=UTC)
STEP = timedelta(hours=1)


def test_a_quantile_that_is_not_finite_gives_no_interval() -> None:
    with np.errstate(invalid="ignore"):
        assert quantile_interval(np.array([1.0, 2.0, np.inf])) is None  # high end only
        assert quantile_interval(np.array([-np.inf, 1.0, 2.0])) is None  # low end only
        assert quantile_interval(np.array([np.nan, np.nan])) is None


def _jump_curve() -> list[tuple[datetime, float]]:
    """Eleven returns, one of them ×1e304: a resample drawing it twice overflows."""
    return [(T0 + i * STEP, 1.0 if i < 6 else 1e304) for i in range(12)]


def _wobble() -> list[tuple[datetime, float]]:
    return [(T0 + i * STEP, 1.0 + 0.01 * (i % 3)) for i in range(12)]


def test_an_overflowing_comparison_has_no_interval_and_no_verdict() -> None:
    with np.errstate(over="ignore", invalid="ignore"):
        c = compare(_jump_curve(), _wobble())
    assert c.reason is None and c.n_returns == 11
    assert c.difference_ci is None and c.significant is None
    assert c.difference == 1e304 and c.p_a_beats_b is not None


def test_an_overflowing_curve_has_no_total_return_interval() -> None:
    with np.errstate(over="ignore", invalid="ignore"):
        s = significance(_jump_curve())
    assert s.total_return == 1e304 - 1.0
    assert s.total_return_ci is None
    assert "total_return_ci" not in s.reasons


def test_ranking_verdicts_use_the_given_resamples_and_seed() -> None:
    rng = np.random.default_rng(11)
    a = [(T0 + i * STEP, 100.0 + float(x)) for i, x in enumerate(rng.normal(0, 1, 40))]
    b = [(T0 + i * STEP, 100.0 + float(x)) for i, x in enumerate(rng.normal(0, 1, 40))]
    steps = ranking_verdicts([("a", a), ("b", b)], resamples=37, seed=5)
    assert steps[0].comparison == compare(a, b, resamples=37, seed=5)
    assert steps[0].comparison != compare(a, b, resamples=37)
    assert steps[0].comparison != compare(a, b, seed=5)


def test_a_curve_reaching_zero_says_so_word_for_word() -> None:
    points = [(T0 + i * STEP, 100.0 + i) for i in range(12)] + [(T0 + 12 * STEP, 0.0)]
    s = significance(points)
    assert s.total_return_ci is None
    assert s.reasons["total_return_ci"] == "the curve reached zero: no log growth to resample"


def test_a_standard_deviation_of_exactly_zero_std_is_zero() -> None:
    at_limit = moments([0.0, 1.414213562373095e-12])
    assert at_limit is not None and at_limit.std == ZERO_STD
    assert at_limit.skewness is None and at_limit.kurtosis is None and at_limit.sharpe is None
    assert moments([0.5] * 5) == Moments(5, 0.5, 0.0, None, None)


def test_min_track_record_at_a_zero_variance_term_and_against_a_benchmark() -> None:
    assert min_track_record_length(1.0, 2.0, 5.0) is None  # 1 − 2 + (5 − 1)/4 = 0
    z = NormalDist().inv_cdf(0.95)
    # term 1 + (3 − 1)/4 · 0.25 = 1.125, excess Sharpe 0.25
    assert min_track_record_length(0.5, 0.0, 3.0, benchmark=0.25) == pytest.approx(
        1.0 + 1.125 * (z / 0.25) ** 2, rel=1e-12
    )
    assert min_track_record_length(0.25, 0.0, 3.0, benchmark=0.25) is None


def test_one_return_is_enough_to_draw_block_starts() -> None:
    starts = block_starts(1, 1, 3, 7)
    assert starts.shape == (3, 1) and not starts.any()


def _daily(rets: list[float]) -> list[tuple[datetime, float]]:
    points, v = [], 100.0
    for i, r in enumerate(rets):
        v *= 1.0 + r
        points.append((T0 + timedelta(days=i + 1), v))
    return points


def test_a_two_valued_curve_at_the_psr_bound_has_no_psr() -> None:
    # One return of 10 % and nine of about 1.2 %: skewness · Sharpe is 2 and kurtosis is
    # 1 + skewness², so the PSR's variance term is (γ3·SR/2 − 1)² = 0: here −2e-16.
    s = significance(_daily([0.1] + [0.012062464280282358] * 9), origin=100.0, resamples=50)
    stats = moments([0.1] + [0.012062464280282358] * 9)
    assert stats is not None and stats.sharpe == pytest.approx(0.75)  # per period, in (0, 1]
    why = "non-positive variance term of the PSR"
    assert s.sharpe is not None and s.psr is None and s.min_track_record is None
    assert s.significant is None and s.min_track_record_days is None
    assert s.reasons == {
        "psr": why,
        "significant": why,
        "min_track_record": why,
        "min_track_record_days": why,
        "p_beat_benchmark": "no benchmark given",
        "excess_return_ci": "no benchmark given",
    }


def test_a_curve_with_a_zero_mean_has_no_track_record_long_enough() -> None:
    # ×1.5 then ×0.5, six times: returns +50 % and −50 % exactly, a mean of exactly 0
    s = significance(_daily([0.5, -0.5] * 6), origin=100.0, resamples=50)
    assert s.sharpe == 0.0 and s.psr == 0.5 and s.significant is False
    not_above = "the Sharpe ratio is not above 0: no track record is long enough"
    assert s.min_track_record is None
    assert s.reasons["min_track_record"] == s.reasons["min_track_record_days"] == not_above


def test_too_few_points_still_reports_the_period_resamples_and_seed() -> None:
    s = significance(_daily([0.01] * 5), origin=100.0, resamples=50, seed=3)
    assert (s.n_returns, s.periods_per_year, s.resamples, s.seed) == (5, 365.0, 50, 3)
    assert s.block_length is None


def _mostly_flat() -> list[tuple[datetime, float]]:
    rets = [0.0] * 60
    rets[3], rets[10], rets[17] = 0.01, 0.02, 0.03
    return _daily(rets)


def test_exactly_five_percent_of_zero_variance_resamples_still_give_an_interval() -> None:
    # 60 returns, all but three 0: with seed 0, 5 of 100 resamples draw none of the three
    at_limit = significance(_mostly_flat(), origin=100.0, resamples=100, seed=0)
    assert at_limit.sharpe_ci is not None and "sharpe_ci" not in at_limit.reasons
    over = [
        significance(_mostly_flat(), origin=100.0, resamples=100, seed=seed)
        for seed in range(1, 40)
    ]
    reasons = {s.reasons.get("sharpe_ci") for s in over}
    assert "6 of 100 resamples have zero variance (more than 5%)" in reasons


def test_a_psr_of_exactly_the_threshold_is_significant() -> None:
    # twelve daily returns shifted until the PSR lands on 0.95 itself (found by bisection)
    base = [0.0019, -0.0052, -0.0041, -0.0244, 0.018, 0.0114]
    base += [-0.0033, 0.0077, 0.0028, -0.0055, 0.0098, -0.0031]
    shift = 0.006419344721373807
    s = significance(_daily([b + shift for b in base]), origin=100.0, resamples=20)
    assert s.psr == 0.95 and s.significant is True
    assert s.n_returns == 12 and s.block_length == 3
