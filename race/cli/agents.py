"""``python -m race agents …``: add, list, disable and enable contestants.

    python -m race agents add --name "Llama Scalper" --provider Llama \\
        --model llama-3.3-70b-versatile --instructions "…" --params '{"daily_budget_usd": 0.5}'
    python -m race agents list [--json]
    python -m race agents disable "Llama Scalper"
    python -m race agents enable "Llama Scalper"

``add`` checks the provider and the params by building the agent exactly as the engine
would, so a typo is refused here, not discovered as HOLDs later.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from agents.config import AgentConfigError
from agents.registry import AgentServices, build_agent, configuration_notes
from race.cli._common import open_app
from race.domain.agent import AgentSpec
from race.domain.model import Provider
from race.domain.money import fmt_usd
from race.settings import Settings
from race.universe import NewAgent, add_agent, list_agents, set_agent_active

PROVIDERS = ", ".join(p.value for p in Provider)


def register(commands: Any) -> None:
    agents = commands.add_parser("agents", help="manage the agents in the race")
    sub = agents.add_subparsers(dest="agents_command", metavar="ACTION", required=True)

    add = sub.add_parser("add", help="add an agent (with its portfolio)")
    add.add_argument("--name", required=True, help="unique display name")
    add.add_argument("--provider", required=True, help=f"one of: {PROVIDERS}")
    add.add_argument(
        "--model",
        help="model name (LLM), deployment (AzureOpenAI), artifact name / 'remote' / "
        "'ensemble' (CustomML) or baseline kind (Mock); default: the provider's default",
    )
    add.add_argument("--instructions", default="", help="the agent's own instructions")
    add.add_argument("--strategy", default="", help="one-line strategy shown on the board")
    add.add_argument("--params", default="{}", help="JSON object of agent params")
    add.set_defaults(handler=cmd_add)

    show = sub.add_parser("list", help="list the agents")
    show.add_argument("--json", action="store_true", help="JSON instead of a table")
    show.set_defaults(handler=cmd_list)

    disable = sub.add_parser("disable", help="stop an agent from deciding (keeps its history)")
    disable.add_argument("name")
    disable.set_defaults(handler=cmd_disable)

    enable = sub.add_parser("enable", help="let a disabled agent decide again")
    enable.add_argument("name")
    enable.set_defaults(handler=cmd_enable)


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


def default_model(provider: Provider, settings: Settings) -> str | None:
    if provider is Provider.LLAMA:
        return settings.llama_model
    if provider is Provider.OPENAI:
        return settings.openai_model
    if provider is Provider.AZURE_OPENAI:
        return settings.azure_openai_deployment
    if provider is Provider.CUSTOM_ML:
        from agents.ml import DEFAULT_MODEL_NAME

        return DEFAULT_MODEL_NAME
    return None


def validate(new: NewAgent, settings: Settings) -> list[str]:
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
    if new.provider is Provider.MOCK and not new.model:
        from agents.baselines import BASELINES

        raise ValueError(f"Mock agents need --model, one of: {', '.join(sorted(BASELINES))}")
    try:
        build_agent(spec, AgentServices(settings=settings))
    except AgentConfigError as exc:
        raise ValueError(f"invalid agent: {exc}") from None
    return configuration_notes(spec, settings)


def cmd_add(args: argparse.Namespace) -> int:
    app = open_app()
    provider = parse_provider(args.provider)
    params = parse_params(args.params)
    model = (args.model or "").strip() or default_model(provider, app.settings)
    new = NewAgent(
        name=args.name,
        provider=provider,
        model=model,
        strategy=args.strategy,
        instructions=args.instructions,
        params=params,
    )
    notes = validate(new, app.settings)
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
                        "id": r.id,
                        "name": r.name,
                        "provider": r.provider,
                        "model": r.model,
                        "active": r.is_active,
                        "strategy": r.strategy,
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
    row = set_agent_active(app.db, args.name, False)
    print(f"disabled agent {row.name!r}: it keeps its history and stops deciding")
    return 0


def cmd_enable(args: argparse.Namespace) -> int:
    app = open_app()
    row = set_agent_active(app.db, args.name, True)
    print(f"enabled agent {row.name!r}")
    return 0
