"""When an agent counts as degraded (its recent fallback rate): a rule of the race, applied
by the store when it folds steps into the leaderboard row."""

from __future__ import annotations

from dataclasses import dataclass

FALLBACK_HISTORY = 100
"""Decisions kept per agent in ``agent_stats.recent_fallbacks`` (its column length): the
largest fallback-rate window there is."""


@dataclass(frozen=True)
class HealthPolicy:
    """When an agent counts as degraded: more than ``threshold`` of its last ``window``
    decisions were fallback HOLDs. Judged only on a full window (an agent with fewer than
    ``window`` decisions is never degraded: two early failures are not a broken provider).
    ``window`` 0 turns the guard off; it cannot exceed :data:`FALLBACK_HISTORY`."""

    window: int = 20
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.window <= FALLBACK_HISTORY:
            raise ValueError(
                f"degraded window must be between 0 (off) and {FALLBACK_HISTORY} decisions "
                f"(the stored history), not {self.window}"
            )
        if not 0 <= self.threshold <= 1:
            raise ValueError(
                f"degraded threshold must be a fraction in [0, 1], not {self.threshold}"
            )

    def degraded(self, recent: str) -> bool:
        if self.window == 0 or len(recent) < self.window:
            return False
        tail = recent[-self.window :]
        return tail.count("1") / self.window > self.threshold
