"""Decision-cycle latency with language-model agents (issue 4 benchmark).

    python bench/cycle_latency.py [--agents 20] [--delay 1.0] [--cycles 5]

20 Llama agents (one provider, concurrency 20) against a loopback OpenAI-compatible server
(in its own process, like a remote provider) that answers every chat completion after
``--delay`` seconds, then again answering at once.
Each timed cycle is one ``app.engine.run_cycle(T)`` through the real engine: context from
SQL, prompts, HTTP through the openai SDK, parsing, risk rules, and every decision, trade
and equity snapshot committed to SQLite. Each scenario's app is built as the cycle-running
paths build it (``bootstrap(warm_up=True)``: the agents built, the openai SDK and pandas
imported, a database connection pooled) and its build time is printed as "start-up"; the
first cycle of each app is timed from the call of ``run_cycle`` and reported separately.

Targets on the 2-core machine: ≤ 2.0 s wall per cycle with a 1.0 s provider, ≤ 0.5 s with
an instant one. The targets assume a provider whose limits let all 20 calls run at once, so
the benchmark raises the pacing settings above their defaults (free-tier Groq: 30 calls a
minute, 8 in flight; 16 agents at once); it prints the values it used next to the results.
With the defaults, 20 calls cannot all be in flight and a cycle takes longer by design.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from race.bootstrap import App, bootstrap
from race.domain.model import Provider
from race.settings import Settings
from race.universe import NewAgent, add_agent, add_asset
from tests.factories import insert_candles, make_candles, wave_prices
from tests.openai_server import OpenAIServer, Recorded, Reply, completion

HOUR = timedelta(hours=1)
START = datetime(2024, 1, 1, tzinfo=UTC)
ANSWER = {
    "reasoning": "Benchmark: small BTC buy.",
    "orders": [{"asset": "BTC", "side": "BUY", "quantity": 0.01}],
    "cited_rules": ["R6"],
}


def _respond(request: Recorded) -> Reply:
    """The answer delay comes from the path: ``/delay-1.0/v1/chat/completions``."""
    delay = float(request.path.split("/")[1].removeprefix("delay-"))
    return completion(ANSWER, delay=delay)


def serve_provider(ports: Queue, stop: Event) -> None:  # type: ignore[type-arg]
    """The provider runs in its own process, as a remote one would: its CPU and GIL are not
    the engine's."""
    with OpenAIServer() as server:
        server.default = _respond
        ports.put(server.port)
        stop.wait()


def pacing_for(agents: int) -> dict[str, str]:
    """The pacing settings the targets assume: every agent's call in flight at once."""
    return {
        "LLAMA_CALLS_PER_MINUTE": "6000",
        "LLAMA_MAX_CONCURRENCY": str(agents),
        "RACE_AGENT_CONCURRENCY": str(agents),
    }


def settings_for(folder: Path, port: int, delay: float, agents: int) -> dict[str, str]:
    return {
        "RACE_DATABASE_URL": f"sqlite:///{folder / 'bench.db'}",
        "LLAMA_BASE_URL": f"http://127.0.0.1:{port}/delay-{delay:g}/v1",
        "LLAMA_API_KEY": "bench-key-0000",
        **pacing_for(agents),
        "LLM_DAILY_BUDGET_USD": "none",
    }


def describe_pacing(agents: int) -> str:
    """``NAME=value (default d)`` for each pacing setting the benchmark overrides."""
    defaults = {
        field.validation_alias.choices[0]: field.default  # type: ignore[union-attr]
        for field in Settings.model_fields.values()
        if field.validation_alias is not None
    }
    return ", ".join(
        f"{name}={value} (default {defaults[name]:g})" for name, value in pacing_for(agents).items()
    )


def prepare(overrides: dict[str, str], agents: int) -> None:
    app = bootstrap(overrides=overrides)
    app.db.upgrade()
    for symbol, coin in (("BTC", "bitcoin"), ("ETH", "ethereum")):
        add_asset(app.db, symbol, coin, app.clock)
    for symbol, base in (("BTC", 40000.0), ("ETH", 2000.0)):
        insert_candles(app, make_candles(symbol, START, wave_prices(400, base=base)))
    for number in range(agents):
        add_agent(
            app.db,
            NewAgent(
                name=f"Llama {number + 1:02d}",
                provider=Provider.LLAMA,
                model="llama-3.3-70b-versatile",
                instructions="Benchmark agent.",
            ),
            app.settings.starting_capital,
            app.clock,
        )
    app.close()


def timed_cycle(app: App, cycle_time: datetime, agents: int) -> float:
    started = time.perf_counter()
    report = asyncio.run(app.engine.run_cycle(cycle_time))
    elapsed = time.perf_counter() - started
    if report.decided != agents or report.fallbacks:
        raise SystemExit(f"cycle {cycle_time}: unexpected report {report.as_dict()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--delay", type=float, default=1.0, help="provider answer time, s")
    parser.add_argument("--cycles", type=int, default=5, help="timed cycles per scenario")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    ports: Queue = context.Queue()  # type: ignore[type-arg]
    stop = context.Event()
    provider = context.Process(target=serve_provider, args=(ports, stop), daemon=True)
    provider.start()
    port = ports.get(timeout=30)
    results: dict[str, tuple[float, float, list[float]]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            prepare(settings_for(folder, port, args.delay, args.agents), args.agents)
            cycle_time = START + 100 * HOUR
            for label, delay in (
                (f"provider {args.delay:g} s", args.delay),
                ("provider instant", 0.0),
            ):
                started = time.perf_counter()
                app = bootstrap(
                    overrides=settings_for(folder, port, delay, args.agents), warm_up=True
                )
                startup = time.perf_counter() - started
                first = timed_cycle(app, cycle_time, args.agents)
                times = []
                for _ in range(args.cycles):
                    cycle_time += HOUR
                    times.append(timed_cycle(app, cycle_time, args.agents))
                cycle_time += HOUR
                results[label] = (startup, first, times)
                app.close()
    finally:
        stop.set()
        provider.join(timeout=10)
    print(
        f"{args.agents} LLM agents, one provider (concurrency {args.agents}); one cycle = "
        "app.engine.run_cycle(T) with SQLite persistence"
    )
    print(f"  settings: {describe_pacing(args.agents)}")
    for label, (startup, first, times) in results.items():
        print(
            f"  {label:<18} median {statistics.median(times):.3f} s, best {min(times):.3f} s, "
            f"worst {max(times):.3f} s over {len(times)} cycles; first cycle of the app "
            f"{first:.3f} s (start-up: app built and warmed up in {startup:.3f} s)"
        )
    print(
        "  (the first scenario's start-up is the process's: it imports the openai SDK and "
        "pandas, which the second's finds imported)"
    )


if __name__ == "__main__":
    main()
