"""What every router reads through: the app's object graph, a bounded read session (503
when the database is unreachable), the curve cache; and the parameters the routes share
(agent ids, request times)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from race.analysis_cache import Analyser
from race.api._cache import VersionedCache
from race.api._requests import ApiError
from race.bootstrap import App
from race.domain.timeutil import parse_iso
from race.jobs import LocalJobRunner
from race.store import races
from race.store.database import DatabaseError

log = logging.getLogger("race.api")


@dataclass
class ApiContext:
    app: App
    runner: LocalJobRunner
    curves: VersionedCache
    read_timeout: float | None
    analyser: Analyser = field(default_factory=Analyser)
    """Per-agent analytics, cached by the agent's stored stats (:mod:`race.analysis`)."""
    degraded: list[bool] = field(default_factory=lambda: [False])
    """Whether the last health probe was degraded (health logs the change, not each probe)."""
    race_analysers: dict[int, Analyser] = field(default_factory=dict)
    """The analytics caches of races other than the live one (asked with ``?race=``)."""

    def analyser_for(self, race_id: int | None) -> Analyser:
        """The analytics cache of the race (None: the live race, :attr:`analyser`)."""
        if race_id is None:
            return self.analyser
        found = self.race_analysers.get(race_id)
        if found is None:
            found = self.race_analysers[race_id] = Analyser.from_settings(self.app.settings)
        return found

    def unavailable(self, exc: BaseException) -> ApiError:
        """503 naming the setting only (the body is anonymous); the details are logged."""
        error = self.app.db.unavailable(exc)
        log.warning("database unavailable: %s", error)
        return ApiError(503, error.public)

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read session bounded by ``RACE_DB_READ_TIMEOUT_SECONDS``; 503 when unreachable."""
        try:
            with self.app.db.bounded(self.read_timeout), self.app.db.read() as session:
                yield session
        except (OperationalError, DatabaseError) as exc:
            raise self.unavailable(exc) from None


async def _context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


Context = Annotated[ApiContext, Depends(_context)]
"""The :class:`ApiContext` of the app serving the request."""


async def _raw_body(request: Request) -> bytes:
    return await request.body()


RawBody = Annotated[bytes, Depends(_raw_body)]
"""The request body as sent, for a handler that parses it itself."""

ID_PATTERN = r"^[1-9][0-9]{0,17}$"
AgentId = Annotated[
    str, Path(description="agent id (a positive integer)", max_length=40, pattern=ID_PATTERN)
]


RaceParam = Annotated[
    str | None,
    Query(
        alias="race",
        max_length=40,
        pattern=ID_PATTERN,
        description="race id (a positive integer, see /api/races); default: the live race",
    ),
]


def race_key(session: Session, raw: str | None) -> int | None:
    """The race a read is about: None (the live race) when not asked; 400 when malformed,
    404 when no such race exists."""
    if raw is None:
        return None
    text = raw.strip()
    if not text.isdigit() or len(text) > 18 or int(text) <= 0:
        raise ApiError(400, f"race must be a positive integer id, got {raw[:40]!r}")
    found = races.get(session, int(text))
    if found is None:
        raise ApiError(404, f"no race {int(text)}")
    return None if found.is_live else found.id


def agent_key(raw: str) -> int:
    """The agent id of a path, or 400."""
    text = raw.strip()
    if not text.isdigit() or len(text) > 18 or int(text) <= 0:
        raise ApiError(400, f"agent id must be a positive integer, got {raw[:40]!r}")
    return int(text)


def request_time(raw: datetime | str | None, name: str) -> datetime | None:
    """A request time as aware UTC; :class:`ApiError` 400 naming ``name`` when it is not
    one or lies beyond what ``datetime`` holds once in UTC."""
    if raw is None:
        return None
    try:
        if isinstance(raw, datetime):
            return raw.replace(tzinfo=UTC) if raw.tzinfo is None else raw.astimezone(UTC)
        if len(raw) > 6 and raw[-6] == " " and raw[-3] == ":":  # "+00:00" sent unencoded
            raw = f"{raw[:-6]}+{raw[-5:]}"
        return parse_iso(raw, field=name)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ApiError(400, f"{name} {str(raw)[:64]!r} is out of range") from None
