"""Column types that keep money exact and time in UTC on every backend.

* :class:`Fixed` — a fixed-scale decimal, ``scale`` decimal places (default 8: money,
  prices, quantities). ``NUMERIC(28, scale)`` on PostgreSQL and SQL Server; on SQLite (which
  has no decimal type and would round-trip through float) a 64-bit integer count of
  10⁻ˢᶜᵃˡᵉ units, so values come back exactly and still sort and sum in SQL. That integer
  bounds the magnitude on SQLite: ±9.2e10 at scale 8, ±9.2e16 at scale 2 (cents — what a
  USD volume of hundreds of billions needs). A value beyond it is refused with a
  ``ValueError`` naming the limit, never wrapped or rounded to fit.
* :class:`UTCDateTime` — timezone-aware UTC in, timezone-aware UTC out. Naive datetimes are
  refused rather than guessed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import MAX_PREC, ROUND_HALF_EVEN, Context, Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Numeric
from sqlalchemy.types import TypeDecorator, TypeEngine

from race.domain.money import SCALE, quantize

_MAX_SQLITE = 2**63 - 1
_EXACT = Context(prec=MAX_PREC)
"""Shifting a value's exponent at this precision never rounds."""
_FORMAT_PROBES = tuple(
    t.replace(tzinfo=None)
    for t in (
        datetime(2024, 2, 29, 23, 5, 9, tzinfo=UTC),
        datetime(7, 1, 2, 3, 4, 5, 60, tzinfo=UTC),
    )
)
"""Naive times SQLite's datetime format is checked against (a small year, microseconds)."""


class Fixed(TypeDecorator[Decimal]):
    """A decimal with ``scale`` places (half-even rounding on the way in)."""

    impl = Numeric
    cache_ok = True

    def __init__(self, scale: int = SCALE) -> None:
        if isinstance(scale, bool) or not isinstance(scale, int) or not 0 <= scale <= 18:
            raise ValueError(f"Fixed(scale=...) takes an integer from 0 to 18, got {scale!r}")
        super().__init__()
        self.scale = scale
        self._quantum = Decimal(1).scaleb(-scale)

    def __repr__(self) -> str:
        # What Alembic's autogenerate writes into a migration: the scale must survive.
        return "Fixed()" if self.scale == SCALE else f"Fixed(scale={self.scale})"

    @property
    def sqlite_limit(self) -> Decimal:
        """Largest magnitude a SQLite column of this scale holds."""
        return Decimal(_MAX_SQLITE).scaleb(-self.scale)

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(28, self.scale, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            if isinstance(value, int) and not isinstance(value, bool):
                value = Decimal(value)
            else:
                raise TypeError(f"money/quantity columns take Decimal, got {type(value).__name__}")
        if not value.is_finite():
            raise ValueError(f"cannot store non-finite {value}")
        value = value.quantize(self._quantum, rounding=ROUND_HALF_EVEN)
        if dialect.name == "sqlite":
            scaled = int(value.scaleb(self.scale))
            if abs(scaled) > _MAX_SQLITE:
                raise ValueError(
                    f"{value} is out of range for a fixed-scale column with {self.scale} "
                    f"decimals on SQLite (a 64-bit integer of 1e-{self.scale} units: at most "
                    f"±{self.sqlite_limit:.4g})"
                )
            return scaled
        return value

    def bind_processor(self, dialect: Dialect) -> Any:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        # The hot path of every replay: a direct closure instead of the generic wrapper.
        slow = self.process_bind_param
        scale = self.scale
        most = 18 - scale  # |value| < 10 ** (19 - scale): no huge integer is ever built

        def process(value: Any) -> Any:
            if type(value) is Decimal and value.is_finite() and value.adjusted() <= most:
                # Exactly ``int(value.quantize(quantum, HALF_EVEN).scaleb(scale))`` inside the
                # range (the shift is exact at unbounded precision, then one rounding), in
                # one Decimal operation fewer; out of range, the slow path says why.
                scaled = int(value.scaleb(scale, _EXACT).to_integral_value(ROUND_HALF_EVEN))
                if -_MAX_SQLITE <= scaled <= _MAX_SQLITE:
                    return scaled
            return slow(value, dialect)

        return process

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        stored = self.load_dialect_impl(dialect)
        if dialect.name != "sqlite" or stored.result_processor(dialect, coltype) is not None:
            return super().result_processor(dialect, coltype)
        # The hot path of a replay's candle tape: one closure instead of the generic
        # wrapper around process_result_value (the same Decimal, exponent -scale).
        exponent = -self.scale

        def process(value: Any) -> Decimal | None:
            return None if value is None else Decimal(int(value)).scaleb(exponent)

        return process

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return Decimal(int(value)).scaleb(-self.scale)
        if self.scale == SCALE:
            return quantize(Decimal(value))
        return Decimal(value).quantize(self._quantum, rounding=ROUND_HALF_EVEN)

    def literal_processor(self, dialect: Dialect) -> Any:
        return None


class UTCDateTime(TypeDecorator[datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: pass UTC-aware times")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def bind_processor(self, dialect: Dialect) -> Any:
        checked = super().bind_processor(dialect)
        if dialect.name != "sqlite" or checked is None:
            return checked
        # The hot path of every replay: a time already in UTC (what the race's own times
        # and every stored time read back are) goes straight to SQLite's text form.
        text = self.impl_instance.dialect_impl(dialect).bind_processor(dialect)
        if text is None:
            return checked
        if all(text(t) == t.isoformat(" ", "microseconds") for t in _FORMAT_PROBES):
            # SQLAlchemy's default SQLite format is ISO 8601 with a space and microseconds:
            # datetime's own (C) formatting writes the same text.
            def process(value: Any) -> Any:
                if type(value) is datetime and value.tzinfo is UTC:
                    return value.replace(tzinfo=None).isoformat(" ", "microseconds")
                return checked(value)

            return process

        def formatted(value: Any) -> Any:
            if type(value) is datetime and value.tzinfo is UTC:
                return text(value.replace(tzinfo=None))
            return checked(value)

        return formatted

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        # One closure around SQLite's text parser instead of the generic wrapper.
        parse = self.impl_instance.dialect_impl(dialect).result_processor(dialect, coltype)
        if parse is None:
            return super().result_processor(dialect, coltype)

        def process(value: Any) -> datetime | None:
            if value is None:
                return None
            parsed = parse(value)
            if parsed is None:
                return None
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=UTC)  # type: ignore[no-any-return]
            return parsed.astimezone(UTC)  # type: ignore[no-any-return]

        return process

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
