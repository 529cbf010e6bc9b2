"""Hostile clients with a student's login and raw frames, against the real Hub and service
(issue 13): no hidden divergence, limits that count what a doc holds, bounded cost per
frame, per connection and per notebook.

The notebook is the instructor's; its cell ``c0`` is writable by the group ``students``
(alice, bob, carol), ``c1`` is read-only for them.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pycrdt import Doc, Text
from test_interop import node_client
from test_kernels import Users, connect, notebook

from hub_collab.client import NotebookConnection
from hub_collab.documents import protocol as p
from hub_collab.documents.notebook import cell_doc, out_doc
from hub_collab.documents.updates import read_update

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
async def users(hub: Any, collab: Any) -> AsyncIterator[Users]:
    u = Users(hub, collab)
    yield u
    u.close()


async def cell_notebook(users: Users, *sources: str) -> str:
    nb = await users("instructor").create_notebook(
        "hostile", notebook(*sources), group="students", mode="0775", default_cell_mode="0775"
    )
    nb_id = str(nb["id"])
    if len(sources) > 1:
        await users("instructor").set_permissions(nb_id, "c1", mode="0755")
    return nb_id


def copy_of(conn: NotebookConnection, name: str, client_id: int) -> Doc[Any]:
    """A doc holding what ``conn`` holds of ``name``, writing as ``client_id``."""
    doc: Doc[Any] = Doc(client_id=client_id)
    doc.apply_update(conn.docs[name].get_update())
    return doc


async def errors_after(conn: NotebookConnection, send: Any) -> list[dict[str, Any]]:
    """Send, then fence with ``sync``; the errors and resyncs that came before the fence."""
    start = len(conn.messages)
    send()
    await conn.sync()
    return [m for m in conn.messages[start:] if m["type"] in ("error", "resync")]


async def test_an_edit_waiting_for_someone_elses_next_keystroke_is_refused(users: Users) -> None:
    """The attack: alice writes an item whose origin is the instructor's *next* keystroke
    (its id is predictable). A server that kept it aside would integrate it when the
    instructor types, in the instructor's own transaction, and send it to everyone but
    the instructor: the instructor's editor and Run all would differ from the export."""
    nb_id = await cell_notebook(users, "x = 1")
    name = cell_doc("c0")
    teacher = await connect(users, "instructor", nb_id)
    alice = await connect(users, "alice", nb_id)
    try:
        # the instructor's next keystroke, as alice can predict its id
        predicted = copy_of(teacher, name, teacher.docs[name].client_id)
        predicted.get("source", type=Text).insert(5, "0")
        forged = copy_of(alice, name, 4242)
        forged.apply_update(predicted.get_update(forged.get_state()))
        before = forged.get_state()
        forged.get("source", type=Text).insert(6, "; import os; os.system('evil')")
        payload = forged.get_update(before)  # only alice's item, whose origin is not held yet
        got = await errors_after(alice, lambda: alice.send_raw(p.sync_update(name, payload)))
        assert [(m["type"], m.get("code")) for m in got] == [("error", "invalid_update"), ("resync", None)], got
        assert "does not hold" in got[0]["message"]
        # the instructor types that very keystroke: nothing aside comes to life
        teacher.docs[name].get("source", type=Text).insert(5, "0")
        await teacher.sync()
        export = await users("instructor").export(nb_id)
        joiner = await connect(users, "bob", nb_id)
        try:
            views = {teacher.source("c0"), joiner.source("c0"), "".join(export["cells"][0]["source"])}
        finally:
            await joiner.close()
        assert views == {"x = 10"}, views
    finally:
        await teacher.close()
        await alice.close()


async def test_gap_updates_cannot_grow_a_cell_past_the_limit(users: Users, collab: Any) -> None:
    """Eight updates whose structs start past what the server holds of their client,
    each 1.5 MB: all refused, nothing kept; the cell stays small for a later joiner."""
    nb_id = await cell_notebook(users, "y = 2")
    name = cell_doc("c0")
    alice = await connect(users, "alice", nb_id)
    try:
        writer = copy_of(alice, name, 777)
        text = writer.get("source", type=Text)
        text += "#"  # clock 0 of client 777: never sent
        codes = []
        for i in range(8):
            before = writer.get_state()
            text += f"# {i} " + "z" * 1_500_000
            payload = writer.get_update(before)
            got = await errors_after(alice, lambda payload=payload: alice.send_raw(p.sync_update(name, payload)))
            codes.append([m.get("code") for m in got if m["type"] == "error"])
            # refused: the client subscribes again (its resync), and keeps attacking
            await alice.wait_for(lambda: name in alice.synced_docs, timeout=30)
        assert codes == [["invalid_update"]] * 8, codes
        joiner = await connect(users, "bob", nb_id)
        try:
            assert joiner.source("c0") == "y = 2"
            assert len(joiner.docs[name].get_update()) < 10_000
        finally:
            await joiner.close()
        export = await users("instructor").export(nb_id)
        assert "".join(export["cells"][0]["source"]) == "y = 2"
    finally:
        await alice.close()


async def test_a_reader_repeating_what_it_holds_costs_little_and_a_change_is_refused(users: Users) -> None:
    nb_id = await cell_notebook(users, "a = 1", "b = " + "'x' * 1" + "\n" * 1)
    name = cell_doc("c1")
    carol = await connect(users, "carol", nb_id)
    try:
        held = carol.docs[name]
        repeat = held.get_update(held.get_state())  # y-protocols' answer: the delete set only
        frame = p.sync_update(name, repeat) * 200 + p.sync_step2(name, held.get_update()) * 50
        assert await errors_after(carol, lambda: carol.send_raw(frame)) == []
        change = copy_of(carol, name, 999)
        before = change.get_state()
        change.get("source", type=Text).insert(0, "import os\n")
        got = await errors_after(carol, lambda: carol.send_raw(p.sync_update(name, change.get_update(before))))
        assert [(m["type"], m.get("code")) for m in got] == [("error", "forbidden"), ("resync", None)]
    finally:
        await carol.close()


async def test_the_attack_leaves_other_users_working(users: Users) -> None:
    nb_id = await cell_notebook(users, "z = 3")
    name = cell_doc("c0")
    alice = await connect(users, "alice", nb_id)
    bob = await connect(users, "bob", nb_id)
    try:
        forged = copy_of(alice, name, 5151)
        forged.get("source", type=Text).insert(0, "#")
        before = forged.get_state()
        forged.get("source", type=Text).insert(0, "gap")
        payload = forged.get_update(before)
        await errors_after(alice, lambda: [alice.send_raw(p.sync_update(name, payload)) for _ in range(50)])
        bob.docs[name].get("source", type=Text).insert(0, "# bob\n")
        await bob.sync()
        await asyncio.wait_for(bob.sync(), 30)
        export = await users("instructor").export(nb_id)
        assert "".join(export["cells"][0]["source"]) == "# bob\nz = 3"
    finally:
        await alice.close()
        await bob.close()


async def test_an_execute_flood_is_capped_and_others_see_little_of_it(users: Users) -> None:
    """1,500 ``execute`` commands for a trivial cell: the first ones queue (up to
    ``max_queued_per_user``), the rest are refused with ``queue_full``; a passive
    reader gets a few coalesced kernel messages, not one per change; the instructor's
    own run still runs."""
    nb_id = await cell_notebook(users, "1", "print('teacher')")
    teacher = await connect(users, "instructor", nb_id)
    alice = await connect(users, "alice", nb_id)
    carol = await connect(users, "carol", nb_id)
    try:
        await teacher.execute("c1")
        assert (await teacher.wait_executed("c1", timeout=90))["status"] == "ok"
        seen: list[int] = []
        carol.listeners.append(lambda kind, msg: seen.append(len(str(msg))) if kind == "message" and msg.get("type") == "kernel" else None)
        start = len(alice.messages)
        frames = [json.dumps({"type": "execute", "cell_id": "c0", "ref": f"f{i}"}) for i in range(1500)]
        for frame in frames:
            alice.send_raw(frame)
        await alice.sync()
        answers = [m for m in alice.messages[start:] if str(m.get("ref", "")).startswith("f")]
        acks = [m for m in answers if m["type"] == "ack"]
        refused = [m for m in answers if m["type"] == "error"]
        assert len(answers) == 1500
        # cells run meanwhile free their places, but no more than 200 ever wait
        assert acks and max(m["queue_position"] for m in acks) <= 200, max(m["queue_position"] for m in acks)
        assert {m["code"] for m in refused} == {"queue_full"}, {m["code"] for m in refused}
        assert "at most 200" in refused[0]["message"]
        # the instructor's run goes through
        await teacher.execute("c1")
        assert (await teacher.wait_executed("c1", timeout=120))["status"] == "ok"
        await carol.sync()
        assert len(seen) < 100, f"{len(seen)} kernel messages to a reader"
        assert sum(seen) < 1_000_000, sum(seen)
    finally:
        await users("instructor").request("DELETE", f"api/notebooks/{nb_id}/kernel")
        for conn in (teacher, alice, carol):
            await conn.close()


def log_since(collab: Any, start: int) -> str:
    with open(collab.log_path, "rb") as f:
        f.seek(start)
        return f.read().decode(errors="replace")


def high_water_mark(collab: Any) -> int:
    """The service process's peak RSS so far (``VmHWM``), in bytes."""
    with open(f"/proc/{collab.process.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


async def test_an_update_past_what_yrs_can_hold_is_refused_and_breaks_nothing(users: Users, collab: Any) -> None:
    """25 bytes: a struct of 2**32 - 2 clocks then three characters, for a client the doc
    does not know. yrs keeps clocks in 32 bits: applied, it panicked in the middle of a
    transaction (a ``BaseException`` no handler caught), left the characters in the
    server's doc but not in the store or anyone else's copy, and every later encoding of
    the doc (joins, checkpoints) panicked too."""
    nb_id = await cell_notebook(users, "w = 4")
    name = cell_doc("c0")
    start = collab.log_path.stat().st_size
    alice = await connect(users, "alice", nb_id)
    bob = await connect(users, "bob", nb_id)
    try:
        crossing = b"\x01\x02\x9b\x4b\x00" + b"\x00" + p.write_var_uint((1 << 32) - 2) + b"\x04\x01\x06source\x03abc" + b"\x00"
        got = await errors_after(alice, lambda: alice.send_raw(p.sync_update(name, crossing)))
        assert [(m["type"], m.get("code")) for m in got] == [("error", "invalid_update"), ("resync", None)], got
        assert "2**32" in got[0]["message"]
        bob.edit("c0", 0, insert="# bob\n")
        await bob.sync()
        joiner = await connect(users, "carol", nb_id)
        try:
            assert joiner.source("c0") == "# bob\nw = 4"
        finally:
            await joiner.close()
        export = await users("instructor").export(nb_id)
        assert "".join(export["cells"][0]["source"]) == "# bob\nw = 4"
        assert "Traceback" not in log_since(collab, start)
    finally:
        await alice.close()
        await bob.close()


async def test_a_state_vector_claiming_millions_of_entries_is_refused_unread(users: Users, collab: Any) -> None:
    """Six bytes claiming 300 million state vector entries: pycrdt reserved memory for
    all of them before it found the bytes missing (0.5 GB and 0.5 s per doc asked)."""
    nb_id = await cell_notebook(users, "v = 5")
    alice = await connect(users, "alice", nb_id)
    try:
        claim = p.write_var_uint(300_000_000) + b"\x01\x01"
        before = high_water_mark(collab)
        frame = b"".join(p.sync_step1(name, claim) for name in ("index", cell_doc("c0"), out_doc("c0")))
        got = await errors_after(alice, lambda: alice.send_raw(frame))
        assert [m.get("code") for m in got] == ["invalid_update"] * 3, got
        assert high_water_mark(collab) - before < 100_000_000
    finally:
        await alice.close()


async def test_a_readers_repeats_cost_their_own_size_not_the_docs(users: Users) -> None:
    """A reader may repeat what it was sent (y-protocols' step 2): each repeat was checked
    against the doc's whole delete set read anew (a 20-byte entry against a cell with
    50,000 deletions cost 50 ms: 600 of them in one frame held the service for 30 s)."""
    nb_id = await cell_notebook(users, "s = 1", "r = 2")
    name = cell_doc("c1")
    teacher = await connect(users, "instructor", nb_id)
    carol = await connect(users, "carol", nb_id)
    try:
        doc = teacher.docs[name]
        text = doc.get("source", type=Text)
        text += "x" * 100_000
        with doc.transaction():
            for i in range(len(text) - 2, 5, -2):
                del text[i : i + 1]
        await teacher.sync()
        await carol.wait_for(lambda: len(carol.source("c1")) < 60_000, timeout=30)
        held = carol.docs[name]
        deletes = read_update(held.get_update(held.get_state())).deletes
        repeats = [
            p.sync_update(name, b"\x00\x01" + p.write_var_uint(client) + b"\x01" + p.write_var_uint(s) + p.write_var_uint(e - s))
            for client, ranges in deletes.items()
            for s, e in ranges[:600]
        ]
        assert len(repeats) == 600
        t0 = time.monotonic()
        assert await errors_after(carol, lambda: carol.send_raw(b"".join(repeats))) == []
        assert time.monotonic() - t0 < 5
    finally:
        await teacher.close()
        await carol.close()


def typed_gap_update(client: int, size: int) -> bytes:
    """One-character items typed one after the other by ``client`` from clock 1 (clock 0
    never sent): read whole, then refused whole."""
    structs = b""
    clock = 1
    while len(structs) < size:
        structs += b"\x84" + p.write_var_uint(client) + p.write_var_uint(clock - 1) + b"\x01z"
        clock += 1
    return b"\x01" + p.write_var_uint(clock - 1) + p.write_var_uint(client) + b"\x01" + structs + b"\x00"


async def test_a_flood_of_refused_frames_leaves_others_their_turn(users: Users) -> None:
    """2,000 frames of 2 KB, each refused once read (about a millisecond each): tornado
    handed them to the service 256 KB at a time before anything else ran, so bob's
    ``sync`` (a few turns of the event loop) waited 0.3-0.5 s; a connection now lets
    the others run after 2 ms of frames."""
    nb_id = await cell_notebook(users, "f = 6")
    name = cell_doc("c0")
    alice = await connect(users, "alice", nb_id)
    bob = await connect(users, "bob", nb_id)
    try:
        frame = p.sync_step1(name, b"\x00") + p.sync_update(name, typed_gap_update(4711, 2000))
        for _ in range(2000):
            alice.send_raw(frame)
        # the service reads the whole flood before this sync, at 0.25 s of the loop a second:
        # about 15 s here, minutes on a slow, busy machine
        flood = asyncio.ensure_future(alice.sync(timeout=240))
        await alice.wait_for(lambda: len(alice.errors) > 100, timeout=60)  # it has begun
        waits = []
        for _ in range(10):
            t0 = time.monotonic()
            bob.edit("c0", 0, insert="b")
            await bob.sync()
            waits.append(time.monotonic() - t0)
        assert not flood.done(), "the flood ended before bob was done: it measured nothing"
        assert statistics.median(waits) < 0.2, waits
        await flood
        assert {e["code"] for e in alice.errors} == {"invalid_update"}
    finally:
        await alice.close()
        await bob.close()


async def test_an_awareness_update_naming_a_client_twice_counts_the_last(users: Users, collab: Any) -> None:
    """A state and then ``null`` for the same client id in one update: the id was both
    changed and removed, and telling the observers of the change raised ``KeyError``:
    the connection died and the service logged a traceback."""
    nb_id = await cell_notebook(users, "a = 7")
    start = collab.log_path.stat().st_size
    alice = await connect(users, "alice", nb_id)
    try:
        for states in (
            [p.AwarenessState(5150, 1, {"cell": "c0"}), p.AwarenessState(5150, 2, None)],
            [p.AwarenessState(5151, 1, None), p.AwarenessState(5151, 2, {"cell": "c0"})],
        ):
            got = await errors_after(alice, lambda states=states: alice.send_raw(p.awareness_message("index", p.encode_awareness(states))))
            assert got == []
        presence = (await users("instructor").get_notebook(nb_id))["presence"]
        assert [(e["client_id"], e["user"], e["cell"]) for e in presence] == [(5151, "alice", "c0")]
        assert "Traceback" not in log_since(collab, start)
    finally:
        await alice.close()


async def test_a_value_json_cannot_hold_is_refused_and_the_export_works(users: Users) -> None:
    """Cell metadata set to binary content: the update was accepted, and every export of
    the notebook failed (500, ``bytearray is not JSON serializable``)."""
    nb_id = await cell_notebook(users, "b = 8")
    name = cell_doc("c0")
    alice = await connect(users, "alice", nb_id)
    try:
        binary = b"\x01\x01\x9b\x4b\x00" + b"\x23\x01" + p.encode_var_string("metadata") + p.encode_var_string("k") + b"\x03abc" + b"\x00"
        got = await errors_after(alice, lambda: alice.send_raw(p.sync_update(name, binary)))
        assert [(m["type"], m.get("code")) for m in got] == [("error", "invalid_update"), ("resync", None)], got
        export = await users("instructor").export(nb_id)
        assert export["cells"][0]["metadata"] == {}
    finally:
        await alice.close()


# -- what yjs shows, who owns a client id, and updates refused at their second struct -----------


def held_ranges(conn: NotebookConnection, name: str) -> dict[int, list[tuple[int, int]]]:
    """client -> the clock ranges of the structs ``conn`` holds of ``name``."""
    return read_update(conn.docs[name].get_update()).ranges


def only_client(conn: NotebookConnection, name: str) -> int:
    (client,) = held_ranges(conn, name)
    return client


def delete_range(client: int, start: int, length: int) -> bytes:
    """An update that brings no struct and deletes ``length`` clocks of ``client`` from ``start``."""
    return b"\x00\x01" + p.write_var_uint(client) + b"\x01" + p.write_var_uint(start) + p.write_var_uint(length)


def text_item(client: int, clock: int, value: str, origin: tuple[int, int] | None = None) -> bytes:
    """An update bringing one string item of ``client`` at ``clock``: after ``origin``, or
    at the start of the root Text ``source``."""
    if origin is None:
        head = b"\x04\x01" + p.encode_var_string("source")
    else:
        head = b"\x84" + p.write_var_uint(origin[0]) + p.write_var_uint(origin[1])
    return b"\x01\x01" + p.write_var_uint(client) + p.write_var_uint(clock) + head + p.encode_var_string(value) + b"\x00"


async def test_half_a_surrogate_pair_is_refused_and_yjs_shows_what_the_server_holds(
    users: Users, hub: Any, node_modules: Any
) -> None:
    """yjs counts a Y.Text in UTF-16 units and shows a pair split in two as two U+FFFD;
    yrs deleted the whole emoji (or the character after it) for the same update. An
    update that splits a pair, by a deletion or by an insertion between its two units, is
    refused; whole emoji are edited as before, and a yjs client agrees with the server."""
    nb_id = await cell_notebook(users, "a😀b😀c")
    name = cell_doc("c0")
    alice = await connect(users, "alice", nb_id)
    node = await node_client(users("alice").ws_url(nb_id), hub.token("bob"))
    try:
        seed = only_client(alice, name)  # "a😀b😀c": one item, clocks 0..6; pairs at 1-2 and 4-5
        for payload in (
            delete_range(seed, 1, 1), delete_range(seed, 2, 1), delete_range(seed, 2, 2), delete_range(seed, 0, 2),
            text_item(6161, 0, "X", origin=(seed, 1)), text_item(6161, 0, "X", origin=(seed, 4)),
        ):  # fmt: skip
            got = await errors_after(alice, lambda payload=payload: alice.send_raw(p.sync_update(name, payload)))
            assert [(m["type"], m.get("code")) for m in got] == [("error", "invalid_update"), ("resync", None)], (payload, got)
            assert "surrogate pair" in got[0]["message"]
            await alice.wait_for(lambda: name in alice.synced_docs, timeout=30)
        # yjs itself: deleting one unit of the pair shows U+FFFD there; the server refuses it
        # and the client, told to resync, shows the server's text again
        await node.call("edit", cell="c0", index=2, delete=1)
        await node.call("wait", cell="c0", source="a😀b😀c", timeout_ms=30000)
        # whole emoji: deleted, and typed around, by yjs
        await node.call("edit", cell="c0", index=1, delete=2)
        await node.call("edit", cell="c0", index=2, insert="🎉")
        await node.call("edit", cell="c0", index=6, insert="!")
        expected = "ab🎉😀!c"
        await alice.wait_for(lambda: alice.source("c0") == expected, timeout=30)
        errors = (await node.call("state"))["errors"]
        assert [e["code"] for e in errors] == ["invalid_update"], errors
        export = await users("instructor").export(nb_id)
        assert "".join(export["cells"][0]["source"]) == expected
        assert (await node.call("sources"))["sources"]["c0"] == expected
    finally:
        await alice.close()
        assert await node.close() == 0


async def test_a_borrowed_client_id_is_refused_and_the_owner_keeps_typing(users: Users, collab: Any) -> None:
    """alice writes with bob's Yjs client id at bob's next clock: the server dropped bob's
    next keystroke (same id, same clock) as a duplicate, and bob's editor differed from
    everyone else's. A client id belongs to the user who first wrote with it, across a
    restart; the server's own ids (the import's, 0) belong to nobody."""
    nb_id = await cell_notebook(users, "k = 1")
    name = cell_doc("c0")
    bob = await connect(users, "bob", nb_id)
    alice = await connect(users, "alice", nb_id)
    try:
        bob.edit("c0", 5, insert="0")
        await bob.sync()
        await alice.wait_for(lambda: alice.source("c0") == "k = 10", timeout=30)
        bob_id = bob.docs[name].client_id
        seed = next(c for c in held_ranges(alice, name) if c != bob_id)
        for client in (bob_id, seed, 0):
            forged = copy_of(alice, name, client)
            before = forged.get_state()
            forged.get("source", type=Text).insert(0, "evil = 1\n")
            got = await errors_after(alice, lambda forged=forged, before=before: alice.send_raw(p.sync_update(name, forged.get_update(before))))
            assert [(m["type"], m.get("code")) for m in got] == [("error", "invalid_update"), ("resync", None)], (client, got)
            assert f"client id {client}" in got[0]["message"], got
            await alice.wait_for(lambda: name in alice.synced_docs, timeout=30)
        assert bob.errors == []
        bob.edit("c0", 6, insert="0")  # bob's next keystroke: the clock alice tried to take
        await bob.sync()
        export = await users("instructor").export(nb_id)
        assert "".join(export["cells"][0]["source"]) == bob.source("c0") == "k = 100"
        # the binding survives a restart: bob resumes with his id and local edits, alice
        # still may not use it
        resumed = copy_of(bob, name, bob_id)
        await bob.close()
        await alice.close()
        collab.restart()
        before = resumed.get_state()
        resumed.get("source", type=Text).insert(7, "0")
        offline = resumed.get_update(before)
        stolen = copy_of(bob, name, bob_id)
        stolen.get("source", type=Text).insert(0, "#")
        alice = await connect(users, "alice", nb_id)
        bob = await connect(users, "bob", nb_id)
        got = await errors_after(alice, lambda: alice.send_raw(p.sync_update(name, stolen.get_update(before))))
        assert [m.get("code") for m in got] == ["invalid_update", None], got
        assert await errors_after(bob, lambda: bob.send_raw(p.sync_update(name, offline))) == []
        export = await users("instructor").export(nb_id)
        assert "".join(export["cells"][0]["source"]) == "k = 1000"
    finally:
        await alice.close()
        await bob.close()


async def test_an_update_refused_at_its_second_struct_leaves_nothing(users: Users) -> None:
    """A first struct that is fine, a second whose parent is a character, not a type: yrs
    refused the update after it had integrated the first struct, so the sender was told
    ``invalid_update`` while the server kept, stored and sent everyone the first."""
    nb_id = await cell_notebook(users, "q = 1")
    name = cell_doc("c0")
    alice = await connect(users, "alice", nb_id)
    bob = await connect(users, "bob", nb_id)
    try:
        seed = only_client(alice, name)
        frames: list[bytes] = []
        bob.listeners.append(lambda kind, data: frames.append(data) if kind == "binary" else None)
        first = b"\x04\x01" + p.encode_var_string("source") + p.encode_var_string("import os\n")
        for second in (
            b"\x04\x00" + p.write_var_uint(seed) + b"\x00" + p.encode_var_string("x"),  # parent: the character 'q'
            b"\x04\x00" + p.write_var_uint(7373) + b"\x00" + p.encode_var_string("x"),  # parent: the first struct
        ):
            payload = b"\x01\x02" + p.write_var_uint(7373) + b"\x00" + first + second + b"\x00"
            got = await errors_after(alice, lambda payload=payload: alice.send_raw(p.sync_update(name, payload)))
            assert [(m["type"], m.get("code")) for m in got] == [("error", "invalid_update"), ("resync", None)], got
            assert "not a type" in got[0]["message"], got
            await alice.wait_for(lambda: name in alice.synced_docs, timeout=30)
        await bob.sync()
        assert [e for f in frames for e in p.decode_frame(f) if e.doc == name] == []
        assert alice.source("c0") == bob.source("c0") == "q = 1"
        export = await users("instructor").export(nb_id)
        assert "".join(export["cells"][0]["source"]) == "q = 1"
        assert 7373 not in held_ranges(alice, name)
    finally:
        await alice.close()
        await bob.close()
