"""The tool loop's Responses keep their input items, for `GET …/responses/{id}/input_items`.

Null in rows made before (they list no items). Pruning by age uses 0007's index on `created_at`.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tool_loop_responses", sa.Column("input_items", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tool_loop_responses") as table:
        table.drop_column("input_items")
