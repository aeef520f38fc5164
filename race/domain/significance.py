"""Whether an equity curve's result is skill or luck (formulas: docs/analytics.md).

Everything here is a pure function of plain ``(time, equity)`` points: no I/O, no clock.
The returns, moments, PSR and MinTRL live in :mod:`race.domain.sharpe`, the bootstrap,
paired comparisons and ranking verdicts in :mod:`race.domain.bootstrap`; this module
combines them into one curve's :class:`Significance` and re-exports their public names.

* Returns are simple per-period returns between consecutive points (the first one against
  ``origin``, the starting capital, when given), each labelled with its end point's time, so
  two curves are paired on the times they share.
* The bootstrap is the **circular block bootstrap** (Politis & Romano 1992): a resample is
  ⌈n / L⌉ blocks of L consecutive returns, each starting at a uniformly drawn index and
  wrapping around the end, cut to n returns. Block length L = ⌈n^(1/3)⌉ (the optimal order
  for bootstrap estimates of bias and variance, Hall, Horowitz & Jing 1995). It is seeded
  (``numpy.random.default_rng(seed)``), so the same curve and seed always give the same
  interval. The statistics of a resample are sums over its blocks, read from prefix sums,
  so one resample costs O(n / L) instead of O(n).
* Intervals are percentile intervals (2.5 % and 97.5 % quantiles, linear interpolation).
* The probabilistic Sharpe ratio and the minimum track record length are Bailey & López de
  Prado (2012), "The Sharpe Ratio Efficient Frontier", Journal of Risk 15(2), eqs. for PSR
  and MinTRL, with the sample skewness and (non-excess) kurtosis of the returns.
* A value that cannot be computed is ``None`` with a reason in ``reasons``: never NaN or inf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from race.domain.bootstrap import (
    CONFIDENCE,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    MIN_RETURNS,
    Comparison,
    Interval,
    RankStep,
    block_length,
    block_starts,
    block_sums,
    compare,
    log_growth,
    quantile_interval,
    ranking_verdicts,
)
from race.domain.sharpe import (
    PSR_THRESHOLD,
    YEAR,
    ZERO_STD,
    Moments,
    Points,
    finite,
    min_track_record_length,
    moments,
    periods_per_year,
    probabilistic_sharpe_ratio,
    returns,
)

__all__ = [
    "CONFIDENCE",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "MAX_UNDEFINED_SHARE",
    "MIN_RETURNS",
    "PSR_THRESHOLD",
    "YEAR",
    "ZERO_STD",
    "Comparison",
    "Interval",
    "Moments",
    "Points",
    "RankStep",
    "Significance",
    "block_length",
    "block_starts",
    "compare",
    "min_track_record_length",
    "moments",
    "periods_per_year",
    "probabilistic_sharpe_ratio",
    "ranking_verdicts",
    "returns",
    "significance",
]

MAX_UNDEFINED_SHARE = 0.05
"""Above this share of zero-variance resamples the Sharpe interval is not given."""


@dataclass(frozen=True)
class Significance:
    """What the bootstrap and PSR say about one curve. ``reasons`` maps each field left
    ``None`` to why."""

    n_returns: int
    periods_per_year: float | None
    block_length: int | None
    resamples: int
    seed: int
    total_return: float | None = None
    total_return_ci: Interval | None = None
    sharpe: float | None = None
    """Annualised: per-period mean / std × √periods_per_year."""
    sharpe_ci: Interval | None = None
    psr: float | None = None
    """P(true Sharpe > 0), Bailey & López de Prado 2012."""
    min_track_record: float | None = None
    """Minimum track record length, in periods (returns), for PSR ≥ 0.95."""
    min_track_record_days: float | None = None
    p_beat_benchmark: float | None = None
    """Share of paired resamples whose total return beats the benchmark's (ties count ½)."""
    excess_return_ci: Interval | None = None
    """Interval of (total return − benchmark's total return) over the shared periods."""
    significant: bool | None = None
    """PSR ≥ PSR_THRESHOLD (None when PSR is undefined)."""
    reasons: dict[str, str] = field(default_factory=dict)


def _sharpe_samples(
    r: npt.NDArray[np.float64], starts: npt.NDArray[np.int64], length: int, ppy: float
) -> tuple[npt.NDArray[np.float64], int]:
    """Annualised Sharpe of each resample with non-zero variance, and how many had zero."""
    n = r.shape[0]
    centre = float(r.mean())
    y = r - centre  # centred: the variance from sums loses no precision to the mean
    s1 = block_sums(y, starts, length)
    s2 = block_sums(y * y, starts, length)
    variance = np.maximum(s2 - s1 * s1 / n, 0.0) / (n - 1)
    std = np.sqrt(variance)
    defined = std > ZERO_STD
    mean = centre + s1[defined] / n
    return mean / std[defined] * math.sqrt(ppy), int((~defined).sum())


def significance(
    points: Points,
    *,
    origin: Decimal | float | None = None,
    benchmark: Points | None = None,
    benchmark_origin: Decimal | float | None = None,
    periods: float | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Significance:
    """Bootstrap intervals, PSR, MinTRL and P(beat ``benchmark``) of one equity curve.

    ``periods`` (periods per year) defaults to 365 days / the mean spacing of ``points``.
    ``benchmark`` is e.g. buy-and-hold's equity curve; it is paired on the shared times."""
    labelled = returns(points, origin)
    r = np.array([x for _, x in labelled], dtype=float)
    n = r.shape[0]
    ppy = periods if periods is not None else periods_per_year(points)
    reasons: dict[str, str] = {}
    stats = moments(r.tolist())
    # ≥ MIN_RETURNS returns means ≥ 2 distinct times (a period) and ≥ 2 values (moments)
    if n < MIN_RETURNS or ppy is None or stats is None:
        why = f"too few points: {n} returns, at least {MIN_RETURNS} needed"
        return Significance(
            n_returns=n,
            periods_per_year=ppy,
            block_length=None,
            resamples=resamples,
            seed=seed,
            reasons=dict.fromkeys(_ALL_FIELDS, why),
        )
    length = block_length(n)
    starts = block_starts(n, length, resamples, seed)
    total = finite(float(np.prod(1.0 + r)) - 1.0)
    total_ci = _total_return_interval(r, starts, length, stats, total, reasons)
    sharpe, sharpe_ci = _sharpe_and_interval(r, starts, length, ppy, stats, reasons)
    psr, trl = _psr_and_trl(stats, reasons)
    trl_days = _track_record_days(trl, ppy, reasons)
    p_beat, excess_ci = _versus_benchmark(
        points, origin, benchmark, benchmark_origin, resamples, seed, reasons
    )
    return Significance(
        block_length=length,
        total_return=total,
        total_return_ci=total_ci,
        sharpe=sharpe,
        sharpe_ci=sharpe_ci,
        psr=psr,
        min_track_record=trl,
        min_track_record_days=trl_days,
        p_beat_benchmark=p_beat,
        excess_return_ci=excess_ci,
        significant=None if psr is None else psr >= PSR_THRESHOLD,
        reasons=reasons,
        n_returns=n,
        periods_per_year=ppy,
        resamples=resamples,
        seed=seed,
    )


def _track_record_days(trl: float | None, ppy: float, reasons: dict[str, str]) -> float | None:
    """The minimum track record length in days (None, with the track record's reason, when
    that is undefined)."""
    if trl is not None:
        return finite(trl * 365.0 / ppy)
    reasons["min_track_record_days"] = reasons["min_track_record"]
    return None


def _versus_benchmark(
    points: Points,
    origin: Decimal | float | None,
    benchmark: Points | None,
    benchmark_origin: Decimal | float | None,
    resamples: int,
    seed: int,
    reasons: dict[str, str],
) -> tuple[float | None, Interval | None]:
    """P(beat ``benchmark``) and the interval of the excess return, from a paired bootstrap
    (both None, with their reason, when there is no benchmark or too little to pair)."""
    if benchmark is None:
        reasons["p_beat_benchmark"] = reasons["excess_return_ci"] = "no benchmark given"
        return None, None
    cmp = compare(
        points,
        benchmark,
        origin_a=origin,
        origin_b=benchmark_origin,
        resamples=resamples,
        seed=seed,
    )
    if cmp.reason is not None:
        reasons["p_beat_benchmark"] = reasons["excess_return_ci"] = cmp.reason
    return cmp.p_a_beats_b, cmp.difference_ci


def _total_return_interval(
    r: npt.NDArray[np.float64],
    starts: npt.NDArray[np.int64],
    length: int,
    stats: Moments,
    total: float | None,
    reasons: dict[str, str],
) -> Interval | None:
    logs = log_growth(r)
    if logs is None:
        reasons["total_return_ci"] = "the curve reached zero: no log growth to resample"
        return None
    if stats.std <= ZERO_STD and total is not None:
        # Every resample of a constant series is the series itself: the distribution is
        # the point (computed from sums it would scatter by rounding alone).
        return Interval(total, total)
    return quantile_interval(np.expm1(block_sums(logs, starts, length)))


_ALL_FIELDS = (
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


def _sharpe_and_interval(
    r: npt.NDArray[np.float64],
    starts: npt.NDArray[np.int64],
    length: int,
    ppy: float,
    stats: Moments,
    reasons: dict[str, str],
) -> tuple[float | None, Interval | None]:
    per_period = stats.sharpe
    if per_period is None:
        reasons["sharpe"] = reasons["sharpe_ci"] = "zero variance: the Sharpe ratio is undefined"
        return None, None
    sharpe = finite(per_period * math.sqrt(ppy))
    samples, undefined = _sharpe_samples(r, starts, length, ppy)
    if undefined > MAX_UNDEFINED_SHARE * starts.shape[0]:
        reasons["sharpe_ci"] = (
            f"{undefined} of {starts.shape[0]} resamples have zero variance "
            f"(more than {MAX_UNDEFINED_SHARE:.0%})"
        )
        return sharpe, None
    return sharpe, quantile_interval(samples)


def _psr_and_trl(stats: Moments, reasons: dict[str, str]) -> tuple[float | None, float | None]:
    sr = stats.sharpe
    if sr is None or stats.skewness is None or stats.kurtosis is None:
        why = "zero variance: the Sharpe ratio is undefined"
        reasons["psr"] = reasons["min_track_record"] = reasons["significant"] = why
        return None, None
    psr = probabilistic_sharpe_ratio(sr, stats.n, stats.skewness, stats.kurtosis)
    trl = min_track_record_length(sr, stats.skewness, stats.kurtosis)
    if psr is None:
        reasons["psr"] = reasons["significant"] = "non-positive variance term of the PSR"
    if trl is None:
        reasons["min_track_record"] = (
            "the Sharpe ratio is not above 0: no track record is long enough"
            if sr <= 0
            else "non-positive variance term of the PSR"
        )
    return psr, trl
