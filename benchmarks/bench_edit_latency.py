"""Benchmark: edit latency, server CPU per keystroke and peak RSS with N clients.

The workload of issue 2 (the same as the public reference's): N = 1, 10, 50 clients
on one notebook of 50 cells; one of them (the writer) types 200 single-character
edits into one cell, 20 ms apart; for each edit, the time until *every other* client
has applied it (p50/p95/p99/max over the 200 edits). Server CPU per keystroke is the
service process's CPU time (user+sys, psutil) from the first keystroke until the last
one has reached every client, divided by 200; peak RSS is the process's high-water mark
(VmHWM) at the end of the run.

A real JupyterHub and hub-collab are started the way ``tests/hubfixtures.py`` does it
(its classes are reused), on free 127.0.0.1 ports; the clients connect straight to the
service (``--via-proxy`` sends them through configurable-http-proxy instead), with
Hub API tokens. The service is restarted before each N (a fresh process: clean CPU
and RSS figures). Clients run in separate processes from the service: the writer in
this process (a :class:`~hub_collab.client.NotebookConnection`), the other N-1 clients
in ``--procs`` worker processes. With ``--client lean`` (the default) the workers use
:mod:`leanws` (blocking sockets, one thread, a hand-written frame parser, pycrdt
``apply_update``), so that 49 receivers on a 2-core machine measure the service rather
than the client library; ``--client full`` uses ``NotebookConnection`` (tornado +
asyncio) for every receiver. Timestamps are ``time.monotonic_ns()`` (CLOCK_MONOTONIC,
shared by all processes on the machine).

    .venv/bin/python benchmarks/bench_edit_latency.py [--clients 1,10,50] [--client lean|full]
        [--procs 2] [--edits 200] [--interval 0.02] [--cells 50] [--via-proxy]
        [--metrics on|off|both] [--repeat 1] [--profile py-spy-output.txt]

``--metrics both`` measures every N with Prometheus metrics on and off
(``HubCollab.metrics_enabled``), ``--repeat`` times each, alternating which goes first,
and prints the median server CPU per keystroke of each and the overhead of metrics.
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

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from hubfixtures import CollabService, Hub  # noqa: E402

from hub_collab.client import CollabClient, NotebookConnection  # noqa: E402
from hub_collab.documents.notebook import cell_doc  # noqa: E402

#: users whose tokens the clients use, round robin (the writer is the first)
USERS = ["alice", "bob", "carol", "ta", "instructor", "dave", "eve"]
WORKER_DEADLINE = 120.0


def sample_notebook(cells: int) -> dict[str, Any]:
    out = []
    for i in range(cells):
        source = f"# cell {i}\n" + "".join(f"x_{i}_{k} = compute({k}, scale={i})\n" for k in range(8))
        out.append({"id": f"c{i:04d}", "cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": source})
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": out}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def vm_hwm(pid: int) -> int:
    """Peak resident set size of ``pid`` in bytes (Linux ``VmHWM``)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return psutil.Process(pid).memory_info().rss


# -- worker processes: the receiving clients ------------------------------------------------


def worker_main() -> None:
    """Join ``conns`` clients, print ``ready``, record when each edit is applied, print times."""
    cfg = json.loads(sys.stdin.readline())
    if cfg["client"] == "lean":
        result = lean_receivers(cfg)
    else:
        result = asyncio.run(full_receivers(cfg))
    print(json.dumps(result), flush=True)


def lean_receivers(cfg: dict[str, Any]) -> dict[str, Any]:
    from leanws import LeanConnection

    cell, base, edits = cfg["cell"], cfg["base_len"], cfg["edits"]
    conns = []
    for token in cfg["tokens"]:
        conn = LeanConnection(cfg["ws_url"], token)
        conn.join()
        conns.append(conn)
    print(json.dumps({"ready": True}), flush=True)
    name = cell_doc(cell)
    times: list[list[int]] = [[0] * edits for _ in conns]
    seen = [0] * len(conns)
    sel = selectors.DefaultSelector()
    for k, conn in enumerate(conns):
        assert conn.sock is not None
        conn.sock.setblocking(False)
        sel.register(conn.sock, selectors.EVENT_READ, k)
    remaining = len(conns)
    deadline = time.monotonic() + WORKER_DEADLINE
    while remaining and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1.0):
            k = key.data
            conn = conns[k]
            try:
                messages = conn.recv_some()
            except BlockingIOError:
                continue
            for opcode, payload in messages:
                if name not in conn.handle(opcode, payload):
                    continue
                now = time.monotonic_ns()
                n = min(conn.source_length(cell) - base, edits)
                row = times[k]
                while seen[k] < n:
                    row[seen[k]] = now
                    seen[k] += 1
                if seen[k] == edits:
                    remaining -= 1
    for conn in conns:
        conn.close()
    return {"times": times, "complete": remaining == 0}


async def full_receivers(cfg: dict[str, Any]) -> dict[str, Any]:
    cell, base, edits = cfg["cell"], cfg["base_len"], cfg["edits"]
    clients = [CollabClient(cfg["base_url"], token) for token in cfg["tokens"]]
    conns: list[NotebookConnection] = []
    for client in clients:
        conn = client.open(cfg["nb"])
        await conn.connect()
        await conn.synced()
        conns.append(conn)
    times: list[list[int]] = [[0] * edits for _ in conns]
    seen = [0] * len(conns)
    done = asyncio.Event()
    remaining = [len(conns)]

    def listener_for(k: int, conn: NotebookConnection) -> Any:
        doc = conn.docs[cell_doc(cell)]
        from pycrdt import Text

        text = doc.get("source", type=Text)

        def on(kind: str, data: Any) -> None:
            if kind != "binary":
                return
            now = time.monotonic_ns()
            n = min(len(text) - base, edits)
            row = times[k]
            while seen[k] < n:
                row[seen[k]] = now
                seen[k] += 1
                if seen[k] == edits:
                    remaining[0] -= 1
                    if not remaining[0]:
                        done.set()

        return on

    for k, conn in enumerate(conns):
        conn.listeners.append(listener_for(k, conn))
    print(json.dumps({"ready": True}), flush=True)
    with contextlib.suppress(TimeoutError):  # past the deadline the worker reports what it has
        await asyncio.wait_for(done.wait(), WORKER_DEADLINE)
    for conn in conns:
        await conn.close()
    for client in clients:
        client.close()
    return {"times": times, "complete": remaining[0] == 0}


# -- the orchestrator --------------------------------------------------------------------------


class BenchService(CollabService):
    """The tests' service, without their 1-second group polling (the default interval)."""

    def argv(self) -> list[str]:
        return [a for a in super().argv() if not a.startswith("--HubCollab.group_refresh_interval")]


class Bench:
    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args = args
        self.root = root
        self.hub = Hub(root / "hub")
        self.service = BenchService(self.hub, root / "collab", extra_args=["--log-level=WARN"])
        self.base_args = list(self.service.extra_args)

    def set_metrics(self, on: bool) -> None:
        """Metrics on or off from the next (re)start of the service."""
        self.service.extra_args = [*self.base_args, f"--HubCollab.metrics_enabled={on}"]

    @property
    def base_url(self) -> str:
        return self.service.public_url if self.args.via_proxy else self.service.direct_url

    def start(self) -> None:
        self.hub.start()
        self.service.start()

    def stop(self) -> None:
        try:
            self.service.stop()
        finally:
            self.hub.stop()

    async def make_notebook(self) -> tuple[str, dict[str, int]]:
        """The notebook's id and the length of each cell's source (each run types into its own cell)."""
        content = sample_notebook(self.args.cells)
        async with CollabClient(self.base_url, self.hub.token(USERS[0])) as client:
            nb = await client.create_notebook("bench-edit", content=content, mode="0777")
        return nb["id"], {c["id"]: len(c["source"]) for c in content["cells"]}

    async def run(self, n: int, nb_id: str, cell: str, base: int) -> dict[str, Any]:
        args = self.args
        self.service.restart()
        assert self.service.process is not None
        server = psutil.Process(self.service.process.pid)
        writer_client = CollabClient(self.base_url, self.hub.token(USERS[0]))
        receivers = n - 1
        procs = max(1, min(args.procs, receivers)) if receivers else 0
        workers: list[subprocess.Popen[str]] = []
        for w in range(procs):
            tokens = [self.hub.token(USERS[1 + (i % (len(USERS) - 1))]) for i in range(w, receivers, procs)]
            cfg = {
                "client": args.client,
                "ws_url": writer_client.ws_url(nb_id),
                "base_url": self.base_url,
                "nb": nb_id,
                "tokens": tokens,
                "cell": cell,
                "base_len": base,
                "edits": args.edits,
            }
            workers.append(spawn_worker(cfg))
        t_join = time.perf_counter()
        for proc in workers:
            assert proc.stdout is not None
            line = await asyncio.to_thread(proc.stdout.readline)
            if not json.loads(line or "{}").get("ready"):
                raise RuntimeError(f"a worker failed to join (exit {proc.poll()})")
        join_all = time.perf_counter() - t_join
        profiler = None
        sends: list[int] = []
        async with writer_client.open(nb_id) as conn:
            await conn.synced()
            name = cell_doc(cell)
            assert len(conn.docs[name].get("source", type=_text())) == base
            await asyncio.sleep(0.5)
            idle0, idle_t0 = server.cpu_times(), time.monotonic()
            await asyncio.sleep(1.0)
            idle1, idle_t1 = server.cpu_times(), time.monotonic()
            idle_rate = (idle1.user + idle1.system - idle0.user - idle0.system) / (idle_t1 - idle_t0)
            if args.profile and n == args.clients[-1]:
                profiler = start_py_spy(args.py_spy, server.pid, args.profile + ".raw")
                await asyncio.sleep(1.0)
            cpu0, t0 = server.cpu_times(), time.monotonic()
            start = time.monotonic_ns()
            for i in range(args.edits):
                target = start + int(i * args.interval * 1e9)
                delay = (target - time.monotonic_ns()) / 1e9
                if delay > 0:
                    await asyncio.sleep(delay)
                sends.append(time.monotonic_ns())
                conn.edit(cell, base + i, insert=chr(ord("a") + i % 26))
            results = []
            for proc in workers:
                assert proc.stdout is not None
                line = await asyncio.to_thread(proc.stdout.readline)
                results.append(json.loads(line))
            cpu1, t1 = server.cpu_times(), time.monotonic()
            await conn.sync()
        for proc in workers:
            proc.wait(30)
        if profiler is not None:
            profiler.send_signal(2)
            profiler.wait(30)
        writer_client.close()
        cpu = cpu1.user + cpu1.system - cpu0.user - cpu0.system
        elapsed = t1 - t0
        out: dict[str, Any] = {
            "n": n,
            "join_all_s": join_all,
            "cpu_ms_per_key": cpu * 1000 / args.edits,
            "sys_ms_per_key": (cpu1.system - cpu0.system) * 1000 / args.edits,
            "cpu_net_ms_per_key": max(0.0, cpu - idle_rate * elapsed) * 1000 / args.edits,
            "idle_cpu_pct": idle_rate * 100,
            "rss_peak_mb": vm_hwm(server.pid) / 1e6,
            "rss_end_mb": server.memory_info().rss / 1e6,
            "complete": all(r["complete"] for r in results),
            "metrics": next((a.split("=", 1)[1] for a in self.service.extra_args if a.startswith("--HubCollab.metrics_enabled=")), "True"),
        }
        if receivers:
            rows = [row for r in results for row in r["times"]]
            per_edit = []
            pairs = []
            for i, sent in enumerate(sends):
                got = [row[i] for row in rows if row[i]]
                if len(got) < len(rows):
                    continue  # an edit some client never saw: reported by 'complete'
                per_edit.append((max(got) - sent) / 1e6)
                pairs.extend((g - sent) / 1e6 for g in got)
            out.update(
                {
                    "p50": percentile(per_edit, 50),
                    "p95": percentile(per_edit, 95),
                    "p99": percentile(per_edit, 99),
                    "max": max(per_edit),
                    "one_p50": percentile(pairs, 50),
                    "one_p99": percentile(pairs, 99),
                    "measured": len(per_edit),
                }
            )
        return out


def spawn_worker(cfg: dict[str, Any]) -> subprocess.Popen[str]:
    """A worker process for some receiving clients; ``cfg`` goes to its stdin."""
    proc = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(cfg) + "\n")
    proc.stdin.flush()
    return proc


def start_py_spy(py_spy: str, pid: int, output: str) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` while it holds the GIL (CPU in Python), every thread, raw stacks."""
    argv = [py_spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "1000", "--threads", "--gil", "--nonblocking", "--output", output]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _text() -> Any:
    from pycrdt import Text

    return Text


def print_table(args: argparse.Namespace, rows: list[dict[str, Any]], mode: str) -> None:
    print()
    print(f"Edit latency: {args.edits} single-character edits, {args.interval * 1000:.0f} ms apart, one notebook of {args.cells} cells")
    print(f"clients connect {mode}; receivers: {args.client} client in {args.procs} worker process(es)")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other work on the machine adds noise)")
    print("latency = time from the writer's edit until EVERY other client has applied it (ms)")
    print()
    head = f"{'N':>3} {'metrics':>7} | {'p50':>6} {'p95':>6} {'p99':>6} {'max':>6} | {'1-client p50':>12} {'p99':>6} | {'CPU/key':>8} {'net':>6} {'sys':>5} | {'peak RSS':>9} | ok"
    print(head)
    print("-" * len(head))
    for r in rows:
        if "p50" in r:
            lat = f"{r['p50']:6.2f} {r['p95']:6.2f} {r['p99']:6.2f} {r['max']:6.2f} | {r['one_p50']:12.2f} {r['one_p99']:6.2f}"
        else:
            lat = f"{'—':>6} {'—':>6} {'—':>6} {'—':>6} | {'—':>12} {'—':>6}"
        print(f"{r['n']:>3} {'on' if r['metrics'] == 'True' else 'off':>7} | {lat} | {r['cpu_ms_per_key']:6.2f}ms {r['cpu_net_ms_per_key']:6.2f} {r['sys_ms_per_key']:5.2f} | {r['rss_peak_mb']:6.1f} MB | {'yes' if r['complete'] else 'NO'}")
    print()
    print("CPU/key: service CPU (user+sys) over the typing / edits; net: minus its idle CPU rate;")
    print("sys: the kernel part of CPU/key (socket writes, SQLite commits).")
    print("1-client: over all (edit, receiver) pairs. N=1 has no other client: no latency.")
    modes = {r["metrics"] for r in rows}
    if len(modes) == 2:
        print()
        print("Metrics overhead: median server CPU per keystroke (ms), metrics on / off")
        for n in sorted({r["n"] for r in rows}):
            on = [r for r in rows if r["n"] == n and r["metrics"] == "True"]
            off = [r for r in rows if r["n"] == n and r["metrics"] == "False"]
            for key, what in (("cpu_ms_per_key", "CPU/key"), ("cpu_net_ms_per_key", "net")):
                a = statistics.median(r[key] for r in on)
                b = statistics.median(r[key] for r in off)
                print(f"  N={n:<3} {what:>7}: on {a:.3f}  off {b:.3f}  overhead {100 * (a - b) / b:+.1f}% ({len(on)} + {len(off)} runs)")
    last = [r for r in rows if r["n"] == 50]
    if last:
        r = last[0]
        p99_ok = r.get("p99", 1e9) <= 5.7
        cpu_ok = r["cpu_ms_per_key"] <= 2.25
        print(f"targets at N=50: p99 <= 5.7 ms: {'MET' if p99_ok else 'MISSED'} ({r.get('p99', float('nan')):.2f} ms); "
              f"CPU/key <= 2.25 ms: {'MET' if cpu_ok else 'MISSED'} ({r['cpu_ms_per_key']:.2f} ms)")


async def main_async(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-edit-"))
    bench = Bench(args, root)
    try:
        bench.start()
        nb_id, lengths = await bench.make_notebook()
        cells = list(lengths)
        rows = []
        settings = {"on": [True], "off": [False], "both": [True, False]}[args.metrics]
        runs = 0
        for n in args.clients:
            for rep in range(args.repeat):
                # alternate which setting goes first: drift in the machine's load cancels out
                for on in settings if rep % 2 == 0 else settings[::-1]:
                    cell = cells[(len(cells) // 2 + runs) % len(cells)]
                    runs += 1
                    if lengths[cell] + args.edits > 2_000_000:
                        raise SystemExit("too many edits for the notebook's cells")
                    bench.set_metrics(on)
                    row = await bench.run(n, nb_id, cell, lengths[cell])
                    lengths[cell] += args.edits
                    print(f"  N={n} metrics {'on' if on else 'off'}: done (all clients joined in {row['join_all_s']:.2f} s,"
                          f" {row['cpu_ms_per_key']:.3f} ms CPU/key)", file=sys.stderr)
                    rows.append(row)
        mode = f"through the proxy ({bench.service.public_url})" if args.via_proxy else f"directly to the service ({bench.service.direct_url}), Hub started by the benchmark"
        print_table(args, rows, mode)
        if args.profile:
            summarize_profile(args.profile + ".raw", args.profile)
    finally:
        bench.stop()
        shutil.rmtree(root, ignore_errors=True)


def summarize_profile(raw: str, out: str, top: int = 40) -> None:
    """Fold py-spy's raw stacks into self and inclusive shares per function."""
    self_time: dict[str, int] = {}
    incl: dict[str, int] = {}
    threads: dict[str, int] = {}
    total = 0
    try:
        lines = Path(raw).read_text().splitlines()
    except OSError:
        print(f"(no profile written to {raw})")
        return
    for line in lines:
        stack, _, count_s = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_s)
        parts = stack.split(";")
        thread = parts[0] if parts[0].startswith("thread ") else ""
        frames = [_frame_name(f) for f in parts[1 if thread else 0 :]]
        if not frames:
            continue
        total += count
        threads[thread] = threads.get(thread, 0) + count
        self_time[frames[-1]] = self_time.get(frames[-1], 0) + count
        for f in set(frames):
            incl[f] = incl.get(f, 0) + count
    with open(out, "w") as f:
        f.write(f"py-spy samples of the service (non-idle, all threads): {total}\n\nby thread:\n")
        for name, c in sorted(threads.items(), key=lambda kv: -kv[1]):
            f.write(f"{100 * c / total:6.1f}%  {name}\n")
        f.write("\nself time:\n")
        for name, c in sorted(self_time.items(), key=lambda kv: -kv[1])[:top]:
            f.write(f"{100 * c / total:6.1f}%  {name}\n")
        f.write("\ninclusive time:\n")
        for name, c in sorted(incl.items(), key=lambda kv: -kv[1])[:top]:
            f.write(f"{100 * c / total:6.1f}%  {name}\n")
    print(f"profile of the service: {out} (raw stacks: {raw})")


def _frame_name(frame: str) -> str:
    """``func (path/to/file.py:12)`` → ``func (file.py)``."""
    if " (" not in frame:
        return frame
    func, _, where = frame.partition(" (")
    return f"{func} ({where.split(':')[0].rsplit('/', 1)[-1]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--clients", default="1,10,50", help="comma-separated values of N")
    parser.add_argument("--client", choices=["lean", "full"], default="lean")
    parser.add_argument("--procs", type=int, default=2, help="worker processes for the receiving clients")
    parser.add_argument("--edits", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--cells", type=int, default=50)
    parser.add_argument("--via-proxy", action="store_true", help="connect through configurable-http-proxy")
    parser.add_argument("--metrics", choices=["on", "off", "both"], default="on", help="Prometheus metrics of the service (both: compare)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per N (and per metrics setting)")
    parser.add_argument("--profile", help="run py-spy on the service at the largest N; write a summary to this file")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    args = parser.parse_args()
    if args.worker:
        worker_main()
        return
    args.clients = [int(x) for x in args.clients.split(",")]
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
