"""The circular block bootstrap of returns, and paired comparisons of two curves with it
(formulas: docs/analytics.md).

* The bootstrap is the **circular block bootstrap** (Politis & Romano 1992): a resample is
  ⌈n / L⌉ blocks of L consecutive returns, each starting at a uniformly drawn index and
  wrapping around the end, cut to n returns. Block length L = ⌈n^(1/3)⌉ (the optimal order
  for bootstrap estimates of bias and variance, Hall, Horowitz & Jing 1995). It is seeded
  (``numpy.random.default_rng(seed)``), so the same curve and seed always give the same
  interval. The statistics of a resample are sums over its blocks, read from prefix sums,
  so one resample costs O(n / L) instead of O(n).
* Intervals are percentile intervals (2.5 % and 97.5 % quantiles, linear interpolation).
* A paired comparison draws the same blocks of periods for both curves, over the return
  times they share; :func:`ranking_verdicts` compares each rank with the next one down.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from race.domain.sharpe import Points, finite, returns

DEFAULT_SEED = 20120701
"""Fixed default seed: the same curve always gets the same intervals."""
DEFAULT_RESAMPLES = 2000
CONFIDENCE = 0.95
MIN_RETURNS = 10
"""Fewer returns than this: no bootstrap, PSR or track record (too few points)."""
_CHUNK = 500


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


def block_sums(
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


def quantile_interval(samples: npt.NDArray[np.float64]) -> Interval | None:
    if samples.size == 0:
        return None
    tail = (1.0 - CONFIDENCE) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    low_f, high_f = finite(float(low)), finite(float(high))
    return None if low_f is None or high_f is None else Interval(low_f, high_f)


def log_growth(r: npt.NDArray[np.float64]) -> npt.NDArray[np.float64] | None:
    """log(1 + r), or None when a return is −100 % (the curve hit zero)."""
    if np.any(r <= -1.0):
        return None
    return np.log1p(r)


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
    la, lb = log_growth(xa), log_growth(xb)
    if la is None or lb is None:
        return Comparison(n, None, None, None, None, "a curve reached zero")
    length = block_length(n)
    starts = block_starts(n, length, resamples, seed)
    ga = block_sums(la, starts, length)
    gb = block_sums(lb, starts, length)
    p = float(np.mean(ga > gb) + 0.5 * np.mean(ga == gb))
    diff = float(np.prod(1.0 + xa) - np.prod(1.0 + xb))
    ci = quantile_interval(np.expm1(ga) - np.expm1(gb))
    return Comparison(
        n_returns=n,
        p_a_beats_b=finite(p),
        difference=finite(diff),
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
