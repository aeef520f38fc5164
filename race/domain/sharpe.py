"""Per-period returns of an equity curve and what their moments say about its Sharpe ratio
(formulas: docs/analytics.md).

* Returns are simple per-period returns between consecutive points (the first one against
  ``origin``, the starting capital, when given), each labelled with its end point's time, so
  two curves are paired on the times they share.
* The probabilistic Sharpe ratio and the minimum track record length are Bailey & López de
  Prado (2012), "The Sharpe Ratio Efficient Frontier", Journal of Risk 15(2), eqs. for PSR
  and MinTRL, with the sample skewness and (non-excess) kurtosis of the returns.
* A value that cannot be computed is ``None``: never NaN or inf.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from statistics import NormalDist

import numpy as np

YEAR = timedelta(days=365)
PSR_THRESHOLD = 0.95
"""An agent's Sharpe ratio is called significant when PSR(SR* = 0) ≥ this."""
ZERO_STD = 1e-12
"""A per-period standard deviation at or below this is zero (returns are dimensionless)."""
_NORMAL = NormalDist()

Points = Sequence[tuple[datetime, Decimal | float]]


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


def finite(value: float | None) -> float | None:
    """``value`` as a float, or None when it is None, NaN or infinite."""
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
    return finite(_NORMAL.cdf((sharpe - benchmark) * math.sqrt(n - 1) / math.sqrt(term)))


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
    return finite(1.0 + term * (z / (sharpe - benchmark)) ** 2)
