"""The boundary between agents and the store: whatever an agent said becomes values every
database accepts.

* Text (rationale, reasons, raw answer, prompt, notes, assets, keys and strings inside JSON
  fields): NUL and the other control characters are removed (newline and tab stay), and
  each field is cut to its bound with a visible marker.
* Numbers inside JSON fields: NaN and ±Infinity (which Python's json writes but no JSON
  column accepts) become ``null`` — the order that carried one was already refused by the
  parser with its reason.
* Token counts and latency: clamped to ``[0, MAX_COUNT]``; a cost to ``[0, MAX_COST_USD]``;
  a confidence that is not a finite number in [0, 1]-ish range is dropped.
* Nesting and size of JSON fields are bounded.

Every change is noted in ``details["sanitized"]`` so the record says what was altered.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from decimal import Decimal
from typing import Any

from race.domain.money import quantize

MAX_COUNT = 10**9
"""Largest token count (or latency in ms) stored: far above any real call."""
MAX_COST_USD = Decimal(10**6)
"""Largest cost of one decision stored (USD)."""
MAX_TEXT_CHARS = 64_000
MAX_KEY_CHARS = 200
MAX_JSON_DEPTH = 8
MAX_JSON_ITEMS = 200
TRUNCATED = " …[truncated {n} characters]"

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def strip_controls(text: str) -> str:
    """``text`` without NUL, other C0 control characters, DEL and lone surrogates."""
    return _CONTROL.sub("", text)


def clean_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """Control characters removed and the text cut to ``limit`` characters, with a marker."""
    return truncate_text(strip_controls(text), limit)


def truncate_text(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with a marker saying how much was cut."""
    if len(text) <= limit:
        return text
    marker = TRUNCATED.format(n=len(text) - limit)
    return text[: max(limit - len(marker), 0)] + marker


def clamp_count(value: int | None) -> int | None:
    if value is None:
        return None
    return min(max(int(value), 0), MAX_COUNT)


def clean_json(value: Any, *, depth: int = 0, text_limit: int = 2000) -> Any:
    """``value`` as JSON every backend stores: finite numbers, clean bounded strings,
    bounded nesting and length. Anything else becomes its (clean, bounded) text."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -(2**63) < value < 2**63 else str(value)[:40]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else None
    if isinstance(value, str):
        return clean_text(value, text_limit)
    if depth >= MAX_JSON_DEPTH:
        return "[nested too deep]"
    if isinstance(value, dict):
        items = list(value.items())[:MAX_JSON_ITEMS]
        return {
            clean_text(str(k), MAX_KEY_CHARS): clean_json(v, depth=depth + 1, text_limit=text_limit)
            for k, v in items
        }
    if isinstance(value, list | tuple):
        return [
            clean_json(v, depth=depth + 1, text_limit=text_limit)
            for v in list(value)[:MAX_JSON_ITEMS]
        ]
    return clean_text(repr(value), 200)


def sanitize_decision(decision: Any) -> Any:
    """A :class:`~race.domain.step.DecisionRecord` every database accepts (see the module
    doc); what had to change is listed in ``details["sanitized"]``."""
    d = decision
    changes: list[str] = []

    def text(name: str, value: str | None, limit: int) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            changes.append(f"{name} was {type(value).__name__}, not text")
            value = repr(value)
        cleaned = clean_text(value, limit)
        if cleaned != value:
            stripped = strip_controls(value)
            if stripped != value:
                changes.append(f"{name}: control characters removed")
            if len(stripped) > limit:
                changes.append(f"{name}: cut to {limit} characters")
        return cleaned

    def count(name: str, value: Any) -> int | None:
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            changes.append(f"{name} was {type(value).__name__}, not an integer: dropped")
            return None
        clamped = clamp_count(value)
        if clamped != value:
            changes.append(f"{name} {value} out of range [0, {MAX_COUNT}]: clamped to {clamped}")
        return clamped

    cost = d.cost_usd
    if cost is not None:
        if not isinstance(cost, Decimal) or not cost.is_finite():
            changes.append("cost_usd is not a finite number: dropped")
            cost = None
        elif cost < 0 or cost > MAX_COST_USD:
            clamped_cost = min(max(cost, Decimal(0)), MAX_COST_USD)
            changes.append(f"cost_usd {cost:.6g} out of range: clamped to {clamped_cost}")
            cost = quantize(clamped_cost)
    confidence = d.confidence
    if confidence is not None and (
        not isinstance(confidence, int | float)
        or isinstance(confidence, bool)
        or not math.isfinite(confidence)
    ):
        changes.append("confidence is not a finite number: dropped")
        confidence = None
    notes = [
        replace(
            n,
            asset=None if n.asset is None else clean_text(str(n.asset), 32),
            code=clean_text(str(n.code), 64),
            message=clean_text(str(n.message), 1000),
            requested_quantity=(
                None if n.requested_quantity is None else clean_text(str(n.requested_quantity), 64)
            ),
        )
        for n in list(d.notes)[:MAX_JSON_ITEMS]
    ]
    cleaned_details = clean_json(d.details if isinstance(d.details, dict) else {})
    proposed = clean_json(list(d.proposed_orders))
    if proposed != d.proposed_orders:
        changes.append("proposed_orders: non-finite numbers, control characters or size bounded")
    result = replace(
        d,
        asset=None if d.asset is None else clean_text(d.asset, 16),
        rationale=text("rationale", d.rationale, 8000) or "",
        cited_rules=[clean_text(str(r), 64) for r in list(d.cited_rules)[:20]],
        regime=clean_text(str(d.regime), 32),
        fallback_reason=text("fallback_reason", d.fallback_reason, 1000),
        raw_output=text("raw_output", d.raw_output, MAX_TEXT_CHARS),
        prompt=text("prompt", d.prompt, MAX_TEXT_CHARS),
        model=text("model", d.model, 200),
        latency_ms=count("latency_ms", d.latency_ms),
        prompt_tokens=count("prompt_tokens", d.prompt_tokens),
        completion_tokens=count("completion_tokens", d.completion_tokens),
        cost_usd=cost,
        confidence=confidence,
        notes=notes,
        proposed_orders=proposed,
        market_conditions=clean_json(d.market_conditions),
        details=cleaned_details,
    )
    if changes:
        details = dict(result.details)
        details["sanitized"] = changes[:50]
        result = replace(result, details=details)
    return result
