"""Per-user outputs: private ``out:`` docs for per-user kernel mode.

In per-user mode each user runs cells in a kernel of their own, and what that
kernel prints must reach that user only. The room keeps such outputs in
*overlay* docs under internal names (``~u:`` + 22 characters of
base64url(SHA-256(user NUL cell id))), persisted and checkpointed like every
other doc. An overlay also holds an ``owner`` Map ``{user, cell}`` so that it
can be matched to its cell again when the room is loaded.

Routing happens in :class:`~hub_collab.documents.room.NotebookRoom` through the
kernel service's ``view`` (a room observer): when a session of user U subscribes to ``out:<id>`` and U has an
overlay for that cell (and the notebook is in per-user mode), the room serves
the overlay instead, under the public name ``out:<id>``; its updates go to U's
subscribed sessions only. Every other session, including other users' and
admins', receives the shared doc (which per-user runs never touch). When an
overlay appears, or the mode changes, the sessions concerned are told
``resync {doc}`` and subscribe again through the new route.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from typing import Any

from pycrdt import Doc, Map

from ..documents.notebook import cell_doc, init_out, out_doc, split_doc_name
from ..documents.room import NotebookRoom
from ..documents.session import Session
from .outputs import ensure_out_doc

log = logging.getLogger("hub_collab.kernels")

OVERLAY_PREFIX = "~u:"


def overlay_name(user: str, cell_id: str) -> str:
    digest = hashlib.sha256(f"{user}\x00{cell_id}".encode()).digest()
    return OVERLAY_PREFIX + base64.urlsafe_b64encode(digest).decode()[:22]


def overlay_owner(doc: Doc[Any]) -> tuple[str, str] | None:
    owner = doc.get("owner", type=Map)
    user, cell = owner.get("user"), owner.get("cell")
    if isinstance(user, str) and isinstance(cell, str):
        return user, cell
    return None


def load_overlays(room: NotebookRoom) -> int:
    """Add the persisted overlays of live cells to ``room``; return how many."""
    n = 0
    for name, updates in list(room.internal_persisted.items()):
        if not name.startswith(OVERLAY_PREFIX) or name in room.docs:
            continue
        doc: Doc[Any] = Doc()
        for update in updates:
            doc.apply_update(update)
        owner = overlay_owner(doc)
        if owner is None or overlay_name(*owner) != name or cell_doc(owner[1]) not in room.docs:
            continue  # a deleted cell's overlay: the next checkpoint drops it
        init_out(doc)
        room.add_internal_doc(name, doc, out_doc(owner[1]))
        n += 1
    return n


def overlays(room: NotebookRoom) -> list[Doc[Any]]:
    return [room.docs[name] for name in room.docs if name.startswith(OVERLAY_PREFIX)]


def ensure_overlay(room: NotebookRoom, user: str, cell_id: str) -> Doc[Any]:
    """The overlay of ``user`` for ``cell_id``, created from the shared doc if missing.

    A new overlay starts as a copy of the shared doc (so imported outputs stay
    visible), and the user's sessions subscribed to the shared doc are re-routed.
    """
    name = overlay_name(user, cell_id)
    existing = room.docs.get(name)
    if existing is not None:
        return existing
    doc: Doc[Any] = Doc()
    shared = room.docs.get(out_doc(cell_id))
    if shared is not None:
        doc.apply_update(shared.get_update())
    init_out(doc)
    owner = doc.get("owner", type=Map)
    with doc.transaction():
        owner["user"] = user
        owner["cell"] = cell_id
    room.add_internal_doc(name, doc, out_doc(cell_id))
    # persist the seed: changes from now on are observed by the room
    room.update_log.append(room.id, name, doc.get_update())
    ensure_out_doc(doc)
    wire = out_doc(cell_id)
    for session in list(room.sessions):
        if session.identity.name == user and wire in session.subscribed:
            room.reroute(session, wire)
    return doc


def view(room: NotebookRoom, per_user: bool, session: Session, name: str) -> str | None:
    """The kernel service's ``view``: the overlay to serve ``session`` for ``name``, if any."""
    if not per_user or not name.startswith("out:"):
        return None
    try:
        _, cid = split_doc_name(name)
    except ValueError:
        return None
    if cid is None:
        return None
    internal = overlay_name(session.identity.name, cid)
    return internal if internal in room.docs else None


def reroute_all(room: NotebookRoom) -> None:
    """Make every session subscribe to its ``out:`` docs again (after a mode change)."""
    for session in list(room.sessions):
        for name in [n for n in session.subscribed if n.startswith("out:")]:
            room.reroute(session, name)


def describe(room: NotebookRoom) -> dict[str, Any]:
    """For logs and tests: overlay names by user."""
    out: dict[str, Any] = {}
    for doc in overlays(room):
        owner = overlay_owner(doc)
        if owner is not None:
            out.setdefault(owner[0], []).append(owner[1])
    return out
