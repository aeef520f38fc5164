"""Health logging: one line when an agent becomes degraded, one when it recovers."""

from __future__ import annotations

from race.store import repository as repo
from race.usecases.deps import log


def log_health(health: repo.HealthPolicy, flips: dict[int, bool]) -> None:
    """Log once when an agent becomes degraded (and once when it recovers)."""
    for agent_id, degraded in flips.items():
        if degraded:
            log.warning(
                "agent %s is degraded: more than %.0f %% of its last %d decisions were "
                "fallback HOLDs — check its provider",
                agent_id,
                health.threshold * 100,
                health.window,
                extra={"agent_id": agent_id},
            )
        else:
            log.info(
                "agent %s recovered: fallback rate back under %.0f %%",
                agent_id,
                health.threshold * 100,
                extra={"agent_id": agent_id},
            )
