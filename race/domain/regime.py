"""A small, deterministic market-regime label from close prices (no look-ahead: the caller
passes only closes at or before T)."""

from __future__ import annotations

import math
from collections.abc import Sequence

BULLISH = "BULLISH"
BEARISH = "BEARISH"
SIDEWAYS = "SIDEWAYS"
VOLATILE = "VOLATILE"
UNKNOWN = "UNKNOWN"


def detect_regime(closes: Sequence[float], *, volatile_threshold: float = 0.02) -> str:
    """``VOLATILE`` when the standard deviation of per-candle returns over the window exceeds
    ``volatile_threshold``; otherwise ``BULLISH`` / ``BEARISH`` when the close, the 20-candle
    and the 50-candle (or longest available) means are stacked up / down; else ``SIDEWAYS``.
    Fewer than 20 closes → ``UNKNOWN``."""
    n = len(closes)
    if n < 20:
        return UNKNOWN
    returns = [closes[i] / closes[i - 1] - 1.0 for i in range(1, n) if closes[i - 1] > 0]
    if len(returns) >= 2:
        mean = sum(returns) / len(returns)
        std = math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1))
        if std > volatile_threshold:
            return VOLATILE
    fast = sum(closes[-20:]) / 20
    slow = sum(closes[-50:]) / min(n, 50)
    last = closes[-1]
    if last > fast > slow:
        return BULLISH
    if last < fast < slow:
        return BEARISH
    return SIDEWAYS
