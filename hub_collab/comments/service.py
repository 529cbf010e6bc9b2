"""The rules, anchors and live fan-out of comments: :class:`CommentService`.

Use the application's one service, ``app.comments``. Every method takes the caller's
identity and *current* :class:`~hub_collab.permissions.access.Access`; the command
layer has already checked the declared action (``comment_post``/``comment_read`` on
the cell for a new thread, ``open`` for the rest), and the service decides what
only it can: which thread or comment an id names and whether the caller may see it
(a thread inherits its cell's ``r``: an unreadable one is unknown, exactly like one
that does not exist), whose comment it is, who may resolve.

Every live event goes through :meth:`CommentService.publish` with the *stored*
record; :meth:`CommentService.deliver` renders it for each local session that may
see it *now*, and the relay carries the same event to the other replicas.
The service follows the rooms (:class:`~hub_collab.documents.observers.RoomObserver`):
when a cell leaves ``index`` on the replica that wrote it, its threads are marked
``cell_deleted`` (kept, shown to the notebook's owner and admins).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pycrdt import Text
from sqlalchemy.engine import Engine

from ..documents.anchors import (
    InvalidPosition,
    MalformedSource,
    Position,
    SourceText,
    b64decode_position,
    encode_position,
)
from ..documents.notebook import cell_doc
from ..documents.observers import RoomObserverBase
from ..errors import BadRequest, Conflict, Forbidden, NotFound, TooLarge
from ..messages import MessageService, clean_text, parse_int, parse_mentions, positive_id
from ..permissions.access import Access, Identity, check_action
from ..types import INDEX_DOC, EventRelay, JSONDict
from .store import CommentStore

if TYPE_CHECKING:
    from ..documents.room import NotebookRoom
    from ..documents.rooms import RoomManager
    from ..permissions.store import PermissionStore
    from ..store import Store

log = logging.getLogger("hub_collab.comments")

T = TypeVar("T")

COMMENT_READ = check_action("comment_read")
COMMENT_POST = check_action("comment_post")
COMMENT_MODERATE = check_action("comment_moderate")

#: Largest page (threads or notices) a client may ask for.
MAX_PAGE_SIZE = 200
#: The quote kept of an anchored range, in UTF-16 code units.
MAX_QUOTE = 200


def visible(access: Access, cell_id: str, cell_deleted: bool) -> bool:
    """May ``access`` see a thread (or a comment, a notice) on ``cell_id`` now?

    A thread inherits its cell's ``r``; a deleted cell's threads are the notebook
    owner's and the admins' (who may read every cell).
    """
    if cell_deleted:
        return access.can("open") and access.can(COMMENT_MODERATE)
    return access.can(COMMENT_READ, cell_id)


def render_comment(record: JSONDict, access: Access) -> JSONDict:
    """A comment as ``access``'s identity sees it (``mentioned``; tombstones carry no text)."""
    if record["deleted"]:
        return {**record, "text": "", "mentions": [], "mentioned": False}
    return {**record, "mentioned": access.identity.name in record["mentions"]}


def render_thread(record: JSONDict, access: Access) -> JSONDict:
    out = dict(record)
    if "comments" in record:
        out["comments"] = [render_comment(c, access) for c in record["comments"]]
    return out


class CommentService(MessageService, RoomObserverBase):
    """Persistence, rules and live fan-out of comment threads on cells.

    Create one per process, :meth:`start` it, :meth:`drain` and :meth:`stop` it at
    shutdown. Writes run on one background thread, so on one replica events are
    stored and published in id order.
    """

    event_kind = "comment"
    noun = "comments"

    def __init__(
        self,
        engine: Engine,
        *,
        rooms: RoomManager | None = None,
        permissions: PermissionStore | None = None,
        groups_of: Callable[[str], frozenset[str]] = lambda name: frozenset(),
        store: Store | None = None,
        max_length: int = 4000,
        rate: float = 1.0,
        burst: int = 10,
        page_size: int = 50,
        max_threads_per_cell: int = 100,
        max_comments_per_thread: int = 200,
        relay: EventRelay | None = None,
    ) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be at least 1, got {max_length!r}")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be from 1 to {MAX_PAGE_SIZE}, got {page_size!r}")
        if max_threads_per_cell < 1 or max_comments_per_thread < 1:
            raise ValueError("max_threads_per_cell and max_comments_per_thread must be at least 1")
        super().__init__(rooms=rooms, permissions=permissions, groups_of=groups_of, rate=rate, burst=burst, relay=relay)
        self.db = CommentStore(engine)
        self.store = store
        self.max_length = max_length
        self.page_size = page_size
        self.max_threads_per_cell = max_threads_per_cell
        self.max_comments_per_thread = max_comments_per_thread
        #: the cells of each loaded room, to see which ones an index change removed
        self._cells: dict[str, set[str]] = {}
        #: (notebook, cell) -> (the doc state it was built from, the ordered source)
        self._sources: dict[tuple[str, str], tuple[bytes, SourceText | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: rooms whose index changed here (not from another replica) since last looked at
        self._local_change: set[str] = set()
        self._checking: set[str] = set()

    # -- lifecycle --------------------------------------------------------------------

    async def drain(self) -> None:
        """Wait for the background work (marking a deleted cell's threads)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    @staticmethod
    async def _read(fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    # -- input ------------------------------------------------------------------------

    def _text(self, value: Any) -> str:
        return clean_text(value, self.max_length, code="invalid_comment", what="comment")

    async def _thread_for(self, room: NotebookRoom, access: Access, thread_id: Any) -> JSONDict:
        """The thread ``thread_id`` names if the caller may see it; 404 otherwise (the same
        answer for a thread on a cell they cannot read as for one that does not exist)."""
        tid = positive_id(thread_id, code="unknown_thread", what="thread")
        thread = await self._read(self.db.thread, room.id, tid)
        if thread is None or not visible(access, thread["cell_id"], thread["cell_deleted"]):
            raise NotFound("no such thread", code="unknown_thread")
        return thread

    async def _comment_for(
        self, room: NotebookRoom, access: Access, comment_id: Any, thread_id: Any = None
    ) -> tuple[JSONDict, JSONDict]:
        """The comment and its thread if the caller may see them (and, with ``thread_id``,
        if the comment is in that thread); 404 otherwise."""
        cid = positive_id(comment_id, code="unknown_comment", what="comment")
        tid = None if thread_id is None else positive_id(thread_id, code="unknown_comment", what="comment")
        found = await self._read(self.db.comment, room.id, cid)
        if (
            found is None
            or not visible(access, found[1]["cell_id"], found[1]["cell_deleted"])
            or (tid is not None and found[1]["id"] != tid)
        ):
            raise NotFound("no such comment", code="unknown_comment")
        return found

    @staticmethod
    def _may_post(access: Access, thread: JSONDict) -> None:
        if thread["cell_deleted"]:
            raise Conflict("this thread's cell was deleted: the thread is kept read-only", code="cell_deleted")
        if not access.can(COMMENT_POST, thread["cell_id"]):
            raise Forbidden("you may not comment on this cell")

    # -- anchors ------------------------------------------------------------------------

    async def source(self, room: NotebookRoom, cell_id: str) -> SourceText | None:
        """The cell's source in Yjs order (cached until the doc changes); None if it cannot
        be ordered here (then anchors are not resolved)."""
        name = cell_doc(cell_id)
        if name not in room.docs:
            return None
        state = room.docs.state(name)
        cached = self._sources.get((room.id, cell_id))
        if cached is not None and cached[0] is state:
            return cached[1]
        text = str(room.docs.read(name).get("source", type=Text))
        source = await self._read(_build_source, state, text)
        self._sources[(room.id, cell_id)] = (state, source)
        return source

    @staticmethod
    def _parse_anchor(value: Any) -> tuple[Position, Position] | None:
        """An anchor ``{"start", "end"}`` of base64 Yjs relative positions, read (cheap:
        before the rate limit)."""
        if value is None:
            return None
        if not isinstance(value, dict) or set(value) != {"start", "end"}:
            raise BadRequest('anchor must be an object {"start", "end"} of base64 Yjs relative positions', code="invalid_anchor")
        try:
            return b64decode_position(value["start"]), b64decode_position(value["end"])
        except InvalidPosition as exc:
            raise BadRequest(f"anchor: {exc}", code="invalid_anchor") from exc

    async def _anchor(
        self, room: NotebookRoom, cell_id: str, anchor: tuple[Position, Position] | None
    ) -> tuple[bytes, bytes, str] | None:
        """The anchor checked against the cell's source (both ends in it, start before
        end; work linear in the cell's size, so after the rate limit): the positions
        encoded again, canonically, and the quote."""
        if anchor is None:
            return None
        start, end = anchor
        source = await self.source(room, cell_id)
        if source is None:
            raise Conflict("this cell's source cannot take anchors now; comment on the whole cell", code="invalid_anchor")
        for end_name, pos in (("start", start), ("end", end)):
            if pos.item is not None and not source.has(pos.item):
                raise BadRequest(f"anchor {end_name} is not a position in this cell's source", code="invalid_anchor")
        i, j = source.index(start), source.index(end)
        if i is None or j is None or i >= j:
            raise BadRequest("anchor: the range is empty (start must come before end)", code="invalid_anchor")
        quote = source.slice(i, min(j, i + MAX_QUOTE))
        if j - i > MAX_QUOTE:
            quote += "…"
        return encode_position(start), encode_position(end), quote

    async def _with_ranges(self, room: NotebookRoom, threads: list[JSONDict]) -> list[JSONDict]:
        """Each thread with ``range``: where its anchor is now (UTF-16 units), or None."""
        sources: dict[str, SourceText | None] = {}
        for thread in threads:
            anchor = thread.get("anchor")
            thread["range"] = None
            if anchor is None or thread["cell_deleted"]:
                continue
            cid = thread["cell_id"]
            if cid not in sources:
                sources[cid] = await self.source(room, cid)
            source = sources[cid]
            if source is None:
                continue
            try:
                i = source.index(b64decode_position(anchor["start"]))
                j = source.index(b64decode_position(anchor["end"]))
            except InvalidPosition:
                continue
            if i is not None and j is not None:
                thread["range"] = {"start": i, "end": max(i, j)}
        return threads

    # -- writing ------------------------------------------------------------------------

    async def create(
        self, room: NotebookRoom, identity: Identity, access: Access, cell_id: str, text: Any, anchor: Any = None
    ) -> tuple[JSONDict, JSONDict, list[JSONDict]]:
        """Open a thread on a cell (the caller may comment on it: checked by the command
        layer); return the thread, its first comment and warnings."""
        clean = self._text(text)
        parsed = self._parse_anchor(anchor)
        self._rate(room.id, identity)
        stored_anchor = await self._anchor(room, cell_id, parsed)
        mentions = parse_mentions(clean)
        created = await self._write(
            self.db.create_thread, room.id, cell_id, identity.name, clean, mentions, stored_anchor, self.max_threads_per_cell
        )
        if created is None:
            raise TooLarge(f"this cell has {self.max_threads_per_cell} threads, the most it may have", code="too_many_threads")
        thread, comment, notices = created
        [thread] = await self._with_ranges(room, [thread])
        self.publish(room.id, {"type": "comment_thread", "thread": thread})
        self.publish(room.id, {"type": "comment", "comment": comment})
        self._publish_notices(room.id, notices, comment)
        warnings = self.mention_warnings(room.id, identity, cell_id, mentions)
        return render_thread({**thread, "comments": [comment]}, access), render_comment(comment, access), warnings

    async def reply(
        self, room: NotebookRoom, identity: Identity, access: Access, thread_id: Any, text: Any
    ) -> tuple[JSONDict, list[JSONDict]]:
        thread = await self._thread_for(room, access, thread_id)
        self._may_post(access, thread)
        clean = self._text(text)
        self._rate(room.id, identity)
        mentions = parse_mentions(clean)
        _, comment, notices = await self._write(
            self.db.reply, room.id, thread["id"], identity.name, clean, mentions, self.max_comments_per_thread
        )
        if comment is None:  # outcome "full"
            raise TooLarge(f"this thread has {self.max_comments_per_thread} comments, the most it may have", code="thread_full")
        self.publish(room.id, {"type": "comment", "comment": comment})
        self._publish_notices(room.id, notices, comment)
        return render_comment(comment, access), self.mention_warnings(room.id, identity, thread["cell_id"], mentions)

    async def edit(
        self, room: NotebookRoom, identity: Identity, access: Access, comment_id: Any, text: Any, thread_id: Any = None
    ) -> tuple[JSONDict, list[JSONDict]]:
        """Replace the text of one's own comment (nobody edits someone else's words)."""
        comment, thread = await self._comment_for(room, access, comment_id, thread_id)
        if comment["author"] != identity.name:
            raise Forbidden("you may only edit your own comments")
        self._may_post(access, thread)
        if comment["deleted"]:
            raise Conflict("this comment was deleted", code="comment_deleted")
        clean = self._text(text)
        self._rate(room.id, identity)
        mentions = parse_mentions(clean)
        edited = await self._write(self.db.edit, room.id, comment["id"], clean, mentions)
        self.publish(room.id, {"type": "comment", "comment": edited})
        return render_comment(edited, access), self.mention_warnings(room.id, identity, thread["cell_id"], mentions)

    async def delete(
        self, room: NotebookRoom, identity: Identity, access: Access, comment_id: Any, thread_id: Any = None
    ) -> JSONDict:
        """Delete one's own comment, or any as the notebook's owner or an admin; the
        comment stays as a tombstone (deleting one again is a no-op)."""
        comment, thread = await self._comment_for(room, access, comment_id, thread_id)
        moderator = access.can(COMMENT_MODERATE)
        own = comment["author"] == identity.name and access.can(COMMENT_POST, thread["cell_id"])
        if not (own or moderator):
            raise Forbidden("you may only delete your own comments (the notebook's owner and admins moderate)")
        if comment["deleted"]:
            return render_comment(comment, access)
        tomb = await self._write(self.db.delete, room.id, comment["id"], identity.name)
        tomb["cell_deleted"] = thread["cell_deleted"]
        self.publish(room.id, {"type": "comment", "comment": tomb})
        if comment["author"] != identity.name and self.store is not None:
            await self._write(
                self.store.add_audit, room.id, identity.name, "comment_moderate", str(comment["id"]), {"author": comment["author"]}
            )
        return render_comment(tomb, access)

    async def set_resolved(
        self, room: NotebookRoom, identity: Identity, access: Access, thread_id: Any, resolved: Any
    ) -> JSONDict:
        """Resolve or reopen a thread: its author, whoever may write the cell, the
        notebook's owner or an admin."""
        if not isinstance(resolved, bool):
            raise BadRequest("resolved must be true or false", code="invalid_command")
        thread = await self._thread_for(room, access, thread_id)
        self._may_post(access, thread)
        if not (
            thread["author"] == identity.name
            or access.can("write_cell", thread["cell_id"])
            or access.can(COMMENT_MODERATE)
        ):
            raise Forbidden("only the thread's author, the cell's writers, the notebook's owner and admins resolve or reopen it")
        if thread["resolved"] == resolved:
            [same] = await self._with_ranges(room, [thread])
            return render_thread(same, access)
        changed = await self._write(self.db.set_resolved, room.id, thread["id"], resolved, identity.name)
        [changed] = await self._with_ranges(room, [changed])
        self.publish(room.id, {"type": "comment_thread", "thread": changed})
        return render_thread(changed, access)

    async def mark_read(self, room: NotebookRoom, identity: Identity, access: Access, cell_id: str) -> JSONDict:
        """The caller has read the cell's comments (the command layer checked ``comment_read``)."""
        upto = await self._write(self.db.mark_read, room.id, identity.name, cell_id)
        event = {"type": "comment_seen", "user": identity.name, "cell_id": cell_id, "seen_upto": upto}
        self.publish(room.id, event)
        return {"cell_id": cell_id, "seen_upto": upto, "unread": 0}

    def mention_warnings(self, nb_id: str, writer: Identity, cell_id: str, mentions: list[str]) -> list[JSONDict]:
        """A warning for every mentioned user who cannot read the cell (and so will not see it)."""
        return self.unreadable_mentions(
            nb_id, writer, mentions, lambda access: access.can(COMMENT_READ, cell_id),
            "{name} cannot read this cell and will not see this comment",
        )

    # -- reading ------------------------------------------------------------------------

    def _page(self, before: Any, limit: Any) -> tuple[int | None, int]:
        n = self.page_size if limit is None else parse_int(limit, "limit", 1, MAX_PAGE_SIZE)
        upto = None if before is None or before == "" else parse_int(before, "before", 1, 2**63 - 1)
        return upto, n

    async def list_threads(
        self, room: NotebookRoom, access: Access, cell_id: Any = None, before: Any = None, limit: Any = None
    ) -> JSONDict:
        """Threads (newest first, each with its comments) on one cell or on every cell the
        caller may read; ``next_before`` pages to older ones."""
        upto, n = self._page(before, limit)
        moderator = access.can(COMMENT_MODERATE)
        if cell_id is None or cell_id == "":
            cells = access.readable_cells()
            deleted = moderator
        else:
            if not isinstance(cell_id, str) or cell_doc(cell_id) not in room.docs:
                raise NotFound("no such cell", code="unknown_cell")
            if not access.can(COMMENT_READ, cell_id):
                raise Forbidden("you may not read this cell's comments")
            cells, deleted = frozenset({cell_id}), False
        threads, more = await self._read(
            lambda: self.db.threads(room.id, cells, deleted_cells=deleted, before=upto, limit=n)
        )
        threads = await self._with_ranges(room, threads)
        return {
            "threads": [render_thread(t, access) for t in threads],
            "next_before": threads[-1]["id"] if more and threads else None,
        }

    async def get_thread(self, room: NotebookRoom, access: Access, thread_id: Any) -> JSONDict:
        thread = await self._thread_for(room, access, thread_id)
        threads, _ = await self._read(
            lambda: self.db.threads(room.id, [thread["cell_id"]], deleted_cells=False, before=thread["id"] + 1, limit=1)
            if not thread["cell_deleted"]
            else self.db.threads(room.id, [], deleted_cells=True, before=thread["id"] + 1, limit=1)
        )
        [found] = await self._with_ranges(room, [t for t in threads if t["id"] == thread["id"]])
        return render_thread(found, access)

    async def summary(self, room: NotebookRoom, access: Access) -> JSONDict:
        """Per cell the caller may read: threads, open threads, unread comments (cells
        without threads are left out)."""
        counts = await self._read(self.db.counts, room.id, access.identity.name)
        return {"cells": {cid: c for cid, c in counts.items() if access.can(COMMENT_READ, cid)}}

    async def notices(self, room: NotebookRoom, access: Access, before: Any = None, limit: Any = None) -> JSONDict:
        """The caller's notices (mentions, replies to their threads), newest first, on cells
        they may read now; ``unread`` if newer than their read mark of the cell."""
        upto, n = self._page(before, limit)
        name = access.identity.name
        found, more = await self._read(self.db.notices, room.id, name, upto, n)
        seen = await self._read(self.db.seen, room.id, name)
        out = []
        for notice in found:
            if visible(access, notice["cell_id"], notice["cell_deleted"]):
                out.append({**notice, "unread": notice["comment_id"] > seen.get(notice["cell_id"], 0)})
        return {"notices": out, "next_before": found[-1]["id"] if more and found else None}

    async def export_threads(self, room: NotebookRoom, access: Access) -> dict[str, list[JSONDict]]:
        """Every thread on the cells the caller may read, by cell, for the ``.ipynb`` export."""
        cells = access.readable_cells()
        out: dict[str, list[JSONDict]] = {}
        before: int | None = None
        while True:
            page, more = await self._read(
                lambda before=before: self.db.threads(room.id, cells, deleted_cells=False, before=before, limit=MAX_PAGE_SIZE)
            )
            page = await self._with_ranges(room, page)
            for thread in page:
                out.setdefault(thread["cell_id"], []).append(_exported(thread))
            if not more or not page:
                break
            before = page[-1]["id"]
        for threads in out.values():
            threads.reverse()  # oldest first, as they were opened
        return out

    # -- fan-out ------------------------------------------------------------------------

    def _publish_notices(self, nb_id: str, notices: list[JSONDict], comment: JSONDict) -> None:
        for notice in notices:
            notice = {**notice, "author": comment["author"], "text": comment["text"], "cell_deleted": False}
            self.publish(nb_id, {"type": "comment_notice", "notice": notice})

    def deliver(self, nb_id: str, event: JSONDict) -> None:
        """Send ``event`` to every local session that may see it *now*, rendered for it."""
        if self.rooms is None:
            return
        room = self.rooms.rooms.get(nb_id)
        if room is None:
            return
        kind = event.get("type")
        for session in list(room.sessions):
            access = session.access
            if kind == "comment_thread":
                thread = event["thread"]
                if visible(access, thread["cell_id"], thread["cell_deleted"]):
                    session.send_json({"type": kind, "thread": render_thread(thread, access)})
            elif kind == "comment":
                comment = event["comment"]
                if visible(access, comment["cell_id"], comment.get("cell_deleted", False)):
                    session.send_json({"type": kind, "comment": render_comment(comment, access)})
            elif kind == "comment_notice":
                notice = event["notice"]
                if session.identity.name == notice["user"] and visible(access, notice["cell_id"], False):
                    session.send_json({"type": kind, "notice": {**notice, "unread": True}})
            elif kind == "comment_seen":
                if session.identity.name == event["user"] and visible(access, event["cell_id"], False):
                    session.send_json({k: v for k, v in event.items() if k != "user"})

    # -- following the rooms ------------------------------------------------------------

    def room_loaded(self, room: NotebookRoom) -> None:
        cells = set(room.cell_ids())
        self._cells[room.id] = cells
        # a cell deleted just before a crash (its index change kept, its threads not yet
        # marked) is found now: the threads of cells the index no longer has are marked
        task = asyncio.get_running_loop().create_task(self._mark_missing(room.id, cells))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _mark_missing(self, nb_id: str, cells: set[str]) -> None:
        try:
            missing = await self._write(self.db.unmarked_cells, nb_id) - cells
        except Exception:
            log.exception("notebook %s: could not look for threads of deleted cells", nb_id)
            return
        if missing:
            log.info("notebook %s: marking the threads of %d cell(s) deleted while they were not", nb_id, len(missing))
            await self._cells_deleted(nb_id, missing)

    def room_unloaded(self, room: NotebookRoom) -> None:
        self._cells.pop(room.id, None)
        self._local_change.discard(room.id)
        for key in [k for k in self._sources if k[0] == room.id]:
            del self._sources[key]

    def doc_changed(self, room: NotebookRoom, name: str, update: bytes) -> None:
        if name != INDEX_DOC:
            return
        if not room.applying_remote:
            self._local_change.add(room.id)
        if room.id not in self._checking:
            # index cannot be read inside its own transaction's observer: look right after
            self._checking.add(room.id)
            asyncio.get_running_loop().call_soon(self._check_cells, room)

    def _check_cells(self, room: NotebookRoom) -> None:
        """Compare the room's cells with the last ones seen; the replica that changed
        ``index`` (the home) marks the threads of the cells that left it."""
        self._checking.discard(room.id)
        local = room.id in self._local_change
        self._local_change.discard(room.id)
        before = self._cells.get(room.id)
        if before is None or room.closed:
            return
        now = set(room.cell_ids())
        self._cells[room.id] = now
        removed = before - now
        if local and removed:
            task = asyncio.get_running_loop().create_task(self._cells_deleted(room.id, removed))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _cells_deleted(self, nb_id: str, cell_ids: set[str]) -> None:
        try:
            for thread in await self._write(self.db.mark_cells_deleted, nb_id, cell_ids):
                self.publish(nb_id, {"type": "comment_thread", "thread": {**thread, "range": None}})
        except Exception:
            log.exception("notebook %s: could not mark the threads of deleted cells %s", nb_id, sorted(cell_ids))

    def purge_notebook(self, nb_id: str) -> None:
        """Delete every thread, comment, read mark and notice of a notebook (it is being deleted)."""
        self.db.purge_notebook(nb_id)


def _build_source(state: bytes, text: str) -> SourceText | None:
    try:
        source = SourceText(state)
    except MalformedSource:
        return None
    return source if source.text == text else None


def _exported(thread: JSONDict) -> JSONDict:
    """A thread as the ``.ipynb`` export keeps it in the cell's metadata."""
    return {
        "id": thread["id"],
        "author": thread["author"],
        "created_at": thread["created_at"],
        "resolved": thread["resolved"],
        "resolved_by": thread["resolved_by"],
        "anchor": None
        if thread["anchor"] is None
        else {"quote": thread["anchor"]["quote"], "range": thread.get("range")},
        "comments": [
            {
                "id": c["id"],
                "author": c["author"],
                "text": c["text"],
                "created_at": c["created_at"],
                "edited_at": c["edited_at"],
                "deleted": c["deleted"],
            }
            for c in thread.get("comments", [])
        ],
    }
