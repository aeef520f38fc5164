"""The agents table accepts only known providers (migration 0006), and a row that slipped in
before that check is one agent's recorded HOLD, never a stopped cycle."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError

from race.store.tables import AgentRow, DecisionRow
from tests.factories import HOUR, seed_agent
from tests.test_engine import START, seed_market


def test_an_unknown_provider_is_refused_by_the_schema(app):
    agent = seed_agent(app, "typo")
    with pytest.raises(IntegrityError, match="ck_agents_provider"), app.db.write() as session:
        session.execute(update(AgentRow).where(AgentRow.id == agent).values(provider="Gemini"))
    with pytest.raises(IntegrityError, match="ck_agents_provider"), app.db.write() as session:
        session.execute(
            text(
                "INSERT INTO agents (name, strategy, provider, instructions, params, is_active,"
                " created_at) VALUES ('x', '', 'Gemini', '', '{}', true, '2024-01-01')"
            )
        )


def test_a_row_with_an_unknown_provider_holds_and_the_others_decide(sqlite_app):
    app = sqlite_app
    seed_market(app, n=100)
    bad = seed_agent(app, "from-before-0006")
    good = seed_agent(app, "cash")
    with app.db.engine.begin() as connection:  # as a database migrated before 0006 holds it
        connection.exec_driver_sql("DROP TRIGGER ck_agents_provider_update")
        connection.execute(
            text("UPDATE agents SET provider = 'Gemini' WHERE id = :id"), {"id": bad}
        )
    report = asyncio.run(app.engine.run_cycle(START + 80 * HOUR))
    assert report.decided == 2
    with app.db.read() as session:
        rows = {r.agent_id: r for r in session.scalars(select(DecisionRow))}
    assert rows[bad].fallback is True and rows[bad].action == "HOLD"
    assert "unknown provider 'Gemini'" in rows[bad].fallback_reason
    assert rows[good].fallback is False


def test_the_check_migrates_a_populated_database_both_ways(app):
    seed_market(app, n=100)
    seed_agent(app, "cash")
    asyncio.run(app.engine.run_cycle(START + 80 * HOUR))
    app.db.downgrade("0005")  # SQLite's foreign keys off: 0012 rebuilds referenced tables
    app.db.upgrade()
    assert app.db.current_revision() == _head()
    with app.db.read() as session:
        assert session.scalar(select(DecisionRow.agent_id)) is not None
    test_an_unknown_provider_is_refused_by_the_schema(app)


def _head() -> str | None:
    from alembic.script import ScriptDirectory

    from race.store.database import alembic_config

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_an_upgrade_keeps_a_row_with_an_unknown_provider_and_that_agent_holds(app):
    from alembic import command

    from race.store.database import alembic_config

    seed_market(app, n=100)
    bad = seed_agent(app, "from-before-0006")
    good = seed_agent(app, "cash")
    with app.db.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0005")
        connection.execute(
            text("UPDATE agents SET provider = 'Gemini' WHERE id = :id"), {"id": bad}
        )
    app.db.upgrade()  # not refused: existing rows are left as they are
    assert app.db.current_revision() == _head()
    report = asyncio.run(app.engine.run_cycle(START + 80 * HOUR))
    assert report.decided == 2
    with app.db.read() as session:
        rows = {r.agent_id: r for r in session.scalars(select(DecisionRow))}
    assert "unknown provider 'Gemini'" in rows[bad].fallback_reason
    assert rows[good].fallback is False
    test_an_unknown_provider_is_refused_by_the_schema(app)  # new rows are checked
