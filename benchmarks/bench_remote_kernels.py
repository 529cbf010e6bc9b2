"""Benchmark: kernels behind jupyter_server's kernel API against local child-process kernels.

For ``local`` (jupyter_client, :class:`LocalProvider`), ``jupyter_server`` (the
``v1.kernel.websocket.jupyter.org`` protocol) and ``kernel_gateway`` (forced onto the
JSON protocol), each started on a free 127.0.0.1 port as the tests do, with IOPub
rate limits off:

* execute to first output: ``print(1)``, p50 and max over ``--runs`` runs;
* 100,000 printed lines (``print(i)``: ipykernel batches them): time to the idle
  status, lines/s, and whether every line arrived once, in order;
* a flood of ``--tiny`` stream messages, one a line, sent as fast as the kernel can
  (straight through its session): time, messages/s, and how many arrived.

    .venv/bin/python benchmarks/bench_remote_kernels.py [--runs 30] [--tiny 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_remote_kernels import Sink, _start_server  # noqa: E402

from hub_collab.kernels.provider import KernelRequest, LocalProvider  # noqa: E402

TINY = (
    "import sys\nout = sys.stdout\nfor i in range({n}):\n"
    "    out.session.send(out.pub_thread, 'stream', content={{'name': 'stdout', 'text': f'{{i}}\\n'}},"
    " parent=out.parent_header, ident=out.topic)"
)


class TimedSink(Sink):
    """A :class:`Sink` that wakes a waiter on the first stream message."""

    def __init__(self) -> None:
        super().__init__()
        self.streamed = asyncio.Event()

    def on_iopub(self, msg: dict[str, Any]) -> None:
        super().on_iopub(msg)
        if msg["msg_type"] == "stream":
            self.streamed.set()


async def measure(name: str, conn: Any, runs: int, tiny: int) -> dict[str, str]:
    sink = TimedSink()
    conn.listen(sink)
    await sink.run(conn, "pass")
    latencies = []
    for _ in range(runs):
        sink.streamed.clear()
        t0 = time.perf_counter()
        msg_id = conn.execute("print(1)")
        await sink.streamed.wait()
        latencies.append((time.perf_counter() - t0) * 1000)
        await sink.until(partial(sink.idle, msg_id))
    t0 = time.perf_counter()
    msg_id = await sink.run(conn, "for i in range(100_000):\n    print(i)", timeout=120)
    flood = time.perf_counter() - t0
    complete = [int(n) for n in sink.text(msg_id).split()] == list(range(100_000))
    t0 = time.perf_counter()
    msg_id = conn.execute(TINY.format(n=tiny))
    # the idle status may be dropped with the rest: the shell reply is not
    await sink.until(lambda: sink.reply(msg_id), timeout=120)
    await asyncio.sleep(0.5)
    got = len(sink.text(msg_id).split())
    tiny_s = time.perf_counter() - t0 - 0.5
    return {
        "kernel": name,
        "first output p50 ms": f"{statistics.median(latencies):.1f}",
        "max ms": f"{max(latencies):.1f}",
        "100k lines s": f"{flood:.2f}",
        "lines/s": f"{100_000 / flood:,.0f}",
        "complete": "yes" if complete else "NO",
        f"{tiny} msgs arrived": f"{got} ({100 * got / tiny:.0f}%)",
        "msgs/s": f"{got / tiny_s:,.0f}",
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--tiny", type=int, default=20_000)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        request = KernelRequest(
            kernel_name="python3", user="alice", cwd=str(root / "cwd"), runtime_dir=str(root / "rt")
        )
        conn: Any = await LocalProvider().start(request)
        try:
            rows.append(await measure("local", conn, args.runs, args.tiny))
        finally:
            await conn.shutdown(now=True)
        for kind in ("jupyter_server", "kernel_gateway"):
            (root / kind).mkdir()
            server = _start_server(kind, root / kind)
            try:
                conn = await server.provider().start(request)
                try:
                    rows.append(
                        await measure(
                            f"{kind} ({conn.protocol or 'json'})", conn, args.runs, args.tiny
                        )
                    )
                finally:
                    await conn.shutdown(now=True)
            finally:
                server.process.stop()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    keys = list(rows[0])
    widths = [max(len(k), *(len(r[k]) for r in rows)) for k in keys]
    print(" | ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)))
    for row in rows:
        print(" | ".join(row[k].ljust(w) for k, w in zip(keys, widths, strict=True)))


if __name__ == "__main__":
    asyncio.run(main())
