"""Ingestion: candles from CoinGecko or from the bundled sample into the candles table.

Both paths run the same checks (:mod:`market.validation`) and the same store step:

* a candle already stored with the same values is ``unchanged`` (re-running is a no-op);
* a candle already stored with other values is a ``conflict``: logged and counted, the
  stored (closed) candle is kept — never a silent overwrite;
* a candle still open at fetch time — or closed less than ``COINGECKO_SETTLE_SECONDS``
  before it (CoinGecko's caches may still be building it) — is never stored;
* ``volume`` is base-asset volume within the candle and ``quote_volume_24h`` CoinGecko's
  rolling 24 h USD volume at the close; each stays NULL when unknown, never a fake 0;
* new candles go in with one bulk ``INSERT … ON CONFLICT DO NOTHING`` per batch;
* one asset's failure (an API error, or an unexpected store error such as a value the
  column cannot hold) is recorded on its report; the other assets are still ingested.

Every run logs under its own ``correlation_id`` (:func:`race.logging_setup.log_context`).

:func:`ingest_sample` records each bundled file it loaded in a ``jobs`` row of kind
``sample`` (the file's SHA-256, the settings the candles depend on, how many it stored): a
later run skips a file whose fingerprint is unchanged and whose candles are all still
stored, so re-running the demo does not read 120,000 rows again.

:func:`ingest_coingecko` without ``start`` is live ingestion (the 5-minute timer): for each
enabled asset it fetches what is missing since the last stored candle (at most
``RACE_INGEST_LOOKBACK`` back). With ``start`` it is a backfill: the range is split into
the chunks the API allows, paced, and tracked in a ``jobs`` row whose cursor advances in the
same transaction as each chunk's candles, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import gc
import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from market.aggregate import batch_at_interval
from market.coingecko import (
    MAX_RETRY_AFTER,
    ChartData,
    CoinGeckoAuthError,
    CoinGeckoClient,
    CoinGeckoConfig,
    CoinGeckoConfigError,
    CoinGeckoError,
    CoinGeckoUnavailable,
    FetchPlan,
    FetchStep,
    OhlcData,
    OhlcStep,
    RangeStep,
    ceil_time,
    describe_steps,
    ohlc_batch,
    plan_fetch,
    range_batch,
)
from market.plausibility import HistoryLimits, check_history
from market.sample import (
    SAMPLE_INTERVAL,
    SampleFile,
    read_sample,
    sample_files,
    sample_symbols,
)
from market.validation import CandleBatch, Gap, ValidationLimits, log_batch, missing_between
from race.bootstrap import App
from race.domain.model import Candle
from race.domain.timeutil import ensure_utc, floor_time, format_interval, iso
from race.logging_setup import log_context, new_correlation_id
from race.schedule import next_time
from race.settings import Settings
from race.store import candles as store
from race.store.tables import Asset, CandleRow, JobRow
from race.universe import add_asset

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
_CONFLICTS_LOGGED = 20
_ERROR_CHARS = 500


# ---------------------------------------------------------------- reports


@dataclass
class AssetReport:
    """What one ingestion run did for one asset."""

    symbol: str
    source: str = ""
    fetched: int = 0
    """Rows (or price points) the source delivered."""
    candles: int = 0
    """Valid, closed candles at the stored interval."""
    inserted: int = 0
    unchanged: int = 0
    """Already stored with the same values (nothing to do)."""
    duplicates: int = 0
    """Rows dropped because the source repeated a timestamp."""
    duplicates_differing: int = 0
    """Of those, rows whose values differed from the one kept."""
    conflicts: int = 0
    """Candles already stored with other values: logged, the stored one kept."""
    open: int = 0
    """Candles still open at fetch time, or closed less than ``COINGECKO_SETTLE_SECONDS``
    before it: not stored (the next run fetches them again)."""
    skipped: int = 0
    """Candles of bundled files not read again: each file is unchanged (same SHA-256, same
    settings) since a run that stored them, and they are all still stored."""
    rejected: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    """Candles missing from the store in the window this run covered (``first_close`` to
    ``last_close``: the range of the chunks fetched and stored, or the span of the data
    loaded). An asset that stored nothing because of an error covered nothing: no gaps."""
    first_close: datetime | None = None
    last_close: datetime | None = None
    latest_close_time: datetime | None = None
    """Newest stored close time after the run."""
    calls: int = 0
    job_id: int | None = None
    error: str | None = None

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    @property
    def missing(self) -> int:
        return sum(g.missing for g in self.gaps)

    def absorb(self, batch: CandleBatch) -> None:
        self.fetched += batch.fetched
        self.candles += len(batch.candles)
        self.duplicates += batch.duplicates
        self.duplicates_differing += batch.duplicates_differing
        self.open += batch.open
        self.rejected.update(batch.rejected)
        for note, count in batch.notes.items():
            self.notes.append(f"{note}: {count}")
        if batch.candles:
            first, last = batch.candles[0].close_time, batch.candles[-1].close_time
            self.first_close = min(self.first_close or first, first)
            self.last_close = max(self.last_close or last, last)

    def as_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "source": self.source,
            "fetched": self.fetched,
            "candles": self.candles,
            "inserted": self.inserted,
            "unchanged": self.unchanged,
            "duplicates": self.duplicates,
            "duplicatesDiffering": self.duplicates_differing,
            "conflicts": self.conflicts,
            "open": self.open,
            "skipped": self.skipped,
            "rejected": dict(sorted(self.rejected.items())),
            "rejectedTotal": self.rejected_total,
            "gaps": [g.as_dict() for g in self.gaps],
            "missingCandles": self.missing,
            "firstClose": iso(self.first_close),
            "lastClose": iso(self.last_close),
            "latestCloseTime": iso(self.latest_close_time),
            "calls": self.calls,
            "jobId": self.job_id,
            "notes": list(self.notes),
            "error": self.error,
        }


@dataclass
class IngestReport:
    source: str
    interval: timedelta
    started_at: datetime
    start: datetime | None = None
    end: datetime | None = None
    finished_at: datetime | None = None
    plan: str | None = None
    assets: list[AssetReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    calls: int = 0

    @property
    def ok(self) -> bool:
        return all(a.error is None for a in self.assets)

    @property
    def errors(self) -> dict[str, str]:
        return {a.symbol: a.error for a in self.assets if a.error is not None}

    @property
    def inserted(self) -> int:
        return sum(a.inserted for a in self.assets)

    def asset(self, symbol: str) -> AssetReport:
        for item in self.assets:
            if item.symbol == symbol:
                return item
        raise KeyError(symbol)

    def as_dict(self) -> dict[str, Any]:
        totals = {
            key: sum(getattr(a, attr) for a in self.assets)
            for key, attr in (
                ("fetched", "fetched"),
                ("candles", "candles"),
                ("inserted", "inserted"),
                ("unchanged", "unchanged"),
                ("duplicates", "duplicates"),
                ("conflicts", "conflicts"),
                ("open", "open"),
                ("skipped", "skipped"),
                ("rejected", "rejected_total"),
                ("missingCandles", "missing"),
            )
        }
        return {
            "source": self.source,
            "plan": self.plan,
            "interval": format_interval(self.interval),
            "start": iso(self.start),
            "end": iso(self.end),
            "startedAt": iso(self.started_at),
            "finishedAt": iso(self.finished_at),
            "ok": self.ok,
            "calls": self.calls,
            "totals": totals,
            "assets": [a.as_dict() for a in self.assets],
            "notes": list(self.notes),
            "errors": self.errors,
        }

    def render(self) -> str:
        """A readable text table (the CLI prints it)."""
        head = f"ingest from {self.source}"
        if self.plan:
            head += f" ({self.plan} plan)"
        head += f", {format_interval(self.interval)} candles"
        if self.start or self.end:
            head += f", {iso(self.start) or '…'} → {iso(self.end) or 'now'}"
        # Bundled history has no open candles (a file's last, partial row is dropped when
        # read); what a re-run shows instead is the candles of unchanged files it skipped.
        bundled = self.source == "sample"
        columns = (
            "asset",
            "fetched",
            "inserted",
            "unchanged",
            "dupes",
            "conflicts",
            "rejected",
            "skipped" if bundled else "open",
            "gaps (missing)",
            "latest close",
        )
        rows = [
            (
                a.symbol,
                f"{a.fetched:,}",
                f"{a.inserted:,}",
                f"{a.unchanged:,}",
                f"{a.duplicates:,}",
                f"{a.conflicts:,}",
                f"{a.rejected_total:,}",
                f"{a.skipped if bundled else a.open:,}",
                f"{len(a.gaps):,} ({a.missing:,})",
                iso(a.latest_close_time) or "-",
            )
            for a in self.assets
        ]
        widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(
                cell.ljust(w) if i in (0, len(cells) - 1) else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()

        out = [head, line(columns), line(["-" * w for w in widths])]
        out += [line(r) for r in rows]
        if not rows:
            out.append(
                "(no enabled assets for this source: `python -m race assets list`, "
                "`assets add SYMBOL COINGECKO_ID`, `assets enable SYMBOL`)"
            )
        for a in self.assets:
            details = []
            if a.source and a.source != self.source:
                details.append(f"source {a.source}")
            if a.rejected:
                details.append(
                    "rejected " + ", ".join(f"{k} {v}" for k, v in sorted(a.rejected.items()))
                )
            if a.duplicates_differing:
                details.append(f"{a.duplicates_differing:,} duplicates had differing values")
            if a.gaps:
                shown = ", ".join(
                    f"{iso(g.first_missing)}…{iso(g.last_missing)} ({g.missing})"
                    for g in a.gaps[:3]
                )
                more = f" and {len(a.gaps) - 3} more" if len(a.gaps) > 3 else ""
                details.append(f"gaps {shown}{more}")
            details += a.notes
            if a.error:
                details.append(f"ERROR: {a.error}")
            for detail in details:
                out.append(f"  {a.symbol}: {detail}")
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)


# ---------------------------------------------------------------- shared pieces


@dataclass(frozen=True)
class _Asset:
    id: int
    symbol: str
    coingecko_id: str


def validation_limits(settings: Settings) -> ValidationLimits:
    return ValidationLimits(max_move=settings.candle_max_move, max_range=settings.candle_max_range)


def history_limits(settings: Settings) -> HistoryLimits:
    return HistoryLimits(
        max_deviation=settings.candle_max_deviation, max_day_move=settings.candle_max_day_move
    )


def max_retry_after(settings: Settings) -> float:
    """``COINGECKO_MAX_RETRY_AFTER_SECONDS``, or by default a fifth of the shortest gap
    between ``RACE_INGEST_SCHEDULE`` slots, at most :data:`MAX_RETRY_AFTER` (60 s): a wait
    that long would run into the next scheduled ingest anyway."""
    if settings.coingecko_max_retry_after_seconds is not None:
        return settings.coingecko_max_retry_after_seconds
    try:
        slot = next_time(settings.ingest_schedule, datetime(2024, 1, 1, tzinfo=UTC))
        gaps = []
        for _ in range(24):
            following = next_time(settings.ingest_schedule, slot)
            gaps.append((following - slot).total_seconds())
            slot = following
    except ValueError:
        return MAX_RETRY_AFTER  # a bad schedule is reported where the schedule is used
    return min(MAX_RETRY_AFTER, min(gaps) / 5)


def coingecko_config(settings: Settings) -> CoinGeckoConfig:
    """The client configuration from the ``COINGECKO_*`` settings."""
    key = settings.coingecko_api_key.get_secret_value() if settings.coingecko_api_key else None
    return CoinGeckoConfig.resolve(
        plan=settings.coingecko_plan,
        api_key=key,
        base_url=settings.coingecko_base_url,
        calls_per_minute=settings.coingecko_calls_per_minute,
        timeout_seconds=settings.coingecko_timeout_seconds,
        max_attempts=settings.coingecko_max_attempts,
        range_chunk_days=settings.coingecko_range_chunk_days,
        settle_seconds=settings.coingecko_settle_seconds,
        max_retry_after_seconds=max_retry_after(settings),
    )


def _select_assets(app: App, symbols: Sequence[str] | None, notes: list[str]) -> list[_Asset]:
    """Enabled assets, or exactly ``symbols``. An empty universe is seeded from
    ``RACE_ASSETS`` first (a fresh database)."""
    with app.db.read() as session:
        rows = list(session.scalars(select(Asset).order_by(Asset.id)))
    if not rows:
        for symbol, coin in app.settings.asset_universe:
            add_asset(app.db, symbol, coin, app.clock)
        notes.append("seeded the asset universe from RACE_ASSETS")
        with app.db.read() as session:
            rows = list(session.scalars(select(Asset).order_by(Asset.id)))
    if symbols is None:
        return [_Asset(r.id, r.symbol, r.coingecko_id) for r in rows if r.enabled]
    by_symbol = {r.symbol: r for r in rows}
    chosen: list[_Asset] = []
    for raw in symbols:
        symbol = raw.strip().upper()
        row = by_symbol.get(symbol)
        if row is None:
            raise LookupError(
                f"unknown asset {symbol!r}: add it with "
                f"`python -m race assets add {symbol} COINGECKO_ID`"
            )
        if not row.enabled:
            notes.append(f"{symbol} is disabled; ingested because it was asked for")
        if all(a.id != row.id for a in chosen):
            chosen.append(_Asset(row.id, row.symbol, row.coingecko_id))
    return chosen


def _store(
    app: App,
    asset: _Asset,
    batch: CandleBatch,
    interval: timedelta,
    source: str,
    report: AssetReport,
    also: Callable[[Session], None] | None = None,
) -> None:
    """Write ``batch`` in one transaction (with ``also``, e.g. a job cursor). The report's
    counts change only if the transaction commits."""
    before = (report.inserted, report.unchanged, report.conflicts)
    try:
        _write(app, asset, batch, interval, source, report, also)
    except BaseException:
        report.inserted, report.unchanged, report.conflicts = before
        raise


def _write(
    app: App,
    asset: _Asset,
    batch: CandleBatch,
    interval: timedelta,
    source: str,
    report: AssetReport,
    also: Callable[[Session], None] | None,
) -> None:
    candles = batch.candles
    seconds = int(interval.total_seconds())
    with app.db.write() as session:
        if candles:
            stored = store.stored_values(
                session, asset.id, candles[0].close_time, candles[-1].close_time
            )
            fresh: list[Candle] = []
            for candle in candles:
                old = stored.get(candle.close_time)
                if old is None:
                    fresh.append(candle)
                elif old == store.values_of(candle):
                    report.unchanged += 1
                else:
                    _conflict(report, candle, old, source)
            rows = [
                {
                    "asset_id": asset.id,
                    "close_time": c.close_time,
                    "open": c.open,
                    "high": c.high,
                    "low": c.low,
                    "close": c.close,
                    "volume": c.volume,
                    "quote_volume_24h": c.quote_volume_24h,
                    "interval_seconds": seconds,
                    "source": source,
                }
                for c in fresh
            ]
            inserted = store.insert_new(session, rows)
            if inserted is None:
                report.inserted += len(rows)
            else:
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
                            _conflict(report, candle, old, source)
        if also is not None:
            also(session)


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


def _reference(
    app: App, asset: _Asset, first_close: datetime, interval: timedelta
) -> Candle | None:
    with app.db.read() as session:
        return store.candle_at(session, asset.id, asset.symbol, first_close - interval)


def _check_history(
    app: App, asset: _Asset, batch: CandleBatch, interval: timedelta, limits: HistoryLimits
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


def _finish_asset(app: App, asset: _Asset, report: AssetReport, interval: timedelta) -> None:
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


def _check_range(start: datetime | None, end: datetime | None) -> tuple[datetime | None, ...]:
    start = ensure_utc(start, field="start") if start is not None else None
    end = ensure_utc(end, field="end") if end is not None else None
    if start is not None and end is not None and start > end:
        raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
    return start, end


# ---------------------------------------------------------------- bundled sample


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
        return _ingest_sample(app, symbols=symbols, start=start, end=end, on_progress=on_progress)


def _ingest_sample(
    app: App,
    *,
    symbols: Sequence[str] | None,
    start: datetime | None,
    end: datetime | None,
    on_progress: ProgressCallback | None,
) -> IngestReport:
    start, end = _check_range(start, end)
    interval = app.settings.candle_interval
    if interval % SAMPLE_INTERVAL or interval < SAMPLE_INTERVAL:
        raise ValueError(
            f"RACE_CANDLE_INTERVAL={format_interval(interval)}: the bundled candles are hourly; "
            "use 1h or a multiple of it"
        )
    limits = validation_limits(app.settings)
    report = IngestReport("sample", interval, app.clock.now(), start=start, end=end)
    assets = _select_assets(app, symbols, report.notes)
    work = [(asset, sample_files(asset.symbol)) for asset in assets]
    for asset, files in work:
        if not files:
            report.notes.append(
                f"{asset.symbol}: no bundled data (bundled: {', '.join(sample_symbols())})"
            )
    progress = _Progress(sum(f.rows for _, files in work for f in files), on_progress)
    with app.telemetry.span("race.ingest", source="sample"):
        for asset, files in work:
            if not files:
                continue
            result = AssetReport(asset.symbol, source="sample")
            with log_context(asset=asset.symbol):
                done = 0
                try:
                    for file in files:
                        key, params = _fingerprint(app, asset, file, start, end, interval, limits)
                        if not _skip_unchanged(app, asset, file, key, params, result):
                            with _bulk_load():
                                batch = _load_file(
                                    app, asset, file, start, end, interval, limits, result
                                )
                            _record_file(app, asset, file, key, params, batch)
                        progress.advance(file.rows)
                        done += file.rows
                    _finish_asset(app, asset, result, interval)
                except Exception as exc:  # one asset's failure never stops the others
                    _asset_failed(result, exc, "loading the bundled candles")
                    progress.advance(sum(f.rows for f in files) - done)
            report.assets.append(result)
    report.finished_at = app.clock.now()
    _log_run(report)
    return report


def _describe_error(exc: BaseException) -> str:
    """One line for a report: the driver's message without SQLAlchemy's SQL and parameters."""
    inner = getattr(exc, "orig", None) or exc
    text = " ".join(str(inner).split())
    return f"{type(inner).__name__}: {text}"[:_ERROR_CHARS]


def _asset_failed(result: AssetReport, exc: BaseException, doing: str) -> None:
    """Record an unexpected failure on the asset's report (never raised to the run)."""
    message = f"{doing} failed: {_describe_error(exc)}"
    if result.error is None:
        result.error = message
    log.error("%s: %s", result.symbol, message, exc_info=exc, extra={"asset": result.symbol})


def _log_run(report: IngestReport) -> None:
    failed = report.errors
    log.info(
        "ingest from %s: %d candle(s) inserted for %d asset(s)%s",
        report.source,
        report.inserted,
        len(report.assets),
        f"; failed: {', '.join(sorted(failed))}" if failed else "",
    )


def _load_file(
    app: App,
    asset: _Asset,
    file: SampleFile,
    start: datetime | None,
    end: datetime | None,
    interval: timedelta,
    limits: ValidationLimits,
    result: AssetReport,
) -> CandleBatch:
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
        _reference(app, asset, ceil_time(first_close, interval), interval)
        if first_close is not None
        else None
    )
    batch = batch_at_interval(
        rows.rows,
        symbol=asset.symbol,
        source=SAMPLE_INTERVAL,
        interval=interval,
        now=now,
        limits=limits,
        reference=reference,
        rejections=rows.rejections,
        fetched=rows.fetched,
    )
    batch.notes.update(rows.notes)
    _check_history(app, asset, batch, interval, history_limits(app.settings))
    log_batch(batch, file.name)
    result.absorb(batch)
    _store(app, asset, batch, interval, file.source, result)
    log.info(
        "%s: %s → %d candles (%d inserted so far)",
        asset.symbol,
        file.name,
        len(batch.candles),
        result.inserted,
        extra={"asset": asset.symbol},
    )
    return batch


def _sha256(file: SampleFile) -> str:
    digest = hashlib.sha256()
    with file.path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fingerprint(
    app: App,
    asset: _Asset,
    file: SampleFile,
    start: datetime | None,
    end: datetime | None,
    interval: timedelta,
    limits: ValidationLimits,
) -> tuple[str, dict[str, Any]]:
    """The ``jobs`` key of loading ``file`` for ``asset`` over [start, end] at ``interval``,
    and everything the candles stored depend on: the file's content, the asset row, the
    time it is read at (a clock before the file was written stores fewer candles) and the
    validation limits."""
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
        "maxMove": str(limits.max_move),
        "maxRange": str(limits.max_range),
    }
    return key, params


def _stored_from(session: Session, asset: _Asset, file: SampleFile, first: Any, last: Any) -> int:
    """Candles of ``asset`` stored from ``file``'s format between two ISO close times."""
    if first is None or last is None:
        return 0
    query = (
        select(func.count())
        .select_from(CandleRow)
        .where(
            CandleRow.asset_id == asset.id,
            CandleRow.source == file.source,
            CandleRow.close_time >= datetime.fromisoformat(first),
            CandleRow.close_time <= datetime.fromisoformat(last),
        )
    )
    return int(session.scalar(query) or 0)


def _skip_unchanged(
    app: App,
    asset: _Asset,
    file: SampleFile,
    key: str,
    params: dict[str, Any],
    result: AssetReport,
) -> bool:
    """True (and the report told) when ``file`` was loaded before with the same fingerprint
    and the candles stored from it then are all still there: reading it again would change
    nothing. Anything else (a new file, other settings, candles deleted since) loads it."""
    with app.db.read() as session:
        row = session.scalar(select(JobRow).where(JobRow.key == key))
        if row is None or row.status != "done" or not isinstance(row.params, dict):
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
        first_close, last_close = datetime.fromisoformat(first), datetime.fromisoformat(last)
        result.first_close = min(result.first_close or first_close, first_close)
        result.last_close = max(result.last_close or last_close, last_close)
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


def _record_file(
    app: App,
    asset: _Asset,
    file: SampleFile,
    key: str,
    params: dict[str, Any],
    batch: CandleBatch,
) -> None:
    """Remember that ``file`` is loaded (its fingerprint and what it stored), so the next run
    can skip it. Losing this row only costs a re-read: a failure is logged, not raised."""
    first = iso(batch.candles[0].close_time) if batch.candles else None
    last = iso(batch.candles[-1].close_time) if batch.candles else None
    now = app.clock.now()
    try:
        with app.db.write() as session:
            values = {
                **params,
                "firstClose": first,
                "lastClose": last,
                "candles": len(batch.candles),
                "stored": _stored_from(session, asset, file, first, last),
            }
            row = session.scalar(select(JobRow).where(JobRow.key == key))
            if row is None:
                session.add(
                    JobRow(
                        kind="sample",
                        key=key,
                        params=values,
                        status="done",
                        cursor=batch.candles[-1].close_time if batch.candles else None,
                        total=file.rows,
                        done=file.rows,
                        created_at=now,
                        updated_at=now,
                    )
                )
            else:
                row.params = values
                row.status = "done"
                row.error = None
                row.updated_at = now
    except IntegrityError:
        log.debug("%s: another run recorded %s first", asset.symbol, file.name)
    except Exception:
        log.warning("%s: could not record %s as loaded", asset.symbol, file.name, exc_info=True)


# ---------------------------------------------------------------- CoinGecko


@dataclass
class _Work:
    asset: _Asset
    plan: FetchPlan
    job_id: int | None = None
    requested_last: datetime | None = None


async def ingest_coingecko(
    app: App,
    *,
    symbols: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    on_progress: ProgressCallback | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> IngestReport:
    """Fetch candles from CoinGecko for the enabled assets (or ``symbols``).

    Without ``start``: live ingestion, everything missing since each asset's last stored
    candle (at most ``RACE_INGEST_LOOKBACK`` back) up to the last settled close (at least
    ``COINGECKO_SETTLE_SECONDS`` ago). With ``start`` (and ``end``, default now): a
    resumable backfill of candles closing in [start, end] (and settled).

    Per-asset failures (unknown coin id, CoinGecko unavailable after the retries, a
    malformed answer, an unexpected error storing the candles) are recorded on the report
    (``report.ok`` is False) and never leave half a chunk written; after an outage the
    remaining assets are not tried. A bad configuration or a refused key raises
    :class:`market.coingecko.CoinGeckoError`."""
    with log_context(correlation_id=new_correlation_id()):
        return await _ingest_coingecko(
            app, symbols=symbols, start=start, end=end, on_progress=on_progress, transport=transport
        )


async def _ingest_coingecko(
    app: App,
    *,
    symbols: Sequence[str] | None,
    start: datetime | None,
    end: datetime | None,
    on_progress: ProgressCallback | None,
    transport: httpx.AsyncBaseTransport | None,
) -> IngestReport:
    if end is not None and start is None:
        raise ValueError("an end needs a start (--start)")
    start, end = _check_range(start, end)
    config = coingecko_config(app.settings)
    interval = app.settings.candle_interval
    limits = validation_limits(app.settings)
    now = app.clock.now()
    report = IngestReport(
        "coingecko", interval, now, start=start, end=end, plan=config.plan, notes=[]
    )
    assets = _select_assets(app, symbols, report.notes)
    work = [_plan_asset(app, config, asset, start, end, interval, now) for asset in assets]
    progress = _Progress(sum(len(w.plan.steps) for w in work), on_progress)
    outage: str | None = None
    with app.telemetry.span("race.ingest", source="coingecko", plan=config.plan):
        async with CoinGeckoClient(config, clock=app.clock, transport=transport) as client:
            for item in work:
                result = AssetReport(item.asset.symbol, source="coingecko", job_id=item.job_id)
                result.notes.extend(item.plan.notes)
                report.assets.append(result)
                with log_context(asset=item.asset.symbol, job_id=item.job_id):
                    if outage is not None:
                        result.error = f"not tried: {outage}"
                        _update_job(app, item.job_id, "failed", result.error)
                        continue
                    try:
                        if await _fetch_asset(app, client, item, result, limits, progress):
                            outage = "CoinGecko was unavailable for an earlier asset"
                    except CoinGeckoAuthError:
                        raise  # a refused key fails the whole run, at once
                    except Exception as exc:  # one asset's failure never stops the others
                        _asset_failed(result, exc, "ingesting")
                    try:
                        _finish_asset(app, item.asset, result, interval)
                    except Exception as exc:  # one asset's failure never stops the others
                        _asset_failed(result, exc, "reading back the stored candles")
            report.calls = client.calls
    report.finished_at = app.clock.now()
    _log_run(report)
    return report


class _Progress:
    def __init__(self, total: int, callback: ProgressCallback | None) -> None:
        self.total = total
        self.done = 0
        self.callback = callback
        if callback:
            callback(0, total)

    def advance(self, steps: int = 1) -> None:
        self.done += steps
        if self.callback:
            self.callback(self.done, self.total)


async def _fetch_asset(
    app: App,
    client: CoinGeckoClient,
    item: _Work,
    result: AssetReport,
    limits: ValidationLimits,
    progress: _Progress,
) -> bool:
    """Fetch, check and store every step of ``item`` (one transaction per step). Returns
    True when CoinGecko was unavailable (the run then stops asking). The report's window
    (``first_close`` … ``last_close``, where gaps are looked for) is what was fetched and
    stored: nothing when the first step failed."""
    asset, plan = item.asset, item.plan
    interval = app.settings.candle_interval
    if plan.steps:
        result.source = f"coingecko {describe_steps(plan.steps)}"
    else:
        result.notes.append(
            "up to date" if plan.first_close > plan.last_close else "nothing to fetch"
        )
        if item.job_id is not None:
            _update_job(app, item.job_id, "done", None)
    calls_before = client.calls
    outage = False
    covered: datetime | None = None
    try:
        for index, step in enumerate(plan.steps, start=1):
            try:
                data = await client.fetch(asset.coingecko_id, step, interval)
            except CoinGeckoAuthError as exc:
                _update_job(app, item.job_id, "failed", str(exc))
                raise
            except CoinGeckoUnavailable as exc:
                result.error, outage = str(exc), True
            except CoinGeckoError as exc:
                result.error = str(exc)
            if result.error is not None:
                log.error("%s: %s", asset.symbol, result.error)
            else:
                try:
                    _check_and_store(app, item, step, data, index, result, limits)
                except Exception as exc:  # e.g. a value the column cannot hold
                    _asset_failed(result, exc, f"storing the candles of {step.describe()}")
            if result.error is not None:
                _update_job_quietly(app, item.job_id, "failed", result.error)
                progress.advance(len(plan.steps) - index + 1)
                break
            covered = step.last_close
            progress.advance()
    finally:
        result.calls = client.calls - calls_before
        if covered is None:
            result.first_close = result.last_close = None
        else:
            result.first_close, result.last_close = plan.steps[0].first_close, covered
    return outage


def _check_and_store(
    app: App,
    item: _Work,
    step: FetchStep,
    data: OhlcData | ChartData,
    index: int,
    result: AssetReport,
    limits: ValidationLimits,
) -> None:
    asset, interval = item.asset, app.settings.candle_interval
    reference = _reference(app, asset, step.first_close, interval)
    batch = _to_batch(data, step, asset.symbol, interval, limits, reference)
    _check_history(app, asset, batch, interval, history_limits(app.settings))
    log_batch(batch, f"coingecko {step.describe()}")
    result.absorb(batch)
    source = "coingecko:ohlc" if isinstance(step, OhlcStep) else "coingecko:range"
    advance_job = (
        _job_advance(item, step.last_close, index == len(item.plan.steps), app)
        if item.job_id is not None
        else None
    )
    _store(app, asset, batch, interval, source, result, also=advance_job)


def _to_batch(
    data: OhlcData | ChartData,
    step: OhlcStep | RangeStep,
    symbol: str,
    interval: timedelta,
    limits: ValidationLimits,
    reference: Candle | None,
) -> CandleBatch:
    if isinstance(step, OhlcStep):
        assert isinstance(data, OhlcData)
        return ohlc_batch(
            data, step, symbol=symbol, interval=interval, limits=limits, reference=reference
        )
    assert isinstance(data, ChartData)
    return range_batch(
        data, step, symbol=symbol, interval=interval, limits=limits, reference=reference
    )


def _plan_asset(
    app: App,
    config: CoinGeckoConfig,
    asset: _Asset,
    start: datetime | None,
    end: datetime | None,
    interval: timedelta,
    now: datetime,
) -> _Work:
    # The newest close that counts as closed: CoinGecko's answer for a candle that closed
    # less than COINGECKO_SETTLE_SECONDS ago may still be built from a cached, earlier view.
    settled = now - config.settle
    last_closed = floor_time(settled, interval)
    if start is None:
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
        plan = plan_fetch(
            config, first_close=first, last_close=last_closed, interval=interval, now=now, live=True
        )
        plan.notes[:0] = notes
        return _Work(asset, plan)
    first = ceil_time(start, interval)
    last = floor_time(min(end, settled), interval) if end is not None else last_closed
    requested_last = floor_time(end, interval) if end is not None else None
    job_id, cursor = _job(app, asset, first, requested_last, interval, now)
    resume_from = max(first, cursor + interval) if cursor is not None else first
    plan = plan_fetch(
        config, first_close=resume_from, last_close=last, interval=interval, now=now, live=False
    )
    if cursor is not None:
        plan.notes.insert(0, f"resumed job {job_id} after {iso(cursor)}")
    if end is not None and end > settled:
        plan.notes.append(
            f"end {iso(end)} is later than the last settled close (now − "
            f"COINGECKO_SETTLE_SECONDS): fetched up to {iso(last)}"
        )
    with app.db.write() as session:
        row = session.get(JobRow, job_id)
        if row is not None:
            row.total = (row.done or 0) + len(plan.steps)
            row.status = "running" if plan.steps else row.status
            row.updated_at = now
    return _Work(asset, plan, job_id, requested_last)


def _job(
    app: App,
    asset: _Asset,
    first: datetime,
    last: datetime | None,
    interval: timedelta,
    now: datetime,
) -> tuple[int, datetime | None]:
    """The job of this exact backfill (created on first use) and its cursor: the last
    close time up to which every chunk is stored."""
    key = (
        f"ingest:coingecko:{asset.symbol}:{first.isoformat()}:"
        f"{last.isoformat() if last else 'now'}:{format_interval(interval)}"
    )
    for _ in range(2):
        try:
            with app.db.write() as session:
                row = session.scalar(select(JobRow).where(JobRow.key == key))
                if row is None:
                    row = JobRow(
                        kind="ingest",
                        key=key,
                        params={
                            "source": "coingecko",
                            "symbol": asset.symbol,
                            "start": first.isoformat(),
                            "end": last.isoformat() if last else None,
                            "interval": format_interval(interval),
                        },
                        status="running",
                        cursor=None,
                        total=0,
                        done=0,
                        created_at=now,
                        updated_at=now,
                    )
                    session.add(row)
                    session.flush()
                return row.id, row.cursor
        except IntegrityError:
            continue
    raise RuntimeError(f"could not create or find job {key}")


def _job_advance(
    item: _Work, cursor: datetime, finished: bool, app: App
) -> Callable[[Session], None]:
    def advance(session: Session) -> None:
        row = session.get(JobRow, item.job_id)
        if row is None:
            return
        row.cursor = max(row.cursor, cursor) if row.cursor is not None else cursor
        row.done = (row.done or 0) + 1
        reached = item.requested_last is None or row.cursor >= item.requested_last
        row.status = "done" if finished and reached else ("partial" if finished else "running")
        row.error = None
        row.updated_at = app.clock.now()

    return advance


def _update_job_quietly(app: App, job_id: int | None, status: str, error: str | None) -> None:
    """:func:`_update_job` on a failure path: a store that is failing too is logged, not
    raised (the asset's report already says what went wrong)."""
    try:
        _update_job(app, job_id, status, error)
    except Exception:
        log.exception("could not mark job %s as %s", job_id, status)


def _update_job(app: App, job_id: int | None, status: str, error: str | None) -> None:
    if job_id is None:
        return
    with app.db.write() as session:
        row = session.get(JobRow, job_id)
        if row is not None:
            row.status = status
            row.error = error[:2000] if error else None
            row.updated_at = app.clock.now()


__all__ = [
    "AssetReport",
    "CoinGeckoConfigError",
    "IngestReport",
    "coingecko_config",
    "history_limits",
    "ingest_coingecko",
    "ingest_sample",
    "max_retry_after",
    "validation_limits",
]
