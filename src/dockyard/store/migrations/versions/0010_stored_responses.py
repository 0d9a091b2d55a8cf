"""Responses and items stored for agents by the adapter's Foundry storage provider (api/storage.py).

Two tables rather than rows in `response_routes`: a route lives and dies with its session, a stored
response outlives both the session and the version that made it (as in Foundry, where storage is the
project's). Items are rows of their own because later turns and `item_reference` inputs reach them by id.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stored_responses",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("agent_name", sa.String(63), nullable=False),
        sa.Column("owner_subject", sa.String(300), nullable=False),
        sa.Column("owner_user", sa.String(256), nullable=True),
        sa.Column("conversation_id", sa.String(256), nullable=True),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("history_item_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_stored_responses_agent_name", "stored_responses", ["agent_name"])
    op.create_index("ix_stored_responses_conversation_id", "stored_responses", ["conversation_id"])
    op.create_table(
        "stored_response_items",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("response_id", sa.String(128), sa.ForeignKey("stored_responses.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(256), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
    )
    op.create_index("ix_stored_response_items_response_id", "stored_response_items", ["response_id"])
    op.create_index("ix_stored_response_items_item_id", "stored_response_items", ["item_id"])


def downgrade() -> None:
    op.drop_table("stored_response_items")
    op.drop_table("stored_responses")
