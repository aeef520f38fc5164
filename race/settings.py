"""One typed settings object, read from the environment, then a ``.env`` file, then
``local.settings.json`` Values (:mod:`race.settings_files`). Names: see the README.

Secrets are :class:`~pydantic.SecretStr`: they never show in ``repr``, logs or errors.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from race.domain.model import Costs, RiskLimits
from race.secrets import SecretPolicy
from race.settings_files import SettingsSources, read_sources
from race.settings_types import (
    CsvList,
    Interval,
    OptionalDecimal,
    OptionalFloat,
    OptionalSchedule,
    _env,
    is_placeholder,
)

DEFAULT_CORS = ("http://localhost:5173", "http://localhost:4173", "http://localhost:3000")
INGEST_SCHEDULE = "0 */5 * * * *"
DECISION_SCHEDULE = "0 */15 * * * *"
ML_RETRAIN_SCHEDULE = "0 0 3 * * 1"
"""Weekly: Mondays at 03:00 UTC."""

log = logging.getLogger("race.settings")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        extra="ignore", case_sensitive=False, frozen=True, env_ignore_empty=True
    )

    # Storage and API
    database_url: str = _env("RACE_DATABASE_URL", default="sqlite:///race.db")
    allow_sqlite_on_host: bool = _env("RACE_ALLOW_SQLITE_ON_HOST", default=False)
    """The Functions app (``function_app.py``) refuses to start on SQLite — a file on a
    plan's read-only or per-instance disk — unless this says it is a local ``func start``."""
    db_connect_timeout_seconds: float = _env("RACE_DB_CONNECT_TIMEOUT_SECONDS", default=3.0)
    """Longest wait for a new database connection (PostgreSQL: at least 2 s)."""
    db_statement_timeout_seconds: float = _env("RACE_DB_STATEMENT_TIMEOUT_SECONDS", default=30.0)
    """PostgreSQL ``statement_timeout`` of every connection (0 = none)."""
    db_read_timeout_seconds: float = _env("RACE_DB_READ_TIMEOUT_SECONDS", default=3.0)
    """Deadline of one API read's database work (connection wait, connect, statements): a
    database that hangs answers 503 after this long (0 = none)."""
    http_header_timeout_seconds: float = _env("RACE_HTTP_HEADER_TIMEOUT_SECONDS", default=10.0)
    """``serve``: a connection whose request headers have not all arrived after this long is
    closed (slow-header clients cannot keep connections open)."""
    http_keep_alive_seconds: float = _env("RACE_HTTP_KEEP_ALIVE_SECONDS", default=5.0)
    """``serve``: an idle keep-alive connection is closed after this long."""
    admin_key: SecretStr | None = _env("RACE_ADMIN_KEY", default=None)
    cors_origins: CsvList = _env("RACE_CORS_ORIGINS", default=list(DEFAULT_CORS))
    admin_max_body_bytes: int = _env("RACE_ADMIN_MAX_BODY_BYTES", default=16_384)
    """Admin requests with a larger body are refused (413)."""
    api_read_concurrency: int = _env("RACE_API_READ_CONCURRENCY", default=2)
    """API reads handled at once per process (the rest queue in arrival order); 0 = no
    limit."""
    api_equity_default_max_points: int = _env("RACE_API_EQUITY_DEFAULT_MAX_POINTS", default=1000)
    """Equity curves asked without ``maxPoints`` are downsampled to this many points (0 = the
    whole range)."""
    api_curve_cache_mb: float = _env("RACE_API_CURVE_CACHE_MB", default=32.0)
    """Equity responses kept per process (MB; 0 = none), each valid for one version of its
    curve."""
    backfill_queue: str = _env("RACE_BACKFILL_QUEUE", default="race-backfill")
    """Azure Storage queue carrying backfill job ids from chunk to chunk (Functions host)."""
    queue_connection: str = _env("RACE_QUEUE_CONNECTION", default="AzureWebJobsStorage")
    """Name of the app setting holding that queue's Storage connection string."""
    backfill_chunk_budget_seconds: float = _env("RACE_BACKFILL_CHUNK_BUDGET_SECONDS", default=240.0)
    """Work one queue-triggered invocation does before handing the job to the next one."""
    log_format: Literal["text", "json"] | None = _env("RACE_LOG_FORMAT", default=None)
    log_level: str = _env("RACE_LOG_LEVEL", default="INFO")

    # Race numbers (docs/rules.md)
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
    backfill_chunk_cycles: int = _env("RACE_BACKFILL_CHUNK_CYCLES", default=2000)
    """A backfill commits after this many cycles (or the seconds below), cursor included."""
    backfill_chunk_seconds: float = _env("RACE_BACKFILL_CHUNK_SECONDS", default=5.0)
    backfill_wait_seconds: float = _env("RACE_BACKFILL_WAIT_SECONDS", default=30.0)
    """A backfill that finds another one writing waits this long for it, then refuses,
    naming the running job (0 = refuse at once)."""
    health_max_candle_age: Interval = _env("RACE_HEALTH_MAX_CANDLE_AGE", default=timedelta(hours=2))
    """``/api/health`` is ``Degraded`` when the newest candle is older than this…"""
    health_max_cycle_age: Interval = _env("RACE_HEALTH_MAX_CYCLE_AGE", default=timedelta(hours=1))
    """…or when the last completed cycle is older than this."""
    degraded_window: int = _env("RACE_DEGRADED_WINDOW", default=20)
    """An agent is flagged ``degraded`` when its fallback rate over its last N decisions
    (judged once it has N; 0 = off; at most 100, the stored history)…"""
    degraded_threshold: float = _env("RACE_DEGRADED_THRESHOLD", default=0.5)
    """…exceeds this fraction."""
    catch_up_slots: int = _env("RACE_CATCH_UP_SLOTS", default=4)
    """Before a scheduled cycle, unfinished or missed cycles among this many previous slots
    of the decision schedule are completed, oldest first (0 = off)."""
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
    llama_calls_per_minute: float = _env("LLAMA_CALLS_PER_MINUTE", default=30.0)
    llama_max_concurrency: int = _env("LLAMA_MAX_CONCURRENCY", default=8)
    together_base_url: str = _env("TOGETHER_BASE_URL", default="https://api.together.xyz/v1")
    together_api_key: SecretStr | None = _env("TOGETHER_API_KEY", default=None)
    together_model: str = _env("TOGETHER_MODEL", default="meta-llama/Llama-3.3-70B-Instruct-Turbo")
    together_calls_per_minute: float = _env("TOGETHER_CALLS_PER_MINUTE", default=60.0)
    together_max_concurrency: int = _env("TOGETHER_MAX_CONCURRENCY", default=8)
    openai_base_url: str = _env("OPENAI_BASE_URL", default="https://api.openai.com/v1")
    openai_api_key: SecretStr | None = _env("OPENAI_API_KEY", default=None)
    openai_model: str = _env("OPENAI_MODEL", default="gpt-4o-mini")
    openai_calls_per_minute: float = _env("OPENAI_CALLS_PER_MINUTE", default=60.0)
    openai_max_concurrency: int = _env("OPENAI_MAX_CONCURRENCY", default=8)
    azure_openai_endpoint: str | None = _env("AZURE_OPENAI_ENDPOINT", default=None)
    azure_openai_api_key: SecretStr | None = _env("AZURE_OPENAI_API_KEY", default=None)
    azure_openai_api_version: str = _env("AZURE_OPENAI_API_VERSION", default="2024-10-21")
    azure_openai_deployment: str | None = _env("AZURE_OPENAI_DEPLOYMENT", default=None)
    azure_openai_calls_per_minute: float = _env("AZURE_OPENAI_CALLS_PER_MINUTE", default=60.0)
    azure_openai_max_concurrency: int = _env("AZURE_OPENAI_MAX_CONCURRENCY", default=8)
    llm_temperature: float = _env("LLM_TEMPERATURE", default=0.3)
    llm_max_tokens: int = _env("LLM_MAX_TOKENS", default=500)
    llm_timeout_seconds: float = _env("LLM_TIMEOUT_SECONDS", default=60.0)
    llm_max_retries: int = _env("LLM_MAX_RETRIES", default=3)
    llm_breaker_failures: int = _env("LLM_BREAKER_FAILURES", default=5)
    llm_breaker_reset_seconds: float = _env("LLM_BREAKER_RESET_SECONDS", default=60.0)
    llm_prompt_max_chars: int = _env("LLM_PROMPT_MAX_CHARS", default=16000)
    llm_prompt_candles: int = _env("LLM_PROMPT_CANDLES", default=24)
    llm_daily_budget_usd: OptionalDecimal = _env("LLM_DAILY_BUDGET_USD", default=Decimal("1"))
    """Per agent and UTC day; an agent's ``daily_budget_usd`` param wins. ``none`` → no limit."""
    llm_prices: CsvList = _env(
        "LLM_PRICES",
        default=[
            "llama-3.3-70b-versatile=0.59/0.79",
            "llama-3.1-8b-instant=0.05/0.08",
            "meta-llama/Llama-3.3-70B-Instruct-Turbo=0.88/0.88",
            "gpt-4o-mini=0.15/0.60",
            "gpt-4o=2.50/10.00",
            "gpt-4.1-mini=0.40/1.60",
        ],
    )
    """Price table, USD per million input/output tokens: ``model=input/output`` entries."""
    race_model_cutoffs: CsvList = _env("RACE_MODEL_CUTOFFS", default=[])
    """Training cut-offs extending or overriding the known table
    (``race.domain.contamination``): ``model=YYYY-MM-DD`` or ``model=YYYY-MM`` entries."""
    remote_ml_url: str | None = _env("REMOTE_ML_URL", default=None)
    remote_ml_api_key: SecretStr | None = _env("REMOTE_ML_API_KEY", default=None)
    remote_ml_timeout_seconds: float = _env("REMOTE_ML_TIMEOUT_SECONDS", default=10.0)
    ml_artifact_dir: str = _env("RACE_ML_ARTIFACT_DIR", default="artifacts/ml")
    ml_max_artifact_age: Interval = _env("RACE_ML_MAX_ARTIFACT_AGE", default=timedelta(days=120))
    ml_retrain_schedule: OptionalSchedule = _env(
        "RACE_ML_RETRAIN_SCHEDULE", default=ML_RETRAIN_SCHEDULE
    )
    """NCRONTAB (UTC) of the retraining timer (weekly by default; ``off`` = no timer): each
    slot trains the stored models on the candles before it (``race.ml_service.retrain``)."""
    ml_promote_margin: float = _env("RACE_ML_PROMOTE_MARGIN", default=0.01)
    """A retrained model is promoted when its held-out edge (accuracy minus the
    always-majority baseline) is at least the promoted model's minus this (0 to 1)."""

    # Market data
    coingecko_plan: Literal["public", "demo", "pro"] | None = _env("COINGECKO_PLAN", default=None)
    coingecko_api_key: SecretStr | None = _env("COINGECKO_API_KEY", default=None)
    coingecko_base_url: str | None = _env("COINGECKO_BASE_URL", default=None)
    coingecko_calls_per_minute: float = _env("COINGECKO_CALLS_PER_MINUTE", default=25.0)
    coingecko_timeout_seconds: float = _env("COINGECKO_TIMEOUT_SECONDS", default=30.0)
    coingecko_max_attempts: int = _env("COINGECKO_MAX_ATTEMPTS", default=4)
    """Attempts per CoinGecko call (first try included) on 429, 5xx, timeouts, network."""
    coingecko_range_chunk_days: float = _env("COINGECKO_RANGE_CHUNK_DAYS", default=89.0)
    """Days per ``/market_chart/range`` call of a backfill (each chunk commits on its own)."""
    coingecko_settle_seconds: float = _env("COINGECKO_SETTLE_SECONDS", default=900.0)
    """A candle is stored only once it closed at least this long before CoinGecko's answer
    arrived (its caches lag: ``/ohlc`` 15–30 min, ``market_chart`` a few); until then it
    counts as open and the next run fetches it again."""
    coingecko_max_retry_after_seconds: OptionalFloat = _env(
        "COINGECKO_MAX_RETRY_AFTER_SECONDS", default=None
    )
    """Longest ``Retry-After`` honoured; a longer one gives that fetch up at once (the asset's
    error says so). Unset: a fifth of the shortest gap of ``RACE_INGEST_SCHEDULE``, at most
    60 s (60 s for the 5-minute default)."""
    candle_max_move: Decimal = _env("RACE_CANDLE_MAX_MOVE", default=Decimal("0.5"))
    """Implausible jump: largest |open or close / previous close − 1| between candles."""
    candle_max_range: Decimal = _env("RACE_CANDLE_MAX_RANGE", default=Decimal("1.0"))
    """Implausible candle: largest (high − low) / low."""
    candle_max_deviation: Decimal = _env("RACE_CANDLE_MAX_DEVIATION", default=Decimal("4"))
    """Implausible level: largest factor between a close and the median of the (up to) 24
    stored or accepted closes before it."""
    candle_max_day_move: Decimal = _env("RACE_CANDLE_MAX_DAY_MOVE", default=Decimal("2.5"))
    """Implausible cumulative move: largest factor between a close and the lowest (or
    highest) close of the 24 hours before it."""
    ingest_lookback: Interval = _env("RACE_INGEST_LOOKBACK", default=timedelta(days=7))
    """How far back live ingestion starts for an asset with no stored candles yet."""

    # Telemetry
    applicationinsights_connection_string: SecretStr | None = _env(
        "APPLICATIONINSIGHTS_CONNECTION_STRING", default=None
    )

    @model_validator(mode="before")
    @classmethod
    def _unset_placeholders(cls, data: Any) -> Any:
        """A ``<…>`` value (as copied from ``local.settings.example.json``) is unset, for
        every setting: an admin key, an API key or a connection string that anyone can
        read in the example is never used. One warning names the settings, not values."""
        if not isinstance(data, Mapping):
            return data
        found = [key for key, value in data.items() if is_placeholder(value)]
        if not found:
            return data
        names: dict[str, str] = {}
        for name, field in cls.model_fields.items():
            choices = getattr(field.validation_alias, "choices", None) or [name]
            for alias in (name, *choices):
                names[str(alias).lower()] = str(choices[0])
        log.warning(
            "settings left as <placeholder> values are treated as unset: %s",
            ", ".join(sorted({names.get(str(key).lower(), str(key)) for key in found})),
        )
        return {key: value for key, value in data.items() if key not in found}

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

    @field_validator("race_model_cutoffs")
    @classmethod
    def _cutoffs(cls, value: list[str]) -> list[str]:
        from race.domain.contamination import parse_cutoffs

        parse_cutoffs(value)  # a malformed entry fails at start-up, naming it
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

    @field_validator(
        "db_connect_timeout_seconds",
        "db_statement_timeout_seconds",
        "db_read_timeout_seconds",
        "http_header_timeout_seconds",
        "http_keep_alive_seconds",
    )
    @classmethod
    def _seconds(cls, value: float) -> float:
        if not math.isfinite(value) or value < 0:
            raise ValueError("must be a finite number of seconds ≥ 0")
        return value

    @field_validator("degraded_window")
    @classmethod
    def _degraded_window(cls, value: int) -> int:
        if not 0 <= value <= 100:  # agent_stats.recent_fallbacks keeps the last 100
            raise ValueError(
                f"RACE_DEGRADED_WINDOW must be between 0 (off) and 100 decisions (the stored "
                f"history), not {value}"
            )
        return value

    @field_validator("degraded_threshold")
    @classmethod
    def _degraded_threshold(cls, value: float) -> float:
        if not 0 <= value <= 1:
            raise ValueError(f"RACE_DEGRADED_THRESHOLD must be a fraction in [0, 1], not {value}")
        return value

    @field_validator("ml_promote_margin")
    @classmethod
    def _ml_promote_margin(cls, value: float) -> float:
        if not math.isfinite(value) or not 0 <= value <= 1:
            raise ValueError(
                f"RACE_ML_PROMOTE_MARGIN must be between 0 and 1 (accuracy points), not {value}"
            )
        return value

    @field_validator("ml_retrain_schedule")
    @classmethod
    def _ml_retrain_schedule(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from race.schedule import validate

        return validate(value)

    @field_validator("catch_up_slots")
    @classmethod
    def _catch_up_slots(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"RACE_CATCH_UP_SLOTS must be 0 (off) or more slots, not {value}")
        return value

    def secret_values(self) -> list[str]:
        """Every configured secret's value (the database URL's password included), to
        scrub from logs and stored text."""
        return self.secret_policy().values

    def secret_policy(self) -> SecretPolicy:
        """The one secret policy (:mod:`race.secrets`) of these settings."""
        return SecretPolicy.from_settings(self)

    @property
    def limits(self) -> RiskLimits:
        return RiskLimits.of(self)

    @property
    def costs(self) -> Costs:
        return Costs.of(self)

    @property
    def asset_universe(self) -> list[tuple[str, str]]:
        pairs: list[tuple[str, str]] = []
        for item in self.assets:
            symbol, _, coin = item.partition(":")
            if not symbol.strip() or not coin.strip():
                raise ValueError(f"RACE_ASSETS entry {item!r} must be SYMBOL:coingecko-id")
            pairs.append((symbol.strip().upper(), coin.strip()))
        return pairs


def setting_names() -> dict[str, str]:
    """Every setting's environment name, keyed by its lower-case spelling (and field name)."""
    names: dict[str, str] = {}
    for name, field in Settings.model_fields.items():
        choices = getattr(field.validation_alias, "choices", None) or [name]
        canonical = str(choices[0])
        for alias in (name, *choices):
            names[str(alias).lower()] = canonical
    return names


def load_settings(
    overrides: Mapping[str, Any] | None = None, *, sources: SettingsSources | None = None
) -> Settings:
    """Settings from the environment, then ``.env``, then ``local.settings.json`` Values
    (:mod:`race.settings_files`); ``overrides`` (by environment name) win. Tests and the
    CLI pass overrides instead of mutating ``os.environ``. A malformed file raises
    :class:`~race.settings_files.SettingsFileError` naming the file and line."""
    sources = read_sources() if sources is None else sources
    names = setting_names()
    values: dict[str, Any] = {}
    for key, value in sources.file_values().items():
        canonical = names.get(key.lower())
        if canonical is not None:
            values[canonical] = value
    for key, value in dict(overrides or {}).items():
        values.pop(names.get(str(key).lower(), str(key)), None)
        values[key] = value
    return Settings(**values)
