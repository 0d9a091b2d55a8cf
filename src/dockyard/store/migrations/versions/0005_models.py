"""Models: connections to model providers and the named deployments that go through them.

Two tables rather than columns on registry_connections: a registry connection is a pull credential,
a model connection is an inference upstream with its own kind, auth and protocol; the connections API
lists both (see `dockyard.models.catalog`).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_connections",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("auth", sa.String(16), nullable=False),
        sa.Column("api_key", sa.Text(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("speaks_responses", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.UniqueConstraint("project", "name", name="uq_model_connections_project_name"),
    )
    op.create_table(
        "model_deployments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("connection", sa.String(128), nullable=False),
        sa.Column("upstream_model", sa.String(255), nullable=False),
        sa.Column("model_name", sa.String(255), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("model_publisher", sa.String(128), nullable=False),
        sa.Column("capabilities", sa.JSON(), nullable=False),
        sa.Column("sku", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.UniqueConstraint("project", "name", name="uq_model_deployments_project_name"),
    )


def downgrade() -> None:
    op.drop_table("model_deployments")
    op.drop_table("model_connections")
