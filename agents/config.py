"""Reading an agent's JSON params: one error type whose message names the bad parameter."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from race.domain.money import to_decimal


class AgentConfigError(ValueError):
    """Bad agent configuration (params, model, provider); the message says what to fix."""


def reject_unknown(params: Mapping[str, Any], allowed: Iterable[str], *, what: str) -> None:
    known = set(allowed)
    unknown = sorted(str(k) for k in params if k not in known)
    if unknown:
        raise AgentConfigError(
            f"unknown param(s) for {what}: {', '.join(unknown)} "
            f"(allowed: {', '.join(sorted(known)) or 'none'})"
        )


def number(params: Mapping[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AgentConfigError(f"param {name!r} must be a number, got {value!r}")
    if not math.isfinite(value) or not (lo <= value <= hi):
        raise AgentConfigError(f"param {name!r} must be between {lo:g} and {hi:g}, got {value}")
    return float(value)


def integer(params: Mapping[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise AgentConfigError(f"param {name!r} must be an integer, got {value!r}")
    if not (lo <= value <= hi):
        raise AgentConfigError(f"param {name!r} must be between {lo} and {hi}, got {value}")
    return value


def optional_usd(params: Mapping[str, Any], name: str) -> tuple[bool, Decimal | None]:
    """``(given, value)``: whether the param is present, and its non-negative USD value
    (``None`` when given as JSON null, meaning "no limit")."""
    if name not in params:
        return False, None
    value = params[name]
    if value is None:
        return True, None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise AgentConfigError(f"param {name!r} must be a number of USD or null, got {value!r}")
    try:
        amount = to_decimal(value, field=f"param {name!r}")
    except ValueError as exc:
        raise AgentConfigError(str(exc)) from None
    if amount < 0:
        raise AgentConfigError(f"param {name!r} must be ≥ 0, got {amount}")
    return True, amount
