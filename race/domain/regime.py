"""A small, deterministic market-regime label from close prices (no look-ahead: the caller
passes only closes at or before T)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

BULLISH = "BULLISH"
BEARISH = "BEARISH"
SIDEWAYS = "SIDEWAYS"
VOLATILE = "VOLATILE"
UNKNOWN = "UNKNOWN"


def candle_returns(closes: Sequence[float]) -> list[float | None]:
    """Per-candle returns aligned with ``closes``: ``closes[i] / closes[i - 1] - 1`` at ``i``,
    None at 0 and after a close that is not positive. Each depends on two closes only, so a
    replay computes them once over its whole tape and every window reads a slice of them
    (``candle_returns(closes)[a + 1 : b]`` holds the same floats as the returns of
    ``closes[a:b]``)."""
    out: list[float | None] = [None]
    previous = closes[0] if closes else 0.0
    for close in closes[1:]:
        out.append(close / previous - 1.0 if previous > 0 else None)
        previous = close
    return out[: len(closes)]


def detect_regime(
    closes: Sequence[float],
    *,
    volatile_threshold: float = 0.02,
    returns: Sequence[float | None] | None = None,
) -> str:
    """``VOLATILE`` when the standard deviation of per-candle returns over the window exceeds
    ``volatile_threshold``; otherwise ``BULLISH`` / ``BEARISH`` when the close, the 20-candle
    and the 50-candle (or longest available) means are stacked up / down; else ``SIDEWAYS``.
    Fewer than 20 closes → ``UNKNOWN``.

    ``returns``, when given, are the window's returns as :func:`candle_returns` lays them
    out, without the first (``candle_returns(closes)[1:]``, or the slice of a longer series
    that ends at the window): the same floats, computed once instead of per window."""
    n = len(closes)
    if n < 20:
        return UNKNOWN
    if returns is None:
        kept = [closes[i] / closes[i - 1] - 1.0 for i in range(1, n) if closes[i - 1] > 0]
    elif None in returns:
        kept = [r for r in returns if r is not None]
    else:  # a replay's window rarely holds a gap: the slice itself
        kept = cast(list[float], returns)
    if len(kept) >= 2:
        mean = sum(kept) / len(kept)
        std = math.sqrt(sum([(r - mean) ** 2 for r in kept]) / (len(kept) - 1))
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
