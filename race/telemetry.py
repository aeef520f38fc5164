"""Telemetry: traces, metrics and logs of the race — cycle duration, agent latency,
fallbacks, tokens, cost, candles ingested and rejected.

With ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set they go to Application Insights through
the Azure Monitor OpenTelemetry exporters (``azure-monitor-opentelemetry``). The providers
are the race's own, not OpenTelemetry's process-wide globals: building two apps in one
process (tests, the CLI) never double-exports, and one connection string maps to one set of
exporters. Without the setting nothing is built, nothing is sent and every call here is a
no-op. Configured secrets are scrubbed from every attribute and log record sent.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from race.secrets import SecretPolicy, policy_of

log = logging.getLogger("race.telemetry")


class Telemetry:
    """The no-op telemetry (no connection string)."""

    enabled = False

    def record_cycle(
        self,
        *,
        cycle_time: datetime,
        trigger: str,
        duration_s: float,
        decided: int,
        fallbacks: int,
        trades: int,
        status: str,
    ) -> None:
        return None

    def record_decision(
        self,
        *,
        agent_id: int,
        agent_name: str,
        provider: str,
        model: str | None,
        latency_ms: int | None,
        fallback: bool,
        fallback_reason: str | None,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        cost_usd: Decimal | None,
    ) -> None:
        return None

    def record_ingest(
        self, *, asset: str, source: str, inserted: int, rejected: Mapping[str, int]
    ) -> None:
        return None

    @contextmanager
    def span(self, name: str, **attributes: Any) -> Iterator[None]:
        yield

    def flush(self) -> None:
        return None


def _reason_class(reason: str | None) -> str:
    """A low-cardinality dimension for a fallback reason."""
    if not reason:
        return "none"
    text = reason.lower()
    for key, label in (
        ("timed out", "timeout"),
        ("timeout", "timeout"),
        ("budget", "budget"),
        ("circuit", "circuit_open"),
        ("unavailable", "circuit_open"),
        ("not configured", "not_configured"),
        ("json", "invalid_answer"),
        ("schema", "invalid_answer"),
        ("cannot be built", "config"),
        ("429", "rate_limited"),
        ("rate", "rate_limited"),
    ):
        if key in text:
            return label
    return "error"


class AppInsightsTelemetry(Telemetry):
    enabled = True

    def __init__(
        self,
        connection_string: str,
        secrets: list[str] | SecretPolicy,
        *,
        export_interval_ms: int = 60_000,
        attach_logs: bool = True,
    ) -> None:
        self._policy = policy_of(secrets)
        self._build_providers(connection_string, export_interval_ms)
        self.log_handler: logging.Handler | None = None
        if attach_logs:
            self.log_handler = self._attach_log_handler()
        self.tracer = self.tracer_provider.get_tracer("race")
        self._create_instruments(self.meter_provider.get_meter("race"))
        self._closed = False
        atexit.register(self.shutdown)

    def _build_providers(self, connection_string: str, export_interval_ms: int) -> None:
        """The race's own trace, metric and log providers, each exporting to Azure Monitor."""
        from azure.monitor.opentelemetry.exporter import (
            AzureMonitorLogExporter,
            AzureMonitorMetricExporter,
            AzureMonitorTraceExporter,
        )
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        options: dict[str, Any] = {
            "connection_string": connection_string,
            "disable_offline_storage": True,
        }
        resource = Resource.create({"service.name": "ai-trading-race"})
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(
            BatchSpanProcessor(AzureMonitorTraceExporter(**options))
        )
        self._reader = PeriodicExportingMetricReader(
            AzureMonitorMetricExporter(**options), export_interval_millis=export_interval_ms
        )
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[self._reader])
        self.logger_provider = LoggerProvider(resource=resource)
        self.logger_provider.add_log_record_processor(
            BatchLogRecordProcessor(AzureMonitorLogExporter(**options))
        )

    def _attach_log_handler(self) -> logging.Handler:
        """A handler on the root logger sending INFO and above, with context and secrets
        redacted, to the log provider."""
        from opentelemetry.instrumentation.logging.handler import LoggingHandler

        from race.logging_setup import ContextFilter, RedactingFilter

        handler = LoggingHandler(level=logging.INFO, logger_provider=self.logger_provider)
        handler.addFilter(ContextFilter())
        handler.addFilter(RedactingFilter(self._policy))
        logging.getLogger().addHandler(handler)
        return handler

    def _create_instruments(self, meter: Any) -> None:
        """The race's histograms and counters."""
        self.cycle_duration = meter.create_histogram(
            "race.cycle.duration", unit="s", description="decision cycle wall time"
        )
        self.cycles = meter.create_counter("race.cycles", description="decision cycles run")
        self.decisions = meter.create_counter("race.decisions", description="agent decisions")
        self.agent_latency = meter.create_histogram(
            "race.agent.latency", unit="ms", description="agent answer latency"
        )
        self.fallbacks = meter.create_counter(
            "race.fallbacks", description="decisions that fell back to HOLD"
        )
        self.tokens = meter.create_counter(
            "race.llm.tokens", unit="{token}", description="LLM tokens"
        )
        self.cost = meter.create_counter("race.llm.cost", unit="USD", description="LLM cost")
        self.candles_ingested = meter.create_counter(
            "race.candles.ingested", description="candles stored"
        )
        self.candles_rejected = meter.create_counter(
            "race.candles.rejected", description="candles rejected"
        )

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._policy.redact(value)[:1000]
        if isinstance(value, int | float | bool):
            return value
        return self._clean(str(value))

    def _attributes(self, **attributes: Any) -> dict[str, Any]:
        return {k: self._clean(v) for k, v in attributes.items() if v is not None}

    def record_cycle(
        self,
        *,
        cycle_time: datetime,
        trigger: str,
        duration_s: float,
        decided: int,
        fallbacks: int,
        trades: int,
        status: str,
    ) -> None:
        dims = self._attributes(trigger=trigger, status=status)
        self.cycle_duration.record(duration_s, dims)
        self.cycles.add(1, dims)

    def record_decision(
        self,
        *,
        agent_id: int,
        agent_name: str,
        provider: str,
        model: str | None,
        latency_ms: int | None,
        fallback: bool,
        fallback_reason: str | None,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        cost_usd: Decimal | None,
    ) -> None:
        dims = self._attributes(provider=provider, model=model or "none")
        self.decisions.add(1, dims)
        if latency_ms is not None:
            self.agent_latency.record(latency_ms, dims)
        if fallback:
            self.fallbacks.add(1, {**dims, "reason": _reason_class(fallback_reason)})
        if prompt_tokens:
            self.tokens.add(prompt_tokens, {**dims, "kind": "prompt"})
        if completion_tokens:
            self.tokens.add(completion_tokens, {**dims, "kind": "completion"})
        if cost_usd:
            self.cost.add(float(cost_usd), dims)
        end = datetime.now(UTC)
        start = end - timedelta(milliseconds=latency_ms or 0)
        span = self.tracer.start_span(
            "race.agent.decide",
            start_time=int(start.timestamp() * 1e9),
            attributes=self._attributes(
                agent_id=agent_id,
                agent=agent_name,
                provider=provider,
                model=model,
                latency_ms=latency_ms,
                fallback=fallback,
                fallback_reason=fallback_reason,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cost_usd=None if cost_usd is None else float(cost_usd),
            ),
        )
        span.end(end_time=int(end.timestamp() * 1e9))

    def record_ingest(
        self, *, asset: str, source: str, inserted: int, rejected: Mapping[str, int]
    ) -> None:
        dims = self._attributes(asset=asset, source=source)
        if inserted:
            self.candles_ingested.add(inserted, dims)
        for reason, count in rejected.items():
            if count:
                self.candles_rejected.add(count, {**dims, "reason": self._clean(reason)})

    @contextmanager
    def span(self, name: str, **attributes: Any) -> Iterator[None]:
        with self.tracer.start_as_current_span(name, attributes=self._attributes(**attributes)):
            yield

    def flush(self) -> None:
        self.tracer_provider.force_flush()
        self.meter_provider.force_flush()
        self.logger_provider.force_flush()

    def shutdown(self) -> None:
        """Flush and close the providers; idempotent (also registered with ``atexit``)."""
        if self._closed:
            return
        self._closed = True
        if self.log_handler is not None:
            logging.getLogger().removeHandler(self.log_handler)
            self.log_handler = None
        for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
            try:
                provider.shutdown()
            except Exception:
                log.debug("telemetry provider shutdown failed", exc_info=True)


_BY_CONNECTION: dict[str, AppInsightsTelemetry] = {}
_LOCK = threading.Lock()


def telemetry_from_settings(settings: Any) -> Telemetry:
    """Application Insights when configured, else the no-op. One exporter set per
    connection string and process."""
    secret = getattr(settings, "applicationinsights_connection_string", None)
    connection = secret.get_secret_value().strip() if secret is not None else ""
    if not connection:
        return Telemetry()
    with _LOCK:
        existing = _BY_CONNECTION.get(connection)
        if existing is not None:
            return existing
        try:
            telemetry = AppInsightsTelemetry(connection, settings.secret_policy())
        except Exception as exc:
            log.warning("Application Insights telemetry disabled: %s", exc.__class__.__name__)
            return Telemetry()
        _BY_CONNECTION[connection] = telemetry
        return telemetry
