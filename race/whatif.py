"""What-if replays (docs/races.md, issue 13): a new race of kind ``whatif`` that replays a
source race's cycles under changed rules, without one LLM or remote call.

Deterministic baselines (``Mock`` agents, :mod:`agents.baselines`) are recomputed; every
other agent (LLM, ML, remote ML, ensemble…) answers from its record in the source race
through :class:`agents.recorded.RecordedAgent`, judged again by the new rules. The what-if's
agent builder never builds any other agent, so nothing is asked of a network.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from sqlalchemy import select

from agents.baselines import build_baseline
from agents.recorded import recorded_agent
from race.domain import jobs
from race.domain.agent import Agent, AgentSpec
from race.domain.model import Provider
from race.domain.race import Race, RaceKind, RaceRules
from race.domain.timeutil import floor_time
from race.engine import AgentBuilder, RaceEngine
from race.races import RaceError, create_race, find_race, race_settings
from race.store import races as race_rows
from race.store.database import Database
from race.store.reads.recorded import recorded_answers
from race.store.tables import AgentRow, DecisionRow

if TYPE_CHECKING:
    from race.bootstrap import App

NAME_LIMIT = 100
"""The ``races.name`` column's length."""


@dataclass(frozen=True)
class RuleChanges:
    """What a what-if changes of its source's rules (None: kept)."""

    fee: Decimal | None = None
    slippage_bps: Decimal | None = None
    max_position: Decimal | None = None
    max_order: Decimal | None = None
    starting_capital: Decimal | None = None

    def apply(self, rules: RaceRules) -> RaceRules:
        changed = {
            "fee_rate": self.fee,
            "slippage_bps": self.slippage_bps,
            "max_position_fraction": self.max_position,
            "max_order_notional": self.max_order,
        }
        return replace(rules, **{k: v for k, v in changed.items() if v is not None})

    def describe(self) -> str:
        parts = [
            ("fee", self.fee),
            ("slippage-bps", self.slippage_bps),
            ("max-position", self.max_position),
            ("max-order", self.max_order),
            ("capital", self.starting_capital),
        ]
        return ", ".join(f"{name} {value}" for name, value in parts if value is not None)


_MAX_USD = Decimal("1e15")
"""Far under what the money columns hold (NUMERIC(28,8))."""
_BOUNDS: dict[str, tuple[Decimal, Decimal | None, bool, str]] = {
    # flag: (low, high, low allowed, what it means)
    "--fee": (Decimal(0), Decimal(1), True, "a fraction of the notional in [0, 1), e.g. 0.002"),
    "--slippage-bps": (Decimal(0), Decimal(10000), True, "basis points in [0, 10000)"),
    "--max-position": (Decimal(0), Decimal(1), False, "a fraction of equity in (0, 1]"),
    "--max-order": (Decimal(0), _MAX_USD, False, "a positive USD amount under 1e15"),
    "--starting-capital": (Decimal(0), _MAX_USD, False, "a positive USD amount under 1e15"),
}


def parse_number(flag: str, text: str | None) -> Decimal | None:
    """The flag's value as a Decimal within its bounds; ValueError naming the flag."""
    if text is None:
        return None
    low, high, low_ok, meaning = _BOUNDS[flag]
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{flag} {text!r} is not a number: it must be {meaning}") from None
    inside = value.is_finite() and (value >= low if low_ok else value > low)
    if inside and high is not None:
        inside = value <= high if flag == "--max-position" else value < high
    if not inside:
        raise ValueError(f"{flag} {text} is out of range: it must be {meaning}")
    return value


def parse_changes(
    fee: str | None = None,
    slippage_bps: str | None = None,
    max_position: str | None = None,
    max_order: str | None = None,
    starting_capital: str | None = None,
) -> RuleChanges:
    return RuleChanges(
        fee=parse_number("--fee", fee),
        slippage_bps=parse_number("--slippage-bps", slippage_bps),
        max_position=parse_number("--max-position", max_position),
        max_order=parse_number("--max-order", max_order),
        starting_capital=parse_number("--starting-capital", starting_capital),
    )


def source_cycles(db: Database, race_id: int) -> list[datetime]:
    """The cycle times the race decided at, oldest first."""
    with db.read() as session:
        query = select(DecisionRow.cycle_time).where(DecisionRow.race_id == race_id).distinct()
        return sorted(session.scalars(query))


def cycle_runs(
    times: Sequence[datetime], interval: timedelta
) -> tuple[list[tuple[datetime, datetime]], list[datetime]]:
    """``times`` as runs of consecutive grid times (each one backfill range), and the times
    off the interval's grid (a backfill cannot replay them)."""
    runs: list[tuple[datetime, datetime]] = []
    off_grid: list[datetime] = []
    for time in times:
        if floor_time(time, interval) != time:
            off_grid.append(time)
        elif runs and runs[-1][1] + interval == time:
            runs[-1] = (runs[-1][0], time)
        else:
            runs.append((time, time))
    return runs, off_grid


@dataclass
class ReplayTotals:
    decisions: int = 0
    fallbacks: int = 0
    trades: int = 0
    finished: bool = True


def replay_cycles(
    engine: RaceEngine,
    times: Sequence[datetime],
    interval: timedelta,
    agent_ids: Sequence[int],
    on_progress: Callable[[int, int], None] | None = None,
) -> ReplayTotals:
    """Replay exactly ``times`` (a backfill per run of consecutive grid times)."""
    runs, _ = cycle_runs(times, interval)
    totals, before = ReplayTotals(), 0
    for first, last in runs:
        count = int((last - first) / interval) + 1

        def progress(done: int, _total: int, offset: int = before) -> None:
            if on_progress is not None:
                on_progress(offset + done, len(times))

        report = asyncio.run(
            engine.backfill(first, last, interval, on_progress=progress, agent_ids=agent_ids)
        )
        totals.decisions += report.decisions
        totals.fallbacks += report.fallbacks
        totals.trades += report.trades
        totals.finished = totals.finished and report.finished
        before += count
    return totals


def whatif_builder(db: Database, source: Race, first: datetime, last: datetime) -> AgentBuilder:
    """Baselines rebuilt; every other agent answers from its record in ``source``. Never
    builds an agent that could reach a network."""

    def build(spec: AgentSpec) -> Agent:
        if spec.provider is Provider.MOCK:
            return build_baseline(spec.model, spec.params)
        with db.read() as session:
            answers = recorded_answers(session, source.id, spec.id, first, last)
        return recorded_agent(spec.provider, answers, f"race {source.id}")

    return build


@dataclass(frozen=True)
class WhatIf:
    source: Race
    race: Race
    times: list[datetime]
    off_grid: list[datetime]
    participants: list[int]
    not_replayed: list[str]
    """Participants of the source that are disabled now (a replay runs active agents)."""
    resumed: bool = False
    """An unfinished what-if of the same source, rules and capital, taken up again."""


def _resumable(found: Race, new: race_rows.NewRace) -> bool:
    """``found`` is an unfinished what-if of the same source, rules and capital."""
    return (
        found.kind is RaceKind.WHATIF
        and found.source_race_id == new.source_race_id
        and found.rules == new.rules
        and found.starting_capital == new.starting_capital
        and found.status != jobs.COMPLETED
    )


def _candidates(name: str | None, source: Race, changes: RuleChanges) -> Iterator[str]:
    if name is not None:
        yield name
        return
    said = changes.describe() or "same rules"
    base = f"whatif of {source.name} ({said})"[:NAME_LIMIT]
    yield base
    for n in itertools.count(2):
        suffix = f" #{n}"
        yield base[: NAME_LIMIT - len(suffix)] + suffix


def _place(db: Database, new: race_rows.NewRace, names: Iterator[str]) -> Race | str:
    """The unfinished what-if to resume (same name, source, rules and capital), or the name
    to create the new one under: the first free one (an explicit name taken otherwise:
    :class:`RaceError`)."""
    with db.read() as session:
        for name in names:
            found = race_rows.by_name(session, name)
            if found is None:
                return name
            if _resumable(found, new):
                return found
            if new.name:  # an explicit --name
                raise RaceError(
                    f"a race named {name!r} already exists (and is not an unfinished what-if "
                    "of the same race and rules to resume)"
                )
    raise AssertionError("unreachable: the names never run out")


def create_whatif(
    app: App, source_ref: str, changes: RuleChanges, name: str | None = None
) -> WhatIf:
    """The what-if race of ``source_ref`` under ``changes``: created, or an unfinished one
    of the same source, rules and capital resumed."""
    source = find_race(app.db, source_ref)
    if source.rules is None or source.interval_seconds is None:
        raise RaceError(
            f"race {source.name!r} has not recorded its rules or interval "
            "(`python -m race db upgrade` records the live race's)"
        )
    if name is not None and not (0 < len(name.strip()) <= NAME_LIMIT):
        raise RaceError(f"--name must be 1 to {NAME_LIMIT} characters")
    times = source_cycles(app.db, source.id)
    if not times:
        raise RaceError(f"race {source.name!r} has no recorded cycle: nothing to replay")
    _, off_grid = cycle_runs(times, timedelta(seconds=source.interval_seconds))
    with app.db.read() as session:
        participants = race_rows.participants(session, source.id)
        disabled = session.scalars(
            select(AgentRow.name).where(AgentRow.id.in_(participants), ~AgentRow.is_active)
        )
        not_replayed = sorted(disabled)
    new = race_rows.NewRace(
        name=name.strip() if name is not None else "",
        kind=RaceKind.WHATIF,
        start=min(source.start, times[0]),  # the live race may predate its migration's time
        end=source.end if source.end is not None else times[-1],
        interval_seconds=source.interval_seconds,
        starting_capital=changes.starting_capital or source.starting_capital,
        rules=changes.apply(source.rules),
        universe=source.universe,
        status=jobs.QUEUED,
        source_race_id=source.id,
    )
    placed = _place(app.db, new, _candidates(new.name or None, source, changes))
    resumed = not isinstance(placed, str)
    race = (
        placed
        if isinstance(placed, Race)
        else create_race(app.db, replace(new, name=placed), participants, app.clock)
    )
    return WhatIf(source, race, times, off_grid, participants, not_replayed, resumed)


def run_whatif(
    app: App, whatif: WhatIf, on_progress: Callable[[int, int], None] | None = None
) -> ReplayTotals:
    """Replay the source's cycles into the what-if race; its status set at the end."""
    race, source, times = whatif.race, whatif.source, whatif.times
    builder = whatif_builder(app.db, source, times[0], times[-1])
    engine = RaceEngine(
        app.db,
        race_settings(app.settings, race),
        builder,
        clock=app.clock,
        telemetry=app.telemetry,
        race_id=race.id,
    )
    with app.db.write() as session:
        race_rows.set_status(session, race.id, jobs.RUNNING)
    assert race.interval_seconds is not None
    interval = timedelta(seconds=race.interval_seconds)
    try:
        totals = replay_cycles(engine, times, interval, whatif.participants, on_progress)
    except BaseException:  # Ctrl-C, a lost database: the same command resumes it
        with app.db.write() as session:
            race_rows.set_status(session, race.id, jobs.PARTIAL)
        raise
    with app.db.write() as session:
        done = jobs.COMPLETED if totals.finished else jobs.PARTIAL
        race_rows.set_status(session, race.id, done)
    return totals
