"""The tests' one waiting helper: returns the condition's value, fails with a clear message."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.waiting import wait_until, wait_until_async


def test_wait_until_returns_the_first_truthy_value() -> None:
    values = iter([0, None, "", "ready", "later"])
    assert wait_until(lambda: next(values), "a value", limit_s=5, interval=0) == "ready"


def test_wait_until_fails_naming_what_it_waited_for() -> None:
    polls = itertools.count()
    with pytest.raises(AssertionError, match=r"timed out after 0.05 s waiting for the file \(3\)"):
        wait_until(lambda: next(polls) < 0, lambda: "the file (3)", limit_s=0.05)


def test_an_exception_in_the_condition_ends_the_wait_at_once() -> None:
    def dead() -> bool:
        raise AssertionError("the process died")

    with pytest.raises(AssertionError, match="the process died"):
        wait_until(dead, "never", limit_s=60)


def test_wait_until_async_lets_the_loop_run() -> None:
    async def scenario() -> int:
        box: list[int] = []

        async def later() -> None:
            box.append(7)

        task = asyncio.create_task(later())
        value = await wait_until_async(lambda: box and box[0], "the task", limit_s=5)
        await task
        return value

    assert asyncio.run(scenario()) == 7
    with pytest.raises(AssertionError, match="waiting for nothing"):
        asyncio.run(wait_until_async(lambda: False, "nothing", limit_s=0.02))
