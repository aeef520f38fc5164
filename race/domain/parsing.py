"""The one place where an agent's answer becomes orders.

Two levels:

* :func:`parse_model_output` reads a language model's JSON text. The whole answer is
  refused (→ HOLD with the reason) only when it is not JSON, not an object, has no
  non-blank ``reasoning`` or when ``orders`` is not a list. A mistyped ``cited_rules``
  never costs the orders: a string is one rule, null none, non-string items are ignored,
  and what was ignored is noted (:attr:`ParsedAnswer.notes`).
* :func:`parse_orders` turns each proposed order (a mapping or an :class:`Order`) into a
  typed order. One bad order (unknown asset, bad side, wrong type — the quantity must be a
  number, not a string or a boolean —, quantity ≤ 0, not finite or absurd) is dropped with
  its reason; the valid ones are kept.

Whatever text an answer carries ("ignore previous instructions…") changes nothing here:
limits are numbers in :class:`~race.domain.model.RiskLimits`, enforced by the risk rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from race.domain.model import Order, RiskLimits, RiskNote, Side
from race.domain.money import ZERO, to_decimal

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL | re.IGNORECASE)


class AnswerRejected(ValueError):
    """The whole answer is unusable; the message is the HOLD's recorded reason."""


class _ModelAnswer(BaseModel):
    model_config = ConfigDict(extra="allow")

    reasoning: str
    orders: list[Any]

    @field_validator("reasoning")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("reasoning is blank")
        return value.strip()


@dataclass(frozen=True)
class ParsedAnswer:
    reasoning: str
    orders: list[Any]
    cited_rules: list[str]
    extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """What was ignored of an answer that was otherwise used (e.g. a mistyped cited rule)."""


MAX_CITED_RULES = 20


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def cited_rules_of(value: object) -> tuple[list[str], list[str]]:
    """``cited_rules`` read leniently: (the rules, notes on what was ignored). A string is
    one rule, null or absent none; items that are not non-blank strings are ignored."""
    notes: list[str] = []
    if value is None:
        return [], notes
    if isinstance(value, str):
        items: list[Any] = [value]
        notes.append("cited_rules was a string, not a list: read as one rule")
    elif isinstance(value, list):
        items = value
    else:
        notes.append(f"cited_rules must be a list of strings, got {_type_name(value)}: ignored")
        return [], notes
    rules: list[str] = []
    ignored: list[str] = []
    for position, item in enumerate(items):
        if isinstance(item, str) and item.strip():
            rules.append(item.strip())
        else:
            ignored.append(
                f"{position} ({_type_name(item) if not isinstance(item, str) else 'blank'})"
            )
    if ignored:
        notes.append(
            f"cited_rules items that are not rule names were ignored: {', '.join(ignored)}"
        )
    if len(rules) > MAX_CITED_RULES:
        notes.append(f"cited_rules: only the first {MAX_CITED_RULES} of {len(rules)} are kept")
        rules = rules[:MAX_CITED_RULES]
    return rules, notes


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "answer"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse_model_output(text: str | None) -> ParsedAnswer:
    """Parse a model's JSON answer (code fences tolerated) or raise :class:`AnswerRejected`."""
    if text is None or not text.strip():
        raise AnswerRejected("empty answer from the model")
    match = _FENCE.match(text)
    body = match.group(1) if match else text.strip()
    non_finite: list[str] = []

    def constant(token: str) -> float:
        # Python's json reads (and writes) NaN/Infinity, which are not JSON: the value is
        # kept as a non-finite float so the order carrying it is refused with its reason.
        non_finite.append(token)
        return float(token)

    try:
        data = json.loads(body, parse_constant=constant)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise AnswerRejected(
            f"answer is not valid JSON ({exc.__class__.__name__}: {exc})"
        ) from None
    if not isinstance(data, dict):
        raise AnswerRejected(f"answer must be a JSON object, got {type(data).__name__}")
    if "orders" in data and not isinstance(data["orders"], list):
        raise AnswerRejected(f"'orders' must be a list, got {type(data['orders']).__name__}")
    fields = dict(data)
    cited, notes = cited_rules_of(fields.pop("cited_rules", None))
    if non_finite:
        notes.append(
            f"answer holds non-JSON numbers ({', '.join(sorted(set(non_finite)))}): the values "
            "are not finite and refused where they matter"
        )
    try:
        parsed = _ModelAnswer.model_validate(fields, strict=True)
    except ValidationError as exc:
        raise AnswerRejected(f"answer does not match the schema: {_describe(exc)}") from None
    return ParsedAnswer(
        reasoning=parsed.reasoning,
        orders=parsed.orders,
        cited_rules=cited,
        extra=dict(parsed.model_extra or {}),
        notes=notes,
    )


def _drop(index: int, asset: str | None, code: str, message: str, raw: object) -> RiskNote:
    return RiskNote(
        order_index=index,
        asset=asset,
        code=code,
        message=message,
        outcome="dropped",
        requested_quantity=None if raw is None else str(raw)[:64],
    )


def _field(item: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in item:
            return item[name]
    return None


def _symbol_of(
    index: int,
    raw_asset: Any,
    raw_quantity: Any,
    allowed: dict[str, str],
    allowed_assets: Sequence[str],
) -> str | RiskNote:
    """The race's spelling of the order's asset, or the note dropping the order."""
    if not isinstance(raw_asset, str) or not raw_asset.strip():
        return _drop(index, None, "bad_asset", "order has no asset symbol", raw_quantity)
    symbol = allowed.get(raw_asset.strip().upper())
    if symbol is None:
        return _drop(
            index,
            raw_asset[:32],
            "unknown_asset",
            f"asset {raw_asset[:32]!r} is not traded in this race "
            f"(allowed: {', '.join(allowed_assets)})",
            raw_quantity,
        )
    return symbol


def _quantity_of(
    index: int, symbol: str, raw_quantity: Any, limits: RiskLimits
) -> Decimal | RiskNote:
    """The order's quantity as a Decimal in ``(0, max_order_quantity]``, or the note
    dropping the order."""
    # A JSON number (or a Decimal from an in-process agent); "0.05" is a string, not a
    # quantity: the answer's types are part of the protocol.
    if isinstance(raw_quantity, bool) or not isinstance(raw_quantity, int | float | Decimal):
        return _drop(
            index,
            symbol,
            "bad_quantity",
            f"quantity must be a number, got {_type_name(raw_quantity)}"
            + (f" {raw_quantity[:32]!r}" if isinstance(raw_quantity, str) else ""),
            raw_quantity,
        )
    try:
        quantity = to_decimal(raw_quantity, field="quantity")
    except ValueError as exc:
        return _drop(index, symbol, "bad_quantity", str(exc), raw_quantity)
    if quantity <= ZERO:
        return _drop(
            index,
            symbol,
            "non_positive_quantity",
            f"quantity must be > 0, got {quantity}",
            raw_quantity,
        )
    if quantity > limits.max_order_quantity:
        return _drop(
            index,
            symbol,
            "absurd_quantity",
            f"quantity {quantity:.6g} exceeds the sanity bound {limits.max_order_quantity}",
            raw_quantity,
        )
    return quantity


def _parse_order(
    index: int,
    item: Any,
    allowed: dict[str, str],
    allowed_assets: Sequence[str],
    limits: RiskLimits,
) -> Order | RiskNote:
    """One proposed order as a typed order, or the note saying why it was dropped."""
    if isinstance(item, Order):
        item = {"asset": item.asset, "side": item.side.value, "quantity": item.quantity}
    if not isinstance(item, dict):
        return _drop(
            index,
            None,
            "bad_order_shape",
            f"order must be an object with asset, side and quantity, got {type(item).__name__}",
            None,
        )
    raw_asset = _field(item, "asset", "assetSymbol", "symbol")
    raw_side = _field(item, "side", "action")
    raw_quantity = _field(item, "quantity", "qty")
    symbol = _symbol_of(index, raw_asset, raw_quantity, allowed, allowed_assets)
    if isinstance(symbol, RiskNote):
        return symbol
    if not isinstance(raw_side, str) or raw_side.strip().upper() not in ("BUY", "SELL"):
        return _drop(
            index,
            symbol,
            "bad_side",
            f"side must be BUY or SELL, got {raw_side!r:.40}",
            raw_quantity,
        )
    side = Side(raw_side.strip().upper())
    quantity = _quantity_of(index, symbol, raw_quantity, limits)
    if isinstance(quantity, RiskNote):
        return quantity
    return Order(asset=symbol, side=side, quantity=quantity)


def parse_orders(
    raw_orders: Iterable[Any] | None, allowed_assets: Sequence[str], limits: RiskLimits
) -> tuple[list[tuple[int, Order]], list[RiskNote]]:
    """Typed orders with their index in the answer, and the reasons any were dropped.
    Never raises for bad input."""
    orders: list[tuple[int, Order]] = []
    notes: list[RiskNote] = []
    allowed = {a.upper(): a for a in allowed_assets}
    if raw_orders is None:
        return orders, notes
    for index, item in enumerate(raw_orders):
        parsed = _parse_order(index, item, allowed, allowed_assets, limits)
        if isinstance(parsed, RiskNote):
            notes.append(parsed)
        else:
            orders.append((index, parsed))
    return orders, notes
