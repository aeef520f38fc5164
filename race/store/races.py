"""Races and their participants (``races``, ``race_participants``), on a SQLAlchemy session;
the caller owns the transaction.

Every repository and read that is scoped to a race takes ``race_id``; None there means the
live race, found by :func:`resolve` (looked up once per engine: the live race is never
deleted, see :func:`delete_race`)."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from race.domain import jobs
from race.domain.race import LIVE_RACE_NAME, Race, RaceKind, RaceRules
from race.store.tables import (
    AgentStatsRow,
    CycleRow,
    DecisionRow,
    EquitySnapshotRow,
    JobRow,
    PortfolioRow,
    PositionRow,
    RaceParticipantRow,
    RaceRow,
    TradeRow,
)

_LIVE: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()
"""The live race's id per engine, once found."""


_CREATED_HERE = "race.live_created"
"""Session flag: this session created the live race (not cached: it may roll back)."""


def _engine(session: Session) -> Engine:
    bind = session.get_bind()
    return bind if isinstance(bind, Engine) else bind.engine


def live_id(session: Session) -> int | None:
    """The live race's id (None when the database has none yet: then nothing is in it)."""
    engine = _engine(session)
    found = _LIVE.get(engine)
    if found is None:
        found = session.scalar(select(RaceRow.id).where(RaceRow.kind == RaceKind.LIVE.value))
        if found is not None and not session.info.get(_CREATED_HERE):
            _LIVE[engine] = found
    return found


def resolve(session: Session, race_id: int | None) -> int | None:
    """``race_id``, or the live race's id when None."""
    return live_id(session) if race_id is None else race_id


def resolve_for_write(session: Session, race_id: int | None, now: datetime) -> int:
    """``race_id``, or the live race's id when None — created if the database has none yet
    (a write needs a race to belong to)."""
    if race_id is not None:
        return race_id
    found = live_id(session)
    return found if found is not None else ensure_live(session, now)


def to_race(row: RaceRow) -> Race:
    return Race(
        id=row.id,
        name=row.name,
        kind=RaceKind(row.kind),
        start=row.start_time,
        end=row.end_time,
        interval_seconds=row.interval_seconds,
        starting_capital=row.starting_capital,
        rules=None if row.rules is None else RaceRules.from_json(row.rules),
        universe=None if row.universe is None else tuple(row.universe),
        status=row.status,
        source_race_id=row.source_race_id,
        created_at=row.created_at,
    )


def get(session: Session, race_id: int) -> Race | None:
    row = session.get(RaceRow, race_id)
    return None if row is None else to_race(row)


def by_name(session: Session, name: str) -> Race | None:
    """The race whose name equals ``name`` regardless of case (as the unique index)."""
    row = session.scalar(select(RaceRow).where(func.lower(RaceRow.name) == func.lower(name)))
    return None if row is None else to_race(row)


def find(session: Session, ref: str) -> Race | None:
    """A race by name (any case) or by id (digits); ``live`` also finds the live race."""
    found = by_name(session, ref.strip())
    if found is None and ref.strip().isdigit():
        found = get(session, int(ref.strip()))
    return found


def all_races(session: Session) -> list[Race]:
    """Every race, by id."""
    return [to_race(row) for row in session.scalars(select(RaceRow).order_by(RaceRow.id))]


@dataclass(frozen=True, slots=True)
class NewRace:
    """What a race is created with (the rules frozen from here on)."""

    name: str
    kind: RaceKind
    start: datetime
    end: datetime | None
    interval_seconds: int | None
    starting_capital: Decimal | None
    rules: RaceRules | None
    universe: Sequence[str] | None
    status: str = jobs.QUEUED
    source_race_id: int | None = None


def insert(session: Session, new: NewRace, now: datetime) -> int:
    row = RaceRow(
        name=new.name,
        kind=new.kind.value,
        start_time=new.start,
        end_time=new.end,
        interval_seconds=new.interval_seconds,
        starting_capital=new.starting_capital,
        rules=None if new.rules is None else new.rules.to_json(),
        universe=None if new.universe is None else list(new.universe),
        status=new.status,
        source_race_id=new.source_race_id,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row.id


def ensure_live(session: Session, now: datetime) -> int:
    """The live race's id, created (open-ended, running, rules not recorded) if missing.
    Not cached: the transaction that creates it may still roll back."""
    found = session.scalar(select(RaceRow.id).where(RaceRow.kind == RaceKind.LIVE.value))
    if found is not None:
        return found
    new = NewRace(LIVE_RACE_NAME, RaceKind.LIVE, now, None, None, None, None, None, jobs.RUNNING)
    session.info[_CREATED_HERE] = True
    return insert(session, new, now)


@dataclass(frozen=True, slots=True)
class LiveSettings:
    """What the app runs the live race with (its settings)."""

    rules: RaceRules
    interval_seconds: int | None
    starting_capital: Decimal
    universe: Sequence[str]


def record_live_settings(session: Session, live: LiveSettings, now: datetime) -> list[str]:
    """Fill what the live race has not recorded yet (its rules, interval, starting capital,
    universe) from the app's settings; recorded values are frozen and stay. The names of
    the fields filled."""
    race_id = ensure_live(session, now)
    row = session.get(RaceRow, race_id)
    assert row is not None
    values: dict[str, Any] = {
        "rules": live.rules.to_json(),
        "interval_seconds": live.interval_seconds,
        "starting_capital": live.starting_capital,
        "universe": list(live.universe),
    }
    filled = [key for key, value in values.items() if getattr(row, key) is None and value]
    for key in filled:
        setattr(row, key, values[key])
    return filled


def join(session: Session, race_id: int, agent_id: int) -> None:
    """``agent_id`` takes part in the race (no-op when it already does)."""
    if session.get(RaceParticipantRow, (race_id, agent_id)) is None:
        session.add(RaceParticipantRow(race_id=race_id, agent_id=agent_id))


def enter(
    session: Session, race_id: int, agent_id: int, starting_capital: Decimal, now: datetime
) -> None:
    """``agent_id`` joins the race with a portfolio (all cash) and empty stats there."""
    from race.store.agent_stats import empty_stats

    join(session, race_id, agent_id)
    session.add(
        PortfolioRow(
            race_id=race_id,
            agent_id=agent_id,
            cash=starting_capital,
            starting_capital=starting_capital,
            as_of=None,
            version=0,
            created_at=now,
        )
    )
    session.add(empty_stats(race_id, agent_id, starting_capital))


def participants(session: Session, race_id: int) -> list[int]:
    query = select(RaceParticipantRow.agent_id).where(RaceParticipantRow.race_id == race_id)
    return list(session.scalars(query.order_by(RaceParticipantRow.agent_id)))


def set_status(session: Session, race_id: int, status: str) -> None:
    session.execute(update(RaceRow).where(RaceRow.id == race_id).values(status=status))


@dataclass(frozen=True, slots=True)
class RaceCounts:
    participants: int
    decisions: int
    trades: int
    snapshots: int
    cycles: int


def counts(session: Session, race_id: int) -> RaceCounts:
    """How many participants, decisions, trades, snapshots and cycles the race has."""

    def count(table: Any) -> int:
        query = select(func.count()).select_from(table).where(table.race_id == race_id)
        return int(session.scalar(query) or 0)

    return RaceCounts(
        count(RaceParticipantRow),
        count(DecisionRow),
        count(TradeRow),
        count(EquitySnapshotRow),
        count(CycleRow),
    )


class LiveRaceProtected(ValueError):
    """The live race cannot be deleted."""


def delete_race(session: Session, race_id: int) -> None:
    """Everything of the race — trades, snapshots, decisions, positions, portfolios, stats,
    cycles, participants, its backfill jobs (keyed ``…:race=N``: a later race given the same
    id must not find them done) — and the race itself, in the caller's transaction. Refuses
    the live race (:class:`LiveRaceProtected`)."""
    row = session.get(RaceRow, race_id)
    if row is None:
        return
    if row.kind == RaceKind.LIVE.value:
        raise LiveRaceProtected(f"race {row.name!r} is the live race and cannot be deleted")
    portfolio_ids = select(PortfolioRow.id).where(PortfolioRow.race_id == race_id)
    session.execute(delete(TradeRow).where(TradeRow.race_id == race_id))
    session.execute(delete(EquitySnapshotRow).where(EquitySnapshotRow.race_id == race_id))
    session.execute(delete(DecisionRow).where(DecisionRow.race_id == race_id))
    session.execute(delete(PositionRow).where(PositionRow.portfolio_id.in_(portfolio_ids)))
    for table in (PortfolioRow, AgentStatsRow, CycleRow, RaceParticipantRow):
        session.execute(delete(table).where(table.race_id == race_id))
    session.execute(delete(JobRow).where(JobRow.key.endswith(f":race={race_id}")))
    session.execute(
        update(RaceRow).where(RaceRow.source_race_id == race_id).values(source_race_id=None)
    )
    session.execute(delete(RaceRow).where(RaceRow.id == race_id))
