"""Cycles a replay leaves out for an agent: it never goes back before an agent's latest
step, and says so (never silently)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from race.domain.agent import AgentSpec
from race.store import cycles
from race.store import repository as repo
from race.usecases.deps import Deps, log
from race.usecases.reports import BackfillReport


def passed(
    deps: Deps,
    specs: Sequence[AgentSpec],
    states: dict[int, repo.PortfolioState],
    times: Sequence[datetime],
    position: int,
) -> dict[int, str]:
    """Agents already past cycles of ``times[position:]`` they have no decision for: a
    replay never goes back before an agent's latest step, so those cycles stay
    without a decision of that agent — said, never silent."""
    ahead: dict[int, datetime] = {}
    for spec in specs:
        as_of = states[spec.id].as_of
        if as_of is not None and as_of >= times[position]:
            ahead[spec.id] = as_of
    if not ahead:
        return {}
    last = min(max(ahead.values()), times[-1])
    with deps.uow.read() as session:
        rows, skipped = cycles.decided_and_skipped(
            session, list(ahead), times[position], last, deps.race_id
        )
    decided: dict[int, set[datetime]] = {}
    for agent_id, cycle_time in rows:
        decided.setdefault(agent_id, set()).add(cycle_time)
    found: dict[int, str] = {}
    for agent_id, as_of in ahead.items():
        have = decided.get(agent_id, set()) | skipped  # a stale cycle had no decisions
        missing = [t for t in times[position:] if t <= as_of and t not in have]
        if missing:
            found[agent_id] = (
                f"portfolio already at {as_of.isoformat()}: {len(missing)} cycle(s) "
                f"from {missing[0].isoformat()} to {missing[-1].isoformat()} not replayed "
                "(a replay never goes back before an agent's latest decision)"
            )
    return found


def say_passed(report: BackfillReport, passed: dict[int, str]) -> None:
    """Log each newly left-out agent once, and keep why in ``report.skipped``."""
    for agent_id, reason in passed.items():
        if report.skipped.get(agent_id) != reason:
            log.warning(
                "backfill job %s skips agent %s: %s",
                report.job_id,
                agent_id,
                reason,
                extra={"job_id": report.job_id, "agent_id": agent_id},
            )
        report.skipped[agent_id] = reason
