"""A model hosted by its owner behind HTTP (provider ``CustomML``, model ``remote``).

It speaks the contract of the original race's FastAPI model service
(docs/remote-ml-service.md). ``POST {base}/predict`` with::

    {"schemaVersion": "1.0", "requestId": "…", "agentId": "7", "cycleTime": "…Z",
     "portfolio": {"cash": 1000.0, "totalValue": 1200.0,
                   "positions": [{"symbol": "BTC", "quantity": 0.01, "averagePrice": 20000.0}]},
     "candles": [{"symbol": "BTC", "timestamp": "…Z", "open": …, "high": …, "low": …,
                  "close": …, "volume": …, "volumeKnown": true}],
     "instructions": "…"}

``agentId`` is a string (the service's type is ``str``). Every price and the volume are
numbers: a candle without a known volume is sent with ``volume`` 0 and ``volumeKnown``
false, as the original race did (``cycleTime`` and ``volumeKnown`` are our own extra keys;
the service ignores unknown keys). Headers ``X-API-Key`` and ``Idempotency-Key`` (agent id
and cycle time: a retried request is recognisably the same decision). The answer::

    {"schemaVersion": "1.0", "modelVersion": "…", "requestId": "…", "agentId": "7",
     "createdAt": "…",
     "orders": [{"assetSymbol": "BTC", "side": "BUY", "quantity": "0.01",
                 "limitPrice": "40000"}],
     "signals": [{"feature": "…", "value": 0.3, "rule": "…", "fired": true,
                  "contribution": "bullish"}],
     "reasoning": "…"}

Decimals come as numbers or numeric strings. A ``HOLD`` order is no order. ``limitPrice``
is advisory (the race trades at market): the answered orders, limit prices included, and
the signals are kept in the decision's ``details`` (and the raw answer). BUY/SELL orders go
to the engine's parser and risk rules like any other agent's.

Failures → HOLD with the reason: 401 (key missing or wrong), 400/422 (request refused, with
the service's detail), 429 (rate limited: retried after ``Retry-After`` when that fits in
the decision's time, else HOLD naming the wait), 503 (not initialised) and other 5xx,
408 and network errors are retried with the one policy (the idempotency key makes that
safe); timeouts, invalid JSON or a wrong shape.

The key: ``REMOTE_ML_API_KEY`` goes only to the origin (scheme, host, port) of
``REMOTE_ML_URL``; an agent whose ``url`` points elsewhere sends the key held by the setting
its ``api_key_setting`` param names, or no key at all. The param holds the NAME of an
environment setting (e.g. ``"MY_MODEL_KEY"``), never the key itself, so the key stays out of
the agents table. The circuit breaker counts failed decisions (after the retries), like the
LLM providers' (:class:`~agents.chat.BreakerGate`).

Params: ``url`` (base URL; default ``REMOTE_ML_URL``), ``api_key_setting``,
``timeout_seconds``.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from agents._clients import SharedClient
from agents.chat import BreakerGate
from agents.config import AgentConfigError, number, reject_unknown
from agents.providers import scrub, secrets_of
from race.clock import Clock
from race.domain.agent import AgentAnswer, AgentContext, AgentSpec
from race.resilience import (
    CircuitBreaker,
    CircuitOpen,
    RetriesExhausted,
    RetryPolicy,
    TransientError,
    is_retryable_status,
    parse_retry_after,
    retry_async,
)
from race.settings import Settings

SCHEMA_VERSION = "1.0"
PARAMS = ("url", "api_key_setting", "timeout_seconds")
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_RESERVED_SETTING = re.compile(
    r"(RACE|LLAMA|LLM|COINGECKO|OPENAI|AZURE|TOGETHER|REMOTE_ML|APPLICATIONINSIGHTS|WEBSITE|"
    r"FUNCTIONS|IDENTITY|MSI)_|AzureWebJobs",
    re.IGNORECASE,
)
"""The race's own settings and the host's: their secrets never go to a per-agent URL."""
MAX_RESPONSE_BYTES = 1_000_000
TIME_MARGIN = 2.0


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


class _Prediction(BaseModel):
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


def _detail(text: str) -> str:
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


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port made explicit."""
    parsed = httpx.URL(url)
    port = parsed.port or {"http": 80, "https": 443}.get(parsed.scheme)
    return parsed.scheme.lower(), parsed.host.lower(), port


def key_setting_param(params: Mapping[str, Any]) -> str | None:
    """The ``api_key_setting`` param: the name of the setting that holds this agent's key."""
    name = params.get("api_key_setting")
    if name is None:
        return None
    if not isinstance(name, str) or not _SETTING_NAME.fullmatch(name):
        raise AgentConfigError(
            "param 'api_key_setting' must be the NAME of an environment setting holding the "
            'key (letters, digits and _, e.g. "MY_MODEL_API_KEY"), never the key itself'
        )
    if _RESERVED_SETTING.match(name):
        raise AgentConfigError(
            f"param 'api_key_setting' names {name}, a setting of the race or its host: name "
            'a setting of your own for this model\'s key (e.g. "MY_MODEL_API_KEY")'
        )
    return name


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


class RemoteMLAgent:
    in_process = False

    def __init__(
        self,
        spec: AgentSpec,
        settings: Settings,
        clock: Clock,
        shared: dict[str, Any],
        environ: Mapping[str, str] | None = None,
    ) -> None:
        params = dict(spec.params)
        reject_unknown(params, PARAMS, what="remote ML agents")
        base = params.get("url", settings.remote_ml_url)
        if not isinstance(base, str) or not base.startswith(("http://", "https://")):
            raise AgentConfigError(
                "remote ML agents need a base URL: param 'url' (http:// or https://) or the "
                "REMOTE_ML_URL setting"
            )
        self.spec = spec
        self.settings = settings
        self.clock = clock
        self.environ = os.environ if environ is None else environ
        self.url = base.rstrip("/") + "/predict"
        self.timeout = number(
            params, "timeout_seconds", settings.remote_ml_timeout_seconds, 0.05, 600.0
        )
        self.key_setting = key_setting_param(params)
        global_url = settings.remote_ml_url
        self.global_key_applies = bool(
            global_url
            and global_url.startswith(("http://", "https://"))
            and origin(global_url) == origin(self.url)
        )
        self.policy = RetryPolicy(attempts=1 + max(0, settings.llm_max_retries))
        self._secrets = secrets_of(settings)
        slot = f"remote_ml.{self.url}"
        if slot not in shared:
            shared[slot] = (
                CircuitBreaker(
                    failure_threshold=settings.llm_breaker_failures,
                    reset_timeout=settings.llm_breaker_reset_seconds,
                    clock=clock,
                    name=f"remote model at {httpx.URL(self.url).host}",
                ),
                SharedClient(self._new_client, _close),
            )
        self.breaker, self.clients = shared[slot]

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)

    def api_key(self) -> str | None:
        """The key to send, or None; raises :class:`AgentConfigError` when the setting named
        by ``api_key_setting`` is not set."""
        if self.key_setting is not None:
            value = (self.environ.get(self.key_setting) or "").strip()
            if not value:
                raise AgentConfigError(
                    f"{self.key_setting} is not set (named by param 'api_key_setting')"
                )
            return value
        key = self.settings.remote_ml_api_key
        if self.global_key_applies and key is not None and key.get_secret_value():
            return key.get_secret_value()
        return None  # REMOTE_ML_API_KEY is for REMOTE_ML_URL's origin only

    async def decide(self, context: AgentContext) -> AgentAnswer:
        started = time.perf_counter()
        body = json.dumps(request_body(context), separators=(",", ":")).encode()
        headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "idempotency-key": idempotency_key(context),
        }
        secrets = self._secrets
        try:
            key = self.api_key()
        except AgentConfigError as exc:
            return AgentAnswer.fallback(
                f"remote model: {exc}", model="remote", details={"url": self.url}
            )
        if key is not None:
            headers["x-api-key"] = key
            secrets = secrets.with_secrets({self.key_setting or "agent api_key_setting": key})
        gate = BreakerGate(self.breaker)
        deadline = self.clock.monotonic() + max(
            0.5, self.settings.agent_timeout_seconds - TIME_MARGIN
        )
        attempts = 0

        async def post() -> httpx.Response:
            nonlocal attempts
            gate.check()  # other decisions may have opened the breaker during our backoff
            attempts += 1
            async with self.clients.lease() as client:
                try:
                    response = await client.post(self.url, content=body, headers=headers)
                except httpx.TimeoutException:
                    raise TransientError(f"timed out after {self.timeout:g} s") from None
                except httpx.TransportError as exc:
                    raise TransientError(f"connection failed ({exc.__class__.__name__})") from None
            status = response.status_code
            if is_retryable_status(status):
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                if status == 429:
                    wait = "" if retry_after is None else f", retry after {retry_after:g} s"
                    message = f"rate limited by the service (HTTP 429{wait})"
                elif status == 503:
                    message = "service not ready (HTTP 503)"
                else:
                    message = f"HTTP {status}"
                detail = _detail(response.text[:10_000])
                raise TransientError(
                    f"{message}: {detail}" if detail else message,
                    retry_after=retry_after,
                    status=status,
                )
            return response

        def retryable(exc: BaseException) -> bool:
            if not isinstance(exc, TransientError):
                return False
            wait = exc.retry_after if exc.retry_after is not None else self.policy.base
            return self.clock.monotonic() + wait < deadline

        def fail(reason: str, **extra: Any) -> AgentAnswer:
            return AgentAnswer.fallback(
                scrub(f"remote model: {reason}", secrets),
                model="remote",
                latency_ms=int((time.perf_counter() - started) * 1000),
                details={"url": self.url, "attempts": attempts},
                **extra,
            )

        try:
            response = await gate.run(
                lambda: retry_async(
                    post,
                    self.policy,
                    sleep=self.clock.sleep,
                    retryable=retryable,
                    what="remote model request",
                ),
                is_failure=lambda e: isinstance(e, RetriesExhausted | TransientError),
            )
        except CircuitOpen as exc:
            return fail(str(exc))
        except RetriesExhausted as exc:
            return fail(f"{exc.last} (after {exc.attempts} attempts)")
        except TransientError as exc:
            return fail(f"{exc} (gave up after {attempts} attempt(s))")
        # Scrubbed at once: a server that echoes the key gets it stored nowhere.
        raw = scrub(response.text[:MAX_RESPONSE_BYTES], secrets)
        status = response.status_code
        if status == 401:
            sent = "the key sent" if key is not None else "no key was sent"
            return fail(
                f"HTTP 401: the service refused the API key ({sent}; X-API-Key): {_detail(raw)}",
                raw_output=raw,
            )
        if status in (400, 422):
            return fail(
                f"HTTP {status}: the service refused the request: {_detail(raw)}", raw_output=raw
            )
        if status != 200:
            return fail(f"HTTP {status}: {_detail(raw)}", raw_output=raw)
        try:
            prediction = _Prediction.model_validate_json(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}"
                for e in exc.errors()[:5]
            )
            return fail(f"invalid answer: {problems}", raw_output=raw)
        sent_id = request_id(context)
        if prediction.requestId is not None and prediction.requestId != sent_id:
            return fail(
                f"invalid answer: it answers request {prediction.requestId[:64]!r}, not "
                f"{sent_id!r}",
                raw_output=raw,
            )
        orders, answered = read_orders(prediction.orders)
        return AgentAnswer(
            orders=orders,
            reasoning=prediction.reasoning.strip() or "remote model: no reasoning given",
            raw_output=raw,
            model=f"remote:{prediction.modelVersion}" if prediction.modelVersion else "remote",
            latency_ms=int((time.perf_counter() - started) * 1000),
            details={
                "url": self.url,
                "attempts": attempts,
                "modelVersion": prediction.modelVersion,
                "orders": answered[:50],
                "signals": [s.model_dump(mode="json") for s in prediction.signals[:50]],
            },
        )


async def _close(client: httpx.AsyncClient) -> None:
    await client.aclose()
