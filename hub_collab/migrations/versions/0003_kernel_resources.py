"""Kernels on several resources: a kernel record is keyed by its resource and
kernelspec too (switching back finds the kernel kept there), and
``collab_kernel_choices`` remembers what each user picked in per-user mode.

The running-kernel rows are carried over: a ``hub`` kernel ran on its user's default
server, or for a shared kernel on the server its notebook's owner chose
(``shared_server`` in the notebook's settings); ``gateway`` and ``local`` kernels on
those resources.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

COLUMNS = ("notebook_id", "user", "provider", "kernel_name", "info", "run", "updated_at")


def _create_kernels(keyed: bool) -> None:
    key = ("notebook_id", "user", "resource", "kernel_name") if keyed else ("notebook_id", "user")
    extra = [sa.Column("resource", sa.String(300), nullable=False)] if keyed else []
    op.create_table(
        "collab_kernels",
        sa.Column("notebook_id", sa.String(64), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        *extra,
        sa.Column("kernel_name", sa.String(255), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("info", sa.Text(), nullable=False),
        sa.Column("run", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(*key),
    )


def _resource(row: sa.Row[tuple[object, ...]], settings: dict[str, str]) -> str:
    if row.provider != "hub":
        return str(row.provider)
    if row.user:
        return "server:"
    try:
        chosen = json.loads(settings.get(str(row.notebook_id)) or "{}").get("shared_server")
    except ValueError:
        chosen = None
    return f"server:{chosen}" if isinstance(chosen, str) else "server:"


def upgrade() -> None:
    conn = op.get_bind()
    old = sa.table("collab_kernels", *(sa.column(c) for c in COLUMNS))
    rows = conn.execute(sa.select(old)).all()
    nbs = sa.table("collab_notebooks", sa.column("id"), sa.column("settings"))
    settings = {str(r.id): r.settings for r in conn.execute(sa.select(nbs.c.id, nbs.c.settings)).all()} if rows else {}
    # the rows are few (running kernels): rebuild the table with its new key
    op.drop_table("collab_kernels")
    _create_kernels(keyed=True)
    if rows:
        new = sa.table("collab_kernels", sa.column("resource"), *(sa.column(c) for c in COLUMNS))
        conn.execute(new.insert(), [{**row._asdict(), "resource": _resource(row, settings)} for row in rows])
    op.create_table(
        "collab_kernel_choices",
        sa.Column("notebook_id", sa.String(64), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("resource", sa.String(300), nullable=False),
        sa.Column("kernel_name", sa.String(255), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("notebook_id", "user"),
    )


def downgrade() -> None:
    op.drop_table("collab_kernel_choices")
    conn = op.get_bind()
    old = sa.table("collab_kernels", *(sa.column(c) for c in COLUMNS))
    rows = conn.execute(sa.select(old)).all()
    op.drop_table("collab_kernels")
    _create_kernels(keyed=False)
    # one kernel per (notebook, user) fits the old key: the most recent one is kept
    latest: dict[tuple[str, str], dict[str, object]] = {}
    for row in sorted(rows, key=lambda r: r.updated_at):
        latest[(row.notebook_id, row.user)] = row._asdict()
    if latest:
        conn.execute(sa.table("collab_kernels", *(sa.column(c) for c in COLUMNS)).insert(), list(latest.values()))
