"""Large binary frames are read off the event loop (issue 13, cost per frame).

A frame of at least ``OFFLOAD_FRAME_BYTES`` is decoded, and its large updates read, on a
worker thread (:meth:`NotebookRoom.handle_frame` returns a coroutine for it); the doc is
only changed on the event loop. These tests hold the reader thread at a gate to show
what happens meanwhile: other sessions' edits go through at once, and a change of
rights, a resync or the client leaving before the read ends is respected, with nothing
of the held update applied.

In process, on a real SQLite store (:class:`test_room_load.World`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pycrdt import Doc, Text
from test_room_load import ALICE, BOB, Recorder, World, fresh_room, held, insertion, join

from hub_collab.documents import protocol as p
from hub_collab.documents import room as room_module
from hub_collab.permissions.posix import Perms

CELL = "cell:c1"


def many_structs(doc: Doc[Any], count: int) -> bytes:
    """An update of ``count`` one-character items (each typed before the previous one:
    no two merge), the costliest kind to read, on a copy of ``doc``."""
    copy: Doc[Any] = Doc()
    copy.apply_update(doc.get_update())
    before = copy.get_state()
    text = copy.get("source", type=Text)
    for _ in range(count):
        text.insert(0, "y")
    return copy.get_update(before)


def gapped(doc: Doc[Any], count: int) -> bytes:
    """Like :func:`many_structs`, without its first item: its structs start past what the
    server holds of their client."""
    copy: Doc[Any] = Doc()
    copy.apply_update(doc.get_update())
    text = copy.get("source", type=Text)
    text.insert(0, "z")
    after_first = copy.get_state()
    for _ in range(count):
        text.insert(0, "y")
    return copy.get_update(after_first)


def source(room: Any, name: str = CELL) -> str:
    return str(room.docs[name].get("source", type=Text))


def errors(session: Recorder) -> list[str]:
    return [m["code"] for m in session.messages if m["type"] == "error"]


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    for _ in range(6000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"waited 60 s for {what}")


class Gate:
    """Holds the reader thread before it reads, until :meth:`open`."""

    def __init__(self) -> None:
        self.reading = threading.Event()
        self.opened = threading.Event()

    async def wait_reading(self) -> None:
        await wait_for(self.reading.is_set, "the reader thread to take the frame")

    def open(self) -> None:
        self.opened.set()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    g = Gate()
    read = room_module._read_write

    def gated(write: Any) -> Any:
        if len(write.payload) < room_module.OFFLOAD_UPDATE_BYTES:
            return read(write)  # a small one, read inline
        assert threading.current_thread() is not threading.main_thread(), "a large update must be read off the event loop"
        g.reading.set()
        if not g.opened.wait(120):
            raise AssertionError("the test never opened the gate")
        return read(write)

    monkeypatch.setattr(room_module, "_read_write", gated)
    try:
        yield g
    finally:
        g.open()


async def test_a_large_update_is_read_off_the_loop_and_applied(world: World, gate: Gate) -> None:
    room = await fresh_room(world)
    alice, bob = join(room, ALICE), join(room, BOB)
    update = many_structs(held(alice)[CELL], 20_000)
    assert len(update) >= room_module.OFFLOAD_FRAME_BYTES
    pending = room.handle_frame(alice, p.sync_update(CELL, update))
    assert pending is not None, "a large frame must be handled by a coroutine"
    task = asyncio.ensure_future(pending)
    await gate.wait_reading()
    assert source(room) == "x = 1", "nothing may change before the read ends"
    gate.open()
    await asyncio.wait_for(task, 120)
    assert source(room) == "y" * 20_000 + "x = 1"
    assert str(held(bob)[CELL].get("source", type=Text)) == source(room)
    assert errors(alice) == [] and errors(bob) == []


async def test_others_edit_while_a_large_frame_is_read(world: World, gate: Gate) -> None:
    room = await fresh_room(world)
    alice, bob = join(room, ALICE), join(room, BOB)
    task = asyncio.ensure_future(room.handle_frame(alice, p.sync_update(CELL, many_structs(held(alice)[CELL], 20_000))))
    await gate.wait_reading()
    # bob's keystroke into another cell is handled inline, while alice's frame is held
    assert room.handle_frame(bob, p.sync_update("cell:c2", insertion(held(bob)["cell:c2"], 0, "#"))) is None
    assert source(room, "cell:c2") == "#x = 2"
    assert "cell:c2" in {e.doc for f in alice.frames for e in p.decode_frame(f) if e.sub == p.SYNC_UPDATE}
    gate.open()
    await asyncio.wait_for(task, 120)
    assert source(room).endswith("x = 1") and len(source(room)) == 20_005


async def test_a_large_gap_update_is_refused_whole(world: World) -> None:
    room = await fresh_room(world)
    alice, bob = join(room, ALICE), join(room, BOB)
    seen = len(bob.frames)
    pending = room.handle_frame(alice, p.sync_update(CELL, gapped(held(alice)[CELL], 20_000)))
    assert pending is not None
    await asyncio.wait_for(pending, 120)
    assert errors(alice) == ["invalid_update"]
    assert {"type": "resync", "doc": CELL} in alice.messages
    assert source(room) == "x = 1"
    assert bob.frames[seen:] == []
    await world.log.flush()
    await world.rooms.unload(room)
    again = await world.rooms.get(room.id)
    assert str(held(join(again, BOB))[CELL].get("source", type=Text)) == "x = 1"


async def test_rights_taken_away_during_the_read_refuse_the_update(world: World, gate: Gate) -> None:
    room = await fresh_room(world)
    alice, bob = join(room, ALICE), join(room, BOB)
    task = asyncio.ensure_future(room.handle_frame(bob, p.sync_update(CELL, many_structs(held(bob)[CELL], 20_000))))
    await gate.wait_reading()
    # the owner makes c1 read-only for the group while bob's update is being read
    world.permissions.add_listener(world.rooms.permissions_changed)  # as the application does
    world.permissions.set_cell(room.id, "c1", Perms("alice", "students", 0o744))
    await wait_for(lambda: bob.access.cell_rights("c1") == (True, False), "bob's rights to be refreshed")
    gate.open()
    await asyncio.wait_for(task, 120)
    assert errors(bob) == ["invalid_update"]
    assert {"type": "resync", "doc": CELL} in bob.messages
    assert source(room) == "x = 1"
    assert errors(alice) == []


async def test_a_client_that_left_during_the_read_changes_nothing(world: World, gate: Gate) -> None:
    room = await fresh_room(world)
    alice, bob = join(room, ALICE), join(room, BOB)
    seen = len(bob.frames)
    task = asyncio.ensure_future(room.handle_frame(alice, p.sync_update(CELL, many_structs(held(alice)[CELL], 20_000))))
    await gate.wait_reading()
    room.leave(alice)
    gate.open()
    await asyncio.wait_for(task, 120)
    assert source(room) == "x = 1"
    assert bob.frames[seen:] == []
    assert errors(alice) == []


async def test_a_frame_of_repeated_step1_is_answered_once(world: World) -> None:
    room = await fresh_room(world)
    alice = join(room, ALICE)
    alice.frames.clear()
    frame = p.sync_step1(CELL, b"\x00") * 5_000
    assert len(frame) >= room_module.OFFLOAD_FRAME_BYTES
    pending = room.handle_frame(alice, frame)
    assert pending is not None
    await asyncio.wait_for(pending, 120)
    answers = [e for f in alice.frames for e in p.decode_frame(f)]
    assert [(e.doc, e.sub) for e in answers] == [(CELL, p.SYNC_STEP2), (CELL, p.SYNC_STEP1)]
    assert errors(alice) == []
