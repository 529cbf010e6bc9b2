"""Presence on a notebook: :class:`RoomAwareness`, the y-protocols awareness of one room.

Clients send awareness updates on the ``index`` doc (who they are, which cell
they are in, their cursor). The room hands them to its :class:`RoomAwareness`,
which keeps one state per awareness client id and

* lets a connection set only the client ids it claimed (at most four) and only
  the fields in :data:`AWARENESS_FIELDS`; the user name is always the
  authenticated one, never the client's claim;
* sends each receiver a view filtered for it (a cursor in a cell the receiver
  may not read is left out);
* removes a connection's states when it leaves;
* tells the room's observers of every local change (the replicator publishes it
  to the other replicas, whose states arrive through :meth:`RoomAwareness.apply_remote`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import BadRequest, Forbidden, TooLarge
from ..types import INDEX_DOC
from . import protocol as p
from .session import Session

if TYPE_CHECKING:
    from .room import NotebookRoom

#: awareness fields a client may set; everything else is dropped
AWARENESS_FIELDS = frozenset({"user", "cell", "cursor", "typing", "status"})

#: awareness client ids one connection may claim
MAX_CLIENT_IDS = 4


class RoomAwareness:
    """The awareness states of one room's clients, on this replica and the others."""

    def __init__(self, room: NotebookRoom, max_bytes: int = 4096) -> None:
        self.room = room
        self.max_bytes = max_bytes
        # awareness client id -> (owner, clock, sanitised state); the owner is the local
        # Session, or an opaque token of the replica that owns the client (see Replicator)
        self.states: dict[int, tuple[object, int, dict[str, Any] | None]] = {}

    def __bool__(self) -> bool:
        return bool(self.states)

    def __iter__(self) -> Any:
        return iter(self.states)

    def handle(self, session: Session, payload: bytes) -> None:
        """An awareness update from a local client; raises a CollabError if refused."""
        if len(payload) > self.max_bytes:
            raise TooLarge(f"awareness update over {self.max_bytes} bytes")
        try:
            states = p.decode_awareness(payload, max_states=MAX_CLIENT_IDS)
        except (p.ProtocolError, RecursionError) as exc:  # RecursionError: JSON nested too deeply
            raise BadRequest(f"malformed awareness update: {exc}", code="bad_awareness") from exc
        # a client id named twice counts once, with its last entry (a state then null in
        # one update made the id both changed and removed)
        states = list({st.client_id: st for st in states}.values())
        # validate the whole update before applying any of it
        claimed = set(session.awareness_ids)
        for st in states:
            current = self.states.get(st.client_id)
            if current is not None and current[0] is not session:
                raise Forbidden("awareness client id belongs to another connection", code="bad_awareness")
            if current is None and st.client_id not in claimed:
                if len(claimed) >= MAX_CLIENT_IDS:
                    raise BadRequest("too many awareness client ids on one connection", code="bad_awareness")
                claimed.add(st.client_id)
        session.awareness_ids |= claimed
        changed: list[int] = []
        removed: list[int] = []
        for st in states:
            current = self.states.get(st.client_id)
            if current is not None and st.clock < current[1]:
                continue
            if st.state is None:
                removed.append(st.client_id)
                continue
            self.states[st.client_id] = (session, st.clock, self._sanitize(session, st.state))
            changed.append(st.client_id)
        if removed:
            self.remove(removed)
        if changed:
            self.broadcast(changed, exclude=session)
            observers = self.room.observers
            if observers:
                payload = p.encode_awareness(p.AwarenessState(c, self.states[c][1], self.states[c][2]) for c in changed)
                for observer in observers:
                    observer.awareness_changed(self.room, payload)

    def apply_remote(self, payload: bytes, owner: object) -> None:
        """Awareness states of clients on another replica (already sanitised there)."""
        try:
            states = p.decode_awareness(payload, max_states=1 << 16)
        except p.ProtocolError:
            return
        changed: list[int] = []
        removed: list[int] = []
        for st in states:
            current = self.states.get(st.client_id)
            if current is not None and current[1] > st.clock:
                continue
            if st.state is None:
                removed.append(st.client_id)
            else:
                self.states[st.client_id] = (owner, st.clock, st.state)
                changed.append(st.client_id)
        if removed:
            self.remove(removed, publish=False)
        if changed:
            self.broadcast(changed)

    def _sanitize(self, session: Session, state: dict[str, Any]) -> dict[str, Any]:
        clean = {k: v for k, v in state.items() if k in AWARENESS_FIELDS}
        user = state.get("user") if isinstance(state.get("user"), dict) else {}
        assert isinstance(user, dict)
        color = user.get("color")
        clean["user"] = {"name": session.identity.name}
        if isinstance(color, str) and len(color) <= 32:
            clean["user"]["color"] = color
        cell = clean.get("cell")
        if cell is not None and not (isinstance(cell, str) and f"cell:{cell}" in self.room.docs):
            clean.pop("cell", None)
            clean.pop("cursor", None)
        return clean

    @staticmethod
    def _state_for(receiver: Session, state: dict[str, Any] | None) -> dict[str, Any] | None:
        if state is None:
            return None
        cell = state.get("cell")
        if "cursor" in state and (cell is None or not receiver.access.can("read_cell", cell)):
            state = {k: v for k, v in state.items() if k != "cursor"}
        return state

    def frame_for(self, receiver: Session, client_ids: Iterable[int] | None = None) -> bytes:
        """An awareness message with the states of ``client_ids`` (all) as ``receiver`` may see them."""
        items = []
        for cid in self.states if client_ids is None else client_ids:
            _, clock, state = self.states.get(cid, (None, 0, None))
            items.append(p.AwarenessState(cid, clock, self._state_for(receiver, state)))
        return p.awareness_message(INDEX_DOC, p.encode_awareness(items))

    def broadcast(self, client_ids: list[int], exclude: Session | None = None) -> None:
        for receiver in self.room.subscribers.get(INDEX_DOC, ()):
            if receiver is not exclude:
                receiver.send_bytes(self.frame_for(receiver, client_ids))

    def rebroadcast(self) -> None:
        """Send every state again (rights changed: what each receiver may see did too)."""
        if self.states:
            self.broadcast(list(self.states))

    def remove(self, client_ids: list[int], *, publish: bool = True) -> None:
        items = []
        for cid in client_ids:
            entry = self.states.pop(cid, None)
            clock = entry[1] + 1 if entry else 0
            if entry is not None and isinstance(entry[0], Session):
                entry[0].awareness_ids.discard(cid)
            items.append(p.AwarenessState(cid, clock, None))
        payload = p.encode_awareness(items)
        frame = p.awareness_message(INDEX_DOC, payload)
        for receiver in self.room.subscribers.get(INDEX_DOC, ()):
            receiver.send_bytes(frame)
        if publish:
            for observer in self.room.observers:
                observer.awareness_changed(self.room, payload)

    def session_left(self, session: Session) -> None:
        gone = [cid for cid, (owner, _, _) in self.states.items() if owner is session]
        if gone:
            self.remove(gone)

    def presence(self) -> list[dict[str, Any]]:
        """Who is here (names and cells), for REST and chat."""
        return [
            {"client_id": cid, "user": state.get("user", {}).get("name"), "cell": state.get("cell")}
            for cid, (_, _, state) in self.states.items()
            if state is not None
        ]
