"""Who may write with a Yjs client id: :class:`ClientIds`.

A Yjs struct is known by its id, (client id, clock), and a doc keeps the first
struct it receives for an id: a later one with the same id is a duplicate and is
dropped. A client that wrote with someone else's client id at that client's next
clock would have the owner's next keystroke dropped everywhere but in the owner's
own editor. So a client id belongs to the user who first wrote with it in a doc,
and an update that brings structs of a client id owned by someone else is refused
(``invalid_update``), as is one that continues a client id the doc holds without an
owner (the server's own writes: an import's seed, a cell inserted with a source,
edits stored before owners were recorded) or uses 0 or the id the import seeds the
doc with.

The owners live in a doc of the room (:data:`CLIENTS_DOC`, one Map: ``"<doc> <client
id>"`` → user name) that clients never see. Being a doc, it is persisted with the
update log and the checkpoints (a restart keeps it), reaches the other replicas
like every doc update (and their catch-up reads it from the store), and two
replicas that give the same new id to two users at once converge on one owner.
The owner is a user, not a session: a client that reconnects keeps its client id
and sends its offline edits with it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

from pycrdt import Doc, Map

#: the internal doc holding the owners (not a name clients can subscribe to)
CLIENTS_DOC = "~clients"


def seed_client_id(nb_id: str, name: str) -> int:
    """The client id an import seeds the doc ``name`` with (see ``notebook.seeded_doc``)."""
    return zlib.crc32(f"{nb_id}/{name}".encode()) or 1


class ClientIds:
    """The owners of the client ids of one notebook's docs, held in ``doc``."""

    def __init__(self, nb_id: str, doc: Doc[Any]) -> None:
        self.nb_id = nb_id
        self.doc = doc
        self._owners: Map[Any] = doc.get("owners", type=Map)

    def owner(self, name: str, client: int) -> str | None:
        value = self._owners.get(f"{name} {client}")
        return value if isinstance(value, str) else None

    def refusal(self, name: str, clients: Iterable[int], held: dict[int, int], user: str) -> tuple[str | None, list[int]]:
        """Why ``user`` may not write structs of ``clients`` into the doc ``name``
        (which holds ``held``: client → next clock), or None and the ids that are new
        and become ``user``'s once the update is applied."""
        new = []
        for client in clients:
            owner = self.owner(name, client)
            if owner == user:
                continue
            if owner is not None:
                return f"client id {client} belongs to another user: write with a client id of your own", []
            if client in held:
                return f"client id {client} is the server's: write with a client id of your own", []
            if client == 0 or client == seed_client_id(self.nb_id, name):
                return f"client id {client} is reserved for the server: write with a client id of your own", []
            new.append(client)
        return None, new

    def bind(self, name: str, clients: list[int], user: str) -> None:
        """Make ``clients`` ``user``'s in the doc ``name`` (one change of :data:`CLIENTS_DOC`)."""
        if not clients:
            return
        with self.doc.transaction():
            for client in clients:
                self._owners[f"{name} {client}"] = user
