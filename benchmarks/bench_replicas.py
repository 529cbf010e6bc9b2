"""Benchmark: the edit-latency workload across replicas (issue 5).

A real JupyterHub, three hub-collab replicas on one PostgreSQL database of their
own and a private ``redis-server``. The workload of ``bench_edit_latency.py``
(one writer types 200 single-character edits 20 ms apart into one cell of a
50-cell notebook; N-1 other clients receive) runs twice:

* **1 replica**: every client connects to r1 (r2 and r3 run, idle);
* **3 replicas**: the writer on r1, the receivers round-robin over r1, r2, r3.

Printed: p50/p99/max of the time until every receiver applied each edit; Redis
messages and bytes per keystroke (published by each replica, from its
``api/health`` counters); CPU per keystroke of each replica. Goal: p99 across
replicas ≤ 2× the single-replica p99, ≤ 2 Redis messages per keystroke per replica.

    .venv/bin/python benchmarks/bench_replicas.py [--clients 50] [--edits 200] [--procs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

from bench_edit_latency import USERS, percentile, sample_notebook, spawn_worker  # noqa: E402
from hubfixtures import Hub  # noqa: E402
from replicas import PostgresDatabase, RedisServer, Replica, new_prefix  # noqa: E402

from hub_collab.client import CollabClient  # noqa: E402


def bus_stats(replica: Replica) -> dict[str, int]:
    stats: dict[str, int] = requests.get(replica.direct_url + "api/health", timeout=5).json()["bus"]
    return stats


async def run(args: argparse.Namespace, hub: Hub, replicas: list[Replica], spread: int, nb_id: str, cell: str, base: int) -> dict[str, Any]:
    writer_client = CollabClient(replicas[0].direct_url, hub.token(USERS[0]))
    receivers = args.clients - 1
    targets = replicas[:spread]
    groups: dict[tuple[int, int], list[str]] = {}
    for i in range(receivers):
        r = i % len(targets)
        w = (i // len(targets)) % args.procs
        groups.setdefault((r, w), []).append(hub.token(USERS[1 + (i % (len(USERS) - 1))]))
    workers = []
    for (r, _), tokens in groups.items():
        ws_url = CollabClient(targets[r].direct_url, "").ws_url(nb_id)
        cfg = {"client": "lean", "ws_url": ws_url, "base_url": targets[r].direct_url, "nb": nb_id, "tokens": tokens, "cell": cell, "base_len": base, "edits": args.edits}
        workers.append(spawn_worker(cfg))
    for proc in workers:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        if not json.loads(line or "{}").get("ready"):
            raise RuntimeError("a worker failed to join")
    procs = [psutil.Process(r.process.pid) for r in replicas if r.process is not None]
    sends: list[int] = []
    async with writer_client.open(nb_id) as conn:
        await conn.synced()
        await asyncio.sleep(0.5)
        stats0 = [bus_stats(r) for r in replicas]
        cpu0 = [p.cpu_times() for p in procs]
        start = time.monotonic_ns()
        for i in range(args.edits):
            delay = (start + int(i * args.interval * 1e9) - time.monotonic_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            sends.append(time.monotonic_ns())
            conn.edit(cell, base + i, insert=chr(ord("a") + i % 26))
        results = []
        for proc in workers:
            assert proc.stdout is not None
            results.append(json.loads(await asyncio.to_thread(proc.stdout.readline)))
        cpu1 = [p.cpu_times() for p in procs]
        stats1 = [bus_stats(r) for r in replicas]
    for proc in workers:
        proc.wait(30)
    writer_client.close()
    rows = [row for r in results for row in r["times"]]
    per_edit = []
    for i, sent in enumerate(sends):
        got = [row[i] for row in rows if row[i]]
        if len(got) == len(rows):
            per_edit.append((max(got) - sent) / 1e6)
    return {
        "spread": spread,
        "p50": percentile(per_edit, 50),
        "p99": percentile(per_edit, 99),
        "max": max(per_edit),
        "complete": all(r["complete"] for r in results),
        "cpu_ms_per_key": [((c1.user + c1.system) - (c0.user + c0.system)) * 1000 / args.edits for c0, c1 in zip(cpu0, cpu1, strict=True)],
        "msgs_per_key": [(s1["published"] - s0["published"]) / args.edits for s0, s1 in zip(stats0, stats1, strict=True)],
        "recv_per_key": [(s1["received"] - s0["received"]) / args.edits for s0, s1 in zip(stats0, stats1, strict=True)],
        "bytes_per_key": [(s1["published_bytes"] - s0["published_bytes"]) / args.edits for s0, s1 in zip(stats0, stats1, strict=True)],
    }


async def main_async(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    hub = Hub(root / "hub")
    db = PostgresDatabase()
    redis_server = RedisServer(root)
    replicas: list[Replica] = []
    try:
        hub.start()
        db.create()
        redis_server.start()
        prefix, secret = new_prefix(), secrets.token_hex(32)
        replicas = [
            Replica(hub, root / name, name, db_url=db.url, redis_url=redis_server.url, prefix=prefix, cookie_secret=secret, port=port)
            for name, port in (("r1", None), ("r2", hub.collab_port), ("r3", None))
        ]
        for r in replicas:
            r.extra_args.append("--log-level=WARN")
            r.start()
        content = sample_notebook(args.cells)
        async with CollabClient(replicas[0].direct_url, hub.token(USERS[0])) as client:
            nb = await client.create_notebook("bench-replicas", content=content, mode="0777")
        lengths = {c["id"]: len(c["source"]) for c in content["cells"]}
        cells = list(lengths)
        rows = []
        for k, spread in enumerate((1, 3)):
            cell = cells[10 + k]
            rows.append(await run(args, hub, replicas, spread, nb["id"], cell, lengths[cell]))
            print(f"  spread over {spread}: done", file=sys.stderr)
    finally:
        for r in replicas:
            r.stop()
        redis_server.stop()
        db.drop()
        hub.stop()
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(f"Edits across replicas: N={args.clients} clients, {args.edits} edits {args.interval * 1000:.0f} ms apart; writer on r1;")
    print("3 real replica processes, PostgreSQL, a private redis-server; clients connect directly to the replicas.")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print()
    print(f"{'clients on':>11} | {'p50':>6} {'p99':>6} {'max':>6} ms | {'Redis msgs/key (r1 r2 r3)':>26} | {'bytes/key':>18} | {'CPU ms/key (r1 r2 r3)':>22} | ok")
    for r in rows:
        msgs = " ".join(f"{m:.2f}" for m in r["msgs_per_key"])
        recv = " ".join(f"{m:.2f}" for m in r["recv_per_key"])
        byts = " ".join(f"{b:.0f}" for b in r["bytes_per_key"])
        cpu = " ".join(f"{c:.2f}" for c in r["cpu_ms_per_key"])
        print(f"{r['spread']:>2} replica(s) | {r['p50']:6.2f} {r['p99']:6.2f} {r['max']:6.2f}    | pub {msgs:>10} recv {recv:>10} | {byts:>18} | {cpu:>22} | {'yes' if r['complete'] else 'NO'}")
    one, three = rows
    ratio = three["p99"] / one["p99"] if one["p99"] else float("nan")
    worst = max(max(m, r) for m, r in zip(three["msgs_per_key"], three["recv_per_key"], strict=True))
    print()
    print(f"p99 across 3 replicas / p99 on one: {ratio:.2f} (goal <= 2): {'MET' if ratio <= 2 else 'MISSED'}")
    print(f"Redis messages per keystroke per replica (published or received, worst): {worst:.2f} (goal <= 2): {'MET' if worst <= 2 else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--edits", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--cells", type=int, default=50)
    parser.add_argument("--procs", type=int, default=2)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
