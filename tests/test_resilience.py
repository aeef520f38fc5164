"""The one retry / rate-limit / circuit-breaker toolkit, under an injected clock (no real
sleeping): retry delays and Retry-After, the token bucket and its concurrency cap, the
breaker's state machine (a hypothesis property test against a model of the spec), and the
per-loop client lease agents use."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agents._clients import SharedClient
from race.clock import ManualClock
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

NOW = datetime(2024, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------- retry


def test_retryable_statuses():
    for status in (408, 429, 500, 502, 503, 504, 599):
        assert is_retryable_status(status), status
    for status in (200, 400, 401, 403, 404, 409, 413, 422):
        assert not is_retryable_status(status), status


def test_retry_after_header_forms():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("Mon, 01 Jan 2024 00:00:30 GMT", NOW) == 30.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("-3") == 0.0


def test_backoff_is_2_4_8_seconds_with_bounded_jitter():
    policy = RetryPolicy()
    assert policy.attempts == 4  # the first try and 3 retries
    rng = random.Random(1)
    for retry, base in ((1, 2.0), (2, 4.0), (3, 8.0)):
        for _ in range(50):
            delay = policy.delay(retry, rng=rng)
            assert base * 0.9 <= delay <= base * 1.1
    assert policy.delay(1, retry_after=30.0) == 30.0  # Retry-After wins
    assert policy.delay(1, retry_after=10_000.0) == policy.max_retry_after


def run_retry(outcomes, policy=None, clock=None):
    clock = clock or ManualClock(NOW)
    calls = []

    async def call():
        outcome = outcomes[len(calls)]
        calls.append(outcome)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    result = asyncio.run(retry_async(call, policy or RetryPolicy(), sleep=clock.sleep))
    return result, calls, clock


def test_retry_recovers_after_transient_failures_without_real_sleep():
    result, calls, clock = run_retry([TransientError("503"), TransientError("timeout"), "ok"])
    assert result == "ok"
    assert len(calls) == 3
    assert len(clock.sleeps) == 2
    assert 1.8 <= clock.sleeps[0] <= 2.2
    assert 3.6 <= clock.sleeps[1] <= 4.4


def test_retry_honours_retry_after():
    result, _, clock = run_retry([TransientError("429", retry_after=7.0), "ok"])
    assert result == "ok"
    assert clock.sleeps == [7.0]


def test_retries_exhausted_after_four_attempts():
    with pytest.raises(RetriesExhausted) as info:
        run_retry([TransientError(f"500 #{i}") for i in range(4)])
    assert info.value.attempts == 4
    assert "500 #3" in str(info.value.last)


def test_on_retry_announces_only_the_retries_that_happen():
    announced = []

    async def call():
        raise TransientError("500")

    clock = ManualClock(NOW)
    with pytest.raises(RetriesExhausted):
        asyncio.run(
            retry_async(
                call,
                RetryPolicy(),
                sleep=clock.sleep,
                on_retry=lambda n, exc, seconds: announced.append(n),
            )
        )
    assert announced == [1, 2, 3]  # 4 attempts, 3 retries: none after the last attempt
    assert len(clock.sleeps) == 3


def test_an_aborted_ordinary_call_does_not_release_the_half_open_probe():
    clock = ManualClock(NOW)
    breaker = CircuitBreaker(clock=clock, name="Llama provider")
    started, release = asyncio.Event(), asyncio.Event()

    async def ordinary():
        started.set()
        await release.wait()
        raise asyncio.CancelledError

    async def scenario():
        # A call admitted while the breaker was closed is still in flight when the
        # breaker opens, half-opens and hands its one probe to someone else.
        task = asyncio.ensure_future(breaker.call(ordinary))
        await started.wait()
        for _ in range(5):
            breaker.record_failure()
        clock.advance(60)
        assert breaker.allow()  # the probe is out
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        return breaker.allow()

    assert asyncio.run(scenario()) is False  # still one probe at a time


def test_non_transient_errors_are_not_retried():
    clock = ManualClock(NOW)
    with pytest.raises(ValueError, match="bad request"):
        run_retry([ValueError("bad request"), "never"], clock=clock)
    assert clock.sleeps == []


# ---------------------------------------------------------------- rate limiter


def test_rate_limiter_paces_beyond_the_burst_on_the_injected_clock():
    clock = ManualClock(NOW)
    limiter = RateLimiter(30, clock=clock)

    async def go():
        for _ in range(30):
            await limiter.acquire()
        assert clock.sleeps == []  # a full minute's burst goes through at once
        await limiter.acquire()
        assert clock.sleeps == [pytest.approx(2.0)]  # then one every 60/30 s
        clock.advance(10)  # a quiet spell refills 5 tokens
        for _ in range(5):
            await limiter.acquire()
        assert len(clock.sleeps) == 1
        await limiter.acquire()
        assert len(clock.sleeps) == 2

    asyncio.run(go())
    assert limiter.waited == pytest.approx(4.0)


def test_rate_limiter_caps_calls_in_flight():
    clock = ManualClock(NOW)
    limiter = RateLimiter(1000, max_concurrent=2, clock=clock)
    inside = 0
    peak = 0

    async def call(release: asyncio.Event) -> None:
        nonlocal inside, peak
        async with limiter.slot():
            inside += 1
            peak = max(peak, inside)
            await release.wait()
            inside -= 1

    async def go():
        release = asyncio.Event()
        tasks = [asyncio.create_task(call(release)) for _ in range(5)]
        for _ in range(5):
            await asyncio.sleep(0)
        assert inside == 2
        release.set()
        await asyncio.gather(*tasks)

    asyncio.run(go())
    assert peak == 2


def test_rate_limiter_survives_a_new_event_loop():
    """Agents outlive asyncio.run: the shared limiter must work on the next loop too."""
    clock = ManualClock(NOW)
    limiter = RateLimiter(1000, max_concurrent=1, clock=clock)

    async def contended():
        async def one():
            async with limiter.slot():
                await asyncio.sleep(0)

        await asyncio.gather(*(one() for _ in range(3)))

    asyncio.run(contended())
    asyncio.run(contended())  # would raise "bound to a different event loop" otherwise


# ---------------------------------------------------------------- circuit breaker


THRESHOLD, RESET = 5, 60.0


class BreakerModel:
    """The spec: opens after THRESHOLD consecutive failures; after RESET seconds one probe
    may go through (half-open); a success closes it, a failing probe re-opens it."""

    def __init__(self) -> None:
        self.state = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self.probing = False

    def observed(self, now: float) -> str:
        if self.state == "open" and now - self.opened_at >= RESET:
            return "half_open"
        return self.state

    def allow(self, now: float) -> bool:
        state = self.observed(now)
        if state == "closed":
            return True
        if state == "half_open" and not self.probing:
            self.state, self.probing = "half_open", True
            return True
        return False

    def succeed(self) -> None:
        self.state, self.failures, self.probing = "closed", 0, False

    def fail(self, now: float) -> None:
        self.failures += 1
        if self.state == "half_open" or self.failures >= THRESHOLD:
            self.state, self.opened_at = "open", now
        self.probing = False


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(NOW)
        self.breaker = CircuitBreaker(
            failure_threshold=THRESHOLD, reset_timeout=RESET, clock=self.clock
        )
        self.model = BreakerModel()
        self.in_flight = False

    @precondition(lambda self: not self.in_flight)
    @rule()
    def ask(self) -> None:
        allowed = self.breaker.allow()
        assert allowed == self.model.allow(self.clock.monotonic())
        self.in_flight = allowed

    @precondition(lambda self: self.in_flight)
    @rule(ok=st.booleans())
    def finish(self, ok: bool) -> None:
        if ok:
            self.breaker.record_success()
            self.model.succeed()
        else:
            self.breaker.record_failure()
            self.model.fail(self.clock.monotonic())
        self.in_flight = False

    @rule(seconds=st.sampled_from([0.5, 10.0, 59.9, 60.0, 61.0, 300.0]))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def same_state(self) -> None:
        assert self.breaker.state.value == self.model.observed(self.clock.monotonic())

    @invariant()
    def closed_means_fewer_than_threshold_failures(self) -> None:
        if self.breaker.state is BreakerState.CLOSED:
            assert self.breaker.consecutive_failures < THRESHOLD


TestBreakerStateMachine = BreakerMachine.TestCase
TestBreakerStateMachine.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), max_size=40))
def test_breaker_opens_exactly_at_five_consecutive_failures(outcomes):
    """Over any success/failure sequence with no time passing: the breaker is open iff five
    failures in a row happened (after that it stays open and refuses calls at once)."""
    clock = ManualClock(NOW)
    breaker = CircuitBreaker(clock=clock)
    run = 0
    opened = False

    async def attempt(ok: bool) -> None:
        async def fn() -> None:
            if not ok:
                raise TransientError("down")

        await breaker.call(fn)

    async def run_all() -> None:
        nonlocal run, opened
        for ok in outcomes:
            if opened:
                with pytest.raises(CircuitOpen):
                    await attempt(ok)
                continue
            if ok:
                await attempt(ok)
                run = 0
            else:
                with pytest.raises(TransientError):
                    await attempt(ok)
                run += 1
            opened = run >= 5
            assert (breaker.state is BreakerState.OPEN) == opened

    asyncio.run(run_all())


def test_breaker_half_open_probe_closes_on_success_and_reopens_on_failure():
    clock = ManualClock(NOW)
    breaker = CircuitBreaker(clock=clock, name="Llama provider")
    for _ in range(5):
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    clock.advance(59.9)
    assert not breaker.allow()
    clock.advance(0.1)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()  # the one probe
    assert not breaker.allow()  # nobody else while it is out
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN  # a failed probe re-opens at once
    clock.advance(60)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0


# ---------------------------------------------------------------- shared clients


def test_client_lease_is_shared_within_a_loop_and_closed_by_the_last_user():
    made: list[httpx.AsyncClient] = []

    def factory() -> httpx.AsyncClient:
        made.append(httpx.AsyncClient())
        return made[-1]

    async def close(client: httpx.AsyncClient) -> None:
        await client.aclose()

    shared: SharedClient[httpx.AsyncClient] = SharedClient(factory, close)

    async def user(seen: list[httpx.AsyncClient]) -> None:
        async with shared.lease() as client:
            seen.append(client)
            await asyncio.sleep(0)

    async def cycle() -> list[httpx.AsyncClient]:
        seen: list[httpx.AsyncClient] = []
        await asyncio.gather(*(user(seen) for _ in range(5)))
        return seen

    first = asyncio.run(cycle())
    assert len({id(c) for c in first}) == 1
    assert first[0].is_closed
    assert shared.open_clients == 0
    second = asyncio.run(cycle())
    assert second[0] is not first[0]
    assert len(made) == 2


def test_rate_limiter_survives_float_drift_on_a_large_clock_reading():
    """25 calls a minute, burst 1, clock far from zero: the waits must add up exactly and
    the limiter must never spin on a wait too small to move the clock."""
    import asyncio
    from datetime import UTC, datetime

    from race.clock import ManualClock
    from race.resilience import RateLimiter

    clock = ManualClock(datetime(2024, 1, 1, tzinfo=UTC))
    clock.advance(12.0)
    limiter = RateLimiter(25, burst=1, clock=clock)

    async def run() -> None:
        for _ in range(60):
            await limiter.acquire()

    asyncio.run(asyncio.wait_for(run(), timeout=5))
    assert len(clock.sleeps) == 59
    assert sum(clock.sleeps) == pytest.approx(59 * 60 / 25)


def test_a_stale_failure_does_not_disturb_the_half_open_probe():
    from agents.chat import BreakerGate

    clock = ManualClock(NOW)
    breaker = CircuitBreaker(clock=clock, name="Llama provider")
    a_started, a_release = asyncio.Event(), asyncio.Event()
    b_started, b_release = asyncio.Event(), asyncio.Event()

    async def stale():  # let through while closed, fails late
        a_started.set()
        await a_release.wait()
        raise TransientError("500")

    async def probe():
        b_started.set()
        await b_release.wait()
        return "ok"

    async def scenario():
        a = asyncio.ensure_future(BreakerGate(breaker).run(stale, is_failure=lambda e: True))
        await a_started.wait()
        for _ in range(5):
            breaker.record_failure()  # other decisions open the breaker meanwhile
        clock.advance(60)
        b = asyncio.ensure_future(BreakerGate(breaker).run(probe, is_failure=lambda e: True))
        await b_started.wait()
        assert breaker.probe_in_flight
        a_release.set()
        with pytest.raises(TransientError):
            await a
        assert breaker.state is BreakerState.HALF_OPEN and breaker.probe_in_flight
        assert not breaker.allow()  # still one probe at a time
        b_release.set()
        assert await b == "ok"
        return breaker.state

    assert asyncio.run(scenario()) is BreakerState.CLOSED
