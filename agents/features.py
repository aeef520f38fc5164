"""Features for the ML agent, computed with pandas/numpy from candles only.

Every feature at a candle is a function of that candle and at most :data:`LOOKBACK` candles
before it — never of anything later (no look-ahead), and never of anything earlier than the
window. That is what lets training (over years of stored candles) and prediction (over the
last ``RACE_CONTEXT_CANDLES`` of a cycle) compute the same numbers: windows are evaluated
over their own values (numpy sliding windows), not as running sums over the whole history.
EMAs are finite-window EMAs (exponential weights over a fixed number of candles).

``volume_ratio_24`` (volume over its 24-candle mean) uses ``Candle.volume`` only: the
base-asset volume traded within each candle. It is NaN when any volume in the window is
unknown — CoinGecko candles have none (``/ohlc`` reports no volume; ``/market_chart/range``
only a rolling 24 h USD total, ``Candle.quote_volume_24h``, which is deliberately not used:
a 24-hour total sampled every candle is neither per candle nor in the same unit as the
bundled candles' base volumes, so mixing them would make the ratio meaningless). The
model's pipeline imputes NaN as 0 ("usual volume"), so predictions still work without it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import as_strided

from agents.indicators import WindowCache
from race.domain.model import Candle

FEATURES = (
    "ret_1",
    "ret_4",
    "ret_24",
    "sma_ratio_10",
    "sma_ratio_30",
    "sma_10_30",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "volatility_24",
    "atr_ratio_14",
    "range_pos_24",
    "volume_ratio_24",
)
OPTIONAL = frozenset({"volume_ratio_24"})
"""Features allowed to be NaN (unknown volume)."""
_REQUIRED = np.array([name not in OPTIONAL for name in FEATURES])

_EMA_FAST = (12, 24)  # (span, window)
_EMA_SLOW = (26, 36)
_SIGNAL = (9, 12)
LOOKBACK = _EMA_SLOW[1] - 1 + _SIGNAL[1] - 1
"""Candles before the current one that any feature reads (46)."""
MIN_CANDLES = LOOKBACK + 1
"""Candles needed for a complete feature row (47)."""


def _pad(values: np.ndarray, n: int, window: int) -> np.ndarray:
    out = np.full(n, np.nan)
    if len(values):
        out[window - 1 :] = values
    return out


def _windows(x: np.ndarray, window: int) -> np.ndarray:
    """Read-only view of every run of ``window`` consecutive values (one per row)."""
    if len(x) < window:
        return np.empty((0, window))
    x = np.ascontiguousarray(x, dtype=float)
    step = x.strides[0]
    return as_strided(x, (len(x) - window + 1, window), (step, step), writeable=False)


def rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    return _pad(_windows(x, window).mean(axis=1), len(x), window)


def rolling_std(x: np.ndarray, window: int) -> np.ndarray:
    return _pad(_windows(x, window).std(axis=1, ddof=1), len(x), window)


def rolling_min(x: np.ndarray, window: int) -> np.ndarray:
    return _pad(_windows(x, window).min(axis=1), len(x), window)


def rolling_max(x: np.ndarray, window: int) -> np.ndarray:
    return _pad(_windows(x, window).max(axis=1), len(x), window)


def window_ema(x: np.ndarray, span: int, window: int) -> np.ndarray:
    """EMA with ``alpha = 2 / (span + 1)`` over exactly the last ``window`` values."""
    alpha = 2.0 / (span + 1.0)
    weights = (1.0 - alpha) ** np.arange(window - 1, -1, -1, dtype=float)
    weights /= weights.sum()
    return _pad((_windows(x, window) * weights).sum(axis=1), len(x), window)


def _shift(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = a / b
    out[~np.isfinite(out)] = np.nan
    return out


def _feature_arrays(
    close: np.ndarray, high: np.ndarray, low: np.ndarray, volume: np.ndarray
) -> dict[str, np.ndarray]:
    prev = _shift(close, 1)
    ret_1 = _ratio(close, prev) - 1.0
    sma_10 = rolling_mean(close, 10)
    sma_30 = rolling_mean(close, 30)
    delta = close - prev
    gains = rolling_mean(np.maximum(delta, 0.0), 14)  # NaN propagates: no fake first diff
    losses = rolling_mean(np.maximum(-delta, 0.0), 14)
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = np.where(
            losses == 0.0,
            np.where(gains > 0.0, 1.0, 0.5),
            1.0 - 1.0 / (1.0 + gains / losses),
        )
    rsi[np.isnan(gains) | np.isnan(losses)] = np.nan
    macd = _ratio(window_ema(close, *_EMA_FAST) - window_ema(close, *_EMA_SLOW), close)
    signal = window_ema(macd, *_SIGNAL)
    true_range = np.fmax(high - low, np.fmax(np.abs(high - prev), np.abs(low - prev)))
    true_range[np.isnan(prev)] = np.nan
    low_24 = rolling_min(low, 24)
    high_24 = rolling_max(high, 24)
    return {
        "ret_1": ret_1,
        "ret_4": _ratio(close, _shift(close, 4)) - 1.0,
        "ret_24": _ratio(close, _shift(close, 24)) - 1.0,
        "sma_ratio_10": _ratio(close, sma_10) - 1.0,
        "sma_ratio_30": _ratio(close, sma_30) - 1.0,
        "sma_10_30": _ratio(sma_10, sma_30) - 1.0,
        "rsi_14": rsi,
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": macd - signal,
        "volatility_24": rolling_std(ret_1, 24),
        "atr_ratio_14": _ratio(rolling_mean(true_range, 14), close),
        "range_pos_24": _ratio(close - low_24, high_24 - low_24),
        "volume_ratio_24": _ratio(volume, rolling_mean(volume, 24)) - 1.0,
    }


def feature_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Features for every row of a candle frame (see :func:`agents.indicators.candle_frame`);
    rows without enough history hold NaN."""
    arrays = _feature_arrays(
        frame["close"].to_numpy(dtype=float),
        frame["high"].to_numpy(dtype=float),
        frame["low"].to_numpy(dtype=float),
        frame["volume"].to_numpy(dtype=float),
    )
    return pd.DataFrame({name: arrays[name] for name in FEATURES}, index=frame.index)


def latest_features(candles: Sequence[Candle]) -> np.ndarray | None:
    """The feature vector (in :data:`FEATURES` order) at the newest candle, computed from its
    last :data:`MIN_CANDLES` candles with the same kernels as :func:`feature_frame`; None
    when history is too short."""
    if len(candles) < MIN_CANDLES:
        return None
    window = list(candles)[-MIN_CANDLES:]
    return _LATEST.get(window, _latest_features, _copy)


_LATEST = WindowCache()
"""Features per window, computed once per cycle for every agent that asks."""


def _copy(row: np.ndarray | None) -> np.ndarray | None:
    return None if row is None else row.copy()


def _latest_features(window: Sequence[Candle]) -> np.ndarray | None:
    arrays = _feature_arrays(
        np.array([float(c.close) for c in window]),
        np.array([float(c.high) for c in window]),
        np.array([float(c.low) for c in window]),
        _base_volumes(window),
    )
    row = np.array([arrays[name][-1] for name in FEATURES])
    if np.isnan(row[_REQUIRED]).any():
        return None
    return row


def _base_volumes(candles: Sequence[Candle]) -> np.ndarray:
    """Per-candle base volumes as floats, NaN where unknown (never the 24 h quote volume)."""
    return np.array([np.nan if c.volume is None else float(c.volume) for c in candles])


def complete_rows(features: pd.DataFrame) -> pd.Series:
    """Rows whose required features are all known."""
    required = [name for name in FEATURES if name not in OPTIONAL]
    return features[required].notna().all(axis=1)
