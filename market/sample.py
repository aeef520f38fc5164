"""Reader of the bundled real candles in ``market/data/`` (see its README.md for sources,
attribution and the mess they hold).

Two exports of Binance spot BTC/USDT and ETH/USDT hourly klines:

* ``binance_spot_*_1h_2021-2023.csv.gz`` — clean, oldest first, ``date`` = open time.
* ``Binance_*USDT_1h.csv.gz`` (CryptoDataDownload, 2017-08 to 2021-06) — newest first, the
  ``unix`` column in milliseconds for recent rows and in seconds for old ones, the ``date``
  text in two formats (and four hours off ``unix`` for 91 rows of September 2017), every
  timestamp of 2020-08 to 2021-02 exported twice (once per format, values rounded
  differently), gaps, and implausible first rows.

The reader only parses: ``unix`` is the authoritative open time (the ``date`` text is
cross-checked and disagreements are noted, not used), close time = open time + 1 hour, and a
row in the newer format (unix milliseconds, 8 decimals) ranks above its rounded twin. The
checks themselves are :mod:`market.validation`'s, the same as for live data.
"""

from __future__ import annotations

import csv
import gzip
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from market.validation import (
    MALFORMED,
    NOT_A_NUMBER,
    RawCandle,
    Rejection,
    RowError,
    epoch_seconds,
)

DATA_DIR = Path(__file__).parent / "data"
SAMPLE_INTERVAL = timedelta(hours=1)
_MS_THRESHOLD = Decimal(100_000_000_000)
"""A unix time above this is in milliseconds (1e11 s is the year 5138)."""


class SampleFormat(StrEnum):
    BINANCE_SPOT = "binance_spot"
    CRYPTODATADOWNLOAD = "cryptodatadownload"


_HEADERS = {
    SampleFormat.BINANCE_SPOT: ["date", "open", "high", "low", "close", "volume", "ticker"],
    SampleFormat.CRYPTODATADOWNLOAD: [
        "unix",
        "date",
        "symbol",
        "open",
        "high",
        "low",
        "close",
        "Volume {base}",
        "Volume USDT",
        "tradecount",
    ],
}


@dataclass(frozen=True)
class SampleFile:
    """One bundled file. ``fetched_at`` is when the file was written (inferred from its last
    rows, see the data README): a candle closing after it was still open then and is never
    stored. Files load in ``order`` (lowest first) so newer exports win where they overlap."""

    name: str
    symbol: str
    format: SampleFormat
    fetched_at: datetime
    order: int
    rows: int
    """Data rows in the file (for progress bars)."""

    @property
    def path(self) -> Path:
        return DATA_DIR / self.name

    @property
    def source(self) -> str:
        """The ``source`` column of stored candles (≤ 32 characters)."""
        return f"sample:{self.format.value}"


_NEW_FETCHED = datetime(2023, 12, 30, 20, tzinfo=UTC)
"""The ETH 2021-2023 file ends with the 2023-12-30 20:00 candle holding ~1 % of its
neighbours' volume: the files were written just after 20:00 UTC."""
_OLD_FETCHED = datetime(2021, 6, 10, 0, tzinfo=UTC)
"""The 2017-2021 files end with the 2021-06-10 00:00 candle, whose close differs from the
final value in the newer file: they were written during that hour."""

SAMPLE_FILES: tuple[SampleFile, ...] = (
    SampleFile(
        "binance_spot_BTCUSDT_1h_2021-2023.csv.gz",
        "BTC",
        SampleFormat.BINANCE_SPOT,
        _NEW_FETCHED,
        0,
        23_988,
    ),
    SampleFile(
        "Binance_BTCUSDT_1h.csv.gz", "BTC", SampleFormat.CRYPTODATADOWNLOAD, _OLD_FETCHED, 1, 36_062
    ),
    SampleFile(
        "binance_spot_ETHUSDT_1h_2021-2023.csv.gz",
        "ETH",
        SampleFormat.BINANCE_SPOT,
        _NEW_FETCHED,
        0,
        23_989,
    ),
    SampleFile(
        "Binance_ETHUSDT_1h.csv.gz", "ETH", SampleFormat.CRYPTODATADOWNLOAD, _OLD_FETCHED, 1, 36_062
    ),
)


class SampleFormatError(RuntimeError):
    """A bundled file is not what the reader expects (not a row problem: the file)."""


def sample_symbols() -> list[str]:
    return sorted({f.symbol for f in SAMPLE_FILES})


def sample_files(symbol: str) -> list[SampleFile]:
    """The files of ``symbol`` in load order."""
    return sorted((f for f in SAMPLE_FILES if f.symbol == symbol), key=lambda f: f.order)


@dataclass
class SampleRows:
    file: SampleFile
    rows: list[RawCandle] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    notes: Counter[str] = field(default_factory=Counter)
    fetched: int = 0
    """Rows in [start, end] (or unreadable)."""
    scanned: int = 0
    """Data rows in the file."""


def read_sample(
    file: SampleFile, *, start: datetime | None = None, end: datetime | None = None
) -> SampleRows:
    """Parse ``file``; keep rows whose close time is in [start, end] (rows whose time
    cannot be read are kept as rejections)."""
    result = SampleRows(file)
    with gzip.open(file.path, "rt", encoding="utf-8", newline="") as handle:
        lines = csv.reader(handle)
        header = next(lines, None)
        if header and header[0].lower().startswith("http"):
            header = next(lines, None)  # the CryptoDataDownload banner line
        expected = [h.format(base=file.symbol) for h in _HEADERS[file.format]]
        if header is None or [h.strip() for h in header] != expected:
            raise SampleFormatError(f"{file.name}: header {header} is not {expected}")
        parse = _parse_spot if file.format is SampleFormat.BINANCE_SPOT else _parse_cdd
        for line_no, fields in enumerate(lines, start=2):
            if not fields:
                continue
            result.scanned += 1
            where = f"{file.name} line {line_no}"
            try:
                parsed = parse(fields, file, where, start, end)
            except RowError as exc:
                result.fetched += 1
                result.rejections.append(Rejection(exc.reason, str(exc), None, where))
                continue
            if parsed is None:
                continue  # outside [start, end]
            row, note = parsed
            result.fetched += 1
            if note:
                result.notes[note] += 1
            result.rows.append(row)
    return result


def _number(text: str, name: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise RowError(NOT_A_NUMBER, f"{name} {text!r} is not a number") from None


def _prices(open_: str, high: str, low: str, close: str) -> tuple[Decimal, ...]:
    try:
        return Decimal(open_), Decimal(high), Decimal(low), Decimal(close)
    except InvalidOperation:
        for name, text in (("open", open_), ("high", high), ("low", low), ("close", close)):
            _number(text, name)
        raise


def _volume(text: str) -> Decimal | None:
    """Unknown volume stays unknown (None), never a made-up 0."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        if text.strip().upper() in ("", "NULL"):
            return None
        raise RowError(NOT_A_NUMBER, f"volume {text!r} is not a number") from None
    return value


def _outside(close_time: datetime, start: datetime | None, end: datetime | None) -> bool:
    return (start is not None and close_time < start) or (end is not None and close_time > end)


def _parse_spot(
    fields: list[str],
    file: SampleFile,
    where: str,
    start: datetime | None,
    end: datetime | None,
) -> tuple[RawCandle, str | None] | None:
    if len(fields) != 7:
        raise RowError(MALFORMED, f"{len(fields)} fields, expected 7")
    date, open_, high, low, close, volume, ticker = fields
    opened = _iso_utc(date)
    if opened is None:
        raise RowError(MALFORMED, f"date {date!r} is not YYYY-MM-DD HH:MM:SS")
    if _outside(opened + SAMPLE_INTERVAL, start, end):
        return None
    if ticker != f"{file.symbol}USDT":
        raise RowError(MALFORMED, f"ticker {ticker!r} in the {file.symbol} file")
    o, h, lo, c = _prices(open_, high, low, close)
    return RawCandle(opened + SAMPLE_INTERVAL, o, h, lo, c, _volume(volume), 0, where), None


def _parse_cdd(
    fields: list[str],
    file: SampleFile,
    where: str,
    start: datetime | None,
    end: datetime | None,
) -> tuple[RawCandle, str | None] | None:
    if len(fields) != 10:
        raise RowError(MALFORMED, f"{len(fields)} fields, expected 10")
    unix, date, symbol, open_, high, low, close, volume = fields[:8]
    try:
        stamp = Decimal(unix)
    except InvalidOperation:
        raise RowError(MALFORMED, f"unix {unix!r} is not a number") from None
    if not stamp.is_finite():
        raise RowError(MALFORMED, f"unix {unix!r} is not a number")
    in_ms = stamp >= _MS_THRESHOLD
    opened = epoch_seconds(stamp / 1000 if in_ms else stamp, field="unix")
    if _outside(opened + SAMPLE_INTERVAL, start, end):
        return None
    if symbol != f"{file.symbol}/USDT":
        raise RowError(MALFORMED, f"symbol {symbol!r} in the {file.symbol} file")
    written = _cdd_date(date)
    note = None
    if written is None:
        note = "date text unreadable (unix used)"
    elif written != opened:
        note = "date text disagrees with unix (unix used)"
    o, h, lo, c = _prices(open_, high, low, close)
    # The newer export format (unix ms, 8 decimals) ranks above its rounded twin.
    rank = 1 if in_ms else 0
    return RawCandle(opened + SAMPLE_INTERVAL, o, h, lo, c, _volume(volume), rank, where), note


def _iso_utc(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@lru_cache(maxsize=4096)
def _day(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        return None


def _cdd_date(text: str) -> datetime | None:
    """``2021-06-10 00:00:00`` or ``2017-08-17 04-AM`` (12-hour clock)."""
    text = text.strip()
    if len(text) == 16 and text[13] == "-" and text[14:] in ("AM", "PM"):
        day = _day(text[:10])
        try:
            hour = int(text[11:13])
        except ValueError:
            return None
        if day is None:
            return None
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if text[14:] == "PM" else 0)
        return day + timedelta(hours=hour)
    return _iso_utc(text)
