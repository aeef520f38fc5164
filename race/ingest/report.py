"""What an ingestion run did: one :class:`AssetReport` per asset in an :class:`IngestReport`
(as JSON for the API, as a text table for the CLI)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from market.validation import CandleBatch, Gap
from race.domain.timeutil import format_interval, iso


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
            self.cover(first, last)

    def cover(self, first: datetime, last: datetime) -> None:
        """Widen the window this run covered to include ``first`` … ``last``."""
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

    def details(self, run_source: str) -> list[str]:
        """The lines under the table about this asset (the CLI's text report)."""
        details = []
        if self.source and self.source != run_source:
            details.append(f"source {self.source}")
        if self.rejected:
            details.append(
                "rejected " + ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items()))
            )
        if self.duplicates_differing:
            details.append(f"{self.duplicates_differing:,} duplicates had differing values")
        if self.gaps:
            shown = ", ".join(
                f"{iso(g.first_missing)}…{iso(g.last_missing)} ({g.missing})" for g in self.gaps[:3]
            )
            more = f" and {len(self.gaps) - 3} more" if len(self.gaps) > 3 else ""
            details.append(f"gaps {shown}{more}")
        details += self.notes
        if self.error:
            details.append(f"ERROR: {self.error}")
        return details


_TOTALS = (
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
_NO_ASSETS = (
    "(no enabled assets for this source: `python -m race assets list`, "
    "`assets add SYMBOL COINGECKO_ID`, `assets enable SYMBOL`)"
)


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
        totals = {key: sum(getattr(a, attr) for a in self.assets) for key, attr in _TOTALS}
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
        columns, rows = self._table()
        widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(
                cell.ljust(w) if i in (0, len(cells) - 1) else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()

        out = [self._head(), line(columns), line(["-" * w for w in widths])]
        out += [line(r) for r in rows]
        if not rows:
            out.append(_NO_ASSETS)
        for a in self.assets:
            out += [f"  {a.symbol}: {detail}" for detail in a.details(self.source)]
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)

    def _head(self) -> str:
        head = f"ingest from {self.source}"
        if self.plan:
            head += f" ({self.plan} plan)"
        head += f", {format_interval(self.interval)} candles"
        if self.start or self.end:
            head += f", {iso(self.start) or '…'} → {iso(self.end) or 'now'}"
        return head

    def _table(self) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
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
        return columns, rows
