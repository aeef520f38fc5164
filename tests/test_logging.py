"""Structured logs carry the run's context; secrets never reach a log line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from datetime import UTC, datetime

import pytest

from race.domain.agent import AgentAnswer
from race.domain.model import Provider
from race.logging_setup import JsonFormatter, configure_logging, log_context
from tests.factories import HOUR, insert_candles, make_candles, seed_agent, seed_assets, wave_prices
from tests.test_engine import Scripted, app_with

SECRET = "gsk-test-0123456789abcdefSECRET"
START = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def json_logs(monkeypatch):
    stream = io.StringIO()
    root = logging.getLogger()
    before = list(root.handlers), root.level
    configure_logging(level=logging.INFO, fmt="json", secrets=[SECRET], stream=stream)
    yield stream
    for handler in list(root.handlers):
        if handler not in before[0]:
            root.removeHandler(handler)
    root.setLevel(before[1])


def records(stream):
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_cycle_logs_carry_cycle_agent_provider_and_correlation(json_logs, database_url, clock):
    def leak(_):
        raise RuntimeError(f"401 from provider for key {SECRET}")

    application = app_with(database_url, clock, {"leaky": Scripted(leak)}, LLAMA_API_KEY=SECRET)
    seed_assets(application)
    for symbol, base in (("BTC", 40000.0), ("ETH", 2000.0)):
        insert_candles(application, make_candles(symbol, START, wave_prices(80, base=base)))
    agent_id = seed_agent(application, "leaky", Provider.LLAMA, "m")
    asyncio.run(application.engine.run_cycle(START + 60 * HOUR, trigger="timer"))
    application.close()
    lines = records(json_logs)
    fallback = next(r for r in lines if "fallback" in r["message"])
    assert fallback["cycle_id"] == (START + 60 * HOUR).isoformat()
    assert fallback["agent_id"] == agent_id
    assert fallback["provider"] == "Llama"
    assert fallback["trigger"] == "timer"
    assert len(fallback["correlation_id"]) == 16
    summary = next(r for r in lines if r["message"].startswith("cycle "))
    assert summary["correlation_id"] == fallback["correlation_id"]
    assert "agent_id" not in summary
    assert SECRET not in json_logs.getvalue()
    assert "[redacted:" in fallback["message"]


def test_redaction_covers_arguments_and_tracebacks(json_logs):
    log = logging.getLogger("race.test")
    log.warning("calling with %s", SECRET)
    try:
        raise ValueError(f"bad key {SECRET}")
    except ValueError:
        log.exception("failed")
    text = json_logs.getvalue()
    assert SECRET not in text
    assert text.count("[redacted:") >= 2


def test_context_nests_and_unwinds():
    formatter = JsonFormatter()
    captured = []

    class Grab(logging.Handler):
        def emit(self, record):
            captured.append(json.loads(formatter.format(record)))

    from race.logging_setup import ContextFilter

    handler = Grab()
    handler.addFilter(ContextFilter())
    log = logging.getLogger("race.nesting")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with log_context(cycle_id="c1", correlation_id="x"):
            with log_context(agent_id=7):
                log.info("inner")
            log.info("outer")
        log.info("none")
    finally:
        log.removeHandler(handler)
    assert captured[0]["agent_id"] == 7
    assert captured[0]["cycle_id"] == "c1"
    assert "agent_id" not in captured[1]
    assert "cycle_id" not in captured[2]


def test_backfill_steps_log_with_cycle_agent_and_provider(json_logs, database_url, clock):
    """What an agent logs while deciding in a backfill carries its cycle, agent and provider
    (in-process agents, decided one by one, and I/O agents, decided side by side)."""
    agent_log = logging.getLogger("agents.test")

    def thinking(name):
        def decide(context):
            agent_log.info("%s thinking at %s", name, context.cycle_time.isoformat())
            return AgentAnswer.hold("thought")

        return decide

    scripted = {
        "local": Scripted(thinking("local"), in_process=True),
        "remote-1": Scripted(thinking("remote-1")),
        "remote-2": Scripted(thinking("remote-2")),
    }
    application = app_with(database_url, clock, scripted)
    seed_assets(application)
    for symbol, base in (("BTC", 40000.0), ("ETH", 2000.0)):
        insert_candles(application, make_candles(symbol, START, wave_prices(80, base=base)))
    ids = {
        "local": seed_agent(application, "local", Provider.CUSTOM_ML, "m"),
        "remote-1": seed_agent(application, "remote-1", Provider.LLAMA, "m"),
        "remote-2": seed_agent(application, "remote-2", Provider.OPENAI, "m"),
    }
    asyncio.run(application.engine.backfill(START + 60 * HOUR, START + 61 * HOUR, HOUR))
    application.close()
    thoughts = [r for r in records(json_logs) if "thinking" in r["message"]]
    assert len(thoughts) == 6
    for record in thoughts:
        name, _, _, at = record["message"].split()
        assert record["agent"] == name
        assert record["agent_id"] == ids[name]
        assert record["provider"] == {"local": "CustomML", "remote-1": "Llama"}.get(name, "OpenAI")
        assert record["cycle_id"] == at
        assert record["trigger"] == "backfill"
        assert len(record["correlation_id"]) == 16
