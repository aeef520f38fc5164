"""OpenAI-compatible chat providers: where they are, and one resilient call to them.

Four endpoints, each configured by settings (README): ``llama`` (``LLAMA_*``, Groq by
default), ``together`` (``TOGETHER_*``), ``openai`` (``OPENAI_*``) and ``azure``
(``AZURE_OPENAI_*``). Every agent that talks to the same endpoint shares one
:class:`ProviderRuntime` (kept in ``AgentServices.shared``): one rate limiter (requests per
minute and calls in flight), one circuit breaker, and one client per event loop.

:func:`chat_json` makes one JSON-mode chat completion with the project's single retry
policy (:mod:`race.resilience`); the SDK's own retries are off (``max_retries=0``). The
circuit breaker counts failed calls (a call = one decision's attempts against one provider),
and is consulted again before every attempt (:class:`BreakerGate`).
"""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import SecretStr

from agents._clients import SharedClient
from agents.config import AgentConfigError
from race.clock import Clock
from race.domain.model import Provider
from race.resilience import (
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
    RateLimiter,
    RetriesExhausted,
    RetryPolicy,
    TransientError,
    is_retryable_status,
    parse_retry_after,
    retry_async,
)
from race.secrets import SecretPolicy, policy_of
from race.settings import Settings

if TYPE_CHECKING:  # the SDK takes seconds to import: only when a provider is called
    import openai

T = TypeVar("T")

_ALIASES = {
    "llama": "llama",
    "groq": "llama",
    "together": "together",
    "openai": "openai",
    "azure": "azure",
    "azureopenai": "azure",
    "azure_openai": "azure",
}
PROVIDER_ENDPOINT = {
    Provider.LLAMA: "llama",
    Provider.OPENAI: "openai",
    Provider.AZURE_OPENAI: "azure",
}


def endpoint_key(name: str) -> str:
    """``"Llama"``, ``"groq"``, ``"Together"``, ``"OpenAI"``, ``"AzureOpenAI"``… → endpoint key."""
    key = _ALIASES.get(name.strip().lower().replace("-", "_"))
    if key is None:
        raise AgentConfigError(
            f"unknown LLM provider {name!r}: choose one of Llama (Groq), Together, OpenAI, "
            "AzureOpenAI"
        )
    return key


@dataclass(frozen=True)
class Endpoint:
    key: str
    label: str
    base_url: str | None
    api_key: SecretStr | None
    default_model: str | None
    calls_per_minute: float
    max_concurrency: int
    key_setting: str
    url_setting: str
    azure_api_version: str | None = None

    @property
    def missing(self) -> str | None:
        """Why this endpoint cannot be called, or None when it is configured."""
        if self.api_key is None or not self.api_key.get_secret_value():
            return f"{self.label} not configured ({self.key_setting} is not set)"
        if not self.base_url:
            return f"{self.label} not configured ({self.url_setting} is not set)"
        return None

    @property
    def host(self) -> str:
        return urlsplit(self.base_url or "").netloc or "?"


def endpoint(settings: Settings, key: str) -> Endpoint:
    s = settings
    if key == "llama":
        return Endpoint(
            "llama",
            "Llama",
            s.llama_base_url,
            s.llama_api_key,
            s.llama_model,
            s.llama_calls_per_minute,
            s.llama_max_concurrency,
            "LLAMA_API_KEY",
            "LLAMA_BASE_URL",
        )
    if key == "together":
        return Endpoint(
            "together",
            "Together",
            s.together_base_url,
            s.together_api_key,
            s.together_model,
            s.together_calls_per_minute,
            s.together_max_concurrency,
            "TOGETHER_API_KEY",
            "TOGETHER_BASE_URL",
        )
    if key == "openai":
        return Endpoint(
            "openai",
            "OpenAI",
            s.openai_base_url,
            s.openai_api_key,
            s.openai_model,
            s.openai_calls_per_minute,
            s.openai_max_concurrency,
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
        )
    if key == "azure":
        return Endpoint(
            "azure",
            "Azure OpenAI",
            s.azure_openai_endpoint,
            s.azure_openai_api_key,
            s.azure_openai_deployment,
            s.azure_openai_calls_per_minute,
            s.azure_openai_max_concurrency,
            "AZURE_OPENAI_API_KEY",
            "AZURE_OPENAI_ENDPOINT",
            azure_api_version=s.azure_openai_api_version,
        )
    raise AgentConfigError(f"unknown LLM endpoint {key!r}")


def secrets_of(settings: Settings) -> SecretPolicy:
    """The settings' secret policy (:mod:`race.secrets`): reasons and logs are scrubbed."""
    return settings.secret_policy()


def scrub(text: str, secrets: Iterable[str] | SecretPolicy) -> str:
    return policy_of(secrets).redact(text)


# ---------------------------------------------------------------- shared runtime


class ProviderRuntime:
    """What every agent of one endpoint shares: limiter, breaker and a client per loop."""

    def __init__(self, endpoint: Endpoint, settings: Settings, clock: Clock) -> None:
        self.endpoint = endpoint
        self.timeout = settings.llm_timeout_seconds
        self.limiter = RateLimiter(
            endpoint.calls_per_minute,
            max_concurrent=max(1, endpoint.max_concurrency),
            clock=clock,
        )
        self.breaker = CircuitBreaker(
            failure_threshold=settings.llm_breaker_failures,
            reset_timeout=settings.llm_breaker_reset_seconds,
            clock=clock,
            name=f"{endpoint.label} provider",
        )
        self._tls: ssl.SSLContext | None = None
        self.clients: SharedClient[openai.AsyncOpenAI] = SharedClient(
            self._new_client, _close_client
        )

    def _new_client(self) -> openai.AsyncOpenAI:
        import httpx2
        import openai

        e = self.endpoint
        key = e.api_key.get_secret_value() if e.api_key else ""
        if self._tls is None:  # loading the CA bundle costs ~50 ms: once per provider
            self._tls = httpx2.create_ssl_context()
        http_client = openai.DefaultAsyncHttpxClient(verify=self._tls, timeout=self.timeout)
        if e.key == "azure":
            return openai.AsyncAzureOpenAI(
                azure_endpoint=e.base_url,
                api_key=key,
                api_version=e.azure_api_version,
                timeout=self.timeout,
                max_retries=0,
                http_client=http_client,
            )
        return openai.AsyncOpenAI(
            base_url=e.base_url,
            api_key=key,
            timeout=self.timeout,
            max_retries=0,
            http_client=http_client,
        )


async def _close_client(client: openai.AsyncOpenAI) -> None:
    await client.close()


def provider_runtime(
    shared: dict[str, Any], settings: Settings, clock: Clock, key: str
) -> ProviderRuntime:
    """The endpoint's runtime from ``AgentServices.shared``, made on first use."""
    slot = f"llm.provider.{key}"
    runtime = shared.get(slot)
    if runtime is None:
        runtime = ProviderRuntime(endpoint(settings, key), settings, clock)
        shared[slot] = runtime
    return runtime


# ---------------------------------------------------------------- one call


class InvalidGeneration(Exception):
    """The provider refused its own output as invalid JSON (Groq's HTTP 400
    ``json_validate_failed``): a HOLD, neither a retry nor a provider failure."""

    def __init__(self, message: str, raw: str | None) -> None:
        super().__init__(message)
        self.raw = raw


class ProviderFailure(Exception):
    """A provider-side failure that retrying will not fix (auth, bad request, retries
    exhausted, circuit open…): the next provider of the fallback chain may be tried."""

    def __init__(self, message: str, *, unavailable: bool = False) -> None:
        super().__init__(message)
        self.unavailable = unavailable


class _StatusError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Completion:
    content: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    model: str | None
    response_id: str | None
    choices: int
    raw: str
    attempts: int = 1
    latency_ms: int = 0
    retries: list[str] = field(default_factory=list)


def _error_text(exc: openai.APIStatusError) -> tuple[str, str | None, str | None]:
    """(message, code, failed_generation) from an OpenAI-style error body."""
    body: Any = exc.body
    error = body.get("error", body) if isinstance(body, dict) else None
    message = code = failed = None
    if isinstance(error, dict):
        message = error.get("message")
        code = error.get("code")
        failed = error.get("failed_generation")
    text = str(message or exc.message or "")
    return (
        " ".join(text.split())[:300],
        None if code is None else str(code),
        failed if isinstance(failed, str) else None,
    )


def _retry_after(exc: openai.APIStatusError) -> float | None:
    headers = exc.response.headers
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000.0, 0.0)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))


def translate(exc: openai.OpenAIError, timeout: float) -> Exception:
    """The SDK's error as ours: Transient (retry), InvalidGeneration (HOLD) or a failure."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return TransientError(f"timed out after {timeout:g} s")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        detail = f" ({cause.__class__.__name__})" if cause is not None else ""
        return TransientError(f"connection failed{detail}")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message, code, failed = _error_text(exc)
        if status == 400 and code == "json_validate_failed":
            return InvalidGeneration(
                f"the model's output failed the provider's JSON validation "
                f"(HTTP 400 json_validate_failed): {message}",
                failed,
            )
        if is_retryable_status(status):
            return TransientError(
                f"HTTP {status}: {message}", retry_after=_retry_after(exc), status=status
            )
        return _StatusError(f"HTTP {status}: {message}", status)
    return _StatusError(f"{exc.__class__.__name__}: {str(exc)[:200]}", 0)


def _counts_against_provider(exc: BaseException) -> bool:
    """Breaker failures: outages and refusals of the provider, not bad answers. Judged once
    per decision, on what is left when our retries are over (:class:`RetriesExhausted`
    wraps the last transient error)."""
    if isinstance(exc, RetriesExhausted | TransientError):
        return True
    return isinstance(exc, _StatusError) and exc.status in (401, 403, 404)


def _open_message(breaker: CircuitBreaker) -> str:
    return (
        f"{breaker.name} unavailable (circuit open after "
        f"{breaker.consecutive_failures} consecutive failures)"
    )


class BreakerGate:
    """One decision's passage through a provider's circuit breaker.

    The breaker counts decisions, not attempts: a decision that still fails once our retries
    are exhausted is one failure (so "opens after 5 consecutive failures" means 5 failed
    decisions), and a decision that succeeds on a retry is a success. Calls wait in the rate
    limiter and in backoff, and other decisions may open the breaker meanwhile, so
    :meth:`check` is called again before every attempt, once its limiter slot is held: a
    decision that finds the breaker no longer closed stops with :class:`CircuitOpen`
    instead of sending its request. The half-open probe is the one decision the breaker
    let through; it is not stopped by its own breaker.
    """

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker
        self.probe = False

    def check(self) -> None:
        """Raise :class:`CircuitOpen` unless this decision may send a request now."""
        if self.probe or self.breaker.state is BreakerState.CLOSED:
            return
        raise CircuitOpen(_open_message(self.breaker))

    async def run(
        self,
        decision: Callable[[], Awaitable[T]],
        is_failure: Callable[[BaseException], bool],
    ) -> T:
        """Run the whole decision (all its attempts) and record one outcome for it."""
        breaker = self.breaker
        if breaker.state is not BreakerState.CLOSED:
            # Open: CircuitOpen at once. Half-open: this decision becomes the one probe
            # (or, when a probe is already out, CircuitOpen). The breaker judges it.
            self.probe = True
            return await breaker.call(decision, is_failure=is_failure)
        try:
            result = await decision()
        except Exception as exc:
            # A decision let through while closed that fails after the breaker opened and
            # handed its one probe to another decision is old news: the probe decides.
            if is_failure(exc) and not breaker.probe_in_flight:
                breaker.record_failure()
            raise  # anything else (a bad request, CircuitOpen, …) leaves the state alone
        breaker.record_success()
        return result


async def chat_json(
    runtime: ProviderRuntime,
    *,
    model: str,
    messages: Sequence[dict[str, str]],
    temperature: float,
    max_tokens: int,
    policy: RetryPolicy,
    clock: Clock,
    deadline: float,
    rng: random.Random | None = None,
) -> Completion:
    """One JSON-mode chat completion through the runtime's breaker and limiter, retried on
    408/429/5xx/network errors while time is left before ``deadline`` (on ``clock``).
    The breaker is checked before every attempt once its limiter slot is held, and records
    one outcome for the whole call (see :class:`BreakerGate`).

    Raises :class:`ProviderFailure` (try another provider) or :class:`InvalidGeneration`.
    """
    label = runtime.endpoint.label
    retries: list[str] = []
    attempts = 0
    started = time.perf_counter()
    gate = BreakerGate(runtime.breaker)

    import openai

    async def request(client: openai.AsyncOpenAI) -> Any:
        nonlocal attempts
        async with runtime.limiter.slot():
            gate.check()  # the breaker may have opened while this call queued or backed off
            attempts += 1
            # Never outlive the decision's deadline: the last attempt gets what is left.
            timeout = max(0.1, min(runtime.timeout, deadline - clock.monotonic()))
            try:
                return await client.chat.completions.create(
                    model=model,
                    messages=list(messages),  # type: ignore[arg-type]
                    temperature=temperature,
                    max_tokens=max_tokens,
                    response_format={"type": "json_object"},
                    timeout=timeout,
                )
            except openai.OpenAIError as exc:
                raise translate(exc, timeout) from None

    def retryable(exc: BaseException) -> bool:
        if not isinstance(exc, TransientError):
            return False
        wait = (
            exc.retry_after
            if exc.retry_after is not None
            else policy.base * policy.factor ** max(attempts - 1, 0)
        )
        # Retry only if the wait leaves a useful amount of time for the next attempt.
        return clock.monotonic() + min(wait, policy.max_retry_after) + 1.0 < deadline

    def on_retry(number: int, exc: BaseException, seconds: float) -> None:
        retries.append(f"attempt {number}: {exc} → retry in {seconds:.1f} s")

    async def decision() -> Any:
        # One client lease for the whole call (queueing and backoff included): calls queued
        # behind the limiter keep the loop's client, and its connections, alive.
        async with runtime.clients.lease() as client:
            return await retry_async(
                lambda: request(client),
                policy,
                sleep=clock.sleep,
                retryable=retryable,
                on_retry=on_retry,
                rng=rng,
                what=f"{label} request",
            )

    try:
        response = await gate.run(decision, is_failure=_counts_against_provider)
    except CircuitOpen as exc:
        reason = str(exc)
        if attempts:
            reason += f" (stopped after {attempts} attempt(s))"
        raise ProviderFailure(reason, unavailable=True) from None
    except RetriesExhausted as exc:
        raise ProviderFailure(
            f"{label} provider unavailable: {exc.last} (after {exc.attempts} attempts)",
            unavailable=True,
        ) from None
    except TransientError as exc:
        raise ProviderFailure(
            f"{label} provider unavailable: {exc} (gave up after {attempts} attempt(s): "
            "no time left to retry)",
            unavailable=True,
        ) from None
    except _StatusError as exc:
        raise ProviderFailure(f"{label} refused the request: {exc}") from None
    choices = list(getattr(response, "choices", None) or [])
    usage = getattr(response, "usage", None)
    first = choices[0] if choices else None
    message = getattr(first, "message", None)
    try:
        raw = response.model_dump_json(exclude_none=True)
    except Exception:
        raw = repr(response)
    return Completion(
        content=getattr(message, "content", None),
        finish_reason=getattr(first, "finish_reason", None),
        prompt_tokens=_int_or_none(getattr(usage, "prompt_tokens", None)),
        completion_tokens=_int_or_none(getattr(usage, "completion_tokens", None)),
        model=getattr(response, "model", None),
        response_id=getattr(response, "id", None),
        choices=len(choices),
        raw=raw,
        attempts=attempts,
        latency_ms=int((time.perf_counter() - started) * 1000),
        retries=retries,
    )


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
