"""The ML features and labels: no look-ahead (a feature at T never uses data after T),
the same numbers from a year of history or from one cycle's window, and no crash without
volume."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.features import FEATURES, MIN_CANDLES, feature_frame, latest_features
from agents.indicators import candle_frame, latest_indicators
from race.domain.model import Candle
from race.ml_service import labelled_rows
from tests.factories import make_candles, wave_prices

START = datetime(2023, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def random_walk(steps: list[float], volume: bool = True) -> list[Candle]:
    price = 100.0
    closes = []
    for step in steps:
        price = max(1.0, price * (1.0 + step))
        closes.append(Decimal(str(round(price, 6))))
    return make_candles("BTC", START, closes, volume=Decimal("5") if volume else None)


walks = st.lists(
    st.floats(min_value=-0.05, max_value=0.05, allow_nan=False), min_size=60, max_size=160
)


@settings(max_examples=40, deadline=None)
@given(steps=walks, cut=st.floats(min_value=0.0, max_value=1.0), volume=st.booleans())
def test_a_feature_at_t_never_uses_data_after_t(steps, cut, volume):
    candles = random_walk(steps, volume)
    t = MIN_CANDLES - 1 + int(cut * (len(candles) - MIN_CANDLES))
    full = feature_frame(candle_frame(candles))
    upto_t = feature_frame(candle_frame(candles[: t + 1]))
    # Rewrite the future wildly: the row at T must not move.
    future = [
        Candle(c.symbol, c.close_time, c.open * 3, c.high * 5, c.low / 5, c.close * 4, None)
        for c in candles[t + 1 :]
    ]
    rewritten = feature_frame(candle_frame(candles[: t + 1] + future))
    expected = upto_t.iloc[t].to_numpy()
    np.testing.assert_array_equal(full.iloc[t].to_numpy(), expected)
    np.testing.assert_array_equal(rewritten.iloc[t].to_numpy(), expected)


@settings(max_examples=25, deadline=None)
@given(steps=walks)
def test_features_from_the_cycle_window_equal_features_from_all_history(steps):
    """Training computes over years, prediction over the last candles of a cycle: every
    feature has a bounded lookback, so both give exactly the same numbers."""
    candles = random_walk(steps)
    full = feature_frame(candle_frame(candles))
    for t in range(MIN_CANDLES - 1, len(candles), 7):
        window = candles[max(0, t + 1 - 50) : t + 1]  # what a cycle's context holds
        vector = latest_features(window)
        assert vector is not None
        np.testing.assert_array_equal(vector, full.iloc[t].to_numpy())


def test_too_little_history_gives_no_features():
    candles = make_candles("BTC", START, wave_prices(MIN_CANDLES - 1))
    assert latest_features(candles) is None
    frame = feature_frame(candle_frame(candles))
    assert frame.iloc[-1].isna().any()
    assert latest_features(make_candles("BTC", START, wave_prices(MIN_CANDLES))) is not None


def test_unknown_volume_leaves_only_the_volume_feature_missing():
    candles = make_candles("BTC", START, wave_prices(80), volume=None)
    vector = latest_features(candles)
    assert vector is not None
    missing = [name for name, value in zip(FEATURES, vector, strict=True) if math.isnan(value)]
    assert missing == ["volume_ratio_24"]


def test_labels_look_forward_exactly_the_horizon_and_drop_the_unknown_tail():
    candles = make_candles("BTC", START, wave_prices(120, drift=0.001))
    frame = candle_frame(candles)
    rows = labelled_rows(frame, 4)
    closes = frame["close"]
    assert rows.index.max() == frame.index[-5]  # the last 4 candles have no future yet
    for when, row in rows.iloc[::9].iterrows():
        position = frame.index.get_loc(when)
        assert row["label_end"] == frame.index[position + 4]
        assert row["label"] == int(closes.iloc[position + 4] > closes.iloc[position])
    assert rows.index.min() == frame.index[MIN_CANDLES - 1]


def test_prompt_indicators_are_computed_from_the_window_only():
    candles = make_candles("BTC", START, wave_prices(60, base=40000.0))
    values = latest_indicators(candles)
    closes = pd.Series([float(c.close) for c in candles])
    assert values["sma_10"] == pytest.approx(closes.iloc[-10:].mean())
    assert values["ret_1"] == pytest.approx(closes.iloc[-1] / closes.iloc[-2] - 1)
    assert values["ret_24"] == pytest.approx(closes.iloc[-1] / closes.iloc[-25] - 1)
    assert 0 <= values["rsi_14"] <= 100
    assert values["sma_50"] is not None
    short = latest_indicators(candles[:20])
    assert short["sma_50"] is None and short["ret_24"] is None
