"""Decimal money and quantities.

Every amount in the domain is a :class:`~decimal.Decimal` with at most ``SCALE`` decimal
places: USD amounts, prices and asset quantities alike (8 places = one satoshi). SQL stores
them at the same fixed scale, so a value written and read back is the same value.
"""

from __future__ import annotations

import math
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, InvalidOperation

SCALE = 8
QUANTUM = Decimal(1).scaleb(-SCALE)
ZERO = Decimal(0)
ONE = Decimal(1)
HUNDRED = Decimal(100)
BPS = Decimal(10_000)


def to_decimal(value: object, *, field: str = "value") -> Decimal:
    """Convert an untrusted number to a finite Decimal, or raise ``ValueError`` naming ``field``.

    Floats go through ``repr`` so ``0.1`` becomes ``Decimal("0.1")``, not its binary expansion.
    Booleans are refused: ``True`` is not a quantity.
    """
    if isinstance(value, bool):
        raise ValueError(f"{field} must be a number, got a boolean")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{field} must be finite, got {value!r}")
        result = Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip()
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"{field} must be a number, got {value!r}") from None
    else:
        raise ValueError(f"{field} must be a number, got {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"{field} must be finite, got {value!r}")
    return result


def quantize(value: Decimal) -> Decimal:
    """Round to the fixed scale, half-to-even (banker's rounding, no drift over many trades)."""
    return value.quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


def quantize_down(value: Decimal) -> Decimal:
    """Round towards zero to the fixed scale: a clipped quantity never exceeds its bound."""
    return value.quantize(QUANTUM, rounding=ROUND_DOWN)


def fmt_usd(value: Decimal) -> str:
    """Human display: thousands separators, two decimals."""
    return f"{value.quantize(Decimal('0.01'), rounding=ROUND_HALF_EVEN):,}"
