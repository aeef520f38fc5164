"""The report of a training run (:func:`race.ml_service.train_model`), re-exported by
:mod:`race.ml_service`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class TrainReport:
    name: str
    version: str
    sha256: str
    status: str
    """``promoted`` or ``candidate`` (see the promotion rule of :mod:`race.ml_service`)."""
    reason: str
    """Why it was (or was not) promoted."""
    trained_until: datetime
    horizon: int
    symbols: list[str]
    train_rows: int
    test_rows: int
    train_start: datetime
    train_end: datetime
    test_start: datetime
    test_end: datetime
    accuracy: float
    precision: float | None
    """Of the "up" predictions on the held-out window, the share that did go up."""
    up_rate: float
    """Share of "up" labels in the held-out window."""
    baseline_accuracy: float
    """Accuracy of always answering the held-out window's majority class."""
    predicted_up: int
    seconds: float
    per_symbol: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """camelCase, as the API and the model's metadata (``trainRows``, ``perSymbol``…)."""
        data: dict[str, Any] = {}
        for key, value in asdict(self).items():
            head, *rest = key.split("_")
            data[head + "".join(part.title() for part in rest)] = (
                value.isoformat() if isinstance(value, datetime) else value
            )
        return data

    def render(self) -> str:
        """The report as printed by ``python -m race ml train`` (and the demo)."""
        return self.describe()

    def describe(self) -> str:
        precision = "n/a" if self.precision is None else f"{self.precision:.3f}"
        lines = [
            f"trained {self.name}@{self.version} on {', '.join(self.symbols)} "
            f"(candles before {self.trained_until.isoformat()}, horizon {self.horizon} candles)",
            f"  training rows  {self.train_rows:>7,}  {self.train_start.isoformat()} → "
            f"{self.train_end.isoformat()}",
            f"  held-out rows  {self.test_rows:>7,}  {self.test_start.isoformat()} → "
            f"{self.test_end.isoformat()}",
            f"  held-out accuracy {self.accuracy:.3f} (always-majority baseline "
            f"{self.baseline_accuracy:.3f}), precision(up) {precision} on "
            f"{self.predicted_up:,} up calls, up rate {self.up_rate:.3f}",
        ]
        for symbol, stats in self.per_symbol.items():
            lines.append(
                f"  {symbol}: accuracy {stats['accuracy']:.3f} on {stats['rows']:,} held-out rows"
            )
        lines.append(f"  stored in the database, sha256 {self.sha256[:16]}… ({self.seconds:.1f} s)")
        lines.append(f"  {self.status}: {self.reason}")
        return "\n".join(lines)
