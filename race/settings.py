"""One typed settings object, read from the environment (or ``local.settings.json`` Values,
which the Functions host exports as environment variables). Names: DESIGN.md §7.

Secrets are :class:`~pydantic.SecretStr`: they never show in ``repr``, logs or errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from race.domain.model import Costs, RiskLimits
from race.domain.timeutil import parse_interval

DEFAULT_CORS = ("http://localhost:5173", "http://localhost:4173", "http://localhost:3000")
INGEST_SCHEDULE = "0 */5 * * * *"
DECISION_SCHEDULE = "0 */15 * * * *"


def _csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _interval(value: Any) -> Any:
    return parse_interval(value) if isinstance(value, str | timedelta) else value


Interval = Annotated[timedelta, BeforeValidator(_interval)]
CsvList = Annotated[list[str], NoDecode, BeforeValidator(_csv)]


def _env(name: str, *, default: Any) -> Any:
    return Field(default=default, validation_alias=AliasChoices(name, name.lower()))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, frozen=True)

    # Storage and API
    database_url: str = _env("RACE_DATABASE_URL", default="sqlite:///race.db")
    admin_key: SecretStr | None = _env("RACE_ADMIN_KEY", default=None)
    cors_origins: CsvList = _env("RACE_CORS_ORIGINS", default=list(DEFAULT_CORS))
    log_format: Literal["text", "json"] | None = _env("RACE_LOG_FORMAT", default=None)
    log_level: str = _env("RACE_LOG_LEVEL", default="INFO")

    # Race numbers (DESIGN.md §3)
    starting_capital: Decimal = _env("RACE_STARTING_CAPITAL", default=Decimal("100000"))
    fee_rate: Decimal = _env("RACE_FEE_RATE", default=Decimal("0.001"))
    slippage_bps: Decimal = _env("RACE_SLIPPAGE_BPS", default=Decimal("5"))
    max_position_fraction: Decimal = _env("RACE_MAX_POSITION_FRACTION", default=Decimal("0.5"))
    min_cash_reserve: Decimal = _env("RACE_MIN_CASH_RESERVE", default=Decimal("100"))
    max_order_notional: Decimal = _env("RACE_MAX_ORDER_NOTIONAL", default=Decimal("25000"))
    min_order_notional: Decimal = _env("RACE_MIN_ORDER_NOTIONAL", default=Decimal("10"))
    max_orders_per_cycle: int = _env("RACE_MAX_ORDERS_PER_CYCLE", default=5)
    max_order_quantity: Decimal = _env("RACE_MAX_ORDER_QUANTITY", default=Decimal("1000000000"))
    context_candles: int = _env("RACE_CONTEXT_CANDLES", default=50)
    candle_interval: Interval = _env("RACE_CANDLE_INTERVAL", default=timedelta(hours=1))
    max_price_age: Interval = _env("RACE_MAX_PRICE_AGE", default=timedelta(hours=6))
    assets: CsvList = _env("RACE_ASSETS", default=["BTC:bitcoin", "ETH:ethereum"])
    """Seeded universe as SYMBOL:coingecko-id pairs; `python -m race assets` manages it."""

    # Schedules (NCRONTAB, UTC) — used by function_app.py and `python -m race serve` alike
    ingest_schedule: str = _env("RACE_INGEST_SCHEDULE", default=INGEST_SCHEDULE)
    decision_schedule: str = _env("RACE_DECISION_SCHEDULE", default=DECISION_SCHEDULE)

    # Agents
    agent_timeout_seconds: float = _env("RACE_AGENT_TIMEOUT_SECONDS", default=120.0)
    agent_concurrency: int = _env("RACE_AGENT_CONCURRENCY", default=16)
    llama_base_url: str = _env("LLAMA_BASE_URL", default="https://api.groq.com/openai/v1")
    llama_api_key: SecretStr | None = _env("LLAMA_API_KEY", default=None)
    llama_model: str = _env("LLAMA_MODEL", default="llama-3.3-70b-versatile")

    # Market data
    coingecko_plan: Literal["public", "demo", "pro"] | None = _env("COINGECKO_PLAN", default=None)
    coingecko_api_key: SecretStr | None = _env("COINGECKO_API_KEY", default=None)
    coingecko_base_url: str | None = _env("COINGECKO_BASE_URL", default=None)
    coingecko_calls_per_minute: float = _env("COINGECKO_CALLS_PER_MINUTE", default=25.0)
    coingecko_timeout_seconds: float = _env("COINGECKO_TIMEOUT_SECONDS", default=30.0)

    # Telemetry
    applicationinsights_connection_string: SecretStr | None = _env(
        "APPLICATIONINSIGHTS_CONNECTION_STRING", default=None
    )

    @field_validator(
        "starting_capital",
        "min_cash_reserve",
        "max_order_notional",
        "min_order_notional",
        "max_order_quantity",
    )
    @classmethod
    def _positive(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or value < 0:
            raise ValueError("must be a finite number ≥ 0")
        return value

    @field_validator("fee_rate", "max_position_fraction")
    @classmethod
    def _fraction(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or not (0 <= value <= 1):
            raise ValueError("must be a fraction between 0 and 1")
        return value

    @field_validator("slippage_bps")
    @classmethod
    def _bps(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or not (0 <= value < 10_000):
            raise ValueError("must be between 0 and 10000 basis points")
        return value

    @property
    def limits(self) -> RiskLimits:
        return RiskLimits(
            max_position_fraction=self.max_position_fraction,
            min_cash_reserve=self.min_cash_reserve,
            max_order_notional=self.max_order_notional,
            min_order_notional=self.min_order_notional,
            max_orders_per_cycle=self.max_orders_per_cycle,
            max_order_quantity=self.max_order_quantity,
        )

    @property
    def costs(self) -> Costs:
        return Costs(fee_rate=self.fee_rate, slippage_bps=self.slippage_bps)

    @property
    def asset_universe(self) -> list[tuple[str, str]]:
        pairs: list[tuple[str, str]] = []
        for item in self.assets:
            symbol, _, coin = item.partition(":")
            if not symbol.strip() or not coin.strip():
                raise ValueError(f"RACE_ASSETS entry {item!r} must be SYMBOL:coingecko-id")
            pairs.append((symbol.strip().upper(), coin.strip()))
        return pairs


def load_settings(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Settings from the environment; ``overrides`` (by environment name) win. Tests and the
    CLI pass overrides instead of mutating ``os.environ``."""
    return Settings(**dict(overrides or {}))
