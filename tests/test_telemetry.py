"""Telemetry to Application Insights, against a loopback ingestion endpoint that answers
like the real one (``POST /v2.1/track``)."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from race.bootstrap import bootstrap
from race.domain.model import Provider
from race.logging_setup import log_context
from race.settings import load_settings
from race.telemetry import AppInsightsTelemetry, Telemetry, telemetry_from_settings
from tests.factories import HOUR, insert_candles, make_candles, seed_agent, seed_assets, wave_prices
from tests.test_engine import Scripted, app_with

SECRET = "llama-key-TELEMETRY-SECRET-99"
IKEY = "00000000-0000-0000-0000-000000000000"


class Ingestion:
    """Collects the envelopes the Azure Monitor exporters send."""

    def __init__(self) -> None:
        self.envelopes: list[dict] = []
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    raw = gzip.decompress(raw)
                items = json.loads(raw)
                items = items if isinstance(items, list) else [items]
                outer.paths.append(self.path)
                outer.envelopes.extend(items)
                body = json.dumps(
                    {"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        port = self.server.server_address[1]
        self.connection_string = (
            f"InstrumentationKey={IKEY};IngestionEndpoint=http://127.0.0.1:{port}/"
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def of_type(self, suffix: str) -> list[dict]:
        return [e for e in self.envelopes if e.get("name", "").endswith(suffix)]

    def metric_names(self) -> set[str]:
        return {m["name"] for e in self.of_type("Metric") for m in e["data"]["baseData"]["metrics"]}


@pytest.fixture
def ingestion(monkeypatch):
    # Never talk to Microsoft's own endpoints from a test (statsbeat, live metrics).
    monkeypatch.setenv("APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL", "true")
    monkeypatch.setenv("APPLICATIONINSIGHTS_SDKSTATS_DISABLED", "true")
    monkeypatch.setenv("APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED", "true")
    server = Ingestion()
    yield server
    server.close()


def test_without_a_connection_string_nothing_is_built():
    threads = threading.active_count()
    telemetry = telemetry_from_settings(load_settings({}))
    assert type(telemetry) is Telemetry
    assert telemetry.enabled is False
    telemetry.record_cycle(
        cycle_time=datetime(2024, 1, 1, tzinfo=UTC),
        trigger="t",
        duration_s=1.0,
        decided=1,
        fallbacks=0,
        trades=0,
        status="completed",
    )
    with telemetry.span("x"):
        pass
    telemetry.flush()
    assert threading.active_count() == threads


def test_cycles_decisions_and_ingestion_reach_application_insights(ingestion, database_url, clock):
    settings = load_settings(
        {
            "RACE_DATABASE_URL": database_url,
            "LLAMA_API_KEY": SECRET,
            "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string,
        }
    )
    telemetry = AppInsightsTelemetry(
        ingestion.connection_string, settings.secret_values(), export_interval_ms=3_600_000
    )
    try:

        def leak(_):
            raise RuntimeError(f"401 for key {SECRET}")

        from race.domain.agent import AgentAnswer

        application = app_with(
            database_url,
            clock,
            {
                "leaky": Scripted(leak),
                "thinker": Scripted(
                    lambda c: AgentAnswer.hold(
                        "thinking",
                        prompt_tokens=120,
                        completion_tokens=30,
                        cost_usd=__import__("decimal").Decimal("0.002"),
                        latency_ms=250,
                        model="llama-3.3-70b-versatile",
                    )
                ),
            },
            LLAMA_API_KEY=SECRET,
        )
        application.engine.telemetry = telemetry
        start = datetime(2024, 1, 1, tzinfo=UTC)
        seed_assets(application)
        for symbol, base in (("BTC", 40000.0), ("ETH", 2000.0)):
            insert_candles(application, make_candles(symbol, start, wave_prices(80, base=base)))
        seed_agent(application, "leaky", Provider.LLAMA, "m")
        seed_agent(application, "thinker", Provider.LLAMA, "llama-3.3-70b-versatile")
        asyncio.run(application.engine.run_cycle(start + 60 * HOUR, trigger="timer"))
        telemetry.record_ingest(
            asset="BTC", source="coingecko", inserted=12, rejected={"implausible_range": 2}
        )
        with log_context(cycle_id="c-42", agent_id=7, provider="Llama", correlation_id="abc"):
            logging.getLogger("race.test").warning("provider slow for key %s", SECRET)
        telemetry.flush()
        application.close()
    finally:
        telemetry.shutdown()
    assert ingestion.paths and all(p.endswith("/v2.1/track") for p in ingestion.paths)
    assert all(e["iKey"] == IKEY for e in ingestion.envelopes)
    assert {
        "race.cycle.duration",
        "race.cycles",
        "race.decisions",
        "race.agent.latency",
        "race.fallbacks",
        "race.llm.tokens",
        "race.llm.cost",
        "race.candles.ingested",
        "race.candles.rejected",
    } <= ingestion.metric_names()
    spans = [e for e in ingestion.envelopes if e["name"].endswith(("RemoteDependency", "Request"))]
    names = {e["data"]["baseData"]["name"] for e in spans}
    assert {"race.cycle", "race.agent.decide"} <= names
    decide = [
        e["data"]["baseData"] for e in spans if e["data"]["baseData"]["name"] == "race.agent.decide"
    ]
    assert any(d["properties"].get("fallback") in ("True", "true", True) for d in decide)
    fallback_metric = [
        m
        for e in ingestion.of_type("Metric")
        for m in e["data"]["baseData"]["metrics"]
        if m["name"] == "race.fallbacks"
    ]
    assert fallback_metric
    messages = [e["data"]["baseData"] for e in ingestion.of_type("Message")]
    slow = next(m for m in messages if "provider slow" in m["message"])
    assert slow["properties"]["cycle_id"] == "c-42"
    assert slow["properties"]["provider"] == "Llama"
    assert slow["properties"]["correlation_id"] == "abc"
    everything = json.dumps(ingestion.envelopes)
    assert SECRET not in everything
    assert "[redacted:" in everything


def test_one_exporter_set_per_connection_string(ingestion, tmp_path):
    overrides = {
        "RACE_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string,
    }
    first, second = bootstrap(overrides=overrides), bootstrap(overrides=overrides)
    try:
        assert first.telemetry is second.telemetry
        assert first.telemetry.enabled is True
    finally:
        first.telemetry.shutdown()
        first.close()
        second.close()
