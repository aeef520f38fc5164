"""UTC time helpers: intervals, parsing, the epoch grid."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone, tzinfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from race.domain.timeutil import (
    EPOCH,
    ensure_utc,
    floor_time,
    format_interval,
    grid,
    iso,
    parse_interval,
    parse_iso,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
PLUS2 = timezone(timedelta(hours=2))


class NoOffset(tzinfo):
    """A zone that does not know its offset: as unusable as none at all."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("4H", timedelta(hours=4)),
        (" 2 d ", timedelta(days=2)),
        ("30s", timedelta(seconds=30)),
        ("1w", timedelta(weeks=1)),
        ("1M", timedelta(minutes=1)),
        (timedelta(minutes=5), timedelta(minutes=5)),
    ],
)
def test_parse_interval(text, expected):
    assert parse_interval(text) == expected


@pytest.mark.parametrize("text", ["", "h", "1", "1.5h", "1y", "-1h", "1h1", "x1h", "1 h m"])
def test_parse_interval_refuses_what_it_does_not_understand(text):
    with pytest.raises(ValueError, match=r"is not understood: use a number and a unit, e\.g\. 15m"):
        parse_interval(text)


@pytest.mark.parametrize("value", ["0h", "0m", timedelta(0), timedelta(hours=-1)])
def test_parse_interval_must_be_positive(value):
    with pytest.raises(ValueError, match=r"must be positive$") as info:
        parse_interval(value)
    assert str(info.value).startswith(f"interval {value!r} ")


def test_parse_interval_accepts_the_smallest_positive_span():
    assert parse_interval(timedelta(microseconds=1)) == timedelta(microseconds=1)
    assert parse_interval("1s") == timedelta(seconds=1)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(days=1), "1d"),
        (timedelta(weeks=1), "7d"),
        (timedelta(hours=1), "1h"),
        (timedelta(hours=36), "36h"),
        (timedelta(minutes=90), "90m"),
        (timedelta(minutes=1), "1m"),
        (timedelta(seconds=45), "45s"),
        (timedelta(seconds=3601), "3601s"),
        (timedelta(seconds=86460), "1441m"),
    ],
)
def test_format_interval(value, text):
    assert format_interval(value) == text
    assert parse_interval(text) == value


def test_ensure_utc_converts_and_refuses_naive_times():
    assert ensure_utc(datetime(2024, 1, 1, 2, tzinfo=PLUS2)) == T0
    assert ensure_utc(datetime(2024, 1, 1, 2, tzinfo=PLUS2)).tzinfo is UTC
    with pytest.raises(
        ValueError, match=r"^start must be timezone-aware \(UTC\), got naive 2024-01-01T00:00:00$"
    ):
        ensure_utc(datetime(2024, 1, 1), field="start")
    with pytest.raises(ValueError, match=r"^time must be timezone-aware"):
        ensure_utc(datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        ensure_utc(datetime(2024, 1, 1, tzinfo=NoOffset()))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01T00:00:00Z", T0),
        ("2024-01-01T00:00:00z", T0),
        (" 2024-01-01T02:00:00+02:00 ", T0),
        ("2024-01-01", T0),
        ("2024-01-01T00:00:00", T0),
        ("2023-12-31T19:00:00-05:00", T0),
    ],
)
def test_parse_iso(text, expected):
    value = parse_iso(text)
    assert value == expected
    assert value.tzinfo is UTC


@pytest.mark.parametrize("text", ["yesterday", "2024-13-01", "", "Z"])
def test_parse_iso_names_the_field(text):
    with pytest.raises(ValueError, match=r"^since .* is not an ISO-8601 date/time$"):
        parse_iso(text, field="since")
    with pytest.raises(ValueError, match=r"^time "):
        parse_iso(text)


def test_floor_time_and_grid_membership():
    hour = timedelta(hours=1)
    assert floor_time(T0 + timedelta(minutes=59, seconds=59), hour) == T0
    assert floor_time(T0, hour) == T0
    assert floor_time(T0 - timedelta(microseconds=1), hour) == T0 - hour
    assert floor_time(datetime(2024, 1, 1, 2, 30, tzinfo=PLUS2), hour) == T0
    # anchored at the epoch, and before it too (floor, not truncation towards zero)
    assert floor_time(EPOCH - timedelta(minutes=30), hour) == EPOCH - hour
    assert floor_time(T0 + timedelta(minutes=7), timedelta(minutes=15)) == T0
    assert floor_time(T0 + timedelta(microseconds=7), timedelta(microseconds=5)) == T0 + timedelta(
        microseconds=5
    )
    assert floor_time(T0 + timedelta(hours=5), timedelta(days=1)) == T0
    # a grid time floors to itself, in any zone; a time off the grid does not
    assert floor_time(T0, hour) == T0
    on_grid_plus2 = datetime(2024, 1, 1, 3, tzinfo=PLUS2)
    assert floor_time(on_grid_plus2, hour) == on_grid_plus2
    assert floor_time(T0 + timedelta(seconds=1), hour) != T0 + timedelta(seconds=1)
    with pytest.raises(ValueError, match="timezone-aware"):
        floor_time(datetime(2024, 1, 1), hour)


def test_grid_is_inclusive_and_rounds_the_start_up():
    hour = timedelta(hours=1)
    assert grid(T0, T0 + 2 * hour, hour) == [T0, T0 + hour, T0 + 2 * hour]
    assert grid(T0 + timedelta(minutes=1), T0 + 2 * hour, hour) == [T0 + hour, T0 + 2 * hour]
    assert grid(T0, T0 + 2 * hour - timedelta(seconds=1), hour) == [T0, T0 + hour]
    assert grid(T0, T0, hour) == [T0]
    assert grid(T0 + timedelta(minutes=1), T0 + timedelta(minutes=2), hour) == []
    assert grid(T0 + hour, T0, hour) == []
    # other zones: the same instants
    assert grid(datetime(2024, 1, 1, 2, tzinfo=PLUS2), T0 + hour, hour) == [T0, T0 + hour]
    assert grid(T0, datetime(2024, 1, 1, 3, tzinfo=PLUS2), hour) == [T0, T0 + hour]


def test_iso():
    assert iso(None) is None
    assert iso(T0) == "2024-01-01T00:00:00+00:00"
    assert iso(datetime(2024, 1, 1, 2, tzinfo=PLUS2)) == "2024-01-01T00:00:00+00:00"


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1960, 1, 1),
        max_value=datetime(2090, 1, 1),
        timezones=st.just(UTC),
    ),
    st.sampled_from(
        [timedelta(minutes=1), timedelta(minutes=15), timedelta(hours=1), timedelta(days=1)]
    ),
)
def test_floor_is_the_last_grid_time_at_or_before(when, interval):
    floored = floor_time(when, interval)
    assert floored <= when < floored + interval
    assert (floored - EPOCH) % interval == timedelta(0)
    assert floor_time(floored, interval) == floored
    assert grid(when, when + interval, interval)[0] - when < interval


def test_naive_iso_is_utc_whatever_the_local_zone(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert parse_iso("2024-01-01T00:00:00") == T0
        assert parse_iso("2024-01-01") == T0
    finally:
        monkeypatch.undo()
        time.tzset()


def test_floor_time_is_exact_far_from_the_epoch():
    last = datetime.max.replace(tzinfo=UTC)
    assert floor_time(last, timedelta(microseconds=1)) == last
    assert floor_time(last, timedelta(microseconds=2)) == last - timedelta(microseconds=1)
