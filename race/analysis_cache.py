"""The cache of :mod:`race.analysis`: each agent's analysis kept with the version of its
stored stats, each rank comparison with both agents' versions; what the leaderboard serves
without waiting, and the background refresh (see :mod:`race.analysis` for the costs).

The refresh computes in a worker process (:mod:`race.analysis_worker`): a thread of this
process only sends the job and caches the result, so the request threads keep the GIL while
a big race is analysed. The worker is started by the first refresh and stopped by
:meth:`Analyser.close` (which :meth:`race.bootstrap.App.close` runs for the API's analyser).
Where no process can be started, the refresh computes in that thread instead (logged once).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Hashable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from decimal import Decimal
from multiprocessing import get_context
from typing import Any

from sqlalchemy.orm import Session

from race.analysis import AgentAnalysis, _analyse, _Curve, benchmark_closes
from race.analysis_worker import (
    Job,
    RefreshFailed,
    Result,
    Source,
    compare_curves,
    quiet_worker,
    run,
)
from race.domain.contamination import cutoff_table, parse_cutoffs
from race.domain.significance import Comparison
from race.store.database import CONNECT_TIMEOUT_SECONDS, STATEMENT_TIMEOUT_SECONDS
from race.store.reads.standings import AgentRecord

log = logging.getLogger("race.analysis")

INLINE_SNAPSHOTS = 10_000
"""Stale work up to this many snapshots (in all) is computed within the leaderboard
request; more goes to a background refresh, so the request never waits for it."""


def version_of(record: AgentRecord) -> Hashable:
    """What changes whenever the agent's analysis would (its stored stats)."""
    s = record.stats
    if s is None:
        return (record.model, None)
    return (
        record.model,
        s.snapshot_count,
        s.last_captured_at,
        s.decisions,
        s.total_trades,
        s.current_value,
        s.cost_usd,
    )


class Analyser:
    """Per-agent analyses cached by :func:`version_of` (one entry per agent), and the
    paired comparison of each rank with the next, cached by both agents' versions."""

    def __init__(
        self,
        cutoffs: Sequence[str] | str = (),
        inline_snapshots: int = INLINE_SNAPSHOTS,
        *,
        connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS,
        statement_timeout_seconds: float = STATEMENT_TIMEOUT_SECONDS,
    ) -> None:
        self.cutoffs = cutoff_table(parse_cutoffs(cutoffs))
        self.inline_snapshots = inline_snapshots
        self.timeouts = (connect_timeout_seconds, statement_timeout_seconds)
        """The worker's database timeouts (connect, statement), as the app's."""
        self._entries: dict[int, tuple[Hashable, AgentAnalysis, _Curve]] = {}
        self._steps: dict[tuple[int, int], tuple[Hashable, Comparison]] = {}
        self._lock = threading.Lock()
        self._computing = threading.Lock()
        self._refreshing: threading.Thread | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False
        self.in_process = False
        """True once no worker process could be started: refreshes compute in a thread."""
        self.worker_pid: int | None = None
        """The process that computed the last refresh's result."""
        self.hits = 0
        self.misses = 0

    @classmethod
    def from_settings(cls, settings: Any) -> Analyser:
        return cls(
            settings.race_model_cutoffs,
            connect_timeout_seconds=settings.db_connect_timeout_seconds,
            statement_timeout_seconds=settings.db_statement_timeout_seconds,
        )

    def agent(self, session: Session, record: AgentRecord) -> AgentAnalysis:
        return self.agents(session, [record])[record.agent_id]

    def agents(self, session: Session, records: Sequence[AgentRecord]) -> dict[int, AgentAnalysis]:
        """Every record's analysis; the closes are read once for all agents that missed."""
        out: dict[int, AgentAnalysis] = {}
        stale: list[AgentRecord] = []
        with self._lock:
            for record in records:
                found = self._entries.get(record.agent_id)
                if found is not None and found[0] == version_of(record):
                    self.hits += 1
                    out[record.agent_id] = found[1]
                else:
                    stale.append(record)
        if not stale:
            return out
        # One computation at a time: concurrent requests after a change wait for the first
        # one's results instead of each recomputing the same agents.
        with self._computing:
            closes: dict[str, list[tuple[datetime, Decimal]]] | None = None
            for record in stale:
                with self._lock:
                    found = self._entries.get(record.agent_id)
                if found is not None and found[0] == version_of(record):
                    out[record.agent_id] = found[1]
                    continue
                if closes is None:
                    closes = benchmark_closes(session, stale)
                computed, compact = _analyse(session, record, self.cutoffs, closes)
                out[record.agent_id] = computed
                with self._lock:
                    self.misses += 1
                    self._entries[record.agent_id] = (version_of(record), computed, compact)
        return out

    def latest(
        self, ranked: Sequence[AgentRecord]
    ) -> tuple[dict[int, AgentAnalysis], dict[int, Comparison]]:
        """What is cached for these agents (in rank order), whatever its version: never
        computes. The leaderboard serves this and lets :meth:`refresh` catch up."""
        with self._lock:
            analyses = {
                r.agent_id: found[1]
                for r in ranked
                if (found := self._entries.get(r.agent_id)) is not None
            }
            steps = {
                upper.agent_id: found[1]
                for upper, lower in itertools.pairwise(ranked)
                if (found := self._steps.get((upper.agent_id, lower.agent_id))) is not None
            }
        return analyses, steps

    def stale(self, ranked: Sequence[AgentRecord]) -> bool:
        """Whether an agent's analysis or a rank comparison is missing or out of date."""
        with self._lock:
            for record in ranked:
                found = self._entries.get(record.agent_id)
                if found is None or found[0] != version_of(record):
                    return True
            for upper, lower in itertools.pairwise(ranked):
                step = self._steps.get((upper.agent_id, lower.agent_id))
                if step is None or step[0] != (version_of(upper), version_of(lower)):
                    return True
        return False

    def for_leaderboard(
        self, session: Session, db: Any, ranked: Sequence[AgentRecord]
    ) -> tuple[dict[int, AgentAnalysis], dict[int, Comparison]]:
        """The figures the leaderboard serves. Stale work of at most ``inline_snapshots``
        snapshots is done now; more is left to a background :meth:`refresh`, and what is
        cached (possibly a cycle old, or nothing yet) is served meanwhile."""
        if self.stale(ranked):
            if self.stale_snapshots(ranked) <= self.inline_snapshots:
                self.agents(session, ranked)
                self.rank_steps(ranked)
            else:
                self.refresh(db, ranked)
        return self.latest(ranked)

    def stale_snapshots(self, ranked: Sequence[AgentRecord]) -> int:
        """Snapshots to read or compare to bring everything up to date: each out-of-date
        agent's curve, and both curves of each out-of-date rank comparison (a paired
        bootstrap over both: as costly as analysing them)."""

        def count(record: AgentRecord) -> int:
            return record.stats.snapshot_count if record.stats is not None else 0

        with self._lock:
            agents = sum(
                count(r)
                for r in ranked
                if (found := self._entries.get(r.agent_id)) is None or found[0] != version_of(r)
            )
            steps = sum(
                count(upper) + count(lower)
                for upper, lower in itertools.pairwise(ranked)
                if (step := self._steps.get((upper.agent_id, lower.agent_id))) is None
                or step[0] != (version_of(upper), version_of(lower))
            )
        return agents + steps

    def refresh(self, db: Any, ranked: Sequence[AgentRecord]) -> bool:
        """Bring the cache up to date in the background (one refresh at a time), reading
        through ``db``'s database; True when a refresh was started. A failure is logged and
        leaves the cache as it was: the next stale request tries again."""
        if not self.stale(ranked):
            return False
        with self._lock:
            if self._closed or (self._refreshing is not None and self._refreshing.is_alive()):
                return False
            worker = threading.Thread(
                target=self._refresh, args=(db, list(ranked)), name="race-analysis", daemon=True
            )
            self._refreshing = worker
        worker.start()
        return True

    def _refresh(self, db: Any, ranked: list[AgentRecord]) -> None:
        try:
            future = None if self.in_process else self._submit(self._job(db, ranked))
            if future is None:
                self._refresh_here(db, ranked)
                return
            result = future.result()
        except Exception as exc:  # the next request tries again; the leaderboard never fails
            self._failed(exc)
            return
        self._store(ranked, result)

    def _refresh_here(self, db: Any, ranked: list[AgentRecord]) -> None:
        with db.read() as session:
            self.agents(session, ranked)
        self.rank_steps(ranked)

    def _job(self, db: Any, ranked: Sequence[AgentRecord]) -> Job:
        """What is out of date: the agents to analyse, the pairs to compare, and the cached
        curves of the up-to-date agents those pairs need."""
        with self._lock:
            analyse = [
                r
                for r in ranked
                if (found := self._entries.get(r.agent_id)) is None or found[0] != version_of(r)
            ]
            pairs = [
                (upper.agent_id, lower.agent_id)
                for upper, lower in itertools.pairwise(ranked)
                if (step := self._steps.get((upper.agent_id, lower.agent_id))) is None
                or step[0] != (version_of(upper), version_of(lower))
            ]
            fresh = {r.agent_id for r in ranked} - {r.agent_id for r in analyse}
            curves = {
                agent: self._entries[agent][2] for pair in pairs for agent in pair if agent in fresh
            }
        return Job(Source.of(db, *self.timeouts), dict(self.cutoffs), analyse, pairs, curves)

    def _submit(self, job: Job) -> Future[Result] | None:
        """The job sent to the worker process (started if need be); None when no process
        can be started here (the caller computes in its thread, as will later refreshes)."""
        pool = self._worker()
        try:
            try:
                return pool.submit(run, job)
            except BrokenProcessPool:  # the worker died since the last refresh: a new one
                self._drop(pool)
                pool = self._worker()
                return pool.submit(run, job)
        except (OSError, NotImplementedError) as exc:
            log.warning("analytics computed in this process: no worker process (%s)", exc)
            self.in_process = True
            self._drop(pool)
            return None

    def _worker(self) -> ProcessPoolExecutor:
        """The pool of the one worker process (which starts with the first job)."""
        with self._lock:
            if self._closed:
                raise RefreshFailed("the analyser is closed")
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=get_context("spawn"), initializer=quiet_worker
                )
            return self._pool

    def _drop(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def _failed(self, exc: Exception) -> None:
        pool = self._pool
        if isinstance(exc, BrokenProcessPool) and pool is not None:  # the worker died
            self._drop(pool)  # the next refresh starts a new one
        if self._closed:
            log.info("analytics refresh abandoned: the analyser is closed")
            return
        log.warning("analytics refresh failed (the leaderboard serves what is cached): %s", exc)
        log.debug("analytics refresh failure", exc_info=exc)

    def _store(self, ranked: Sequence[AgentRecord], result: Result) -> None:
        """Cache a worker's result under the versions of the records it was computed for."""
        by_id = {r.agent_id: r for r in ranked}
        with self._lock:
            self.worker_pid = result.pid
            for agent, (analysis, curve) in result.analyses.items():
                self.misses += 1
                self._entries[agent] = (version_of(by_id[agent]), analysis, curve)
            for (upper, lower), step in result.steps.items():
                version = (version_of(by_id[upper]), version_of(by_id[lower]))
                self._steps[(upper, lower)] = (version, step)

    def join(self, timeout: float | None = None) -> None:
        """Wait for a running refresh (tests, shutdown)."""
        worker = self._refreshing
        if worker is not None:
            worker.join(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the worker process (a refresh under way is abandoned: nothing is written)
        and wait for the refresh thread; no refresh starts afterwards."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            _stop(pool, timeout)
        self.join(timeout)

    def rank_steps(self, ranked: Sequence[AgentRecord]) -> dict[int, Comparison]:
        """For agents in rank order (analysed first, by :meth:`agents`), each one's paired
        comparison with the next rank down (:func:`race.domain.significance.compare`, the
        same seed): by the upper agent's id; the last rank has none."""
        out: dict[int, Comparison] = {}
        for upper, lower in itertools.pairwise(ranked):
            key = (upper.agent_id, lower.agent_id)
            version = (version_of(upper), version_of(lower))
            with self._lock:
                found = self._steps.get(key)
                a = self._entries.get(upper.agent_id)
                b = self._entries.get(lower.agent_id)
            if found is not None and found[0] == version:
                out[upper.agent_id] = found[1]
                continue
            if a is None or b is None:
                continue
            step = compare_curves(a[2], b[2])
            with self._lock:
                self._steps[key] = (version, step)
            out[upper.agent_id] = step
        return out


def _stop(pool: ProcessPoolExecutor, timeout: float) -> None:
    """Shut ``pool`` down without waiting for a job under way: its worker is terminated
    (it only reads), then the pool's thread and process are joined. Python 3.11 has no
    public way to stop a busy worker (3.14's ``terminate_workers``), hence ``_processes``."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)
    for process in processes:
        process.join(timeout)
