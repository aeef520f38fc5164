"""The store step both sources share: checking a batch against the stored history, writing
its new candles (``unchanged`` and ``conflict`` counted, never an overwrite), and reading
back what a run covered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from market.plausibility import HistoryLimits, check_history
from market.validation import CandleBatch, missing_between
from race.bootstrap import App
from race.domain.model import Candle
from race.domain.timeutil import iso
from race.ingest.common import AssetRef, log
from race.ingest.report import AssetReport
from race.store import candles as store

_CONFLICTS_LOGGED = 20

AlsoInTransaction = Callable[[Session], None]
"""More work committed with a batch's candles (e.g. a job's cursor)."""


@dataclass(frozen=True)
class Destination:
    """Where and how a batch's candles are stored."""

    asset: AssetRef
    interval: timedelta
    source: str
    """The ``candles.source`` of the rows (e.g. ``coingecko:ohlc``)."""


def store_batch(
    app: App,
    to: Destination,
    batch: CandleBatch,
    report: AssetReport,
    also: AlsoInTransaction | None = None,
) -> None:
    """Write ``batch`` in one transaction (with ``also``, e.g. a job cursor). The report's
    counts change only if the transaction commits."""
    before = (report.inserted, report.unchanged, report.conflicts)
    try:
        with app.db.write() as session:
            if batch.candles:
                _write(session, to, batch.candles, report)
            if also is not None:
                also(session)
    except BaseException:
        report.inserted, report.unchanged, report.conflicts = before
        raise


def _write(session: Session, to: Destination, candles: list[Candle], report: AssetReport) -> None:
    asset = to.asset
    stored = store.stored_values(session, asset.id, candles[0].close_time, candles[-1].close_time)
    fresh: list[Candle] = []
    for candle in candles:
        old = stored.get(candle.close_time)
        if old is None:
            fresh.append(candle)
        elif old == store.values_of(candle):
            report.unchanged += 1
        else:
            _conflict(report, candle, old, to.source)
    inserted = store.insert_new(session, _rows(to, fresh))
    if inserted is None:
        report.inserted += len(fresh)
        return
    report.inserted += len(inserted)
    raced = [c for c in fresh if c.close_time not in inserted]
    if raced:
        # Another writer stored these between our read and our insert.
        now_stored = store.values_at(session, asset.id, [c.close_time for c in raced])
        for candle in raced:
            old = now_stored.get(candle.close_time)
            if old is None or old == store.values_of(candle):
                report.unchanged += 1
            else:
                _conflict(report, candle, old, to.source)


def _rows(to: Destination, candles: list[Candle]) -> list[dict[str, object]]:
    seconds = int(to.interval.total_seconds())
    return [
        {
            "asset_id": to.asset.id,
            "close_time": c.close_time,
            "open": c.open,
            "high": c.high,
            "low": c.low,
            "close": c.close,
            "volume": c.volume,
            "quote_volume_24h": c.quote_volume_24h,
            "interval_seconds": seconds,
            "source": to.source,
        }
        for c in candles
    ]


def _conflict(report: AssetReport, candle: Candle, old: store.Values, source: str) -> None:
    report.conflicts += 1
    if report.conflicts <= _CONFLICTS_LOGGED:
        log.warning(
            "%s: candle closing %s is already stored with other values; kept the stored one "
            "(stored o/h/l/c/volume/24h quote volume %s, %s says %s)",
            report.symbol,
            candle.close_time.isoformat(),
            "/".join(str(v) for v in old),
            source,
            "/".join(str(v) for v in store.values_of(candle)),
            extra={"asset": report.symbol},
        )
    elif report.conflicts == _CONFLICTS_LOGGED + 1:
        log.warning(
            "%s: more conflicts with stored candles; only counting from here",
            report.symbol,
            extra={"asset": report.symbol},
        )


def reference(
    app: App, asset: AssetRef, first_close: datetime, interval: timedelta
) -> Candle | None:
    """The stored candle just before ``first_close`` (validation's starting point)."""
    with app.db.read() as session:
        return store.candle_at(session, asset.id, asset.symbol, first_close - interval)


def check_against_history(
    app: App, asset: AssetRef, batch: CandleBatch, interval: timedelta, limits: HistoryLimits
) -> None:
    """Reject (never store) the batch's candles that are implausible against the stored
    closes before them (:mod:`market.plausibility`); counted with their reasons."""
    if not batch.candles:
        return
    first, last = batch.candles[0].close_time, batch.candles[-1].close_time
    with app.db.read() as session:
        history = store.closes_for_history(
            session, asset.id, first - limits.lookback(interval), last
        )
    batch.candles, rejections = check_history(batch.candles, history, interval, limits)
    batch.rejections.extend(rejections)


def finish_asset(app: App, asset: AssetRef, report: AssetReport, interval: timedelta) -> None:
    """Read back the gaps in the window the run covered and the newest stored close; log
    them and record the run's telemetry."""
    with app.db.read() as session:
        if report.first_close is not None and report.last_close is not None:
            times = store.close_times(session, asset.id, report.first_close, report.last_close)
            report.gaps = missing_between(times, report.first_close, report.last_close, interval)
        report.latest_close_time = store.latest_close(session, asset.id)
    if report.gaps:
        log.info(
            "%s: %d gap(s), %d missing candle(s) between %s and %s",
            asset.symbol,
            len(report.gaps),
            report.missing,
            iso(report.first_close),
            iso(report.last_close),
            extra={"asset": asset.symbol},
        )
    if report.conflicts > _CONFLICTS_LOGGED:
        log.warning(
            "%s: %d conflicts in all (stored candles kept)",
            asset.symbol,
            report.conflicts,
            extra={"asset": asset.symbol},
        )
    app.telemetry.record_ingest(
        asset=asset.symbol,
        source=report.source.split(" ", 1)[0],
        inserted=report.inserted,
        rejected=dict(report.rejected),
    )
