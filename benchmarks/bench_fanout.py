"""Output fan-out: one cell printing 100,000 lines (about 1.1 MB), N = 1, 10, 50 clients.

Starts its own JupyterHub (with configurable-http-proxy) and hub-collab process, the
same way the tests do (``tests/hubfixtures.py``), and measures for each N:

* the time from sending ``execute`` until every client holds the complete output
  (its ``out:`` doc has the whole text and the execution has ended);
* the CPU time of the hub-collab process during that time, and its peak RSS
  (psutil, sampled every 20 ms);

against the *floor*: the same cell run through plain jupyter_client
(``AsyncKernelManager``) with a single IOPub listener, in this process, in the same
run. Every client's output is checked to be identical to the floor's.

The clients talk to the service directly (``CollabService.direct_url``, not through
the Hub's proxy) and run in this process, so the time includes their own CRDT work.

    .venv/bin/python benchmarks/bench_fanout.py [--clients 1,10,50] [--lines 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from jupyter_client.manager import AsyncKernelManager

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from hubfixtures import CollabService, Hub  # noqa: E402

from hub_collab.client import CollabClient, NotebookConnection  # noqa: E402

USERS = ["alice", "bob", "carol", "ta", "instructor"]


def source(lines: int) -> str:
    return f"for i in range({lines}):\n    print(f'line {{i:06d}}')"


def expected_text(lines: int) -> str:
    return "".join(f"line {i:06d}\n" for i in range(lines))


async def floor(lines: int, repeat: int) -> tuple[float, str]:
    """Plain jupyter_client, one listener: median seconds from execute to idle, and the text."""
    km = AsyncKernelManager(kernel_name="python3")
    await km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        await kc.execute_interactive("1", timeout=60, output_hook=lambda msg: None)  # warm up
        times, text = [], ""
        for _ in range(repeat):
            t0 = time.perf_counter()
            msg_id = kc.execute(source(lines))
            chunks: list[str] = []
            while True:
                msg = await kc.get_iopub_msg(timeout=120)
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "stream":
                    chunks.append(msg["content"]["text"])
                elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    break
            times.append(time.perf_counter() - t0)
            text = "".join(chunks)
        return statistics.median(times), text
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


class Sampler:
    """Peak RSS of a process, sampled on a thread."""

    peak: int

    def __init__(self, proc: psutil.Process, interval: float = 0.02) -> None:
        self.proc, self.interval = proc, interval
        self.peak = proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def stream_text(conn: NotebookConnection, cid: str) -> str:
    return "".join(o.get("text", "") for o in conn.outputs(cid) if o["output_type"] == "stream")


async def fanout(
    collab: CollabService, hub: Hub, n: int, lines: int, want: str, repeat: int
) -> dict[str, Any]:
    clients = {u: CollabClient(collab.direct_url, hub.token(u), request_timeout=120) for u in USERS}
    owner = clients["instructor"]
    nb = await owner.create_notebook(
        f"fanout-{n}",
        {
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
            "cells": [
                {
                    "id": "warm",
                    "cell_type": "code",
                    "source": "1",
                    "metadata": {},
                    "outputs": [],
                    "execution_count": None,
                },
                {
                    "id": "big",
                    "cell_type": "code",
                    "source": source(lines),
                    "metadata": {},
                    "outputs": [],
                    "execution_count": None,
                },
            ],
        },
        group="students",
        mode="0775",
        default_cell_mode="0775",
    )
    nb_id = nb["id"]
    conns: list[NotebookConnection] = []
    try:
        for i in range(n):
            conn = clients[USERS[i % len(USERS)]].open(nb_id)
            await conn.connect()
            conns.append(conn)
        await asyncio.gather(*(c.synced() for c in conns))
        runner = conns[0]
        await runner.execute("warm")  # the kernel is started before the clock starts
        await runner.wait_executed("warm", timeout=120)

        assert collab.process is not None
        proc = psutil.Process(collab.process.pid)
        times, cpus, identical = [], [], True
        with Sampler(proc) as sampler:
            for _ in range(repeat):
                cpu0 = proc.cpu_times()
                wall0 = time.time()
                t0 = time.perf_counter()
                await runner.execute("big")

                async def complete(conn: NotebookConnection, wall0: float = wall0) -> None:
                    def done() -> bool:
                        st = conn.out_state("big")
                        return (
                            (st.get("started_at") or 0) >= wall0
                            and st.get("status") == "ok"
                            and st.get("execution_state") == "idle"
                            and len(stream_text(conn, "big")) >= len(want)
                        )

                    await conn.wait_for(done, timeout=300)

                await asyncio.gather(*(complete(c) for c in conns))
                times.append(time.perf_counter() - t0)
                cpu1 = proc.cpu_times()
                cpus.append((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system))
                identical = identical and all(stream_text(c, "big") == want for c in conns)
        return {
            "n": n,
            "seconds": statistics.median(times),
            "cpu": statistics.median(cpus),
            "peak_rss_mb": sampler.peak / 1e6,
            "identical": identical,
            "frames_per_client": sum(c.frames_received for c in conns) / n,
        }
    finally:
        for c in conns:
            await c.close()
        await owner.request("DELETE", f"api/notebooks/{nb_id}/kernel")
        for c in clients.values():
            c.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", default="1,10,50")
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per measurement (the median is shown)"
    )
    args = parser.parse_args()
    counts = [int(x) for x in args.clients.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        hub = Hub(Path(tmp) / "hub")
        hub.start()
        collab = CollabService(hub, Path(tmp) / "collab")
        try:
            collab.start()
            floor_s, kernel_text = await floor(args.lines, args.repeat)
            want = expected_text(args.lines)
            assert kernel_text == want, "the kernel's own output differs from what was expected"
            print(
                f"cell: {args.lines} lines, {len(want) / 1e6:.2f} MB of output; median of {args.repeat} runs"
            )
            print(f"floor (plain jupyter_client, 1 listener): {floor_s:.3f} s")
            print(
                f"{'N':>4} {'seconds':>8} {'x floor':>8} {'svc CPU s':>10} {'peak RSS MB':>12} {'frames/client':>14} identical"
            )
            for n in counts:
                r = await fanout(collab, hub, n, args.lines, want, args.repeat)
                print(
                    f"{r['n']:>4} {r['seconds']:>8.3f} {r['seconds'] / floor_s:>8.2f} {r['cpu']:>10.2f}"
                    f" {r['peak_rss_mb']:>12.1f} {r['frames_per_client']:>14.0f} {r['identical']}"
                )
        finally:
            collab.stop()
            hub.stop()


if __name__ == "__main__":
    asyncio.run(main())
