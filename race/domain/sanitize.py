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


def _clean_str(text: str, limit: int) -> str:
    if len(text) <= limit and _CONTROL.search(text) is None:
        return text  # the common case: nothing to change, no copy
    return clean_text(text, limit)


def clean_json(value: Any, *, depth: int = 0, text_limit: int = 2000) -> Any:
    """``value`` as JSON every backend stores: finite numbers, clean bounded strings,
    bounded nesting and length. Anything else becomes its (clean, bounded) text. Returns
    ``value`` itself when nothing had to change."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _clean_str(value, text_limit)
    if isinstance(value, int):
        return value if -(2**63) < value < 2**63 else str(value)[:40]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else None
    if depth >= MAX_JSON_DEPTH:
        return "[nested too deep]"
    if isinstance(value, dict):
        changed = len(value) > MAX_JSON_ITEMS
        out: dict[str, Any] = {}
        for index, (k, v) in enumerate(value.items()):
            if index >= MAX_JSON_ITEMS:
                break
            key = (
                _clean_str(k, MAX_KEY_CHARS)
                if isinstance(k, str)
                else clean_text(str(k), MAX_KEY_CHARS)
            )
            item = clean_json(v, depth=depth + 1, text_limit=text_limit)
            changed = changed or key is not k or item is not v
            out[key] = item
        return out if changed else value
    if isinstance(value, list | tuple):
        items = [
            clean_json(v, depth=depth + 1, text_limit=text_limit)
            for v in list(value)[:MAX_JSON_ITEMS]
        ]
        if (
            isinstance(value, list)
            and len(items) == len(value)
            and all(a is b for a, b in zip(items, value, strict=True))
        ):
            return value
        return items
    return clean_text(repr(value), 200)


def _text_field(name: str, value: Any, limit: int, changes: list[str]) -> str | None:
    """A text field cleaned and bounded; what changed is added to ``changes``."""
    if value is None:
        return None
    if not isinstance(value, str):
        changes.append(f"{name} was {type(value).__name__}, not text")
        value = repr(value)
    if len(value) <= limit and _CONTROL.search(value) is None:
        return value
    cleaned = clean_text(value, limit)
    if cleaned != value:
        stripped = strip_controls(value)
        if stripped != value:
            changes.append(f"{name}: control characters removed")
        if len(stripped) > limit:
            changes.append(f"{name}: cut to {limit} characters")
    return cleaned


def _count_field(name: str, value: Any, changes: list[str]) -> int | None:
    """A count clamped to ``[0, MAX_COUNT]``, None if not an integer; changes noted."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        changes.append(f"{name} was {type(value).__name__}, not an integer: dropped")
        return None
    clamped = clamp_count(value)
    if clamped != value:
        changes.append(f"{name} {value} out of range [0, {MAX_COUNT}]: clamped to {clamped}")
    return clamped


def _clean_cost(cost: Any, changes: list[str]) -> Any:
    """The cost as a finite Decimal in ``[0, MAX_COST_USD]``, or None; changes noted."""
    if cost is None:
        return None
    if not isinstance(cost, Decimal) or not cost.is_finite():
        changes.append("cost_usd is not a finite number: dropped")
        return None
    if cost < 0 or cost > MAX_COST_USD:
        clamped_cost = min(max(cost, Decimal(0)), MAX_COST_USD)
        changes.append(f"cost_usd {cost:.6g} out of range: clamped to {clamped_cost}")
        return quantize(clamped_cost)
    return cost


def _clean_confidence(confidence: Any, changes: list[str]) -> Any:
    """The confidence if it is a finite number, else None; changes noted."""
    if confidence is not None and (
        not isinstance(confidence, int | float)
        or isinstance(confidence, bool)
        or not math.isfinite(confidence)
    ):
        changes.append("confidence is not a finite number: dropped")
        return None
    return confidence


def _clean_notes(notes: Any) -> list[Any]:
    """The risk notes with their text fields cleaned and bounded, at most MAX_JSON_ITEMS."""
    return [
        replace(
            n,
            asset=None if n.asset is None else clean_text(str(n.asset), 32),
            code=clean_text(str(n.code), 64),
            message=clean_text(str(n.message), 1000),
            requested_quantity=(
                None if n.requested_quantity is None else clean_text(str(n.requested_quantity), 64)
            ),
        )
        for n in list(notes)[:MAX_JSON_ITEMS]
    ]


def _structured_updates(d: Any, changes: list[str]) -> dict[str, Any]:
    """Updates for the cost, confidence, notes, details, proposed orders and cited rules."""
    updates: dict[str, Any] = {}
    cost = _clean_cost(d.cost_usd, changes)
    confidence = _clean_confidence(d.confidence, changes)
    if cost is not d.cost_usd:
        updates["cost_usd"] = cost
    if confidence is not d.confidence:
        updates["confidence"] = confidence
    if d.notes:
        updates["notes"] = _clean_notes(d.notes)
    details = clean_json(d.details if isinstance(d.details, dict) else {})
    if details is not d.details:
        updates["details"] = details
    proposed = clean_json(d.proposed_orders)
    if proposed is not d.proposed_orders:
        if proposed != d.proposed_orders:
            changes.append(
                "proposed_orders: non-finite numbers, control characters or size bounded"
            )
        updates["proposed_orders"] = proposed
    cited = [_clean_str(str(r), 64) for r in list(d.cited_rules)[:20]]
    if cited != d.cited_rules:
        updates["cited_rules"] = cited
    return updates


_TEXT_FIELDS = (
    ("rationale", 8000),
    ("fallback_reason", 1000),
    ("raw_output", MAX_TEXT_CHARS),
    ("prompt", MAX_TEXT_CHARS),
    ("model", 200),
)
_COUNT_FIELDS = ("latency_ms", "prompt_tokens", "completion_tokens")


def _scalar_updates(d: Any, changes: list[str]) -> dict[str, Any]:
    """Updates for the text fields, the asset, the regime and the counts."""
    updates: dict[str, Any] = {}
    for name, limit in _TEXT_FIELDS:
        value = getattr(d, name)
        cleaned = _text_field(name, value, limit, changes)
        if cleaned is not value:
            updates[name] = cleaned if cleaned is not None or name != "rationale" else ""
    if d.asset is not None:
        asset = _clean_str(d.asset, 16)
        if asset is not d.asset:
            updates["asset"] = asset
    regime = _clean_str(str(d.regime), 32)
    if regime is not d.regime:
        updates["regime"] = regime
    for name in _COUNT_FIELDS:
        value = getattr(d, name)
        counted = _count_field(name, value, changes)
        if counted is not value:
            updates[name] = counted
    return updates


def sanitize_decision(decision: Any) -> Any:
    """A :class:`~race.domain.step.DecisionRecord` every database accepts (see the module
    doc); what had to change is listed in ``details["sanitized"]``."""
    d = decision
    changes: list[str] = []
    updates = _structured_updates(d, changes)
    updates.update(_scalar_updates(d, changes))
    if changes:
        noted = dict(updates.get("details", d.details))
        noted["sanitized"] = changes[:50]
        updates["details"] = noted
    return replace(d, **updates) if updates else d
