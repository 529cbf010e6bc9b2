"""A notebook's live state: :class:`NotebookRoom`.

The room holds every doc of one notebook in memory, the sessions connected to
it, and their awareness states. It is the only place where client updates are
applied, where structure commands change ``index``, and where rights are
checked against each session's :class:`~hub_collab.permissions.access.Access`
(computed once per rights change, so every per-update check is a set lookup).

Every change to a doc (from a client, a structure command, or a kernel) is
observed once, appended to the update log, and fanned out to the sessions
subscribed to that doc, except the one it came from.

Get rooms from :class:`~hub_collab.documents.rooms.RoomManager`, never build
them directly.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pycrdt import Doc, Map, TransactionEvent

from ..errors import BadRequest, CollabError, Forbidden, NotFound, TooLarge
from ..ids import new_id
from ..permissions.access import Access, Identity
from ..types import CELL_PREFIX, INDEX_DOC, OUT_PREFIX
from . import protocol as p
from .docs import EMPTY_UPDATE, RoomDocs, merged
from .notebook import (
    CELL_TYPES,
    cell_doc,
    index_entry,
    init_cell,
    init_index,
    init_out,
    out_doc,
    split_doc_name,
)
from .session import Session

if TYPE_CHECKING:
    from ..permissions.store import PermissionStore
    from ..store import NotebookRecord, UpdateLog

log = logging.getLogger("hub_collab.room")

#: answers to one frame are sent in frames of about this size (the last may be smaller)
REPLY_FRAME_BYTES = 64 * 1024

#: awareness fields a client may set; everything else is dropped
AWARENESS_FIELDS = frozenset({"user", "cell", "cursor", "typing", "status"})


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
    ) -> None:
        self.id = record.id
        self.record = record
        self.epoch = record.epoch
        self.permissions = permissions
        self.update_log = update_log
        self.max_doc_bytes = max_doc_bytes
        self.max_awareness_bytes = max_awareness_bytes
        #: every doc by name; a doc loaded from the store is built on first use
        self.docs = RoomDocs(self._build_stored)
        self._cell_ids: list[str] | None = None
        self.doc_bytes: dict[str, int] = {}
        self.subscribers: dict[str, set[Session]] = {}
        self.sessions: set[Session] = set()
        # awareness client id -> (owner, clock, sanitised state); the owner is the local
        # Session, or a replication.RemoteOwner for clients of another replica
        self.awareness: dict[int, tuple[Any, int, dict[str, Any] | None]] = {}
        self._origin: Session | None = None
        self._subscriptions: dict[str, Any] = {}
        self.updates_since_checkpoint = 0
        self.last_activity = time.monotonic()
        #: called with (doc name, update) after every change; the kernel and the bus hook in here
        self.update_hooks: list[Callable[[str, bytes], None]] = []
        #: called with each session once it has joined (kernels send their state here)
        self.join_hooks: list[Callable[[Session], None]] = []
        #: per-session views of ``out:`` docs: ``hook(session, name)`` returns the internal
        #: name of a doc to serve that session under ``name`` instead, or None (per-user
        #: kernel outputs)
        self.view_hooks: list[Callable[[Session, str], str | None]] = []
        #: internal doc name -> the name clients know it by (see :meth:`add_internal_doc`)
        self.wire_names: dict[str, str] = {}
        #: persisted docs that are not index/cell/out, for the hooks that own them
        self.internal_persisted: dict[str, list[bytes]] = {}
        # session -> {wire name: internal name} of the views it is subscribed to
        self._views: dict[Session, dict[str, str]] = {}
        #: called with each awareness payload set by this replica's clients (sanitised)
        self.awareness_hooks: list[Callable[[bytes], None]] = []
        #: called with (message, user, exclude_user) for every :meth:`broadcast_json`
        self.json_hooks: list[Callable[[dict[str, Any], str | None, str | None], None]] = []
        #: the application object (set by the RoomManager)
        self.app: Any = None
        #: the replicator, when one joins this room to other replicas
        self.replicator: Any = None
        #: the newest update-log row merged by a catch-up (the replicator's watermark)
        self.merged_upto = 0
        #: True while applying changes that were persisted by another replica
        self.applying_remote = False
        self.closed = False

    # -- loading ------------------------------------------------------------------------

    def load(self, persisted: dict[str, list[bytes]]) -> None:
        """Hold the persisted state (checkpoint and updates per doc): ``index`` is
        built at once, cell and output docs when first used (see :mod:`.docs`)."""
        index: Doc[Any] = Doc()
        for update in persisted.get(INDEX_DOC, ()):
            index.apply_update(update)
        self._add_doc(INDEX_DOC, index)
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
        for name, updates in persisted.items():
            if name != INDEX_DOC and not name.startswith((CELL_PREFIX, OUT_PREFIX)):
                self.internal_persisted[name] = updates

    def add_internal_doc(self, name: str, doc: Doc[Any], wire_name: str) -> None:
        """Hold ``doc`` (persisted, checkpointed) under an internal name.

        Clients never name it: a ``view_hooks`` entry routes a session's
        subscription of ``wire_name`` to it, and its updates are sent as
        updates of ``wire_name`` to the sessions so routed.
        """
        self._add_doc(name, doc)
        self.wire_names[name] = wire_name

    def drop_internal_doc(self, name: str) -> None:
        self._drop_doc(name)

    def reroute(self, session: Session, name: str) -> None:
        """Unsubscribe ``session`` from ``name`` and tell it to subscribe again
        (``resync``), for instance because a view for it appeared or went away."""
        self._unsubscribe(session, name)
        session.send_json({"type": "resync", "doc": name})

    def _view(self, session: Session, name: str) -> str | None:
        for hook in self.view_hooks:
            internal = hook(session, name)
            if internal is not None and internal in self.docs:
                return internal
        return None

    def _add_doc(self, name: str, doc: Doc[Any]) -> None:
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

    def _drop_doc(self, name: str) -> None:
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
        self.docs.changed(name)
        if name == INDEX_DOC:
            self._cell_ids = None
        self.doc_bytes[name] = self.doc_bytes.get(name, 0) + len(update)
        self.updates_since_checkpoint += 1
        self.last_activity = time.monotonic()
        if not self.applying_remote and not name.startswith(CELL_PREFIX) and name != INDEX_DOC:
            # Outputs are durable before anyone sees them: a crash right after a client
            # saw an output must not lose it. (Cell edits fan out at once; a client learns
            # they are durable from `sync`. Index changes are acknowledged commands.)
            origin = self._origin
            self.update_log.append(self.id, name, update, then=lambda: self._fan_out(name, update, origin))
            return
        if not self.applying_remote:
            self.update_log.append(self.id, name, update)
        self._fan_out(name, update, self._origin)

    def _fan_out(self, name: str, update: bytes, origin: Session | None) -> None:
        if self.closed:
            return
        frame = p.sync_update(self.wire_names.get(name, name), update)
        for session in self.subscribers.get(name, ()):
            if session is not origin:
                session.send_bytes(frame)
        for hook in self.update_hooks:
            hook(name, update)

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
            self._add_doc(name, doc)
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
                    self._add_doc(name, Doc())
        for cid in before - now:
            for name in (cell_doc(cid), out_doc(cid)):
                self._drop_doc(name)
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
            for hook in self.json_hooks:
                hook(message, user, exclude_user)

        self.update_log.after_pending(publish)

    # -- sessions ---------------------------------------------------------------------

    def join(self, session: Session) -> None:
        self.sessions.add(session)
        self.last_activity = time.monotonic()
        for hook in self.join_hooks:
            hook(session)

    def leave(self, session: Session) -> None:
        self.sessions.discard(session)
        for name in list(session.subscribed):
            self._unsubscribe(session, name)
        session.subscribed.clear()
        self._views.pop(session, None)
        gone = [cid for cid, (owner, _, _) in self.awareness.items() if owner is session]
        if gone:
            self._remove_awareness(gone)
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
        self._rebroadcast_awareness()

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

    def handle_frame(self, session: Session, data: bytes) -> None:
        """Handle one binary frame; errors are reported to the session, never raised."""
        try:
            entries = p.decode_frame(data)
        except p.ProtocolError as exc:
            session.send_error("malformed_frame", f"malformed binary frame: {exc}")
            return
        replies: list[bytes] = []
        size = 0
        for entry in entries:
            count = len(replies)
            try:
                self._handle_entry(session, entry, replies)
            except CollabError as exc:
                session.send_error(exc.code, exc.message, doc=entry.doc)
                if exc.code in ("forbidden", "invalid_update", "too_large") and entry.kind == p.MSG_SYNC and entry.sub != p.SYNC_STEP1:
                    session.send_json({"type": "resync", "doc": entry.doc})
            for reply in replies[count:]:
                size += len(reply)
            if size >= REPLY_FRAME_BYTES:
                # a long answer (a join) goes out in parts: the client applies the first
                # (index comes first) while the rest is being answered
                session.send_bytes(b"".join(replies))
                replies.clear()
                size = 0
        if replies:
            session.send_bytes(b"".join(replies))

    def _check_readable(self, session: Session, name: str) -> tuple[str, bool]:
        """``name``'s kind, and whether ``session`` may write it, if it may read it;
        else the error to send."""
        if name not in self.docs or name in self.wire_names:  # internal docs have no wire name of their own
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

    def _handle_entry(self, session: Session, entry: p.Entry, replies: list[bytes]) -> None:
        name = entry.doc
        if entry.kind == p.MSG_AWARENESS:
            if name != INDEX_DOC:
                raise BadRequest("awareness is carried on the 'index' doc only", code="bad_awareness")
            self._handle_awareness(session, entry.payload)
            return
        kind, writable = self._check_readable(session, name)
        internal = self._view(session, name) if self.view_hooks and kind == "out" else None
        target = internal or name
        if entry.sub == p.SYNC_STEP1:
            # answered without building a stored doc (see .docs)
            try:
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
                    replies.append(self._awareness_frame_for(session, list(self.awareness)))
            return
        # step 2 or update: a write
        if name not in session.subscribed:
            raise BadRequest(f"send sync step 1 for {name!r} before updates", code="not_subscribed")
        if len(entry.payload) > self.max_doc_bytes:
            raise TooLarge(f"update of {len(entry.payload)} bytes exceeds the limit")
        if not writable:
            if entry.payload == EMPTY_UPDATE or self._is_noop(self.docs[target], entry.payload):
                return
            self._unsubscribe(session, name)
            raise Forbidden(f"you may not write {name!r}")
        if entry.payload == EMPTY_UPDATE:
            return  # a peer's answer to our sync step 1 when it has nothing we lack
        if self.doc_bytes.get(name, 0) + len(entry.payload) > self.max_doc_bytes:
            self._unsubscribe(session, name)
            raise TooLarge(f"{name!r} would exceed {self.max_doc_bytes} bytes")
        doc = self.docs[target]
        self._origin = session
        try:
            doc.apply_update(entry.payload)
        except Exception as exc:
            self._unsubscribe(session, name)
            raise BadRequest(f"invalid update for {name!r}", code="invalid_update") from exc
        finally:
            self._origin = None

    @staticmethod
    def _is_noop(doc: Doc[Any], update: bytes) -> bool:
        """True if ``update`` would change nothing in ``doc`` (checked on a scratch copy)."""
        if update == b"\x00\x00":
            return True
        scratch: Doc[Any] = Doc()
        scratch.apply_update(doc.get_update())
        changed: list[bool] = []
        sub = scratch.observe(lambda _e: changed.append(True))
        try:
            scratch.apply_update(update)
        except Exception:
            return False
        finally:
            scratch.unobserve(sub)
        if changed:
            return False
        # An update whose dependencies are missing stays pending instead of failing.
        return scratch.get_state() == doc.get_state()

    # -- awareness ------------------------------------------------------------------------

    def _handle_awareness(self, session: Session, payload: bytes) -> None:
        if len(payload) > self.max_awareness_bytes:
            raise TooLarge(f"awareness update over {self.max_awareness_bytes} bytes")
        try:
            states = p.decode_awareness(payload, max_states=4)
        except (p.ProtocolError, RecursionError) as exc:  # RecursionError: JSON nested too deeply
            raise BadRequest(f"malformed awareness update: {exc}", code="bad_awareness") from exc
        # validate the whole update before applying any of it
        claimed = set(session.awareness_ids)
        for st in states:
            current = self.awareness.get(st.client_id)
            if current is not None and current[0] is not session:
                raise Forbidden("awareness client id belongs to another connection", code="bad_awareness")
            if current is None and st.client_id not in claimed:
                if len(claimed) >= 4:
                    raise BadRequest("too many awareness client ids on one connection", code="bad_awareness")
                claimed.add(st.client_id)
        session.awareness_ids |= claimed
        changed: list[int] = []
        removed: list[int] = []
        for st in states:
            current = self.awareness.get(st.client_id)
            if current is not None and st.clock < current[1]:
                continue
            if st.state is None:
                removed.append(st.client_id)
                continue
            self.awareness[st.client_id] = (session, st.clock, self._sanitize_awareness(session, st.state))
            changed.append(st.client_id)
        if removed:
            self._remove_awareness(removed)
        if changed:
            self._broadcast_awareness(changed, exclude=session)
            if self.awareness_hooks:
                payload = p.encode_awareness(p.AwarenessState(c, self.awareness[c][1], self.awareness[c][2]) for c in changed)
                for hook in self.awareness_hooks:
                    hook(payload)

    def apply_remote_awareness(self, payload: bytes, owner: Any) -> None:
        """Awareness states of clients on another replica (already sanitised there)."""
        try:
            states = p.decode_awareness(payload, max_states=1 << 16)
        except p.ProtocolError:
            return
        changed: list[int] = []
        removed: list[int] = []
        for st in states:
            current = self.awareness.get(st.client_id)
            if current is not None and current[1] > st.clock:
                continue
            if st.state is None:
                removed.append(st.client_id)
            else:
                self.awareness[st.client_id] = (owner, st.clock, st.state)
                changed.append(st.client_id)
        if removed:
            self._remove_awareness(removed, publish=False)
        if changed:
            self._broadcast_awareness(changed)

    def _sanitize_awareness(self, session: Session, state: dict[str, Any]) -> dict[str, Any]:
        clean = {k: v for k, v in state.items() if k in AWARENESS_FIELDS}
        user = state.get("user") if isinstance(state.get("user"), dict) else {}
        assert isinstance(user, dict)
        color = user.get("color")
        clean["user"] = {"name": session.identity.name}
        if isinstance(color, str) and len(color) <= 32:
            clean["user"]["color"] = color
        cell = clean.get("cell")
        if cell is not None and not (isinstance(cell, str) and f"cell:{cell}" in self.docs):
            clean.pop("cell", None)
            clean.pop("cursor", None)
        return clean

    def _state_for(self, receiver: Session, state: dict[str, Any] | None) -> dict[str, Any] | None:
        if state is None:
            return None
        cell = state.get("cell")
        if "cursor" in state and (cell is None or not receiver.access.can("read_cell", cell)):
            state = {k: v for k, v in state.items() if k != "cursor"}
        return state

    def _awareness_frame_for(self, receiver: Session, client_ids: Iterable[int]) -> bytes:
        items = []
        for cid in client_ids:
            owner, clock, state = self.awareness.get(cid, (None, 0, None))
            items.append(p.AwarenessState(cid, clock, self._state_for(receiver, state)))
        return p.awareness_message(INDEX_DOC, p.encode_awareness(items))

    def _broadcast_awareness(self, client_ids: list[int], exclude: Session | None = None) -> None:
        for receiver in self.subscribers.get(INDEX_DOC, ()):
            if receiver is not exclude:
                receiver.send_bytes(self._awareness_frame_for(receiver, client_ids))

    def _rebroadcast_awareness(self) -> None:
        if self.awareness:
            self._broadcast_awareness(list(self.awareness))

    def _remove_awareness(self, client_ids: list[int], *, publish: bool = True) -> None:
        items = []
        for cid in client_ids:
            entry = self.awareness.pop(cid, None)
            clock = entry[1] + 1 if entry else 0
            if entry is not None and isinstance(entry[0], Session):
                entry[0].awareness_ids.discard(cid)
            items.append(p.AwarenessState(cid, clock, None))
        payload = p.encode_awareness(items)
        frame = p.awareness_message(INDEX_DOC, payload)
        for receiver in self.subscribers.get(INDEX_DOC, ()):
            receiver.send_bytes(frame)
        if publish:
            for hook in self.awareness_hooks:
                hook(payload)

    def presence(self) -> list[dict[str, Any]]:
        """Who is here (names and cells), for REST and chat."""
        return [
            {"client_id": cid, "user": state.get("user", {}).get("name"), "cell": state.get("cell")}
            for cid, (_, _, state) in self.awareness.items()
            if state is not None
        ]

    # -- structure commands (index writes) ----------------------------------------------

    def insert_cell(self, actor: Session | None, user: str, index: Any, cell_type: Any, source: Any = None) -> str:
        if actor is not None and not actor.access.can("insert_cell"):
            raise Forbidden("you may not insert cells in this notebook")
        if cell_type not in CELL_TYPES:
            raise BadRequest(f"cell_type must be one of {', '.join(CELL_TYPES)}, got {str(cell_type)[:40]!r}", code="invalid_command")
        cells, _ = init_index(self.index)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= len(cells):
            raise BadRequest(f"index must be an integer from 0 to {len(cells)}", code="invalid_command")
        if source is not None and not isinstance(source, str):
            raise BadRequest("source must be a string", code="invalid_command")
        if source is not None and len(source.encode()) > self.max_doc_bytes:
            raise TooLarge("source is too large")
        cid = new_id()
        perms = self.permissions.create_cell(self.id, cid, user)
        cdoc: Doc[Any] = Doc()
        odoc: Doc[Any] = Doc()
        src, _, _ = init_cell(cdoc)
        init_out(odoc)
        self._add_doc(cell_doc(cid), cdoc)
        self._add_doc(out_doc(cid), odoc)
        if source:
            with cdoc.transaction():
                src += source
        with self.index.transaction():
            cells.insert(index, index_entry(cid, cell_type, perms.to_json()))
        # rights of every session change (a new cell); each one learns its caps for it
        self.refresh_all()
        return cid

    def delete_cell(self, actor: Session | None, cell_id: Any) -> None:
        cid = self._cell_arg(cell_id)
        i, _ = self.find_cell(cid)
        if actor is not None and not actor.access.can("delete_cell", cid):
            raise Forbidden("you may not delete this cell")
        cells, _ = init_index(self.index)
        with self.index.transaction():
            del cells[i]
        for name in (cell_doc(cid), out_doc(cid)):
            self._drop_doc(name)
        self.permissions.delete_cell(self.id, cid)
        self.refresh_all()

    def move_cell(self, actor: Session | None, cell_id: Any, index: Any) -> None:
        cid = self._cell_arg(cell_id)
        i, entry = self.find_cell(cid)
        if actor is not None and not actor.access.can("move_cell", cid):
            raise Forbidden("you may not move this cell")
        cells, _ = init_index(self.index)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cells):
            raise BadRequest(f"index must be an integer from 0 to {len(cells) - 1}", code="invalid_command")
        if index == i:
            return
        data = entry.to_py()
        assert isinstance(data, dict)
        with self.index.transaction():
            del cells[i]
            cells.insert(index, Map(dict(data)))

    def set_cell_type(self, actor: Session | None, cell_id: Any, cell_type: Any) -> None:
        cid = self._cell_arg(cell_id)
        _, entry = self.find_cell(cid)
        if actor is not None and not actor.access.can("write_cell", cid):
            raise Forbidden("you may not change this cell")
        if cell_type not in CELL_TYPES:
            raise BadRequest(f"cell_type must be one of {', '.join(CELL_TYPES)}", code="invalid_command")
        if entry["cell_type"] == cell_type:
            return
        entry["cell_type"] = cell_type
        if cell_type != "code":
            outputs, state = init_out(self.docs[out_doc(cid)])
            with self.docs[out_doc(cid)].transaction():
                if len(outputs):
                    del outputs[0 : len(outputs)]
                state["execution_count"] = None

    def update_index_perms(self) -> None:
        """Mirror the permission summary of every cell into ``index``."""
        cells = self.permissions.cells(self.id)
        with self.index.transaction():
            for entry in self.cell_entries():
                perms = cells.get(str(entry["id"]))
                if perms is None:
                    continue
                summary = perms.to_json()
                for key in ("owner", "group", "mode"):
                    if entry.get(key) != summary[key]:
                        entry[key] = summary[key]
                if list(entry.get("acl") or []) != list(summary.get("acl", [])):
                    entry["acl"] = list(summary.get("acl", []))

    def _cell_arg(self, cell_id: Any) -> str:
        if not isinstance(cell_id, str):
            raise BadRequest("cell_id must be a string", code="invalid_command")
        name = cell_doc(cell_id)
        if name not in self.docs:
            raise NotFound("no such cell", code="unknown_cell")
        return cell_id

    # -- snapshots ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, bytes]:
        """Every doc's whole state as one update (stored docs are not built for it)."""
        return {name: self.docs.state(name) for name in self.docs}

    def close(self) -> None:
        for name in list(self.docs):
            self._drop_doc(name)
        self.closed = True
