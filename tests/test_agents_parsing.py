"""The core parser's reading of an answer's types (race/domain/parsing.py), without I/O:
a mistyped ``cited_rules`` never costs the orders, and a quantity must be a number."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from race.domain.model import RiskLimits, Side
from race.domain.parsing import AnswerRejected, cited_rules_of, parse_model_output, parse_orders

ASSETS = ("BTC", "ETH")
BUY = {"asset": "BTC", "side": "BUY", "quantity": 0.1}


@pytest.mark.parametrize(
    ("quantity", "message"),
    [
        ("0.05", "quantity must be a number, got str '0.05'"),
        ("1e3", "quantity must be a number, got str '1e3'"),
        (True, "quantity must be a number, got bool"),
        (None, "quantity must be a number, got null"),
        ({"value": 1}, "quantity must be a number, got dict"),
    ],
)
def test_a_quantity_that_is_not_a_number_drops_that_order_only(quantity, message):
    orders, notes = parse_orders(
        [{"asset": "ETH", "side": "BUY", "quantity": quantity}, BUY], ASSETS, RiskLimits()
    )
    assert [(i, o.asset, o.quantity) for i, o in orders] == [(1, "BTC", Decimal("0.1"))]
    [note] = notes
    assert (note.order_index, note.code, note.outcome) == (0, "bad_quantity", "dropped")
    assert note.message == message


def test_numbers_of_every_kind_are_quantities():
    raw = [
        {"asset": "BTC", "side": "BUY", "quantity": 1},
        {"asset": "BTC", "side": "sell", "quantity": 0.25},
        {"asset": "ETH", "side": "BUY", "quantity": Decimal("0.125")},  # in-process agents
    ]
    orders, notes = parse_orders(raw, ASSETS, RiskLimits())
    assert notes == []
    assert [(o.side, o.quantity) for _, o in orders] == [
        (Side.BUY, Decimal("1")),
        (Side.SELL, Decimal("0.25")),
        (Side.BUY, Decimal("0.125")),
    ]


@pytest.mark.parametrize(
    ("cited", "rules", "notes"),
    [
        (["R1", "R6"], ["R1", "R6"], []),
        ("R6", ["R6"], ["cited_rules was a string, not a list: read as one rule"]),
        (None, [], []),
        (
            [1, "R2", True],
            ["R2"],
            ["cited_rules items that are not rule names were ignored: 0 (int), 2 (bool)"],
        ),
        (3.5, [], ["cited_rules must be a list of strings, got float: ignored"]),
    ],
)
def test_cited_rules_are_read_leniently(cited, rules, notes):
    assert cited_rules_of(cited) == (rules, notes)
    parsed = parse_model_output(
        json.dumps({"reasoning": "Buy.", "orders": [BUY], "cited_rules": cited})
    )
    assert parsed.orders == [BUY]
    assert parsed.cited_rules == rules
    assert parsed.notes == notes
    assert "cited_rules" not in parsed.extra


def test_many_cited_rules_are_capped_with_a_note():
    rules, notes = cited_rules_of([f"R{n}" for n in range(30)])
    assert rules == [f"R{n}" for n in range(20)]
    assert notes == ["cited_rules: only the first 20 of 30 are kept"]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ('{"reasoning": "x", "orders": [', "not valid JSON"),
        ('{"orders": [], "cited_rules": "R1"}', "reasoning"),
        ('{"reasoning": " ", "orders": []}', "reasoning is blank"),
        ('{"reasoning": "x", "orders": "BUY BTC", "cited_rules": 5}', "'orders' must be a list"),
    ],
)
def test_only_the_three_whole_answer_failures_reject_an_answer(answer, reason):
    with pytest.raises(AnswerRejected, match=reason):
        parse_model_output(answer)
