"""Daily LLM spend per agent during a replay."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from race.domain.money import ZERO
from race.store import repository as repo
from race.store.unit_of_work import UnitOfWork


class SpendTracker:
    """Daily LLM spend per agent during a backfill: read from SQL for the first cycle of a
    day, then carried in memory."""

    def __init__(self, uow: UnitOfWork, race_id: int | None = None) -> None:
        self.uow = uow
        self.race_id = race_id
        self._days: dict[int, tuple[datetime, Decimal]] = {}
        self._day_of: tuple[datetime, datetime] | None = None

    def before(self, agent_id: int, cycle_time: datetime) -> Decimal:
        memo = self._day_of  # every agent of a cycle asks for the same time
        if memo is not None and memo[0] == cycle_time:
            day = memo[1]
        else:
            day = cycle_time.replace(hour=0, minute=0, second=0, microsecond=0)
            self._day_of = (cycle_time, day)
        known = self._days.get(agent_id)
        if known is None or known[0] != day:
            if cycle_time == day:
                total = ZERO
            else:
                with self.uow.read() as session:
                    spent = repo.spent_today(session, cycle_time, [agent_id], self.race_id)
                    total = spent.get(agent_id, ZERO)
            self._days[agent_id] = (day, total)
            return total
        return known[1]

    def add(self, agent_id: int, cycle_time: datetime, cost: Decimal | None) -> None:
        if cost:
            day, total = self._days.get(agent_id, (cycle_time, ZERO))
            self._days[agent_id] = (day, total + cost)
