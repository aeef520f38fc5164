"""The history plausibility check (market/plausibility.py): pure, on Decimal candles."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.aggregate import batch_at_interval
from market.plausibility import (
    IMPLAUSIBLE_DAY_MOVE,
    IMPLAUSIBLE_LEVEL,
    HistoryLimits,
    check_history,
    judge,
    median,
)
from market.sample import SAMPLE_FILES, SAMPLE_INTERVAL, read_sample
from market.validation import ValidationLimits
from race.domain.model import Candle

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
T0 = datetime(2024, 1, 1, tzinfo=UTC)
LIMITS = HistoryLimits()
SHARED = Path("/work/shared/data")


def candle(when: datetime, close: Decimal | int | str, symbol: str = "BTC") -> Candle:
    price = Decimal(close)
    return Candle(symbol, when, price, price, price, price, None)


def series(closes: list[Decimal], start: datetime = T0, step: timedelta = HOUR) -> list[Candle]:
    return [candle(start + i * step, c) for i, c in enumerate(closes)]


def closes(candles: list[Candle]) -> list[Decimal]:
    return [c.close for c in candles]


# ---------------------------------------------------------------- units


def test_median_of_odd_and_even_counts() -> None:
    assert median([Decimal(1), Decimal(2), Decimal(9)]) == 2
    assert median([Decimal(1), Decimal(2), Decimal(4), Decimal(9)]) == 3


def test_limits_are_factors_above_one() -> None:
    with pytest.raises(ValueError, match="RACE_CANDLE_MAX_DEVIATION"):
        HistoryLimits(max_deviation=Decimal(1))
    with pytest.raises(ValueError, match="RACE_CANDLE_MAX_DAY_MOVE"):
        HistoryLimits(max_day_move=Decimal("NaN"))


def test_a_step_is_rejected_for_as_long_as_it_lasts() -> None:
    flat = [Decimal(100)] * 30
    stepped = [Decimal(1000)] * 10
    kept, rejected = check_history(series(flat + stepped), [], HOUR, LIMITS)
    assert closes(kept) == flat
    assert [r.reason for r in rejected] == [IMPLAUSIBLE_LEVEL] * 10
    assert "10.00× the median 100" in rejected[0].detail


def test_a_pump_is_stopped_by_the_day_move() -> None:
    base = [Decimal(100)] * 30
    pump = [Decimal(100) * Decimal("1.45") ** k for k in range(1, 25)]
    kept, rejected = check_history(series(base + pump), [], HOUR, LIMITS)
    assert max(closes(kept)) < Decimal(100) * LIMITS.max_day_move
    assert len(kept) == 32  # +45 %, +110 %; the third hour (+205 %) is beyond 2.5×
    assert {r.reason for r in rejected} <= {IMPLAUSIBLE_DAY_MOVE, IMPLAUSIBLE_LEVEL}
    assert rejected[0].reason == IMPLAUSIBLE_DAY_MOVE
    assert len(rejected) == 22


def test_a_crash_is_judged_like_a_pump() -> None:
    kept, rejected = check_history(series([Decimal(1000)] * 24 + [Decimal(300)]), [], HOUR, LIMITS)
    assert [r.reason for r in rejected] == [IMPLAUSIBLE_DAY_MOVE]
    assert "1/3.33 of the highest close 1000" in rejected[0].detail
    assert len(kept) == 24


def test_stored_history_is_the_reference_and_stored_times_are_not_judged() -> None:
    history = [(T0 + i * HOUR, Decimal(100)) for i in range(24)]
    incoming = series([Decimal(100), Decimal(950), Decimal(101)], start=T0 + 23 * HOUR)
    kept, rejected = check_history(incoming, history, HOUR, LIMITS)
    # 23:00 is stored (the store keeps it: unchanged or a conflict), 24:00 is 9.5x the
    # stored level, 25:00 is fine: the rejected one never became history.
    assert [c.close_time for c in kept] == [T0 + 23 * HOUR, T0 + 25 * HOUR]
    assert [(r.reason, r.close_time) for r in rejected] == [(IMPLAUSIBLE_LEVEL, T0 + 24 * HOUR)]


def test_after_a_long_gap_there_is_nothing_to_compare_with() -> None:
    history = [(T0 + i * HOUR, Decimal(100)) for i in range(24)]
    later = T0 + 24 * HOUR + LIMITS.lookback(HOUR) + HOUR
    kept, rejected = check_history([candle(later, 1000)], history, HOUR, LIMITS)
    assert len(kept) == 1 and rejected == []


def test_one_stray_stored_close_does_not_move_the_median() -> None:
    history = [(T0 + i * HOUR, Decimal(100)) for i in range(23)]
    history.append((T0 + 23 * HOUR, Decimal(30)))  # a crash wick that was let in
    assert judge(Decimal(104), sorted([c for _, c in history]), [], LIMITS) is None


def test_daily_candles_look_back_24_candles() -> None:
    assert LIMITS.lookback(DAY) == 24 * DAY and LIMITS.lookback(HOUR) == DAY
    flat = series([Decimal(100)] * 24, step=DAY)
    kept, rejected = check_history([*flat, candle(T0 + 24 * DAY, 450)], [], DAY, LIMITS)
    assert len(kept) == 24 and [r.reason for r in rejected] == [IMPLAUSIBLE_LEVEL]


# ---------------------------------------------------------------- properties

factors = st.decimals(min_value=Decimal("0.8"), max_value=Decimal("1.25"), places=4)
scales = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("100000"), places=4)


@settings(max_examples=60, deadline=None)
@given(st.lists(factors, min_size=1, max_size=80), scales)
def test_a_series_within_the_limits_is_never_rejected(moves, scale) -> None:
    """Closes that stay within 1.25^2 of each other (below both factors) all pass,
    whatever their scale: the checks are ratios."""
    prices = [scale * move for move in moves]  # every close within [0.8, 1.25] × scale
    kept, rejected = check_history(series(prices), [], HOUR, LIMITS)
    assert rejected == [] and closes(kept) == prices


@settings(max_examples=60, deadline=None)
@given(
    st.lists(factors, min_size=1, max_size=30),
    scales,
    st.decimals(min_value=Decimal("1.01"), max_value=Decimal("1000"), places=2),
    st.booleans(),
)
def test_a_close_beyond_the_day_move_of_its_history_is_rejected(moves, scale, beyond, up) -> None:
    history = series([scale * m for m in moves], start=T0)
    last = history[-1].close_time
    extreme = max(closes(history)) if up else min(closes(history))
    factor = LIMITS.max_day_move * beyond
    outlier = extreme * factor if up else extreme / factor
    kept, rejected = check_history([*history, candle(last + HOUR, outlier)], [], HOUR, LIMITS)
    assert closes(kept) == closes(history)
    assert len(rejected) == 1 and rejected[0].close_time == last + HOUR
    assert rejected[0].reason in (IMPLAUSIBLE_DAY_MOVE, IMPLAUSIBLE_LEVEL)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.decimals(min_value=1, max_value=10**6, places=2), min_size=1, max_size=60))
def test_what_is_kept_is_plausible_against_what_was_kept_before_it(prices) -> None:
    """Any feed: kept and rejected partition the input, and replaying the kept candles
    alone rejects nothing (a rejected candle never served as a reference)."""
    incoming = series(prices)
    kept, rejected = check_history(incoming, [], HOUR, LIMITS)
    assert len(kept) + len(rejected) == len(incoming)
    assert sorted([c.close_time for c in kept] + [r.close_time for r in rejected]) == [
        c.close_time for c in incoming
    ]
    again, none = check_history(kept, [], HOUR, LIMITS)
    assert none == [] and again == kept


# ---------------------------------------------------------------- real history


@pytest.mark.parametrize("file", SAMPLE_FILES, ids=lambda f: f.name)
def test_the_bundled_hourly_history_passes_entirely(file) -> None:
    """BTC and ETH hourly, 2017-2023: the March 2020 and May 2021 crashes, the 2022 bear
    market (LUNA, FTX) — nothing is implausible."""
    rows = read_sample(file)
    batch = batch_at_interval(
        rows.rows,
        symbol=file.symbol,
        source=SAMPLE_INTERVAL,
        interval=SAMPLE_INTERVAL,
        now=file.fetched_at,
        limits=ValidationLimits(),
    )
    assert len(batch.candles) > 20_000
    kept, rejected = check_history(batch.candles, [], HOUR, LIMITS)
    assert rejected == [] and len(kept) == len(batch.candles)


@pytest.mark.parametrize(
    "name", ["coingecko_btc-usd-max_daily.csv", "coingecko_eth-usd-max_daily.csv"]
)
def test_coingeckos_daily_history_since_2013_passes_entirely(name) -> None:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} is not on this machine")
    daily = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            when = datetime.strptime(row["snapped_at"], "%Y-%m-%d %H:%M:%S UTC")
            daily.append(candle(when.replace(tzinfo=UTC), row["price"]))
    assert len(daily) > 3000
    kept, rejected = check_history(daily, [], DAY, LIMITS)
    assert rejected == [] and len(kept) == len(daily)
