"""Technical indicators for the prompt, computed with pandas over the candles an agent sees
(closed at or before T, oldest first — so nothing here can look ahead).

Standard definitions: simple returns over 1/4/24 candles, SMA, EMA (``adjust=False``),
Wilder's RSI-14 and ATR-14, MACD 12/26/9, and volatility as the standard deviation of
one-candle returns over the last 24. A value needs enough candles; otherwise it is None.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from race.domain.model import Candle

RETURN_PERIODS = (1, 4, 24)
_T = TypeVar("_T")


def candle_frame(candles: Sequence[Candle]) -> pd.DataFrame:
    """Candles as floats indexed by close time; ``volume`` is NaN where unknown."""
    return pd.DataFrame(
        {
            "open": [float(c.open) for c in candles],
            "high": [float(c.high) for c in candles],
            "low": [float(c.low) for c in candles],
            "close": [float(c.close) for c in candles],
            "volume": [np.nan if c.volume is None else float(c.volume) for c in candles],
        },
        index=pd.DatetimeIndex([c.close_time for c in candles], name="close_time"),
        dtype="float64",
    )


def _wilder(series: pd.Series, period: int) -> pd.Series:
    return series.ewm(alpha=1.0 / period, adjust=False, min_periods=period).mean()


def indicator_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Every indicator for every row (NaN where history is too short)."""
    close, high, low = frame["close"], frame["high"], frame["low"]
    out = pd.DataFrame(index=frame.index)
    for period in RETURN_PERIODS:
        out[f"ret_{period}"] = close / close.shift(period) - 1.0
    for period in (10, 20, 50):
        out[f"sma_{period}"] = close.rolling(period, min_periods=period).mean()
    for span in (12, 26):
        out[f"ema_{span}"] = close.ewm(span=span, adjust=False, min_periods=span).mean()
    delta = close.diff()
    gain = _wilder(delta.clip(lower=0.0), 14)
    loss = _wilder((-delta).clip(lower=0.0), 14)
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = 100.0 - 100.0 / (1.0 + gain / loss)
    rsi = rsi.where(loss != 0.0, np.where(gain > 0.0, 100.0, 50.0))
    out["rsi_14"] = rsi.where(gain.notna())
    macd = out["ema_12"] - out["ema_26"]
    out["macd"] = macd
    out["macd_signal"] = macd.ewm(span=9, adjust=False, min_periods=9).mean()
    out["macd_hist"] = out["macd"] - out["macd_signal"]
    previous = close.shift(1)
    true_range = pd.concat(
        [high - low, (high - previous).abs(), (low - previous).abs()], axis=1
    ).max(axis=1, skipna=False)
    out["atr_14"] = _wilder(true_range, 14)
    out["volatility_24"] = out["ret_1"].rolling(24, min_periods=24).std()
    return out


class WindowCache:
    """The last few results of a function of a candle window, by the window's candles.

    Every agent of a cycle sees the same view, so a prompt's indicators (or a model's
    features) for one asset are computed once per cycle and shared by every agent that
    asks: a window holding equal candles gives the same result. Callers get their own
    copy (``copy``). Thread-safe (agents may run in worker threads)."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._items: OrderedDict[tuple[Candle, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self,
        candles: Sequence[Candle],
        compute: Callable[[Sequence[Candle]], _T],
        copy: Callable[[_T], _T],
    ) -> _T:
        key = tuple(candles)
        try:
            with self._lock:
                found = self._items.get(key)
                if found is not None:
                    self._items.move_to_end(key)
                    return copy(found)
        except TypeError:  # an unhashable value (a signalling NaN): nothing to share
            return compute(candles)
        value = compute(candles)
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return copy(value)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_LATEST = WindowCache()


def _latest_indicators(candles: Sequence[Candle]) -> dict[str, float | None]:
    row = indicator_frame(candle_frame(candles)).iloc[-1]
    return {
        name: (float(value) if value is not None and math.isfinite(value) else None)
        for name, value in row.items()
    }


def latest_indicators(candles: Sequence[Candle]) -> dict[str, float | None]:
    """The indicators at the newest candle (None where there is not enough history);
    computed once per window however many agents ask (see :class:`WindowCache`)."""
    if not candles:
        return {}
    return _LATEST.get(candles, _latest_indicators, dict)
