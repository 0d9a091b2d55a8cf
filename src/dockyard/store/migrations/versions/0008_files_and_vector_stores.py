"""Files (/openai/v1/files) and vector stores with their files.

Reserved for the helper building it: filled in with its tables (issue 11).

Revision ID: 0008
Revises: 0007
"""

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
