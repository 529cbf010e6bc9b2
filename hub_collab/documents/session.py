"""What a room needs from a connected client: :class:`Session`.

The WebSocket handler implements it; tests and in-process tools may too. A
session carries the authenticated identity (never anything the client claimed)
and its current :class:`~hub_collab.permissions.access.Access`.
"""

from __future__ import annotations

import abc
from contextvars import ContextVar
from typing import Any

from ..permissions.access import Access, Identity


class Session(abc.ABC):
    """One client connected to one notebook."""

    identity: Identity
    access: Access
    #: doc names this session receives updates for
    subscribed: set[str]
    #: awareness client ids this session has claimed
    awareness_ids: set[int]
    #: the connection's id (a WebSocket's; "" for a REST request), kept in the history
    session_id: str = ""
    #: when the connection opened (``time.perf_counter()``), until its first sync is
    #: answered (then 0.0): the join time in the metrics
    opened_at: float = 0.0

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.subscribed = set()
        self.awareness_ids = set()

    @abc.abstractmethod
    def send_bytes(self, data: bytes) -> None:
        """Queue a binary frame; must not block or raise if the peer is gone."""

    @abc.abstractmethod
    def send_json(self, message: dict[str, Any]) -> None:
        """Queue a text frame holding ``message``; must not block or raise."""

    @abc.abstractmethod
    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection (the room has already forgotten this session)."""

    def send_error(self, code: str, message: str, ref: Any = None, **extra: Any) -> None:
        payload: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if ref is not None:
            payload["ref"] = ref
        payload.update(extra)
        self.send_json(payload)


#: The session a command runs for, set by the command dispatcher while it runs: the
#: author that the history records for the writes the command makes through the server
#: (a structure change, a restore). Updates a client sends are recorded with their own
#: session whatever this holds.
acting: ContextVar[Session | None] = ContextVar("hub_collab_acting", default=None)
