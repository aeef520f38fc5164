"""Unit tests of race.domain.parsing: the exact outcome and message of every edge case
(mutation-tested)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from race.domain.model import Order, RiskLimits, RiskNote, Side
from race.domain.parsing import (
    MAX_CITED_RULES,
    AnswerRejected,
    ParsedAnswer,
    cited_rules_of,
    parse_model_output,
    parse_orders,
)

ASSETS = ["BTC", "ETH"]
LIMITS = RiskLimits(max_order_quantity=Decimal(1000))


def answer(**fields: object) -> str:
    return json.dumps({"reasoning": "why", "orders": [], **fields})


def parse(
    *orders: object, assets: list[str] | None = None
) -> tuple[list[tuple[int, Order]], list[RiskNote]]:
    return parse_orders(list(orders), ASSETS if assets is None else assets, LIMITS)


def only_note(*orders: object) -> RiskNote:
    kept, notes = parse(*orders)
    assert kept == []
    assert len(notes) == 1
    return notes[0]


# --- parse_model_output -------------------------------------------------------------


@pytest.mark.parametrize("text", [None, "", "   \n\t"])
def test_empty_answer(text: str | None) -> None:
    with pytest.raises(AnswerRejected, match=r"^empty answer from the model$"):
        parse_model_output(text)


def test_minimal_answer() -> None:
    parsed = parse_model_output('{"reasoning": "  hold on  ", "orders": []}')
    assert parsed == ParsedAnswer(
        reasoning="hold on", orders=[], cited_rules=[], extra={}, notes=[]
    )


@pytest.mark.parametrize(
    "text",
    [
        '```json\n{"reasoning": "r", "orders": [1]}\n```',
        '  ```JSON {"reasoning": "r", "orders": [1]} ```  ',
        '```\n{"reasoning": "r", "orders": [1]}\n```\n',
        ' \n {"reasoning": "r", "orders": [1]} \n',
    ],
)
def test_code_fences_and_whitespace_are_tolerated(text: str) -> None:
    parsed = parse_model_output(text)
    assert parsed.reasoning == "r"
    assert parsed.orders == [1]


def test_text_around_a_fence_is_not_json() -> None:
    with pytest.raises(AnswerRejected, match=r"^answer is not valid JSON \(JSONDecodeError: "):
        parse_model_output('Here you go: ```json {"reasoning": "r", "orders": []} ```')


def test_deep_nesting_is_not_json() -> None:
    with pytest.raises(
        AnswerRejected, match=r"^answer is not valid JSON \(RecursionError: "
    ) as info:
        parse_model_output("[" * 100_000 + "]" * 100_000)
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize(
    ("text", "kind"), [("[1]", "list"), ('"x"', "str"), ("3", "int"), ("null", "NoneType")]
)
def test_answer_must_be_an_object(text: str, kind: str) -> None:
    with pytest.raises(AnswerRejected, match=rf"^answer must be a JSON object, got {kind}$"):
        parse_model_output(text)


@pytest.mark.parametrize(
    ("orders", "kind"), [({"asset": "BTC"}, "dict"), ("BUY", "str"), (None, "NoneType")]
)
def test_orders_must_be_a_list(orders: object, kind: str) -> None:
    with pytest.raises(AnswerRejected, match=rf"^'orders' must be a list, got {kind}$"):
        parse_model_output(answer(orders=orders))


def test_schema_errors_are_described() -> None:
    with pytest.raises(AnswerRejected) as info:
        parse_model_output('{"orders": []}')
    assert str(info.value) == "answer does not match the schema: reasoning: Field required"
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(AnswerRejected) as info:
        parse_model_output('{"reasoning": "  "}')
    assert str(info.value) == (
        "answer does not match the schema: reasoning: Value error, reasoning is blank; "
        "orders: Field required"
    )
    with pytest.raises(
        AnswerRejected,
        match=r"^answer does not match the schema: reasoning: Input should be a valid string$",
    ):
        parse_model_output('{"reasoning": 5, "orders": []}')


def test_extra_fields_and_nested_json_are_kept() -> None:
    parsed = parse_model_output(answer(confidence=0.7, meta={"a": [1, {"b": None}]}))
    assert parsed.extra == {"confidence": 0.7, "meta": {"a": [1, {"b": None}]}}
    assert "cited_rules" not in parsed.extra


def test_nan_and_infinity_tokens_are_noted() -> None:
    parsed = parse_model_output(
        '{"reasoning": "r", "orders": [{"quantity": NaN}, {"quantity": -Infinity}, '
        '{"quantity": Infinity}, {"quantity": NaN}]}'
    )
    assert parsed.notes == [
        "answer holds non-JSON numbers (-Infinity, Infinity, NaN): the values are not finite "
        "and refused where they matter"
    ]
    quantities = [o["quantity"] for o in parsed.orders]
    assert quantities[0] != quantities[0]
    assert quantities[1] == float("-inf") and quantities[2] == float("inf")


def test_cited_rules_notes_come_before_non_finite_notes() -> None:
    parsed = parse_model_output('{"reasoning": "r", "orders": [], "x": NaN, "cited_rules": "R1"}')
    assert parsed.cited_rules == ["R1"]
    assert parsed.notes[0] == "cited_rules was a string, not a list: read as one rule"
    assert parsed.notes[1].startswith("answer holds non-JSON numbers (NaN)")
    assert parsed.extra == {"x": parsed.extra["x"]}


# --- cited_rules_of -------------------------------------------------------------------


def test_cited_rules_none_and_absent() -> None:
    assert cited_rules_of(None) == ([], [])
    assert parse_model_output(answer()).cited_rules == []


def test_cited_rules_string() -> None:
    assert cited_rules_of("  R1 ") == (
        ["R1"],
        ["cited_rules was a string, not a list: read as one rule"],
    )
    assert cited_rules_of(" ") == (
        [],
        [
            "cited_rules was a string, not a list: read as one rule",
            "cited_rules items that are not rule names were ignored: 0 (blank)",
        ],
    )


@pytest.mark.parametrize(("value", "kind"), [({"a": 1}, "dict"), (3, "int"), (True, "bool")])
def test_cited_rules_wrong_type(value: object, kind: str) -> None:
    assert cited_rules_of(value) == (
        [],
        [f"cited_rules must be a list of strings, got {kind}: ignored"],
    )


def test_cited_rules_items() -> None:
    rules, notes = cited_rules_of(["a", None, " b ", "", 7, ["x"]])
    assert rules == ["a", "b"]
    assert notes == [
        "cited_rules items that are not rule names were ignored: "
        "1 (null), 3 (blank), 4 (int), 5 (list)"
    ]
    assert cited_rules_of([]) == ([], [])


def test_cited_rules_cap_boundary() -> None:
    exactly = [f"R{i}" for i in range(MAX_CITED_RULES)]
    assert MAX_CITED_RULES == 20
    assert cited_rules_of(exactly) == (exactly, [])
    over = [*exactly, "R20"]
    assert cited_rules_of(over) == (exactly, ["cited_rules: only the first 20 of 21 are kept"])


# --- parse_orders ---------------------------------------------------------------------


def test_none_and_empty() -> None:
    assert parse_orders(None, ASSETS, LIMITS) == ([], [])
    assert parse_orders([], ASSETS, LIMITS) == ([], [])


def test_valid_orders_keep_their_index_and_canonical_symbol() -> None:
    kept, notes = parse_orders(
        [
            {"asset": " btc ", "side": " buy ", "quantity": 1},
            "junk",
            {"assetSymbol": "Eth", "action": "Sell", "qty": 0.5},
            {"symbol": "BTC", "side": "SELL", "quantity": Decimal("0.00000001")},
            Order(asset="ETH", side=Side.BUY, quantity=Decimal(2)),
        ],
        ["BTC", "Eth"],
        LIMITS,
    )
    assert kept == [
        (0, Order(asset="BTC", side=Side.BUY, quantity=Decimal(1))),
        (2, Order(asset="Eth", side=Side.SELL, quantity=Decimal("0.5"))),
        (3, Order(asset="BTC", side=Side.SELL, quantity=Decimal("0.00000001"))),
        (4, Order(asset="Eth", side=Side.BUY, quantity=Decimal(2))),
    ]
    assert [(n.order_index, n.code) for n in notes] == [(1, "bad_order_shape")]


def test_first_field_name_wins() -> None:
    kept, _ = parse(
        {"asset": "ETH", "symbol": "BTC", "side": "BUY", "action": "SELL", "quantity": 2, "qty": 3}
    )
    assert kept == [(0, Order(asset="ETH", side=Side.BUY, quantity=Decimal(2)))]


@pytest.mark.parametrize(
    ("item", "kind"), [("BUY BTC", "str"), ([1], "list"), (None, "NoneType"), (3, "int")]
)
def test_bad_shape(item: object, kind: str) -> None:
    assert only_note(item) == RiskNote(
        order_index=0,
        asset=None,
        code="bad_order_shape",
        message=f"order must be an object with asset, side and quantity, got {kind}",
        outcome="dropped",
        requested_quantity=None,
    )


@pytest.mark.parametrize("asset", [None, "", "  ", 5])
def test_no_asset(asset: object) -> None:
    assert only_note({"asset": asset, "side": "BUY", "quantity": 1}) == RiskNote(
        order_index=0,
        asset=None,
        code="bad_asset",
        message="order has no asset symbol",
        outcome="dropped",
        requested_quantity="1",
    )


def test_missing_asset_and_quantity() -> None:
    note = only_note({"side": "BUY"})
    assert (note.code, note.requested_quantity) == ("bad_asset", None)


def test_unknown_asset() -> None:
    long_name = "X" * 40
    note = only_note({"asset": long_name, "side": "BUY", "quantity": "9" * 100})
    assert note == RiskNote(
        order_index=0,
        asset="X" * 32,
        code="unknown_asset",
        message=f"asset {'X' * 32!r} is not traded in this race (allowed: BTC, ETH)",
        outcome="dropped",
        requested_quantity="9" * 64,
    )


@pytest.mark.parametrize(
    ("side", "shown"),
    [("HOLD", "'HOLD'"), (None, "None"), (1, "1"), ("", "''"), ("B" * 50, "'" + "B" * 39)],
)
def test_bad_side(side: object, shown: str) -> None:
    assert only_note({"asset": "eth", "side": side, "quantity": 1}) == RiskNote(
        order_index=0,
        asset="ETH",
        code="bad_side",
        message=f"side must be BUY or SELL, got {shown}",
        outcome="dropped",
        requested_quantity="1",
    )


@pytest.mark.parametrize(
    ("quantity", "message"),
    [
        ("0.05", "quantity must be a number, got str '0.05'"),
        ("Q" * 40, f"quantity must be a number, got str {'Q' * 32!r}"),
        (True, "quantity must be a number, got bool"),
        (None, "quantity must be a number, got null"),
        ([1], "quantity must be a number, got list"),
    ],
)
def test_quantity_type(quantity: object, message: str) -> None:
    note = only_note({"asset": "BTC", "side": "BUY", "quantity": quantity})
    assert (note.asset, note.code, note.message, note.outcome) == (
        "BTC",
        "bad_quantity",
        message,
        "dropped",
    )


@pytest.mark.parametrize(
    ("quantity", "shown"),
    [(float("nan"), "nan"), (float("inf"), "inf"), (Decimal("NaN"), "Decimal('NaN')")],
)
def test_non_finite_quantity(quantity: object, shown: str) -> None:
    note = only_note({"asset": "BTC", "side": "SELL", "quantity": quantity})
    assert (note.code, note.message) == ("bad_quantity", f"quantity must be finite, got {shown}")
    assert note.requested_quantity == str(quantity)


@pytest.mark.parametrize(
    ("quantity", "shown"), [(0, "0"), (-1, "-1"), (-0.5, "-0.5"), (0.0, "0.0")]
)
def test_non_positive_quantity(quantity: float, shown: str) -> None:
    note = only_note({"asset": "BTC", "side": "BUY", "quantity": quantity})
    assert note == RiskNote(
        order_index=0,
        asset="BTC",
        code="non_positive_quantity",
        message=f"quantity must be > 0, got {shown}",
        outcome="dropped",
        requested_quantity=str(quantity),
    )


def test_absurd_quantity_boundary() -> None:
    kept, notes = parse({"asset": "BTC", "side": "BUY", "quantity": 1000})
    assert kept == [(0, Order(asset="BTC", side=Side.BUY, quantity=Decimal(1000)))] and notes == []
    note = only_note({"asset": "BTC", "side": "BUY", "quantity": 1000.5})
    assert note == RiskNote(
        order_index=0,
        asset="BTC",
        code="absurd_quantity",
        message="quantity 1000.5 exceeds the sanity bound 1000",
        outcome="dropped",
        requested_quantity="1000.5",
    )


def test_default_bound_is_a_billion() -> None:
    kept, notes = parse_orders(
        [{"asset": "BTC", "side": "BUY", "quantity": 10**9 + 1}], ASSETS, RiskLimits()
    )
    assert kept == []
    assert notes[0].message == "quantity 1.00000e+9 exceeds the sanity bound 1000000000"


def test_one_bad_order_does_not_cost_the_others() -> None:
    kept, notes = parse(
        {"asset": "BTC", "side": "BUY", "quantity": -1},
        {"asset": "ETH", "side": "SELL", "quantity": 2},
        {"asset": "DOGE", "side": "BUY", "quantity": 1},
    )
    assert kept == [(1, Order(asset="ETH", side=Side.SELL, quantity=Decimal(2)))]
    assert [(n.order_index, n.code) for n in notes] == [
        (0, "non_positive_quantity"),
        (2, "unknown_asset"),
    ]


def test_answer_end_to_end() -> None:
    parsed = parse_model_output(
        '```json\n{"reasoning": "go", "orders": [{"asset": "BTC", "side": "BUY", "quantity": NaN},'
        ' {"asset": "ETH", "side": "BUY", "quantity": 1.25}]}\n```'
    )
    kept, notes = parse_orders(parsed.orders, ASSETS, LIMITS)
    assert kept == [(1, Order(asset="ETH", side=Side.BUY, quantity=Decimal("1.25")))]
    assert [(n.code, n.message) for n in notes] == [
        ("bad_quantity", "quantity must be finite, got nan")
    ]


def test_every_kind_of_drop_is_followed_by_the_next_order() -> None:
    good = {"asset": "ETH", "side": "BUY", "quantity": 1}
    bad = [
        "junk",
        {"asset": "", "side": "BUY", "quantity": 1},
        {"asset": "DOGE", "side": "BUY", "quantity": 1},
        {"asset": "BTC", "side": "HOLD", "quantity": 1},
        {"asset": "BTC", "side": "BUY", "quantity": "1"},
        {"asset": "BTC", "side": "BUY", "quantity": float("inf")},
        {"asset": "BTC", "side": "BUY", "quantity": 0},
        {"asset": "BTC", "side": "BUY", "quantity": 10_000},
    ]
    items: list[object] = []
    for item in bad:
        items += [item, good]
    kept, notes = parse(*items)
    assert kept == [
        (i, Order(asset="ETH", side=Side.BUY, quantity=Decimal(1))) for i in range(1, 16, 2)
    ]
    assert [(n.order_index, n.asset, n.code, n.requested_quantity) for n in notes] == [
        (0, None, "bad_order_shape", None),
        (2, None, "bad_asset", "1"),
        (4, "DOGE", "unknown_asset", "1"),
        (6, "BTC", "bad_side", "1"),
        (8, "BTC", "bad_quantity", "1"),
        (10, "BTC", "bad_quantity", "inf"),
        (12, "BTC", "non_positive_quantity", "0"),
        (14, "BTC", "absurd_quantity", "10000"),
    ]
    assert all(n.outcome == "dropped" for n in notes)
