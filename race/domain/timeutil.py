"""UTC time helpers. The core never reads the wall clock: callers pass times in."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_INTERVAL = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_interval(text: str | timedelta) -> timedelta:
    """``"15m"`` → 15 minutes, ``"1h"``, ``"4h"``, ``"1d"``… A bad value names itself."""
    if isinstance(text, timedelta):
        value = text
    else:
        match = _INTERVAL.match(str(text))
        if not match:
            raise ValueError(
                f"interval {text!r} is not understood: use a number and a unit, e.g. 15m, 1h, 1d"
            )
        value = timedelta(**{_UNITS[match.group(2).lower()]: int(match.group(1))})
    if value <= timedelta(0):
        raise ValueError(f"interval {text!r} must be positive")
    return value


def format_interval(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def ensure_utc(value: datetime, *, field: str = "time") -> datetime:
    """Timezone-aware UTC. A naive datetime is refused: we never guess a zone."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{field} must be timezone-aware (UTC), got naive {value.isoformat()}")
    return value.astimezone(UTC)


def parse_iso(text: str, *, field: str = "time") -> datetime:
    """ISO-8601 → aware UTC. A date or a naive datetime is taken as UTC (documented)."""
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{field} {text!r} is not an ISO-8601 date/time") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def floor_time(value: datetime, interval: timedelta) -> datetime:
    """Floor to the interval grid anchored at the Unix epoch (UTC)."""
    value = ensure_utc(value)
    step = int(interval.total_seconds() * 1_000_000)
    micros = (value - EPOCH) // timedelta(microseconds=1)
    return EPOCH + timedelta(microseconds=(micros // step) * step)


def grid(start: datetime, end: datetime, interval: timedelta) -> list[datetime]:
    """Every grid time in ``[start, end]`` (start rounded up to the grid)."""
    first = floor_time(start, interval)
    if first < ensure_utc(start):
        first += interval
    times: list[datetime] = []
    current = first
    end = ensure_utc(end)
    while current <= end:
        times.append(current)
        current += interval
    return times


def iso(value: datetime | None) -> str | None:
    """ISO-8601 with an explicit ``+00:00`` offset, or None."""
    if value is None:
        return None
    return ensure_utc(value).isoformat()
