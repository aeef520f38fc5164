"""Scheduled runs: first complete unfinished or missed cycles of the previous slots, oldest
first (a cycle cut by a crash is finished by the next tick), then the slot's own cycle."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from race.domain.timeutil import ensure_utc
from race.schedule import scheduled_time
from race.store import cycles
from race.store.cycles import FINISHED
from race.usecases import cycle_rows
from race.usecases.cycle import CATCH_UP
from race.usecases.deps import Deps, log
from race.usecases.reports import CycleReport, ScheduledRun

SCHEDULED_TRIGGERS = ("timer", "schedule", CATCH_UP)
"""Triggers of cycles run by a schedule: a slot after the first of them is "missed" when
it has no cycle row."""
MAX_CYCLE_ATTEMPTS = 3
"""Runs of one cycle slot before catch-up gives it up: the slot is finished (status
``failed``) with its failures recorded, and later ticks no longer retry it."""

RunCycle = Callable[..., Awaitable[CycleReport]]
"""``run_cycle(cycle_time, *, trigger=...)``: how a slot is run."""


async def run_scheduled(
    deps: Deps, run_cycle: RunCycle, slot: datetime, *, trigger: str = "schedule"
) -> ScheduledRun:
    """The decision timer's one entry point (Functions timer and ``serve`` alike): first
    complete the unfinished cycles (row ``running`` or ``partial``: cut by a crash or a
    lost database) and the missed slots (no row, after the first scheduled cycle) among
    the ``RACE_CATCH_UP_SLOTS`` schedule slots before ``slot``, oldest first, each at its
    own time (its own market view: candles closed by then), then ``slot`` itself.

    Each is an ordinary ``run_cycle``, so exactly-once holds as ever: two timers
    firing at once both catch up and still write one decision per agent and cycle, and
    an agent already past a slot (it decided later) is skipped there. A failure of a
    catch-up cycle (a lost database included) is logged and never keeps ``slot`` from
    running; a slot that failed ``MAX_CYCLE_ATTEMPTS`` runs is finished as ``failed``
    with its failures recorded instead of being retried on every tick."""
    slot = ensure_utc(slot, field="slot")
    caught_up: list[CycleReport] = []
    behind = catch_up_slots(deps, slot, trigger)
    if behind:
        log.info(
            "catching up %d cycle(s) before %s: %s",
            len(behind),
            slot.isoformat(),
            ", ".join(t.isoformat() for t in behind),
            extra={"cycle_id": slot.isoformat()},
        )
    for earlier in behind:
        try:
            caught_up.append(await run_cycle(earlier, trigger=CATCH_UP))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Never keeps the current slot from running: a database that is really down
            # fails that run too (and the next tick catches up); anything else was one
            # slot's problem, counted against its attempts.
            log.error(
                "catch-up of cycle %s failed: %s",
                earlier.isoformat(),
                deps.redact(str(exc)),
                extra={"cycle_id": earlier.isoformat()},
            )
    report = await run_cycle(slot, trigger=trigger)
    return ScheduledRun(cycle=report, caught_up=caught_up)


def catch_up_slots(deps: Deps, slot: datetime, trigger: str) -> list[datetime]:
    """The slots before ``slot`` (at most ``catch_up_slots``, oldest first) whose cycle
    is unfinished, or missing although the schedule was already running by then (a
    first start does not invent past cycles)."""
    count = deps.settings.catch_up_slots
    if count <= 0:
        return []
    expression = deps.settings.decision_schedule
    slots: list[datetime] = []
    cursor = slot
    for _ in range(count):
        cursor = scheduled_time(expression, cursor - timedelta(seconds=1))
        slots.append(cursor)
    slots.reverse()
    triggers = sorted({*SCHEDULED_TRIGGERS, trigger})

    def read() -> tuple[dict[datetime, tuple[str, int]], datetime | None]:
        with deps.uow.read() as session:
            return cycles.statuses(session, slots, triggers, deps.race_id)

    statuses, first = deps.uow.run(read, "catch-up check")
    exhausted = [
        t
        for t, (status, attempts) in statuses.items()
        if status not in FINISHED and attempts >= MAX_CYCLE_ATTEMPTS
    ]
    for t in sorted(exhausted):
        cycle_rows.give_up(deps, t)
    return [
        t
        for t in slots
        if (t in statuses and statuses[t][0] not in FINISHED and t not in exhausted)
        or (t not in statuses and first is not None and first < t)
    ]
