"""The history, in process, on real SQLite and PostgreSQL stores: what is recorded (author
and session from the server's session, time), checkpoints keep the past, versions,
rebuilding a doc at a version or a time (with keyframes, equal to replaying every row),
restore through the room, retention (daily versions) and ``hub-collab prune-history``.

The service's own RoomManager, PermissionStore, HistoryService and command dispatcher;
sessions are in-process recorders (the rights tests through the real Hub are in
``test_history_api.py``).
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hubfixtures import clean_env
from pycrdt import Doc, Text
from replicas import PostgresDatabase
from test_room_load import Recorder as LoadRecorder

from hub_collab import schema
from hub_collab.chat import ChatService
from hub_collab.commands import CommandRegistry, Dispatcher
from hub_collab.documents import protocol as p
from hub_collab.documents import structure
from hub_collab.documents.rooms import RoomManager
from hub_collab.errors import CollabError
from hub_collab.history.service import HistoryService, register_commands
from hub_collab.history.store import DAY, rebuild
from hub_collab.history.versions import PERIOD, group
from hub_collab.permissions.access import Identity
from hub_collab.permissions.store import PermissionStore
from hub_collab.store import Store, UpdateLog, make_engine

ALICE = Identity("alice", frozenset({"students"}))
BOB = Identity("bob", frozenset({"students"}))
CAROL = Identity("carol", frozenset({"students"}))

NOTEBOOK = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {},
    "cells": [
        {"id": f"c{i}", "cell_type": "code", "metadata": {}, "execution_count": None, "source": f"x = {i}", "outputs": []}
        for i in range(3)
    ],
}


class Recorder(LoadRecorder):
    def __init__(self, identity: Identity, session_id: str) -> None:
        super().__init__(identity)
        self.session_id = session_id

    def held(self) -> dict[str, Doc[Any]]:
        docs: dict[str, Doc[Any]] = {}
        for frame in self.frames:
            for entry in p.decode_frame(frame):
                if entry.kind == p.MSG_SYNC and entry.sub in (p.SYNC_STEP2, p.SYNC_UPDATE):
                    docs.setdefault(entry.doc, Doc()).apply_update(entry.payload)
        return docs

    def source(self, cell: str) -> str:
        return str(self.held()[f"cell:{cell}"].get("source", type=Text))


class World:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.store = Store(self.engine)
        self.store.start()
        self.permissions = PermissionStore(url, engine=self.engine)
        self.permissions.start()
        self.log = UpdateLog(self.store)
        self.rooms = RoomManager(self.store, self.log, self.permissions, import_processes=1)
        self.chat = ChatService(self.engine, rooms=self.rooms, permissions=self.permissions, groups_of=lambda name, given=None: frozenset(), store=self.store)
        self.history = HistoryService(self.store, self.chat, burst_seconds=30.0)
        registry = CommandRegistry()
        structure.register_commands(registry, audit=self.store.add_audit)
        register_commands(registry, self.history)
        self.commands = Dispatcher(registry)

    async def start(self) -> None:
        self.log.start()
        self.rooms.start()
        self.chat.start()

    async def stop(self) -> None:
        self.chat.stop()
        await self.rooms.stop()
        await self.log.stop()
        self.permissions.stop()
        self.engine.dispose()

    def join(self, room: Any, identity: Identity, session_id: str) -> Recorder:
        session = Recorder(identity, session_id)
        session.access = room.compute_access_for(identity)
        room.join(session)
        room.handle_frame(session, b"".join(p.sync_step1(name, b"\x00") for name in list(room.docs)))
        return session

    def count(self, table: sa.Table) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0)


@pytest.fixture(params=["sqlite", "postgresql"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    db: PostgresDatabase | None = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'collab.sqlite'}"
    else:
        db = PostgresDatabase()
        db.create()
        url = db.url
    w = World(url)
    await w.start()
    try:
        yield w
    finally:
        await w.stop()
        if db is not None:
            db.drop()


def typed(session: Recorder, cell: str, at: int, text: str) -> bytes:
    """The frame that inserts ``text`` at ``at`` of the cell's source as ``session`` holds
    it (the session holds its own edit from then on, as a client does)."""
    copy = session.held()[f"cell:{cell}"]
    before = copy.get_state()
    copy.get("source", type=Text).insert(at, text)
    frame = p.sync_update(f"cell:{cell}", copy.get_update(before))
    session.frames.append(frame)
    return frame


async def notebook(world: World, **perms: Any) -> Any:
    record = await world.rooms.create_notebook(ALICE, "history", NOTEBOOK, group="students", mode=0o770, default_cell_mode=0o770, **perms)
    return await world.rooms.get(record.id)


# -- what is recorded ---------------------------------------------------------------------------


async def test_each_update_is_recorded_with_the_sessions_author_and_kept_after_checkpoints(world: World) -> None:
    room = await notebook(world)
    alice, bob = world.join(room, ALICE, "s-alice"), world.join(room, BOB, "s-bob")
    room.handle_frame(alice, typed(alice, "c0", 0, "# alice\n"))
    room.handle_frame(bob, typed(bob, "c1", 0, "# bob\n"))
    # a structure command through the dispatcher: the index change is bob's
    await world.commands.run(room, bob, {"type": "insert_cell", "index": 3, "cell_type": "code", "source": "new"})
    await world.log.flush()
    rows = world.store.history.rows(room.id, "cell:c0")
    assert [(r.author, r.session) for r in rows] == [("alice", "s-alice"), ("alice", "")]  # the edit, the import
    assert [(r.author, r.session) for r in world.store.history.rows(room.id, "cell:c1")][0] == ("bob", "s-bob")
    assert world.store.history.rows(room.id, "index")[0].author == "bob"
    assert world.store.list_audit(room.id, action="insert_cell")[0]["actor"] == "bob"
    before = world.count(schema.doc_history)
    await world.rooms.checkpoint(room)
    assert world.store.count_updates(room.id) == 0, "the live log is compacted as before"
    assert world.count(schema.doc_history) == before, "the history keeps every row"
    assert len(world.store.history.rows(room.id, "cell:c0")) == 2
    # loading again reads the checkpoint, not the history
    await world.rooms.unload(room)
    again = await world.rooms.get(room.id)
    assert str(again.docs.read("cell:c0").get("source", type=Text)) == "# alice\nx = 0"


async def test_a_client_cannot_choose_its_author(world: World) -> None:
    """Nothing in a frame names an author: the recorded one is the session's identity."""
    room = await notebook(world)
    bob = world.join(room, BOB, "s-bob")
    update = Doc()
    update.apply_update(bob.held()["cell:c2"].get_update())
    sv = update.get_state()
    update.get("source", type=Text).insert(0, "user: alice\n")
    update.get("metadata", type=__import__("pycrdt").Map)["author"] = "alice"
    room.handle_frame(bob, p.sync_update("cell:c2", update.get_update(sv)))
    await world.log.flush()
    assert [r.author for r in world.store.history.rows(room.id, "cell:c2")] == ["bob", "alice"]


# -- versions -----------------------------------------------------------------------------------


def _rows(world: World, nb: str, doc: str, plan: list[tuple[str, float, str]]) -> None:
    """Append edits (author, time, text appended) to ``doc``'s source, as the log would."""
    state = world.store.history.state_at_version(nb, doc, 2**62)
    d = rebuild([state] if state else [])
    rows = []
    for author, at, text in plan:
        sv = d.get_state()
        src = d.get("source", type=Text)
        src.insert(len(str(src).encode()), text)
        rows.append((nb, doc, d.get_update(sv), at, author, f"s-{author}"))
    world.store.append_updates(rows)


async def test_versions_are_bursts_of_one_author(world: World) -> None:
    room = await notebook(world)
    t0 = (room.record.created_at // PERIOD + 1) * PERIOD + 1  # the start of a ten-minute period
    plan = [("bob", t0 + i, "a") for i in range(5)]  # one burst
    plan += [("bob", t0 + 60 + i, "b") for i in range(3)]  # a pause of 56 s: another
    plan += [("carol", t0 + 64, "c")]  # another author
    plan += [("bob", t0 + 65, "d"), ("bob", t0 + PERIOD + 1, "e")]  # a new period (the gap is under... no: > 30 s)
    plan += [("bob", t0 + 2 * PERIOD - 2, "f"), ("bob", t0 + 2 * PERIOD + 2, "g")]  # 4 s apart, across a period
    _rows(world, room.id, "cell:c0", plan)
    await world.rooms.checkpoint(room)  # as another replica's rows: merged into the room
    page = await world.history.timeline(room, "c0")
    got = [(v["author"], v["updates"]) for v in page["versions"]]
    assert got == [("bob", 1), ("bob", 1), ("bob", 1), ("bob", 1), ("carol", 1), ("bob", 3), ("bob", 5), ("alice", 1)]
    assert page["next_before"] is None
    # pages: two at a time, each going on below the last
    seen, before = [], None
    while True:
        part = await world.history.timeline(room, "c0", before, 2)
        seen += [v["id"] for v in part["versions"]]
        before = part["next_before"]
        if before is None:
            break
    assert seen == [v["id"] for v in page["versions"]]
    # a version's content is the source up to its last row; the diff goes to now
    burst = page["versions"][-2]
    version = await world.history.version(room, "c0", burst["id"])
    assert version["source"] == "x = 0aaaaa"
    assert version["current"] == "x = 0aaaaabbbcdefg"
    assert "-x = 0aaaaa\n+x = 0aaaaabbbcdefg\n" in version["diff"]
    # stable: later rows do not move earlier versions
    _rows(world, room.id, "cell:c0", [("bob", t0 + 2 * PERIOD + 3, "h")])
    later = await world.history.timeline(room, "c0")
    assert [v["id"] for v in later["versions"][1:]] == [v["id"] for v in page["versions"][1:]]


async def test_rebuilding_at_versions_and_times_with_keyframes_equals_replaying(world: World) -> None:
    room = await notebook(world)
    rng = random.Random(7)
    t = room.record.created_at + 1
    plan = []
    for _ in range(700):
        t += rng.choice([0.2, 0.5, 3, 45])
        plan.append((rng.choice(["bob", "carol"]), t, rng.choice("abc\n")))
    _rows(world, room.id, "cell:c1", plan)
    everything = [r for r in reversed(world.store.history.rows(room.id, "cell:c1", limit=10_000))]
    key = world.store.history.doc_keys(room.id, ["cell:c1"])["cell:c1"]

    def replay(upto: int) -> str:
        with world.engine.connect() as conn:
            blobs = conn.execute(
                sa.select(schema.doc_history.c.data).where(schema.doc_history.c.doc_key == key, schema.doc_history.c.id <= upto).order_by(schema.doc_history.c.id)
            ).scalars().all()
        return str(rebuild(bytes(b) for b in blobs).get("source", type=Text))

    made = world.store.history.make_keyframes(room.id, now=t + 1000, every=100)
    assert made >= 1 and world.count(schema.doc_snapshots) >= 7
    for row in rng.sample(everything, 40) + [everything[0], everything[-1]]:
        state = world.store.history.state_at_version(room.id, "cell:c1", row.id)
        assert state is not None
        assert str(rebuild([state]).get("source", type=Text)) == replay(row.id)
        at = world.store.history.states_at_time(room.id, ["cell:c1"], row.at)["cell:c1"]
        same_time = max(r.id for r in everything if r.at <= row.at)
        assert str(rebuild([at]).get("source", type=Text)) == replay(same_time)
    # rows not older than the keyframe lag are left to a later checkpoint
    _rows(world, room.id, "cell:c1", [("bob", t + 10, "z")])
    fresh = world.store.history.rows(room.id, "cell:c1", limit=1)[0].id
    world.store.history.make_keyframes(room.id, now=t + 20, every=1)
    with world.engine.connect() as conn:
        newest = conn.execute(sa.select(sa.func.max(schema.doc_snapshots.c.upto)).where(schema.doc_snapshots.c.doc_key == key)).scalar()
    assert newest is not None and newest < fresh


async def test_restore_is_an_edit_of_whoever_restores_and_everyone_gets_it(world: World) -> None:
    room = await notebook(world)
    alice, bob = world.join(room, ALICE, "s-alice"), world.join(room, BOB, "s-bob")
    room.handle_frame(bob, typed(bob, "c0", 5, " + 1"))
    await world.log.flush()
    first = (await world.history.timeline(room, "c0"))["versions"]
    room.handle_frame(alice, typed(alice, "c0", 0, "# ünïcode ✓\n"))
    original = first[-1]["id"]  # the imported text
    reply = await world.commands.run(room, bob, {"type": "restore_version", "cell_id": "c0", "version": original})
    assert reply == {"cell_id": "c0", "version": original, "changed": True}
    assert str(room.docs["cell:c0"].get("source", type=Text)) == "x = 0"
    assert alice.source("c0") == "x = 0" and bob.source("c0") == "x = 0", "every subscriber got the restore"
    await world.log.flush()
    newest = world.store.history.rows(room.id, "cell:c0", limit=1)[0]
    assert (newest.author, newest.session) == ("bob", "s-bob:restore")
    # the restore is a version too, and can itself be undone by restoring the one before
    versions = (await world.history.timeline(room, "c0"))["versions"]
    assert versions[0]["author"] == "bob"
    await world.commands.run(room, alice, {"type": "restore_version", "cell_id": "c0", "version": versions[1]["id"]})
    assert bob.source("c0") == "# ünïcode ✓\nx = 0 + 1"
    # a version of another cell, one that cannot exist, malformed ids: 404 / 400, nothing changes
    other = world.store.history.rows(room.id, "cell:c1", limit=1)[0].id
    for bad in (other, 2**62, -1, "1; drop table", 1.5, True, None, "9" * 30):
        with pytest.raises(CollabError) as err:
            await world.commands.run(room, bob, {"type": "restore_version", "cell_id": "c0", "version": bad})
        assert (err.value.status, err.value.code) == (404, "unknown_version"), bad
    assert bob.source("c0") == "# ünïcode ✓\nx = 0 + 1"


async def test_restore_needs_w_and_a_live_cell_and_concurrent_restores_converge(world: World) -> None:
    room = await notebook(world)
    alice, bob = world.join(room, ALICE, "s-alice"), world.join(room, BOB, "s-bob")
    room.handle_frame(bob, typed(bob, "c2", 0, "one "))
    await world.log.flush()
    room.handle_frame(alice, typed(alice, "c2", 0, "two "))
    await world.log.flush()
    versions = (await world.history.timeline(room, "c2"))["versions"]
    world.permissions.set_cell(room.id, "c2", world.permissions.cell(room.id, "c2").__class__("alice", "students", 0o740, ()))
    room.refresh_all()
    with pytest.raises(CollabError) as err:
        await world.commands.run(room, bob, {"type": "restore_version", "cell_id": "c2", "version": versions[-1]["id"]})
    assert err.value.code == "forbidden"
    # bob may still read it: its history is his to see
    assert (await world.commands.run(room, bob, {"type": "cell_history", "cell_id": "c2"}))["versions"]
    # two restores at once: one wins, both are recorded, everyone holds the same text
    await asyncio.gather(
        world.commands.run(room, alice, {"type": "restore_version", "cell_id": "c2", "version": versions[-1]["id"]}),
        world.commands.run(room, alice, {"type": "restore_version", "cell_id": "c2", "version": versions[1]["id"]}),
    )
    final = str(room.docs["cell:c2"].get("source", type=Text))
    assert final in ("x = 2", "one x = 2")
    assert alice.source("c2") == bob.source("c2") == final
    # a deleted cell: its versions cannot be restored (or read) any more
    await world.commands.run(room, alice, {"type": "delete_cell", "cell_id": "c2"})
    with pytest.raises(CollabError) as err:
        await world.commands.run(room, alice, {"type": "restore_version", "cell_id": "c2", "version": versions[-1]["id"]})
    assert (err.value.status, err.value.code) == (404, "unknown_cell")


# -- retention ----------------------------------------------------------------------------------


async def test_compaction_keeps_one_version_per_day_with_its_authors(world: World, tmp_path: Path) -> None:
    room = await notebook(world)
    start = (room.record.created_at // DAY - 10) * DAY
    plan = [(who, start + day * DAY + hour * 3600 + i, f"{day}{who[0]}")
            for day in range(4) for hour, who in ((9, "bob"), (14, "carol")) for i in range(30)]  # fmt: skip
    _rows(world, room.id, "cell:old", plan)  # a cell deleted since: nothing else in its doc

    def text_at(day: int) -> str:
        state = world.store.history.states_at_time(room.id, ["cell:old"], start + day * DAY + 20 * 3600)["cell:old"]
        return str(rebuild([state]).get("source", type=Text))

    world.store.history.make_keyframes(room.id, now=start + 5 * DAY, every=50)
    expected = {day: "".join(f"{d}b" * 30 + f"{d}c" * 30 for d in range(day + 1)) for day in range(4)}
    assert {day: text_at(day) for day in range(4)} == expected
    cut = start + 3 * DAY + 1  # days 0, 1 and 2 end before it
    dry = world.store.history.compact(cut, dry_run=True)
    assert (dry.rows_before, dry.rows_after, dry.docs) == (180, 3, 1)
    assert len(world.store.history.rows(room.id, "cell:old", limit=1000)) == 240, "a dry run changes nothing"
    report = world.store.history.compact(cut)
    assert (report.rows_before, report.rows_after, report.docs, report.notebooks) == (180, 3, 1, {room.id})
    rows = world.store.history.rows(room.id, "cell:old", limit=1000)
    assert len(rows) == 60 + 3
    assert [r.authors for r in rows[-3:]] == [("bob", "carol")] * 3
    assert {day: text_at(day) for day in range(4)} == expected, "the end of every day reads as before"
    versions = (await world.history.timeline(room, "old", limit=200))["versions"]
    assert [v["authors"] for v in versions[-3:]] == [["bob", "carol"]] * 3 and all(v["compacted"] for v in versions[-3:])
    assert world.store.history.compact(cut).rows_before == 3, "compacting again changes nothing"
    assert len(world.store.history.rows(room.id, "cell:old", limit=1000)) == 63


async def test_compaction_drops_a_deleted_notebooks_history_but_not_an_import_in_progress(world: World) -> None:
    """A notebook without a record: deleted (its newest row older than ORPHAN_GRACE), or
    a large import on SQLite whose record is not written yet (rows of now, or a doc key
    with no rows yet). Compaction drops the first only; the import's history is whole
    once its record comes."""
    from hub_collab.history.store import ORPHAN_GRACE

    now = time.time()
    _rows(world, "nb-gone", "cell:g", [("bob", now - ORPHAN_GRACE - 60, "gone")])
    _rows(world, "nb-importing", "cell:i", [("bob", now, "imported")])
    world.store.history.prepare([("nb-importing", "cell:j", b"", now, "bob", "")])  # its key, made first
    report = world.store.history.compact(now)
    assert report.orphans_dropped == 1, report
    assert world.store.history.rows("nb-gone", "cell:g", limit=10) == []
    kept = world.store.history.rows("nb-importing", "cell:i", limit=10)
    assert len(kept) == 1 and kept[0].author == "bob"
    assert world.store.history.compact(now).orphans_dropped == 0, "nothing more to drop"


def prune(url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub_collab", "prune-history", f"--db-url={url}", *args],
        env=clean_env(JUPYTERHUB_API_TOKEN="unused", JUPYTERHUB_API_URL="http://127.0.0.1:9/hub/api"),
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


async def test_prune_history_command(world: World, tmp_path: Path) -> None:
    room = await notebook(world)
    start = (room.record.created_at // DAY - 20) * DAY
    _rows(world, room.id, "cell:old", [("bob", start + i * 1800, "x") for i in range(100)])
    gone = await world.rooms.create_notebook(ALICE, "deleted", NOTEBOOK)
    await world.log.flush()
    where = sa.make_url(world.url).render_as_string(hide_password=True)
    run = await asyncio.to_thread(prune, world.url, tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"{where}: history_keep_days is 0: every update is kept\n"
    # a deleted notebook's history goes with it
    assert world.store.history.doc_keys(gone.id)
    world.store.delete_notebook(gone.id)
    assert world.store.history.doc_keys(gone.id) == {}
    run = await asyncio.to_thread(prune, world.url, tmp_path, "--days=7", "--dry-run")
    assert run.returncode == 0, run.stderr
    assert "would compact 100 updates before" in run.stdout and "into 3 daily versions" in run.stdout
    assert len(world.store.history.rows(room.id, "cell:old", limit=1000)) == 100
    config = tmp_path / "hub_collab_config.py"
    config.write_text("c.HubCollab.history_keep_days = 7\n")
    run = await asyncio.to_thread(prune, world.url, tmp_path, "-f", str(config))
    assert run.returncode == 0, run.stderr
    assert "compacted 100 updates before" in run.stdout
    assert len(world.store.history.rows(room.id, "cell:old", limit=1000)) == 3
    bad = await asyncio.to_thread(prune, world.url, tmp_path, "--days=-3")
    assert bad.returncode != 0 and "--days must be 0 (keep everything) or a number of days, got -3" in bad.stderr, bad.stderr


def test_group_of_nothing_is_nothing() -> None:
    assert group([], 30.0) == []
