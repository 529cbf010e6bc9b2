"""Benchmark: chat delivery to 50 connected clients, and history pages with 100,000 messages.

Runs a real JupyterHub (with configurable-http-proxy) and the hub-collab service as a
subprocess, exactly as the tests do (tests/hubfixtures.py); every client connects
through the proxy with a Hub API token. The service is started with
``--HubCollab.chat_rate=0`` (no rate limit) so one writer can send quickly.

(a) delivery: ``--clients`` WebSocket clients (users cycled) on one notebook; one writer
    sends ``--messages`` chat messages one after another (each awaits its ``ack``);
    latency = time from send to the ``chat`` push arriving at each client, all in this
    process (one clock). Figures are p50/p99/max over messages × clients.
(b) history: ``--stored`` messages are inserted in bulk straight into the service's
    table (``ChatService.insert_many``), then history pages of ``--page`` messages
    are fetched: the newest page and pages at random ``before`` ids, through REST
    (proxy → service → SQLite) and directly (``ChatService.page`` on the same database).

    .venv/bin/python benchmarks/bench_chat.py [--clients 50] [--messages 200] [--stored 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from hubfixtures import EXTRA_USERS, USERS, CollabService, Hub  # noqa: E402

from hub_collab.chat import ChatService  # noqa: E402
from hub_collab.client import CollabClient, NotebookConnection  # noqa: E402
from hub_collab.store import make_engine  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def fmt(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"p50 {pct(ms, 50):7.2f} ms   p99 {pct(ms, 99):7.2f} ms   max {max(ms):7.2f} ms"
        f"   mean {statistics.fmean(ms):7.2f} ms   (n={len(ms)})"
    )


async def bench_delivery(
    hub: Hub, collab: CollabService, n_clients: int, n_messages: int, url: str
) -> None:
    users = USERS + EXTRA_USERS
    writer_client = CollabClient(url, hub.token("alice"))
    nb = (await writer_client.create_notebook("bench chat", mode="0755"))["id"]
    sent: dict[str, float] = {}
    latencies: list[float] = []
    per_message: dict[str, list[float]] = {}
    received = [0]
    all_in = asyncio.Event()

    def on_message(kind: str, msg: Any) -> None:
        if kind == "message" and msg.get("type") == "chat":
            text = msg["message"]["text"]
            t = sent.get(text)
            if t is not None:
                latency = time.perf_counter() - t
                latencies.append(latency)
                per_message.setdefault(text, []).append(latency)
                received[0] += 1
                if received[0] == n_messages * n_clients:
                    all_in.set()

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

    async with writer_client.open(nb, subscribe_all=False) as writer:
        for i in range(10):  # warm-up, not measured
            await writer.chat(f"warm-up {i}")
        await asyncio.sleep(0.2)
        received[0] = 0
        t_start = time.perf_counter()
        for i in range(n_messages):
            text = f"bench message {i}"
            sent[text] = time.perf_counter()
            await writer.chat(text)
        try:
            await asyncio.wait_for(all_in.wait(), 30)
        except TimeoutError:
            print("  (not every delivery arrived within 30 s)")
        elapsed = time.perf_counter() - t_start
    print(
        f"  {n_messages} messages x {n_clients} clients: {received[0]} deliveries in {elapsed:.2f} s"
        f" ({received[0] / elapsed:,.0f} deliveries/s)"
    )
    print(f"  delivery latency (every delivery):  {fmt(latencies)}")
    print(f"  first client to get each message:   {fmt([min(v) for v in per_message.values()])}")
    print(f"  last client to get each message:    {fmt([max(v) for v in per_message.values()])}")
    print("  (the clients share this one Python process: the spread between first and last is")
    print("   mostly this process reading 50 sockets in turn, not the service)")
    for conn in conns:
        await conn.close()
    for client in clients:
        client.close()
    writer_client.close()


def fmt3(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return f"{pct(ms, 50):7.2f} {pct(ms, 90):7.2f} {pct(ms, 99):7.2f} {ms[-1]:7.2f}"


async def bench_latency(hub: Hub, url: str, route: str, gaps: list[float], n_messages: int) -> None:
    """One writer (alice) and one receiver (bob, another user) on one notebook; for each
    gap, ``n_messages`` chat messages are sent with that pause before each one (0:
    back-to-back, each send after the previous ack). Latency: the writer's send until
    the ``chat`` push is read by bob's client, and until the writer's ``ack``. Each case
    runs twice: the chat command alone, and right after a "typing" awareness frame (what
    the chat UI sends while the user types; the server does not answer it)."""
    alice = CollabClient(url, hub.token("alice"))
    bob = CollabClient(url, hub.token("bob"))
    nb = (await alice.create_notebook(f"bench chat latency {route}", mode="0755"))["id"]
    sent: dict[str, float] = {}
    got: dict[str, float] = {}
    arrived = asyncio.Event()

    def on_message(kind: str, msg: Any) -> None:
        if kind == "message" and msg.get("type") == "chat":
            text = msg["message"]["text"]
            if text in sent:
                got[text] = time.perf_counter()
                arrived.set()

    async with (
        alice.open(nb, subscribe_all=False) as writer,
        bob.open(nb, subscribe_all=False) as reader,
    ):
        reader.listeners.append(on_message)
        for i in range(10):  # warm-up, not measured
            await writer.chat(f"warm-up {i}")
        await asyncio.sleep(0.3)
        for gap in gaps:
            for typing in (False, True):
                push: list[float] = []
                ack: list[float] = []
                for i in range(n_messages):
                    if gap:
                        await asyncio.sleep(gap)
                    text = f"{route} gap {gap} typing {typing} message {i}"
                    arrived.clear()
                    t = sent[text] = time.perf_counter()
                    if typing:  # as the chat UI: a "typing" awareness state, then the message
                        writer.set_awareness({"typing": True})
                    await writer.chat(text)
                    ack.append(time.perf_counter() - t)
                    await asyncio.wait_for(arrived.wait(), 10)
                    push.append(got[text] - t)
                label = ("back-to-back" if not gap else f"after {gap:g} s") + (
                    " +typing" if typing else ""
                )
                print(
                    f"  {route:6} {label:21} | push {fmt3(push)} | ack {fmt3(ack)} | {n_messages}"
                )
    alice.close()
    bob.close()


async def bench_history(
    hub: Hub, collab: CollabService, n_stored: int, page: int, n_pages: int
) -> None:
    async with CollabClient(collab.public_url, hub.token("alice")) as alice:
        nb = (await alice.create_notebook("bench history", mode="0755"))["id"]
        engine = make_engine(collab.db_url)
        chat = ChatService(engine)
        chat.start()
        t0 = time.perf_counter()
        now = time.time()
        batch = 10_000
        for start in range(0, n_stored, batch):
            chat.insert_many(
                [
                    {
                        "notebook": nb,
                        "author": ("alice", "bob", "carol")[i % 3],
                        "text": f"stored message {i} " + "lorem ipsum " * (i % 8),
                        "created_at": now - (n_stored - i),
                        "mentions": ["bob"] if i % 10 == 0 else [],
                        "refs": [],
                    }
                    for i in range(start, min(start + batch, n_stored))
                ]
            )
        print(f"  inserted {n_stored:,} messages in bulk in {time.perf_counter() - t0:.2f} s")
        newest = chat.page(nb, None, 1)[0][0]["id"]
        oldest = newest - n_stored + 1
        rng = random.Random(1)
        befores = [rng.randint(oldest + page, newest) for _ in range(n_pages)]

        for label, before_list in (("newest page", [None] * n_pages), ("random before", befores)):
            rest: list[float] = []
            for before in before_list:
                t = time.perf_counter()
                result = await alice.chat_history(nb, before=before, limit=page)
                rest.append(time.perf_counter() - t)
                assert len(result["messages"]) == page
            direct: list[float] = []
            for before in before_list:
                t = time.perf_counter()
                records, _ = chat.page(nb, before, page)
                direct.append(time.perf_counter() - t)
                assert len(records) == page
            print(f"  REST   GET chat?limit={page} ({label}): {fmt(rest)}")
            print(f"  direct ChatService.page({page}) ({label}): {fmt(direct)}")
        chat.stop()
        engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--parts",
        default="latency,delivery,history",
        help="which parts to run (comma-separated): latency, delivery, history",
    )
    parser.add_argument(
        "--gaps",
        default="0,0.2,0.5,1",
        help="latency: pauses in seconds before each message (0 = back-to-back)",
    )
    parser.add_argument("--gap-messages", type=int, default=30)
    parser.add_argument("--routes", default="proxy,direct", help="latency: proxy, direct or both")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=50)
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument(
        "--direct",
        action="store_true",
        help="connect straight to the service, not through the proxy",
    )
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-chat-"))
    hub = Hub(root / "hub")
    collab = CollabService(
        hub, root / "collab", extra_args=["--HubCollab.chat_rate=0", "--log-level=WARN"]
    )
    print(
        "setup: a real JupyterHub + configurable-http-proxy; hub-collab as a subprocess (SQLite);"
    )
    print("       clients in this process, through the proxy, with Hub API tokens")
    try:
        hub.start()
        for user in EXTRA_USERS:
            hub.create_user(user)
        collab.start()
        parts = set(args.parts.split(","))
        if "latency" in parts:
            gaps = [float(g) for g in args.gaps.split(",")]
            print(
                "(0) latency: one writer, one receiver (another user); ms, p50/p90/p99/max;"
                " push = send until the receiver reads the chat push, ack = send until the"
                " writer reads its ack"
            )
            print(
                f"  {'route':6} {'when':21} | push {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7}"
                f" | ack  {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7} | n"
            )
            for route in args.routes.split(","):
                route_url = collab.direct_url if route == "direct" else collab.public_url
                await bench_latency(hub, route_url, route, gaps, args.gap_messages)
        if "delivery" in parts:
            url = collab.direct_url if args.direct else collab.public_url
            print(
                f"(a) delivery to {args.clients} connected clients, one writer,"
                f" {args.messages} messages"
            )
            print(
                f"    clients connect to {'the service directly' if args.direct else 'the proxy'}:"
                f" {url}"
            )
            await bench_delivery(hub, collab, args.clients, args.messages, url)
        if "history" in parts:
            print(f"(b) history pages with {args.stored:,} messages stored in one notebook")
            await bench_history(hub, collab, args.stored, args.page, args.pages)
    finally:
        collab.stop()
        hub.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
