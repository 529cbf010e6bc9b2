"""The schema of the last release before migrations: notebooks, update log, checkpoints,
audit, chat and permission rules.

A database that release made (its tables, no revision) is stamped as this revision by
``hub-collab upgrade-db``.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "collab_notebooks",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("epoch", sa.String(64), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "collab_doc_updates",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("notebook_id", sa.String(64), nullable=False),
        sa.Column("doc", sa.String(80), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_collab_doc_updates_notebook_id", "collab_doc_updates", ["notebook_id"])
    op.create_table(
        "collab_doc_checkpoints",
        sa.Column("notebook_id", sa.String(64), nullable=False),
        sa.Column("doc", sa.String(80), nullable=False),
        sa.Column("upto", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("notebook_id", "doc"),
    )
    op.create_table(
        "collab_audit",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("notebook_id", sa.String(64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_collab_audit_notebook_id", "collab_audit", ["notebook_id"])
    op.create_table(
        "collab_chat",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("notebook_id", sa.String(64), nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("edited_at", sa.Float(), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("deleted_by", sa.String(255), nullable=True),
        sa.Column("mentions", sa.Text(), nullable=False),
        sa.Column("refs", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_collab_chat_notebook_id_id", "collab_chat", ["notebook_id", "id"])
    op.create_table(
        "collab_permission_rules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ptype", sa.String(255), nullable=True),
        *(sa.Column(f"v{i}", sa.String(255), nullable=True) for i in range(6)),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_collab_permission_rules_nb_obj", "collab_permission_rules", ["v1", "v2"])


def downgrade() -> None:
    for index, table in (
        ("ix_collab_permission_rules_nb_obj", "collab_permission_rules"),
        ("ix_collab_chat_notebook_id_id", "collab_chat"),
        ("ix_collab_audit_notebook_id", "collab_audit"),
        ("ix_collab_doc_updates_notebook_id", "collab_doc_updates"),
    ):
        op.drop_index(index, table_name=table)
    for table in (
        "collab_permission_rules",
        "collab_chat",
        "collab_audit",
        "collab_doc_checkpoints",
        "collab_doc_updates",
        "collab_notebooks",
    ):
        op.drop_table(table)
