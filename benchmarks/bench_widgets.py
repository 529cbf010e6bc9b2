"""Benchmark: one user drags an ``interact`` slider; how soon 50 other clients see it.

Runs a real JupyterHub (with configurable-http-proxy) and the hub-collab service as a
subprocess with ``local`` kernels (a real ipykernel with ipywidgets), exactly as the
tests do (tests/hubfixtures.py); every client connects through the proxy with a Hub
API token, all in this process (one clock).

The notebook's one cell is an ``interact`` over an ``IntSlider``: every value makes
the kernel print ``square <x*x>`` into the interact's Output widget. alice drags: she
sends ``--updates`` ``widget_update`` commands of values 1, 2, 3... at ``--rate`` a
second (the page sends at most 20 a second), as the page would. ``--clients`` readers
(users cycled) follow. Figures, p50/p95/max over updates × readers:

* **value**: from alice's send until a reader's doc holds that slider value (or a later
  one): the service applies the change itself, no kernel in the way;
* **output**: from the send until a reader's Output widget shows that value's output (or
  a later one's): the kernel round trip plus the service writing the output into the doc;
* **kernel round trip** apart: from the send until alice's own client sees the output
  (one client, no fan-out), and until her ``ack``.

    .venv/bin/python benchmarks/bench_widgets.py [--clients 50] [--updates 100] [--rate 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from bench_chat import pct  # noqa: E402
from hubfixtures import EXTRA_USERS, USERS, CollabService, Hub  # noqa: E402
from pycrdt import Map  # noqa: E402

from hub_collab.client import CollabClient, NotebookConnection  # noqa: E402
from hub_collab.documents.notebook import out_doc  # noqa: E402
from hub_collab.documents.outputs import widgets_root  # noqa: E402

SOURCE = """\
import ipywidgets as w
from ipywidgets import interact

@interact(x=w.IntSlider(value=0, min=0, max=100000))
def square(x):
    print('square', x * x)
"""


def fmt(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    if not ms:
        return "(none)"
    return f"p50 {pct(ms, 50):7.1f} ms   p95 {pct(ms, 95):7.1f} ms   max {max(ms):7.1f} ms   (n={len(ms)})"


class Follower:
    """What one client saw of the slider's value and the Output widget's output, when."""

    def __init__(self, conn: NotebookConnection, slider: str, output: str, sent: dict[int, float], progress: asyncio.Event) -> None:
        self.conn, self.slider, self.output, self.sent, self.progress = conn, slider, output, sent, progress
        self.value_upto = self.output_upto = 0
        self.value_lat: list[float] = []
        self.output_lat: list[float] = []
        conn.listeners.append(self.on_frame)

    def _state(self, model_id: str) -> dict[str, Any]:
        entry = widgets_root(self.conn.docs[out_doc("c0")]).get(model_id)
        state = entry.get("state") if isinstance(entry, Map) else None
        return dict(state.to_py() or {}) if isinstance(state, Map) else {}

    def on_frame(self, kind: str, data: Any) -> None:
        if kind != "binary":
            return
        now = time.perf_counter()
        value = int(self._state(self.slider).get("value") or 0)
        self.value_upto = self._record(self.value_upto, value, now, self.value_lat)
        outputs = self._state(self.output).get("outputs") or []
        text = "".join(str(o.get("text", "")) for o in outputs if isinstance(o, dict))
        if text.startswith("square "):
            shown = round(int(text.split()[1]) ** 0.5)
            self.output_upto = self._record(self.output_upto, shown, now, self.output_lat)
        self.progress.set()

    def _record(self, upto: int, seen: int, now: float, into: list[float]) -> int:
        for i in range(upto + 1, seen + 1):
            t = self.sent.get(i)
            if t is not None:
                into.append(now - t)
        return max(upto, seen)


async def bench(hub: Hub, url: str, n_clients: int, n_updates: int, rate: float) -> None:
    users = USERS + EXTRA_USERS
    alice_client = CollabClient(url, hub.token("alice"), request_timeout=120)
    nb = (
        await alice_client.create_notebook(
            "bench widgets",
            {
                "nbformat": 4,
                "nbformat_minor": 5,
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
                "cells": [{"id": "c0", "cell_type": "code", "source": SOURCE, "metadata": {}, "outputs": [], "execution_count": None}],
            },
            mode="0755",
            default_cell_mode="0755",
        )
    )["id"]
    alice = alice_client.open(nb)
    await alice.connect()
    await alice.synced()
    await alice.execute("c0")
    await alice.wait_executed("c0", timeout=120)
    names = lambda: {m["model_name"]: k for k, m in alice.widgets("c0").items()}  # noqa: E731
    await alice.wait_for(lambda: {"IntSliderModel", "OutputModel"} <= set(names()), timeout=60)
    slider, output = names()["IntSliderModel"], names()["OutputModel"]

    sent: dict[int, float] = {}
    clients = [CollabClient(url, hub.token(users[i % len(users)])) for i in range(n_clients)]
    conns: list[NotebookConnection] = []
    t0 = time.perf_counter()
    for client in clients:
        conn = client.open(nb)
        await conn.connect()
        conns.append(conn)
    await asyncio.gather(*(c.wait_for(lambda c=c: out_doc("c0") in c.synced_docs, timeout=60) for c in conns))
    print(f"  {n_clients} readers connected in {time.perf_counter() - t0:.2f} s")
    progress = asyncio.Event()
    followers = [Follower(c, slider, output, sent, progress) for c in conns]
    own = Follower(alice, slider, output, sent, progress)

    acks: list[float] = []
    interval = 1.0 / rate
    start = time.perf_counter()
    for i in range(1, n_updates + 1):
        due = start + (i - 1) * interval
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        t = sent[i] = time.perf_counter()
        await alice.widget_update("c0", slider, {"value": i})
        acks.append(time.perf_counter() - t)

    def caught_up() -> bool:
        return all(f.output_upto >= n_updates and f.value_upto >= n_updates for f in followers) and own.output_upto >= n_updates

    deadline = time.perf_counter() + 60
    while not caught_up() and time.perf_counter() < deadline:
        progress.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(progress.wait(), max(0.01, deadline - time.perf_counter()))
    if not caught_up():
        print("  (not every reader caught up within 60 s)")
    print(f"  {n_updates} slider updates at {rate:g}/s, {n_clients} readers; load average {os.getloadavg()[0]:.2f}")
    print(f"  value reaching each reader (no kernel):         {fmt([x for f in followers for x in f.value_lat])}")
    print(f"  output reaching each reader (kernel + fan-out): {fmt([x for f in followers for x in f.output_lat])}")
    print(f"  kernel round trip, alice's own client:          {fmt(own.output_lat)}")
    print(f"  alice's ack:                                    {fmt(acks)}")
    print("  (the readers share this one Python process: the spread is partly this process")
    print("   reading 50 sockets in turn, not the service)")
    for conn in [*conns, alice]:
        await conn.close()
    for client in [*clients, alice_client]:
        client.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20.0, help="slider updates a second (the page: at most 20)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-widgets-"))
    hub = Hub(root / "hub")
    collab = CollabService(hub, root / "collab", extra_args=["--log-level=WARN"])
    print("setup: a real JupyterHub + configurable-http-proxy; hub-collab as a subprocess (SQLite),")
    print("       local ipykernel with ipywidgets; clients in this process, through the proxy")
    with contextlib.ExitStack() as started:  # stops what was started, in reverse
        started.callback(shutil.rmtree, root, ignore_errors=True)
        hub.start()
        started.callback(hub.stop)
        for user in EXTRA_USERS:
            hub.create_user(user)
        collab.start()
        started.callback(collab.stop)
        await bench(hub, collab.public_url, args.clients, args.updates, args.rate)

if __name__ == "__main__":
    asyncio.run(main())
