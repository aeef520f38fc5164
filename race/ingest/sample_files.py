"""Which bundled files are already loaded: each load is recorded in a ``jobs`` row of kind
``sample`` (the file's SHA-256, the settings the candles depend on, how many it stored); a
later run skips a file whose fingerprint is unchanged and whose candles are all still
stored, so re-running the demo does not read 120,000 rows again."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from market.sample import SampleFile
from market.validation import CandleBatch
from race.bootstrap import App
from race.domain import jobs as status
from race.domain.timeutil import format_interval, iso
from race.ingest.common import AssetRef, IngestRequest, log
from race.ingest.report import AssetReport
from race.store import candles as store
from race.store import jobs as job_rows

SAMPLE_JOB = "sample"
"""The ``jobs.kind`` of a loaded bundled file."""


@dataclass(frozen=True)
class Fingerprint:
    """The ``jobs`` key of loading a file for an asset over [start, end] at an interval, and
    everything the candles stored depend on: the file's content, the asset row, the time it
    is read at (a clock before the file was written stores fewer candles) and the
    validation limits."""

    key: str
    params: dict[str, Any]

    @classmethod
    def of(cls, app: App, asset: AssetRef, file: SampleFile, request: IngestRequest) -> Fingerprint:
        start, end, interval = request.start, request.end, request.interval
        key = (
            f"sample:{asset.symbol}:{file.name}:{format_interval(interval)}:"
            f"{iso(start) or '-'}:{iso(end) or '-'}"
        )
        params = {
            "file": file.name,
            "sha256": _sha256(file),
            "symbol": asset.symbol,
            "assetId": asset.id,
            "interval": format_interval(interval),
            "start": iso(start),
            "end": iso(end),
            "asOf": iso(min(app.clock.now(), file.fetched_at)),
            "maxMove": str(request.limits.max_move),
            "maxRange": str(request.limits.max_range),
        }
        return cls(key, params)


def _sha256(file: SampleFile) -> str:
    digest = hashlib.sha256()
    with file.path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stored_from(session: Session, asset: AssetRef, file: SampleFile, first: Any, last: Any) -> int:
    """Candles of ``asset`` stored from ``file``'s format between two ISO close times."""
    if first is None or last is None:
        return 0
    return store.count_from_source(
        session,
        asset.id,
        file.source,
        datetime.fromisoformat(first),
        datetime.fromisoformat(last),
    )


def skip_unchanged(
    app: App, asset: AssetRef, file: SampleFile, fingerprint: Fingerprint, result: AssetReport
) -> bool:
    """True (and the report told) when ``file`` was loaded before with the same fingerprint
    and the candles stored from it then are all still there: reading it again would change
    nothing. Anything else (a new file, other settings, candles deleted since) loads it."""
    params = fingerprint.params
    with app.db.read() as session:
        row = job_rows.by_key(session, fingerprint.key)
        if row is None or row.status != status.COMPLETED or not isinstance(row.params, dict):
            return False
        recorded = row.params
        if any(recorded.get(name) != value for name, value in params.items()):
            return False
        first, last = recorded.get("firstClose"), recorded.get("lastClose")
        if _stored_from(session, asset, file, first, last) != recorded.get("stored"):
            return False
        loaded_at = row.updated_at
    candles = int(recorded.get("candles") or 0)
    result.skipped += candles
    if first is not None and last is not None:
        result.cover(datetime.fromisoformat(first), datetime.fromisoformat(last))
    result.notes.append(
        f"{file.name} unchanged since it was loaded {iso(loaded_at)} "
        f"(sha256 {params['sha256'][:12]}…): {candles:,} candles not read again"
    )
    log.info(
        "%s: %s unchanged since it was loaded: skipped",
        asset.symbol,
        file.name,
        extra={"asset": asset.symbol},
    )
    return True


def record_file(
    app: App, asset: AssetRef, file: SampleFile, fingerprint: Fingerprint, batch: CandleBatch
) -> None:
    """Remember that ``file`` is loaded (its fingerprint and what it stored), so the next run
    can skip it. Losing this row only costs a re-read: a failure is logged, not raised."""
    first = iso(batch.candles[0].close_time) if batch.candles else None
    last = iso(batch.candles[-1].close_time) if batch.candles else None
    now = app.clock.now()
    try:
        with app.db.write() as session:
            values = {
                **fingerprint.params,
                "firstClose": first,
                "lastClose": last,
                "candles": len(batch.candles),
                "stored": _stored_from(session, asset, file, first, last),
            }
            job = job_rows.NewJob(
                kind=SAMPLE_JOB,
                key=fingerprint.key,
                params=values,
                status=status.COMPLETED,
                cursor=batch.candles[-1].close_time if batch.candles else None,
                total=file.rows,
                done=file.rows,
            )
            job_rows.put_finished(session, job, now)
    except IntegrityError:
        log.debug("%s: another run recorded %s first", asset.symbol, file.name)
    except Exception:
        log.warning("%s: could not record %s as loaded", asset.symbol, file.name, exc_info=True)
