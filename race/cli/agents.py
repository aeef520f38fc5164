"""``python -m race agents …``: add, list, show, disable, enable and remove contestants.

    python -m race agents add --name "Llama Scalper" --provider Llama \\
        --model llama-3.3-70b-versatile --instructions "…" --params '{"daily_budget_usd": 0.5}'
    python -m race agents list [--json]
    python -m race agents show "Llama Scalper" [--json]      # or its id: agents show 7
    python -m race agents disable "Llama Scalper"
    python -m race agents enable 7
    python -m race agents remove 7 [--force]

Wherever an agent is named, its id works too, and names match regardless of case.

``add`` checks the provider and the params by building the agent exactly as the engine
would, so a typo is refused here, not discovered as HOLDs later.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from agents.config import AgentConfigError
from agents.registry import (
    PROVIDER_NAMES,
    AgentServices,
    build_agent,
    configuration_notes,
    default_model,
    kind_of,
    model_help,
)
from race.cli._common import open_app
from race.domain.agent import AgentSpec
from race.domain.model import Provider
from race.domain.money import fmt_usd
from race.domain.timeutil import iso
from race.settings import Settings
from race.universe import (
    NewAgent,
    add_agent,
    agent_name,
    find_agent,
    list_agents,
    remove_agent,
    set_agent_active,
)

PROVIDERS = ", ".join(PROVIDER_NAMES)


def register(commands: Any) -> None:
    agents = commands.add_parser("agents", help="manage the agents in the race")
    sub = agents.add_subparsers(dest="agents_command", metavar="ACTION", required=True)

    _register_add(sub)

    listing = sub.add_parser("list", help="list the agents")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    listing.set_defaults(handler=cmd_list)

    show = sub.add_parser(
        "show", help="one agent: summary, metrics, recent decisions (with reasoning) and trades"
    )
    show.add_argument("agent", metavar="NAME|ID")
    show.add_argument(
        "--limit", type=int, default=10, help="recent decisions and trades shown (default 10)"
    )
    show.add_argument("--json", action="store_true", help="JSON (the API's field names)")
    show.set_defaults(handler=cmd_show)
    from race.cli.decisions import add_chat_option  # issue 15: --decision ID, the model chat

    add_chat_option(show, cmd_show)

    disable = sub.add_parser("disable", help="stop an agent from deciding (keeps its history)")
    disable.add_argument("agent", metavar="NAME|ID")
    disable.set_defaults(handler=cmd_disable)

    enable = sub.add_parser("enable", help="let a disabled agent decide again")
    enable.add_argument("agent", metavar="NAME|ID")
    enable.set_defaults(handler=cmd_enable)

    remove = sub.add_parser(
        "remove",
        help="delete an agent and its portfolio (refused once it has decided, unless --force)",
    )
    remove.add_argument("agent", metavar="NAME|ID")
    remove.add_argument(
        "--force",
        action="store_true",
        help="also delete its decisions, trades and equity history (one transaction)",
    )
    remove.set_defaults(handler=cmd_remove)


def _register_add(sub: Any) -> None:
    add = sub.add_parser("add", help="add an agent (with its portfolio)")
    add.add_argument(
        "--name", required=True, help="display name: one printable line, unique in any case"
    )
    add.add_argument("--provider", required=True, help=f"one of: {PROVIDERS}")
    add.add_argument("--model", help=f"{model_help()}; default: the provider's default")
    add.add_argument("--instructions", default="", help="the agent's own instructions")
    add.add_argument(
        "--description",
        default="",
        help="display text only: a one-line description shown on the board (the API's "
        "'strategy' field); what the agent does is set by --provider, --model, "
        "--instructions and --params",
    )
    # The old name, kept working but hidden: it read as if it picked the strategy.
    add.add_argument("--strategy", dest="description", help=argparse.SUPPRESS)
    add.add_argument(
        "--params", default="{}", help="JSON object of agent params (unknown ones are refused)"
    )
    add.set_defaults(handler=cmd_add)


def parse_provider(value: str) -> Provider:
    for provider in Provider:
        if provider.value.lower() == value.strip().lower():
            return provider
    raise ValueError(f"unknown provider {value!r}: choose one of {PROVIDERS}")


def parse_params(text: str) -> dict[str, Any]:
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--params is not valid JSON: {exc.msg} at character {exc.pos}") from None
    if not isinstance(params, dict):
        raise ValueError(f"--params must be a JSON object, got {type(params).__name__}")
    return params


def validate(
    new: NewAgent, settings: Settings, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Build the agent as the engine would (raises ValueError naming the problem); returns
    notes about settings it still needs."""
    spec = AgentSpec(
        id=0,
        name=new.name,
        provider=new.provider,
        model=new.model,
        strategy=new.strategy,
        instructions=new.instructions,
        params=dict(new.params or {}),
    )
    choices = kind_of(new.provider, new.model).model_choices
    if choices and not new.model:
        raise ValueError(f"{new.provider.value} agents need --model, one of: {', '.join(choices)}")
    try:
        services = AgentServices(settings=settings)
        if environ is not None:
            services.environ = environ
        build_agent(spec, services)
    except AgentConfigError as exc:
        raise ValueError(f"invalid agent: {exc}") from None
    return configuration_notes(spec, settings, environ)


def cmd_add(args: argparse.Namespace) -> int:
    app = open_app()
    provider = parse_provider(args.provider)
    params = parse_params(args.params)
    model = (args.model or "").strip() or default_model(provider, app.settings)
    new = NewAgent(
        name=agent_name(args.name),
        provider=provider,
        model=model,
        strategy=args.description or "",
        instructions=args.instructions,
        params=params,
    )
    notes = validate(new, app.settings, app.services.environ)
    row, _ = add_agent(app.db, new, app.settings.starting_capital, app.clock)
    print(
        f"added agent {row.name!r} (id {row.id}, {row.provider}"
        f"{f' {row.model}' if row.model else ''}) with "
        f"{fmt_usd(app.settings.starting_capital)} USD"
    )
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    app = open_app()
    rows = list_agents(app.db)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": str(r.id),
                        "name": r.name,
                        "strategy": r.strategy,
                        "isActive": r.is_active,
                        "createdAt": iso(r.created_at),
                        "provider": r.provider,
                        "model": r.model,
                        "params": r.params,
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
        return 0
    if not rows:
        print("no agents yet: `python -m race agents add …` or `python -m race demo`")
        return 0
    table = [("id", "name", "provider", "model", "active", "params")]
    for r in rows:
        params = json.dumps(r.params or {}, separators=(",", ":"))
        table.append(
            (
                str(r.id),
                r.name,
                r.provider,
                r.model or "",
                "yes" if r.is_active else "no",
                params if len(params) <= 60 else params[:57] + "...",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for index, row in enumerate(table):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
        if index == 0:
            print("  ".join("-" * width for width in widths))
    return 0


def cmd_disable(args: argparse.Namespace) -> int:
    app = open_app()
    row = set_agent_active(app.db, args.agent, False)
    print(f"disabled agent {row.name!r} (id {row.id}): it keeps its history and stops deciding")
    return 0


def cmd_enable(args: argparse.Namespace) -> int:
    app = open_app()
    row = set_agent_active(app.db, args.agent, True)
    print(f"enabled agent {row.name!r} (id {row.id})")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    app = open_app()
    removed = remove_agent(app.db, args.agent, force=args.force)
    history = (
        f" with {removed.decisions} decision(s), {removed.trades} trade(s) and "
        f"{removed.snapshots} equity snapshot(s)"
        if removed.decisions or removed.trades or removed.snapshots
        else ""
    )
    print(f"removed agent {removed.name!r} (id {removed.id}){history}")
    return 0


def agent_report(app: Any, ref: str, limit: int) -> dict[str, Any]:
    """Everything ``agents show`` prints, by the API's field names: the agent's detail
    (summary, latest snapshot, ``performance``), its params and instructions, its most recent
    decisions (newest first) and trades."""
    from race.api import queries

    if limit < 1:
        raise ValueError(f"--limit must be at least 1, got {limit}")
    with app.db.read() as session:
        row = find_agent(session, ref)
        detail = queries.agent_detail(session, row.id, app.clock.now())
        if detail is None:  # an agent without its portfolio (hand-made rows)
            raise LookupError(f"agent {row.name!r} (id {row.id}) has no portfolio")
        report: dict[str, Any] = detail.model_dump()
        report["params"] = row.params or {}
        report["instructions"] = row.instructions
        report["decisions"] = [d.model_dump() for d in queries.decisions(session, row.id, limit)]
        report["trades"] = [
            t.model_dump() for t in queries.trades(session, row.id, limit, 0).trades
        ]
    return report


def _notes(decision: Mapping[str, Any]) -> list[str]:
    notes: list[str] = []
    if decision.get("fallbackReason"):
        notes.append(f"fallback: {decision['fallbackReason']}")
    raw = decision.get("validationErrors")
    if raw:
        try:
            items = json.loads(raw)
        except ValueError:
            items = [raw]
        for item in items if isinstance(items, list) else [items]:
            if isinstance(item, Mapping):
                item = item.get("message") or json.dumps(item, sort_keys=True)
            notes.append(str(item))
    return notes


def cmd_show(args: argparse.Namespace) -> int:
    app = open_app()
    report = agent_report(app, args.agent, args.limit)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    perf = report["performance"]

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:+.2f}%"

    def ratio(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    lines = [
        f"{report['name']} (id {report['id']}) — {report['provider']}"
        f"{' ' + report['model'] if report['model'] else ''}, "
        f"{'active' if report['isActive'] else 'disabled'}, since {report['createdAt']}",
    ]
    if report["strategy"]:
        lines.append(f"  {report['strategy']}")
    lines += [
        f"  params        {json.dumps(report['params'], sort_keys=True)}",
        f"  value         {perf['currentValue']:,.2f} USD (from {perf['initialValue']:,.2f}; "
        f"{pct(perf['percentReturn'])})",
        f"  drawdown      {perf['maxDrawdown']:.2f}% max   sharpe {ratio(perf['sharpeRatio'])}"
        f"   sortino {ratio(perf['sortinoRatio'])}",
        f"  trades        {perf['totalTrades']} (won {perf['winningTrades']}, lost "
        f"{perf['losingTrades']}), fees {perf['feesPaid']:,.2f} USD",
        f"  decisions     {perf['decisions']} ({perf['fallbacks']} fallbacks)"
        f"{', DEGRADED' if perf['degraded'] else ''}; tokens {perf['promptTokens']}/"
        f"{perf['completionTokens']}, cost {perf['costUsd']:.4f} USD",
        "",
        f"recent decisions ({len(report['decisions'])}, newest first):",
    ]
    if not report["decisions"]:
        lines.append("  none yet")
    for decision in report["decisions"]:
        orders = ", ".join(
            f"{o['side']} {o['quantity']:g} {o['asset']} @ {o['price']:,.2f}"
            for o in decision["orders"]
        )
        lines.append(
            f"  {decision['timestamp']}  {decision['action']}{'  ' + orders if orders else ''}"
        )
        if decision["rationale"]:
            lines.append(f"      reasoning: {' '.join(decision['rationale'].split())}")
        lines += [f"      note: {' '.join(note.split())}" for note in _notes(decision)]
    lines += ["", f"recent trades ({len(report['trades'])}, newest first):"]
    if not report["trades"]:
        lines.append("  none yet")
    for trade in report["trades"]:
        lines.append(
            f"  {trade['executedAt']}  {trade['side']:<4} {trade['quantity']:g} "
            f"{trade['assetSymbol']} @ {trade['price']:,.2f}  fee {trade['fee']:,.2f}"
        )
    print("\n".join(lines))
    return 0
