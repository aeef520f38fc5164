"""Unit tests of race.domain.money: every branch and boundary (mutation-tested)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext

import pytest

from race.domain import money
from race.domain.money import fmt_usd, quantize, quantize_down, to_decimal


def test_constants() -> None:
    assert money.SCALE == 8
    assert Decimal("0.00000001") == money.QUANTUM
    assert (money.ZERO, money.ONE, money.HUNDRED, money.BPS) == (0, 1, 100, 10_000)


@pytest.mark.parametrize("value", [True, False])
def test_booleans_are_refused(value: bool) -> None:
    with pytest.raises(ValueError, match=r"^qty must be a number, got a boolean$"):
        to_decimal(value, field="qty")


def test_default_field_name() -> None:
    with pytest.raises(ValueError, match=r"^value must be a number, got a boolean$"):
        to_decimal(True)


def test_decimal_is_returned_as_is() -> None:
    d = Decimal("1.2300")
    assert to_decimal(d) is d


@pytest.mark.parametrize(("value", "expected"), [(0, "0"), (-7, "-7"), (10**30, "1" + "0" * 30)])
def test_ints(value: int, expected: str) -> None:
    assert to_decimal(value) == Decimal(expected)


def test_float_goes_through_repr() -> None:
    result = to_decimal(0.1)
    assert str(result) == "0.1"
    assert str(to_decimal(-2.5)) == "-2.5"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats(value: float) -> None:
    with pytest.raises(ValueError, match=r"^q must be finite, got (nan|inf|-inf)$"):
        to_decimal(value, field="q")


@pytest.mark.parametrize(("text", "expected"), [(" 1.5 ", "1.5"), ("-0.001", "-0.001"), ("0", "0")])
def test_strings(text: str, expected: str) -> None:
    assert str(to_decimal(text)) == expected


@pytest.mark.parametrize("text", ["abc", "", "1,5"])
def test_bad_strings(text: str) -> None:
    with pytest.raises(ValueError, match=rf"^q must be a number, got {text!r}$") as info:
        to_decimal(text, field="q")
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-inf", "sNaN"])
def test_non_finite_strings(text: str) -> None:
    with pytest.raises(ValueError, match=rf"^q must be finite, got {text!r}$"):
        to_decimal(text, field="q")


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("-Infinity")])
def test_non_finite_decimals(value: Decimal) -> None:
    with pytest.raises(ValueError, match=r"^q must be finite"):
        to_decimal(value, field="q")


@pytest.mark.parametrize(("value", "name"), [(None, "NoneType"), ([1], "list"), (1j, "complex")])
def test_other_types(value: object, name: str) -> None:
    with pytest.raises(ValueError, match=rf"^q must be a number, got {name}$"):
        to_decimal(value, field="q")


def test_quantize_half_even() -> None:
    assert quantize(Decimal("0.000000005")) == Decimal("0")
    assert quantize(Decimal("0.000000015")) == Decimal("0.00000002")
    assert quantize(Decimal("0.000000025")) == Decimal("0.00000002")
    assert quantize(Decimal("1.000000016")) == Decimal("1.00000002")
    assert quantize(Decimal("2")).as_tuple().exponent == -8


def test_quantize_down_truncates_towards_zero() -> None:
    assert quantize_down(Decimal("0.000000019")) == Decimal("0.00000001")
    assert quantize_down(Decimal("-0.000000019")) == Decimal("-0.00000001")
    assert quantize_down(Decimal("3")).as_tuple().exponent == -8


def test_fmt_usd() -> None:
    assert fmt_usd(Decimal("1234567.125")) == "1,234,567.12"
    assert fmt_usd(Decimal("0.135")) == "0.14"
    assert fmt_usd(Decimal("5")) == "5.00"
    assert fmt_usd(Decimal("-1000.5")) == "-1,000.50"


def test_rounding_does_not_depend_on_the_decimal_context() -> None:
    with localcontext(rounding=ROUND_HALF_UP):
        assert quantize(Decimal("0.000000025")) == Decimal("0.00000002")
        assert fmt_usd(Decimal("0.125")) == "0.12"
