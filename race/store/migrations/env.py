"""Alembic environment: migrations run on the connection the app hands over
(``Database.upgrade``), or on ``RACE_DATABASE_URL`` when run by the ``alembic`` CLI."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

from race.store.tables import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = create_engine(os.environ.get("RACE_DATABASE_URL", "sqlite:///race.db"))
    with engine.begin() as conn:
        _run(conn)
