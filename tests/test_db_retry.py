"""Transient database errors are retried a bounded number of times; others are not."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from race.store.unit_of_work import is_transient, with_db_retry


class PgError(Exception):
    def __init__(self, message, sqlstate):
        super().__init__(message)
        self.sqlstate = sqlstate


def operational(message, orig=None):
    return OperationalError("UPDATE …", {}, orig or sqlite3.OperationalError(message))


@pytest.mark.parametrize(
    "exc",
    [
        operational("database is locked"),
        OperationalError("x", {}, PgError("deadlock detected", "40P01")),
        OperationalError("x", {}, PgError("could not serialize access", "40001")),
        OperationalError("x", {}, PgError("server closed the connection unexpectedly", "08006")),
    ],
)
def test_transient_errors_are_recognised(exc):
    assert is_transient(exc)


def test_other_errors_are_not_transient():
    assert not is_transient(IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE")))
    assert not is_transient(operational("no such table: decisions"))
    assert not is_transient(ValueError("x"))


def test_retries_then_succeeds_with_backoff():
    calls, sleeps = [], []

    def work():
        calls.append(1)
        if len(calls) < 3:
            raise operational("database is locked")
        return "done"

    assert with_db_retry(work, attempts=3, delay=0.5, sleep=sleeps.append) == "done"
    assert len(calls) == 3
    assert sleeps == [0.5, 1.0]


def test_gives_up_after_the_bound():
    calls = []

    def work():
        calls.append(1)
        raise operational("database is locked")

    with pytest.raises(OperationalError):
        with_db_retry(work, attempts=4, sleep=lambda _: None)
    assert len(calls) == 4


def test_does_not_retry_permanent_errors():
    calls = []

    def work():
        calls.append(1)
        raise operational("no such table: decisions")

    with pytest.raises(OperationalError):
        with_db_retry(work, sleep=lambda _: None)
    assert len(calls) == 1
