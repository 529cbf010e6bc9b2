"""Benchmark: comments with 50 users connected, one of them flooding.

Runs a real JupyterHub (with configurable-http-proxy) and the hub-collab service as a
subprocess, exactly as the tests do (tests/hubfixtures.py); every client connects
through the proxy with a Hub API token, all in this one Python process (one clock).

(a) flood: ``--clients`` WebSocket clients (users cycled) on one notebook of
    ``--cells`` cells. One user (bob) sends ``--flood`` ``comment_create`` commands as
    fast as his socket takes them, each anchored to a range of a cell; meanwhile
    another user (alice) replies in a thread every ``--gap`` seconds. Measured: the
    latency from alice's send to the ``comment`` push at every other client (p50/p99/
    max), how many of bob's comments were accepted and refused (``rate_limited``),
    the service's RSS before and after and its CPU time. Run twice: with the default
    rate limit, and with ``comment_rate=0`` (no limit: every flooded comment is stored
    and pushed to all 50 clients).
(b) reading: ``--stored`` threads are written straight into the service's tables
    (``CommentStore``), spread over the notebook's cells, then ``comment_summary``
    (the badges of every cell), ``comment_list {cell_id}`` and REST
    ``GET …/comments?limit=50`` are timed.
(c) anchors: resolving the ranges of a cell's threads after edits, on cells of
    1 KB to 200 KB (``SourceText`` on the doc's state), in this process.

    .venv/bin/python benchmarks/bench_comments.py [--clients 50] [--flood 300] [--stored 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from bench_chat import fmt as fmt_ms  # noqa: E402
from hubfixtures import EXTRA_USERS, USERS, CollabService, Hub  # noqa: E402
from pycrdt import Doc, Text  # noqa: E402

from hub_collab.client import CollabClient, CommandError, NotebookConnection  # noqa: E402
from hub_collab.comments.store import CommentStore  # noqa: E402
from hub_collab.documents.anchors import SourceText  # noqa: E402
from hub_collab.store import make_engine  # noqa: E402


def fmt(values: list[float]) -> str:
    return fmt_ms(values) if values else "(none)"


def content(cells: int) -> dict[str, Any]:
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            {"id": f"c{i}", "cell_type": "code", "source": f"value_{i} = compute({i}) * factor  # ünïcode ✓",
             "metadata": {}, "outputs": [], "execution_count": None}
            for i in range(cells)
        ],
    }  # fmt: skip


def service_usage(collab: CollabService) -> tuple[float, float]:
    """(RSS in MB, CPU seconds) of the service process."""
    assert collab.process is not None
    proc = psutil.Process(collab.process.pid)
    cpu = proc.cpu_times()
    return proc.memory_info().rss / 2**20, cpu.user + cpu.system


async def bench_flood(hub: Hub, collab: CollabService, n_clients: int, n_cells: int, n_flood: int, gap: float, label: str) -> None:
    users = [u for u in USERS + EXTRA_USERS if u not in ("bob",)]
    url = collab.public_url
    owner = CollabClient(url, hub.token("alice"))
    nb = (await owner.create_notebook(f"bench comments {label}", content(n_cells), mode="0755"))["id"]
    sent: dict[str, float] = {}
    latencies: list[float] = []

    def on_message(kind: str, msg: Any) -> None:
        if kind == "message" and msg.get("type") == "comment":
            t = sent.get(msg["comment"]["text"])
            if t is not None:
                latencies.append(time.perf_counter() - t)

    clients = [CollabClient(url, hub.token(users[i % len(users)])) for i in range(n_clients)]
    conns: list[NotebookConnection] = []
    t0 = time.perf_counter()
    for client in clients:
        conn = client.open(nb, subscribe_all=False)
        await conn.connect()
        conn.listeners.append(on_message)
        conns.append(conn)
    await asyncio.gather(*(c.wait_for(lambda c=c: "index" in c.synced_docs) for c in conns))
    print(f"  {n_clients} clients connected in {time.perf_counter() - t0:.2f} s")
    bob_client = CollabClient(url, hub.token("bob"))
    async with owner.open(nb) as alice, bob_client.open(nb) as bob:
        await alice.synced()
        await bob.synced()
        thread = (await alice.comment_create("c0", "the thread alice replies in"))["thread"]["id"]
        anchors = [bob.anchor(f"c{i % n_cells}", 0, 7) for i in range(n_flood)]
        rss0, cpu0 = service_usage(collab)

        async def flood() -> tuple[int, int]:
            results = await asyncio.gather(
                *(bob.command("comment_create", cell_id=f"c{i % n_cells}", text=f"flood {i} @carol", anchor=anchors[i])
                  for i in range(n_flood)),
                return_exceptions=True,
            )  # fmt: skip
            ok = sum(isinstance(r, dict) for r in results)
            refused = sum(isinstance(r, CommandError) and r.code == "rate_limited" for r in results)
            return ok, refused

        async def replies() -> int:
            n = 0
            while not flooding.done():
                text = f"reply {n}"
                sent[text] = time.perf_counter()
                await alice.comment_reply(thread, text)
                n += 1
                await asyncio.sleep(gap)
            return n

        t1 = time.perf_counter()
        flooding = asyncio.ensure_future(flood())
        n_replies = await replies()
        ok, refused = await flooding
        flood_time = time.perf_counter() - t1
        await asyncio.gather(*(c.sync() for c in conns))
        rss1, cpu1 = service_usage(collab)
    print(f"  bob's flood: {n_flood} comment_create in {flood_time:.2f} s: {ok} stored, {refused} rate_limited")
    print(f"  alice's {n_replies} replies meanwhile, send -> push at {n_clients} clients: {fmt(latencies)}")
    print(f"  service: RSS {rss0:.0f} MB -> {rss1:.0f} MB ({rss1 - rss0:+.1f} MB), CPU {cpu1 - cpu0:.2f} s over the flood")
    for conn in conns:
        await conn.close()
    for client in (*clients, owner, bob_client):
        client.close()


async def bench_reading(hub: Hub, collab: CollabService, n_cells: int, n_stored: int) -> None:
    async with CollabClient(collab.public_url, hub.token("alice")) as alice:
        nb = (await alice.create_notebook("bench comment reading", content(n_cells), mode="0755"))["id"]
        engine = make_engine(collab.db_url)
        store = CommentStore(engine)
        t0 = time.perf_counter()
        rng = random.Random(1)
        for i in range(n_stored):
            made = store.create_thread(nb, f"c{i % n_cells}", ("alice", "bob", "carol")[i % 3], f"stored thread {i} @bob", ["bob"], None, 10**9)
            assert made is not None
            if i % 5 == 0:
                store.reply(nb, made[0]["id"], "dave", "a reply " * rng.randint(1, 20), [], 10**9)
        engine.dispose()
        print(f"  stored {n_stored:,} threads over {n_cells} cells in {time.perf_counter() - t0:.1f} s")
        async with alice.open(nb, subscribe_all=False) as conn:
            await conn.wait_for(lambda: "index" in conn.synced_docs)
            for label, call in (
                ("comment_summary (every cell's badges)", lambda: conn.comment_summary()),
                ("comment_list {cell_id} (one cell's threads)", lambda: conn.comment_list(f"c{rng.randrange(n_cells)}")),
                ("comment_notices (bob's mentions)", lambda: conn.comment_notices()),
            ):
                times = []
                for _ in range(30):
                    t = time.perf_counter()
                    await call()
                    times.append(time.perf_counter() - t)
                print(f"  {label:46} {fmt(times)}")
        times = []
        for _ in range(30):
            t = time.perf_counter()
            page = await alice.comment_threads(nb, limit=50)
            times.append(time.perf_counter() - t)
        assert len(page["threads"]) == 50
        print(f"  {'REST GET comments?limit=50 (through the proxy)':46} {fmt(times)}")


def bench_anchors() -> None:
    rng = random.Random(2)
    for size, edits in ((1_000, 200), (20_000, 2_000), (200_000, 5_000)):
        a, b = Doc(client_id=1), Doc(client_id=2)
        text_a = a.get("source", type=Text)
        text_a.insert(0, "x = 1  # ünïcode\n" * (size // 17))
        b.apply_update(a.get_update())
        source = SourceText(a.get_update())
        positions = [source.position_at(rng.randrange(source.length)) for _ in range(50)]
        text_b = b.get("source", type=Text)
        for _ in range(edits):  # another client's typing, one character at a time, all over
            cur = str(text_b)
            at = rng.randrange(len(cur))
            text_b.insert(len(cur[:at].encode()), "y")
        a.apply_update(b.get_update(a.get_state()))
        state = a.get_update()
        times = []
        for _ in range(5):
            t = time.perf_counter()
            now = SourceText(state)
            for pos in positions:
                now.index(pos)
            times.append(time.perf_counter() - t)
        print(f"  {size / 1000:5.0f} KB text + {edits:5} one-character edits ({len(state) / 1000:6.1f} KB state): order it, resolve 50 anchors: {fmt(times)}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="flood,reading,anchors")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--cells", type=int, default=50)
    parser.add_argument("--flood", type=int, default=300)
    parser.add_argument("--gap", type=float, default=0.05)
    parser.add_argument("--stored", type=int, default=5000)
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if "anchors" in parts:
        print("(c) anchors, in this process")
        bench_anchors()
    if not parts & {"flood", "reading"}:
        return
    root = Path(tempfile.mkdtemp(prefix="bench-comments-"))
    hub = Hub(root / "hub")
    collab = CollabService(hub, root / "collab", extra_args=["--HubCollab.comment_max_threads_per_cell=1000000000"])
    try:
        hub.start()
        for user in EXTRA_USERS:
            hub.create_user(user)
        collab.start()
        if "flood" in parts:
            print(f"(a) flood from one user, {args.clients} clients, default rate limit (1/s, burst 10)")
            await bench_flood(hub, collab, args.clients, args.cells, args.flood, args.gap, "limited")
            collab.extra_args.append("--HubCollab.comment_rate=0")
            collab.restart()
            print("(a') the same without a rate limit (comment_rate=0): every flooded comment stored and pushed")
            await bench_flood(hub, collab, args.clients, args.cells, args.flood, args.gap, "unlimited")
        if "reading" in parts:
            print(f"(b) reading with {args.stored:,} threads stored in one notebook")
            await bench_reading(hub, collab, args.cells, args.stored)
    finally:
        collab.stop()
        hub.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
