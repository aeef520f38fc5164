"""Calmar ratio of an equity curve (race.domain.metrics.calmar_ratio)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from race.domain.metrics import YEAR, EquityStats, calmar_ratio, equity_stats

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_year_of_growth_over_its_drawdown() -> None:
    stats = equity_stats([(T0, 100.0), (T0 + YEAR / 2, 90.0), (T0 + YEAR, 121.0)])
    # 21 % in exactly one year, over a 10 % drawdown.
    assert calmar_ratio(stats, 10.0) == pytest.approx(0.21 / 0.10)


def test_a_shorter_span_is_annualised_by_compounding() -> None:
    stats = equity_stats([(T0, 100.0), (T0 + YEAR / 4, 110.0)])
    expected = (1.1**4 - 1.0) / 0.05
    assert calmar_ratio(stats, 5.0) == pytest.approx(expected)


def test_a_loss_gives_a_negative_ratio() -> None:
    stats = equity_stats([(T0, 100.0), (T0 + YEAR, 80.0)])
    assert calmar_ratio(stats, 20.0) == pytest.approx(-0.2 / 0.2)


@pytest.mark.parametrize("drawdown", [0.0, -1.0])
def test_no_drawdown_is_undefined(drawdown: float) -> None:
    stats = equity_stats([(T0, 100.0), (T0 + YEAR, 120.0)])
    assert calmar_ratio(stats, drawdown) is None


def test_undefined_without_a_curve_or_a_span() -> None:
    assert calmar_ratio(EquityStats(), 10.0) is None
    assert calmar_ratio(equity_stats([(T0, 100.0)]), 10.0) is None


def test_undefined_when_the_first_value_or_the_growth_is_not_positive() -> None:
    later = T0 + timedelta(days=30)
    assert calmar_ratio(equity_stats([(T0, 0.0), (later, 10.0)]), 10.0) is None
    assert calmar_ratio(equity_stats([(T0, -5.0), (later, 10.0)]), 10.0) is None
    assert calmar_ratio(equity_stats([(T0, 100.0), (later, 0.0)]), 10.0) is None
    assert calmar_ratio(equity_stats([(T0, 100.0), (later, -1.0)]), 10.0) is None
