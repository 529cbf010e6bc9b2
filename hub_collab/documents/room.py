"""A notebook's live state: :class:`NotebookRoom`.

The room holds every doc of one notebook in memory and the sessions connected
to it with what each is subscribed to. It is the only place where client
updates are applied, and where they are checked against each session's
:class:`~hub_collab.permissions.access.Access` (computed once per rights change,
so every per-update check is a set lookup).

Every change to a doc (from a client, a structure command, or a kernel) is
observed once, appended to the update log, and fanned out to the sessions
subscribed to that doc, except the one it came from; then the room's
:class:`~hub_collab.documents.observers.RoomObserver` s hear of it.

Beside it: presence in :mod:`.awareness`, the structure commands (the writes
to ``index`` that clients ask for) in :mod:`.structure`, the docs' schemas in
:mod:`.notebook` and :mod:`.outputs`.

Get rooms from :class:`~hub_collab.documents.rooms.RoomManager`, never build
them directly.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import time
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pycrdt import Doc, Map, StickyIndex, TransactionEvent

from ..errors import BadRequest, CollabError, Forbidden, NotFound, TooLarge
from ..permissions.access import Access, Identity
from ..types import CELL_PREFIX, INDEX_DOC, OUT_PREFIX
from . import protocol as p
from .anchors import deleted_order
from .awareness import RoomAwareness
from .clientids import CLIENTS_DOC, ClientIds
from .docs import EMPTY_STATE, EMPTY_UPDATE, RoomDocs, merged, yrs_refused
from .notebook import cell_doc, init_index, out_doc, split_doc_name
from .observers import RoomObserver
from .session import Session, acting
from .updates import (
    ID,
    Copy,
    DeleteSet,
    MalformedUpdate,
    UpdateInfo,
    Walks,
    read_state_vector,
    read_update,
)

if TYPE_CHECKING:
    from ..metrics import Metrics
    from ..permissions.store import PermissionStore
    from ..store import NotebookRecord, UpdateLog

log = logging.getLogger("hub_collab.room")

#: answers to one frame are sent in frames of about this size (the last may be smaller)
REPLY_FRAME_BYTES = 64 * 1024
#: a binary frame of at least this many bytes is decoded, and its large updates read, on
#: a worker thread (:meth:`NotebookRoom.handle_frame`): about 8 ms of reading at most
#: happens on the event loop
OFFLOAD_FRAME_BYTES = 16 * 1024
#: in such a frame, an update of at least this many bytes is read on the worker thread
OFFLOAD_UPDATE_BYTES = 4 * 1024
#: a write to a cell doc of at least this many bytes whose index (see
#: :class:`~.docs.RoomDocs`) is not read yet waits while the index is read on the worker
#: thread (about a millisecond per KB of a doc typed a character at a time)
INDEX_OFFLOAD_BYTES = 16 * 1024
#: in such a frame, after this long (seconds) of entries the others run before the next
FRAME_SLICE_SECONDS = 0.002
#: the positions a writer's updates may make the server find where the doc's structs do
#: not link an item's two origins (each a walk of the doc's items in Rust, 2 ns per byte
#: of a fragmented doc of 100 KB to 19 ns for one of 1 MB, see
#: benchmarks/bench_update_checks.py): this many bytes walked per second and user, at
#: most WALK_BURST_BYTES at once (30 to 300 ms each, by the doc's size); a copy of the doc
#: that conflict resolution's order needs is paid as COPY_WALKS walks, the ordering of a
#: sequence with its deleted items as ORDER_WALKS; an update that needs more is refused
WALK_BYTES_PER_SECOND = 16 * 1024 * 1024
WALK_BURST_BYTES = 16 * 1024 * 1024

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _reader_pool() -> ThreadPoolExecutor:
    """The thread that reads large frames (one for the process: reading is pure Python,
    so more threads would only share the GIL)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(1, thread_name_prefix="collab-read")
        return _pool


@dataclass(frozen=True)
class _Write:
    """A write entry (sync step 2 or update) checked as far as it can be without reading
    the update: what reading it needs, taken from the doc on the event loop."""

    name: str
    #: the doc held under that name for the session (a per-user view of outputs)
    target: str
    writable: bool
    payload: bytes
    #: the doc's clocks and (for a reader) deletions when the entry arrived; these are
    #: never modified, a change of the doc makes new ones
    state: dict[int, int]
    deleted: DeleteSet | None


@dataclass(frozen=True)
class _Read:
    """What reading a :class:`_Write`'s update found."""

    malformed: MalformedUpdate | None = None
    #: what the update holds (None if malformed)
    update: UpdateInfo | None = None
    #: why the doc could not integrate it whole (None: it could)
    missing: str | None = None
    #: it repeats what the doc holds
    nothing: bool = False


def _offset(doc: Doc[Any], unit: ID, after: bool) -> int | None:
    """The position of ``unit`` (``after``: just after it) in its sequence of ``doc``, by
    what is not deleted (see :meth:`UpdateInfo.crossing`); None if yrs cannot tell."""
    sticky = StickyIndex.from_json({"item": {"client": unit[0], "clock": unit[1]}, "assoc": -1 if after else 0})
    try:
        with doc.transaction() as txn:
            return sticky.get_index(txn)
    except BaseException as exc:  # noqa: BLE001 (yrs panics on a unit it does not hold as an item)
        if not yrs_refused(exc):
            raise
        return None


def _read_write(write: _Write) -> _Read:
    """Read ``write``'s update against the doc's state it carries; touches nothing shared,
    so it may run on the reader thread."""
    # The items' places (for the order of their origins) cost an object per struct: a
    # small update (a keystroke) keeps them at once; a large one only once it is known to
    # be neither a gap nor a repeat, which most large hostile updates are.
    small = write.writable and len(write.payload) < OFFLOAD_UPDATE_BYTES
    try:
        update = read_update(write.payload, placements=small)
    except MalformedUpdate as exc:
        return _Read(malformed=exc)
    if not write.writable:
        return _Read(update=update, nothing=update.changes_nothing(write.state, write.deleted))
    missing = update.missing(write.state)
    nothing = missing is None and update.changes_nothing(write.state)
    if missing is None and not nothing and not small:
        update = read_update(write.payload)
    return _Read(update=update, missing=missing, nothing=nothing)


class _Answers:
    """The replies to one frame, sent in parts of :data:`REPLY_FRAME_BYTES`, and the
    errors for its refused entries."""

    def __init__(self, room: NotebookRoom, session: Session) -> None:
        self.room = room
        self.session = session
        self.replies: list[bytes] = []
        self.sent = 0
        self.size = 0
        self.answered: set[str] = set()

    def note(self, entry: p.Entry) -> None:
        """Remember a sync step 1 (the frame was decoded with one per doc at most)."""
        if entry.kind == p.MSG_SYNC and entry.sub == p.SYNC_STEP1:
            self.answered.add(entry.doc)

    def refused(self, entry: p.Entry, exc: CollabError) -> None:
        self.session.send_error(exc.code, exc.message, doc=entry.doc)
        if exc.code in ("forbidden", "invalid_update", "too_large") and entry.kind == p.MSG_SYNC and entry.sub != p.SYNC_STEP1:
            self.session.send_json({"type": "resync", "doc": entry.doc})

    def flush_long(self) -> None:
        """Send what is answered so far if it is long (a join): the client applies the
        first part (index comes first) while the rest is being answered."""
        for reply in self.replies[self.sent :]:
            self.size += len(reply)
        self.sent = len(self.replies)
        if self.size >= REPLY_FRAME_BYTES:
            self.session.send_bytes(b"".join(self.replies))
            self.replies.clear()
            self.sent = self.size = 0

    def done(self) -> None:
        if self.replies:
            self.session.send_bytes(b"".join(self.replies))
        metrics = self.room.metrics
        if self.answered and self.session.opened_at and metrics is not None:
            # the first sync answered: the session has joined
            metrics.join_seconds.observe(time.perf_counter() - self.session.opened_at)
            self.session.opened_at = 0.0


class NotebookRoom:
    """Live documents, sessions and presence of one notebook."""

    def __init__(
        self,
        record: NotebookRecord,
        permissions: PermissionStore,
        update_log: UpdateLog,
        *,
        max_doc_bytes: int,
        max_awareness_bytes: int = 4096,
        observers: Sequence[RoomObserver] = (),
        metrics: Metrics | None = None,
    ) -> None:
        self.id = record.id
        self.record = record
        self.epoch = record.epoch
        self.permissions = permissions
        self.update_log = update_log
        self.max_doc_bytes = max_doc_bytes
        #: the services following this room (the RoomManager's, in their stated order)
        self.observers = observers
        #: updates in and out, fan-out and join times (None: metrics are off)
        self.metrics = metrics
        #: every doc by name; a doc loaded from the store is built on first use
        self.docs = RoomDocs(self._build_stored)
        self._cell_ids: list[str] | None = None
        self.doc_bytes: dict[str, int] = {}
        self.subscribers: dict[str, set[Session]] = {}
        self.sessions: set[Session] = set()
        self.awareness = RoomAwareness(self, max_awareness_bytes)
        self._origin: Session | None = None
        self._subscriptions: dict[str, Any] = {}
        self.updates_since_checkpoint = 0
        self.last_activity = time.monotonic()
        #: internal doc name -> the name clients know it by (see :meth:`add_internal_doc`)
        self.wire_names: dict[str, str] = {}
        #: persisted docs that are not index/cell/out, for the hooks that own them
        self.internal_persisted: dict[str, list[bytes]] = {}
        # session -> {wire name: internal name} of the views it is subscribed to
        self._views: dict[Session, dict[str, str]] = {}
        #: the newest update-log row merged by a catch-up (the replicator's watermark)
        self.merged_upto = 0
        #: True while applying changes that were persisted by another replica
        self.applying_remote = False
        self.closed = False
        #: held by a checkpoint and by a large frame while it is read and applied: a
        #: checkpoint never runs between the two (see handle_frame)
        self.compacting = asyncio.Lock()
        #: who owns which Yjs client id in which cell doc (held in the doc CLIENTS_DOC)
        self.client_ids = ClientIds(self.id, Doc())
        #: user -> (bytes of doc walks they may still cause, when that was counted)
        self._walk_tokens: dict[str, tuple[float, float]] = {}

    # -- loading ------------------------------------------------------------------------

    def load(self, persisted: dict[str, list[bytes]]) -> None:
        """Hold the persisted state (checkpoint and updates per doc): ``index`` is
        built at once, cell and output docs when first used (see :mod:`.docs`)."""
        index: Doc[Any] = Doc()
        for update in persisted.get(INDEX_DOC, ()):
            index.apply_update(update)
        self.add_doc(INDEX_DOC, index)
        init_index(index)
        # Every cell in the index has its two docs, even if nothing was stored for them;
        # stored docs of deleted cells are left out (the next checkpoint drops them).
        # (Their root types are declared when the server first reads them.)
        stored: dict[str, bytes] = {}
        for cid in self.cell_ids():
            for name in (CELL_PREFIX + cid, OUT_PREFIX + cid):
                updates = persisted.get(name)
                if updates is None:
                    stored[name] = EMPTY_UPDATE
                    self.doc_bytes[name] = 0
                elif len(updates) == 1:  # a checkpoint: the common case
                    stored[name] = updates[0]
                    self.doc_bytes[name] = len(updates[0])
                else:
                    stored[name] = merged(updates)
                    self.doc_bytes[name] = sum(map(len, updates))
        self.docs.add_stored(stored)
        owners: Doc[Any] = Doc()
        for update in persisted.get(CLIENTS_DOC, ()):
            owners.apply_update(update)
        self.add_doc(CLIENTS_DOC, owners)
        self.client_ids = ClientIds(self.id, owners)
        for name, updates in persisted.items():
            if name not in (INDEX_DOC, CLIENTS_DOC) and not name.startswith((CELL_PREFIX, OUT_PREFIX)):
                self.internal_persisted[name] = updates

    def add_internal_doc(self, name: str, doc: Doc[Any], wire_name: str) -> None:
        """Hold ``doc`` (persisted, checkpointed) under an internal name.

        Clients never name it: an observer's ``view`` routes a session's
        subscription of ``wire_name`` to it, and its updates are sent as
        updates of ``wire_name`` to the sessions so routed.
        """
        self.add_doc(name, doc)
        self.wire_names[name] = wire_name

    def drop_internal_doc(self, name: str) -> None:
        self.drop_doc(name)

    def reroute(self, session: Session, name: str) -> None:
        """Unsubscribe ``session`` from ``name`` and tell it to subscribe again
        (``resync``), for instance because a view for it appeared or went away."""
        self._unsubscribe(session, name)
        session.send_json({"type": "resync", "doc": name})

    def view_name(self, session: Session, name: str) -> str:
        """The name of the doc ``session`` is served under the wire name ``name``."""
        return self._view(session, name) or name

    def _view(self, session: Session, name: str) -> str | None:
        for observer in self.observers:
            internal = observer.view(self, session, name)
            if internal is not None and internal in self.docs:
                return internal
        return None

    def add_doc(self, name: str, doc: Doc[Any]) -> None:
        """Hold and observe ``doc``."""
        self.docs.add(name, doc)
        self.doc_bytes[name] = len(doc.get_update())
        self._observe(name, doc)

    def _build_stored(self, name: str, state: bytes) -> Doc[Any]:
        """The Doc of a doc held as its stored state (its size is known already)."""
        doc: Doc[Any] = Doc()
        doc.apply_update(state)
        self._observe(name, doc)
        return doc

    def _observe(self, name: str, doc: Doc[Any]) -> None:
        self._subscriptions[name] = doc.observe(lambda event, name=name: self._on_change(name, event))

    def drop_doc(self, name: str) -> None:
        doc = self.docs.discard(name)
        self.doc_bytes.pop(name, None)
        sub = self._subscriptions.pop(name, None)
        if doc is not None and sub is not None:
            doc.unobserve(sub)
        wire = self.wire_names.pop(name, name)
        for session in self.subscribers.pop(name, set()):
            session.subscribed.discard(wire)
            self._views.get(session, {}).pop(wire, None)

    # -- the index --------------------------------------------------------------------

    @property
    def index(self) -> Doc[Any]:
        return self.docs[INDEX_DOC]

    def cell_entries(self) -> list[Map[Any]]:
        cells, _ = init_index(self.index)
        return list(cells)

    def cell_ids(self) -> list[str]:
        """The cells' ids in order (cached until ``index`` changes)."""
        ids = self._cell_ids
        if ids is None:
            cells, _ = init_index(self.index)
            # one JSON encoding in yrs is ~5x faster than reading 1,000 Maps one by one
            ids = self._cell_ids = [str(entry["id"]) for entry in json.loads(str(cells))]
        return list(ids)

    def find_cell(self, cell_id: str) -> tuple[int, Map[Any]]:
        try:
            i = self.cell_ids().index(cell_id)
        except ValueError:
            raise NotFound("no such cell", code="unknown_cell") from None
        cells, _ = init_index(self.index)
        return i, cells[i]

    def cell_type(self, cell_id: str) -> str:
        return str(self.find_cell(cell_id)[1]["cell_type"])

    # -- change observation and fan-out ---------------------------------------------

    def _on_change(self, name: str, event: TransactionEvent) -> None:
        update: bytes = event.update
        self.docs.changed(name, update)
        if name == INDEX_DOC:
            self._cell_ids = None
        self.doc_bytes[name] = self.doc_bytes.get(name, 0) + len(update)
        self.updates_since_checkpoint += 1
        self.last_activity = time.monotonic()
        metrics = self.metrics
        applied = 0.0
        if metrics is not None:
            applied = time.perf_counter()
            if self.applying_remote:
                metrics.updates_in_remote.inc()
            elif self._origin is not None:
                metrics.updates_in_client.inc()
            else:
                metrics.updates_in_server.inc()
        if self.applying_remote:  # persisted by the replica that accepted it
            self._fan_out(name, update, self._origin, applied)
            return
        # the history's author: the client that sent it, else the command that made it
        by = self._origin or acting.get()
        author, session_id = (by.identity.name, by.session_id) if by is not None else ("", "")
        if not name.startswith(CELL_PREFIX) and name != INDEX_DOC:
            # Outputs are durable before anyone sees them: a crash right after a client
            # saw an output must not lose it. (Cell edits fan out at once; a client learns
            # they are durable from `sync`. Index changes are acknowledged commands.)
            origin = self._origin
            self.update_log.append(
                self.id, name, update, then=lambda: self._fan_out(name, update, origin, applied),
                author=author, session=session_id,
            )  # fmt: skip
            return
        self.update_log.append(self.id, name, update, author=author, session=session_id)
        self._fan_out(name, update, self._origin, applied)

    def _fan_out(self, name: str, update: bytes, origin: Session | None, applied: float = 0.0) -> None:
        """Send the update to every subscribed session but ``origin``; ``applied`` is
        when it was applied (``perf_counter``), for the fan-out time."""
        if self.closed:
            return
        frame = p.sync_update(self.wire_names.get(name, name), update)
        sent = 0
        for session in self.subscribers.get(name, ()):
            if session is not origin:
                session.send_bytes(frame)
                sent += 1
        metrics = self.metrics
        if sent and metrics is not None:
            metrics.updates_out.inc(sent)
            metrics.fanout_seconds.observe(time.perf_counter() - applied)
        for observer in self.observers:
            observer.doc_changed(self, name, update)

    def apply_remote(self, name: str, update: bytes) -> None:
        """Apply an update that is already persisted (by another replica, or in the log).

        Local clients get it; it is neither persisted nor published again.
        """
        doc = self.docs.get(name)
        if doc is None:
            try:
                kind, _ = split_doc_name(name)
            except ValueError:
                return
            if kind == "index":
                return
            doc = Doc()
            self.add_doc(name, doc)
        cells_before = self.cell_ids() if name == INDEX_DOC else None
        self.applying_remote = True
        try:
            doc.apply_update(update)
        except Exception:
            log.warning("notebook %s: could not apply a remote update to %s", self.id, name)
            return
        finally:
            self.applying_remote = False
        if cells_before is not None and cells_before != self.cell_ids():
            self._sync_cells_with_index(set(cells_before))

    def _sync_cells_with_index(self, before: set[str]) -> None:
        """After a remote change of ``index``: docs for new cells, none for deleted ones."""
        now = set(self.cell_ids())
        for cid in now - before:
            for name in (cell_doc(cid), out_doc(cid)):
                if name not in self.docs:
                    self.add_doc(name, Doc())
        for cid in before - now:
            for name in (cell_doc(cid), out_doc(cid)):
                self.drop_doc(name)
        if now != before:
            self.refresh_all()

    def merge_persisted(self, persisted: dict[str, list[bytes]]) -> None:
        """Merge the store's state of this notebook (catch-up); idempotent."""
        index_updates = persisted.get(INDEX_DOC, ())
        if index_updates:
            before = self.cell_ids()
            self.applying_remote = True
            try:
                for update in index_updates:
                    self.index.apply_update(update)
            finally:
                self.applying_remote = False
            if before != self.cell_ids():
                self._sync_cells_with_index(set(before))
        live = set(self.cell_ids())
        for name, updates in persisted.items():
            if name == INDEX_DOC:
                continue
            if name == CLIENTS_DOC:
                for update in updates:
                    self.apply_remote(name, update)
                continue
            try:
                kind, cid = split_doc_name(name)
            except ValueError:
                continue
            if cid not in live:
                continue
            if name in self.docs and not self.docs.is_built(name) and merged(updates) == self.docs.state(name):
                continue  # held as exactly these stored bytes: nothing new, and it stays unbuilt
            for update in updates:
                self.apply_remote(name, update)

    # -- JSON messages to sessions (on every replica) ------------------------------------

    def deliver_json(self, message: dict[str, Any], user: str | None = None, exclude_user: str | None = None) -> None:
        """Send to this replica's sessions: all, only ``user``'s, or all but ``exclude_user``'s."""
        for session in list(self.sessions):
            name = session.identity.name
            if (user is None or name == user) and name != exclude_user:
                session.send_json(message)

    def broadcast_json(self, message: dict[str, Any], user: str | None = None, exclude_user: str | None = None) -> None:
        """Like :meth:`deliver_json`, for the sessions of the notebook on every replica."""
        self.deliver_json(message, user, exclude_user)

        def publish() -> None:  # after the doc updates before it, like the local sessions
            for observer in self.observers:
                observer.json_broadcast(self, message, user, exclude_user)

        self.update_log.after_pending(publish)

    # -- sessions ---------------------------------------------------------------------

    def join(self, session: Session) -> None:
        self.sessions.add(session)
        self.last_activity = time.monotonic()
        for observer in self.observers:
            observer.session_joined(self, session)

    def leave(self, session: Session) -> None:
        self.sessions.discard(session)
        for name in list(session.subscribed):
            self._unsubscribe(session, name)
        session.subscribed.clear()
        self._views.pop(session, None)
        self.awareness.session_left(session)
        self.last_activity = time.monotonic()

    def compute_access(self, session: Session) -> Access:
        return self.permissions.access(session.identity, self.id)

    def compute_access_for(self, identity: Identity) -> Access:
        return self.permissions.access(identity, self.id)

    def caps_message(self, access: Access) -> dict[str, Any]:
        return {"type": "caps", **access.caps_json()}

    def refresh_access(self, session: Session) -> None:
        """Recompute rights; stop revoked docs at once and tell the client (``caps``)."""
        access = self.compute_access(session)
        session.access = access
        if not access.can("open"):
            for name in list(session.subscribed):
                self._unsubscribe(session, name)
            session.send_json(self.caps_message(access))
            return
        for name in list(session.subscribed):
            if not self.can_read_doc(access, name):
                self._unsubscribe(session, name)
        session.send_json(self.caps_message(access))

    def refresh_all(self) -> None:
        for session in list(self.sessions):
            self.refresh_access(session)
        self.awareness.rebroadcast()

    def _unsubscribe(self, session: Session, name: str) -> None:
        session.subscribed.discard(name)
        views = self._views.get(session)
        subs = self.subscribers.get(views.pop(name, name) if views else name)
        if subs is not None:
            subs.discard(session)

    def can_read_doc(self, access: Access, name: str) -> bool:
        kind, cid = split_doc_name(name)
        if kind == "index":
            return access.can("open")
        assert cid is not None
        return access.can("read_cell", cid)

    # -- binary frames ------------------------------------------------------------------

    def handle_frame(self, session: Session, data: bytes) -> Coroutine[Any, Any, None] | None:
        """Handle one binary frame; errors are reported to the session, never raised.

        A frame of less than :data:`OFFLOAD_FRAME_BYTES` is handled here and now (the
        common case: a keystroke, a join). A larger one is handled by the coroutine
        returned, which the caller awaits before it hands this session's next frame over:
        the frame is decoded and its large updates read (:func:`read_update`, pure Python,
        about half a microsecond a byte) on a worker thread, and the event loop serves
        everyone else in between; what is held is only changed here, on the loop."""
        if len(data) >= OFFLOAD_FRAME_BYTES:
            return self._handle_large_frame(session, data)
        try:
            entries = p.decode_frame(data, unique_step1=True)
        except p.ProtocolError as exc:
            session.send_error("malformed_frame", f"malformed binary frame: {exc}")
            return None
        if any(self._index_wanted(session, entry) for entry in entries):
            # the first write to a large doc since it was loaded: its index is read off
            # the loop, so this frame goes the large frames' way
            return self._handle_large_frame(session, data, entries)
        answers = _Answers(self, session)
        for entry in entries:
            answers.note(entry)
            try:
                write = self._handle_entry(session, entry, answers.replies)
                if write is not None:
                    self._finish_write(session, write, _read_write(write), offloaded=False)
            except CollabError as exc:
                answers.refused(entry, exc)
            answers.flush_long()
        answers.done()
        return None

    async def _handle_large_frame(self, session: Session, data: bytes, entries: list[p.Entry] | None = None) -> None:
        async with self.compacting:
            await self._handle_large_frame_now(session, data, entries)

    async def _handle_large_frame_now(self, session: Session, data: bytes, entries: list[p.Entry] | None) -> None:
        loop = asyncio.get_running_loop()
        if entries is None:
            try:
                entries = await loop.run_in_executor(_reader_pool(), functools.partial(p.decode_frame, data, unique_step1=True))
            except p.ProtocolError as exc:
                session.send_error("malformed_frame", f"malformed binary frame: {exc}")
                return
        answers = _Answers(self, session)
        slice_began = time.perf_counter()
        for entry in entries:
            if self.closed or session not in self.sessions:
                return  # the notebook was reset, or the client left meanwhile
            if self._index_wanted(session, entry):
                await self.docs.build_index(entry.doc, _reader_pool())
                if self.closed or session not in self.sessions:
                    return
                slice_began = time.perf_counter()
            answers.note(entry)
            try:
                write = self._handle_entry(session, entry, answers.replies)
                if write is not None:
                    if len(write.payload) >= OFFLOAD_UPDATE_BYTES:
                        read = await loop.run_in_executor(_reader_pool(), _read_write, write)
                        if self.closed or session not in self.sessions:
                            return
                        self._finish_write(session, write, read, offloaded=True)
                        slice_began = time.perf_counter()
                    else:
                        self._finish_write(session, write, _read_write(write), offloaded=False)
            except CollabError as exc:
                answers.refused(entry, exc)
            answers.flush_long()
            if time.perf_counter() - slice_began >= FRAME_SLICE_SECONDS:
                await asyncio.sleep(0)  # many small entries: let the others run
                slice_began = time.perf_counter()
        if not self.closed and session in self.sessions:
            answers.done()

    def _index_wanted(self, session: Session, entry: p.Entry) -> bool:
        """True if ``entry`` is a write ``session`` may make to a large cell doc whose
        index is not read yet (see :data:`INDEX_OFFLOAD_BYTES`); anything else, refused
        writes included, is handled as it comes."""
        name = entry.doc
        if entry.kind != p.MSG_SYNC or entry.sub == p.SYNC_STEP1 or entry.payload == EMPTY_UPDATE or not name.startswith(CELL_PREFIX):
            return False
        if self.doc_bytes.get(name, 0) < INDEX_OFFLOAD_BYTES or name not in session.subscribed or self.docs.has_index(name):
            return False
        return name in self.docs and session.access.cell_rights(name[len(CELL_PREFIX) :])[1]

    def _check_readable(self, session: Session, name: str) -> tuple[str, bool]:
        """``name``'s kind, and whether ``session`` may write it, if it may read it;
        else the error to send."""
        if name not in self.docs or name in self.wire_names or name == CLIENTS_DOC:  # internal docs have no wire name of their own
            try:
                split_doc_name(name)
            except ValueError as exc:
                raise BadRequest(str(exc), code="unknown_doc") from exc
            raise NotFound(f"no such doc {name!r} in this notebook", code="unknown_doc")
        # every other doc held is index, cell:<valid id> or out:<valid id>
        if name == INDEX_DOC:
            kind, cid = "index", None
        elif name.startswith(CELL_PREFIX):
            kind, cid = "cell", name[len(CELL_PREFIX) :]
        else:
            kind, cid = "out", name[len(OUT_PREFIX) :]
        if cid is None:
            readable, writable = session.access.can("open"), False
        else:
            readable, writable = session.access.cell_rights(cid)
            writable = writable and kind == "cell"
        if not readable:
            raise Forbidden(f"you may not read {name!r}")
        return kind, writable

    def _handle_entry(self, session: Session, entry: p.Entry, replies: list[bytes]) -> _Write | None:
        """Handle an awareness or sync step 1 entry; for a write (sync step 2 or update),
        check what can be checked without reading the update and return what
        :meth:`_finish_write` needs once it is read."""
        name = entry.doc
        if entry.kind == p.MSG_AWARENESS:
            if name != INDEX_DOC:
                raise BadRequest("awareness is carried on the 'index' doc only", code="bad_awareness")
            self.awareness.handle(session, entry.payload)
            return None
        kind, writable = self._check_readable(session, name)
        internal = self._view(session, name) if kind == "out" and self.observers else None
        target = internal or name
        if entry.sub == p.SYNC_STEP1:
            # answered without building a stored doc (see .docs)
            try:
                if entry.payload != EMPTY_STATE:
                    # read here first: pycrdt reserves memory for as many entries as a
                    # state vector claims (6 bytes claiming 300 million cost 0.5 GB and 0.5 s)
                    read_state_vector(entry.payload)
                diff = self.docs.diff(target, entry.payload)
            except ValueError as exc:
                raise BadRequest(f"invalid state vector for {name!r}", code="invalid_update") from exc
            replies.append(p.sync_answer(name, diff, self.docs.state_vector(target) if writable else None))
            if name not in session.subscribed:
                session.subscribed.add(name)
                self.subscribers.setdefault(internal or name, set()).add(session)
                if internal is not None:
                    self._views.setdefault(session, {})[name] = internal
                if name == INDEX_DOC and self.awareness:
                    replies.append(self.awareness.frame_for(session))
            return None
        # step 2 or update: a write
        if name not in session.subscribed:
            raise BadRequest(f"send sync step 1 for {name!r} before updates", code="not_subscribed")
        if len(entry.payload) > self.max_doc_bytes:
            raise TooLarge(f"update of {len(entry.payload)} bytes exceeds the limit")
        if entry.payload == EMPTY_UPDATE:
            return None  # a peer's answer to our sync step 1 when it has nothing we lack
        # read once per change of the doc, not per update (see RoomDocs.clocks)
        state = self.docs.clocks(target)
        deleted = None if writable else self.docs.deletions(target)
        return _Write(name, target, writable, entry.payload, state, deleted)

    def _finish_write(self, session: Session, write: _Write, read: _Read, *, offloaded: bool) -> None:
        """Apply ``write`` as ``read`` found it, or refuse it (raises CollabError)."""
        name, target = write.name, write.target
        if offloaded:
            # the update was read off the loop, against the doc as it was then: what it
            # found still holds (a doc's clocks and deletions only grow), unless the doc
            # went away or the session's rights or subscription changed meanwhile
            _kind, writable = self._check_readable(session, name)
            if name not in session.subscribed:
                raise BadRequest(f"send sync step 1 for {name!r} before updates", code="not_subscribed")
            if writable != write.writable:
                self._unsubscribe(session, name)
                raise BadRequest(f"your rights on {name!r} changed while your update was read: sync again", code="invalid_update")
        if read.malformed is not None:
            self._unsubscribe(session, name)
            if not write.writable:
                raise Forbidden(f"you may not write {name!r}") from read.malformed
            raise BadRequest(f"invalid update for {name!r}: {read.malformed}", code="invalid_update") from read.malformed
        if read.nothing:
            return  # a repeat of what the doc holds (a read-only client's y-protocols step 2)
        if not write.writable:
            self._unsubscribe(session, name)
            raise Forbidden(f"you may not write {name!r}")
        if read.missing is not None:
            self._unsubscribe(session, name)
            raise BadRequest(
                f"update for {name!r} depends on what the server does not hold ({read.missing}): sync again",
                code="invalid_update",
            )
        if self.doc_bytes.get(name, 0) + len(write.payload) > self.max_doc_bytes:
            self._unsubscribe(session, name)
            raise TooLarge(f"{name!r} would exceed {self.max_doc_bytes} bytes")
        assert read.update is not None
        refused, new_ids = self._refusal(session, target, read.update, self.docs.clocks(target), write.payload)
        if refused is not None:
            self._unsubscribe(session, name)
            raise BadRequest(f"invalid update for {name!r}: {refused}: sync again", code="invalid_update")
        self.client_ids.bind(target, new_ids, session.identity.name)
        doc = self.docs[target]
        self._origin = session
        try:
            doc.apply_update(write.payload)
        except BaseException as exc:
            # a Rust panic too (see yrs_refused): the update is refused like any other the
            # doc would not take, the connection is kept
            if not yrs_refused(exc):
                raise
            if not isinstance(exc, Exception):
                log.error("yrs panicked applying an update of %d bytes to %s: %s", len(write.payload), name, write.payload[:256].hex())
            self._unsubscribe(session, name)
            raise BadRequest(f"invalid update for {name!r}", code="invalid_update") from exc
        finally:
            self._origin = None

    def _integrated(self, name: str, update: UpdateInfo, payload: bytes) -> Copy | None:
        """Positions in a copy of the doc ``name`` that holds the update ``payload``'s
        structs (not its deletions: its own items stay countable), and the order of its
        deleted units, for the order of its items that conflict resolution decides. The
        copy costs the doc's size: the writer's walks pay for it
        (:data:`~.updates.COPY_WALKS`)."""
        held = self.docs.state(name)
        scratch: Doc[Any] = Doc()
        try:
            scratch.apply_update(held)
            scratch.apply_update(payload[: update.structs_end] + b"\x00")
        except BaseException as exc:  # noqa: BLE001 (a pyo3 panic is a BaseException)
            if not yrs_refused(exc):
                raise
            return None
        return functools.partial(_offset, scratch), functools.partial(deleted_order, scratch.get_update)

    def _refusal(self, session: Session, name: str, update: UpdateInfo, state: dict[int, int], payload: bytes) -> tuple[str | None, list[int]]:
        """Why a writer's update that the doc ``name`` (at ``state``) could integrate
        whole must still be refused, or None and the client ids it makes the writer's.

        Each check costs the update's size: the client ids it writes with (see
        :mod:`.clientids`), the surrogate pairs it would cut and the parents that are
        no types (see :mod:`.updates`; yrs would refuse the update only at that
        struct, after applying the ones before it)."""
        writes = [client for client, ranges in update.ranges.items() if ranges[-1][1] > state.get(client, 0)]
        refused, new_ids = self.client_ids.refusal(name, writes, state, session.identity.name)
        if refused is not None:
            return refused, []
        try:
            index = self.docs.index(name)
        except MalformedUpdate:
            log.exception("notebook %s: the state of %s cannot be read", self.id, name)
            return "the server cannot check it against this doc", []
        refused = update.splits_pair(state, index) or update.bad_parent(state, index, lambda: self.docs.deletions(name))
        if refused is None:
            # the positions it needs, and a copy of the doc, cost the doc's size each: the
            # writer's budget (per user, so that reconnecting does not renew it) bounds them
            now = time.monotonic()
            tokens, then = self._walk_tokens.get(session.identity.name, (float(WALK_BURST_BYTES), now))
            tokens = min(float(WALK_BURST_BYTES), tokens + (now - then) * WALK_BYTES_PER_SECOND)
            per_walk = max(self.doc_bytes.get(name, 0), 4096)
            walks = Walks(int(tokens // per_walk))
            before = walks.left
            refused = update.crossing(
                state,
                index,
                functools.partial(_offset, self.docs[name]),
                lambda: self._integrated(name, update, payload),
                walks,
                deleted_order(lambda: self.docs.state(name), index.key_at),
            )
            self._walk_tokens[session.identity.name] = (tokens - (before - walks.left) * per_walk, now)
        return refused, new_ids

    # -- snapshots ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, bytes]:
        """Every doc's whole state as one update (stored docs are not built for it)."""
        return {name: self.docs.state(name) for name in self.docs}

    def close(self) -> None:
        for name in list(self.docs):
            self.drop_doc(name)
        self.closed = True
