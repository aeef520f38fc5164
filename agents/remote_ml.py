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
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import ValidationError

from agents._clients import SharedClient
from agents.chat import BreakerGate
from agents.config import AgentConfigError, number, reject_unknown
from agents.providers import scrub, secrets_of
from agents.remote_ml_contract import (
    Prediction,
    detail,
    idempotency_key,
    read_orders,
    request_body,
    request_id,
)
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
        headers = _headers(context)
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
        exchange = _Exchange(self, body, headers)

        def fail(reason: str, **extra: Any) -> AgentAnswer:
            return AgentAnswer.fallback(
                scrub(f"remote model: {reason}", secrets),
                model="remote",
                latency_ms=int((time.perf_counter() - started) * 1000),
                details={"url": self.url, "attempts": exchange.attempts},
                **extra,
            )

        try:
            response = await exchange.run()
        except CircuitOpen as exc:
            return fail(str(exc))
        except RetriesExhausted as exc:
            return fail(f"{exc.last} (after {exc.attempts} attempts)")
        except TransientError as exc:
            return fail(f"{exc} (gave up after {exchange.attempts} attempt(s))")
        # Scrubbed at once: a server that echoes the key gets it stored nowhere.
        raw = scrub(response.text[:MAX_RESPONSE_BYTES], secrets)
        refused = _refusal(response.status_code, raw, key_sent=key is not None)
        if refused is not None:
            return fail(refused, raw_output=raw)
        prediction = _prediction(raw, request_id(context))
        if isinstance(prediction, str):
            return fail(f"invalid answer: {prediction}", raw_output=raw)
        orders, answered = read_orders(prediction.orders)
        return AgentAnswer(
            orders=orders,
            reasoning=prediction.reasoning.strip() or "remote model: no reasoning given",
            raw_output=raw,
            model=f"remote:{prediction.modelVersion}" if prediction.modelVersion else "remote",
            model_version=prediction.modelVersion or None,
            latency_ms=int((time.perf_counter() - started) * 1000),
            details={
                "url": self.url,
                "attempts": exchange.attempts,
                "modelVersion": prediction.modelVersion,
                "orders": answered[:50],
                "signals": [s.model_dump(mode="json") for s in prediction.signals[:50]],
            },
        )


def _headers(context: AgentContext) -> dict[str, str]:
    """The request's headers before the key (``Idempotency-Key``: the same on a retry)."""
    return {
        "content-type": "application/json",
        "accept": "application/json",
        "idempotency-key": idempotency_key(context),
    }


def _prediction(raw: str, sent_id: str) -> Prediction | str:
    """The service's answer to request ``sent_id``, or what is wrong with it."""
    try:
        prediction = Prediction.model_validate_json(raw)
    except ValidationError as exc:
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}"
            for e in exc.errors()[:5]
        )
    if prediction.requestId is not None and prediction.requestId != sent_id:
        return f"it answers request {prediction.requestId[:64]!r}, not {sent_id!r}"
    return prediction


def _refusal(status: int, raw: str, *, key_sent: bool) -> str | None:
    """Why a final (not retried) answer with HTTP ``status`` is refused; None for a 200."""
    if status == 401:
        sent = "the key sent" if key_sent else "no key was sent"
        return f"HTTP 401: the service refused the API key ({sent}; X-API-Key): {detail(raw)}"
    if status in (400, 422):
        return f"HTTP {status}: the service refused the request: {detail(raw)}"
    if status != 200:
        return f"HTTP {status}: {detail(raw)}"
    return None


class _Exchange:
    """One decision's request to the service: its attempts (retried with the one policy
    while the decision has time) through the breaker, which records one outcome."""

    def __init__(self, agent: RemoteMLAgent, body: bytes, headers: dict[str, str]) -> None:
        self.agent = agent
        self.body = body
        self.headers = headers
        self.gate = BreakerGate(agent.breaker)
        self.deadline = agent.clock.monotonic() + max(
            0.5, agent.settings.agent_timeout_seconds - TIME_MARGIN
        )
        self.attempts = 0

    async def run(self) -> httpx.Response:
        agent = self.agent
        return await self.gate.run(
            lambda: retry_async(
                self.post,
                agent.policy,
                sleep=agent.clock.sleep,
                retryable=self.retryable,
                what="remote model request",
            ),
            is_failure=lambda e: isinstance(e, RetriesExhausted | TransientError),
        )

    async def post(self) -> httpx.Response:
        agent = self.agent
        self.gate.check()  # other decisions may have opened the breaker during our backoff
        self.attempts += 1
        async with agent.clients.lease() as client:
            try:
                response = await client.post(agent.url, content=self.body, headers=self.headers)
            except httpx.TimeoutException:
                raise TransientError(f"timed out after {agent.timeout:g} s") from None
            except httpx.TransportError as exc:
                raise TransientError(f"connection failed ({exc.__class__.__name__})") from None
        status = response.status_code
        if is_retryable_status(status):
            raise _transient(response)
        return response

    def retryable(self, exc: BaseException) -> bool:
        if not isinstance(exc, TransientError):
            return False
        wait = exc.retry_after if exc.retry_after is not None else self.agent.policy.base
        return self.agent.clock.monotonic() + wait < self.deadline


def _transient(response: httpx.Response) -> TransientError:
    """A retryable HTTP status in words (with the service's detail and Retry-After)."""
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if status == 429:
        wait = "" if retry_after is None else f", retry after {retry_after:g} s"
        message = f"rate limited by the service (HTTP 429{wait})"
    elif status == 503:
        message = "service not ready (HTTP 503)"
    else:
        message = f"HTTP {status}"
    text = detail(response.text[:10_000])
    return TransientError(
        f"{message}: {text}" if text else message, retry_after=retry_after, status=status
    )


async def _close(client: httpx.AsyncClient) -> None:
    await client.aclose()
