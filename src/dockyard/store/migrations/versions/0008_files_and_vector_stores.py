"""Files (/openai/v1/files) and vector stores with their files, file batches and chunks (issue 11).

A file's bytes live on disk under `<home>/files` and a vector store's index under
`<home>/vector_stores/<id>/`; these tables hold what is known about them, and each chunk's text, whose
integer key is its label in the index.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _owner() -> list[sa.Column[object]]:
    return [sa.Column("owner_subject", sa.String(300), nullable=False),
            sa.Column("owner_user", sa.String(256), nullable=True)]


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("project", sa.String(64), nullable=False),
        *_owner(),
        sa.Column("filename", sa.String(512), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
    )
    op.create_index("ix_files_project", "files", ["project"])
    op.create_table(
        "vector_stores",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("project", sa.String(64), nullable=False),
        *_owner(),
        sa.Column("name", sa.String(512), nullable=True),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("last_active_at", sa.Integer(), nullable=False),
        sa.Column("expires_after", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("embedding_deployment", sa.String(128), nullable=False),
    )
    op.create_index("ix_vector_stores_project", "vector_stores", ["project"])
    op.create_table(
        "vector_store_files",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("vector_store_id", sa.String(64), sa.ForeignKey("vector_stores.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("file_id", sa.String(64), nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("last_error", sa.JSON(), nullable=True),
        sa.Column("usage_bytes", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("chunking_strategy", sa.JSON(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.UniqueConstraint("vector_store_id", "file_id", name="uq_vector_store_files_store_file"),
    )
    op.create_index("ix_vector_store_files_vector_store_id", "vector_store_files", ["vector_store_id"])
    op.create_index("ix_vector_store_files_batch_id", "vector_store_files", ["batch_id"])
    op.create_table(
        "vector_store_file_batches",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("vector_store_id", sa.String(64), sa.ForeignKey("vector_stores.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("cancelled", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_vector_store_file_batches_vector_store_id", "vector_store_file_batches", ["vector_store_id"])
    op.create_table(
        "vector_store_chunks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("vector_store_id", sa.String(64), sa.ForeignKey("vector_stores.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("file_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
    )
    op.create_index("ix_vector_store_chunks_vector_store_id", "vector_store_chunks", ["vector_store_id"])
    op.create_index("ix_vector_store_chunks_file_id", "vector_store_chunks", ["file_id"])


def downgrade() -> None:
    for table in ("vector_store_chunks", "vector_store_file_batches", "vector_store_files", "vector_stores", "files"):
        op.drop_table(table)
