"""Responses made by the tool loop on the model endpoint (previous_response_id, approvals).

One row per Response, its caller's (owner columns as in 0006), holding the Response as answered, the
model-level transcript a continuation starts from, and the approval requests still waiting.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tool_loop_responses",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("owner_subject", sa.String(300), nullable=False),
        sa.Column("owner_user", sa.String(256), nullable=True),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("transcript", sa.JSON(), nullable=False),
        sa.Column("pending", sa.JSON(), nullable=False),
    )
    op.create_index("ix_tool_loop_responses_created_at", "tool_loop_responses", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_tool_loop_responses_created_at", "tool_loop_responses")
    op.drop_table("tool_loop_responses")
