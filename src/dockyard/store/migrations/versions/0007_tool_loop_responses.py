"""Responses made by the tool loop on the model endpoint (previous_response_id, approvals).

Reserved for the helper building it: filled in with its tables (issue 11).

Revision ID: 0007
Revises: 0006
"""

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
