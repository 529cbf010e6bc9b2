"""Benchmark: join time of a 50-cell and a 1,000-cell notebook, cold and warm.

A join is what the browser client does: open the WebSocket → ``welcome`` (its caps list
every cell the user may read) → subscribe in one frame to ``index`` and every readable
cell's ``cell:`` and ``out:`` doc → hold them all (every doc has had its sync step 2
applied). Cells have realistic sources (200-700
bytes of Python or Markdown) and some outputs (streams, results, a few small images).

*Cold*: the service was just restarted, so the first client's join loads the notebook
from the store and resolves the client's token with the Hub. *Cold nb*: the same, but the
token was resolved just before (a REST call, its time is the ``auth`` column), so only
the notebook is cold. *Warm*: later clients, the notebook in memory. Each is measured with two clients, in this process:

* ``raw``: :mod:`leanws` without applying the cell/out answers (they are decoded and
  counted): the service and the wire, with as little client as possible;
* ``lean``: :mod:`leanws` (blocking socket, one frame for all ~2,000 subscriptions,
  ``Doc.apply_update`` on every answer): the least a Python client must do;
* ``yjs``: the Node.js client of the interop tests (``tests/js/interop_client.mjs``: yjs,
  y-protocols, ws), joining as the browser does and applying every answer to a
  ``Y.Doc``: the browser's stack without the page (timed inside Node);
* ``full``: :class:`~hub_collab.client.NotebookConnection` (tornado + asyncio), what
  scripts and bots use.

Printed per case: total join time and its phases (connected, welcome, index held,
everything held), bytes received and sent, and the service's CPU time during the join
(psutil, user+sys; its resolution is the kernel's 10 ms tick).

A real JupyterHub and hub-collab are started the way ``tests/hubfixtures.py`` does
(its classes are reused); clients connect straight to the service with Hub API tokens
(``--via-proxy``: through configurable-http-proxy).

    .venv/bin/python benchmarks/bench_join.py [--sizes 50,1000] [--warm 5] [--repeat 3] [--via-proxy]
        [--profile FILE [--py-spy PATH]]
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
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_edit_latency import REPO, BenchService, start_py_spy, summarize_profile  # noqa: E402
from hubfixtures import Hub  # noqa: E402
from leanws import LeanConnection  # noqa: E402
from test_interop import NodeClient  # noqa: E402

from hub_collab.client import CollabClient  # noqa: E402

assert REPO

WORDS = (
    "data frame value result model train test plot index column mean sum group filter "
    "parse load save config path batch step loss rate score label feature sample"
).split()
PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def realistic_source(rng: random.Random, markdown: bool) -> str:
    target = rng.randint(200, 700)
    lines: list[str] = []
    size = 0
    while size < target:
        if markdown:
            line = ("## " if not lines else "") + " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 12)))
        else:
            kind = rng.random()
            a, b, c = (rng.choice(WORDS) for _ in range(3))
            if kind < 0.4:
                line = f"{a}_{b} = {c}({a}, axis={rng.randint(0, 3)})"
            elif kind < 0.7:
                line = f"for {a} in {b}_{c}:\n    {a}.{c}({rng.randint(1, 99)})"
            elif kind < 0.85:
                line = f"# {a} {b} {c}: {' '.join(rng.choice(WORDS) for _ in range(4))}"
            else:
                line = f"print(f\"{a}={{{a}_{b}!r}}\")"
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)[:target]


def realistic_notebook(cells: int, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    out = []
    for i in range(cells):
        markdown = i % 5 == 0
        cell: dict[str, Any] = {"id": f"c{i:05d}", "metadata": {}, "source": realistic_source(rng, markdown)}
        if markdown:
            cell["cell_type"] = "markdown"
        else:
            cell.update(cell_type="code", execution_count=None, outputs=[])
            if i % 3 == 1:
                cell["execution_count"] = i
                cell["outputs"].append({"output_type": "stream", "name": "stdout", "text": "".join(f"{rng.choice(WORDS)}={rng.random():.4f}\n" for _ in range(rng.randint(1, 6)))})
            if i % 7 == 2:
                cell["execution_count"] = i
                cell["outputs"].append({"output_type": "execute_result", "execution_count": i, "metadata": {}, "data": {"text/plain": repr([round(rng.random(), 3) for _ in range(12)])}})
            if i % 25 == 3:
                cell["outputs"].append({"output_type": "display_data", "metadata": {}, "data": {"image/png": PNG_1PX * 20, "text/plain": "<Figure size 640x480>"}})
        out.append(cell)
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}, "cells": out}


def lean_join(url: str, token: str, apply: bool = True) -> dict[str, Any]:
    conn = LeanConnection(url, token, apply=apply)
    conn.join()
    m = conn.marks
    docs = len(conn.synced)
    conn.close()
    return {
        "total": (m["synced"] - m["start"]) * 1000,
        "connected": (m["connected"] - m["start"]) * 1000,
        "welcome": (m["welcome"] - m["start"]) * 1000,
        "index": (m["index"] - m["start"]) * 1000,
        "subscribed": (m["subscribed"] - m["start"]) * 1000,
        "answer": (m["answer"] - m["start"]) * 1000,
        "rx": conn.bytes_received,
        "tx": conn.bytes_sent,
        "docs": docs,
    }


async def node_join(node: NodeClient, url: str, token: str) -> dict[str, Any]:
    try:
        connected = await node.call("connect", url=url, token=token, all=True)
        synced = await node.call("synced", timeout=60)
        state = await node.call("state")
    finally:
        await node.close()
    return {
        "total": synced["since_connect_ms"],
        "connected": float("nan"),
        "welcome": connected["welcome_ms"],
        "index": float("nan"),
        "subscribed": float("nan"),
        "answer": float("nan"),
        "rx": state["bytes"],
        "tx": float("nan"),
        "docs": 1 + 2 * len(state["sources"]),
    }


async def full_join(base_url: str, token: str, nb_id: str) -> dict[str, Any]:
    client = CollabClient(base_url, token)
    conn = client.open(nb_id)
    sent = [0]
    original = conn._send_bytes

    def counting_send(data: bytes) -> None:
        sent[0] += len(data)
        original(data)

    conn._send_bytes = counting_send  # type: ignore[method-assign]
    t0 = time.perf_counter()
    await conn.connect()
    t_welcome = time.perf_counter()
    await conn.wait_for(lambda: "index" in conn.synced_docs, 60)
    t_index = time.perf_counter()
    await conn.synced(60)
    t1 = time.perf_counter()
    docs = len(conn.synced_docs)
    rx = conn.bytes_received
    await conn.close()
    client.close()
    return {
        "total": (t1 - t0) * 1000,
        "connected": float("nan"),
        "welcome": (t_welcome - t0) * 1000,
        "index": (t_index - t0) * 1000,
        "subscribed": float("nan"),
        "answer": float("nan"),
        "rx": rx,
        "tx": sent[0],
        "docs": docs,
    }


class JoinBench:
    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args = args
        self.hub = Hub(root / "hub")
        self.service = BenchService(self.hub, root / "collab")

    @property
    def base_url(self) -> str:
        return self.service.public_url if self.args.via_proxy else self.service.direct_url

    async def measure(self, kind: str, nb_id: str, token: str, *, auth_first: bool = False) -> dict[str, Any]:
        assert self.service.process is not None
        server = psutil.Process(self.service.process.pid)
        auth = None
        if auth_first:
            async with CollabClient(self.base_url, token) as client:
                t = time.perf_counter()
                await client.me()
                auth = (time.perf_counter() - t) * 1000
        cpu0 = server.cpu_times()
        node = await NodeClient.start() if kind == "yjs" else None  # started before the clock
        if node is not None:
            result = await node_join(node, CollabClient(self.base_url, token).ws_url(nb_id), token)
        elif kind in ("lean", "raw"):
            url = CollabClient(self.base_url, token).ws_url(nb_id)
            result = await asyncio.to_thread(lean_join, url, token, kind == "lean")
        else:
            result = await full_join(self.base_url, token, nb_id)
        cpu1 = server.cpu_times()
        result["server_cpu"] = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) * 1000
        result["auth"] = auth
        await asyncio.sleep(0.1)  # the service closes the connection
        return result

    async def run(self) -> list[dict[str, Any]]:
        args = self.args
        self.hub.start()
        self.service.start()
        rows = []
        tokens = [self.hub.token(u) for u in ("alice", "bob", "carol", "ta", "instructor")]
        async with CollabClient(self.base_url, tokens[0]) as client:
            notebooks = {}
            for size in args.sizes:
                content = realistic_notebook(size)
                nb = await client.create_notebook(f"join-{size}", content=content, group="students", mode="0775")
                src = sum(len(c["source"]) for c in content["cells"])
                notebooks[size] = (nb["id"], src)
        for size in args.sizes:
            nb_id, src_bytes = notebooks[size]
            for kind in ("raw", "lean", "yjs", "full"):
                colds, cold_nbs = [], []
                for _ in range(args.repeat):
                    self.service.restart()
                    colds.append(await self.measure(kind, nb_id, tokens[1]))
                    self.service.restart()
                    cold_nbs.append(await self.measure(kind, nb_id, tokens[1], auth_first=True))
                cold, cold_nb = median_result(colds), median_result(cold_nbs)
                if args.profile and kind == "raw" and size == max(args.sizes):
                    await self.profile_cold(nb_id, tokens[1])
                warm = [await self.measure(kind, nb_id, tokens[(2 + i) % len(tokens)]) for i in range(args.warm)]
                rows.append({"size": size, "src": src_bytes, "kind": kind, "cold": cold, "cold nb": cold_nb, "warm": warm})
                print(f"  {size} cells, {kind}: cold {cold['total']:.1f} ms", file=sys.stderr)
        return rows

    async def profile_cold(self, nb_id: str, token: str) -> None:
        """A cold raw join under py-spy (not counted in the table)."""
        self.service.restart()
        assert self.service.process is not None
        profiler = start_py_spy(self.args.py_spy, self.service.process.pid, self.args.profile + ".raw")
        await asyncio.sleep(1.5)  # py-spy attaches
        await self.measure("raw", nb_id, token)
        await asyncio.sleep(0.3)
        profiler.send_signal(2)
        await asyncio.to_thread(profiler.wait, 30)
        summarize_profile(self.args.profile + ".raw", self.args.profile)

    def stop(self) -> None:
        try:
            self.service.stop()
        finally:
            self.hub.stop()


def median_result(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Field by field medians of several measurements."""
    out: dict[str, Any] = {}
    for key in results[0]:
        values = [r[key] for r in results if r[key] is not None]
        out[key] = statistics.median(values) if values else None
    return out


def fmt(v: float | None) -> str:
    return "—" if v is None or v != v else f"{v:.1f}"


def print_table(args: argparse.Namespace, rows: list[dict[str, Any]], mode: str) -> None:
    print()
    print("Join time: open the WebSocket → hold index and every cell's cell:/out: docs (ms)")
    print(f"clients connect {mode}; machine: {psutil.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"cold: median of {args.repeat} restarts; warm: median of {args.warm} later joins")
    print()
    head = (
        f"{'cells':>5} {'client':>6} {'':>7} | {'total':>7} {'welcome':>7} {'subscr':>6} {'answer':>6} {'index':>6} | {'docs':>5} {'received':>10} {'sent':>8} | "
        f"{'svc CPU':>7} {'auth':>5}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        for label, res in (("cold", r["cold"]), ("cold nb", r["cold nb"]), ("warm", None)):
            if res is None:
                warm = r["warm"]
                if not warm:
                    continue
                res = median_result(warm)
            print(
                f"{r['size']:>5} {r['kind']:>6} {label:>7} | {fmt(res['total']):>7} {fmt(res['welcome']):>7} "
                f"{fmt(res['subscribed']):>6} {fmt(res['answer']):>6} {fmt(res['index']):>6} | "
                f"{res['docs']:>5.0f} {res['rx'] / 1000:>8.1f}KB {fmt(res['tx'] / 1000):>6}KB | {fmt(res['server_cpu']):>7} {fmt(res['auth']):>5}"
            )
    print()
    print("welcome: time from the start until welcome arrived (a cold welcome includes resolving the")
    print("token with the Hub and loading the notebook from the store); subscr: until the client had")
    print("sent its one frame subscribing to every doc; answer: until the first frame of the answer")
    print("had arrived (the service answers in frames of ~64 KB, index first); index: until index was held.")
    print("svc CPU: the service's CPU time during the join (10 ms resolution); auth: the REST call")
    print("that resolved the token before a 'cold nb' join (not included in its total).")
    sources = {r["size"]: r["src"] for r in rows}
    print("source bytes per notebook: " + ", ".join(f"{k} cells: {v / 1000:.0f} KB" for k, v in sources.items()))
    for kind in ("raw", "lean", "yjs"):
        for r in rows:
            if r["size"] == 1000 and r["kind"] == kind:
                t = r["cold"]["total"]
                print(f"target: cold 1,000-cell join < 100 ms: {'MET' if t < 100 else 'MISSED'} ({t:.1f} ms, {kind} client)")


async def main_async(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-join-"))
    bench = JoinBench(args, root)
    try:
        rows = await bench.run()
        mode = f"through the proxy ({bench.service.public_url})" if args.via_proxy else f"directly to the service ({bench.service.direct_url}), Hub started by the benchmark"
        print_table(args, rows, mode)
    finally:
        bench.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50,1000", help="comma-separated cell counts")
    parser.add_argument("--warm", type=int, default=5, help="later joins to measure per case")
    parser.add_argument("--repeat", type=int, default=3, help="restarts per cold measurement")
    parser.add_argument("--via-proxy", action="store_true")
    parser.add_argument("--profile", help="py-spy a cold raw join of the largest notebook; a summary to this file")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    args = parser.parse_args()
    args.sizes = [int(x) for x in args.sizes.split(",")]
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
