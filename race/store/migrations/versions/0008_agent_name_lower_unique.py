"""agents: names are unique case-insensitively (a unique index on lower(name))

``Cash Keeper`` and ``cash keeper`` could both exist. Agents already there whose names
differ only in case are resolved before the index is built: the oldest keeps its name, each
later one is renamed ``<name> (id N)`` (a warning names every rename), so the upgrade never
fails on existing data and no history is lost.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

INDEX = "ix_agents_name_lower"
log = logging.getLogger("race.migrations")


def resolve_duplicates(connection: sa.Connection) -> list[tuple[int, str, str]]:
    """Rename agents whose lower-case name an older agent already has; returns
    ``(id, old name, new name)`` for each rename."""
    rows = connection.execute(sa.text("SELECT id, name FROM agents ORDER BY id")).all()
    taken = {str(name).lower() for _, name in rows}
    seen: set[str] = set()
    renames: list[tuple[int, str, str]] = []
    for agent_id, name in rows:
        key = str(name).lower()
        if key not in seen:
            seen.add(key)
            continue
        suffix = f" (id {agent_id})"
        new = str(name)[: 100 - len(suffix)].rstrip() + suffix
        while new.lower() in taken:
            new = new[: 100 - 1 - len(suffix)] + "_" + suffix
        taken.add(new.lower())
        seen.add(new.lower())
        connection.execute(
            sa.text("UPDATE agents SET name = :name WHERE id = :id"), {"name": new, "id": agent_id}
        )
        renames.append((int(agent_id), str(name), new))
    return renames


def upgrade() -> None:
    for agent_id, old, new in resolve_duplicates(op.get_bind()):
        log.warning(
            "agent %d renamed from %r to %r: agent names are now unique regardless of case",
            agent_id,
            old,
            new,
        )
    op.create_index(INDEX, "agents", [sa.text("lower(name)")], unique=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="agents")
