"""Shared fixtures. Every database test runs on SQLite and, when
``RACE_TEST_POSTGRES_URL`` is set, on PostgreSQL too (one schema per xdist worker)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text

from race.bootstrap import App, bootstrap
from race.clock import ManualClock
from race.store.database import Database
from race.store.tables import Base

PG_URL = os.environ.get("RACE_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", *(["postgresql"] if PG_URL else [])]
NOW = datetime(2024, 1, 1, tzinfo=UTC)


READ_TIMEOUT_UNDER_TEST = "30"
"""``RACE_DB_READ_TIMEOUT_SECONDS`` in tests, unless a test sets its own."""


@pytest.fixture(scope="session")
def _empty_settings_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("no-settings-files")


@pytest.fixture(autouse=True)
def _isolated_settings_files(_empty_settings_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own ``.env`` / ``local.settings.json`` never leak into a test (nor
    into the subprocesses it starts): settings files are read from an empty folder."""
    monkeypatch.setenv("RACE_SETTINGS_DIR", str(_empty_settings_dir))
    # A loaded test machine (three workers on two cores beside PostgreSQL) can take longer
    # than the API's 3 s read bound for a heavy read; the tests of that bound set it.
    monkeypatch.setenv("RACE_DB_READ_TIMEOUT_SECONDS", READ_TIMEOUT_UNDER_TEST)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once is much faster)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    with db.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.dispose()
    return path


def _worker() -> str:
    """Unique per test run and worker, so concurrent runs never share a schema."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", f"p{os.getpid()}")[:10]
    return f"{run}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"


@pytest.fixture(params=BACKENDS)
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A database with no schema at all, on each backend (a private PostgreSQL schema): for
    migration tests that start from an early revision."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'race.db'}")
        yield db
        db.dispose()
        return
    assert PG_URL is not None
    schema = f"race_empty_{_worker()}"
    admin = create_engine(PG_URL)
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in PG_URL else "?"
    db = Database(f"{PG_URL}{separator}options={quote(f'-csearch_path={schema}')}")
    try:
        yield db
    finally:
        db.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str | None]:
    if not PG_URL:
        yield None
        return
    schema = f"race_test_{_worker()}"
    admin = create_engine(PG_URL)
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    separator = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    db = Database(url)
    db.upgrade()
    db.dispose()
    yield url
    admin = create_engine(PG_URL)
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


def _truncate_pg(url: str) -> None:
    engine = create_engine(url)
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path, pg_url: str | None
) -> str:
    """A migrated, empty database: a SQLite file, or the worker's PostgreSQL schema."""
    if request.param == "sqlite":
        target = tmp_path / "race.db"
        shutil.copy(sqlite_template, target)
        return f"sqlite:///{target}"
    assert pg_url is not None
    _truncate_pg(pg_url)
    return pg_url


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated SQLite database only (for tests about SQLite itself or the CLI)."""
    target = tmp_path / "race.db"
    shutil.copy(sqlite_template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def app(database_url: str, clock: ManualClock) -> Iterator[App]:
    application = bootstrap(overrides={"RACE_DATABASE_URL": database_url}, clock=clock)
    yield application
    application.close()


@pytest.fixture
def sqlite_app(sqlite_url: str, clock: ManualClock) -> Iterator[App]:
    application = bootstrap(overrides={"RACE_DATABASE_URL": sqlite_url}, clock=clock)
    yield application
    application.close()
