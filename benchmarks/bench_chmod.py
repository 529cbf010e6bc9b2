"""Benchmark: a chmod reflected at 100 connected clients (issue 3).

A real JupyterHub and hub-collab (started like the tests do); 100 clients (the
lean wire client of ``leanws``, in 2 worker processes) hold one 50-cell notebook
open. The owner changes one cell's mode over REST (``0666`` → ``0600`` and back,
``--rounds`` times); for each change, the time until every client has received
its new ``caps`` is measured from the moment the request was sent, and from the
moment the API call returned.

    .venv/bin/python benchmarks/bench_chmod.py [--clients 100] [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

from bench_edit_latency import USERS, BenchService, percentile, sample_notebook  # noqa: E402
from hubfixtures import Hub  # noqa: E402

from hub_collab.client import CollabClient  # noqa: E402


def worker_main() -> None:
    """Join the clients, print ready, then record when each gets a ``caps`` frame."""
    from leanws import LeanConnection

    cfg = json.loads(sys.stdin.readline())
    conns = []
    for token in cfg["tokens"]:
        conn = LeanConnection(cfg["ws_url"], token, apply=False)
        conn.join()
        conns.append(conn)
    print(json.dumps({"ready": True}), flush=True)
    sel = selectors.DefaultSelector()
    for k, conn in enumerate(conns):
        assert conn.sock is not None
        conn.sock.setblocking(False)
        sel.register(conn.sock, selectors.EVENT_READ, k)
    times: list[list[int]] = [[] for _ in conns]
    want = cfg["rounds"]
    deadline = time.monotonic() + 120
    while any(len(t) < want for t in times) and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1.0):
            k = key.data
            try:
                messages = conns[k].recv_some()
            except BlockingIOError:
                continue
            for opcode, payload in messages:
                if opcode == 1 and json.loads(payload).get("type") == "caps":
                    times[k].append(time.monotonic_ns())
    for conn in conns:
        conn.close()
    print(json.dumps({"times": times}), flush=True)


def spawn(script: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, script, "--worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)


async def main_async(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-chmod-"))
    hub = Hub(root / "hub")
    service = BenchService(hub, root / "collab", extra_args=["--log-level=WARN"])
    try:
        hub.start()
        service.start()
        owner = CollabClient(service.direct_url, hub.token(USERS[0]))
        content = sample_notebook(50)
        nb = await owner.create_notebook("bench-chmod", content=content, mode="0777")
        cell = content["cells"][0]["id"]
        await owner.set_permissions(nb["id"], cell, mode="0666")
        workers = []
        for w in range(2):
            tokens = [hub.token(USERS[1 + (i % (len(USERS) - 1))]) for i in range(w, args.clients, 2)]
            proc = spawn(__file__)
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"ws_url": owner.ws_url(nb["id"]), "tokens": tokens, "rounds": args.rounds}) + "\n")
            proc.stdin.flush()
            workers.append(proc)
        for proc in workers:
            assert proc.stdout is not None
            assert json.loads(await asyncio.to_thread(proc.stdout.readline)).get("ready")
        await asyncio.sleep(0.5)
        sent, returned = [], []
        for i in range(args.rounds):
            sent.append(time.monotonic_ns())
            await owner.set_permissions(nb["id"], cell, mode="0600" if i % 2 == 0 else "0666")
            returned.append(time.monotonic_ns())
            await asyncio.sleep(0.3)
        results = []
        for proc in workers:
            assert proc.stdout is not None
            results.append(json.loads(await asyncio.to_thread(proc.stdout.readline)))
            proc.wait(30)
        owner.close()
    finally:
        service.stop()
        hub.stop()
        shutil.rmtree(root, ignore_errors=True)
    rows: list[list[int]] = [t for r in results for t in r["times"]]
    complete = all(len(t) >= args.rounds for t in rows)
    from_sent, from_returned = [], []
    for i in range(args.rounds):
        last = max(t[i] for t in rows if len(t) > i)
        from_sent.append((last - sent[i]) / 1e6)
        from_returned.append((last - returned[i]) / 1e6)
    print()
    print(f"chmod of one cell reflected at {args.clients} connected clients ({args.rounds} changes, directly to the service)")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; every client got every caps: {'yes' if complete else 'NO'}")
    print(f"until the LAST client has its caps, from sending the PUT:  p50 {percentile(from_sent, 50):7.1f} ms   max {max(from_sent):7.1f} ms")
    print(f"                                   from the PUT's answer:  p50 {percentile(from_returned, 50):7.1f} ms   max {max(from_returned):7.1f} ms")
    print("each change, from sending (ms):", " ".join(f"{v:.0f}" for v in from_sent))
    print(f"goal: within 100 ms: {'MET' if max(from_sent) <= 100 else 'MISSED'}")


def main() -> None:
    if "--worker" in sys.argv:
        worker_main()
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
