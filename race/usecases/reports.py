"""What a use case did: a cycle's report, a scheduled run's, a backfill's."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from race.domain.timeutil import format_interval


@dataclass
class CycleReport:
    cycle_time: datetime
    status: str = "completed"
    agents_total: int = 0
    decided: int = 0
    fallbacks: int = 0
    trades: int = 0
    skipped: dict[int, str] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    duration_ms: int = 0
    reason: str | None = None
    """Why the whole cycle was ``skipped`` (a stale market view)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "cycleTime": self.cycle_time.isoformat(),
            "status": self.status,
            "reason": self.reason,
            "agentsTotal": self.agents_total,
            "decided": self.decided,
            "fallbacks": self.fallbacks,
            "trades": self.trades,
            "skipped": {str(k): v for k, v in self.skipped.items()},
            "errors": {str(k): v for k, v in self.errors.items()},
            "durationMs": self.duration_ms,
        }


@dataclass
class ScheduledRun:
    """What :func:`race.usecases.catch_up.run_scheduled` did: the cycles it caught up, then
    the slot's."""

    cycle: CycleReport
    caught_up: list[CycleReport] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.cycle.as_dict(),
            "caughtUp": [report.as_dict() for report in self.caught_up],
        }


@dataclass
class BackfillReport:
    job_id: int
    start: datetime
    end: datetime
    interval: timedelta
    total_cycles: int
    done_cycles: int
    decisions: int = 0
    fallbacks: int = 0
    trades: int = 0
    finished: bool = False
    retries: int = 0
    skipped: dict[int, str] = field(default_factory=dict)
    """Agents that had cycles of the range left out, and why (never silently)."""
    stale_cycles: int = 0
    """Cycles skipped because no asset had a fresh price (no decisions there)."""
    waited_seconds: float = 0.0
    """How long this run waited for another backfill to finish."""
    waited_for: str | None = None
    refused: str | None = None
    """Set when this call did no work: another backfill held the lease (queued jobs)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "jobId": self.job_id,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "interval": format_interval(self.interval),
            "totalCycles": self.total_cycles,
            "doneCycles": self.done_cycles,
            "decisions": self.decisions,
            "fallbacks": self.fallbacks,
            "trades": self.trades,
            "finished": self.finished,
            "skipped": {str(k): v for k, v in self.skipped.items()},
            "staleCycles": self.stale_cycles,
            "waitedSeconds": round(self.waited_seconds, 3),
            "waitedFor": self.waited_for,
        }
