"""Comments on cells: threads (anchored to a cell, optionally to a range of its source),
their comments, each user's read marks per cell, and notices (mentions, replies).

Self-contained: four new tables, nothing else touched; the downgrade drops them.

Revision ID: 0004_comments
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004_comments"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "collab_comment_threads",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("notebook_id", sa.String(64), nullable=False),
        sa.Column("cell_id", sa.String(64), nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("anchor_start", sa.LargeBinary(), nullable=True),
        sa.Column("anchor_end", sa.LargeBinary(), nullable=True),
        sa.Column("quote", sa.Text(), nullable=True),
        sa.Column("resolved", sa.Boolean(), nullable=False),
        sa.Column("resolved_by", sa.String(255), nullable=True),
        sa.Column("resolved_at", sa.Float(), nullable=True),
        sa.Column("cell_deleted", sa.Boolean(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_collab_comment_threads_nb_cell", "collab_comment_threads", ["notebook_id", "cell_id", "id"])
    op.create_table(
        "collab_comments",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("thread_id", sa.BigInteger(), nullable=False),
        sa.Column("notebook_id", sa.String(64), nullable=False),
        sa.Column("cell_id", sa.String(64), nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("edited_at", sa.Float(), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("deleted_by", sa.String(255), nullable=True),
        sa.Column("mentions", sa.Text(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_collab_comments_thread", "collab_comments", ["thread_id", "id"])
    op.create_index("ix_collab_comments_nb_cell", "collab_comments", ["notebook_id", "cell_id", "id"])
    op.create_table(
        "collab_comment_reads",
        sa.Column("notebook_id", sa.String(64), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("cell_id", sa.String(64), nullable=False),
        sa.Column("seen_upto", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("notebook_id", "user", "cell_id"),
    )
    op.create_table(
        "collab_comment_notices",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("notebook_id", sa.String(64), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("cell_id", sa.String(64), nullable=False),
        sa.Column("thread_id", sa.BigInteger(), nullable=False),
        sa.Column("comment_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_collab_comment_notices_user", "collab_comment_notices", ["notebook_id", "user", "id"])


def downgrade() -> None:
    op.drop_index("ix_collab_comment_notices_user", table_name="collab_comment_notices")
    op.drop_table("collab_comment_notices")
    op.drop_table("collab_comment_reads")
    op.drop_index("ix_collab_comments_nb_cell", table_name="collab_comments")
    op.drop_index("ix_collab_comments_thread", table_name="collab_comments")
    op.drop_table("collab_comments")
    op.drop_index("ix_collab_comment_threads_nb_cell", table_name="collab_comment_threads")
    op.drop_table("collab_comment_threads")
