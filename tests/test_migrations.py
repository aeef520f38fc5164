"""The Alembic migrations build exactly the schema the models declare, on every backend:
a table, column, index or constraint added to one and not the other fails here."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from race.store.database import Database, alembic_config
from race.store.tables import Base


# Alembic reflects PostgreSQL's NOT VALID check (migration 0006) with a dialect option it
# cannot hand back to SQLAlchemy; check constraints are not compared anyway.
@pytest.mark.filterwarnings("ignore:Can't validate argument 'dialect_options'")
# SQLite cannot reflect the expression index of 0008 (lower(name)); test_agents_manage proves
# it exists by the error a case-insensitive duplicate gets.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based")
def test_migrations_match_the_models(app):
    with app.db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": False}
        )
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based")
def test_downgrade_to_base_and_upgrade_again(sqlite_url):
    db = Database(sqlite_url)
    try:
        assert db.current_revision() is not None
        with db.engine.begin() as connection:
            command.downgrade(alembic_config(connection), "base")
        assert db.current_revision() is None
        db.upgrade()
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection)
            assert compare_metadata(context, Base.metadata) == []
    finally:
        db.dispose()
