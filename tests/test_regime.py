"""``detect_regime``: thresholds at equality, window lengths and a reference model."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from race.domain.regime import (
    BEARISH,
    BULLISH,
    SIDEWAYS,
    UNKNOWN,
    VOLATILE,
    candle_returns,
    detect_regime,
)


def sample_std(closes: list[float]) -> float:
    """The same float arithmetic as the module: the exact threshold for an equality test."""
    returns = [closes[i] / closes[i - 1] - 1.0 for i in range(1, len(closes)) if closes[i - 1] > 0]
    mean = sum(returns) / len(returns)
    return math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1))


def test_fewer_than_twenty_closes_is_unknown_and_twenty_is_enough():
    rising = [100.0 + i * 0.1 for i in range(20)]
    assert detect_regime(rising[:19]) == UNKNOWN
    assert detect_regime([]) == UNKNOWN
    assert detect_regime(rising) == SIDEWAYS  # 20 closes: fast == slow, not stacked


def test_trends_stack_the_close_over_the_means():
    assert detect_regime([100.0 + i * 0.1 for i in range(60)]) == BULLISH
    assert detect_regime([100.0 - i * 0.1 for i in range(60)]) == BEARISH
    assert detect_regime([100.0] * 60) == SIDEWAYS


def test_volatility_threshold_is_strict_and_uses_the_sample_deviation():
    closes = [100.0, 103.0, 100.0, 104.0] * 6
    std = sample_std(closes)
    assert detect_regime(closes, volatile_threshold=std) != VOLATILE  # equal: not above
    assert detect_regime(closes, volatile_threshold=math.nextafter(std, 0)) == VOLATILE
    # the population deviation (÷ n) is smaller: a threshold between the two tells them apart
    returns = [closes[i] / closes[i - 1] - 1.0 for i in range(1, len(closes))]
    mean = sum(returns) / len(returns)
    population = math.sqrt(sum((r - mean) ** 2 for r in returns) / len(returns))
    assert population < std
    assert detect_regime(closes, volatile_threshold=(population + std) / 2) == VOLATILE
    assert detect_regime(closes) == VOLATILE  # default 2 %: these swing about 3.5 %
    assert detect_regime(closes, volatile_threshold=0.05) == SIDEWAYS


def test_the_deviation_is_around_the_mean_return():
    # a steady +1 % a candle has no spread at all: trending, not volatile
    closes = [100.0 * 1.01**i for i in range(30)]
    assert detect_regime(closes, volatile_threshold=0.001) == BULLISH


def test_zero_closes_are_skipped_as_a_base_and_two_returns_are_enough():
    # returns only where the previous close is positive: here exactly two (1 → 2, 2 → 2)
    closes = [0.0] * 17 + [1.0, 2.0, 2.0]
    assert detect_regime(closes) == VOLATILE
    # a single usable return has no deviation: the trend rule decides
    assert detect_regime([0.0] * 19 + [1.0, 2.0]) == BULLISH
    assert detect_regime([0.0] * 20) == SIDEWAYS


def test_window_lengths_are_twenty_and_fifty():
    # 30 flat closes then 20 low ones: the 20-candle mean is all low, the 50 mixes both
    base = [110.0] * 30 + [100.0] * 19
    assert detect_regime([*base, 100.5], volatile_threshold=1.0) == SIDEWAYS
    # the slow mean over only the last 50, never the first (higher) ones
    long = [1000.0] * 10 + [100.0] * 30 + [105.0] * 19 + [106.0]
    assert detect_regime(long, volatile_threshold=1.0) == BULLISH
    # with fewer than 50 closes the slow mean is over all of them (divided by n, not 50)
    short = [100.0] * 10 + [105.0] * 19 + [106.0]
    assert detect_regime(short, volatile_threshold=1.0) == BULLISH
    falling = [100.0] * 10 + [95.0] * 19 + [94.0]
    assert detect_regime(falling, volatile_threshold=1.0) == BEARISH


@pytest.mark.parametrize(
    ("closes", "expected"),
    [
        ([100.0] * 30 + [101.0] * 19 + [101.0], SIDEWAYS),  # last == fast: not above
        ([100.0] * 30 + [101.0] * 19 + [102.0], BULLISH),
        ([100.0] * 50, SIDEWAYS),  # fast == slow
        ([100.0] * 30 + [99.0] * 19 + [99.0], SIDEWAYS),  # last == fast: not below
        ([100.0] * 30 + [99.0] * 19 + [98.0], BEARISH),
        ([100.0] * 30 + [101.0] * 19 + [99.0], SIDEWAYS),  # fast above slow, last below
        ([100.0] * 30 + [99.0] * 19 + [101.0], SIDEWAYS),  # fast below slow, last above
    ],
)
def test_stacking_is_strict(closes, expected):
    assert detect_regime(closes, volatile_threshold=1.0) == expected


def reference(closes: list[float], threshold: float) -> str | None:
    """Exact (rational) model; None when a float comparison is too close to call."""
    n = len(closes)
    if n < 20:
        return UNKNOWN
    exact = [Fraction(c) for c in closes]
    returns = [exact[i] / exact[i - 1] - 1 for i in range(1, n) if exact[i - 1] > 0]
    if len(returns) >= 2:
        mean = sum(returns) / len(returns)
        variance = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
        if abs(math.sqrt(variance) - threshold) < 1e-9:
            return None
        if variance > Fraction(threshold) ** 2:
            return VOLATILE
    fast = sum(exact[-20:]) / 20
    slow = sum(exact[-50:]) / min(n, 50)
    last = exact[-1]
    if min(abs(last - fast), abs(fast - slow)) < Fraction(1, 10**6):
        return None
    if last > fast > slow:
        return BULLISH
    if last < fast < slow:
        return BEARISH
    return SIDEWAYS


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(90, 110), min_size=15, max_size=70),
    st.sampled_from([0.005, 0.01, 0.02, 0.05]),
)
def test_agrees_with_an_exact_model(ints, threshold):
    closes = [float(i) for i in ints]
    expected = reference(closes, threshold)
    assume(expected is not None)
    assert detect_regime(closes, volatile_threshold=threshold) == expected


def test_twenty_closes_have_equal_means_so_never_stack():
    assert detect_regime([100.0] * 19 + [99.0], volatile_threshold=1.0) == SIDEWAYS
    assert detect_regime([100.0] * 19 + [101.0], volatile_threshold=1.0) == SIDEWAYS


@settings(max_examples=300, deadline=None)
@given(
    closes=st.lists(
        st.one_of(
            st.floats(min_value=1.0, max_value=2.0, allow_nan=False),
            st.sampled_from([0.0, 1.5]),  # a zero close: the return after it is a gap
        ),
        min_size=18,
        max_size=60,
    ),
    threshold=st.sampled_from([0.02, 0.2, 10.0]),
)
def test_the_returns_a_replay_passes_give_the_same_label(closes, threshold):
    """A replay passes each window's returns as ``candle_returns`` lays them out (None after
    a close that is not positive): the label is the one computed from the closes, with and
    without gaps in the window."""
    returns = candle_returns(closes)[1:]
    expected = detect_regime(closes, volatile_threshold=threshold)
    assert detect_regime(closes, volatile_threshold=threshold, returns=returns) == expected
    assert detect_regime(closes, volatile_threshold=threshold, returns=tuple(returns)) == expected


def test_a_window_with_a_gap_skips_it():
    closes = [1.0] * 10 + [0.0] + [1.0, 3.0] * 5
    returns = candle_returns(closes)[1:]
    assert None in returns
    assert detect_regime(closes, returns=returns) == detect_regime(closes) == VOLATILE
    flat = [1.0] * 10 + [0.0] + [1.0] * 10
    assert detect_regime(flat, returns=candle_returns(flat)[1:]) == detect_regime(flat)


def test_candle_returns_are_each_close_over_the_one_before():
    """Aligned with the closes: None first and after a close that is not positive."""
    assert candle_returns([2.0, 4.0, 1.0, 0.0, 5.0, 10.0]) == [None, 1.0, -0.75, -1.0, None, 1.0]
    assert candle_returns([3.0]) == [None]
    assert candle_returns([]) == []
    assert candle_returns([-1.0, 2.0]) == [None, None]
