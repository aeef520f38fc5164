"""``python -m race decisions show ID [--json]``: one decision's model chat — the prompt
(system and user), the raw answer, the parsed and executed orders, what the risk rules
changed and why, cited rules, confidence, regime, market conditions, tokens, cost, latency,
model and model version — the record ``GET /api/agents/{id}/decisions/{decisionId}``
serves, secrets scrubbed by the same policy."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from race.cli._common import open_app
from race.store.reads import agents as agent_reads
from race.store.reads import analysis as reads

if TYPE_CHECKING:  # the API (FastAPI and every router) is imported only when a record is shown
    from race.api import analysis_models as a


def register(commands: Any) -> None:
    decisions = commands.add_parser("decisions", help="inspect stored decisions")
    sub = decisions.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="one decision's whole record (the model chat)")
    show.add_argument("decision", metavar="ID", type=_decision_id)
    show.add_argument("--json", action="store_true", help="JSON (the API's field names)")
    show.set_defaults(handler=cmd_show)


def add_chat_option(show: argparse.ArgumentParser, handler: Callable[..., int]) -> None:
    """``agents show NAME|ID --decision ID``: that decision's model chat (as ``decisions show
    ID``) instead of the summary; refused when the decision is another agent's."""
    show.add_argument(
        "--decision",
        type=_decision_id,
        metavar="ID",
        help="print that decision's model chat instead (as `decisions show ID`)",
    )

    def run(args: argparse.Namespace) -> int:
        if args.decision is None:
            return handler(args)
        from race.cli.agents import agent_report

        detail = load(args.decision)
        owner = str(agent_report(open_app(), args.agent, 1)["id"])
        if detail.agentId != owner:
            raise LookupError(f"decision {args.decision} is not agent {args.agent}'s")
        print(detail.model_dump_json(indent=2) if args.json else render(detail))
        return 0

    show.set_defaults(handler=run)


def _decision_id(text: str) -> int:
    value = text.strip()
    if not value.isdigit() or len(value) > 18 or int(value) <= 0:
        raise argparse.ArgumentTypeError(f"decision id must be a positive integer, got {text!r}")
    return int(value)


def load(decision_id: int) -> a.DecisionDetail:
    """The decision's record as the API serves it; ``LookupError`` when there is none."""
    from race.api.analysis_views import decision_detail

    app = open_app()
    with app.db.read() as session:
        found = reads.decision_detail(session, decision_id)
        if found is None:
            raise LookupError(f"no decision {decision_id}")
        orders = agent_reads.executed_orders(session, [decision_id])
    return decision_detail(found, orders, app.settings.secret_policy())


def _block(title: str, text: str | None) -> list[str]:
    body = text if text else "(not stored)"
    return [f"── {title} ──", body.rstrip(), ""]


def _pretty(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def render(d: a.DecisionDetail) -> str:
    """The record as text: a header of facts, then each long part in its own block."""
    quantity = "" if d.quantity is None else f" {d.quantity:g}"
    asset = "" if d.asset is None else f" {d.asset}"
    lines = [
        f"Decision {d.id} of agent {d.agentId} at {d.timestamp}: {d.action}{asset}{quantity}",
        f"model {d.model or '—'} (version {d.modelVersion or '—'}), regime {d.regime}, "
        f"confidence {'—' if d.confidence is None else f'{d.confidence:g}'}",
        f"tokens {d.promptTokens if d.promptTokens is not None else '—'} prompt + "
        f"{d.completionTokens if d.completionTokens is not None else '—'} completion, "
        f"cost {'—' if d.costUsd is None else f'{d.costUsd:.6f} USD'}, "
        f"latency {'—' if d.latencyMs is None else f'{d.latencyMs} ms'}",
        f"portfolio {d.portfolioValueBefore:,.2f} → {d.portfolioValueAfter:,.2f} USD; "
        f"validated {'yes' if d.wasValidated else 'no'}"
        + (f"; FALLBACK: {d.fallbackReason or 'unspecified'}" if d.fallback else ""),
        f"cited rules: {', '.join(d.citedRules) or '—'}",
        "",
    ]
    lines += _block("system prompt", d.systemPrompt)
    lines += _block("user prompt", d.userPrompt)
    lines += _block("raw answer", d.rawAnswer)
    lines += _block("rationale", d.rationale)
    lines += _block("proposed orders", _pretty(d.proposedOrders) if d.proposedOrders else "none")
    executed = [f"{o.side} {o.quantity:g} {o.asset} @ {o.price:,.2f}" for o in d.executedOrders]
    lines += _block("executed orders", "\n".join(executed) or "none")
    changes = [
        f"order {c.order if c.order is not None else '—'} {c.asset or ''} {c.outcome} "
        f"({c.code}): {c.message}"
        + ("" if c.requested is None else f" [requested {c.requested} → {c.final or '0'}]")
        for c in d.riskChanges
    ]
    lines += _block("risk changes", "\n".join(changes) or "none")
    lines += _block("market conditions", _pretty(d.marketConditions))
    lines += _block("details", _pretty(d.details))
    return "\n".join(lines).rstrip()


def cmd_show(args: argparse.Namespace) -> int:
    detail = load(args.decision)
    print(detail.model_dump_json(indent=2) if args.json else render(detail))
    return 0
