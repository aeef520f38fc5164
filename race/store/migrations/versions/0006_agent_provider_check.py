"""agents: the provider column accepts only the known providers

An agent row with any other provider (a typo in hand-written SQL, a provider from a newer
version after a downgrade) would otherwise reach the engine and the API, which speak only
these five (the API's ``modelType``).

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


def upgrade() -> None:
    allowed = ", ".join(f"'{p}'" for p in PROVIDERS)
    with op.batch_alter_table("agents") as batch:
        batch.create_check_constraint(op.f("ck_agents_provider"), f"provider IN ({allowed})")


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_constraint(op.f("ck_agents_provider"), type_="check")
