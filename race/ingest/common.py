"""What every ingestion run shares: its parameters (:class:`IngestRequest`), the limits and
client configuration from the settings, the assets it covers, progress and failure
reporting."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from market.coingecko import MAX_RETRY_AFTER, CoinGeckoConfig
from market.plausibility import HistoryLimits
from market.validation import ValidationLimits
from race.bootstrap import App
from race.domain.timeutil import ensure_utc
from race.ingest.report import AssetReport, IngestReport
from race.schedule import next_time
from race.settings import Settings
from race.store.tables import Asset
from race.universe import add_asset, list_assets

log = logging.getLogger("race.ingest")

ProgressCallback = Callable[[int, int], None]
_ERROR_CHARS = 500


@dataclass(frozen=True)
class AssetRef:
    """The asset a run ingests for."""

    id: int
    symbol: str
    coingecko_id: str


@dataclass(frozen=True)
class IngestRequest:
    """The parameters of one ingestion run that each of its steps needs."""

    interval: timedelta
    """The stored candle interval (``RACE_CANDLE_INTERVAL``)."""
    limits: ValidationLimits
    history: HistoryLimits
    start: datetime | None = None
    end: datetime | None = None

    @classmethod
    def of(cls, settings: Settings, start: datetime | None, end: datetime | None) -> IngestRequest:
        """The request for [start, end] (checked: UTC-aware, in order) under ``settings``."""
        start, end = check_range(start, end)
        return cls(
            interval=settings.candle_interval,
            limits=validation_limits(settings),
            history=history_limits(settings),
            start=start,
            end=end,
        )


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


def check_range(start: datetime | None, end: datetime | None) -> tuple[datetime | None, ...]:
    start = ensure_utc(start, field="start") if start is not None else None
    end = ensure_utc(end, field="end") if end is not None else None
    if start is not None and end is not None and start > end:
        raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
    return start, end


def select_assets(app: App, symbols: Sequence[str] | None, notes: list[str]) -> list[AssetRef]:
    """Enabled assets, or exactly ``symbols``. An empty universe is seeded from
    ``RACE_ASSETS`` first (a fresh database)."""
    rows = list_assets(app.db)
    if not rows:
        for symbol, coin in app.settings.asset_universe:
            add_asset(app.db, symbol, coin, app.clock)
        notes.append("seeded the asset universe from RACE_ASSETS")
        rows = list_assets(app.db)
    if symbols is None:
        return [AssetRef(r.id, r.symbol, r.coingecko_id) for r in rows if r.enabled]
    return _chosen(rows, symbols, notes)


def _chosen(rows: Sequence[Asset], symbols: Sequence[str], notes: list[str]) -> list[AssetRef]:
    by_symbol = {r.symbol: r for r in rows}
    chosen: list[AssetRef] = []
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
            chosen.append(AssetRef(row.id, row.symbol, row.coingecko_id))
    return chosen


class Progress:
    """Reports ``(done, total)`` steps to an optional callback."""

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


def describe_error(exc: BaseException) -> str:
    """One line for a report: the driver's message without SQLAlchemy's SQL and parameters."""
    inner = getattr(exc, "orig", None) or exc
    text = " ".join(str(inner).split())
    return f"{type(inner).__name__}: {text}"[:_ERROR_CHARS]


def asset_failed(result: AssetReport, exc: BaseException, doing: str) -> None:
    """Record an unexpected failure on the asset's report (never raised to the run)."""
    message = f"{doing} failed: {describe_error(exc)}"
    if result.error is None:
        result.error = message
    log.error("%s: %s", result.symbol, message, exc_info=exc, extra={"asset": result.symbol})


def log_run(report: IngestReport) -> None:
    failed = report.errors
    log.info(
        "ingest from %s: %d candle(s) inserted for %d asset(s)%s",
        report.source,
        report.inserted,
        len(report.assets),
        f"; failed: {', '.join(sorted(failed))}" if failed else "",
    )
