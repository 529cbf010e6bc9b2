"""Kernels outlive the service: ``collab_kernels`` remembers each running kernel
(where it runs, how to find it again) and the execution in progress.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "collab_kernels",
        sa.Column("notebook_id", sa.String(64), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("kernel_name", sa.String(255), nullable=False),
        sa.Column("info", sa.Text(), nullable=False),
        sa.Column("run", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("notebook_id", "user"),
    )


def downgrade() -> None:
    op.drop_table("collab_kernels")
