"""What a replay computes once and shares must equal what each cycle would compute from
scratch, float for float: the per-candle returns behind the regime (sliced per window from
the candle tape), Wilder's RSI, and the win/loss and health rules moved to race.domain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from agents import features, indicators
from agents.baselines import rsi
from agents.features import latest_features
from agents.indicators import latest_indicators
from race.domain import health
from race.domain.model import Candle, Fill, MarketView, Side
from race.domain.regime import candle_returns, detect_regime
from race.domain.stats import fold_steps, is_win
from race.domain.step import ViewSummary
from race.store import repository as repo
from race.store.views import CandleTape

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)

closes_strategy = st.lists(
    st.one_of(
        st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False),
        st.sampled_from([0.0, -1.0, 100.0]),  # zero / negative closes are skipped
    ),
    min_size=0,
    max_size=120,
)


def reference_rsi(values: list[float], period: int = 14) -> float | None:
    """The indexed definition the baseline used before (kept here as the reference)."""
    if len(values) < period + 1:
        return None
    gains = losses = 0.0
    for i in range(1, period + 1):
        change = values[i] - values[i - 1]
        if change > 0:
            gains += change
        else:
            losses -= change
    avg_gain, avg_loss = gains / period, losses / period
    keep = (period - 1) / period
    for i in range(period + 1, len(values)):
        change = values[i] - values[i - 1]
        if change > 0:
            avg_gain = avg_gain * keep + change / period
            avg_loss = avg_loss * keep
        else:
            avg_gain = avg_gain * keep
            avg_loss = avg_loss * keep - change / period
    if avg_loss == 0:
        return 100.0 if avg_gain > 0 else 50.0
    return 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)


@settings(max_examples=300, deadline=None)
@given(closes_strategy, st.data())
def test_window_returns_sliced_from_the_whole_series_equal_the_windows_own(closes, data):
    returns = candle_returns(closes)
    assert len(returns) == len(closes)
    start = data.draw(st.integers(0, len(closes)))
    stop = data.draw(st.integers(start, len(closes)))
    window = closes[start:stop]
    scratch = [window[i] / window[i - 1] - 1.0 for i in range(1, len(window)) if window[i - 1] > 0]
    sliced = [r for r in returns[start + 1 : stop] if r is not None]
    assert sliced == scratch  # exact float equality, not approximate
    threshold = data.draw(st.sampled_from([0.0, 0.001, 0.02, 0.5]))
    assert detect_regime(
        window, volatile_threshold=threshold, returns=returns[start + 1 : stop]
    ) == detect_regime(window, volatile_threshold=threshold)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False),
        max_size=80,
    ),
    st.integers(2, 30),
)
def test_rsi_equals_the_indexed_reference(closes, period):
    assert rsi(closes, period) == reference_rsi(closes, period)


def _candle(symbol: str, i: int, close: Decimal) -> Candle:
    return Candle(symbol, T0 + i * HOUR, close, close, close, close, None, None)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100000"), places=2),
        min_size=1,
        max_size=90,
    ),
    st.integers(1, 60),
    st.data(),
)
def test_the_tapes_summary_equals_a_summary_of_the_view(prices, depth, data):
    series = [_candle("BTC", i, p) for i, p in enumerate(prices)]
    floats = [float(c.close) for c in series]
    tape = CandleTape(
        depth=depth,
        max_price_age=None,
        series={"BTC": series},
        times={"BTC": [c.close_time for c in series]},
        closes={"BTC": floats},
        returns={"BTC": candle_returns(floats)},
    )
    at = data.draw(st.integers(-1, len(prices) + 1))
    view = tape.view(T0 + at * HOUR)
    shared = tape.summary(view, "BTC")
    fresh = ViewSummary(
        MarketView(as_of=view.as_of, candles=view.candles, max_price_age=None), "BTC"
    )
    assert shared.regime == fresh.regime
    assert shared.conditions == fresh.conditions
    assert tape.summary(view, None).regime == "UNKNOWN"


def _fill(pnl: Decimal | None, fee: str = "1") -> Fill:
    one = Decimal(1)
    return Fill("BTC", Side.SELL, one, one, one, one, Decimal(fee), Decimal(0), pnl)


def _step(fills: list[Fill], *, fallback: bool = False, tokens: int | None = None) -> object:
    decision = SimpleNamespace(
        fallback=fallback,
        prompt_tokens=tokens,
        completion_tokens=tokens,
        cost_usd=Decimal("0.5") if tokens else None,
    )
    return SimpleNamespace(decision=decision, fills=tuple(fills))


def test_a_trade_wins_above_zero_loses_at_or_below_and_a_buy_is_neither():
    assert is_win(_fill(Decimal("0.01"))) is True
    assert is_win(_fill(Decimal(0))) is False
    assert is_win(_fill(Decimal("-3"))) is False
    assert is_win(_fill(None)) is None


def test_fold_steps_counts_decisions_trades_and_outcomes():
    steps = [
        _step([_fill(None), _fill(Decimal(2), fee="0.25")], tokens=10),
        _step([], fallback=True),
        _step([_fill(Decimal(0)), _fill(Decimal(-1))]),
    ]
    totals = fold_steps(steps)  # type: ignore[arg-type]
    assert totals.decisions == 3
    assert totals.fallbacks == 1
    assert totals.fallback_flags == "010"
    assert (totals.prompt_tokens, totals.completion_tokens) == (10, 10)
    assert totals.cost_usd == Decimal("0.5")
    assert totals.trades == 4
    assert (totals.winning_trades, totals.losing_trades) == (1, 2)
    assert totals.fees_paid == Decimal("3.25")
    empty = fold_steps([])
    assert (empty.decisions, empty.trades, empty.fallback_flags) == (0, 0, "")


def test_the_health_rule_lives_in_the_domain_and_the_store_re_exports_it():
    assert repo.HealthPolicy is health.HealthPolicy
    assert repo.FALLBACK_HISTORY == health.FALLBACK_HISTORY == 100
    policy = health.HealthPolicy(window=4, threshold=0.5)
    assert not policy.degraded("111")  # not a full window yet
    assert not policy.degraded("0011")  # exactly half: not more than
    assert policy.degraded("0111")


def _ohlc(i: int, close: Decimal) -> Candle:
    return Candle(
        "ETH", T0 + i * HOUR, close, close + 2, close - 2, close + 1, Decimal(i % 7 + 1), None
    )


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.decimals(min_value=Decimal("10"), max_value=Decimal("5000"), places=2),
        min_size=1,
        max_size=70,
    )
)
def test_shared_indicators_and_features_equal_a_fresh_computation(prices):
    candles = [_ohlc(i, p) for i, p in enumerate(prices)]
    indicators._LATEST.clear()
    features._LATEST.clear()
    fresh = indicators._latest_indicators(candles)
    first, second = latest_indicators(candles), latest_indicators(list(candles))
    assert first == second == fresh
    first["rsi_14"] = -1.0  # each caller owns its copy
    assert latest_indicators(candles) == fresh
    if len(candles) >= features.MIN_CANDLES:
        expected = features._latest_features(candles[-features.MIN_CANDLES :])
        got = latest_features(candles)
        if expected is None:
            assert got is None
        else:
            assert got is not None
            assert got.tobytes() == expected.tobytes()  # bit for bit, NaN included
            got[:] = 0.0
            again = latest_features(candles)
            assert again is not None and again.tobytes() == expected.tobytes()
