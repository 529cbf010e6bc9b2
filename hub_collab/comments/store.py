"""Comment storage: :class:`CommentStore`, synchronous SQL on the service's engine.

Tables (``hub_collab.schema``): ``collab_comment_threads``, ``collab_comments``,
``collab_comment_reads`` (per user and cell: read up to a comment id) and
``collab_comment_notices`` (mentions and replies, per user). Records are plain JSON
(:data:`~hub_collab.types.JSONDict`), the same that travel between replicas; the
rules (who may do what) are :class:`~hub_collab.comments.service.CommentService`'s,
which calls these methods on its writer thread or in an executor, never on the
event loop. Every query is an index range scan bounded by the caller's limits.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..documents.anchors import b64
from ..schema import comment_notices, comment_reads, comment_threads, comments
from ..types import JSONDict

__all__ = ["CommentStore", "comment_record", "thread_record"]


def thread_record(row: Any) -> JSONDict:
    """A stored thread as JSON (its anchor's positions base64-encoded)."""
    anchor = None
    if row.anchor_start is not None and row.anchor_end is not None:
        anchor = {"start": b64(row.anchor_start), "end": b64(row.anchor_end), "quote": row.quote or ""}
    return {
        "id": int(row.id),
        "notebook": row.notebook_id,
        "cell_id": row.cell_id,
        "author": row.author,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "anchor": anchor,
        "resolved": bool(row.resolved),
        "resolved_by": row.resolved_by,
        "resolved_at": row.resolved_at,
        "cell_deleted": bool(row.cell_deleted),
    }


def comment_record(row: Any, cell_deleted: bool = False) -> JSONDict:
    """A stored comment as JSON."""
    return {
        "id": int(row.id),
        "thread_id": int(row.thread_id),
        "notebook": row.notebook_id,
        "cell_id": row.cell_id,
        "author": row.author,
        "text": row.text,
        "created_at": row.created_at,
        "edited_at": row.edited_at,
        "deleted": bool(row.deleted),
        "mentions": json.loads(row.mentions or "[]"),
        "cell_deleted": cell_deleted,
    }


class CommentStore:
    """Reads and writes of threads, comments, read marks and notices."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- writing ------------------------------------------------------------------------

    def create_thread(
        self,
        nb_id: str,
        cell_id: str,
        author: str,
        text: str,
        mentions: list[str],
        anchor: tuple[bytes, bytes, str] | None,
        max_threads: int,
    ) -> tuple[JSONDict, JSONDict, list[JSONDict]] | None:
        """A new thread with its first comment and the mention notices; None if the cell
        holds ``max_threads`` threads already."""
        now = time.time()
        with self.engine.begin() as conn:
            count = conn.execute(
                sa.select(sa.func.count())
                .select_from(comment_threads)
                .where(comment_threads.c.notebook_id == nb_id, comment_threads.c.cell_id == cell_id)
            ).scalar_one()
            if count >= max_threads:
                return None
            start, end, quote = anchor if anchor is not None else (None, None, None)
            key = conn.execute(
                comment_threads.insert().values(
                    notebook_id=nb_id, cell_id=cell_id, author=author, created_at=now, updated_at=now,
                    anchor_start=start, anchor_end=end, quote=quote, resolved=False, cell_deleted=False,
                )
            ).inserted_primary_key
            assert key is not None
            thread_id = int(key[0])
            comment_id = self._insert_comment(conn, thread_id, nb_id, cell_id, author, text, mentions, now)
            notices = self._notices(conn, nb_id, cell_id, thread_id, comment_id, author, mentions, None, now)
            thread = conn.execute(comment_threads.select().where(comment_threads.c.id == thread_id)).one()
            comment = conn.execute(comments.select().where(comments.c.id == comment_id)).one()
        return thread_record(thread), comment_record(comment), notices

    def reply(
        self, nb_id: str, thread_id: int, author: str, text: str, mentions: list[str], max_comments: int
    ) -> tuple[str, JSONDict | None, list[JSONDict]]:
        """Add a comment to a thread: ``("ok", comment, notices)``, or ``("full", None, [])``."""
        now = time.time()
        with self.engine.begin() as conn:
            thread = self._thread(conn, nb_id, thread_id)
            assert thread is not None  # the service looked it up first; threads are never deleted
            count = conn.execute(
                sa.select(sa.func.count()).select_from(comments).where(comments.c.thread_id == thread_id)
            ).scalar_one()
            if count >= max_comments:
                return "full", None, []
            comment_id = self._insert_comment(conn, thread_id, nb_id, thread.cell_id, author, text, mentions, now)
            conn.execute(comment_threads.update().where(comment_threads.c.id == thread_id).values(updated_at=now))
            notices = self._notices(
                conn, nb_id, thread.cell_id, thread_id, comment_id, author, mentions, thread.author, now
            )
            comment = conn.execute(comments.select().where(comments.c.id == comment_id)).one()
        return "ok", comment_record(comment), notices

    @staticmethod
    def _insert_comment(
        conn: sa.Connection, thread_id: int, nb_id: str, cell_id: str, author: str, text: str, mentions: list[str], now: float
    ) -> int:
        key = conn.execute(
            comments.insert().values(
                thread_id=thread_id, notebook_id=nb_id, cell_id=cell_id, author=author, text=text,
                created_at=now, deleted=False, mentions=json.dumps(mentions),
            )
        ).inserted_primary_key
        assert key is not None
        return int(key[0])

    @staticmethod
    def _notices(
        conn: sa.Connection,
        nb_id: str,
        cell_id: str,
        thread_id: int,
        comment_id: int,
        author: str,
        mentions: list[str],
        thread_author: str | None,
        now: float,
    ) -> list[JSONDict]:
        """Notices for the mentioned users and the thread's author (a reply), never the writer."""
        wanted: dict[str, str] = {}
        for name in mentions:
            if name != author:
                wanted.setdefault(name, "mention")
        if thread_author is not None and thread_author != author:
            wanted.setdefault(thread_author, "reply")
        out = []
        for user, kind in wanted.items():
            values = {
                "notebook_id": nb_id, "user": user, "cell_id": cell_id, "thread_id": thread_id,
                "comment_id": comment_id, "kind": kind, "created_at": now,
            }  # fmt: skip
            key = conn.execute(comment_notices.insert().values(**values)).inserted_primary_key
            assert key is not None
            out.append(_notice_json(int(key[0]), values))
        return out

    def edit(self, nb_id: str, comment_id: int, text: str, mentions: list[str]) -> JSONDict:
        with self.engine.begin() as conn:
            conn.execute(
                comments.update()
                .where(comments.c.id == comment_id, comments.c.notebook_id == nb_id, comments.c.deleted.is_(False))
                .values(text=text, edited_at=time.time(), mentions=json.dumps(mentions))
            )
            row = conn.execute(comments.select().where(comments.c.id == comment_id)).one()
        return comment_record(row)

    def delete(self, nb_id: str, comment_id: int, actor: str) -> JSONDict:
        """Make a comment a tombstone (no text, no mentions); its notices go with it."""
        with self.engine.begin() as conn:
            conn.execute(
                comments.update()
                .where(comments.c.id == comment_id, comments.c.notebook_id == nb_id)
                .values(deleted=True, deleted_by=actor, text="", mentions="[]")
            )
            conn.execute(comment_notices.delete().where(comment_notices.c.comment_id == comment_id))
            row = conn.execute(comments.select().where(comments.c.id == comment_id)).one()
        return comment_record(row)

    def set_resolved(self, nb_id: str, thread_id: int, resolved: bool, actor: str) -> JSONDict:
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(
                comment_threads.update()
                .where(comment_threads.c.id == thread_id, comment_threads.c.notebook_id == nb_id)
                .values(
                    resolved=resolved,
                    resolved_by=actor if resolved else None,
                    resolved_at=now if resolved else None,
                    updated_at=now,
                )
            )
            row = conn.execute(comment_threads.select().where(comment_threads.c.id == thread_id)).one()
        return thread_record(row)

    def mark_cells_deleted(self, nb_id: str, cell_ids: Collection[str]) -> list[JSONDict]:
        """Mark the threads of deleted cells; return them (as they are now)."""
        if not cell_ids:
            return []
        where = (
            comment_threads.c.notebook_id == nb_id,
            comment_threads.c.cell_id.in_(sorted(cell_ids)),
            comment_threads.c.cell_deleted.is_(False),
        )
        with self.engine.begin() as conn:
            ids = list(conn.execute(sa.select(comment_threads.c.id).where(*where)).scalars())
            if not ids:
                return []
            conn.execute(comment_threads.update().where(*where).values(cell_deleted=True, updated_at=time.time()))
            rows = conn.execute(comment_threads.select().where(comment_threads.c.id.in_(ids))).all()
        return [thread_record(r) for r in rows]

    def unmarked_cells(self, nb_id: str) -> set[str]:
        """The cells that have threads not marked as of a deleted cell."""
        query = sa.select(comment_threads.c.cell_id).distinct().where(
            comment_threads.c.notebook_id == nb_id, comment_threads.c.cell_deleted.is_(False)
        )
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def mark_read(self, nb_id: str, user: str, cell_id: str) -> int:
        """The user has read the cell's comments up to the newest: return its id (0: none)."""
        with self.engine.begin() as conn:
            newest = conn.execute(
                sa.select(sa.func.max(comments.c.id)).where(comments.c.notebook_id == nb_id, comments.c.cell_id == cell_id)
            ).scalar_one()
            upto = int(newest or 0)
            key = (comment_reads.c.notebook_id == nb_id, comment_reads.c.user == user, comment_reads.c.cell_id == cell_id)
            if conn.execute(comment_reads.update().where(*key).values(seen_upto=upto)).rowcount == 0:
                conn.execute(comment_reads.insert().values(notebook_id=nb_id, user=user, cell_id=cell_id, seen_upto=upto))
        return upto

    def purge_notebook(self, nb_id: str) -> None:
        """Delete everything of a notebook's comments (it is being deleted)."""
        with self.engine.begin() as conn:
            for table in (comment_notices, comment_reads, comments, comment_threads):
                conn.execute(table.delete().where(table.c.notebook_id == nb_id))

    # -- reading ------------------------------------------------------------------------

    @staticmethod
    def _thread(conn: sa.Connection, nb_id: str, thread_id: int) -> Any:
        return conn.execute(
            comment_threads.select().where(comment_threads.c.id == thread_id, comment_threads.c.notebook_id == nb_id)
        ).first()

    def thread(self, nb_id: str, thread_id: int) -> JSONDict | None:
        with self.engine.connect() as conn:
            row = self._thread(conn, nb_id, thread_id)
        return thread_record(row) if row is not None else None

    def comment(self, nb_id: str, comment_id: int) -> tuple[JSONDict, JSONDict] | None:
        """A comment and its thread, or None (also for another notebook's)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                comments.select().where(comments.c.id == comment_id, comments.c.notebook_id == nb_id)
            ).first()
            if row is None:
                return None
            thread = self._thread(conn, nb_id, int(row.thread_id))
        return comment_record(row, bool(thread.cell_deleted)), thread_record(thread)

    def threads(
        self,
        nb_id: str,
        cells: Iterable[str],
        *,
        deleted_cells: bool,
        before: int | None,
        limit: int,
        with_comments: bool = True,
    ) -> tuple[list[JSONDict], bool]:
        """Threads of ``cells`` (and of deleted cells if ``deleted_cells``), newest first,
        with their comments (oldest first); and whether there are older ones."""
        wanted = sorted(set(cells))
        clause = comment_threads.c.cell_id.in_(wanted) & comment_threads.c.cell_deleted.is_(False)
        if deleted_cells:
            clause = clause | comment_threads.c.cell_deleted.is_(True)
        query = comment_threads.select().where(comment_threads.c.notebook_id == nb_id, clause)
        if before is not None:
            query = query.where(comment_threads.c.id < before)
        query = query.order_by(comment_threads.c.id.desc()).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            more = len(rows) > limit
            out = [thread_record(r) for r in rows[:limit]]
            if with_comments and out:
                by_id = {t["id"]: t for t in out}
                for t in out:
                    t["comments"] = []
                found = conn.execute(
                    comments.select().where(comments.c.thread_id.in_(list(by_id))).order_by(comments.c.id)
                ).all()
                for row in found:
                    thread = by_id[int(row.thread_id)]
                    thread["comments"].append(comment_record(row, thread["cell_deleted"]))
        return out, more

    def counts(self, nb_id: str, user: str) -> dict[str, dict[str, int]]:
        """Per cell (not deleted): threads, open threads, and comments ``user`` has not read
        (others' live comments newer than the user's read mark)."""
        out: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(comment_threads.c.cell_id, comment_threads.c.resolved, sa.func.count())
                .where(comment_threads.c.notebook_id == nb_id, comment_threads.c.cell_deleted.is_(False))
                .group_by(comment_threads.c.cell_id, comment_threads.c.resolved)
            ).all()
            for cell_id, resolved, n in rows:
                entry = out.setdefault(cell_id, {"threads": 0, "open": 0, "unread": 0})
                entry["threads"] += int(n)
                if not resolved:
                    entry["open"] += int(n)
            seen = sa.func.coalesce(comment_reads.c.seen_upto, 0)
            joined = comments.outerjoin(
                comment_reads,
                (comment_reads.c.notebook_id == comments.c.notebook_id)
                & (comment_reads.c.cell_id == comments.c.cell_id)
                & (comment_reads.c.user == user),
            )
            unread = conn.execute(
                sa.select(comments.c.cell_id, sa.func.count())
                .select_from(joined)
                .where(
                    comments.c.notebook_id == nb_id,
                    comments.c.author != user,
                    comments.c.deleted.is_(False),
                    comments.c.id > seen,
                )
                .group_by(comments.c.cell_id)
            ).all()
            for cell_id, n in unread:
                if cell_id in out:
                    out[cell_id]["unread"] = int(n)
        return out

    def seen(self, nb_id: str, user: str) -> dict[str, int]:
        """The user's read marks in a notebook, per cell."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(comment_reads.c.cell_id, comment_reads.c.seen_upto).where(
                    comment_reads.c.notebook_id == nb_id, comment_reads.c.user == user
                )
            ).all()
        return {cell_id: int(upto) for cell_id, upto in rows}

    def notices(self, nb_id: str, user: str, before: int | None, limit: int) -> tuple[list[JSONDict], bool]:
        """The user's notices, newest first, each with its comment's author, text and thread."""
        query = (
            sa.select(comment_notices, comments.c.author, comments.c.text, comment_threads.c.cell_deleted)
            .join(comments, comments.c.id == comment_notices.c.comment_id)
            .join(comment_threads, comment_threads.c.id == comment_notices.c.thread_id)
            .where(comment_notices.c.notebook_id == nb_id, comment_notices.c.user == user)
        )
        if before is not None:
            query = query.where(comment_notices.c.id < before)
        query = query.order_by(comment_notices.c.id.desc()).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        out = []
        for row in rows[:limit]:
            notice = _notice_json(int(row.id), row._asdict())
            notice.update(author=row.author, text=row.text, cell_deleted=bool(row.cell_deleted))
            out.append(notice)
        return out, len(rows) > limit


def _notice_json(notice_id: int, values: Any) -> JSONDict:
    return {
        "id": notice_id,
        "notebook": values["notebook_id"],
        "user": values["user"],
        "cell_id": values["cell_id"],
        "thread_id": int(values["thread_id"]),
        "comment_id": int(values["comment_id"]),
        "kind": values["kind"],
        "created_at": values["created_at"],
    }
