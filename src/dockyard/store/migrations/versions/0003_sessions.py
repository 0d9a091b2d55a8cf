"""Sessions, response routes, and agent endpoint configuration.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("agents", sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.add_column("agents", sa.Column("endpoint", sa.JSON(), nullable=True))
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("agent_name", sa.String(63), nullable=False),
        sa.Column("version_uid", sa.String(32), nullable=False),
        sa.Column("version", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("idle_timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("last_accessed_at", sa.Float(), nullable=False),
        sa.Column("stopped_at", sa.Integer(), nullable=True),
    )
    op.create_index("ix_sessions_agent_name", "sessions", ["agent_name"])
    op.create_index("ix_sessions_version_uid", "sessions", ["version_uid"])
    op.create_table(
        "response_routes",
        sa.Column("response_id", sa.String(128), primary_key=True),
        sa.Column("session_id", sa.String(64), sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
    )
    op.create_index("ix_response_routes_session_id", "response_routes", ["session_id"])


def downgrade() -> None:
    op.drop_table("response_routes")
    op.drop_table("sessions")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("endpoint")
        batch.drop_column("enabled")
