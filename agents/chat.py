"""One resilient JSON-mode chat completion against an OpenAI-compatible provider.

:func:`chat_json` makes the call with the project's single retry policy
(:mod:`race.resilience`); the SDK's own retries are off (``max_retries=0``). The circuit
breaker counts failed calls (a call = one decision's attempts against one provider), and is
consulted again before every attempt (:class:`BreakerGate`). Where the providers are and
what their calls share is :mod:`agents.providers`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from race.clock import Clock
from race.resilience import (
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
    RetriesExhausted,
    RetryPolicy,
    TransientError,
    is_retryable_status,
    parse_retry_after,
    retry_async,
)

if TYPE_CHECKING:  # the SDK takes seconds to import: only when a provider is called
    import openai

    from agents.providers import ProviderRuntime

T = TypeVar("T")


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


class _Call:
    """One chat completion's attempts: what :func:`chat_json` counts and decides per try."""

    def __init__(
        self,
        runtime: ProviderRuntime,
        gate: BreakerGate,
        request: Callable[[Any, float], Awaitable[Any]],
        policy: RetryPolicy,
        clock: Clock,
        deadline: float,
    ) -> None:
        self.runtime = runtime
        self.gate = gate
        self.send = request
        self.policy = policy
        self.clock = clock
        self.deadline = deadline
        self.attempts = 0
        self.retries: list[str] = []

    async def attempt(self, client: Any) -> Any:
        async with self.runtime.limiter.slot():
            self.gate.check()  # the breaker may have opened while this call queued or backed off
            self.attempts += 1
            # Never outlive the decision's deadline: the last attempt gets what is left.
            timeout = max(0.1, min(self.runtime.timeout, self.deadline - self.clock.monotonic()))
            return await self.send(client, timeout)

    def retryable(self, exc: BaseException) -> bool:
        if not isinstance(exc, TransientError):
            return False
        policy = self.policy
        wait = (
            exc.retry_after
            if exc.retry_after is not None
            else policy.base * policy.factor ** max(self.attempts - 1, 0)
        )
        # Retry only if the wait leaves a useful amount of time for the next attempt.
        return self.clock.monotonic() + min(wait, policy.max_retry_after) + 1.0 < self.deadline

    def on_retry(self, number: int, exc: BaseException, seconds: float) -> None:
        self.retries.append(f"attempt {number}: {exc} → retry in {seconds:.1f} s")

    async def decision(self, rng: random.Random | None) -> Any:
        # One client lease for the whole call (queueing and backoff included): calls queued
        # behind the limiter keep the loop's client, and its connections, alive.
        async with self.runtime.clients.lease() as client:
            return await retry_async(
                lambda: self.attempt(client),
                self.policy,
                sleep=self.clock.sleep,
                retryable=self.retryable,
                on_retry=self.on_retry,
                rng=rng,
                what=f"{self.runtime.endpoint.label} request",
            )

    def failure(self, exc: Exception) -> ProviderFailure:
        """What a call that failed with ``exc`` tells the fallback chain."""
        label = self.runtime.endpoint.label
        attempts = self.attempts
        if isinstance(exc, CircuitOpen):
            reason = str(exc)
            if attempts:
                reason += f" (stopped after {attempts} attempt(s))"
            return ProviderFailure(reason, unavailable=True)
        if isinstance(exc, RetriesExhausted):
            return ProviderFailure(
                f"{label} provider unavailable: {exc.last} (after {exc.attempts} attempts)",
                unavailable=True,
            )
        if isinstance(exc, TransientError):
            return ProviderFailure(
                f"{label} provider unavailable: {exc} (gave up after {attempts} attempt(s): "
                "no time left to retry)",
                unavailable=True,
            )
        return ProviderFailure(f"{label} refused the request: {exc}")


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
    started = time.perf_counter()
    import openai

    async def request(client: openai.AsyncOpenAI, seconds: float) -> Any:
        try:
            return await client.chat.completions.create(
                model=model,
                messages=list(messages),  # type: ignore[arg-type]
                temperature=temperature,
                max_tokens=max_tokens,
                response_format={"type": "json_object"},
                timeout=seconds,
            )
        except openai.OpenAIError as exc:
            raise translate(exc, seconds) from None

    gate = BreakerGate(runtime.breaker)
    call = _Call(runtime, gate, request, policy, clock, deadline)
    try:
        response = await gate.run(lambda: call.decision(rng), is_failure=_counts_against_provider)
    except (CircuitOpen, RetriesExhausted, TransientError, _StatusError) as exc:
        raise call.failure(exc) from None
    completion = _completion(response)
    completion.attempts = call.attempts
    completion.latency_ms = int((time.perf_counter() - started) * 1000)
    completion.retries = call.retries
    return completion


def _completion(response: Any) -> Completion:
    """The parts of an SDK chat completion the agents read (the rest is in ``raw``)."""
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
    )


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
