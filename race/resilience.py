"""The one retry / rate-limit / circuit-breaker toolkit, used by market/ and agents/ alike.

Small pieces, each with an injected clock so tests never sleep for real:

* :class:`RetryPolicy` + :func:`retry_async` — exponential backoff with jitter on top of
  tenacity; a ``Retry-After`` carried by :class:`TransientError` wins over the backoff.
* :class:`RateLimiter` — a token bucket (calls per minute, with a burst) plus an optional
  cap on calls in flight; one instance is shared by every call to the same provider.
* :class:`CircuitBreaker` — opens after N consecutive failures, lets one probe through
  after a cool-down (half-open), closes on success.
"""

from __future__ import annotations

import asyncio
import random
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from race.clock import Clock, SystemClock

T = TypeVar("T")


class TransientError(Exception):
    """A failure worth retrying (429, 5xx, timeout, connection error)."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
"""HTTP statuses worth retrying besides any other 5xx (see :func:`is_retryable_status`)."""


def is_retryable_status(status: int) -> bool:
    """408 (request timeout), 429 (rate limited) and every 5xx: the same call may succeed
    later. Other 4xx are the caller's fault and are not retried."""
    return status in RETRYABLE_STATUS or 500 <= status <= 599


class RetriesExhausted(Exception):
    """Every attempt failed with a transient error; wraps the last one."""

    def __init__(self, message: str, attempts: int, last: BaseException) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.last = last


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date. None if absent or bad."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(seconds, 0.0)


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` in all (first try included). Delay before retry k (k = 1, 2, …) is
    ``base × factor^(k-1)`` ± ``jitter`` (a fraction), capped at ``max_delay``. A
    server's Retry-After replaces it (capped at ``max_retry_after``)."""

    attempts: int = 4
    base: float = 2.0
    factor: float = 2.0
    max_delay: float = 60.0
    jitter: float = 0.1
    max_retry_after: float = 300.0

    def delay(
        self, retry_number: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        delay = self.base * self.factor ** (retry_number - 1)
        if self.jitter:
            delay *= 1.0 + (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, min(delay, self.max_delay))


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientError)


async def retry_async(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    retryable: Callable[[BaseException], bool] = _is_transient,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    rng: random.Random | None = None,
    what: str = "call",
) -> T:
    """Run ``call`` until it succeeds, a non-retryable error escapes, or the attempts run
    out (→ :class:`RetriesExhausted` naming ``what``)."""
    sleeper = sleep or SystemClock().sleep

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        seconds = policy.delay(state.attempt_number, retry_after, rng)
        # tenacity computes the wait before its stop check: after the last attempt there
        # is no retry to announce.
        if on_retry is not None and exc is not None and state.attempt_number < policy.attempts:
            on_retry(state.attempt_number, exc, seconds)
        return seconds

    retrying = AsyncRetrying(
        stop=stop_after_attempt(max(1, policy.attempts)),
        wait=wait,
        retry=retry_if_exception(retryable),
        sleep=sleeper,
        reraise=True,
    )
    attempt = 0
    try:
        async for attempt_state in retrying:
            with attempt_state:
                attempt = attempt_state.retry_state.attempt_number
                return await call()
    except BaseException as exc:
        if retryable(exc) and attempt >= policy.attempts:
            raise RetriesExhausted(
                f"{what} failed after {attempt} attempts: {exc}", attempt, exc
            ) from exc
        raise
    raise AssertionError("unreachable")  # pragma: no cover


class RateLimiter:
    """Token bucket: ``per_minute`` calls per minute on average, at most ``burst`` at once
    after a quiet spell (default: a full minute's worth), and optionally at most
    ``max_concurrent`` calls in flight. Fair: waiters are served in arrival order."""

    def __init__(
        self,
        per_minute: float,
        *,
        burst: float | None = None,
        max_concurrent: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.per_minute = per_minute
        self.capacity = max(1.0, burst if burst is not None else per_minute)
        self.clock = clock or SystemClock()
        self.max_concurrent = max_concurrent
        self._tokens = self.capacity
        self._stamp: float | None = None
        self._loop: weakref.ReferenceType[asyncio.AbstractEventLoop] | None = None
        self._lock = asyncio.Lock()
        self._inflight = asyncio.Semaphore(max_concurrent) if max_concurrent else None
        self.waited = 0.0
        """Total seconds callers spent waiting for a token (for logs and tests)."""

    def _bind(self) -> tuple[asyncio.Lock, asyncio.Semaphore | None]:
        """The lock and the in-flight semaphore of the running event loop. asyncio
        primitives belong to one loop; a limiter shared by long-lived services outlives
        ``asyncio.run`` calls, so they are made afresh when the loop changes (the token
        bucket itself carries over). Use one loop at a time."""
        loop = asyncio.get_running_loop()
        if self._loop is None or self._loop() is not loop:
            self._loop = weakref.ref(loop)
            self._lock = asyncio.Lock()
            self._inflight = asyncio.Semaphore(self.max_concurrent) if self.max_concurrent else None
        return self._lock, self._inflight

    def _refill(self) -> None:
        now = self.clock.monotonic()
        if self._stamp is None:
            self._stamp = now
            return
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        tokens = min(self.capacity, self._tokens + elapsed * self.per_minute / 60.0)
        # Rounded: float drift would otherwise leave 0.9999999999999998 tokens and ask for a
        # ~1e-16 s wait that a clock reading of, say, 12.0 cannot even advance by.
        self._tokens = round(tokens, 9)

    async def acquire(self) -> None:
        lock, _ = self._bind()
        async with lock:
            while True:
                self._refill()
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                wait = (1.0 - self._tokens) * 60.0 / self.per_minute
                self.waited += wait
                await self.clock.sleep(wait)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """``async with limiter.slot():`` — a token, and a place among the calls in flight."""
        _, inflight = self._bind()
        if inflight is None:
            await self.acquire()
            yield
            return
        async with inflight:
            await self.acquire()
            yield


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(Exception):
    """The provider is considered down; the caller answers HOLD at once."""


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 60.0,
        clock: Clock | None = None,
        name: str = "provider",
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be ≥ 1")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.clock = clock or SystemClock()
        self.name = name
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        if (
            self._state is BreakerState.OPEN
            and self.clock.monotonic() - self._opened_at >= self.reset_timeout
        ):
            return BreakerState.HALF_OPEN
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    @property
    def probe_in_flight(self) -> bool:
        """Half-open, with its one probe call out."""
        return self._probe_in_flight and self.state is BreakerState.HALF_OPEN

    def allow(self) -> bool:
        """May a call go through now? In half-open state exactly one probe may."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probe_in_flight:
            self._state = BreakerState.HALF_OPEN
            self._probe_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._probe_in_flight = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._state = BreakerState.OPEN
            self._opened_at = self.clock.monotonic()
        self._probe_in_flight = False

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        is_failure: Callable[[BaseException], bool] = lambda _: True,
    ) -> T:
        if not self.allow():
            raise CircuitOpen(
                f"{self.name} unavailable (circuit open after "
                f"{self._failures} consecutive failures)"
            )
        probing = self._probe_in_flight  # allow() granted this call the half-open probe
        try:
            result = await fn()
        except BaseException as exc:
            if isinstance(exc, Exception) and is_failure(exc):
                self.record_failure()
            elif probing:
                # Cancelled or not the provider's fault: release the probe, keep the state.
                self._probe_in_flight = False
            raise
        self.record_success()
        return result
