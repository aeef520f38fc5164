"""Unit tests of race.domain.sanitize: character classes, bounds, identity when nothing
changes, and the notes of every alteration (mutation-tested)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from race.domain import sanitize as s
from race.domain.model import Action, RiskNote
from race.domain.sanitize import (
    MAX_COST_USD,
    MAX_COUNT,
    MAX_JSON_DEPTH,
    MAX_JSON_ITEMS,
    clamp_count,
    clean_json,
    clean_text,
    sanitize_decision,
    strip_controls,
    truncate_text,
)
from race.domain.step import DecisionRecord


def record(**changes: Any) -> DecisionRecord:
    base = DecisionRecord(
        cycle_time=datetime(2024, 1, 1, tzinfo=UTC),
        action=Action.HOLD,
        asset="BTC",
        quantity=None,
        rationale="calm",
        cited_rules=["R1"],
        regime="range",
        market_conditions={},
        value_before=Decimal(100),
        value_after=Decimal(100),
        was_validated=True,
        notes=[],
        proposed_orders=[{"asset": "BTC", "quantity": 1.5}],
        fallback=False,
        fallback_reason=None,
        raw_output="{}",
        prompt="p",
        model="m",
        latency_ms=12,
        prompt_tokens=3,
        completion_tokens=4,
        cost_usd=Decimal("0.01"),
        confidence=0.5,
        details={"k": [1, "v"]},
    )
    return replace(base, **changes)


def test_bounds() -> None:
    assert (10**9, Decimal(10**6)) == (MAX_COUNT, MAX_COST_USD)
    assert (s.MAX_TEXT_CHARS, s.MAX_KEY_CHARS, MAX_JSON_DEPTH, MAX_JSON_ITEMS) == (
        64_000,
        200,
        8,
        200,
    )


@pytest.mark.parametrize(
    "char",
    [
        "\x00",
        "\x01",
        "\x08",
        "\x0b",
        "\x0c",
        "\x0e",
        "\x1b",
        "\x1f",
        "\x7f",
        *(chr(code) for code in (0xD800, 0xDBFF, 0xDC00, 0xDFFF)),
    ],
)
def test_removed_characters(char: str) -> None:
    assert strip_controls(f"a{char}b{char}") == "ab"


@pytest.mark.parametrize(
    "char", ["\t", "\n", "\r", " ", "~", "\x80", "é", "\ud7ff", "\ue000", "€", "😀"]
)
def test_kept_characters(char: str) -> None:
    assert strip_controls(f"a{char}b") == f"a{char}b"


def test_truncate_boundaries() -> None:
    assert truncate_text("abcde", 5) == "abcde"
    marker = " …[truncated 40 characters]"
    long = "x" * 100
    cut = truncate_text(long, 60)
    assert cut == "x" * (60 - len(marker)) + marker
    assert len(cut) == 60
    assert truncate_text("y" * 10, 3) == " …[truncated 7 characters]"


def test_clean_text() -> None:
    assert clean_text("a\x00b") == "ab"
    assert (
        clean_text("a\x00" + "b" * 70_000)
        == "a" + "b" * (64_000 - 30) + " …[truncated 6001 characters]"
    )
    assert len(clean_text("z" * 70_000)) == 64_000
    assert clean_text("\x00" * 10 + "abc", 3) == "abc"


def test_clamp_count() -> None:
    assert clamp_count(None) is None
    assert clamp_count(-1) == 0
    assert clamp_count(0) == 0
    assert clamp_count(5) == 5
    assert clamp_count(MAX_COUNT) == MAX_COUNT
    assert clamp_count(MAX_COUNT + 1) == MAX_COUNT


# --- clean_json ----------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, True, False, "ok", 0, -(2**63) + 1, 2**63 - 1, 1.5, -0.0])
def test_scalars_unchanged(value: object) -> None:
    assert clean_json(value) is value


@pytest.mark.parametrize(
    ("value", "expected"),
    [(2**63, str(2**63)), (-(2**63), str(-(2**63))), (10**50, "1" + "0" * 39)],
)
def test_big_ints_become_text(value: int, expected: str) -> None:
    assert clean_json(value) == expected


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), float("-inf"), Decimal("NaN"), Decimal("-Infinity")]
)
def test_non_finite_numbers_become_null(value: object) -> None:
    assert clean_json(value) is None


def test_decimals_become_text() -> None:
    assert clean_json(Decimal("1.50")) == "1.50"


def test_strings_are_cleaned_and_bounded() -> None:
    assert clean_json("a\x00b") == "ab"
    assert clean_json("q" * 2000) == "q" * 2000
    cut = clean_json("q" * 2001)
    assert len(cut) == 2000 and cut.endswith("q …[truncated 1 characters]")
    assert clean_json("abcdef", text_limit=3) == " …[truncated 3 characters]"


def test_unchanged_containers_are_returned_as_is() -> None:
    value = {"a": [1, "x", {"b": None}], "c": 2.5}
    assert clean_json(value) is value
    items = [1, [2, {"z": "w"}]]
    assert clean_json(items) is items
    assert clean_json({}) == {}
    empty: list[int] = []
    assert clean_json(empty) is empty


def test_tuples_become_lists() -> None:
    assert clean_json((1, "a")) == [1, "a"]
    assert isinstance(clean_json((1,)), list)


def test_changed_containers_are_copies() -> None:
    value = {"a\x00": 1, "b": [float("nan"), "ok"], "c": {"d": float("inf")}}
    cleaned = clean_json(value)
    assert cleaned == {"a": 1, "b": [None, "ok"], "c": {"d": None}}
    assert value["b"][0] != value["b"][0], "the input is not altered"
    assert clean_json({"only": float("nan")}) == {"only": None}
    assert clean_json({"k\x01": "v"}) == {"k": "v"}


def test_non_string_keys_and_long_keys() -> None:
    assert clean_json({1: "a", None: "b"}) == {"1": "a", "None": "b"}
    long_key = "k" * 300
    assert clean_json({long_key: 1}) == {truncate_text(long_key, 200): 1}
    assert clean_json({"k" * 200: 1}) == {"k" * 200: 1}


def test_item_count_boundary() -> None:
    exactly = {str(i): i for i in range(MAX_JSON_ITEMS)}
    assert clean_json(exactly) is exactly
    over = {str(i): i for i in range(MAX_JSON_ITEMS + 1)}
    assert clean_json(over) == exactly
    listed = list(range(MAX_JSON_ITEMS))
    assert clean_json(listed) is listed
    assert clean_json([*listed, 200]) == listed


def test_depth_boundary() -> None:
    def nest(depth: int) -> Any:
        value: Any = "leaf"
        for _ in range(depth):
            value = [value]
        return value

    deep_ok = nest(MAX_JSON_DEPTH)
    assert clean_json(deep_ok) is deep_ok
    too_deep = nest(MAX_JSON_DEPTH + 1)
    cleaned = clean_json(too_deep)
    inner = cleaned
    for _ in range(MAX_JSON_DEPTH):
        inner = inner[0]
    assert inner == "[nested too deep]"
    assert clean_json({"a": 1}, depth=MAX_JSON_DEPTH) == "[nested too deep]"
    assert clean_json("s", depth=MAX_JSON_DEPTH + 5) == "s"


def test_text_limit_reaches_nested_strings() -> None:
    assert clean_json({"a": ["abcdef"]}, text_limit=5) == {"a": [truncate_text("abcdef", 5)]}


def test_other_objects_become_their_bounded_repr() -> None:
    class Odd:
        def __repr__(self) -> str:
            return "odd\x00" + "o" * 300

    assert clean_json(Odd()) == clean_text("odd" + "o" * 300, 200)
    assert clean_json({1, 2}) == "{1, 2}"


# --- sanitize_decision ---------------------------------------------------------------


def test_a_clean_record_is_returned_as_is() -> None:
    d = record()
    assert sanitize_decision(d) is d
    none = record(
        asset=None,
        cost_usd=None,
        confidence=None,
        latency_ms=None,
        prompt_tokens=None,
        completion_tokens=None,
        raw_output=None,
        prompt=None,
        model=None,
    )
    assert sanitize_decision(none) is none


def test_text_fields_are_cleaned_and_noted() -> None:
    d = record(rationale="a\x00b", fallback_reason="r" * 1001, model="m\x01" + "x" * 300)
    out = sanitize_decision(d)
    assert out.rationale == "ab"
    assert out.fallback_reason == truncate_text("r" * 1001, 1000)
    assert out.model == truncate_text("m" + "x" * 300, 200)
    assert out.details["sanitized"] == [
        "rationale: control characters removed",
        "fallback_reason: cut to 1000 characters",
        "model: control characters removed",
        "model: cut to 200 characters",
    ]
    assert out.details["k"] == [1, "v"]
    assert d.details == {"k": [1, "v"]}


def test_text_limits_per_field() -> None:
    out = sanitize_decision(
        record(rationale="r" * 8000, raw_output="o" * 64_000, prompt="p" * 64_001)
    )
    assert out.rationale == "r" * 8000
    assert out.raw_output == "o" * 64_000
    assert len(out.prompt) == 64_000 and out.prompt.endswith(" …[truncated 1 characters]")
    assert out.details["sanitized"] == ["prompt: cut to 64000 characters"]
    assert sanitize_decision(record(rationale="r" * 8001)).rationale.endswith(
        "[truncated 1 characters]"
    )


def test_non_text_fields() -> None:
    out = sanitize_decision(record(rationale=None, model=42))  # type: ignore[arg-type]
    assert out.rationale is None
    assert out.model == "42"
    assert out.details["sanitized"] == ["model was int, not text"]


def test_control_only_change_in_limit() -> None:
    out = sanitize_decision(record(prompt="\x00" * 10 + "p"))
    assert out.prompt == "p"
    assert out.details["sanitized"] == ["prompt: control characters removed"]


def test_counts() -> None:
    out = sanitize_decision(
        record(latency_ms=-5, prompt_tokens=MAX_COUNT + 1, completion_tokens=MAX_COUNT)
    )
    assert (out.latency_ms, out.prompt_tokens, out.completion_tokens) == (0, MAX_COUNT, MAX_COUNT)
    assert out.details["sanitized"] == [
        "latency_ms -5 out of range [0, 1000000000]: clamped to 0",
        "prompt_tokens 1000000001 out of range [0, 1000000000]: clamped to 1000000000",
    ]
    bad = sanitize_decision(record(latency_ms=1.5, prompt_tokens=True, completion_tokens="7"))  # type: ignore[arg-type]
    assert (bad.latency_ms, bad.prompt_tokens, bad.completion_tokens) == (None, None, None)
    assert bad.details["sanitized"] == [
        "latency_ms was float, not an integer: dropped",
        "prompt_tokens was bool, not an integer: dropped",
        "completion_tokens was str, not an integer: dropped",
    ]


def test_cost() -> None:
    for cost in (Decimal(0), MAX_COST_USD):
        d = record(cost_usd=cost)
        assert sanitize_decision(d) is d
    low = sanitize_decision(record(cost_usd=Decimal("-0.5")))
    assert low.cost_usd == Decimal(0)
    assert low.details["sanitized"] == ["cost_usd -0.5 out of range: clamped to 0"]
    high = sanitize_decision(record(cost_usd=Decimal("1000000.5")))
    assert high.cost_usd == Decimal("1000000.00000000")
    assert high.cost_usd.as_tuple().exponent == -8
    assert high.details["sanitized"] == ["cost_usd 1.00000e+6 out of range: clamped to 1000000"]
    for bad in (Decimal("NaN"), Decimal("Infinity"), 0.5):
        out = sanitize_decision(record(cost_usd=bad))
        assert out.cost_usd is None
        assert out.details["sanitized"] == ["cost_usd is not a finite number: dropped"]


def test_confidence() -> None:
    for ok in (0, 1, 0.25, 7.5):
        d = record(confidence=ok)
        assert sanitize_decision(d) is d
    for bad in (float("nan"), float("inf"), True, "high", Decimal("0.5")):
        out = sanitize_decision(record(confidence=bad))
        assert out.confidence is None
        assert out.details["sanitized"] == ["confidence is not a finite number: dropped"]


def test_notes_are_cleaned_and_bounded() -> None:
    note = RiskNote(
        0,
        "B\x00TC" + "x" * 40,
        "co\x01de" + "c" * 80,
        "m\x00" + "m" * 1200,
        "dropped",
        "1\x002" + "9" * 80,
    )
    out = sanitize_decision(record(notes=[note] * 201))
    assert len(out.notes) == 200
    first = out.notes[0]
    assert first.asset == truncate_text("BTC" + "x" * 40, 32)
    assert first.code == truncate_text("code" + "c" * 80, 64)
    assert first.message == truncate_text("m" * 1201, 1000)
    assert first.requested_quantity == truncate_text("12" + "9" * 80, 64)
    assert (first.order_index, first.outcome) == (0, "dropped")
    plain = RiskNote(1, None, "c", "m", "refused", None)
    assert sanitize_decision(record(notes=[plain])).notes == [plain]


def test_details_and_proposed_orders() -> None:
    out = sanitize_decision(
        record(details={"x": float("nan")}, proposed_orders=[{"quantity": float("inf")}])
    )
    assert out.details == {
        "x": None,
        "sanitized": ["proposed_orders: non-finite numbers, control characters or size bounded"],
    }
    assert out.proposed_orders == [{"quantity": None}]
    not_a_dict = sanitize_decision(record(details=["oops"]))  # type: ignore[arg-type]
    assert not_a_dict.details == {}
    as_tuple = sanitize_decision(record(proposed_orders=({"a": 1},)))  # type: ignore[arg-type]
    assert as_tuple.proposed_orders == [{"a": 1}]
    assert as_tuple.details["sanitized"] == [
        "proposed_orders: non-finite numbers, control characters or size bounded"
    ]
    same = [{"a": 1}]
    d = record(proposed_orders=same, details={"x": "\x00"})
    out2 = sanitize_decision(d)
    assert out2.proposed_orders is same
    assert out2.details == {"x": ""}


def test_cited_rules_asset_and_regime() -> None:
    out = sanitize_decision(
        record(
            cited_rules=[f"R{i}\x00" for i in range(25)],
            asset="B\x00" + "T" * 20,
            regime="tr\x00end" + "d" * 40,
        )
    )
    assert out.cited_rules == [f"R{i}" for i in range(20)]
    assert out.asset == truncate_text("B" + "T" * 20, 16)
    assert out.regime == truncate_text("trend" + "d" * 40, 32)
    assert "sanitized" not in out.details
    long_rule = sanitize_decision(record(cited_rules=["r" * 65, 5]))  # type: ignore[list-item]
    assert long_rule.cited_rules == [truncate_text("r" * 65, 64), "5"]
    d = record(cited_rules=["r" * 64], asset="A" * 16, regime="g" * 32)
    assert sanitize_decision(d) is d


def test_sanitized_notes_are_capped() -> None:
    d = record(rationale=7, fallback_reason=8, raw_output=9, prompt=10, model=11)  # type: ignore[arg-type]
    out = sanitize_decision(d)
    assert len(out.details["sanitized"]) == 5
    assert out.rationale == "7"


def test_non_string_keys_are_bounded() -> None:
    key = 10**300
    assert clean_json({key: 1}) == {truncate_text(str(key), 200): 1}


def test_depth_boundary_of_objects() -> None:
    def nest(depth: int) -> Any:
        value: Any = "leaf"
        for _ in range(depth):
            value = {"k": value}
        return value

    deep_ok = nest(MAX_JSON_DEPTH)
    assert clean_json(deep_ok) is deep_ok
    inner = clean_json(nest(MAX_JSON_DEPTH + 1))
    for _ in range(MAX_JSON_DEPTH):
        inner = inner["k"]
    assert inner == "[nested too deep]"


def test_controls_removed_to_exactly_the_limit_is_not_a_cut() -> None:
    out = sanitize_decision(record(model="m\x00" + "x" * 199))
    assert out.model == "m" + "x" * 199
    assert out.details["sanitized"] == ["model: control characters removed"]
