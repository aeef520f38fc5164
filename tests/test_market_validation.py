"""The candle checks (market.validation) and candle building (market.aggregate): pure."""

from __future__ import annotations

import logging
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from market import validation as v
from market.aggregate import (
    PricePoint,
    batch_at_interval,
    bucket_close,
    candles_from_points,
    resample,
)
from market.validation import (
    Gap,
    RawCandle,
    ValidationLimits,
    epoch_ms,
    find_gaps,
    json_number,
    text_number,
    validate_candles,
)
from race.domain.model import Candle

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
T0 = datetime(2024, 1, 1, tzinfo=UTC)
NOW = T0 + 100 * HOUR


def raw(i: int, o="100", h="101", lo="99", c="100.5", vol: str | None = "5", **kw) -> RawCandle:
    def d(x: str | None) -> Decimal | None:
        return None if x is None else Decimal(x)

    return RawCandle(T0 + i * HOUR, d(o), d(h), d(lo), d(c), d(vol), **kw)


def check(rows, **kw):
    kw.setdefault("now", NOW)
    return validate_candles(rows, symbol="BTC", interval=HOUR, **kw)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (raw(1, o="NaN"), v.NON_FINITE),
        (raw(1, c="Infinity"), v.NON_FINITE),
        (raw(1, h="-Infinity"), v.NON_FINITE),
        (raw(1, o="0"), v.NON_POSITIVE),
        (raw(1, lo="-1"), v.NON_POSITIVE),
        (raw(1, h="98", lo="99"), v.HIGH_BELOW_LOW),
        (raw(1, h="100.2"), v.HIGH_BELOW_BODY),
        (raw(1, lo="100.1"), v.LOW_ABOVE_BODY),
        (raw(1, vol="-3"), v.BAD_VOLUME),
        (raw(1, vol="NaN"), v.BAD_VOLUME),
        (raw(1, vol="1e11"), v.BAD_VOLUME),
        (raw(1, o="1e20", h="1e20", lo="1e20", c="1e20"), v.PRICE_TOO_LARGE),
        (raw(1, h="2e10"), v.PRICE_TOO_LARGE),
        (
            RawCandle(T0 + HOUR + timedelta(minutes=7), *[Decimal(x) for x in "1211"]),
            v.OFF_GRID,
        ),
        (raw(1, o="100", h="250", lo="100", c="120"), v.IMPLAUSIBLE_RANGE),
        (raw(102), v.FUTURE),
    ],
)
def test_each_rule_rejects_with_its_reason(row, reason):
    batch = check([raw(0), row])
    assert batch.rejected == {reason: 1}
    assert [c.close_time for c in batch.candles] == [T0]
    rejection = batch.rejections[0]
    assert rejection.reason == reason
    assert reason in rejection.describe()


def test_open_candle_is_set_aside_not_rejected():
    now = T0 + 5 * HOUR + timedelta(minutes=20)
    batch = check([raw(i) for i in range(7)], now=now)
    assert [c.close_time for c in batch.candles] == [T0 + i * HOUR for i in range(6)]
    assert batch.open == 1  # closes at 06:00, still forming at 05:20
    assert not batch.rejections
    assert batch.open_times == [T0 + 6 * HOUR]


def test_candle_closing_exactly_now_is_closed_and_one_starting_now_is_open():
    batch = check([raw(0), raw(1), raw(2)], now=T0 + HOUR)
    assert [c.close_time for c in batch.candles] == [T0, T0 + HOUR]
    assert batch.open == 1
    assert not batch.rejections


def test_duplicates_collapse_identical_and_rank_decides_differing():
    rows = [
        raw(3),
        raw(1),
        raw(1),  # identical twin
        raw(2, c="100.4", rank=0, where="old format"),
        raw(2, c="100.6", rank=1, where="new format"),
        raw(2, c="100.7", rank=0),
    ]
    batch = check(rows)
    assert [c.close_time for c in batch.candles] == [T0 + i * HOUR for i in (1, 2, 3)]
    assert batch.duplicates == 3
    assert batch.duplicates_differing == 2
    assert batch.candles[1].close == Decimal("100.6")
    assert batch.fetched == 6


def test_equal_rank_duplicates_keep_the_first_received():
    batch = check([raw(1, c="100.1"), raw(1, c="100.2")])
    assert batch.candles[0].close == Decimal("100.1")
    assert (batch.duplicates, batch.duplicates_differing) == (1, 1)


def test_invalid_twin_never_displaces_a_valid_row():
    batch = check([raw(1, c="NaN", rank=5), raw(1)])
    assert len(batch.candles) == 1
    assert batch.rejected == {v.NON_FINITE: 1}
    assert batch.duplicates == 0


def test_out_of_order_rows_come_out_sorted():
    order = [5, 0, 3, 1, 4, 2]
    batch = check([raw(i) for i in order])
    assert [c.close_time for c in batch.candles] == [T0 + i * HOUR for i in range(6)]


def test_implausible_jump_against_the_previous_candle():
    limits = ValidationLimits(max_move=Decimal("0.2"))
    rows = [
        raw(1),
        raw(2, o="100", h="131", lo="99", c="130"),  # close +29 % → rejected
        raw(3, o="131", h="132", lo="129", c="130"),  # previous rejected: nothing to compare
        raw(4, o="200", h="201", lo="129", c="131"),  # open +54 % against 130 → rejected
    ]
    reference = Candle("BTC", T0, *[Decimal(100)] * 4)
    batch = check(rows, limits=limits, reference=reference)
    assert batch.rejected == {v.IMPLAUSIBLE_MOVE: 2}
    assert [c.close_time for c in batch.candles] == [T0 + HOUR, T0 + 3 * HOUR]
    assert all("previous close" in r.detail for r in batch.rejections)


def test_the_stored_reference_candle_counts_for_the_first_row():
    reference = Candle("BTC", T0, *[Decimal(10)] * 4)
    batch = check([raw(1)], limits=ValidationLimits(max_move=Decimal("0.5")), reference=reference)
    assert batch.rejected == {v.IMPLAUSIBLE_MOVE: 1}
    assert check([raw(1)], reference=Candle("BTC", T0, *[Decimal(90)] * 4)).candles


def test_moves_are_not_compared_across_a_gap():
    rows = [raw(0), raw(5, o="300", h="301", lo="299", c="300")]
    batch = check(rows, limits=ValidationLimits(max_move=Decimal("0.1")))
    assert len(batch.candles) == 2


def test_parse_rejections_are_carried_and_counted():
    carried = [v.Rejection(v.MALFORMED, "3 fields, expected 5", None, "row 7")]
    batch = check([raw(0)], rejections=carried)
    assert batch.rejected == {v.MALFORMED: 1}
    assert batch.fetched == 2


def test_values_are_stored_at_eight_decimals():
    batch = check([raw(0, o="1.123456789", h="2", lo="1", c="1.5", vol="0.000000005")])
    candle = batch.candles[0]
    assert candle.open == Decimal("1.12345679")
    assert candle.volume == Decimal("0.00000000")


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="RACE_CANDLE_MAX_MOVE"):
        ValidationLimits(max_move=Decimal(0))
    with pytest.raises(ValueError, match="RACE_CANDLE_MAX_RANGE"):
        ValidationLimits(max_range=Decimal("NaN"))


def test_number_readers():
    assert json_number(1, field="x") == 1
    assert json_number(0.1, field="x") == Decimal("0.1")
    assert json_number(float("nan"), field="x").is_nan()
    assert json_number(float("inf"), field="x") == Decimal("Infinity")
    for bad in ("1.0", None, True, [1]):
        with pytest.raises(v.RowError) as info:
            json_number(bad, field="open")
        assert info.value.reason == v.NOT_A_NUMBER
    assert text_number(" 2.5 ", field="x") == Decimal("2.5")
    with pytest.raises(v.RowError):
        text_number("abc", field="x")
    assert epoch_ms(1704067200000) == T0
    assert epoch_ms(1704067200000.0) == T0
    for bad in ("1704067200000", 1.5, True, -1, 10**16, float("nan")):
        with pytest.raises(v.RowError) as info:
            epoch_ms(bad)
        assert info.value.reason == v.MALFORMED


def test_find_gaps():
    times = [T0, T0 + HOUR, T0 + 4 * HOUR, T0 + 5 * HOUR, T0 + 7 * HOUR]
    assert find_gaps(times, HOUR) == [
        Gap(T0 + 2 * HOUR, T0 + 3 * HOUR, 2),
        Gap(T0 + 6 * HOUR, T0 + 6 * HOUR, 1),
    ]
    assert find_gaps([], HOUR) == []
    assert find_gaps([T0], HOUR) == []
    assert Gap(T0, T0, 1).as_dict() == {"from": T0.isoformat(), "to": T0.isoformat(), "missing": 1}


# ---------------------------------------------------------------- aggregation


def half_hours(n: int, start=T0) -> list[Candle]:
    step = timedelta(minutes=30)
    out = []
    for i in range(n):
        price = Decimal(100 + i)
        out.append(
            Candle(
                "BTC", start + step * (i + 1), price, price + 2, price - 1, price + 1, Decimal(1)
            )
        )
    return out


def test_bucket_close():
    assert bucket_close(T0, HOUR) == T0
    assert bucket_close(T0 + timedelta(seconds=1), HOUR) == T0 + HOUR
    assert bucket_close(T0 + timedelta(minutes=59), HOUR) == T0 + HOUR


def test_resample_combines_complete_buckets_only():
    parts = half_hours(6)  # 00:30 … 03:00
    del parts[2]  # 01:30 missing → the 02:00 hour is incomplete
    built, incomplete, still_open = resample(parts, timedelta(minutes=30), HOUR, now=T0 + 10 * HOUR)
    assert [c.close_time for c in built] == [T0 + HOUR, T0 + 3 * HOUR]
    first = built[0]
    assert (first.open, first.high, first.low, first.close) == (
        Decimal(100),
        Decimal(103),
        Decimal(99),
        Decimal(102),
    )
    assert first.volume == Decimal(2)
    assert [(r.reason, r.close_time) for r in incomplete] == [(v.INCOMPLETE, T0 + 2 * HOUR)]
    assert still_open == []


def test_resample_keeps_volume_unknown_when_a_part_lacks_it():
    parts = half_hours(2)
    parts[1] = Candle("BTC", parts[1].close_time, *(Decimal(1) for _ in range(4)), None)
    built, _, _ = resample(parts, timedelta(minutes=30), HOUR, now=None)
    assert built[0].volume is None


def test_resample_sets_aside_the_open_bucket_and_refuses_non_multiples():
    parts = half_hours(3)  # 00:30, 01:00, 01:30
    built, incomplete, still_open = resample(
        parts, timedelta(minutes=30), HOUR, now=T0 + timedelta(minutes=95)
    )
    assert [c.close_time for c in built] == [T0 + HOUR]
    assert still_open == [T0 + 2 * HOUR]
    assert not incomplete
    with pytest.raises(ValueError, match="multiple"):
        resample(parts, timedelta(minutes=45), HOUR, now=None)


def test_batch_at_interval_counts_the_open_hour_once():
    rows = [
        RawCandle(c.close_time, c.open, c.high, c.low, c.close, c.volume) for c in half_hours(4)
    ]
    now = T0 + timedelta(minutes=100)  # 01:40: the 02:00 half-hour is still open
    batch = batch_at_interval(
        rows,
        symbol="BTC",
        source=timedelta(minutes=30),
        interval=HOUR,
        now=now,
        limits=ValidationLimits(),
    )
    assert [c.close_time for c in batch.candles] == [T0 + HOUR]
    assert batch.open == 1
    assert not batch.rejections


def test_candles_from_points():
    points = [
        PricePoint(T0 - timedelta(minutes=58), Decimal(100), Decimal(7)),
        PricePoint(T0 + timedelta(minutes=2), Decimal(101), Decimal(8)),
        PricePoint(T0 + timedelta(minutes=30), Decimal(104), None),
        PricePoint(T0 + timedelta(minutes=62), Decimal(102), Decimal(9)),
        # 02:00 … 03:00 has no point: no candle (a gap), not an invented one
        PricePoint(T0 + timedelta(minutes=190), Decimal(99), Decimal(9)),
        PricePoint(T0 + timedelta(minutes=310), Decimal(98), Decimal(5)),
        PricePoint(T0 + timedelta(minutes=340), Decimal(97), Decimal(6)),
    ]
    built = candles_from_points(
        points, HOUR, first_close=T0 + HOUR, last_close=T0 + 6 * HOUR, now=T0 + 6 * HOUR
    )
    assert [c.close_time for c in built.candles] == [T0 + HOUR, T0 + 2 * HOUR, T0 + 6 * HOUR]
    first, second, last = built.candles
    # open = the last point at or before the open time (the previous hour's last point);
    # close = the last point at or before the close; high/low over those and the points inside
    assert (first.open, first.high, first.low, first.close) == (
        Decimal(100),
        Decimal(104),
        Decimal(100),
        Decimal(104),
    )
    assert (second.open, second.close) == (Decimal(104), Decimal(102))  # a real move
    assert first.volume is None and first.quote_volume_24h is None  # none at its close point
    assert second.volume is None and second.quote_volume_24h == Decimal(9)
    # 04:00 is one point with nothing in the hour before its open: no open price, so no
    # (flat, made-up) candle; 06:00 has no previous point either, but two of its own
    assert [(r.reason, r.close_time) for r in built.rejections] == [(v.INCOMPLETE, T0 + 4 * HOUR)]
    assert (last.open, last.close, last.high, last.low) == (
        Decimal(98),
        Decimal(97),
        Decimal(98),
        Decimal(97),
    )
    assert built.open == 0

    still = candles_from_points(
        points[:4], HOUR, first_close=T0 + HOUR, last_close=T0 + 2 * HOUR, now=T0 + 100 * MINUTE
    )
    assert [c.close_time for c in still.candles] == [T0 + HOUR]
    assert still.open == 1 and not still.rejections  # 02:00 is still forming at 01:40
    unsettled = candles_from_points(
        points[:4],
        HOUR,
        first_close=T0 + HOUR,
        last_close=T0 + 2 * HOUR,
        now=T0 + 130 * MINUTE,
        settle=15 * MINUTE,
    )
    assert [c.close_time for c in unsettled.candles] == [T0 + HOUR]
    assert unsettled.open == 1  # 02:00 closed 10 minutes before now: not settled yet
    later = candles_from_points(
        points, HOUR, first_close=T0 + HOUR, last_close=T0 + 2 * HOUR, now=T0 + 70 * HOUR
    )
    assert [c.close_time for c in later.candles] == [T0 + HOUR, T0 + 2 * HOUR]
    # points after the requested end are counted, never dropped silently
    assert [(r.reason, r.close_time) for r in later.rejections] == [
        (v.OUT_OF_RANGE, p.time) for p in points[4:]
    ]


def test_candles_from_points_never_use_a_point_after_the_close():
    points = [
        PricePoint(T0 + timedelta(minutes=m), Decimal(100 + m), None) for m in range(2, 300, 60)
    ]
    for last in range(2, 6):
        built = candles_from_points(
            points, HOUR, first_close=T0, last_close=T0 + last * HOUR, now=T0 + 10 * HOUR
        )
        for candle in built.candles:
            allowed = [p.price for p in points if p.time <= candle.close_time]
            assert candle.close == allowed[-1]
            assert max(candle.high, candle.open, candle.low) <= max(allowed)


def test_unsettled_candles_count_as_open_and_future_ones_are_rejected():
    settle = timedelta(minutes=15)
    now = T0 + 5 * HOUR + timedelta(minutes=10)
    assert v.candle_state(T0 + 5 * HOUR, HOUR, now) is None
    assert v.candle_state(T0 + 5 * HOUR, HOUR, now, settle) == "open"  # closed 10 min ago
    assert v.candle_state(T0 + 5 * HOUR, HOUR, now + timedelta(minutes=5), settle) is None
    assert v.candle_state(T0 + 6 * HOUR, HOUR, now, settle) == "open"  # still forming
    assert v.candle_state(T0 + 7 * HOUR, HOUR, now, settle) == "future"
    batch = check([raw(i) for i in range(8)], now=now, settle=settle)
    assert [c.close_time for c in batch.candles] == [T0 + i * HOUR for i in range(5)]
    assert batch.open == 2 and batch.open_times == [T0 + 5 * HOUR, T0 + 6 * HOUR]
    assert batch.rejected == {v.FUTURE: 1}


def test_a_24h_quote_volume_is_checked_and_kept_apart_from_volume():
    rows = [
        raw(0, quote_volume_24h=Decimal("190460293531.53802")),
        raw(1, quote_volume_24h=Decimal("NaN")),
        raw(2, quote_volume_24h=Decimal("-1")),
        raw(3, vol=None, quote_volume_24h=None),
        raw(4, quote_volume_24h=Decimal("1e18")),  # beyond its column
    ]
    batch = check(rows)
    assert batch.rejected == {v.BAD_VOLUME: 3}
    first, last = batch.candles
    assert first.volume == Decimal(5)
    assert first.quote_volume_24h == Decimal("190460293531.54")  # cents, half-even
    assert (last.volume, last.quote_volume_24h) == (None, None)


# ---------------------------------------------------------------- properties


def cents(n: int) -> Decimal:
    return Decimal(n).scaleb(-2)


CORRUPTIONS = (
    "nan",
    "infinite",
    "zero",
    "negative",
    "too_large",
    "high_below_body",
    "low_above_body",
    "bad_volume",
    "bad_quote",
    "wide_range",
    "jump",
)


@st.composite
def candle_rows(draw: st.DrawFn) -> RawCandle:
    """A plausible candle most of the time (prices 80–120, so no two of them are more than
    50 % apart and no range exceeds 100 %); one in ten has one thing wrong with it."""
    i = draw(st.integers(0, 105))
    minute = draw(st.sampled_from([0] * 9 + [30]))
    o, c = cents(draw(st.integers(8000, 12000))), cents(draw(st.integers(8000, 12000)))
    h = max(o, c) + cents(draw(st.integers(0, 1000)))
    lo = min(o, c) - cents(draw(st.integers(0, 1000)))
    vol = draw(st.one_of(st.none(), st.integers(0, 10**5).map(lambda n: Decimal(n).scaleb(-3))))
    quote = draw(st.one_of(st.none(), st.integers(0, 10**11).map(cents)))
    if draw(st.integers(0, 9)) == 9:
        kind = draw(st.sampled_from(CORRUPTIONS))
        event(f"corrupted: {kind}")
        bad = {
            "nan": Decimal("NaN"),
            "infinite": draw(st.sampled_from([Decimal("Infinity"), Decimal("-Infinity")])),
            "zero": Decimal(0),
            "negative": Decimal("-1.5"),
        }
        if kind in bad:
            field = draw(st.sampled_from(["o", "h", "lo", "c"]))
            o, h, lo, c = (
                bad[kind] if name == field else x
                for name, x in (("o", o), ("h", h), ("lo", lo), ("c", c))
            )
        elif kind == "too_large":
            o = h = lo = c = Decimal("2e10")
        elif kind == "high_below_body":
            h = max(o, c) - Decimal("0.01")
        elif kind == "low_above_body":
            lo = min(o, c) + Decimal("0.01")
        elif kind == "bad_volume":
            vol = draw(st.sampled_from([Decimal(-1), Decimal("NaN"), Decimal("1e11")]))
        elif kind == "bad_quote":
            quote = draw(st.sampled_from([Decimal(-1), Decimal("Infinity"), Decimal("1e17")]))
        elif kind == "wide_range":
            lo = lo / 3
        else:  # a jump of at least 2.5× against any neighbour
            o, h, lo, c = (x * 3 for x in (o, h, lo, c))
    rank = draw(st.integers(0, 1))
    return RawCandle(T0 + i * HOUR + timedelta(minutes=minute), o, h, lo, c, vol, rank, "", quote)


rows_strategy = st.lists(candle_rows(), max_size=30)


def test_accepted_candles_are_always_clean():
    """The property runs on real accepted candles: across the examples most rows are
    accepted (and, still, several rejection reasons are met)."""
    rows_seen = accepted = examples_with_rows = examples_accepting = 0
    reasons: Counter[str] = Counter()

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(rows_strategy)
    def clean(rows: list[RawCandle]) -> None:
        nonlocal rows_seen, accepted, examples_with_rows, examples_accepting
        batch = assert_clean(rows)
        event("accepted some" if batch.candles else "accepted none")
        rows_seen += len(rows)
        accepted += len(batch.candles)
        examples_with_rows += bool(rows)
        examples_accepting += bool(batch.candles)
        reasons.update(batch.rejected)

    clean()
    assert accepted >= rows_seen * 0.5, (accepted, rows_seen)
    assert examples_accepting >= examples_with_rows * 0.8, (examples_accepting, examples_with_rows)
    # the rejections are exercised too: the grid, the clock and several price rules
    assert {v.OFF_GRID, v.FUTURE} <= set(reasons) and len(reasons) >= 5, reasons


def assert_clean(rows: list[RawCandle]) -> v.CandleBatch:
    limits = ValidationLimits(max_move=Decimal("0.5"), max_range=Decimal("1"))
    batch = check(rows, limits=limits)
    times = [c.close_time for c in batch.candles]
    assert times == sorted(set(times))
    previous = None
    for candle in batch.candles:
        assert candle.close_time <= NOW
        assert (candle.close_time - T0) % HOUR == timedelta(0)
        for price in (candle.open, candle.high, candle.low, candle.close):
            assert price.is_finite() and price > 0
        assert candle.low <= min(candle.open, candle.close)
        assert candle.high >= max(candle.open, candle.close)
        assert candle.high - candle.low <= limits.max_range * candle.low
        assert candle.volume is None or 0 <= candle.volume <= v.MAX_VOLUME
        assert candle.quote_volume_24h is None or candle.quote_volume_24h >= 0
        if previous is not None and previous.close_time == candle.close_time - HOUR:
            for price in (candle.open, candle.close):
                assert abs(price - previous.close) <= limits.max_move * previous.close
        previous = candle
    # every row is accounted for exactly once
    accounted = len(batch.candles) + batch.duplicates + batch.open + len(batch.rejections)
    assert accounted == len(rows) == batch.fetched
    # nothing is repaired: each accepted candle equals (at 8 decimals) a row received
    received = {(r.close_time, r.open, r.high, r.low, r.close) for r in rows}
    for candle in batch.candles:
        assert (candle.close_time, candle.open, candle.high, candle.low, candle.close) in received
    return batch


@settings(max_examples=100, deadline=None)
@given(rows_strategy, st.randoms(use_true_random=False))
def test_validation_ignores_arrival_order_when_timestamps_are_unique(rows, rnd: random.Random):
    unique = list({r.close_time: r for r in rows}.values())
    shuffled = unique[:]
    rnd.shuffle(shuffled)
    assert check(unique).candles == check(shuffled).candles


@settings(max_examples=100, deadline=None)
@given(rows_strategy)
def test_validating_accepted_candles_again_changes_nothing(rows):
    first = check(rows)
    again = check(
        [
            RawCandle(
                c.close_time,
                c.open,
                c.high,
                c.low,
                c.close,
                c.volume,
                quote_volume_24h=c.quote_volume_24h,
            )
            for c in first.candles
        ]
    )
    assert again.candles == first.candles
    assert not again.rejections and again.duplicates == 0 and again.open == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 300), unique=True, max_size=80))
def test_gaps_plus_present_cover_the_whole_span(hours):
    times = sorted(T0 + h * HOUR for h in hours)
    gaps = find_gaps(times, HOUR)
    if times:
        span = int((times[-1] - times[0]) / HOUR) + 1
        assert len(times) + sum(g.missing for g in gaps) == span
    for gap in gaps:
        assert gap.first_missing not in times and gap.last_missing not in times
        assert (gap.last_missing - gap.first_missing) / HOUR + 1 == gap.missing


# ---------------------------------------------------------------- boundaries


@pytest.mark.parametrize(
    "row",
    [
        raw(1, o="100", h="100", lo="100", c="100"),  # doji, flat: all four equal
        raw(1, o="101", h="101", lo="99", c="100"),  # high == open
        raw(1, o="100", h="101", lo="99", c="101"),  # high == close
        raw(1, o="99", h="101", lo="99", c="100"),  # low == open
        raw(1, o="100", h="101", lo="99", c="99"),  # low == close
        raw(1, o="100", h="100", lo="99", c="99"),  # high == open, low == close
        raw(1, o="100", h="200", lo="100", c="150"),  # range exactly max_range (100 %)
        raw(1, o="1e10", h="1e10", lo="1e10", c="1e10"),  # prices exactly MAX_PRICE
        raw(1, vol="0"),
        raw(1, vol="9e10"),  # exactly MAX_VOLUME
        raw(1, quote_volume_24h=Decimal(0)),
        raw(1, quote_volume_24h=Decimal("9e16")),  # exactly MAX_QUOTE_VOLUME
        raw(1, o="0.00000001", h="0.00000001", lo="0.00000001", c="0.00000001"),
    ],
)
def test_rows_on_a_limit_are_accepted(row):
    assert v.check_row(row, HOUR, ValidationLimits()) is None
    batch = check([row])
    assert not batch.rejections
    assert [c.close_time for c in batch.candles] == [row.close_time]


@pytest.mark.parametrize(
    ("row", "reason", "detail"),
    [
        (raw(1, lo="0"), v.NON_POSITIVE, "low is 0"),
        (raw(1, c="-0.00000001"), v.NON_POSITIVE, "close is -1E-8"),
        (raw(1, h="10000000000.00000001"), v.PRICE_TOO_LARGE, "high is 10000000000.00000001"),
        (raw(1, vol="90000000000.00000001"), v.BAD_VOLUME, "volume 90000000000.00000001 is above"),
        (raw(1, vol="-0.00000001"), v.BAD_VOLUME, "volume is -1E-8"),
        (raw(1, vol="Infinity"), v.BAD_VOLUME, "volume is Infinity"),
        (raw(1, quote_volume_24h=Decimal("9e16") + 1), v.BAD_VOLUME, "24 h quote volume 9"),
        (raw(1, quote_volume_24h=Decimal("-0.01")), v.BAD_VOLUME, "24 h quote volume is -0.01"),
        (raw(1, o="100", h="200.00000001", lo="100", c="150"), v.IMPLAUSIBLE_RANGE, "100.0%"),
        (raw(1, o="100", h="99.99999999", lo="99", c="100"), v.HIGH_BELOW_BODY, "max(open 100"),
        (raw(1, o="100", h="101", lo="99", c="101.00000001"), v.HIGH_BELOW_BODY, "close 101.0"),
        (raw(1, o="99", h="101", lo="99.00000001", c="100"), v.LOW_ABOVE_BODY, "min(open 99,"),
        (raw(1, o="100", h="101", lo="99", c="98.99999999"), v.LOW_ABOVE_BODY, "close 98.9"),
        (raw(1, h="99", lo="99.5"), v.HIGH_BELOW_LOW, "high 99 < low 99.5"),
    ],
)
def test_rows_just_past_a_limit_are_rejected(row, reason, detail):
    problem = v.check_row(row, HOUR, ValidationLimits())
    assert problem is not None
    assert problem[0] == reason
    assert detail in problem[1]
    assert check([row]).rejected == {reason: 1}


@pytest.mark.parametrize(
    ("row", "reason", "detail"),
    [
        # the first rule broken is the one reported, in a fixed order
        (raw(1, o="NaN", h="-1", vol="-1"), v.NON_FINITE, "open is NaN"),
        (raw(1, o="1", h="2", lo="1", c="Infinity"), v.NON_FINITE, "close is Infinity"),
        (raw(1, o="-1", h="2e10", vol="-1"), v.NON_POSITIVE, "open is -1"),
        (raw(1, h="2e10", vol="-1"), v.PRICE_TOO_LARGE, "high is 2E+10, above 10,000,000,000 USD"),
        (
            raw(1, vol="-1", quote_volume_24h=Decimal(-1), h="98", lo="99"),
            v.BAD_VOLUME,
            "volume is -1",
        ),
        (
            raw(1, vol="1e11", quote_volume_24h=Decimal(-1)),
            v.BAD_VOLUME,
            "volume 1E+11 is above the storable 90,000,000,000",
        ),
        (
            raw(1, quote_volume_24h=Decimal("NaN"), h="98", lo="99"),
            v.BAD_VOLUME,
            "24 h quote volume is NaN",
        ),
        (
            raw(1, quote_volume_24h=Decimal("1e17"), h="98", lo="99"),
            v.BAD_VOLUME,
            "24 h quote volume 1E+17 is above the storable 90,000,000,000,000,000",
        ),
        (raw(1, h="98", lo="99"), v.HIGH_BELOW_LOW, "high 98 < low 99"),
        (
            RawCandle(T0 + HOUR + MINUTE, *[Decimal(x) for x in ("1", "1.1", "0.9", "1")]),
            v.OFF_GRID,
            "close time is not on the 1h grid",
        ),
        (
            raw(1, o="100", h="250", lo="100", c="120"),
            v.IMPLAUSIBLE_RANGE,
            "high/low range 150.0% exceeds 100% (high 250, low 100)",
        ),
    ],
)
def test_the_first_broken_rule_is_the_reason(row, reason, detail):
    problem = v.check_row(row, HOUR, ValidationLimits())
    assert problem is not None and problem[0] == reason and detail in problem[1]
    rejection = check([row]).rejections[0]
    assert (rejection.reason, rejection.close_time) == (reason, row.close_time)
    assert detail in rejection.detail


def test_off_grid_is_judged_on_the_interval_given():
    row = RawCandle(T0 + 15 * MINUTE, *[Decimal(x) for x in ("1", "1.1", "0.9", "1")])
    assert v.check_row(row, 15 * MINUTE, ValidationLimits()) is None
    assert v.check_row(row, HOUR, ValidationLimits())[0] == v.OFF_GRID
    batch = validate_candles([row], symbol="BTC", interval=15 * MINUTE, now=NOW)
    assert len(batch.candles) == 1


def test_a_move_exactly_on_the_limit_is_accepted():
    limits = ValidationLimits(max_move=Decimal("0.5"))
    reference = Candle("BTC", T0, *[Decimal(100)] * 4)
    on_limit = [raw(1, o="150", h="150", lo="150", c="150")]
    assert check(on_limit, limits=limits, reference=reference).candles
    down = [raw(1, o="50", h="50", lo="50", c="50")]
    assert check(down, limits=limits, reference=reference).candles
    for o, c in (("150.00000001", "150"), ("150", "150.00000001"), ("49.99999999", "50")):
        row = raw(1, o=o, h=max(o, c, key=Decimal), lo=min(o, c, key=Decimal), c=c)
        batch = check([row], limits=limits, reference=reference)
        assert batch.rejected == {v.IMPLAUSIBLE_MOVE: 1}, (o, c)
        name = "open" if o != "150" and o != "50" else "close"
        assert batch.rejections[0].detail.startswith(f"{name} ")
        assert batch.rejections[0].detail.endswith("from the previous close 100 (limit 50%)")
        assert batch.rejections[0].close_time == T0 + HOUR


def test_moves_are_measured_against_the_last_accepted_close_one_interval_back():
    limits = ValidationLimits(max_move=Decimal("0.1"))
    # the reference is two intervals back: nothing to compare against
    far = Candle("BTC", T0 - HOUR, *[Decimal(10)] * 4)
    assert check([raw(1)], limits=limits, reference=far).candles
    # every accepted candle becomes the base for the next
    rows = [raw(i, o=p, h=p, lo=p, c=p) for i, p in enumerate(["100", "109", "119", "131"])]
    batch = check(rows, limits=limits)
    assert [c.close for c in batch.candles] == [Decimal(p) for p in ("100", "109", "119")]
    assert batch.rejected == {v.IMPLAUSIBLE_MOVE: 1}
    # moves=False skips the comparison entirely
    assert len(check(rows, limits=limits, moves=False).candles) == 4


def test_candle_state_at_its_edges():
    now = T0 + 5 * HOUR
    settle = timedelta(minutes=15)
    assert v.candle_state(T0 + 5 * HOUR, HOUR, None) is None
    assert v.candle_state(T0 + 5 * HOUR, HOUR, now) is None  # closes exactly now
    assert v.candle_state(T0 + 5 * HOUR - settle, HOUR, now, settle) is None  # just settled
    assert v.candle_state(T0 + 5 * HOUR - settle + MINUTE, HOUR, now, settle) == "open"
    assert v.candle_state(T0 + 6 * HOUR, HOUR, now) == "open"  # starts exactly now
    assert v.candle_state(T0 + 6 * HOUR + MINUTE, HOUR, now) == "future"


def test_limits_refuse_what_is_not_a_positive_decimal():
    for bad in (Decimal(-1), Decimal("Infinity"), 0.5, "0.5"):
        with pytest.raises(ValueError, match=r"RACE_CANDLE_MAX_MOVE must be a positive number"):
            ValidationLimits(max_move=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"^RACE_CANDLE_MAX_RANGE must be a positive number"):
            ValidationLimits(max_range=bad)  # type: ignore[arg-type]
    tiny = ValidationLimits(max_move=Decimal("1e-9"), max_range=Decimal("1e-9"))
    assert tiny.max_move == Decimal("1e-9")


def test_number_readers_at_their_edges():
    assert json_number(-2, field="x") == Decimal(-2)
    assert json_number(float("-inf"), field="x") == Decimal("-Infinity")
    assert json_number(1e-7, field="x") == Decimal("1E-7")
    with pytest.raises(v.RowError, match=r"^open is str '1', not a number$"):
        json_number("1", field="open")
    with pytest.raises(v.RowError, match=r"^open is bool False, not a number$"):
        json_number(False, field="open")
    assert text_number("nan", field="x").is_nan()
    assert text_number("-inf", field="x") == Decimal("-Infinity")
    with pytest.raises(v.RowError, match=r"^close '' is not a number$") as info:
        text_number("", field="close")
    assert info.value.reason == v.NOT_A_NUMBER
    with pytest.raises(v.RowError, match=r"^when 'x' is not a unix time in milliseconds$"):
        epoch_ms("x", field="when")
    with pytest.raises(v.RowError, match=r"^when 1\.5 is not a whole number of milliseconds$"):
        epoch_ms(1.5, field="when")
    with pytest.raises(v.RowError, match="whole number"):
        epoch_ms(float("inf"))
    with pytest.raises(v.RowError, match=r"^timestamp .* is outside 2009-2100$"):
        epoch_ms(-1)
    assert epoch_ms(1704067200123) == T0 + timedelta(milliseconds=123)


def test_epoch_seconds_bounds():
    first = datetime(2009, 1, 3, tzinfo=UTC)
    end = datetime(2100, 1, 1, tzinfo=UTC)
    start = int((first - v.EPOCH).total_seconds())
    stop = int((end - v.EPOCH).total_seconds())
    assert v.epoch_seconds(start) == first  # the first second allowed
    assert v.epoch_seconds(Decimal(start)) == first
    assert v.epoch_seconds(stop - 1) == end - timedelta(seconds=1)
    assert v.epoch_seconds(Decimal(start) + Decimal("0.5")) == first + timedelta(milliseconds=500)
    for bad in (start - 1, stop, Decimal(stop)):
        with pytest.raises(v.RowError, match="outside 2009-2100") as info:
            v.epoch_seconds(bad, field="t")
        assert info.value.reason == v.MALFORMED
    for bad in (Decimal("NaN"), Decimal("Infinity"), 10**20):
        with pytest.raises(v.RowError, match=r"is not a usable unix time$"):
            v.epoch_seconds(bad)


def test_storage_scale_rounds_half_even():
    row = raw(
        0,
        o="1.000000005",
        h="1.000000015",
        lo="0.999999995",
        c="1.000000025",
        vol="0.000000015",
        quote_volume_24h=Decimal("0.005"),
    )
    candle = v.to_candle("ETH", row)
    assert candle.symbol == "ETH" and candle.close_time == T0
    assert (candle.open, candle.high, candle.low, candle.close) == (
        Decimal("1.00000000"),
        Decimal("1.00000002"),
        Decimal("1.00000000"),
        Decimal("1.00000002"),
    )
    assert candle.volume == Decimal("0.00000002")
    assert candle.quote_volume_24h == Decimal("0.00")
    assert str(candle.quote_volume_24h) == "0.00"
    assert v.to_candle("ETH", raw(0, vol=None)).volume is None


def test_rejection_describe_and_counts():
    full = v.Rejection(v.OFF_GRID, "bad", T0, "line 3")
    assert full.describe() == "off_grid at 2024-01-01T00:00:00+00:00 (line 3): bad"
    assert v.Rejection(v.MALFORMED, "x").describe() == "malformed: x"
    batch = check([raw(1, o="NaN"), raw(2, o="NaN"), raw(3, vol="-1"), raw(4)])
    assert batch.rejected == {v.NON_FINITE: 2, v.BAD_VOLUME: 1}
    assert batch.fetched == 4
    assert check([raw(1)], fetched=10).fetched == 10


def test_duplicate_bookkeeping():
    rows = [raw(1), raw(1), raw(1, c="100.2"), raw(1, c="100.2", rank=1)]
    batch = check(rows)
    assert batch.candles[0].close == Decimal("100.2")
    assert (batch.duplicates, batch.duplicates_differing) == (3, 2)
    # volume and quote volume count as values too
    batch = check([raw(1), raw(1, vol="6"), raw(1, quote_volume_24h=Decimal(1))])
    assert (batch.duplicates, batch.duplicates_differing) == (2, 2)
    assert batch.candles[0].volume == Decimal(5)


def test_missing_between_covers_both_ends():
    times = [T0 + 2 * HOUR, T0 + 3 * HOUR]
    gaps = v.missing_between(times, T0, T0 + 5 * HOUR, HOUR)
    assert gaps == [Gap(T0, T0 + HOUR, 2), Gap(T0 + 4 * HOUR, T0 + 5 * HOUR, 2)]
    assert v.missing_between([T0, T0 + HOUR], T0, T0 + HOUR, HOUR) == []
    assert v.missing_between([], T0, T0, HOUR) == [Gap(T0, T0, 1)]
    # times outside the window are ignored
    assert v.missing_between([T0 - HOUR, T0 + 9 * HOUR], T0, T0, HOUR) == [Gap(T0, T0, 1)]


def test_gaps_between_off_grid_neighbours():
    # 2.5 intervals apart: two grid slots could fit, rounding down
    assert find_gaps([T0, T0 + 2 * HOUR + 30 * MINUTE], HOUR) == [Gap(T0 + HOUR, T0 + 2 * HOUR, 2)]
    # 1.5 intervals apart: one missing
    assert find_gaps([T0, T0 + 90 * MINUTE], HOUR) == [Gap(T0 + HOUR, T0 + HOUR, 1)]
    assert find_gaps([T0, T0 + HOUR], HOUR) == []
    assert find_gaps([T0, T0 + 30 * MINUTE], HOUR) == []


def test_log_batch_logs_twenty_per_reason_then_a_count(caplog):
    rows = [raw(i, o="NaN") for i in range(22)] + [raw(30, vol="-1"), raw(40), raw(40, c="100.4")]
    batch = check(rows)
    batch.notes["text time disagrees"] = 3
    logger = logging.getLogger("test.validation")
    with caplog.at_level(logging.INFO, logger="test.validation"):
        v.log_batch(batch, "csv", logger)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 20 + 1 + 1
    assert all(r.asset == "BTC" for r in caplog.records)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("BTC csv: rejected non_finite at 2024-01-01T00:00:00+00:00")
    assert "BTC csv: 2 more rows rejected as non_finite" in messages
    assert not any("more rows rejected as bad_volume" in m for m in messages)
    assert any(m.startswith("BTC csv: rejected bad_volume") for m in messages)
    assert (
        "BTC csv: collapsed 1 duplicate timestamps (1 with differing values; the row the "
        "source ranks higher, else the first, was kept)"
    ) in messages
    assert "BTC csv: text time disagrees × 3" in messages


def test_log_batch_with_exactly_twenty_has_no_summary(caplog):
    batch = check([raw(i, o="NaN") for i in range(20)])
    with caplog.at_level(logging.INFO, logger="market.validation"):
        v.log_batch(batch, "api")
    assert len(caplog.records) == 20
    assert not any("more rows" in r.getMessage() for r in caplog.records)


def test_validation_logs_open_candles_and_differing_duplicates(caplog):
    now = T0 + 5 * HOUR
    with caplog.at_level(logging.DEBUG, logger="market.validation"):
        check([raw(5), raw(6), raw(2), raw(2, c="100.3", where="row 9")], now=now)
    messages = [r.getMessage() for r in caplog.records]
    assert (
        "BTC: candle closing 2024-01-01T06:00:00+00:00 is still open (or closed less than 0s "
        "before 2024-01-01T05:00:00+00:00): not stored"
    ) in messages
    assert any(
        m.startswith(
            "BTC: duplicate close time 2024-01-01T02:00:00+00:00 with other values (row 9)"
        )
        for m in messages
    )
    assert all(r.asset == "BTC" for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="market.validation"):
        check([raw(5)], now=now - 10 * MINUTE, settle=15 * MINUTE)
    assert "closed less than 15m before" in caplog.records[0].getMessage()


@pytest.mark.parametrize(
    "row",
    [
        raw(1, o="1e10", h="1e10", lo="1e10", c="1e10"),
        raw(1, o="100", h="100", lo="100", c="100"),  # doji: high == low == open == close
        raw(1, vol="0"),
        raw(1, vol="0.5"),
        raw(1, vol="9e10"),
        raw(1, quote_volume_24h=Decimal(0)),
        raw(1, quote_volume_24h=Decimal("0.5")),
        raw(1, quote_volume_24h=Decimal("9e16")),
    ],
)
def test_a_value_on_its_limit_does_not_hide_a_later_rule(row):
    shifted = RawCandle(
        row.close_time + MINUTE,
        row.open,
        row.high,
        row.low,
        row.close,
        row.volume,
        quote_volume_24h=row.quote_volume_24h,
    )
    assert v.check_row(shifted, HOUR, ValidationLimits())[0] == v.OFF_GRID


def test_rejections_and_candles_carry_where_and_what():
    now = T0 + 3 * HOUR
    batch = validate_candles(
        [raw(1, o="NaN", where="line 5"), raw(9), raw(2)], symbol="ETH", interval=HOUR, now=now
    )
    assert batch.interval == HOUR and batch.symbol == "ETH"
    assert [r.where for r in batch.rejections] == ["line 5", ""]
    assert batch.rejections[1].detail == "closes after now (2024-01-01T03:00:00+00:00)"
    assert [c.symbol for c in batch.candles] == ["ETH"]


def test_differing_duplicates_are_logged_with_the_row_kept(caplog):
    with caplog.at_level(logging.DEBUG, logger="market.validation"):
        check([raw(2), raw(2, c="100.3")])
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith(
        "BTC: duplicate close time 2024-01-01T02:00:00+00:00 with other values (row) dropped; "
        "kept (Decimal('100.00000000'), "
    )


def test_epoch_seconds_names_its_field():
    with pytest.raises(v.RowError, match=r"^timestamp Decimal\('NaN'\) is not a usable unix time$"):
        v.epoch_seconds(Decimal("NaN"))
    with pytest.raises(v.RowError, match=r"^when .* is outside 2009-2100$"):
        epoch_ms(-1, field="when")
