"""History: every accepted update kept with its author, session and time
(``collab_doc_history``, its docs and authors by key), and per-doc snapshots
(``collab_doc_snapshots``) that rebuild any moment quickly.

What a database held before this revision becomes each doc's *baseline* snapshot:
its checkpoint merged with the log rows not yet checkpointed (their authors and times
were never recorded). The live log and the checkpoints are not touched, so a
downgrade drops the new tables and loses only the history recorded since.

Self-contained: it creates tables only (no other revision's table is altered).

Revision ID: 0005
Revises: 0004_comments
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from alembic import op
from pycrdt import merge_updates

revision: str = "0005"
down_revision: str | None = "0004_comments"
branch_labels: str | None = None
depends_on: str | None = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def _create_tables() -> None:
    op.create_table(
        "collab_history_docs",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("notebook_id", sa.String(64), nullable=False),
        sa.Column("doc", sa.String(80), nullable=False),
        sa.UniqueConstraint("notebook_id", "doc", name="uq_collab_history_docs_notebook_doc"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "collab_history_authors",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("session", sa.String(64), nullable=False),
        sa.UniqueConstraint("author", "session", name="uq_collab_history_authors_author_session"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "collab_doc_history",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("doc_key", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("author_key", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("authors", sa.Text(), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_collab_doc_history_doc_key_id", "collab_doc_history", ["doc_key", "id"])
    op.create_index("ix_collab_doc_history_at", "collab_doc_history", ["at"])
    op.create_table(
        "collab_doc_snapshots",
        sa.Column("doc_key", sa.BigInteger(), nullable=False),
        sa.Column("upto", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("baseline", sa.Boolean(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("doc_key", "upto"),
    )


def _baselines(conn: sa.Connection) -> None:
    """Each doc's state before history was kept: checkpoint + log rows, merged."""
    checkpoints = sa.table("collab_doc_checkpoints", sa.column("notebook_id"), sa.column("doc"), sa.column("data"))
    updates = sa.table("collab_doc_updates", sa.column("id"), sa.column("notebook_id"), sa.column("doc"), sa.column("data"))
    docs = sa.table("collab_history_docs", sa.column("id"), sa.column("notebook_id"), sa.column("doc"))
    snapshots = sa.table(
        "collab_doc_snapshots", sa.column("doc_key"), sa.column("upto"), sa.column("at"), sa.column("baseline"), sa.column("data")
    )
    notebooks = [str(n) for n in conn.execute(sa.text("SELECT id FROM collab_notebooks")).scalars()]
    for nb in notebooks:  # one notebook at a time: memory stays bounded by one notebook
        parts: dict[str, list[bytes]] = defaultdict(list)
        for doc, data in conn.execute(sa.select(checkpoints.c.doc, checkpoints.c.data).where(checkpoints.c.notebook_id == nb)):
            parts[doc].append(bytes(data))
        query = sa.select(updates.c.doc, updates.c.data).where(updates.c.notebook_id == nb).order_by(updates.c.id)
        for doc, data in conn.execute(query):
            parts[doc].append(bytes(data))
        if not parts:
            continue
        conn.execute(docs.insert(), [{"notebook_id": nb, "doc": doc} for doc in sorted(parts)])
        keys = {str(doc): int(key) for doc, key in conn.execute(sa.select(docs.c.doc, docs.c.id).where(docs.c.notebook_id == nb))}
        conn.execute(
            snapshots.insert(),
            [
                {"doc_key": keys[doc], "upto": 0, "at": 0.0, "baseline": True,
                 "data": blobs[0] if len(blobs) == 1 else merge_updates(*blobs)}
                for doc, blobs in sorted(parts.items())
            ],
        )  # fmt: skip


def upgrade() -> None:
    _create_tables()
    _baselines(op.get_bind())


def downgrade() -> None:
    op.drop_table("collab_doc_snapshots")
    op.drop_index("ix_collab_doc_history_at", table_name="collab_doc_history")
    op.drop_index("ix_collab_doc_history_doc_key_id", table_name="collab_doc_history")
    op.drop_table("collab_doc_history")
    op.drop_table("collab_history_authors")
    op.drop_table("collab_history_docs")
