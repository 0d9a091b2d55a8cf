"""Toolboxes: named groups of platform tools served over MCP, versioned as Foundry versions them.

Two tables, as for agents: the toolbox (name, the version counter, the default version its endpoint
serves) and its immutable versions (the tool entries, with any secrets in them sealed, and who made the
version: entries that name resources, such as file_search's vector stores, reach them as their author).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "toolboxes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Integer(), nullable=False),
        sa.Column("last_version", sa.Integer(), nullable=False),
        sa.Column("default_version", sa.Integer(), nullable=True),
        sa.UniqueConstraint("project", "name", name="uq_toolboxes_project_name"),
    )
    op.create_table(
        "toolbox_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("toolbox_id", sa.Integer(), sa.ForeignKey("toolboxes.id", ondelete="CASCADE"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("tools", sa.JSON(), nullable=False),
        sa.Column("policies", sa.JSON(), nullable=True),
        sa.Column("author_subject", sa.String(300), nullable=True),
        sa.Column("author_user", sa.String(256), nullable=True),
        sa.UniqueConstraint("toolbox_id", "number", name="uq_toolbox_versions_toolbox_number"),
    )
    op.create_index("ix_toolbox_versions_toolbox_id", "toolbox_versions", ["toolbox_id"])


def downgrade() -> None:
    op.drop_index("ix_toolbox_versions_toolbox_id", "toolbox_versions")
    op.drop_table("toolbox_versions")
    op.drop_table("toolboxes")
