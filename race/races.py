"""Managing races (docs/races.md): the live race's recorded rules, listing, showing and
deleting races. The SQL lives in :mod:`race.store.races`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from race.clock import Clock
from race.domain.race import Race, RaceRules
from race.schedule import next_time
from race.settings import Settings
from race.store import races as race_rows
from race.store.database import Database

if TYPE_CHECKING:
    from race.bootstrap import App
    from race.engine import RaceEngine


log = logging.getLogger("race.races")


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
    settings, where the migration left it empty; then frozen). The fields filled. Recorded
    rules that differ from the settings are logged: the live race keeps running by the
    settings (as it always has), and its recorded rules say what it started with."""
    live = live_settings(settings, clock)
    with db.write() as session:
        filled = race_rows.record_live_settings(session, live, clock.now())
        race = race_rows.get(session, race_rows.ensure_live(session, clock.now()))
    if race is not None and race.rules is not None and race.rules != live.rules:
        changed = sorted(
            key for key, value in live.rules.to_json().items() if race.rules.to_json()[key] != value
        )
        log.warning(
            "the live race recorded other rules than the settings now give (%s): it runs by "
            "the settings; `python -m race races show live` shows what it started with",
            ", ".join(changed),
        )
    return filled


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


def race_settings(settings: Settings, race: Race) -> Settings:
    """``settings`` with the race's frozen rules and starting capital in place."""
    update: dict[str, object] = {}
    if race.rules is not None:
        update.update(race.rules.to_settings())
    if race.starting_capital is not None:
        update["starting_capital"] = race.starting_capital
    return settings.model_copy(update=update)


def engine_for(app: App, race: Race) -> RaceEngine:
    """The engine of ``race``: its cycles, backfills and marks write that race's rows, judged
    by its rules (the live race: the app's own engine)."""
    if race.is_live:
        return app.engine
    from race.engine import RaceEngine

    assert app.build_agent is not None
    return RaceEngine(
        app.db,
        race_settings(app.settings, race),
        app.build_agent,
        clock=app.clock,
        telemetry=app.telemetry,
        race_id=race.id,
    )


def create_race(
    db: Database, new: race_rows.NewRace, agent_ids: Sequence[int], clock: Clock
) -> Race:
    """A new race with ``agent_ids`` as its participants, each with a portfolio of the
    race's starting capital; one transaction. :class:`RaceError` when the name is taken."""
    if new.starting_capital is None:
        raise RaceError("a new race needs its starting capital")
    now = clock.now()
    taken = RaceError(f"a race named {new.name!r} already exists")
    try:
        with db.write() as session:
            if race_rows.by_name(session, new.name) is not None:
                raise taken
            race_id = race_rows.insert(session, new, now)
            for agent_id in agent_ids:
                race_rows.enter(session, race_id, agent_id, new.starting_capital, now)
    except IntegrityError:
        # Another writer took the name between the check and the insert (PostgreSQL's
        # transactions overlap; SQLite's write lock serialises them): the same answer.
        with db.read() as session:
            if race_rows.by_name(session, new.name) is not None:
                raise taken from None
        raise
    with db.read() as session:
        created = race_rows.get(session, race_id)
    assert created is not None
    return created
