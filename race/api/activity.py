"""Trades and decisions as the API answers them, built from the read repositories'
records (pure functions)."""

from __future__ import annotations

import json
from typing import Any

from race.api import models as m
from race.api.views import as_float, rounded
from race.domain.timeutil import iso
from race.store.reads.agents import DecisionRecord, OrderRecord, TradeRecord

MAX_NOTE_CHARS = 240


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def trade(t: TradeRecord) -> m.Trade:
    return m.Trade(
        id=str(t.id),
        assetSymbol=t.symbol,
        executedAt=iso(t.executed_at) or "",
        quantity=float(t.quantity),
        price=float(t.price),
        side="Buy" if t.side == "BUY" else "Sell",
        totalValue=float(t.notional),
        rationale=t.rationale,
        detectedRegime=t.regime,
        fee=float(t.fee),
        slippage=float(t.slippage_cost),
        realizedPnL=as_float(t.realized_pnl),
        decisionId=str(t.decision_id),
    )


def trade_page(rows: list[TradeRecord], total: int, limit: int, offset: int) -> m.TradePage:
    return m.TradePage(
        trades=[trade(t) for t in rows], totalCount=total, limit=limit, offset=offset
    )


def _note_text(note: dict[str, Any]) -> str:
    """One short human-readable line, e.g. ``BTC clipped to the maximum order notional…``."""
    asset, order = note.get("asset"), note.get("order")
    subject = str(asset) if asset else "" if order is None else f"order {order}"
    message = str(note.get("message") or note.get("code") or "note").strip()
    outcome = str(note.get("outcome") or "").strip()
    if not outcome or message.lower().startswith(outcome.lower()):
        text = f"{subject} {message}"
    else:
        text = f"{subject} {outcome}: {message}"
    return text.strip()[:MAX_NOTE_CHARS]


def _note(item: dict[str, Any]) -> m.ValidationNote:
    order = item.get("order")
    return m.ValidationNote(
        order=order if isinstance(order, int) and not isinstance(order, bool) else None,
        asset=None if item.get("asset") is None else str(item["asset"]),
        code=str(item.get("code") or "note"),
        outcome=str(item.get("outcome") or ""),
        message=str(item.get("message") or ""),
        requested=None if item.get("requested") is None else str(item["requested"]),
        final=None if item.get("final") is None else str(item["final"]),
    )


def validation_fields(stored: Any) -> tuple[str | None, list[m.ValidationNote]]:
    """``validationErrors`` (a JSON array of strings, or None) and the structured notes, from
    the stored notes (objects; a plain string is taken as its own message)."""
    if not stored:
        return None, []
    texts: list[str] = []
    notes: list[m.ValidationNote] = []
    for item in stored if isinstance(stored, list) else [stored]:
        if isinstance(item, dict):
            texts.append(_note_text(item))
            notes.append(_note(item))
        else:
            text = str(item)[:MAX_NOTE_CHARS]
            texts.append(text)
            notes.append(
                m.ValidationNote(
                    order=None,
                    asset=None,
                    code="note",
                    outcome="",
                    message=text,
                    requested=None,
                    final=None,
                )
            )
    return _json(texts), notes


def orders_by_decision(rows: list[OrderRecord]) -> dict[int, list[m.ExecutedOrder]]:
    orders: dict[int, list[m.ExecutedOrder]] = {}
    for row in rows:
        orders.setdefault(row.decision_id, []).append(
            m.ExecutedOrder(
                asset=row.symbol,
                side="BUY" if row.side == "BUY" else "SELL",
                quantity=float(row.quantity),
                price=float(row.price),
            )
        )
    return orders


def decision_log(d: DecisionRecord, orders: list[m.ExecutedOrder]) -> m.DecisionLog:
    errors, notes = validation_fields(d.validation_errors)
    return m.DecisionLog(
        id=str(d.id),
        agentId=str(d.agent_id),
        timestamp=iso(d.cycle_time) or "",
        action=d.action,  # type: ignore[arg-type]
        asset=d.asset_symbol,
        quantity=as_float(d.quantity),
        rationale=d.rationale or "",
        citedRuleIds=_json(list(d.cited_rules or [])),
        detectedRegime=d.regime or "UNKNOWN",
        portfolioValueBefore=float(d.value_before),
        portfolioValueAfter=float(d.value_after),
        marketConditions=_json(d.market_conditions or {}),
        wasValidated=d.was_validated,
        validationErrors=errors,
        createdAt=iso(d.cycle_time) or "",
        fallback=d.fallback,
        fallbackReason=d.fallback_reason,
        latencyMs=d.latency_ms,
        promptTokens=d.prompt_tokens,
        completionTokens=d.completion_tokens,
        costUsd=as_float(d.cost_usd),
        model=d.model,
        confidence=rounded(d.confidence),
        validationNotes=notes,
        orders=orders,
    )


def decision_logs(rows: list[DecisionRecord], orders: list[OrderRecord]) -> list[m.DecisionLog]:
    by_decision = orders_by_decision(orders)
    return [decision_log(d, by_decision.get(d.id, [])) for d in rows]
