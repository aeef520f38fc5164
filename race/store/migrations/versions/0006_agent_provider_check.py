"""agents: the provider column accepts only the known providers

An agent row with any other provider (a typo in hand-written SQL, a provider from a newer
version after a downgrade) would otherwise reach the engine and the API, which speak only
these five (the API's ``modelType``).

PostgreSQL gets a CHECK constraint ``NOT VALID`` (rows already there are not checked: an
agent with an unknown provider HOLDs with the reason), other servers a plain one. SQLite
can only add one by rebuilding the table, and rebuilding ``agents`` while portfolios,
decisions and trades reference it breaks their foreign keys inside the migration's
transaction: there, two triggers refuse the same values, with the constraint's name in the
error (rows already there are not checked either).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

PROVIDERS = ("Llama", "OpenAI", "AzureOpenAI", "CustomML", "Mock")
NAME = "ck_agents_provider"
_ALLOWED = ", ".join(f"'{p}'" for p in PROVIDERS)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        # NOT VALID: new and changed rows are checked; a row already there with an unknown
        # provider stays (that agent HOLDs with the reason) instead of failing the upgrade.
        op.execute(
            f"ALTER TABLE agents ADD CONSTRAINT {NAME} CHECK (provider IN ({_ALLOWED})) NOT VALID"
        )
        return
    if dialect != "sqlite":
        op.create_check_constraint(op.f(NAME), "agents", f"provider IN ({_ALLOWED})")
        return
    for event, when in (("INSERT", "INSERT"), ("UPDATE", "UPDATE OF provider")):
        op.execute(
            f"CREATE TRIGGER {NAME}_{event.lower()} BEFORE {when} ON agents "
            f"WHEN NEW.provider NOT IN ({_ALLOWED}) "
            f"BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: {NAME}'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(op.f(NAME), "agents", type_="check")
        return
    for event in ("insert", "update"):
        op.execute(f"DROP TRIGGER IF EXISTS {NAME}_{event}")
