"""Benchmark: reading a large cell's index, on the event loop and off it (issue 13).

A doc's :class:`~hub_collab.documents.updates.DocIndex` (where its surrogate pairs, types
and item origins are) is read from its whole state on the first write after the
notebook was loaded. That read is pure Python, about a millisecond per KB of a doc
typed a character at a time. The room reads it on its worker thread
(:meth:`RoomDocs.build_index`) for docs of ``INDEX_OFFLOAD_BYTES`` or more.

For cell docs of growing size, every character an item of its own (typed one at a
time, each before the one typed before it, the most items a text of that length can
hold), this prints:

* **on loop**: the read done on the event loop (as before): its time, and the longest
  a 1 ms ticker on the loop waited meanwhile (what every other user waits);
* **off loop**: the read by ``RoomDocs.build_index`` on a worker thread: its time, and
  the ticker's longest wait (the GIL is shared, so the loop still runs a little slower).

    .venv/bin/python benchmarks/bench_index_build.py [--sizes 10000,50000,200000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pycrdt import Doc, Text

from hub_collab.documents.docs import RoomDocs
from hub_collab.documents.updates import DocIndex


def fragmented(chars: int) -> bytes:
    """The state of a cell doc of ``chars`` characters, each an item of its own: typed
    one at a time at the start (a new struct each, linked to the one before; inserting
    at the start keeps the typing linear in time)."""
    doc: Doc[Any] = Doc(client_id=11)
    text = doc.get("source", type=Text)
    for i in range(chars):
        text.insert(0, "abcdefgh"[i % 8])
    return doc.get_update()


async def ticked(work: Any) -> tuple[float, float]:
    """Run ``work`` (a coroutine) with a 1 ms ticker on the loop: its seconds and the
    ticker's longest wait in seconds."""
    worst = 0.0
    stop = False

    async def ticker() -> None:
        nonlocal worst
        while not stop:
            t0 = time.perf_counter()
            await asyncio.sleep(0.001)
            worst = max(worst, time.perf_counter() - t0 - 0.001)

    tick = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.01)
    worst = 0.0
    t0 = time.perf_counter()
    await work
    took = time.perf_counter() - t0
    stop = True
    await tick
    return took, worst


async def on_loop(state: bytes) -> None:
    await asyncio.sleep(0)  # let the ticker take its first tick
    DocIndex.of(state)


async def off_loop(state: bytes, pool: ThreadPoolExecutor) -> None:
    docs = RoomDocs(lambda _name, _state: Doc())
    docs.add_stored({"cell:a": state})
    await docs.build_index("cell:a", pool)
    assert docs.has_index("cell:a")


async def main(sizes: list[int]) -> None:
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    print(f"{'chars':>8} {'doc KB':>8} | {'on loop ms':>10} {'loop waited ms':>14} | {'off loop ms':>11} {'loop waited ms':>14}")
    with ThreadPoolExecutor(1) as pool:
        for chars in sizes:
            state = fragmented(chars)
            on = [await ticked(on_loop(state)) for _ in range(3)]
            off = [await ticked(off_loop(state, pool)) for _ in range(3)]
            # the fastest of three reads, the longest wait over the three
            print(
                f"{chars:>8} {len(state) / 1024:>8.0f} | {min(t for t, _ in on) * 1000:>10.1f} {max(w for _, w in on) * 1000:>14.1f} | "
                f"{min(t for t, _ in off) * 1000:>11.1f} {max(w for _, w in off) * 1000:>14.1f}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,50000,200000", help="characters per doc, comma-separated")
    args = parser.parse_args()
    asyncio.run(main([int(s) for s in args.sizes.split(",")]))
