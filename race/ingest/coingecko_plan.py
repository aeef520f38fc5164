"""What a CoinGecko run fetches for one asset (:class:`AssetWork`): live, everything since
the last stored candle; as a backfill, a range tracked in a ``jobs`` row of kind
``ingest`` whose cursor advances with each chunk, so an interrupted run resumes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from market.coingecko import CoinGeckoConfig, FetchPlan, ceil_time, plan_fetch
from race.bootstrap import App
from race.domain import jobs as status
from race.domain.timeutil import floor_time, format_interval, iso
from race.ingest.common import AssetRef, IngestRequest, log
from race.ingest.storing import AlsoInTransaction
from race.store import candles as store
from race.store import jobs as job_rows

INGEST_JOB = "ingest"
"""The ``jobs.kind`` of a CoinGecko backfill."""


@dataclass(frozen=True)
class CoinGeckoRun:
    """One CoinGecko run's parameters: the request, the client configuration, and the time
    the run plans from."""

    request: IngestRequest
    config: CoinGeckoConfig
    now: datetime

    @property
    def settled(self) -> datetime:
        """The newest close that counts as closed: CoinGecko's answer for a candle that
        closed less than ``COINGECKO_SETTLE_SECONDS`` ago may still be built from a cached,
        earlier view."""
        return self.now - self.config.settle


@dataclass(frozen=True)
class AssetWork:
    asset: AssetRef
    plan: FetchPlan
    job_id: int | None = None
    requested_last: datetime | None = None


def plan_asset(app: App, run: CoinGeckoRun, asset: AssetRef) -> AssetWork:
    if run.request.start is None:
        return _plan_live(app, run, asset)
    return _plan_backfill(app, run, asset, run.request.start)


def _plan_live(app: App, run: CoinGeckoRun, asset: AssetRef) -> AssetWork:
    interval, now = run.request.interval, run.now
    with app.db.read() as session:
        latest = store.latest_close(session, asset.id)
    earliest = floor_time(now - app.settings.ingest_lookback, interval)
    first = latest + interval if latest is not None else earliest
    notes = []
    if first < earliest:
        notes.append(
            f"last stored candle {iso(latest)} is older than RACE_INGEST_LOOKBACK "
            f"({format_interval(app.settings.ingest_lookback)}): fetching from "
            f"{iso(earliest)}; fill the hole with `python -m race ingest --start "
            f"{iso(latest)}`"
        )
        first = earliest
    last_closed = floor_time(run.settled, interval)
    plan = plan_fetch(
        run.config, first_close=first, last_close=last_closed, interval=interval, now=now, live=True
    )
    plan.notes[:0] = notes
    return AssetWork(asset, plan)


def _plan_backfill(app: App, run: CoinGeckoRun, asset: AssetRef, start: datetime) -> AssetWork:
    interval, end, settled = run.request.interval, run.request.end, run.settled
    first = ceil_time(start, interval)
    last = (
        floor_time(min(end, settled), interval)
        if end is not None
        else floor_time(settled, interval)
    )
    requested_last = floor_time(end, interval) if end is not None else None
    job_id, cursor = _job(app, run, asset, first, requested_last)
    resume_from = max(first, cursor + interval) if cursor is not None else first
    plan = plan_fetch(
        run.config,
        first_close=resume_from,
        last_close=last,
        interval=interval,
        now=run.now,
        live=False,
    )
    if cursor is not None:
        plan.notes.insert(0, f"resumed job {job_id} after {iso(cursor)}")
    if end is not None and end > settled:
        plan.notes.append(
            f"end {iso(end)} is later than the last settled close (now − "
            f"COINGECKO_SETTLE_SECONDS): fetched up to {iso(last)}"
        )
    with app.db.write() as session:
        job_rows.plan_steps(session, job_id, len(plan.steps), run.now)
    return AssetWork(asset, plan, job_id, requested_last)


def _job(
    app: App, run: CoinGeckoRun, asset: AssetRef, first: datetime, last: datetime | None
) -> tuple[int, datetime | None]:
    """The job of this exact backfill (created on first use) and its cursor: the last
    close time up to which every chunk is stored."""
    interval = format_interval(run.request.interval)
    key = (
        f"ingest:coingecko:{asset.symbol}:{first.isoformat()}:"
        f"{last.isoformat() if last else 'now'}:{interval}"
    )
    new = job_rows.NewJob(
        kind=INGEST_JOB,
        key=key,
        params={
            "source": "coingecko",
            "symbol": asset.symbol,
            "start": first.isoformat(),
            "end": last.isoformat() if last else None,
            "interval": interval,
        },
        status=status.RUNNING,
    )
    for _ in range(2):
        try:
            with app.db.write() as session:
                row = job_rows.by_key(session, key) or job_rows.add(session, new, run.now)
                return row.id, row.cursor
        except IntegrityError:
            continue
    raise RuntimeError(f"could not create or find job {key}")


def job_advance(app: App, item: AssetWork, cursor: datetime, last_step: bool) -> AlsoInTransaction:
    """The job's step, committed with the chunk's candles: its cursor moves to ``cursor``."""
    job_id = item.job_id
    assert job_id is not None

    def advance(session: Session) -> None:
        job_rows.advance(
            session,
            job_id,
            cursor,
            last_step=last_step,
            end=item.requested_last,
            now=app.clock.now(),
        )

    return advance


def update_job(app: App, job_id: int | None, new_status: str, error: str | None) -> None:
    if job_id is None:
        return
    with app.db.write() as session:
        job_rows.set_status(session, job_id, new_status, error, app.clock.now())


def update_job_quietly(app: App, job_id: int | None, new_status: str, error: str | None) -> None:
    """:func:`update_job` on a failure path: a store that is failing too is logged, not
    raised (the asset's report already says what went wrong)."""
    try:
        update_job(app, job_id, new_status, error)
    except Exception:
        log.exception("could not mark job %s as %s", job_id, new_status)
