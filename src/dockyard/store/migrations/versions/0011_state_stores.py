"""State stores for agents (api/state_stores.py): Foundry's `{project}/storage/state_stores` API, which Agent
Framework's hosting uses for agent sessions, function approvals and workflow checkpoints once
`FOUNDRY_HOSTING_ENVIRONMENT` is set.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "state_stores",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("agent_name", sa.String(63), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("user_isolation", sa.Boolean(), nullable=False),
        sa.Column("item_ttl_seconds", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(512), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Integer(), nullable=False),
        sa.UniqueConstraint("project", "agent_name", "name", name="uq_state_stores_agent_name"),
    )
    op.create_table(
        "state_store_items",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("store_id", sa.String(40), sa.ForeignKey("state_stores.id", ondelete="CASCADE"), nullable=False),
        sa.Column("partition", sa.String(600), nullable=False),
        sa.Column("key", sa.String(1024), nullable=False),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=True),
        sa.Column("etag", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.UniqueConstraint("store_id", "partition", "key", name="uq_state_store_items_key"),
    )
    op.create_index("ix_state_store_items_store_id", "state_store_items", ["store_id"])
    op.create_index("ix_state_store_items_expires_at", "state_store_items", ["expires_at"])


def downgrade() -> None:
    op.drop_table("state_store_items")
    op.drop_table("state_stores")
