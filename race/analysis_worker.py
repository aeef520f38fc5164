"""The background refresh of :class:`race.analysis_cache.Analyser`, run in another process.

Analysing a big race (reading 1.3 M snapshots, bootstrapping each curve and each pair of
neighbouring ranks) is seconds of pure-Python and numpy work; in a thread of the API process
it holds the GIL the request threads need, so every answer slows while it runs. Here it runs
in one worker process (``spawn``, at a lower CPU priority, created on the first refresh,
shut down by :meth:`Analyser.close <race.analysis_cache.Analyser.close>`): the parent sends
a :class:`Job` — how to read the database (:class:`Source`), the cut-off table, the records of
the agents to analyse, the pairs of ranks to compare and the cached curves those pairs need
— and gets back a :class:`Result` it caches exactly as the in-process computation would.
The same functions compute both (:func:`race.analysis._analyse`, :func:`compare_curves`),
with the same seeds, so the figures are identical.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from race.analysis import AgentAnalysis, _analyse, _Curve, benchmark_closes
from race.domain.significance import Comparison, compare
from race.store.reads.standings import AgentRecord

__all__ = ["Job", "RefreshFailed", "Result", "Source", "compare_curves", "quiet_worker", "run"]


class RefreshFailed(Exception):
    """Why a refresh failed, as one line without the database password (what the worker
    sends back: a plain message survives pickling whatever the driver's exception holds)."""


@dataclass(frozen=True)
class Source:
    """How the worker opens the database the parent reads (a URL with its password: sent
    through the worker's pipe, never on a command line)."""

    url: str
    connect_timeout_seconds: float
    statement_timeout_seconds: float

    @classmethod
    def of(cls, db: Any, connect_timeout: float, statement_timeout: float) -> Source:
        """The source of ``db`` (a :class:`race.store.database.Database`)."""
        return cls(db.url.render_as_string(hide_password=False), connect_timeout, statement_timeout)


@dataclass(frozen=True)
class Job:
    source: Source
    cutoffs: dict[str, date]
    analyse: list[AgentRecord]
    """The agents to analyse (their cached analysis is missing or out of date)."""
    pairs: list[tuple[int, int]]
    """Rank comparisons to compute: (upper agent id, lower agent id)."""
    curves: dict[int, _Curve] = field(default_factory=dict)
    """The cached curves of the agents a pair needs that are not analysed here."""


@dataclass(frozen=True)
class Result:
    pid: int
    """The process that computed it."""
    analyses: dict[int, tuple[AgentAnalysis, _Curve]]
    steps: dict[tuple[int, int], Comparison]


def compare_curves(upper: _Curve, lower: _Curve) -> Comparison:
    """The paired comparison of two ranks (:func:`race.domain.significance.compare`)."""
    return compare(upper.points(), lower.points(), origin_a=upper.origin, origin_b=lower.origin)


WORKER_NICENESS = 10
"""How much lower the worker's CPU priority is than the API's: where cores are few, the
requests go first and the analytics take what is left (they are never waited for)."""


def quiet_worker() -> None:
    """The worker's initializer: Ctrl-C in a terminal reaches the whole process group, but
    the parent alone decides when the worker stops (no traceback from the worker); and the
    worker yields the CPU to the API (:data:`WORKER_NICENESS`, where the OS has priorities)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(AttributeError, OSError):  # no os.nice on Windows
        os.nice(WORKER_NICENESS)


def run(job: Job) -> Result:
    """Compute ``job`` (in the worker process). Any failure comes back as
    :class:`RefreshFailed` naming the cause (the database's own message, scrubbed)."""
    from race.store.database import Database, DatabaseError

    db: Database | None = None
    try:
        db = Database(
            job.source.url,
            connect_timeout_seconds=job.source.connect_timeout_seconds,
            statement_timeout_seconds=job.source.statement_timeout_seconds,
        )
        return _compute(db, job)
    except DatabaseError as exc:
        raise RefreshFailed(str(exc)) from None
    except Exception as exc:
        if db is not None and _is_database_error(exc):
            raise RefreshFailed(str(db.unavailable(exc))) from None
        raise RefreshFailed(f"{exc.__class__.__name__}: {exc}") from exc
    finally:
        if db is not None:
            db.dispose()


def _is_database_error(exc: BaseException) -> bool:
    from sqlalchemy.exc import SQLAlchemyError

    return isinstance(exc, SQLAlchemyError)


def _compute(db: Any, job: Job) -> Result:
    analyses: dict[int, tuple[AgentAnalysis, _Curve]] = {}
    if job.analyse:
        with db.read() as session:
            closes = benchmark_closes(session, job.analyse)
            for record in job.analyse:
                analyses[record.agent_id] = _analyse(session, record, job.cutoffs, closes)
    curves = {**job.curves, **{agent: found[1] for agent, found in analyses.items()}}
    steps = {
        (upper, lower): compare_curves(curves[upper], curves[lower])
        for upper, lower in job.pairs
        if upper in curves and lower in curves
    }
    return Result(pid=os.getpid(), analyses=analyses, steps=steps)
