"""Benchmark: the history of a simulated two-hour class (issue 15).

A notebook of 300 cells (240 of lecture, 10 shared cells the instructor edits, one cell
for each of 50 students). Over two simulated hours the students type into their own
cells in bursts (keystrokes 0.15-0.6 s apart, pauses of 5-90 s, one in ten a backspace)
and run them every few minutes (each run: four output updates, written by the
server), the instructor edits the shared cells: 200,000 updates in all, made with pycrdt
as clients make them, timestamps simulated. They are written the way the service
writes them (``Store.append_updates`` in batches, as the update log's group commit
does, with each update's simulated time, author and session), with a checkpoint every
2,000 updates (``Store.checkpoint`` with the docs' state, then the history's keyframes,
as ``RoomManager.checkpoint`` does).

Printed:

* **Storage**: the database with the history against today's. *Today* is the same
  updates written without history (the live log only: ``collab_doc_updates``): its
  compacted state (the checkpoints) plus the raw update log (all 200,000 rows as the log
  table holds them, measured before any checkpoint deletes them). Goal: the history's
  database at most 3x that. Sizes are SQLite's pages per table and index (``dbstat``),
  after ``VACUUM``; the update bytes alone are printed too. Then after
  ``prune-history``'s compaction (every day of it older than the cut).
* **Timeline**: a student's cell (about 3,700 updates) and a shared cell: one page of
  versions (``HistoryService`` as the command runs it), a version with its diff. Goal
  <= 100 ms.
* **The notebook at a time**: the whole notebook (300 cells, their outputs) rebuilt at 20
  random moments of the class, as the owner sees it. Goal <= 500 ms.
* **The activity feed**: a page of 50 items.
* **Keystroke cost on the writer thread**: microseconds of ``Store.append_updates`` per
  update with the history against without (the pre-history path), in batches of 1 and
  of 10 updates; the event loop's part is unchanged but for a ``time.time()`` per update
  (``bench_edit_latency.py``, run against this branch and main, measures end to end).

    .venv/bin/python benchmarks/bench_history.py [--updates 200000] [--students 50]
        [--cells 300] [--db sqlite|postgresql] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import sqlalchemy as sa  # noqa: E402
from pycrdt import Array, Doc, Map, Text  # noqa: E402

from hub_collab.chat import ChatService  # noqa: E402
from hub_collab.documents.rooms import RoomManager  # noqa: E402
from hub_collab.history.service import HistoryService  # noqa: E402
from hub_collab.history.store import DAY  # noqa: E402
from hub_collab.permissions.access import Identity  # noqa: E402
from hub_collab.permissions.store import PermissionStore  # noqa: E402
from hub_collab.schema import doc_updates  # noqa: E402
from hub_collab.store import Store, UpdateLog, make_engine  # noqa: E402

INSTRUCTOR = Identity("instructor", frozenset({"staff"}))
CLASS_SECONDS = 2 * 3600.0
BATCH = 10
CHECKPOINT_EVERY = 2000


class TodayStore(Store):
    """The store before history: updates go to the live log only."""

    def append_updates(self, rows: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(doc_updates.insert(), [{"notebook_id": r[0], "doc": r[1], "data": r[2]} for r in rows])


def class_notebook(cells: int, students: int) -> dict[str, Any]:
    out = []
    shared = 10
    lecture = cells - students - shared
    for i in range(lecture):
        kind = "markdown" if i % 3 == 0 else "code"
        text = f"## Part {i}\nSome explanation of step {i}." if kind == "markdown" else f"# step {i}\nvalue_{i} = {i} * 2\nprint(value_{i})"
        cell: dict[str, Any] = {"id": f"lec{i:03d}", "cell_type": kind, "metadata": {}, "source": text}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        out.append(cell)
    for i in range(shared):
        out.append({"id": f"shared{i:02d}", "cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": f"# shared {i}\n"})
    for i in range(students):
        out.append({"id": f"s{i:02d}", "cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": f"# student {i}: your answer\n"})
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": out}


@dataclass(order=True)
class Event:
    at: float
    seq: int
    author: str = field(compare=False)
    doc: str = field(compare=False)
    action: str = field(compare=False)  # "key", "back", "run"


def schedule(students: int, total: int, rng: random.Random) -> list[Event]:
    """Events of the class, in time order, about ``total`` updates: each person's own
    rhythm, stretched or squeezed to the two hours."""
    runs_each = 20
    instructor_keys = total // 20
    per_student = (total - instructor_keys - students * runs_each * 4) // students
    events: list[Event] = []
    seq = 0

    def person(author: str, keys: int, docs: list[str], pause: float, back: float) -> list[Event]:
        nonlocal seq
        out, t = [], rng.uniform(0, 60)
        for _ in range(keys):
            t += rng.uniform(0.15, 0.6) if rng.random() > pause else rng.uniform(5, 120)
            out.append(Event(t, seq, author, rng.choice(docs), "back" if rng.random() < back else "key"))
            seq += 1
        scale = CLASS_SECONDS / t
        for e in out:
            e.at *= scale
        return out

    for s in range(students):
        author = f"student{s:02d}"
        events += person(author, per_student, [f"cell:s{s:02d}"], 0.03, 0.1)
        for _ in range(runs_each):
            events.append(Event(rng.uniform(0, CLASS_SECONDS), seq, author, f"out:s{s:02d}", "run"))
            seq += 1
    events += person("instructor", instructor_keys, [f"cell:shared{i:02d}" for i in range(10)], 0.01, 0.05)
    events.sort()
    return events


class Simulator:
    """Makes each event's updates with pycrdt: the server's docs, and each author's."""

    def __init__(self, states: dict[str, bytes], rng: random.Random) -> None:
        self.server: dict[str, Doc[Any]] = {}
        for name, state in states.items():
            doc: Doc[Any] = Doc()
            doc.apply_update(state)
            self.server[name] = doc
        self.clients: dict[tuple[str, str], Doc[Any]] = {}
        self.rng = rng
        self.runs = 0
        self.sent: list[bytes] = []
        self.written: list[bytes] = []
        for doc in self.server.values():
            doc.observe(lambda event: self.written.append(event.update))

    def client(self, author: str, name: str) -> Doc[Any]:
        doc = self.clients.get((author, name))
        if doc is None:
            doc = self.clients[(author, name)] = Doc()
            # what a client sends is its transaction's update (with only its own deletions)
            doc.observe(lambda event: self.sent.append(event.update))
        server = self.server[name]
        doc.apply_update(server.get_update(doc.get_state()))
        self.sent.clear()
        return doc

    def updates(self, e: Event) -> Iterator[tuple[str, bytes, str]]:
        """(doc, update, author) of an event."""
        if e.action == "run":
            out = self.server[e.doc]
            self.runs += 1
            outputs, state = out.get("outputs", type=Array), out.get("state", type=Map)
            for step in range(4):
                self.written.clear()
                with out.transaction():
                    if step == 0:
                        state["execution_state"] = "queued"
                        state["executed_by"] = e.author
                    elif step == 1:
                        state["execution_state"] = "busy"
                        if len(outputs):
                            del outputs[0 : len(outputs)]
                    elif step == 2:
                        outputs.append(Map({"output_type": "stream", "name": "stdout", "text": f"result {self.runs}\n"}))
                    else:
                        state["execution_state"] = "idle"
                        state["execution_count"] = self.runs
                yield e.doc, self.written[-1], ""
            return
        doc = self.client(e.author, e.doc)
        source = doc.get("source", type=Text)
        size = len(str(source).encode())
        if e.action == "back" and size > 10:
            del source[size - 1 : size]
        else:
            source.insert(size, self.rng.choice("abcdefghij =()+\n"))
        update = self.sent[-1]
        self.server[e.doc].apply_update(update)
        yield e.doc, update, e.author

    def states(self) -> dict[str, bytes]:
        return {name: doc.get_update() for name, doc in self.server.items()}


@dataclass
class World:
    url: str
    store: Store
    permissions: PermissionStore
    rooms: RoomManager
    log: UpdateLog


async def make_world(url: str, store_class: type[Store] = Store) -> World:
    engine = make_engine(url)
    store = store_class(engine)
    store.start()
    permissions = PermissionStore(url, engine=engine)
    permissions.start()
    log = UpdateLog(store)
    rooms = RoomManager(store, log, permissions, import_processes=1)
    log.start()
    rooms.start()
    return World(url, store, permissions, rooms, log)


async def close_world(w: World) -> None:
    await w.rooms.stop()
    await w.log.stop()
    w.permissions.stop()
    w.store.engine.dispose()


def write_class(
    world: World, nb_id: str, events: list[Event], states: dict[str, bytes], start: float, seed: int, history: bool
) -> tuple[int, int, dict[str, bytes]]:
    """Write the class's updates; return (updates, their bytes, the docs' final states)."""
    sim = Simulator(states, random.Random(seed))
    rows: list[tuple[str, str, bytes, float, str, str]] = []
    written = since = size = 0
    for e in events:
        for doc, update, author in sim.updates(e):
            rows.append((nb_id, doc, update, start + e.at, author, f"sess-{author}" if author else ""))
            size += len(update)
        if len(rows) >= BATCH:
            world.store.append_updates(rows)
            written += len(rows)
            since += len(rows)
            rows = []
            if since >= CHECKPOINT_EVERY and history:
                checkpoint(world, nb_id, sim, start + e.at)
                since = 0
    if rows:
        world.store.append_updates(rows)
        written += len(rows)
    if history:
        checkpoint(world, nb_id, sim, start + CLASS_SECONDS + 3600)
    return written, size, sim.states()


def checkpoint(world: World, nb_id: str, sim: Simulator, now: float) -> None:
    with world.store.engine.connect() as conn:
        covered = [int(i) for i in conn.execute(sa.select(doc_updates.c.id).where(doc_updates.c.notebook_id == nb_id)).scalars()]
    world.store.checkpoint(nb_id, sim.states(), covered)
    world.store.history.make_keyframes(nb_id, now=now)


def table_sizes(url: str) -> dict[str, int]:
    import sqlite3

    path = sa.make_url(url).database
    assert path
    conn = sqlite3.connect(path)
    try:
        conn.execute("VACUUM")
        return {name: int(size) for name, size in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")}
    finally:
        conn.close()


def sum_of(sizes: dict[str, int], *prefixes: str) -> int:
    return sum(v for k, v in sizes.items() if k.startswith(prefixes))


def mb(n: float) -> str:
    return f"{n / 1e6:7.2f} MB"


def timed(fn: Any, *args: Any, repeat: int = 15) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def stats(ms: list[float]) -> str:
    ms = sorted(ms)
    return f"median {statistics.median(ms):7.1f} ms   p95 {ms[max(0, int(len(ms) * 0.95) - 1)]:7.1f} ms   max {ms[-1]:7.1f} ms"


def append_cost(url: str, history: bool, batch: int, n: int = 2000) -> float:
    """Microseconds of Store.append_updates per update (a fresh notebook id each time)."""
    engine = make_engine(url)
    store = (Store if history else TodayStore)(engine)
    store.start()
    doc: Doc[Any] = Doc()
    text = doc.get("source", type=Text)
    updates = []
    for i in range(n):
        sv = doc.get_state()
        text.insert(i, "x")
        updates.append(doc.get_update(sv))
    nb = f"cost{history}{batch}{time.time_ns()}"
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        now = time.time()
        store.append_updates([(nb, "cell:c", u, now, "alice", "s1") for u in updates[start : start + batch]])
    spent = time.perf_counter() - t0
    engine.dispose()
    return spent / n * 1e6


async def run(args: argparse.Namespace) -> None:
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-history-"))
    root.mkdir(parents=True, exist_ok=True)
    pg: Any = None
    try:
        if args.db == "postgresql":
            from replicas import PostgresDatabase

            pg = PostgresDatabase()
            pg.create()
            url = pg.url
        else:
            url = f"sqlite:///{root / 'history.sqlite'}"
        today_url = f"sqlite:///{root / 'today.sqlite'}"
        rng = random.Random(args.seed)
        print(f"# bench_history: {args.updates} updates, {args.students} students, {args.cells} cells, {args.db};"
              f" load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")  # fmt: skip
        events = schedule(args.students, args.updates, rng)
        start = time.time() - CLASS_SECONDS - 2 * DAY  # a class two days ago
        content = class_notebook(args.cells, args.students)

        # -- today: the live log only --------------------------------------------------------
        today = await make_world(today_url, TodayStore)
        record = await today.rooms.create_notebook(INSTRUCTOR, "class", content, mode=0o755, default_cell_mode=0o755)
        room = await today.rooms.get(record.id)
        states = room.snapshot()
        await today.rooms.unload(room)
        t0 = time.perf_counter()
        count, update_bytes, final = write_class(today, record.id, events, states, start, args.seed, history=False)
        print(f"today: wrote {count} updates ({mb(update_bytes)} of update bytes) in {time.perf_counter() - t0:.1f} s")
        raw = table_sizes(today_url)
        raw_log = sum_of(raw, "collab_doc_updates", "ix_collab_doc_updates")
        with today.store.engine.connect() as conn:
            covered = [int(i) for i in conn.execute(sa.select(doc_updates.c.id)).scalars()]
        today.store.checkpoint(record.id, final, covered)
        compacted = table_sizes(today_url)
        state = sum_of(compacted, "collab_doc_checkpoints", "sqlite_autoindex_collab_doc_checkpoints")
        await close_world(today)

        # -- with history ------------------------------------------------------------------------
        world = await make_world(url)
        record = await world.rooms.create_notebook(INSTRUCTOR, "class", content, mode=0o755, default_cell_mode=0o755)
        nb = record.id
        with world.store.engine.begin() as conn:  # it was created as the class began
            conn.execute(sa.text("UPDATE collab_doc_history SET at = :at"), {"at": start - 60})
            conn.execute(sa.text("UPDATE collab_notebooks SET created_at = :at, updated_at = :at"), {"at": start - 60})
        t0 = time.perf_counter()
        write_class(world, nb, events, states, start, args.seed, history=True)
        print(f"history: wrote them, with checkpoints and keyframes, in {time.perf_counter() - t0:.1f} s")
        with world.store.engine.connect() as conn:
            payload = int(conn.execute(sa.text("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM collab_doc_history")).scalar() or 0)
            snaps = int(conn.execute(sa.text("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM collab_doc_snapshots")).scalar() or 0)
            nsnaps = int(conn.execute(sa.text("SELECT COUNT(*) FROM collab_doc_snapshots")).scalar() or 0)
        print()
        print("## storage")
        print(f"today: compacted state (checkpoints)                 {mb(state)}")
        print(f"today: raw update log ({count} rows in collab_doc_updates) {mb(raw_log)}")
        baseline = state + raw_log
        print(f"today: compacted state + raw update log             {mb(baseline)}")
        if args.db == "sqlite":
            sizes = table_sizes(url)
            hist = sum_of(sizes, "collab_doc_history", "ix_collab_doc_history", "collab_doc_snapshots",
                          "sqlite_autoindex_collab_doc_snapshots", "collab_history", "sqlite_autoindex_collab_history")  # fmt: skip
            live = sum_of(sizes, "collab_doc_checkpoints", "sqlite_autoindex_collab_doc_checkpoints", "collab_doc_updates", "ix_collab_doc_updates")
            print(f"history: its tables and indexes                     {mb(hist)}  (updates {mb(payload)}, {nsnaps} snapshots {mb(snaps)})")
            print(f"history: + the live log and checkpoints             {mb(hist + live)}")
            print(f"ratio (history + live) / (state + raw log)          {(hist + live) / baseline:7.2f}x   (goal <= 3x)")
            print(f"ratio on update bytes: (updates + snapshots) / (state + update bytes) {(payload + snaps) / (state + update_bytes):.2f}x")

        # -- reading it -------------------------------------------------------------------------
        engine = world.store.engine
        chat = ChatService(engine, rooms=world.rooms, permissions=world.permissions, groups_of=lambda name, given=None: frozenset(), store=world.store)
        service = HistoryService(world.store, chat)
        access = world.permissions.access(INSTRUCTOR, nb)
        print()
        print("## reading (owner's view; each figure over 15 runs unless said)")
        for cell in ("s07", "shared03"):
            rows = len(world.store.history.rows(nb, f"cell:{cell}", limit=100_000))
            page = service._timeline(nb, cell, None, 50)
            print(f"timeline of {cell:8s} ({rows:5d} updates, first page {len(page['versions'])} versions): {stats(timed(service._timeline, nb, cell, None, 50))}")
            version = page["versions"][len(page["versions"]) // 2]["id"]

            def show(cell: str = cell, version: int = version) -> None:
                state = world.store.history.state_at_version(nb, f"cell:{cell}", version)
                assert state is not None

            print(f"a version of {cell:8s} (its text, rebuilt):              {stats(timed(show))}")
        times = [start + rng.uniform(0, CLASS_SECONDS) for _ in range(20)]
        ms = []
        for at in times:
            t0 = time.perf_counter()
            out = service._notebook_at(nb, access, at)
            ms.append((time.perf_counter() - t0) * 1000)
        assert len(out["cells"]) == args.cells
        print(f"the notebook at a time ({args.cells} cells, 20 random moments): {stats(ms)}")
        print(f"the activity feed, a page of 50:                        {stats(timed(service._activity, nb, access, start + CLASS_SECONDS + 10, 50, repeat=10))}")

        # -- retention ---------------------------------------------------------------------------
        if args.db == "sqlite":
            t0 = time.perf_counter()
            report = world.store.history.compact(start + CLASS_SECONDS + DAY)
            print()
            print(f"## retention: compacting the class to daily versions took {time.perf_counter() - t0:.1f} s:"
                  f" {report.rows_before} rows -> {report.rows_after}")  # fmt: skip
            sizes = table_sizes(url)
            hist = sum_of(sizes, "collab_doc_history", "ix_collab_doc_history", "collab_doc_snapshots",
                          "sqlite_autoindex_collab_doc_snapshots", "collab_history", "sqlite_autoindex_collab_history")  # fmt: skip
            print(f"history after compaction: {mb(hist)}")
        await close_world(world)

        # -- the writer thread's cost --------------------------------------------------------------
        print()
        print("## keystroke cost on the update log's writer thread (Store.append_updates)")
        cost_url = f"sqlite:///{root / 'cost.sqlite'}" if args.db == "sqlite" else url
        for batch in (1, 10):
            before = statistics.median(append_cost(cost_url, False, batch) for _ in range(3))
            after = statistics.median(append_cost(cost_url, True, batch) for _ in range(3))
            print(f"batches of {batch:2d}: without history {before:7.1f} us/update   with history {after:7.1f} us/update   (+{after - before:.1f} us)")
    finally:
        if pg is not None:
            pg.drop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=200_000)
    parser.add_argument("--students", type=int, default=50)
    parser.add_argument("--cells", type=int, default=300)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", metavar="DIR", help="keep the databases in DIR (to look at them afterwards)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
