"""A race: a named contest with its own time range, interval, starting capital, rules and
universe, frozen when it is created (docs/races.md). Pure values: no I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from race.domain.model import Costs, RiskLimits


class RaceKind(StrEnum):
    LIVE = "live"
    BACKTEST = "backtest"
    WHATIF = "whatif"


LIVE_RACE_NAME = "live"
"""The name the live race gets when it is created (migration 0012 or a fresh database)."""


@dataclass(frozen=True, slots=True)
class RaceRules:
    """The rules a race is judged by: execution costs and every risk limit."""

    fee_rate: Decimal
    slippage_bps: Decimal
    max_position_fraction: Decimal
    min_cash_reserve: Decimal
    max_order_notional: Decimal
    min_order_notional: Decimal
    max_orders_per_cycle: int
    max_order_quantity: Decimal

    def __post_init__(self) -> None:
        """The bounds the settings hold these rules to (a race's rules also come from a
        bundle or a what-if's flags): a clear error naming the rule, never a replay that
        fails half-way on a NaN fee."""
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "max_orders_per_cycle":
                if type(value) is not int or value < 0:
                    raise ValueError(f"rule {name} must be a whole number ≥ 0, got {value!r}")
                continue
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise ValueError(f"rule {name} must be a finite number ≥ 0, got {value!r}")
        for name in ("fee_rate", "max_position_fraction"):
            if getattr(self, name) > 1:
                raise ValueError(f"rule {name} must be a fraction between 0 and 1")
        if self.slippage_bps >= 10_000:
            raise ValueError("rule slippage_bps must be below 10000 basis points")

    @classmethod
    def of(cls, costs: Costs, limits: RiskLimits) -> RaceRules:
        return cls(
            fee_rate=costs.fee_rate,
            slippage_bps=costs.slippage_bps,
            max_position_fraction=limits.max_position_fraction,
            min_cash_reserve=limits.min_cash_reserve,
            max_order_notional=limits.max_order_notional,
            min_order_notional=limits.min_order_notional,
            max_orders_per_cycle=limits.max_orders_per_cycle,
            max_order_quantity=limits.max_order_quantity,
        )

    @property
    def costs(self) -> Costs:
        return Costs.of(self)

    @property
    def limits(self) -> RiskLimits:
        return RiskLimits.of(self)

    def to_settings(self) -> dict[str, Any]:
        """The settings' fields of these rules (``RACE_FEE_RATE``…), by their names there."""
        return asdict(self)

    def to_json(self) -> dict[str, Any]:
        """Decimals as strings (exact), the count as a number."""
        return {
            key: value if isinstance(value, int) else str(value)
            for key, value in asdict(self).items()
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RaceRules:
        """Rules read back (a database row, a bundle): ``KeyError`` naming a missing rule,
        ``ValueError`` naming one that is not a number or out of bounds."""
        values: dict[str, Any] = {}
        for key in cls.__dataclass_fields__:
            raw = data[key]
            if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                raise ValueError(f"rule {key} must be a number, got {type(raw).__name__}")
            try:
                number = Decimal(str(raw).strip())
            except ArithmeticError:
                raise ValueError(f"rule {key} must be a number, got {str(raw)[:40]!r}") from None
            if key == "max_orders_per_cycle":
                if not number.is_finite() or number != number.to_integral_value():
                    raise ValueError(f"rule {key} must be a whole number, got {str(raw)[:40]!r}")
                values[key] = int(number)
            else:
                values[key] = number
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Race:
    id: int
    name: str
    kind: RaceKind
    start: datetime
    end: datetime | None
    """None: open-ended (the live race)."""
    interval_seconds: int | None
    starting_capital: Decimal | None
    rules: RaceRules | None
    """None until recorded (the live race of a migrated database, see docs/races.md)."""
    universe: tuple[str, ...] | None
    status: str
    source_race_id: int | None
    created_at: datetime

    @property
    def is_live(self) -> bool:
        return self.kind is RaceKind.LIVE
