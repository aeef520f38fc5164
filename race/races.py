"""Managing races (docs/races.md): the live race's recorded rules, listing, showing and
deleting races. The SQL lives in :mod:`race.store.races`."""

from __future__ import annotations

from dataclasses import dataclass

from race.clock import Clock
from race.domain.race import Race, RaceRules
from race.schedule import next_time
from race.settings import Settings
from race.store import races as race_rows
from race.store.database import Database


class RaceError(ValueError):
    """A race that cannot be found or acted on; the message says which and why."""


def live_settings(settings: Settings, clock: Clock) -> race_rows.LiveSettings:
    """What the app runs the live race with: its rules, the decision schedule's interval,
    the starting capital and the configured universe."""
    first = next_time(settings.decision_schedule, clock.now())
    interval = next_time(settings.decision_schedule, first) - first
    return race_rows.LiveSettings(
        rules=RaceRules.of(settings.costs, settings.limits),
        interval_seconds=int(interval.total_seconds()),
        starting_capital=settings.starting_capital,
        universe=[symbol for symbol, _ in settings.asset_universe],
    )


def record_live_race(db: Database, settings: Settings, clock: Clock) -> list[str]:
    """The live race exists and has recorded what it runs with (filled once, from these
    settings, where the migration left it empty; then frozen). The fields filled."""
    with db.write() as session:
        return race_rows.record_live_settings(session, live_settings(settings, clock), clock.now())


def find_race(db: Database, ref: str) -> Race:
    """A race by name (any case) or id; :class:`RaceError` naming it when there is none."""
    with db.read() as session:
        found = race_rows.find(session, ref)
    if found is None:
        raise RaceError(f"no race {ref!r} (see `python -m race races list`)")
    return found


def list_races(db: Database) -> list[Race]:
    with db.read() as session:
        return race_rows.all_races(session)


@dataclass(frozen=True)
class RaceSummary:
    race: Race
    counts: race_rows.RaceCounts
    participants: list[int]


def show_race(db: Database, ref: str) -> RaceSummary:
    race = find_race(db, ref)
    with db.read() as session:
        return RaceSummary(
            race, race_rows.counts(session, race.id), race_rows.participants(session, race.id)
        )


def delete_race(db: Database, ref: str) -> RaceSummary:
    """Delete the race and everything of it in one transaction (refused for the live race);
    what was deleted."""
    summary = show_race(db, ref)
    if summary.race.is_live:
        raise RaceError(f"race {summary.race.name!r} is the live race and cannot be deleted")
    with db.write() as session:
        race_rows.delete_race(session, summary.race.id)
    return summary
