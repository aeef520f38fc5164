"""race.domain.efficiency at its edges: negative or zero spend and token counts, one token,
no starting capital, and the money rounding of the per-USD P&L."""

from __future__ import annotations

from decimal import Decimal

from race.domain.efficiency import MILLION, efficiency

D = Decimal


def test_a_negative_spend_or_token_count_counts_as_none() -> None:
    e = efficiency(D(1000), D(1100), D(-3), -50, -7)
    assert e.spend_usd == D(0) and e.tokens == 0
    assert e.pnl_per_usd is None and e.return_pct_per_usd is None
    assert e.pnl_per_million_tokens is None and e.return_pct_per_million_tokens is None
    mixed = efficiency(D(1000), D(1100), D(2), -50, 250)
    assert mixed.tokens == 250
    assert efficiency(D(1000), D(1100), D(2), 250, -50).tokens == 250


def test_one_token_and_a_tiny_spend_are_spend() -> None:
    e = efficiency(D(1000), D(1010), D("0.01"), 1, None)
    assert D(1_000_000) == MILLION
    assert e.spend_usd == D("0.01") and e.tokens == 1
    assert e.pnl_per_usd == D(1000)  # 10 / 0.01
    assert e.return_pct_per_usd == 100.0  # 1 % / 0.01
    assert e.pnl_per_million_tokens == D(10_000_000)  # 10 / 0.000001
    assert e.return_pct_per_million_tokens == 1_000_000.0
    assert efficiency(D(1000), D(1010), None, None, 1).tokens == 1


def test_without_starting_capital_only_the_pnl_ratios_exist() -> None:
    e = efficiency(D(0), D(10), D(4), 500_000, 500_000)
    assert e.pnl_per_usd == D("2.5")
    assert e.pnl_per_million_tokens == D(10)
    assert e.return_pct_per_usd is None and e.return_pct_per_million_tokens is None
    negative = efficiency(D(-5), D(10), D(4), 1, 0)
    assert negative.return_pct_per_usd is None and negative.return_pct_per_million_tokens is None


def test_the_pnl_per_usd_is_rounded_to_the_money_scale() -> None:
    e = efficiency(D(100), D(101), D(3), 3_000_000, 0)
    assert e.pnl_per_usd == D("0.33333333")
    assert e.pnl_per_million_tokens == D("0.33333333")
    assert e.return_pct_per_usd == float(D(1) / D(3))
    assert e.return_pct_per_million_tokens == float(D(1) / D(3))
    loss = efficiency(D(100), D(98), D("0.5"), 0, 2_000_000)
    assert loss.pnl_per_usd == D(-4)
    assert loss.return_pct_per_usd == -4.0
    assert loss.return_pct_per_million_tokens == -1.0


def test_a_negative_zero_spend_is_reported_as_zero() -> None:
    e = efficiency(D(100), D(101), D("-0"), 10, 0)
    assert str(e.spend_usd) == "0" and e.pnl_per_usd is None
