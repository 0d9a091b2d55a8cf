"""Invocation routes: which session an invocation ran in, for its GET and cancel.

A table of its own beside `response_routes` rather than one table for both: the ids come from two
protocols with their own formats and lifetimes, and the existing response routes stay as they are.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invocation_routes",
        sa.Column("invocation_id", sa.String(256), primary_key=True),
        sa.Column("session_id", sa.String(64), sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
    )
    op.create_index("ix_invocation_routes_session_id", "invocation_routes", ["session_id"])


def downgrade() -> None:
    op.drop_table("invocation_routes")
