"""The wire format of a remote model service (docs/remote-ml-service.md): the request body
the race sends, the answer it reads, and the service's error detail in words. See
:mod:`agents.remote_ml` for the agent that speaks it."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from race.domain.agent import AgentContext

SCHEMA_VERSION = "1.0"


class _Order(BaseModel):
    """One answered order, as the contract types it (decimals: numbers or numeric strings)."""

    model_config = ConfigDict(extra="ignore")

    assetSymbol: str  # the wire names
    side: Literal["BUY", "SELL", "HOLD"]
    quantity: Decimal
    limitPrice: Decimal | None = None


class _Signal(BaseModel):
    model_config = ConfigDict(extra="allow")

    feature: str
    value: float
    rule: str
    fired: bool
    contribution: Literal["bullish", "bearish", "neutral"]


class Prediction(BaseModel):
    model_config = ConfigDict(extra="allow")

    orders: list[Any]
    signals: list[_Signal] = []
    reasoning: str = ""
    schemaVersion: str | None = None
    modelVersion: str | None = None
    requestId: str | None = None
    agentId: str | None = None
    createdAt: datetime | None = None


def _plain(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def read_orders(raw_orders: list[Any]) -> tuple[list[Any], list[dict[str, Any]]]:
    """(the orders for the engine, the answered orders as recorded). A ``HOLD`` is no order;
    an order that does not match the contract goes to the engine's parser as it came, which
    drops it with its reason."""
    orders: list[Any] = []
    recorded: list[dict[str, Any]] = []
    for item in raw_orders:
        fields = item if isinstance(item, dict) else {}
        try:
            if isinstance(fields.get("quantity"), bool):
                raise ValueError("a boolean is not a quantity")
            order = _Order.model_validate(item)
        except (ValidationError, ValueError):
            side = fields.get("side")
            if isinstance(side, str) and side.strip().upper() == "HOLD":
                # No order for that asset, whatever else it carries (not a dropped order).
                symbol = fields.get("assetSymbol")
                recorded.append(
                    {
                        "assetSymbol": symbol if isinstance(symbol, str) else None,
                        "side": "HOLD",
                        "quantity": None,
                        "limitPrice": None,
                    }
                )
                continue
            orders.append(item)
            recorded.append({"invalid": item})
            continue
        recorded.append(
            {
                "assetSymbol": order.assetSymbol,
                "side": order.side,
                "quantity": _plain(order.quantity),
                "limitPrice": _plain(order.limitPrice),
            }
        )
        if order.side != "HOLD":
            orders.append(
                {"asset": order.assetSymbol, "side": order.side, "quantity": order.quantity}
            )
    return orders, recorded


def detail(text: str) -> str:
    """The service's error ``detail`` in words (FastAPI's 422 list: ``loc: msg``)."""
    try:
        data = json.loads(text)
    except ValueError:
        return text[:200]
    detail = data.get("detail", data.get("error", data)) if isinstance(data, dict) else data
    if isinstance(detail, list):
        parts = []
        for item in detail[:5]:
            if isinstance(item, dict):
                loc = [str(p) for p in item.get("loc", []) if p != "body"]
                parts.append(f"{'.'.join(loc) or 'body'}: {item.get('msg', '?')}")
            else:
                parts.append(str(item))
        return "; ".join(parts)[:300]
    return str(detail)[:200]


def _iso(value: Any) -> str:
    return value.isoformat().replace("+00:00", "Z")


def idempotency_key(context: AgentContext) -> str:
    """Agent id and cycle time: the same decision always carries the same key."""
    return f"{context.agent.id}:{_iso(context.cycle_time)}"


def request_id(context: AgentContext) -> str:
    """A unique id per decision, the same on every retry of it."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ai-trading-race:{idempotency_key(context)}"))


def request_body(context: AgentContext) -> dict[str, Any]:
    portfolio = context.portfolio
    return {
        "schemaVersion": SCHEMA_VERSION,
        "requestId": request_id(context),
        "agentId": str(context.agent.id),
        "cycleTime": _iso(context.cycle_time),
        "portfolio": {
            "cash": float(portfolio.cash),
            "totalValue": float(context.equity),
            "positions": [
                {
                    "symbol": p.symbol,
                    "quantity": float(p.quantity),
                    "averagePrice": float(p.average_price),
                }
                for p in sorted(portfolio.positions.values(), key=lambda p: p.symbol)
                if p.quantity > 0
            ],
        },
        "candles": [
            {
                "symbol": symbol,
                "timestamp": _iso(c.close_time),
                "open": float(c.open),
                "high": float(c.high),
                "low": float(c.low),
                "close": float(c.close),
                "volume": 0.0 if c.volume is None else float(c.volume),
                "volumeKnown": c.volume is not None,
            }
            for symbol in context.allowed_assets
            for c in context.market.candles.get(symbol, ())
        ],
        "instructions": context.agent.instructions,
    }
