"""Benchmark: kernels on the user's own Hub server (``hub``) against the service's own (``local``).

A real JupyterHub whose users' servers really run (``LocalProcessSpawner`` as Unix
accounts: run as root) and hub-collab, started like the tests do
(``tests/hubfixtures.py``: ``SpawningHub``, ``CollabService``). The same notebook runs
once per provider (the service is restarted in between), in shared mode on a server of
its owner (who consented), so every client sees the outputs:

* **first output**: a client executes ``print(1)`` in a warm kernel; the time until the
  output is in its own copy of the cell's out doc (``--runs`` times; p50/p90);
* **throughput**: a cell printing ``--lines`` lines reaching ``--clients`` clients (the
  writer plus lean receivers in 2 worker processes, each applying every update): the
  time until the LAST client has the last line, lines per second, and whether every
  client got every line;
* **under load**: the same with two processes keeping both CPUs busy: lines lost.

    sudo .venv/bin/python benchmarks/bench_providers.py [--clients 50] [--lines 100000] [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

from bench_chmod import spawn  # noqa: E402
from hubfixtures import CollabService, SpawningHub  # noqa: E402

from hub_collab.client import CollabClient  # noqa: E402
from hub_collab.documents.notebook import out_doc  # noqa: E402
from hub_collab.documents.outputs import outputs_to_nbformat, read_state  # noqa: E402

OWNER, OTHER = "alice", "bob"


def notebook(lines: int) -> dict[str, Any]:
    sources = ["print(1)", f"for i in range({lines}):\n    print(i)"]
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [
            {"id": f"c{i}", "cell_type": "code", "source": s, "metadata": {}, "outputs": [], "execution_count": None}
            for i, s in enumerate(sources)
        ],
    }


def stream_text(doc: Any) -> str:
    return "".join(str(o.get("text", "")) for o in outputs_to_nbformat(doc) if o.get("output_type") == "stream")


# -- worker processes: the receiving clients ---------------------------------------------------


def worker_main() -> None:
    """Join ``tokens`` clients; per round, report when each has the round's last line."""
    from leanws import LeanConnection

    cfg = json.loads(sys.stdin.readline())
    conns = []
    for token in cfg["tokens"]:
        conn = LeanConnection(cfg["ws_url"], token)
        conn.join()
        conns.append(conn)
    name = out_doc("c1")
    last = f"{cfg['lines'] - 1}\n"
    print(json.dumps({"ready": True}), flush=True)
    for _ in range(cfg["rounds"]):
        start = json.loads(sys.stdin.readline())  # the writer says a round starts
        sel = selectors.DefaultSelector()
        for k, conn in enumerate(conns):
            assert conn.sock is not None
            conn.sock.setblocking(False)
            sel.register(conn.sock, selectors.EVENT_READ, k)
        # this round's run is the one that started after the previous one
        before = [read_state(c.docs[name]).get("started_at") for c in conns]

        def finished(k: int, before: list[Any] = before) -> bool:
            st = read_state(conns[k].docs[name])
            return (
                st.get("started_at") != before[k]
                and st.get("execution_state") == "idle"
                and stream_text(conns[k].docs[name]).endswith(last)
            )

        done: dict[int, int] = {}
        dirty: set[int] = set()
        deadline = time.monotonic() + cfg["timeout"]
        while len(done) < len(conns) and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.02):
                k = key.data
                with contextlib.suppress(BlockingIOError):  # nothing more to read now
                    for opcode, payload in conns[k].recv_some():
                        conns[k].handle(opcode, payload)
                dirty.add(k)
            # checked at most every 20 ms per client (reading a 100,000-line doc is not free)
            for k in list(dirty):
                dirty.discard(k)
                if k not in done and finished(k):
                    done[k] = time.monotonic_ns()
        sel.close()
        complete = [stream_text(c.docs[name]) == start["expected"] for c in conns]
        print(json.dumps({"times": list(done.values()), "complete": sum(complete), "clients": len(conns)}), flush=True)
    for conn in conns:
        conn.close()


def busy_loops(n: int) -> list[subprocess.Popen[bytes]]:
    """``n`` processes that keep a CPU busy each (kill them when done)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def spawn_worker(cfg: dict[str, Any]) -> subprocess.Popen[str]:
    proc = spawn(__file__)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(cfg) + "\n")
    proc.stdin.flush()
    return proc


def readline(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("a worker ended early")
    result: dict[str, Any] = json.loads(line)
    return result


# -- one provider -------------------------------------------------------------------------------


async def measure(hub: SpawningHub, service: CollabService, provider: str, args: argparse.Namespace) -> dict[str, Any]:
    async with CollabClient(service.direct_url, hub.token(OWNER), request_timeout=300) as owner:
        nb = await owner.create_notebook(f"bench-{provider}", notebook(args.lines), mode="0777", default_cell_mode="0777")
        nb_id = str(nb["id"])
        if provider == "hub":
            await owner.request("PUT", f"api/notebooks/{nb_id}/settings", {"shared_server": "", "consent": True})
        conn = owner.open(nb_id)
        await conn.connect()
        await conn.synced()
        await conn.execute("c0")  # warm: the server and the kernel start here
        await conn.wait_executed("c0", timeout=300)
        first: list[float] = []
        for _ in range(args.runs):
            before = conn.out_state("c0").get("queued_at")
            t0 = time.perf_counter()
            await conn.execute("c0")
            await conn.wait_for(
                lambda b=before: conn.out_state("c0").get("queued_at") != b and stream_text(conn.docs[out_doc("c0")]) == "1\n",
                timeout=60,
            )
            first.append((time.perf_counter() - t0) * 1000)
            await conn.wait_executed("c0", timeout=60)
        expected = "".join(f"{i}\n" for i in range(args.lines))
        receivers = args.clients - 1
        workers = []
        for w in range(2):
            n = len(range(w, receivers, 2))
            tokens = [hub.token(OTHER if (w + 2 * i) % 2 else OWNER) for i in range(n)]
            workers.append(
                spawn_worker({"ws_url": owner.ws_url(nb_id), "tokens": tokens, "lines": args.lines, "rounds": 2, "timeout": 600})
            )
        for proc in workers:
            assert (await asyncio.to_thread(readline, proc)).get("ready")
        rounds: dict[str, Any] = {}
        for label, load in (("idle", 0), ("both CPUs busy", 2)):
            burners = busy_loops(load)
            try:
                for proc in workers:
                    assert proc.stdin is not None
                    proc.stdin.write(json.dumps({"expected": expected}) + "\n")
                    proc.stdin.flush()
                await asyncio.sleep(0.2)
                t0 = time.monotonic_ns()
                await conn.execute("c1")
                state = await conn.wait_executed("c1", timeout=600)
                results = [await asyncio.to_thread(readline, proc) for proc in workers]
            finally:
                for b in burners:
                    b.kill()
                    b.wait()
            times = [t for r in results for t in r["times"]]
            writer_ok = stream_text(conn.docs[out_doc("c1")]) == expected
            complete = sum(r["complete"] for r in results) + int(writer_ok)
            seconds = (max(times) - t0) / 1e9 if len(times) == receivers else float("nan")
            rounds[label] = {"status": state.get("status"), "seconds": seconds, "complete": complete, "clients": args.clients}
        for proc in workers:
            proc.wait(60)
        await conn.close()
        return {"first": first, "rounds": rounds}


async def main_async(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-providers-"))
    hub = SpawningHub(root / "hub")
    service = CollabService(hub, root / "collab", extra_args=["--log-level=WARN"])
    results: dict[str, dict[str, Any]] = {}
    try:
        hub.start()
        for provider in ("local", "hub"):
            service.extra_args = ["--log-level=WARN", f"--HubCollab.kernel_provider={provider}"]
            if service.process is None:
                service.start()
            else:
                service.restart()
            results[provider] = await measure(hub, service, provider, args)
    finally:
        service.stop()
        hub.stop_all_servers()
        hub.stop()
        shutil.rmtree(root, ignore_errors=True)
    print()
    print("kernels: hub (the owner's own server, through the Hub's proxy) against local (the service's own)")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; clients connect directly to the service")
    print()
    print(f"first output of print(1) in a warm kernel, {args.runs} runs (ms):")
    for provider, r in results.items():
        f = sorted(r["first"])
        print(f"  {provider:5}  p50 {statistics.median(f):6.1f}   p90 {f[int(len(f) * 0.9) - 1]:6.1f}   max {f[-1]:6.1f}")
    p50 = {k: statistics.median(v["first"]) for k, v in results.items()}
    print(f"  hub - local at p50: {p50['hub'] - p50['local']:+.1f} ms (goal: at most +10 ms): {'MET' if p50['hub'] - p50['local'] <= 10 else 'MISSED'}")
    print()
    print(f"{args.lines:,} printed lines reaching {args.clients} clients:")
    for provider, r in results.items():
        for label, x in r["rounds"].items():
            rate = args.lines / x["seconds"] if x["seconds"] == x["seconds"] else float("nan")
            print(
                f"  {provider:5} {label:15} {x['seconds']:6.2f} s  {rate:9,.0f} lines/s  every line at {x['complete']}/{x['clients']} clients  ({x['status']})"
            )
    idle = {k: v["rounds"]["idle"]["seconds"] for k, v in results.items()}
    ratio = idle["local"] / idle["hub"]
    print(f"  hub throughput / local's (idle): {ratio:.2f} (goal: at least 0.67): {'MET' if ratio >= 2 / 3 else 'MISSED'}")
    lost = any(x["complete"] != x["clients"] for r in results.values() for x in r["rounds"].values())
    print(f"  lines lost: {'SOME' if lost else 'none'} (goal: none)")


def main() -> None:
    if "--worker" in sys.argv:
        worker_main()
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
