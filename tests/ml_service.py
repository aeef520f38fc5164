"""A loopback stand-in for the original race's FastAPI model service (the ``remote`` ML
agent's counterpart), restating its contract in pydantic (docs/remote-ml-service.md).

Like the original it: validates ``POST /predict`` bodies with these schemas (camelCase
aliases, snake_case accepted, unknown keys ignored, 422 with a ``detail`` list on a missing
or mistyped field — ``agentId`` is a ``str``, an integer is refused; decimals accept JSON
numbers or numeric strings, never null); compares ``X-API-Key`` in constant time (401 when
missing or wrong, 500 when it has no key configured); caches answers per
``Idempotency-Key``; rate limits per client (429 with ``Retry-After``); answers 503 until
initialised; and serialises its decimal fields the way pydantic v2 does (as strings).

    with MLService(api_key="k") as service:
        ... point REMOTE_ML_URL at service.url ...
        service.requests[0].body["agentId"]

It runs under uvicorn in a thread, on 127.0.0.1 and a free port.
"""

from __future__ import annotations

import hmac
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from tests.waiting import wait_until

MODEL_VERSION = "momentum-1.2.0"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------- the contract, restated


class Schema(BaseModel):
    """camelCase on the wire, snake_case accepted, unknown keys ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class PositionIn(Schema):
    symbol: str
    quantity: Decimal
    average_price: Decimal


class PortfolioIn(Schema):
    cash: Decimal
    positions: list[PositionIn]
    total_value: Decimal


class CandleIn(Schema):
    symbol: str
    timestamp: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class PredictRequest(Schema):
    schema_version: str
    request_id: str
    agent_id: str
    portfolio: PortfolioIn
    candles: list[CandleIn]
    instructions: str = ""


class OrderOut(Schema):
    asset_symbol: str
    side: Literal["BUY", "SELL", "HOLD"]
    quantity: Decimal
    limit_price: Decimal | None = None


class SignalOut(Schema):
    feature: str
    value: float
    rule: str
    fired: bool
    contribution: Literal["bullish", "bearish", "neutral"]


class PredictResponse(Schema):
    schema_version: str = "1.0"
    model_version: str = MODEL_VERSION
    request_id: str
    agent_id: str
    created_at: datetime
    orders: list[OrderOut]
    signals: list[SignalOut] = Field(default_factory=list)
    reasoning: str = ""


# ---------------------------------------------------------------- the model


def momentum_model(request: PredictRequest) -> PredictResponse:
    """The original's rule model, in miniature: per symbol, BUY 1 % of cash worth when the
    last close is above the mean of the last five (limit at that close), else HOLD."""
    orders: list[OrderOut] = []
    signals: list[SignalOut] = []
    by_symbol: dict[str, list[CandleIn]] = {}
    for candle in request.candles:
        by_symbol.setdefault(candle.symbol, []).append(candle)
    for symbol, candles in sorted(by_symbol.items()):
        closes = [c.close for c in sorted(candles, key=lambda c: c.timestamp)][-5:]
        mean = sum(closes, Decimal(0)) / len(closes)
        last = closes[-1]
        fired = last > mean
        signals.append(
            SignalOut(
                feature=f"{symbol}.close_vs_mean5",
                value=float(last / mean - 1),
                rule="close > mean(close, 5)",
                fired=fired,
                contribution="bullish" if fired else "neutral",
            )
        )
        quantity = (request.portfolio.cash * Decimal("0.01") / last).quantize(Decimal("1e-6"))
        orders.append(
            OrderOut(
                asset_symbol=symbol,
                side="BUY" if fired else "HOLD",
                quantity=quantity if fired else Decimal(0),
                limit_price=last if fired else None,
            )
        )
    return PredictResponse(
        request_id=request.request_id,
        agent_id=request.agent_id,
        # the newest candle it saw, not the wall clock: the same request, the same answer
        created_at=max((c.timestamp for c in request.candles), default=EPOCH),
        orders=orders,
        signals=signals,
        reasoning="momentum: " + ", ".join(f"{o.asset_symbol} {o.side}" for o in orders),
    )


# ---------------------------------------------------------------- the service


@dataclass
class Received:
    """One request as it reached the service (before validation)."""

    path: str
    headers: dict[str, str]
    body: Any
    status: int = 0
    """What the service answered."""


@dataclass
class MLService:
    api_key: str | None = "ml-service-key"
    """None: the service has no key configured (500, like the original)."""
    rate_limit: int = 0
    """Requests per minute per client (0: unlimited; the original's default is 5)."""
    retry_after: int = 60
    window: float = 60.0
    """The rate limit's window, in seconds of ``now``."""
    now: Callable[[], float] = time.monotonic
    """The limiter's clock (a test's manual clock moves with the agent's back-off sleeps)."""
    ready: bool = True
    """False: not initialised (503)."""
    model: Callable[[PredictRequest], PredictResponse] = momentum_model
    requests: list[Received] = field(default_factory=list)
    cache: dict[str, dict[str, Any]] = field(default_factory=dict)
    _hits: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.app = self._build()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def predictions(self) -> list[Received]:
        return [r for r in self.requests if r.path == "/predict"]

    def _limited(self, client: str) -> bool:
        if not self.rate_limit:
            return False
        now = self.now()
        hits = [t for t in self._hits.get(client, []) if now - t < self.window]
        self._hits[client] = hits
        if len(hits) >= self.rate_limit:
            return True
        hits.append(now)
        return False

    def exhaust(self, client: str = "127.0.0.1") -> None:
        """Use up the client's requests of the current window (as earlier calls would)."""
        self._hits[client] = [self.now()] * self.rate_limit

    def _build(self) -> FastAPI:
        api = FastAPI()
        service = self

        @api.middleware("http")
        async def record(request: Request, call_next: Any) -> Any:
            raw = await request.body()
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw
            seen = Received(
                request.url.path, {k.lower(): v for k, v in request.headers.items()}, body
            )
            service.requests.append(seen)
            response = await call_next(request)
            seen.status = response.status_code
            return response

        @api.exception_handler(RequestValidationError)
        async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
            errors = [
                {"type": e["type"], "loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()
            ]
            return JSONResponse({"detail": errors}, status_code=422)

        @api.get("/health")
        def health() -> dict[str, Any]:
            return {
                "status": "healthy",
                "modelLoaded": service.ready,
                "modelVersion": MODEL_VERSION,
                "schemaVersion": "1.0",
            }

        @api.post("/predict", response_model=PredictResponse, response_model_by_alias=True)
        def predict(
            body: PredictRequest,
            request: Request,
            x_api_key: Annotated[str | None, Header()] = None,
            idempotency_key: Annotated[str | None, Header()] = None,
        ) -> Any:
            if service.api_key is None:
                return JSONResponse({"detail": "API key not configured"}, status_code=500)
            if x_api_key is None or not hmac.compare_digest(
                x_api_key.encode(), service.api_key.encode()
            ):
                return JSONResponse({"detail": "Invalid or missing API key"}, status_code=401)
            client = request.client.host if request.client else "?"
            if service._limited(client):
                return JSONResponse(
                    {"error": f"Rate limit exceeded: {service.rate_limit} per 1 minute"},
                    status_code=429,
                    headers={"Retry-After": str(service.retry_after)},
                )
            if not service.ready:
                return JSONResponse({"detail": "Model not initialised"}, status_code=503)
            if idempotency_key is not None and idempotency_key in service.cache:
                return JSONResponse(service.cache[idempotency_key])
            answer = service.model(body).model_dump(mode="json", by_alias=True)
            if idempotency_key is not None:
                service.cache[idempotency_key] = answer
            return JSONResponse(answer)

        return api

    def __enter__(self) -> MLService:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        server, thread = self._server, self._thread

        def started() -> bool:
            if not thread.is_alive():
                raise RuntimeError("the ML service did not start")
            return server.started

        wait_until(started, "the ML service to start")
        self._socket = sock
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
