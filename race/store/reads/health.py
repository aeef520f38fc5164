"""Reads behind the health probe and the job status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from race.store import races
from race.store.tables import AgentRow, CandleRow, CycleRow, JobRow


@dataclass(frozen=True)
class HealthFacts:
    """How many agents are active, the newest candle's close, the newest cycle (its time
    and status) and the newest completed cycle's time."""

    active_agents: int
    latest_candle: datetime | None
    last_cycle_time: datetime | None
    last_cycle_status: str | None
    last_completed: datetime | None


@dataclass(frozen=True)
class JobRecord:
    id: int
    kind: str
    status: str
    params: dict[str, Any]
    cursor: datetime | None
    total: int | None
    done: int | None
    error: str | None
    created_at: datetime
    updated_at: datetime


def health_facts(session: Session, race_id: int | None = None) -> HealthFacts:
    """The active agents, the newest candle and the race's (default: live) last cycles."""
    race = races.resolve(session, race_id)
    active = (
        session.scalar(select(func.count()).select_from(AgentRow).where(AgentRow.is_active)) or 0
    )
    latest = session.scalar(select(func.max(CandleRow.close_time)))
    cycle = session.scalar(
        select(CycleRow)
        .where(CycleRow.race_id == race)
        .order_by(CycleRow.cycle_time.desc())
        .limit(1)
    )
    completed = session.scalar(
        select(func.max(CycleRow.cycle_time)).where(
            CycleRow.race_id == race, CycleRow.status == "completed"
        )
    )
    return HealthFacts(
        active_agents=active,
        latest_candle=latest,
        last_cycle_time=None if cycle is None else cycle.cycle_time,
        last_cycle_status=None if cycle is None else cycle.status,
        last_completed=completed,
    )


def job(session: Session, job_id: int) -> JobRecord | None:
    row = session.get(JobRow, job_id)
    if row is None:
        return None
    return JobRecord(
        id=row.id,
        kind=row.kind,
        status=row.status,
        params=dict(row.params or {}),
        cursor=row.cursor,
        total=row.total,
        done=row.done,
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
