"""Benchmark: a real ipykernel printing 100,000 lines, with and without OutputWriter.

(a) plain jupyter_client, one IOPub listener: time from execute to the idle status.
(b) the same messages fed to an OutputWriter flushed every 20 ms: time from execute to the final
    flush, number and bytes of the doc updates, and a check that the doc text (on the server
    doc and on a remote doc fed only with the updates) equals what the kernel printed.

Each is run for ``print(i)`` (ipykernel batches stdout itself) and ``print(i, flush=True)``
(one IOPub message per line: the flood case). A synthetic part measures ``handle``/``flush``
alone on 100,000 tiny messages.

    .venv/bin/python benchmarks/bench_outputs.py [--lines 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from pycrdt import Array, Doc, TransactionEvent

from hub_collab.kernels.outputs import OutputWriter, outputs_to_nbformat

FLUSH_INTERVAL = 0.02


async def run_plain(kc: Any, code: str) -> tuple[float, str, int]:
    t0 = time.perf_counter()
    msg_id = kc.execute(code)
    chunks: list[str] = []
    n = 0
    while True:
        msg = await kc.get_iopub_msg(timeout=300)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        n += 1
        if msg["msg_type"] == "stream":
            chunks.append(msg["content"]["text"])
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    elapsed = time.perf_counter() - t0
    await _drain_reply(kc, msg_id)
    return elapsed, "".join(chunks), n


async def _drain_reply(kc: Any, msg_id: str) -> dict[str, Any]:
    while True:
        reply: dict[str, Any] = await kc.get_shell_msg(timeout=300)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


async def run_writer(kc: Any, code: str) -> dict[str, Any]:
    doc: Doc[Any] = Doc()
    remote: Doc[Any] = Doc()
    sizes: list[int] = []

    def on_update(event: TransactionEvent) -> None:
        sizes.append(len(event.update))
        remote.apply_update(event.update)

    sub = doc.observe(on_update)
    writer = OutputWriter(doc)
    done = asyncio.Event()
    flush_time = 0.0
    n_flushes = 0

    async def flusher() -> None:
        nonlocal flush_time, n_flushes
        while not done.is_set():
            await asyncio.sleep(FLUSH_INTERVAL)
            if writer.pending:
                t = time.perf_counter()
                writer.flush()
                flush_time += time.perf_counter() - t
                n_flushes += 1

    t0 = time.perf_counter()
    msg_id = kc.execute(code)
    writer.begin(executed_by="bench", queued=False)
    writer.start()
    task = asyncio.create_task(flusher())
    chunks: list[str] = []
    handle_time = 0.0
    n = 0
    while True:
        msg = await kc.get_iopub_msg(timeout=300)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        n += 1
        if msg["msg_type"] == "stream":
            chunks.append(msg["content"]["text"])
        t = time.perf_counter()
        writer.handle(msg)
        handle_time += time.perf_counter() - t
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    done.set()
    t = time.perf_counter()
    writer.flush()  # the final flush
    flush_time += time.perf_counter() - t
    elapsed = time.perf_counter() - t0
    await task
    reply = await _drain_reply(kc, msg_id)
    writer.finish(reply["content"]["status"], reply["content"].get("execution_count"))
    doc.unobserve(sub)
    printed = "".join(chunks)
    texts = [o["text"] for o in outputs_to_nbformat(doc) if o["output_type"] == "stream"]
    remote_texts = [o["text"] for o in outputs_to_nbformat(remote) if o["output_type"] == "stream"]
    return {
        "elapsed": elapsed,
        "messages": n,
        "updates": len(sizes),
        "update_bytes": sum(sizes),
        "max_update": max(sizes),
        "handle_time": handle_time,
        "flush_time": flush_time,
        "flushes": n_flushes + 1,
        "ok": texts == [printed] and remote_texts == [printed],
        "outputs": len(doc.get("outputs", type=Array)),
        "printed": printed,
    }


def synthetic(lines: int) -> None:
    doc: Doc[Any] = Doc()
    sizes: list[int] = []
    sub = doc.observe(lambda e: sizes.append(len(e.update)))
    writer = OutputWriter(doc)
    writer.start()
    msgs = [
        {"header": {"msg_type": "stream"}, "content": {"name": "stdout", "text": f"{i}\n"}}
        for i in range(lines)
    ]
    t = time.perf_counter()
    for m in msgs:
        writer.handle(m)
    t_handle = time.perf_counter() - t
    t = time.perf_counter()
    writer.flush()
    t_flush = time.perf_counter() - t
    n_after_start = len(sizes)
    doc.unobserve(sub)
    print(
        f"synthetic: {lines} stream messages: handle {t_handle * 1e6 / lines:.2f} µs/msg, "
        f"one flush {t_flush * 1e3:.1f} ms, {n_after_start - 1} update(s) "
        f"({sizes[-1]} bytes)"
    )
    progress = [
        {"header": {"msg_type": "stream"}, "content": {"name": "stdout", "text": f"\r{i:7d}"}}
        for i in range(lines)
    ]
    doc2: Doc[Any] = Doc()
    sizes2: list[int] = []
    sub2 = doc2.observe(lambda e: sizes2.append(len(e.update)))
    writer2 = OutputWriter(doc2)
    t = time.perf_counter()
    for i, m in enumerate(progress):
        writer2.handle(m)
        if i % 1000 == 999:  # flush as if every 1000 messages arrived within 20 ms
            writer2.flush()
    writer2.flush()
    t_total = time.perf_counter() - t
    doc2.unobserve(sub2)
    print(
        f"synthetic: {lines} progress-bar \\r messages, flush every 1000: "
        f"{t_total * 1e6 / lines:.2f} µs/msg, {len(sizes2)} updates, {sum(sizes2)} bytes"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--flood-repeat", type=int, default=1)
    args = parser.parse_args()
    lines = args.lines
    expected = "".join(f"{i}\n" for i in range(lines))

    synthetic(lines)

    km = AsyncKernelManager(kernel_name="python3")
    await km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        for label, code, repeat in [
            ("print(i)", f"for i in range({lines}):\n    print(i)\n", args.repeat),
            (
                "print(i, flush=True)",
                f"for i in range({lines}):\n    print(i, flush=True)\n",
                args.flood_repeat,
            ),
        ]:
            print(f"\n== kernel: {lines} lines, {label}; {repeat} run(s) each, median ==")
            plain: list[float] = []
            results: list[dict[str, Any]] = []
            for _ in range(repeat):
                elapsed, printed, n = await run_plain(kc, code)
                assert printed == expected, "kernel output differs from expected"
                plain.append(elapsed)
                result = await run_writer(kc, code)
                assert result["printed"] == expected
                results.append(result)
            med = statistics.median(plain)
            print(f"(a) plain jupyter_client: execute -> idle {med * 1e3:.0f} ms ({n} IOPub msgs)")
            r = sorted(results, key=lambda r: r["elapsed"])[len(results) // 2]
            print(
                f"(b) OutputWriter, flush every {FLUSH_INTERVAL * 1e3:.0f} ms: execute -> final "
                f"flush {r['elapsed'] * 1e3:.0f} ms ({r['messages']} IOPub msgs); "
                f"handle total {r['handle_time'] * 1e3:.1f} ms, flush total "
                f"{r['flush_time'] * 1e3:.1f} ms over {r['flushes']} flushes"
            )
            print(
                f"    doc updates: {r['updates']} (incl. start/finish), "
                f"{r['update_bytes']} bytes total (text {len(expected)} bytes), "
                f"largest {r['max_update']} bytes; outputs: {r['outputs']}; "
                f"doc text == kernel output (server and remote doc): "
                f"{all(x['ok'] for x in results)}"
            )
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


if __name__ == "__main__":
    asyncio.run(main())
