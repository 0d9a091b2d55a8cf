"""Runtime bookkeeping: a stable uid and a crash count per version, and registry connections.

Revision ID: 0002
Revises: 0001
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agent_versions") as batch:
        batch.add_column(sa.Column("uid", sa.String(32), nullable=True))
        batch.add_column(sa.Column("restarts", sa.Integer(), nullable=False, server_default="0"))
    connection = op.get_bind()
    for (row_id,) in connection.execute(sa.text("SELECT id FROM agent_versions")).all():
        connection.execute(sa.text("UPDATE agent_versions SET uid = :uid WHERE id = :id"),
                           {"uid": uuid.uuid4().hex, "id": row_id})
    with op.batch_alter_table("agent_versions") as batch:
        batch.alter_column("uid", existing_type=sa.String(32), nullable=False)
        batch.create_unique_constraint("uq_agent_versions_uid", ["uid"])
    op.create_table(
        "registry_connections",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("server", sa.String(255), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("password", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.UniqueConstraint("project", "name", name="uq_registry_connections_project_name"),
    )


def downgrade() -> None:
    op.drop_table("registry_connections")
    with op.batch_alter_table("agent_versions") as batch:
        batch.drop_constraint("uq_agent_versions_uid", type_="unique")
        batch.drop_column("restarts")
        batch.drop_column("uid")
