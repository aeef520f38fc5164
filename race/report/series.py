"""Series the report draws, derived from an equity curve (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from race.report.model import Point


def drawdown(equity: Sequence[Point]) -> list[Point]:
    """Per point: (value − running peak) / running peak × 100 (0 at a new peak, ≤ 0 below;
    0 while the peak is not positive)."""
    out: list[Point] = []
    peak: float | None = None
    for point in equity:
        peak = point.value if peak is None else max(peak, point.value)
        pct = (point.value - peak) / peak * 100.0 if peak > 0 else 0.0
        out.append(Point(point.time, pct))
    return out


def thin(points: Sequence[Point], limit: int) -> list[Point]:
    """At most ``limit`` (≥ 2) points for a chart: every k-th, always the first and the last,
    so the curve keeps its ends."""
    if limit < 2:
        raise ValueError("limit must be at least 2")
    if len(points) <= limit:
        return list(points)
    step = -(-(len(points) - 1) // (limit - 1))
    kept = list(points[::step])
    if kept[-1] is not points[-1]:
        kept.append(points[-1])
    return kept
