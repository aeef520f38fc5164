"""race.domain.significance against hand-computed values and independent implementations.

* PSR and MinTRL: closed forms worked by hand (normal returns) and a second implementation
  with the normal CDF from ``math.erf`` and its inverse by bisection (no scipy, no
  ``statistics.NormalDist``).
* The bootstrap: a straightforward loop that builds every resample index by index from the
  same seeded draws, compounds it, and takes quantiles by its own linear interpolation.
* Properties (hypothesis): constant returns, reproducibility, a strong drift beats a flat
  benchmark, nothing is ever NaN or infinite.
"""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from race.domain.significance import (
    MIN_RETURNS,
    Interval,
    Significance,
    block_length,
    compare,
    min_track_record_length,
    moments,
    periods_per_year,
    probabilistic_sharpe_ratio,
    ranking_verdicts,
    returns,
    significance,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=15)
CAPITAL = 100_000.0


def curve(rets: list[float], v0: float = CAPITAL, step: timedelta = STEP) -> list:
    """Equity points whose returns (against ``v0`` as origin) are ``rets``."""
    points, v = [], v0
    for i, r in enumerate(rets):
        v *= 1.0 + r
        points.append((T0 + (i + 1) * step, v))
    return points


# --- independent helpers -------------------------------------------------------------


def phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def phi_inv(p: float) -> float:
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if phi(mid) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def psr_by_hand(rets: list[float]) -> tuple[float, float]:
    """PSR(0) and MinTRL(0.95) from the paper's definitions, moments by plain loops."""
    n = len(rets)
    mean = sum(rets) / n
    m2 = sum((x - mean) ** 2 for x in rets) / n
    m3 = sum((x - mean) ** 3 for x in rets) / n
    m4 = sum((x - mean) ** 4 for x in rets) / n
    sr = mean / statistics.stdev(rets)
    g3, g4 = m3 / m2**1.5, m4 / m2**2
    term = 1 - g3 * sr + (g4 - 1) / 4 * sr**2
    psr = phi(sr * math.sqrt(n - 1) / math.sqrt(term))
    trl = 1 + term * (phi_inv(0.95) / sr) ** 2
    return psr, trl


def quantile(sorted_values: list[float], p: float) -> float:
    h = (len(sorted_values) - 1) * p
    lo = math.floor(h)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (h - lo) * (sorted_values[hi] - sorted_values[lo])


def naive_resamples(n: int, resamples: int, seed: int) -> list[list[int]]:
    """Circular block bootstrap indices, built one by one from the same draws."""
    length = 1
    while length**3 < n:
        length += 1
    blocks = math.ceil(n / length)
    starts = np.random.default_rng(seed).integers(0, n, size=(resamples, blocks), dtype=np.int64)
    out = []
    for row in starts:
        idx: list[int] = []
        for s in row:
            idx.extend((int(s) + j) % n for j in range(length))
        out.append(idx[:n])
    return out


def compound(values: list[float]) -> float:
    g = 1.0
    for x in values:
        g *= 1.0 + x
    return g - 1.0


# --- returns, periods, moments --------------------------------------------------------


def test_returns_from_origin_labelled_by_end_time() -> None:
    pts = [(T0, Decimal(110)), (T0 + STEP, Decimal(99)), (T0 + 2 * STEP, Decimal("99"))]
    assert returns(pts) == [(T0 + STEP, pytest.approx(-0.1)), (T0 + 2 * STEP, 0.0)]
    got = returns(pts, origin=Decimal(100))
    assert [t for t, _ in got] == [T0, T0 + STEP, T0 + 2 * STEP]
    assert [r for _, r in got] == pytest.approx([0.1, -0.1, 0.0])


def test_returns_skip_a_step_from_zero_and_refuse_unordered_times() -> None:
    pts = [(T0, 0.0), (T0 + STEP, 50.0), (T0 + 2 * STEP, 75.0)]
    assert returns(pts) == [(T0 + 2 * STEP, pytest.approx(0.5))]
    with pytest.raises(ValueError, match="not after"):
        returns([(T0, 1.0), (T0, 2.0)])


def test_periods_per_year_from_mean_spacing() -> None:
    assert periods_per_year(curve([0.0] * 5)) == pytest.approx(365 * 96)
    assert periods_per_year(curve([0.0])) is None


def test_moments_match_hand_values() -> None:
    m = moments([0.01, -0.02, 0.03, 0.0])
    assert m is not None
    assert m.mean == pytest.approx(0.005)
    assert m.std == pytest.approx(statistics.stdev([0.01, -0.02, 0.03, 0.0]))
    # deviations 0.005, -0.025, 0.025, -0.005: m2 = 3.25e-4, m3 = 0, m4 = 1.95625e-7
    assert m.skewness == pytest.approx(0.0, abs=1e-12)
    assert m.kurtosis == pytest.approx(1.95625e-7 / 3.25e-4**2)
    flat = moments([0.01] * 4)
    assert flat is not None and flat.sharpe is None and flat.skewness is None
    assert moments([0.01]) is None


# --- PSR and MinTRL -------------------------------------------------------------------


def test_psr_normal_returns_by_hand() -> None:
    # SR = 0.1 per period, n = 101, normal (γ3 = 0, γ4 = 3):
    # z = 0.1·√100 / √(1 + 0.01/2) = 1 / 1.0024969 = 0.9975093;
    # Φ(z) ≈ Φ(1) − 0.0024907·φ(1) = 0.841345 − 0.000603 = 0.840742
    assert probabilistic_sharpe_ratio(0.1, 101, 0.0, 3.0) == pytest.approx(0.840742, abs=2e-6)
    # At the benchmark itself PSR is ½; below it, under ½.
    assert probabilistic_sharpe_ratio(0.1, 101, 0.0, 3.0, benchmark=0.1) == 0.5
    assert probabilistic_sharpe_ratio(-0.1, 101, 0.0, 3.0) == pytest.approx(1 - 0.840742, abs=2e-6)


def test_min_track_record_normal_returns_by_hand() -> None:
    # 1 + 1.005 · (1.6448536 / 0.1)² = 1 + 1.005 · 270.5543 = 272.9071
    assert min_track_record_length(0.1, 0.0, 3.0) == pytest.approx(272.9071, abs=1e-3)
    assert min_track_record_length(0.0, 0.0, 3.0) is None
    assert min_track_record_length(-0.2, 0.0, 3.0) is None


def test_psr_and_trl_non_normal_by_hand() -> None:
    # SR 0.2, γ3 = −1, γ4 = 6: term = 1 + 0.2 + 5/4·0.04 = 1.25
    # PSR(n = 25) = Φ(0.2·√24 / √1.25) = Φ(0.876356) = 0.809582
    assert probabilistic_sharpe_ratio(0.2, 25, -1.0, 6.0) == pytest.approx(
        phi(0.2 * math.sqrt(24) / math.sqrt(1.25)), rel=1e-12
    )
    assert probabilistic_sharpe_ratio(0.2, 25, -1.0, 6.0) == pytest.approx(0.809582, abs=1e-6)
    # MinTRL = 1 + 1.25 · (1.6448536 / 0.2)² = 85.5483
    assert min_track_record_length(0.2, -1.0, 6.0) == pytest.approx(85.5483, abs=1e-3)
    # Negative skew and fat tails need a longer record than normal returns.
    assert min_track_record_length(0.2, -1.0, 6.0) > min_track_record_length(0.2, 0.0, 3.0)


def test_psr_undefined_cases() -> None:
    assert probabilistic_sharpe_ratio(0.1, 1, 0.0, 3.0) is None
    # γ3 = 2/SR and γ4 = 1 + γ3²: the variance term is (γ3·SR/2 − 1)² = 0
    assert probabilistic_sharpe_ratio(0.5, 50, 4.0, 17.0) is None


@settings(max_examples=200, deadline=None)
@given(
    sr=st.floats(0.01, 1.0),
    skew=st.floats(-2.0, 2.0),
    excess=st.floats(0.0, 10.0),
)
def test_psr_at_min_track_record_is_the_confidence(sr: float, skew: float, excess: float) -> None:
    kurt = 1.0 + skew * skew + excess  # any valid (γ3, γ4) pair: γ4 ≥ 1 + γ3²
    trl = min_track_record_length(sr, skew, kurt)
    if trl is None:
        return
    term = 1 - skew * sr + (kurt - 1) / 4 * sr**2
    # Where the variance term (1 − γ3·SR/2)² + excess·SR²/4 nearly cancels, its rounding
    # (a few ulps of 1) is amplified by 1/term (a PSR of 0.9500000056 was seen): the
    # identity holds to float precision scaled by that conditioning.
    tolerance = 1e-9 + 1e-15 / term
    assert phi(sr * math.sqrt(trl - 1) / math.sqrt(term)) == pytest.approx(0.95, abs=tolerance)


def test_curve_psr_and_trl_match_independent_implementation() -> None:
    rng = np.random.default_rng(3)
    rets = list(rng.standard_t(4, 300) * 0.004 + 0.0006)
    s = significance(curve(rets), origin=CAPITAL)
    psr, trl = psr_by_hand(rets)
    assert s.psr == pytest.approx(psr, abs=1e-9)
    assert s.min_track_record == pytest.approx(trl, rel=1e-9)
    assert s.min_track_record_days == pytest.approx(trl / 96, rel=1e-9)
    assert s.significant is (psr >= 0.95)


# --- the bootstrap --------------------------------------------------------------------


def test_block_length_is_the_ceiling_of_the_cube_root() -> None:
    assert [block_length(n) for n in (0, 1, 2, 8, 9, 27, 28, 1000, 1001, 10_000)] == [
        1, 1, 2, 2, 3, 3, 4, 10, 11, 22,
    ]  # fmt: skip


def test_bootstrap_matches_a_straightforward_implementation() -> None:
    rng = np.random.default_rng(11)
    rets = list(rng.normal(0.0004, 0.01, 45))
    bench = list(rng.normal(0.0, 0.01, 45))
    seed, resamples = 5, 400
    s = significance(
        curve(rets), origin=CAPITAL, benchmark=curve(bench), benchmark_origin=CAPITAL,
        resamples=resamples, seed=seed,
    )  # fmt: skip
    ppy = 365 * 96
    totals, sharpes, diffs, wins = [], [], [], 0.0
    for idx in naive_resamples(45, resamples, seed):
        xa = [rets[i] for i in idx]
        xb = [bench[i] for i in idx]
        ta, tb = compound(xa), compound(xb)
        totals.append(ta)
        sharpes.append(statistics.mean(xa) / statistics.stdev(xa) * math.sqrt(ppy))
        diffs.append(ta - tb)
        wins += 1.0 if ta > tb else 0.5 if ta == tb else 0.0
    totals.sort()
    sharpes.sort()
    diffs.sort()
    assert s.block_length == 4
    assert s.total_return == pytest.approx(compound(rets), rel=1e-12)
    assert s.total_return_ci is not None and s.sharpe_ci is not None
    assert s.total_return_ci.low == pytest.approx(quantile(totals, 0.025), rel=1e-9)
    assert s.total_return_ci.high == pytest.approx(quantile(totals, 0.975), rel=1e-9)
    assert s.sharpe == pytest.approx(
        statistics.mean(rets) / statistics.stdev(rets) * math.sqrt(ppy), rel=1e-9
    )
    assert s.sharpe_ci.low == pytest.approx(quantile(sharpes, 0.025), rel=1e-7)
    assert s.sharpe_ci.high == pytest.approx(quantile(sharpes, 0.975), rel=1e-7)
    assert s.p_beat_benchmark == pytest.approx(wins / resamples)
    assert s.excess_return_ci is not None
    assert s.excess_return_ci.low == pytest.approx(quantile(diffs, 0.025), rel=1e-9)
    assert s.excess_return_ci.high == pytest.approx(quantile(diffs, 0.975), rel=1e-9)


def test_pairing_is_on_shared_times() -> None:
    rets = [0.01, -0.005] * 10
    a = curve(rets)
    b = curve([0.0] * 20)[5:]  # starts later: pairs on the last 15 returns
    c = compare(a, b)
    assert c.n_returns == 14  # b's first kept point has no return of its own without origin
    expected = compound(rets[6:]) - 0.0
    assert c.difference == pytest.approx(expected, rel=1e-12)


def test_identical_curves_tie() -> None:
    rets = list(np.random.default_rng(2).normal(0.001, 0.01, 60))
    c = compare(curve(rets), curve(rets))
    assert c.p_a_beats_b == 0.5
    assert c.difference == 0.0
    assert c.difference_ci == Interval(0.0, 0.0)
    assert c.significant is False


def test_ranking_verdicts_separate_a_clear_winner_only() -> None:
    rng = np.random.default_rng(8)
    noise = list(rng.normal(0.0, 0.004, 200))
    winner = curve([x + 0.003 for x in noise])
    second = curve(noise)
    twin = curve([x + 1e-6 for x in noise])
    steps = ranking_verdicts([("w", winner), ("twin", twin), ("s", second)])
    assert [(s.upper, s.lower) for s in steps] == [("w", "twin"), ("twin", "s")]
    assert steps[0].comparison.significant is True
    assert steps[0].comparison.p_a_beats_b == 1.0
    # Pairing cancels the shared noise: a tiny edge earned in every period is no luck.
    assert steps[1].comparison.significant is True
    assert steps[1].comparison.difference == pytest.approx(200e-6, rel=0.05)
    lucky = ranking_verdicts([("a", curve(list(rng.normal(0, 0.01, 200)))), ("b", second)])
    assert lucky[0].comparison.significant is False


# --- edge cases -----------------------------------------------------------------------


def test_too_few_points_gives_reasons_not_numbers() -> None:
    s = significance(curve([0.01] * (MIN_RETURNS - 1)), origin=CAPITAL)
    assert s.n_returns == MIN_RETURNS - 1
    assert s.total_return_ci is None and s.psr is None and s.sharpe is None
    assert s.block_length is None
    assert "too few points" in s.reasons["psr"]
    assert "too few" in compare(curve([0.01] * 3), curve([0.0] * 3)).reason


def test_zero_variance_has_no_sharpe_but_a_total_return() -> None:
    s = significance(curve([0.0] * 30), origin=CAPITAL)
    assert s.total_return == 0.0 and s.total_return_ci == Interval(0.0, 0.0)
    assert s.sharpe is None and s.psr is None and s.min_track_record is None
    assert "zero variance" in s.reasons["sharpe"]
    assert s.significant is None


def test_mostly_flat_curve_has_no_sharpe_interval() -> None:
    rets = [0.0] * 300
    rets[100] = 0.02
    s = significance(curve(rets), origin=CAPITAL)
    assert s.sharpe is not None and s.sharpe_ci is None
    assert "zero variance" in s.reasons["sharpe_ci"]


def test_curve_reaching_zero() -> None:
    s = significance(curve([0.01] * 10 + [-1.0] + [0.0] * 5), origin=CAPITAL)
    assert s.total_return_ci is None
    assert "reached zero" in s.reasons["total_return_ci"]


def test_no_benchmark_reason_and_trl_for_a_losing_curve() -> None:
    rets = list(np.random.default_rng(4).normal(-0.002, 0.01, 100))
    s = significance(curve(rets), origin=CAPITAL)
    assert s.p_beat_benchmark is None and s.reasons["p_beat_benchmark"] == "no benchmark given"
    assert s.min_track_record is None and "not above 0" in s.reasons["min_track_record"]
    assert s.psr is not None and s.psr < 0.5 and s.significant is False


# --- properties -----------------------------------------------------------------------


def _all_numbers(s: Significance) -> list[float]:
    out: list[float] = []
    for value in (
        s.total_return, s.sharpe, s.psr, s.min_track_record, s.min_track_record_days,
        s.p_beat_benchmark, s.periods_per_year,
    ):  # fmt: skip
        if value is not None:
            out.append(value)
    for interval in (s.total_return_ci, s.sharpe_ci, s.excess_return_ci):
        if interval is not None:
            out += [interval.low, interval.high]
    return out


@settings(max_examples=60, deadline=None)
@given(r=st.floats(-0.05, 0.05), n=st.integers(MIN_RETURNS, 400), seed=st.integers(0, 2**32))
def test_constant_returns_interval_contains_the_point(r: float, n: int, seed: int) -> None:
    s = significance(curve([r] * n), origin=CAPITAL, seed=seed, resamples=200)
    assert s.total_return is not None and s.total_return_ci is not None
    assert s.total_return_ci.contains(s.total_return)
    assert s.total_return == pytest.approx((1 + r) ** n - 1, rel=1e-9, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    rets=st.lists(st.floats(-0.2, 0.2), min_size=MIN_RETURNS, max_size=120),
    seed=st.integers(0, 2**32),
)
def test_reproducible_with_the_same_seed_and_never_nan(rets: list[float], seed: int) -> None:
    bench = curve([0.001] * len(rets))
    one = significance(curve(rets), origin=CAPITAL, benchmark=bench, seed=seed, resamples=150)
    two = significance(curve(rets), origin=CAPITAL, benchmark=bench, seed=seed, resamples=150)
    assert one == two
    assert all(math.isfinite(x) for x in _all_numbers(one))
    if one.total_return_ci is not None and one.sharpe_ci is not None:
        assert one.total_return_ci.low <= one.total_return_ci.high
        assert one.sharpe_ci.low <= one.sharpe_ci.high
    if one.psr is not None:
        assert 0.0 <= one.psr <= 1.0
    if one.p_beat_benchmark is not None:
        assert 0.0 <= one.p_beat_benchmark <= 1.0


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), noise_seed=st.integers(0, 2**32))
def test_a_strong_drift_beats_a_flat_benchmark(seed: int, noise_seed: int) -> None:
    rng = np.random.default_rng(noise_seed)
    market = rng.normal(0.0, 0.005, 300)
    agent = market + 0.004  # the same market moves plus a strong drift
    s = significance(
        curve(list(agent)), origin=CAPITAL, benchmark=curve(list(market)),
        benchmark_origin=CAPITAL, seed=seed, resamples=300,
    )  # fmt: skip
    assert s.p_beat_benchmark is not None and s.p_beat_benchmark > 0.99
    assert s.excess_return_ci is not None and s.excess_return_ci.low > 0


def test_a_different_seed_moves_the_interval_a_little() -> None:
    rets = list(np.random.default_rng(9).normal(0.0005, 0.01, 500))
    a = significance(curve(rets), origin=CAPITAL, seed=1)
    b = significance(curve(rets), origin=CAPITAL, seed=2)
    assert a.total_return == b.total_return
    assert a.total_return_ci != b.total_return_ci
    assert a.total_return_ci is not None and b.total_return_ci is not None
    assert a.total_return_ci.low == pytest.approx(b.total_return_ci.low, abs=0.05)


def test_periods_override_and_resample_count_checked() -> None:
    rets = list(np.random.default_rng(6).normal(0.001, 0.01, 50))
    daily = significance(curve(rets), origin=CAPITAL, periods=365.0)
    assert daily.periods_per_year == 365.0
    assert daily.sharpe == pytest.approx(
        statistics.mean(rets) / statistics.stdev(rets) * math.sqrt(365), rel=1e-9
    )
    assert daily.min_track_record_days == pytest.approx(daily.min_track_record, rel=1e-12)
    with pytest.raises(ValueError, match="at least one resample"):
        significance(curve(rets), resamples=0)


# --- every reason, exactly --------------------------------------------------------------


def test_too_few_points_gives_the_same_reason_for_every_field() -> None:
    s = significance(curve([0.01] * (MIN_RETURNS - 1)), origin=CAPITAL)
    why = "too few points: 9 returns, at least 10 needed"
    assert s.reasons == {
        name: why
        for name in (
            "total_return",
            "total_return_ci",
            "sharpe",
            "sharpe_ci",
            "psr",
            "min_track_record",
            "min_track_record_days",
            "p_beat_benchmark",
            "excess_return_ci",
            "significant",
        )
    }
    assert next(iter(s.reasons)) == "total_return" and list(s.reasons)[-1] == "significant"


def test_zero_variance_reasons_exactly() -> None:
    s = significance(curve([0.0] * 30), origin=CAPITAL)
    why = "zero variance: the Sharpe ratio is undefined"
    assert s.reasons == {
        "sharpe": why,
        "sharpe_ci": why,
        "psr": why,
        "min_track_record": why,
        "significant": why,
        "min_track_record_days": why,
        "p_beat_benchmark": "no benchmark given",
        "excess_return_ci": "no benchmark given",
    }
    assert s.min_track_record_days is None


def test_mostly_flat_curve_reasons_exactly() -> None:
    rets = [0.0] * 300
    rets[100] = 0.02
    s = significance(curve(rets), origin=CAPITAL)
    assert s.reasons == {
        "sharpe_ci": "760 of 2000 resamples have zero variance (more than 5%)",
        "p_beat_benchmark": "no benchmark given",
        "excess_return_ci": "no benchmark given",
    }


def test_losing_curve_and_unpairable_benchmark_reasons_exactly() -> None:
    rets = list(np.random.default_rng(4).normal(-0.002, 0.01, 100))
    s = significance(
        curve(rets), origin=CAPITAL, benchmark=curve([0.0] * 3), benchmark_origin=CAPITAL
    )
    not_above = "the Sharpe ratio is not above 0: no track record is long enough"
    too_few = "too few shared points: 3 returns, at least 10 needed"
    assert s.reasons == {
        "min_track_record": not_above,
        "min_track_record_days": not_above,
        "p_beat_benchmark": too_few,
        "excess_return_ci": too_few,
    }
    assert s.p_beat_benchmark is None and s.excess_return_ci is None
    assert s.min_track_record_days is None


def test_winning_curve_has_every_value_and_no_reason() -> None:
    rets = list(np.random.default_rng(6).normal(0.003, 0.01, 200))
    bench = curve([0.001] * 200)
    s = significance(curve(rets), origin=CAPITAL, benchmark=bench, benchmark_origin=CAPITAL)
    assert s.reasons == {}
    assert s.periods_per_year == 365 * 96
    assert s.block_length == 6 and s.resamples == 2000 and s.seed == 20120701
    assert s.min_track_record is not None and s.min_track_record_days is not None
    assert s.min_track_record_days == pytest.approx(s.min_track_record * 365.0 / (365 * 96))
    direct = compare(curve(rets), bench, origin_a=CAPITAL, origin_b=CAPITAL)
    assert s.p_beat_benchmark == direct.p_a_beats_b and s.excess_return_ci == direct.difference_ci
    assert s.sharpe_ci is not None and s.sharpe_ci.contains(s.sharpe)
    assert s.total_return_ci is not None and s.total_return_ci.contains(s.total_return)
    assert s.significant is (s.psr >= 0.95)


def test_comparison_reasons_exactly() -> None:
    zero = compare(
        curve([0.01] * 20),
        curve([0.01] * 10 + [-1.0] + [0.0] * 9),
        origin_a=CAPITAL,
        origin_b=CAPITAL,
    )
    assert zero.reason == "a curve reached zero" and zero.n_returns == 11
    assert zero.p_a_beats_b is None and zero.difference_ci is None and zero.significant is None
    few = compare(curve([0.01] * 3), curve([0.0] * 3))
    assert few.reason == "too few shared points: 2 returns, at least 10 needed"
    assert few.n_returns == 2 and few.difference is None


# --- bounds of the building blocks ----------------------------------------------------


def test_building_blocks_at_their_bounds() -> None:
    from race.domain.bootstrap import block_starts, quantile_interval
    from race.domain.sharpe import finite

    assert finite(math.inf) is None and finite(math.nan) is None and finite(2) == 2.0
    assert periods_per_year([(T0, 1.0)]) is None
    assert periods_per_year([(T0, 1.0), (T0 + timedelta(days=1), 1.0)]) == 365.0
    assert periods_per_year([(T0, 1.0), (T0, 1.0)]) is None
    two = moments([0.01, 0.03])
    assert two is not None and two.n == 2 and two.mean == pytest.approx(0.02)
    assert two.std == pytest.approx(math.sqrt(0.0002))
    assert probabilistic_sharpe_ratio(0.1, 2, 0.0, 3.0) == pytest.approx(
        statistics.NormalDist().cdf(0.1 / math.sqrt(1.0 + 0.5 * 0.01))
    )
    assert min_track_record_length(0.1, 0.0, 3.0, probability=0.0) is None
    assert min_track_record_length(0.1, 0.0, 3.0, probability=1.0) is None
    assert min_track_record_length(0.1, 20.0, 3.0, probability=0.5) is None  # term ≤ 0
    assert min_track_record_length(0.1, 0.0, 3.0, probability=0.5) == pytest.approx(1.0)
    assert block_starts(5, 2, 1, 7).shape == (1, 3)
    with pytest.raises(ValueError):
        block_starts(5, 2, 0, 7)
    assert quantile_interval(np.array([0.25])) == Interval(0.25, 0.25)
    assert quantile_interval(np.array([], dtype=float)) is None


def test_comparison_at_exactly_min_returns_and_verdicts_with_origins() -> None:
    rng = np.random.default_rng(8)
    a = curve(list(rng.normal(0.01, 0.01, MIN_RETURNS)))
    b = curve(list(rng.normal(0.0, 0.01, MIN_RETURNS)))
    c = compare(a, b, origin_a=CAPITAL, origin_b=CAPITAL)
    assert c.reason is None and c.n_returns == MIN_RETURNS and c.p_a_beats_b is not None
    assert c.significant == c.difference_ci.excludes_zero
    steps = ranking_verdicts([("a", a), ("b", b)], origins={"a": CAPITAL, "b": CAPITAL})
    assert [(s.upper, s.lower) for s in steps] == [("a", "b")]
    assert steps[0].comparison == c
    assert ranking_verdicts([("a", a), ("b", b)])[0].comparison == compare(a, b)
    assert compare(a, b).n_returns == MIN_RETURNS - 1
