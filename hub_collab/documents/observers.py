"""What the services learn from the rooms: the :class:`RoomObserver` protocol.

The replicator (publishing to other replicas) and the kernel service (kernel
state for joining sessions, per-user output views, keeping rooms with running
kernels loaded) follow the rooms through this one seam. They are registered
once, in the order :meth:`hub_collab.app.HubCollab.init_wiring` states, with
:meth:`RoomManager.observe <hub_collab.documents.rooms.RoomManager.observe>`;
every room the manager loads calls the same observers, in that order.

Subclass :class:`RoomObserverBase` to implement only what you need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .room import NotebookRoom
    from .session import Session


class RoomObserver(Protocol):
    # -- lifecycle: called by the RoomManager ------------------------------------------

    def room_loaded(self, room: NotebookRoom) -> None:
        """A room was loaded (before anyone can join it)."""

    async def room_ready(self, room: NotebookRoom) -> None:
        """Awaited after :meth:`room_loaded`, before the room is handed out."""

    def room_unloaded(self, room: NotebookRoom) -> None:
        """The room is being unloaded or its notebook was deleted (its docs are still there)."""

    def keeps_loaded(self, room: NotebookRoom) -> bool:
        """True if the room must stay loaded although nobody is connected."""

    # -- live: called by the room ------------------------------------------------------

    def doc_changed(self, room: NotebookRoom, name: str, update: bytes) -> None:
        """A doc changed here (``room.applying_remote`` says if it came from another replica)."""

    def awareness_changed(self, room: NotebookRoom, payload: bytes) -> None:
        """This replica's clients changed their awareness (a sanitised awareness update)."""

    def json_broadcast(
        self, room: NotebookRoom, message: dict[str, Any], user: str | None, exclude_user: str | None
    ) -> None:
        """:meth:`NotebookRoom.broadcast_json` was called: the other replicas' sessions need it too."""

    def session_joined(self, room: NotebookRoom, session: Session) -> None:
        """A session joined the room (after ``welcome``)."""

    def view(self, room: NotebookRoom, session: Session, name: str) -> str | None:
        """The internal doc to serve ``session`` under the wire name ``out:<id>``, or None."""


class RoomObserverBase:
    """A :class:`RoomObserver` that does nothing; override what you need."""

    def room_loaded(self, room: NotebookRoom) -> None:
        return None

    async def room_ready(self, room: NotebookRoom) -> None:
        return None

    def room_unloaded(self, room: NotebookRoom) -> None:
        return None

    def keeps_loaded(self, room: NotebookRoom) -> bool:
        return False

    def doc_changed(self, room: NotebookRoom, name: str, update: bytes) -> None:
        return None

    def awareness_changed(self, room: NotebookRoom, payload: bytes) -> None:
        return None

    def json_broadcast(
        self, room: NotebookRoom, message: dict[str, Any], user: str | None, exclude_user: str | None
    ) -> None:
        return None

    def session_joined(self, room: NotebookRoom, session: Session) -> None:
        return None

    def view(self, room: NotebookRoom, session: Session, name: str) -> str | None:
        return None
