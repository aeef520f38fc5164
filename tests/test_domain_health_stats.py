"""race.domain.health (when an agent is degraded) and race.domain.stats (what steps add to
the leaderboard counters), with every bound and counter computed by hand."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from race.domain.health import FALLBACK_HISTORY, HealthPolicy
from race.domain.model import Fill, Side
from race.domain.money import ZERO
from race.domain.stats import StepTotals, fold_steps, is_win

D = Decimal


def test_the_default_policy_is_half_of_the_last_twenty() -> None:
    policy = HealthPolicy()
    assert (policy.window, policy.threshold) == (20, 0.5)
    assert FALLBACK_HISTORY == 100
    assert not policy.degraded("1" * 19)  # not a full window yet
    assert not policy.degraded("1" * 10 + "0" * 10)  # exactly half
    assert policy.degraded("0" * 9 + "1" * 11)


def test_the_window_and_threshold_bounds_are_inclusive() -> None:
    for window in (0, 1, FALLBACK_HISTORY):
        assert HealthPolicy(window=window).window == window
    for threshold in (0.0, 1.0):
        assert HealthPolicy(threshold=threshold).threshold == threshold


@pytest.mark.parametrize("window", [-1, FALLBACK_HISTORY + 1])
def test_a_window_outside_the_stored_history_is_refused(window: int) -> None:
    expected = (
        "degraded window must be between 0 (off) and 100 decisions "
        f"(the stored history), not {window}"
    )
    with pytest.raises(ValueError) as info:
        HealthPolicy(window=window)
    assert str(info.value) == expected


@pytest.mark.parametrize("threshold", [-0.01, 1.01])
def test_a_threshold_outside_zero_one_is_refused(threshold: float) -> None:
    with pytest.raises(ValueError) as info:
        HealthPolicy(threshold=threshold)
    assert str(info.value) == f"degraded threshold must be a fraction in [0, 1], not {threshold}"


def test_a_zero_window_turns_the_guard_off() -> None:
    off = HealthPolicy(window=0, threshold=0.0)
    assert not off.degraded("1" * FALLBACK_HISTORY)
    assert not off.degraded("")


def test_only_the_last_window_counts() -> None:
    policy = HealthPolicy(window=4, threshold=0.5)
    assert not policy.degraded("1111" + "0001")  # old fallbacks are forgotten
    assert policy.degraded("0000" + "1101")
    assert not policy.degraded("0100")  # a quarter
    assert policy.degraded("1110")
    strict = HealthPolicy(window=4, threshold=0.0)
    assert strict.degraded("0001")  # one fallback is more than none
    assert not strict.degraded("0000")
    assert not HealthPolicy(window=2, threshold=1.0).degraded("11")  # never more than all


@given(st.text(alphabet="01", max_size=60), st.integers(1, 30), st.sampled_from([0.0, 0.25, 0.5]))
def test_degraded_is_the_share_of_the_last_window(recent: str, window: int, t: float) -> None:
    policy = HealthPolicy(window=window, threshold=t)
    tail = recent[len(recent) - window :] if len(recent) >= window else None
    expected = tail is not None and tail.count("1") > t * window
    assert policy.degraded(recent) is expected


def _fill(pnl: Decimal | None, fee: str) -> Fill:
    one = D(1)
    side = Side.BUY if pnl is None else Side.SELL
    return Fill("BTC", side, one, one, one, one, D(fee), ZERO, pnl)


def _step(
    fills: list[Fill],
    *,
    fallback: bool = False,
    prompt: int | None = None,
    completion: int | None = None,
    cost: Decimal | None = None,
) -> Any:
    decision = SimpleNamespace(
        fallback=fallback, prompt_tokens=prompt, completion_tokens=completion, cost_usd=cost
    )
    return SimpleNamespace(decision=decision, fills=tuple(fills))


def test_is_win_at_the_smallest_profit_and_at_break_even() -> None:
    assert is_win(_fill(D("0.00000001"), "0")) is True
    assert is_win(_fill(D("0.5"), "0")) is True
    assert is_win(_fill(ZERO, "0")) is False
    assert is_win(_fill(None, "0")) is None


def test_empty_totals_are_all_zero() -> None:
    expected = (0, 0, 0, 0, ZERO, 0, 0, 0, ZERO, "")
    for totals in (StepTotals(), fold_steps([])):
        assert (
            totals.decisions,
            totals.fallbacks,
            totals.prompt_tokens,
            totals.completion_tokens,
            totals.cost_usd,
            totals.trades,
            totals.winning_trades,
            totals.losing_trades,
            totals.fees_paid,
            totals.fallback_flags,
        ) == expected


def test_fold_steps_adds_every_counter_over_every_step() -> None:
    steps = [
        _step([_fill(D(2), "1"), _fill(None, "0.25")], prompt=10, completion=3, cost=D("0.5")),
        _step([], fallback=True),
        _step(
            [_fill(D(-1), "0.5"), _fill(ZERO, "0.5"), _fill(D(3), "0.1")],
            prompt=7,
            cost=D("0.25"),
        ),
        _step([], fallback=True, completion=4, cost=ZERO),
        _step([]),
    ]
    totals = fold_steps(iter(steps))
    assert totals == StepTotals(
        decisions=5,
        fallbacks=2,
        prompt_tokens=17,
        completion_tokens=7,
        cost_usd=D("0.75"),
        trades=5,
        winning_trades=2,
        losing_trades=2,
        fees_paid=D("2.35"),
        fallback_flags="01010",
    )
    assert isinstance(totals.fallbacks, int)
