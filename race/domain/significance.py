"""Whether an equity curve's result is skill or luck (formulas: docs/analytics.md).

Everything here is a pure function of plain ``(time, equity)`` points: no I/O, no clock.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

YEAR = timedelta(days=365)
DEFAULT_SEED = 20120701
"""Fixed default seed: the same curve always gets the same intervals."""
DEFAULT_RESAMPLES = 2000
CONFIDENCE = 0.95
PSR_THRESHOLD = 0.95
"""An agent's Sharpe ratio is called significant when PSR(SR* = 0) ≥ this."""
MIN_RETURNS = 10
"""Fewer returns than this: no bootstrap, PSR or track record (too few points)."""
ZERO_STD = 1e-12
"""A per-period standard deviation at or below this is zero (returns are dimensionless)."""
MAX_UNDEFINED_SHARE = 0.05
"""Above this share of zero-variance resamples the Sharpe interval is not given."""
_CHUNK = 500
_NORMAL = NormalDist()

Points = Sequence[tuple[datetime, Decimal | float]]


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class Moments:
    """Per-period statistics of a return series (population skewness and kurtosis)."""

    n: int
    mean: float
    std: float
    """Sample standard deviation (ddof = 1)."""
    skewness: float | None
    kurtosis: float | None
    """Non-excess: 3 for normal returns."""

    @property
    def sharpe(self) -> float | None:
        """Per-period (not annualised) Sharpe ratio, risk-free 0."""
        return self.mean / self.std if self.std > ZERO_STD else None


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


@dataclass(frozen=True)
class Comparison:
    """A paired bootstrap of two curves over the times they share (``a`` − ``b``)."""

    n_returns: int
    p_a_beats_b: float | None
    difference: float | None
    """Point estimate: total return of a − total return of b over the shared periods."""
    difference_ci: Interval | None
    significant: bool | None
    """The interval excludes 0."""
    reason: str | None = None


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def returns(points: Points, origin: Decimal | float | None = None) -> list[tuple[datetime, float]]:
    """Simple returns ``v_t / v_{t-1} − 1``, labelled with the time of ``v_t``. The first point
    is measured against ``origin`` when given. A step from a value ≤ 0 has no return."""
    out: list[tuple[datetime, float]] = []
    previous = None if origin is None else float(origin)
    last_time: datetime | None = None
    for time, value in points:
        if last_time is not None and time <= last_time:
            raise ValueError(f"point at {time} is not after {last_time}")
        v = float(value)
        if previous is not None and previous > 0 and math.isfinite(v):
            out.append((time, v / previous - 1.0))
        previous, last_time = v, time
    return out


def periods_per_year(points: Points) -> float | None:
    """365 days / the mean spacing of the points (None with fewer than two)."""
    if len(points) < 2:
        return None
    spacing = (points[-1][0] - points[0][0]) / (len(points) - 1)
    return YEAR / spacing if spacing > timedelta(0) else None


def moments(values: Sequence[float]) -> Moments | None:
    """Mean, sample std, and population skewness and kurtosis (None for fewer than 2)."""
    n = len(values)
    if n < 2:
        return None
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    d = x - mean
    m2 = float(np.mean(d * d))
    std = math.sqrt(m2 * n / (n - 1))
    if std <= ZERO_STD:
        return Moments(n, mean, std, None, None)
    return Moments(n, mean, std, float(np.mean(d**3)) / m2**1.5, float(np.mean(d**4)) / (m2 * m2))


def _psr_variance_term(sharpe: float, skewness: float, kurtosis: float) -> float:
    return 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe * sharpe


def probabilistic_sharpe_ratio(
    sharpe: float, n: int, skewness: float, kurtosis: float, benchmark: float = 0.0
) -> float | None:
    """PSR(SR*) = Φ((SR − SR*)·√(n − 1) / √(1 − γ3·SR + (γ4 − 1)/4·SR²)).

    ``sharpe`` and ``benchmark`` are per period (not annualised), ``n`` the number of returns,
    ``kurtosis`` non-excess. None when n < 2 or the variance term is not positive."""
    term = _psr_variance_term(sharpe, skewness, kurtosis)
    if n < 2 or not term > 0:
        return None
    return _finite(_NORMAL.cdf((sharpe - benchmark) * math.sqrt(n - 1) / math.sqrt(term)))


def min_track_record_length(
    sharpe: float,
    skewness: float,
    kurtosis: float,
    benchmark: float = 0.0,
    probability: float = PSR_THRESHOLD,
) -> float | None:
    """MinTRL = 1 + (1 − γ3·SR + (γ4 − 1)/4·SR²)·(z_p / (SR − SR*))², in periods.

    None when SR ≤ SR* (no track record is long enough) or the variance term is not
    positive."""
    term = _psr_variance_term(sharpe, skewness, kurtosis)
    if sharpe <= benchmark or not term > 0 or not 0 < probability < 1:
        return None
    z = _NORMAL.inv_cdf(probability)
    return _finite(1.0 + term * (z / (sharpe - benchmark)) ** 2)


def block_length(n: int) -> int:
    """L = ⌈n^(1/3)⌉ (at least 1)."""
    length = 1
    while length**3 < n:  # integer arithmetic: no float cube root to round wrongly
        length += 1
    return length


def block_starts(n: int, length: int, resamples: int, seed: int) -> npt.NDArray[np.int64]:
    """The block start indices of every resample: ``(resamples, ⌈n / L⌉)`` integers drawn
    uniformly from [0, n) by ``numpy.random.default_rng(seed)``."""
    if resamples < 1 or n < 1:
        raise ValueError(f"need at least one resample of at least one return, got {resamples}")
    rng = np.random.default_rng(seed)
    blocks = -(-n // length)
    return rng.integers(0, n, size=(resamples, blocks), dtype=np.int64)


def _block_sums(
    values: npt.NDArray[np.float64], starts: npt.NDArray[np.int64], length: int
) -> npt.NDArray[np.float64]:
    """Per resample, the sum of ``values`` over its circular blocks (the last one cut so the
    resample has exactly n values)."""
    n = values.shape[0]
    prefix = np.concatenate(([0.0], np.cumsum(np.concatenate((values, values)))))
    blocks = starts.shape[1]
    lengths = np.full(blocks, length, dtype=np.int64)
    lengths[-1] = n - (blocks - 1) * length
    out = np.empty(starts.shape[0], dtype=float)
    for lo in range(0, starts.shape[0], _CHUNK):
        s = starts[lo : lo + _CHUNK]
        out[lo : lo + _CHUNK] = (prefix[s + lengths] - prefix[s]).sum(axis=1)
    return out


def _quantile_interval(samples: npt.NDArray[np.float64]) -> Interval | None:
    if samples.size == 0:
        return None
    tail = (1.0 - CONFIDENCE) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    low_f, high_f = _finite(float(low)), _finite(float(high))
    return None if low_f is None or high_f is None else Interval(low_f, high_f)


def _log_growth(r: npt.NDArray[np.float64]) -> npt.NDArray[np.float64] | None:
    """log(1 + r), or None when a return is −100 % (the curve hit zero)."""
    if np.any(r <= -1.0):
        return None
    return np.log1p(r)


def _sharpe_samples(
    r: npt.NDArray[np.float64], starts: npt.NDArray[np.int64], length: int, ppy: float
) -> tuple[npt.NDArray[np.float64], int]:
    """Annualised Sharpe of each resample with non-zero variance, and how many had zero."""
    n = r.shape[0]
    centre = float(r.mean())
    y = r - centre  # centred: the variance from sums loses no precision to the mean
    s1 = _block_sums(y, starts, length)
    s2 = _block_sums(y * y, starts, length)
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
    if n < MIN_RETURNS:
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
    total = _finite(float(np.prod(1.0 + r)) - 1.0)
    stats = moments(r.tolist())
    total_ci = _total_return_interval(r, starts, length, stats, total, reasons)
    sharpe, sharpe_ci = _sharpe_and_interval(r, starts, length, ppy, stats, reasons)
    psr, trl = _psr_and_trl(stats, reasons)
    trl_days = None
    if trl is not None and ppy is not None:
        trl_days = _finite(trl * 365.0 / ppy)
    else:
        reasons["min_track_record_days"] = reasons.get(
            "min_track_record", "no period length (fewer than two distinct times)"
        )
    p_beat, excess_ci = None, None
    if benchmark is None:
        reasons["p_beat_benchmark"] = reasons["excess_return_ci"] = "no benchmark given"
    else:
        cmp = compare(
            points,
            benchmark,
            origin_a=origin,
            origin_b=benchmark_origin,
            resamples=resamples,
            seed=seed,
        )
        p_beat, excess_ci = cmp.p_a_beats_b, cmp.difference_ci
        if cmp.reason is not None:
            reasons["p_beat_benchmark"] = reasons["excess_return_ci"] = cmp.reason
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


def _total_return_interval(
    r: npt.NDArray[np.float64],
    starts: npt.NDArray[np.int64],
    length: int,
    stats: Moments | None,
    total: float | None,
    reasons: dict[str, str],
) -> Interval | None:
    logs = _log_growth(r)
    if logs is None:
        reasons["total_return_ci"] = "the curve reached zero: no log growth to resample"
        return None
    if stats is not None and stats.std <= ZERO_STD and total is not None:
        # Every resample of a constant series is the series itself: the distribution is
        # the point (computed from sums it would scatter by rounding alone).
        return Interval(total, total)
    return _quantile_interval(np.expm1(_block_sums(logs, starts, length)))


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
    ppy: float | None,
    stats: Moments | None,
    reasons: dict[str, str],
) -> tuple[float | None, Interval | None]:
    if ppy is None:
        reasons["sharpe"] = reasons["sharpe_ci"] = "no period length to annualise with"
        return None, None
    per_period = stats.sharpe if stats is not None else None
    if per_period is None:
        reasons["sharpe"] = reasons["sharpe_ci"] = "zero variance: the Sharpe ratio is undefined"
        return None, None
    sharpe = _finite(per_period * math.sqrt(ppy))
    samples, undefined = _sharpe_samples(r, starts, length, ppy)
    if undefined > MAX_UNDEFINED_SHARE * starts.shape[0]:
        reasons["sharpe_ci"] = (
            f"{undefined} of {starts.shape[0]} resamples have zero variance "
            f"(more than {MAX_UNDEFINED_SHARE:.0%})"
        )
        return sharpe, None
    return sharpe, _quantile_interval(samples)


def _psr_and_trl(
    stats: Moments | None, reasons: dict[str, str]
) -> tuple[float | None, float | None]:
    sr = stats.sharpe if stats is not None else None
    if stats is None or sr is None or stats.skewness is None or stats.kurtosis is None:
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


def compare(
    a: Points,
    b: Points,
    *,
    origin_a: Decimal | float | None = None,
    origin_b: Decimal | float | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Comparison:
    """Paired circular block bootstrap of two curves over the return times they share: the
    same blocks of periods are drawn for both, so a common market move cancels out.

    ``p_a_beats_b`` = share of resamples where a's compounded return exceeds b's (ties ½);
    ``difference_ci`` = interval of (a's total return − b's total return)."""
    ra = dict(returns(a, origin_a))
    rb = dict(returns(b, origin_b))
    shared = sorted(ra.keys() & rb.keys())
    n = len(shared)
    if n < MIN_RETURNS:
        return Comparison(
            n,
            None,
            None,
            None,
            None,
            f"too few shared points: {n} returns, at least {MIN_RETURNS} needed",
        )
    xa = np.array([ra[t] for t in shared], dtype=float)
    xb = np.array([rb[t] for t in shared], dtype=float)
    la, lb = _log_growth(xa), _log_growth(xb)
    if la is None or lb is None:
        return Comparison(n, None, None, None, None, "a curve reached zero")
    length = block_length(n)
    starts = block_starts(n, length, resamples, seed)
    ga = _block_sums(la, starts, length)
    gb = _block_sums(lb, starts, length)
    p = float(np.mean(ga > gb) + 0.5 * np.mean(ga == gb))
    diff = float(np.prod(1.0 + xa) - np.prod(1.0 + xb))
    ci = _quantile_interval(np.expm1(ga) - np.expm1(gb))
    return Comparison(
        n_returns=n,
        p_a_beats_b=_finite(p),
        difference=_finite(diff),
        difference_ci=ci,
        significant=None if ci is None else ci.excludes_zero,
    )


@dataclass(frozen=True)
class RankStep:
    """Whether rank ``upper`` is separated from the next rank ``lower``."""

    upper: str
    lower: str
    comparison: Comparison


def ranking_verdicts(
    ranked: Sequence[tuple[str, Points]],
    *,
    origins: Mapping[str, Decimal | float] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> list[RankStep]:
    """For a leaderboard in rank order, a paired comparison of each agent with the next one
    down. A step is significant when the 95 % interval of the difference of their total
    returns over their shared periods excludes 0; otherwise the two ranks may be swapped by
    luck and the leaderboard should say so."""
    origins = origins or {}
    steps: list[RankStep] = []
    for (upper, up_points), (lower, low_points) in pairwise(ranked):
        steps.append(
            RankStep(
                upper,
                lower,
                compare(
                    up_points,
                    low_points,
                    origin_a=origins.get(upper),
                    origin_b=origins.get(lower),
                    resamples=resamples,
                    seed=seed,
                ),
            )
        )
    return steps
