"""Benchmark: what Prometheus metrics cost on the keystroke path, in process.

The end-to-end figure is ``bench_edit_latency.py --metrics both`` (a real Hub, the
service, clients in other processes); on a small shared machine its CPU per keystroke
moves by more than the few microseconds metrics cost. This one measures the service's
keystroke path alone, with the same code: a real :class:`RoomManager`, rooms,
:class:`UpdateLog` (SQLite in a temporary directory) and permission store, in this
process; ``--receivers`` sessions subscribed to every doc (each counts the bytes it
is sent); a writer session sending single-character edits (made beforehand by a pycrdt
client doc, so the client's cost is not counted) through ``NotebookRoom.handle_frame``,
one per event-loop turn, and the log committed at the end. The figure is the process's
CPU time (``time.process_time``: every thread, the log's writer too) per keystroke,
metrics on (``Metrics`` handed to the room manager and the log, as the app does) and
off, alternating, ``--repeat`` times; medians. Last, the instruments a keystroke
touches are timed alone in a loop (what metrics add, without the noise of the rest).

What this path leaves out (socket writes, WebSocket framing, reading the client's frame)
costs the same with metrics on or off and makes the real keystroke path several times
longer, so the percentage here is an upper bound of the service's.

    .venv/bin/python benchmarks/bench_metrics.py [--receivers 49] [--edits 5000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

from pycrdt import Doc, Text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hub_collab.documents import protocol as p  # noqa: E402
from hub_collab.documents.notebook import cell_doc  # noqa: E402
from hub_collab.documents.rooms import RoomManager  # noqa: E402
from hub_collab.documents.session import Session  # noqa: E402
from hub_collab.metrics import Metrics  # noqa: E402
from hub_collab.permissions.access import Identity  # noqa: E402
from hub_collab.permissions.store import PermissionStore  # noqa: E402
from hub_collab.store import Store, UpdateLog, make_engine  # noqa: E402

OWNER = Identity("alice", frozenset({"students"}), False)


class Sink(Session):
    """A connected client that reads everything: it counts what it is sent."""

    def __init__(self, identity: Identity) -> None:
        super().__init__(identity)
        self.received = 0

    def send_bytes(self, data: bytes) -> None:
        self.received += len(data)

    def send_json(self, message: dict[str, Any]) -> None:
        return None

    def close(self, code: int = 1000, reason: str = "") -> None:
        return None


def notebook(cells: int) -> dict[str, Any]:
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            {"id": f"c{i:04d}", "cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": f"x_{i} = {i}\n"}
            for i in range(cells)
        ],
    }


async def one_run(root: Path, metrics_on: bool, receivers: int, edits: int, cells: int) -> dict[str, float]:
    url = f"sqlite:///{root / 'collab.sqlite'}"
    engine = make_engine(url)
    store = Store(engine)
    store.start()
    permissions = PermissionStore(url, engine=engine)
    permissions.start()
    metrics = Metrics() if metrics_on else None
    log = UpdateLog(store, metrics=metrics)
    rooms = RoomManager(store, log, permissions, metrics=metrics)
    log.start()
    rooms.start()
    try:
        record = await rooms.create_notebook(OWNER, "bench", notebook(cells), mode=0o777, default_cell_mode=0o777)
        room = await rooms.get(record.id)
        everything = b"".join(p.sync_step1(name, b"\x00") for name in room.docs)
        sessions = []
        for _ in range(receivers + 1):
            session = Sink(OWNER)
            session.access = room.compute_access_for(OWNER)
            room.join(session)
            room.handle_frame(session, everything)
            sessions.append(session)
        writer, readers = sessions[0], sessions[1:]
        # the writer's edits, made beforehand by a client doc that holds the cell
        name = cell_doc(f"c{cells // 2:04d}")
        client: Doc[Any] = Doc()
        client.apply_update(room.docs.state(name))
        text = client.get("source", type=Text)
        frames: list[bytes] = []
        sub = client.observe(lambda event: frames.append(p.sync_update(name, event.update)))
        for i in range(edits):
            text.insert(len(text), chr(ord("a") + i % 26))
        client.unobserve(sub)
        await log.flush()
        gc.collect()
        before = [s.received for s in readers]
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for frame in frames:
            room.handle_frame(writer, frame)
            await asyncio.sleep(0)  # one keystroke per turn of the loop: commits group as in the service
        await log.flush()
        cpu1, wall1 = time.process_time(), time.perf_counter()
        got = [s.received - b for s, b in zip(readers, before, strict=True)]
        assert all(g > 0 for g in got) or not readers, "a receiver got nothing"
        assert str(room.docs[name].get("source", type=Text)) == str(text), "the room and the writer differ"
        return {"cpu_us": (cpu1 - cpu0) / edits * 1e6, "wall_us": (wall1 - wall0) / edits * 1e6}
    finally:
        await rooms.stop()
        await log.stop()
        permissions.stop()
        engine.dispose()


def instruments_alone(rounds: int = 200_000) -> float:
    """Nanoseconds of what metrics add to one keystroke, timed alone: two clock reads,
    two counter increments and a histogram observation (as in ``NotebookRoom``)."""
    m = Metrics()
    clock, updates_in, updates_out, fanout = time.perf_counter, m.updates_in_client, m.updates_out, m.fanout_seconds

    def keystroke() -> None:
        applied = clock()
        updates_in.inc()
        updates_out.inc(49)
        fanout.observe(clock() - applied)

    best = min(timeit.repeat(keystroke, number=rounds, repeat=5))
    return best / rounds * 1e9


async def main_async(args: argparse.Namespace) -> None:
    results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for rep in range(args.repeat):
        for on in (True, False) if rep % 2 == 0 else (False, True):
            with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
                r = await one_run(Path(tmp), on, args.receivers, args.edits, args.cells)
            results[on].append(r)
            print(f"  run {rep + 1} metrics {'on ' if on else 'off'}: {r['cpu_us']:.2f} us CPU per keystroke", file=sys.stderr)
    print()
    print(f"Keystroke path in process: {args.edits} single-character edits, {args.receivers} receivers, {args.cells} cells,")
    print(f"SQLite update log; median of {args.repeat} runs each, alternating")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    on = statistics.median(r["cpu_us"] for r in results[True])
    off = statistics.median(r["cpu_us"] for r in results[False])
    spread = {k: (min(r["cpu_us"] for r in v), max(r["cpu_us"] for r in v)) for k, v in results.items()}
    print(f"CPU per keystroke, metrics on:  {on:8.2f} us  (runs {spread[True][0]:.2f} to {spread[True][1]:.2f})")
    print(f"CPU per keystroke, metrics off: {off:8.2f} us  (runs {spread[False][0]:.2f} to {spread[False][1]:.2f})")
    print(f"overhead: {on - off:+.2f} us per keystroke, {100 * (on - off) / off:+.1f}%")
    print(f"the instruments alone: {instruments_alone():.0f} ns per keystroke (best of 5 loops)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--receivers", type=int, default=49, help="sessions that receive every edit")
    parser.add_argument("--edits", type=int, default=5000)
    parser.add_argument("--cells", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
