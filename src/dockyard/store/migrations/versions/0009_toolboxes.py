"""Toolboxes: named groups of platform tools served over MCP.

Reserved for the helper building it: filled in with its tables (issue 11).

Revision ID: 0009
Revises: 0008
"""

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
