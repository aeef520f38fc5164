"""Ingestion of the bundled real candles (``market/data``), file by file; a file loaded
before and unchanged since is skipped (:mod:`race.ingest.sample_files`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from market.aggregate import batch_at_interval
from market.coingecko import ceil_time
from market.sample import SAMPLE_INTERVAL, SampleFile, read_sample, sample_files, sample_symbols
from market.validation import CandleBatch, log_batch
from race.bootstrap import App
from race.domain.timeutil import floor_time, format_interval
from race.ingest.common import (
    AssetRef,
    IngestRequest,
    Progress,
    ProgressCallback,
    asset_failed,
    log,
    log_run,
    select_assets,
)
from race.ingest.report import AssetReport, IngestReport
from race.ingest.sample_files import Fingerprint, record_file, skip_unchanged
from race.ingest.storing import Destination, check_against_history, finish_asset, store_batch
from race.ingest.storing import reference as reference_candle
from race.logging_setup import log_context, new_correlation_id


@contextmanager
def _bulk_load() -> Iterator[None]:
    """Pause the cyclic garbage collector during a bulk load: hundreds of thousands of small
    objects and no reference cycles, so its passes are pure overhead (~20 % of the time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def ingest_sample(
    app: App,
    *,
    symbols: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    on_progress: ProgressCallback | None = None,
) -> IngestReport:
    """Load the bundled real candles (``market/data``) of the enabled assets (or
    ``symbols``) whose close time is in [start, end], through the same validation as live
    data. Newer files load first, so where exports overlap their values stand and the older
    rows count as unchanged or as conflicts. Idempotent: a second run inserts nothing. An
    asset whose candles cannot be stored is reported with its error; the others still load."""
    with log_context(correlation_id=new_correlation_id()):
        request = IngestRequest.of(app.settings, start, end)
        return _ingest_sample(app, request, symbols, on_progress)


def _ingest_sample(
    app: App,
    request: IngestRequest,
    symbols: Sequence[str] | None,
    on_progress: ProgressCallback | None,
) -> IngestReport:
    interval = request.interval
    if interval % SAMPLE_INTERVAL or interval < SAMPLE_INTERVAL:
        raise ValueError(
            f"RACE_CANDLE_INTERVAL={format_interval(interval)}: the bundled candles are hourly; "
            "use 1h or a multiple of it"
        )
    report = IngestReport("sample", interval, app.clock.now(), start=request.start, end=request.end)
    assets = select_assets(app, symbols, report.notes)
    work = [(asset, sample_files(asset.symbol)) for asset in assets]
    for asset, files in work:
        if not files:
            report.notes.append(
                f"{asset.symbol}: no bundled data (bundled: {', '.join(sample_symbols())})"
            )
    progress = Progress(sum(f.rows for _, files in work for f in files), on_progress)
    with app.telemetry.span("race.ingest", source="sample"):
        for asset, files in work:
            if files:
                report.assets.append(_ingest_asset(app, request, asset, files, progress))
    report.finished_at = app.clock.now()
    log_run(report)
    return report


def _ingest_asset(
    app: App,
    request: IngestRequest,
    asset: AssetRef,
    files: Sequence[SampleFile],
    progress: Progress,
) -> AssetReport:
    """Every bundled file of one asset; a failure is recorded on its report, not raised."""
    result = AssetReport(asset.symbol, source="sample")
    with log_context(asset=asset.symbol):
        done = 0
        try:
            for file in files:
                fingerprint = Fingerprint.of(app, asset, file, request)
                if not skip_unchanged(app, asset, file, fingerprint, result):
                    with _bulk_load():
                        batch = _load_file(app, request, asset, file, result)
                    record_file(app, asset, file, fingerprint, batch)
                progress.advance(file.rows)
                done += file.rows
            finish_asset(app, asset, result, request.interval)
        except Exception as exc:  # one asset's failure never stops the others
            asset_failed(result, exc, "loading the bundled candles")
            progress.advance(sum(f.rows for f in files) - done)
    return result


def _load_file(
    app: App, request: IngestRequest, asset: AssetRef, file: SampleFile, result: AssetReport
) -> CandleBatch:
    batch = _read_batch(app, request, asset, file)
    check_against_history(app, asset, batch, request.interval, request.history)
    log_batch(batch, file.name)
    result.absorb(batch)
    store_batch(app, Destination(asset, request.interval, file.source), batch, result)
    log.info(
        "%s: %s → %d candles (%d inserted so far)",
        asset.symbol,
        file.name,
        len(batch.candles),
        result.inserted,
        extra={"asset": asset.symbol},
    )
    return batch


def _read_batch(app: App, request: IngestRequest, asset: AssetRef, file: SampleFile) -> CandleBatch:
    """The file's rows in [start, end] as checked candles at the stored interval."""
    interval, start, end = request.interval, request.start, request.end
    # Whole candles only: a stored candle's parts all lie inside [start, end].
    first = ceil_time(start, interval) - interval + SAMPLE_INTERVAL if start else None
    last = floor_time(end, interval) if end else None
    rows = read_sample(file, start=first, end=last)
    if rows.scanned != file.rows:
        log.warning("%s holds %d rows, %d expected", file.name, rows.scanned, file.rows)
    # A file's last row can be a candle that was still forming when it was written: not
    # history. It is dropped here, quietly (the same for a coarser candle it would be part of).
    closed = [r for r in rows.rows if ceil_time(r.close_time, interval) <= file.fetched_at]
    if len(closed) != len(rows.rows):
        log.debug(
            "%s: %d row(s) closing after the file was written (%s) dropped",
            file.name,
            len(rows.rows) - len(closed),
            file.fetched_at.isoformat(),
        )
        rows.rows = closed
    now = min(app.clock.now(), file.fetched_at)
    first_close = min((r.close_time for r in rows.rows), default=None)
    reference = (
        reference_candle(app, asset, ceil_time(first_close, interval), interval)
        if first_close is not None
        else None
    )
    batch = batch_at_interval(
        rows.rows,
        symbol=asset.symbol,
        source=SAMPLE_INTERVAL,
        interval=interval,
        now=now,
        limits=request.limits,
        reference=reference,
        rejections=rows.rejections,
        fetched=rows.fetched,
    )
    batch.notes.update(rows.notes)
    return batch
