"""The unit of work: a write commits only when its block succeeds, transient errors are
retried on the injected clock, and what remains is named (lost database, refused value)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from race.clock import ManualClock
from race.store.database import Database, DatabaseError
from race.store.tables import LeaseRow
from race.store.unit_of_work import UnitOfWork, Unstorable
from tests.conftest import NOW

SECRET = "sk-unit-of-work-secret-0123456789"


def lease(name: str) -> LeaseRow:
    return LeaseRow(name=name, holder="h", job_id=None, description=None,
                    acquired_at=NOW, expires_at=NOW + timedelta(minutes=1))  # fmt: skip


def leases(uow: UnitOfWork) -> int:
    with uow.read() as session:
        return session.scalar(select(func.count()).select_from(LeaseRow)) or 0


@pytest.fixture
def uow(sqlite_url: str, clock: ManualClock):
    db = Database(sqlite_url)
    yield UnitOfWork(db, clock)
    db.dispose()


def locked() -> OperationalError:
    return OperationalError("UPDATE …", {}, sqlite3.OperationalError("database is locked"))


def test_a_write_commits_only_when_its_block_succeeds(uow):
    with uow.write() as session:
        session.add(lease("kept"))

    def failing() -> None:
        with uow.write() as session:
            session.add(lease("dropped"))
            session.flush()
            raise RuntimeError("the block failed")

    with pytest.raises(RuntimeError, match="the block failed"):
        failing()
    with uow.read() as session:
        assert list(session.scalars(select(LeaseRow.name))) == ["kept"]


def test_transient_errors_are_retried_waiting_on_the_injected_clock(uow, clock):
    calls: list[int] = []

    def work() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise locked()
        return "done"

    assert uow.run(work, "test write") == "done"
    assert len(calls) == 3
    assert clock.sleeps == [0.2, 0.4]
    assert (clock.now() - NOW).total_seconds() == pytest.approx(0.6)


def test_a_transient_error_that_stays_is_a_database_error_after_the_bound(uow, clock):
    calls: list[int] = []

    def work() -> None:
        calls.append(1)
        raise locked()

    with pytest.raises(DatabaseError, match="test write failed"):
        uow.run(work, "test write")
    assert len(calls) == 3
    assert clock.sleeps == [0.2, 0.4]


def test_a_unique_key_conflict_passes_through_unretried(uow, clock):
    with uow.write() as session:
        session.add(lease("one"))

    def duplicate() -> None:
        with uow.write() as session:
            session.add(lease("one"))

    with pytest.raises(IntegrityError):
        uow.run(duplicate, "duplicate")
    assert clock.sleeps == []
    assert leases(uow) == 1


def test_a_refused_value_is_unstorable_with_its_reason_redacted(uow):
    def refused() -> None:
        raise DataError("INSERT …", {}, Exception(f"value too long: {SECRET}"))

    with pytest.raises(Unstorable) as caught:
        uow.store(refused, "test step", lambda text: text.replace(SECRET, "[REDACTED]"))
    assert caught.value.reason == "DataError: value too long: [REDACTED]"


def test_refusals_name_the_refused_works_and_write_nothing(uow):
    def fine(session) -> None:
        session.add(lease("fine"))

    def refused(session) -> None:
        session.add(lease("refused"))
        raise DataError("INSERT …", {}, Exception("value too long"))

    found = uow.refusals({1: fine, 2: refused, 3: fine}, "check")
    assert list(found) == [2]
    assert isinstance(found[2], DataError)
    assert leases(uow) == 0
