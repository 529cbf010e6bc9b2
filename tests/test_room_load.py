"""A loaded notebook keeps its cell and output docs as stored bytes: joins, checkpoints and
exports do not build them; a write builds exactly the doc written; rows that another
replica committed are still merged (and reach subscribers) at the next checkpoint.

In process, on a real SQLite store, with the service's own RoomManager and PermissionStore.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pycrdt import Doc, Text

from hub_collab.documents import protocol as p
from hub_collab.documents.clientids import CLIENTS_DOC
from hub_collab.documents.docs import EMPTY_UPDATE
from hub_collab.documents.rooms import RoomManager
from hub_collab.documents.session import Session
from hub_collab.permissions.access import Identity
from hub_collab.permissions.store import PermissionStore
from hub_collab.store import Store, UpdateLog, make_engine

ALICE = Identity("alice", frozenset({"students"}))
BOB = Identity("bob", frozenset({"students"}))

NOTEBOOK = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {},
    "cells": [
        {"id": f"c{i}", "cell_type": "code", "metadata": {}, "execution_count": 1, "source": f"x = {i}",
         "outputs": [{"output_type": "stream", "name": "stdout", "text": f"{i}\n"}]}
        for i in range(5)
    ],
}  # fmt: skip


class Recorder(Session):
    def __init__(self, identity: Identity) -> None:
        super().__init__(identity)
        self.frames: list[bytes] = []
        self.messages: list[dict[str, Any]] = []

    def send_bytes(self, data: bytes) -> None:
        self.frames.append(data)

    def send_json(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.messages.append({"type": "closed", "code": code})

    def updates(self, doc: str) -> list[bytes]:
        return [e.payload for f in self.frames for e in p.decode_frame(f) if e.doc == doc and e.sub == p.SYNC_UPDATE]


class World:
    def __init__(self, root: Path) -> None:
        self.url = f"sqlite:///{root / 'collab.sqlite'}"
        self.engine = make_engine(self.url)
        self.store = Store(self.engine)
        self.store.start()
        self.permissions = PermissionStore(self.url, engine=self.engine)
        self.permissions.start()
        self.log = UpdateLog(self.store)
        self.rooms = RoomManager(self.store, self.log, self.permissions)

    async def start(self) -> None:
        self.log.start()
        self.rooms.start()

    async def stop(self) -> None:
        await self.rooms.stop()
        await self.log.stop()
        self.permissions.stop()
        self.engine.dispose()


async def fresh_room(world: World) -> Any:
    """The notebook, created, checkpointed and loaded anew (as after a restart)."""
    record = await world.rooms.create_notebook(ALICE, "lazy", NOTEBOOK, group="students", mode=0o770)
    room = await world.rooms.get(record.id)
    await world.rooms.unload(room)
    return await world.rooms.get(record.id)


def wire_docs(room: Any) -> list[str]:
    """The docs clients can subscribe to (not the room's internal ones, such as the
    owners of client ids, which is always built)."""
    return [name for name in room.docs if name != CLIENTS_DOC]


def built(room: Any) -> set[str]:
    return {name for name in wire_docs(room) if room.docs.is_built(name)}


def join(room: Any, identity: Identity) -> Recorder:
    session = Recorder(identity)
    session.access = room.compute_access_for(identity)
    room.join(session)
    room.handle_frame(session, b"".join(p.sync_step1(name, b"\x00") for name in wire_docs(room)))
    return session


def held(session: Recorder) -> dict[str, Doc[Any]]:
    docs: dict[str, Doc[Any]] = {}
    for frame in session.frames:
        for entry in p.decode_frame(frame):
            if entry.kind == p.MSG_SYNC and entry.sub in (p.SYNC_STEP2, p.SYNC_UPDATE):
                docs.setdefault(entry.doc, Doc()).apply_update(entry.payload)
    return docs


def insertion(doc: Doc[Any], index: int, text: str) -> bytes:
    """The update that inserts ``text`` at ``index`` of a copy of ``doc``'s source."""
    copy: Doc[Any] = Doc()
    copy.apply_update(doc.get_update())
    before = copy.get_state()
    copy.get("source", type=Text).insert(index, text)
    return copy.get_update(before)


async def test_joins_checkpoints_and_exports_leave_stored_docs_unbuilt(world: World) -> None:
    room = await fresh_room(world)
    assert built(room) == {"index"}
    bob = join(room, BOB)
    docs = held(bob)
    assert str(docs["cell:c3"].get("source", type=Text)) == "x = 3"
    assert len(docs) == 11 and not [m for m in bob.messages if m.get("type") == "error"]
    await world.rooms.checkpoint(room)
    exported = world.rooms.export(room, room.compute_access_for(BOB))
    assert [c["source"] for c in exported["cells"]] == [f"x = {i}" for i in range(5)]
    assert exported["cells"][2]["outputs"] == [{"output_type": "stream", "name": "stdout", "text": "2\n"}]
    assert built(room) == {"index"}, "joining, checkpointing and exporting must not build docs"


async def test_a_write_builds_that_doc_only_and_later_joins_see_it(world: World) -> None:
    room = await fresh_room(world)
    alice = join(room, ALICE)
    room.handle_frame(alice, p.sync_update("cell:c1", insertion(held(alice)["cell:c1"], 0, "# ")))
    # an empty answer to the server's step 1 builds nothing
    room.handle_frame(alice, p.sync_step2("cell:c2", EMPTY_UPDATE))
    assert built(room) == {"index", "cell:c1"}
    bob = join(room, BOB)
    assert str(held(bob)["cell:c1"].get("source", type=Text)) == "# x = 1"
    await world.log.flush()
    await world.rooms.unload(room)
    again = await world.rooms.get(room.id)
    assert str(held(join(again, BOB))["cell:c1"].get("source", type=Text)) == "# x = 1"
    assert built(again) == {"index"}


async def test_rows_from_another_replica_are_merged_at_the_checkpoint(world: World) -> None:
    room = await fresh_room(world)
    bob = join(room, BOB)
    # another replica's edit, committed to the shared log but never announced here
    world.store.append_updates([(room.id, "cell:c4", insertion(held(bob)["cell:c4"], 5, "0"))])
    await world.rooms.checkpoint(room)
    assert built(room) == {"index", "cell:c4"}, "only the doc with something new is built"
    assert str(room.docs["cell:c4"].get("source", type=Text)) == "x = 40"
    assert bob.updates("cell:c4"), "the subscriber received the merged change"
    assert str(held(bob)["cell:c4"].get("source", type=Text)) == "x = 40"
