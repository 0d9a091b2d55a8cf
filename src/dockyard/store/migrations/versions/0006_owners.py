"""Owners: which caller (and which delegated end user) made each session, response and invocation.

Nullable columns on the three tables the gateway routes by, rather than a table of their own: every
lookup of a session or a route needs its owner, on the warm path too. Rows made before this revision
keep no owner, and `dockyard.identity.ownership` gives those to the operator.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TABLES = ("sessions", "response_routes", "invocation_routes")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("owner_subject", sa.String(300), nullable=True))
            batch.add_column(sa.Column("owner_user", sa.String(256), nullable=True))
    op.create_index("ix_sessions_owner_subject", "sessions", ["owner_subject"])


def downgrade() -> None:
    op.drop_index("ix_sessions_owner_subject", "sessions")
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("owner_user")
            batch.drop_column("owner_subject")
