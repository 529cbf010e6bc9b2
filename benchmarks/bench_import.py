"""Benchmark: what another user sees while notebooks of 1,000 and 5,000 cells are imported.

A real JupyterHub and hub-collab are started the way ``tests/hubfixtures.py`` does (its
classes are reused). While ``alice`` imports notebooks (``POST api/notebooks`` with
``content``: the realistic cells of ``bench_join.py``, sources of 200-700 bytes, streams,
results and small images), ``bob`` keeps asking small questions in a separate process:
``GET api/me`` and ``GET api/notebooks/{id}`` of a 5-cell notebook, alternately, one after
another with a 5 ms pause, on one keep-alive connection. Each answer's latency is the
event-loop lag bob sees (plus the request's own few ms, shown by the idle row).

Printed per size: bob's latency p50 / p90 / p99 / max while an import is in flight (and
the same with no import, the baseline), how many of his requests that is, and alice's
import time (request to 201) p50 and max, with the service's own split (p50s, from its log
line ``created notebook ...``): preparing the docs and storing them in the import worker,
then taking in the new notebook's permissions in the service.

Clients connect straight to the service with Hub API tokens (``--via-proxy``: through
configurable-http-proxy). The service is started with limits that admit the largest size
(``max_cells``, and 64 MiB for ``max_import_bytes`` and ``max_request_bytes``) and at log
level INFO (its split of each import is read from its log; it then logs every request).

    .venv/bin/python benchmarks/bench_import.py [--sizes 1000,5000] [--repeat 3] [--via-proxy]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_edit_latency import REPO, BenchService, percentile  # noqa: E402
from bench_join import realistic_notebook  # noqa: E402
from hubfixtures import Hub  # noqa: E402

from hub_collab.client import CollabClient  # noqa: E402

PROBE_PAUSE = 0.005
LOG_LINE = re.compile(
    r"created notebook \S+: (\d+) cells, (\d+) bytes in ([\d.]+) ms \(([\d.]+) ms preparing, ([\d.]+) ms storing "
    r"in the worker; ([\d.]+) ms taking in its permissions\)"
)


def probe_main() -> None:
    """bob's side: small requests one after another until stdin closes; prints
    ``[[start_ns, end_ns, status], ...]``."""
    cfg = json.loads(sys.stdin.readline())
    url = urlsplit(cfg["base_url"])
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)
    headers = {"Authorization": f"token {cfg['token']}"}
    paths = [url.path + "api/me", url.path + f"api/notebooks/{cfg['notebook']}"]
    samples: list[tuple[int, int, int]] = []
    stop = False

    def watch() -> None:
        nonlocal stop
        sys.stdin.read()
        stop = True

    import threading

    threading.Thread(target=watch, daemon=True).start()
    print(json.dumps({"ready": True}), flush=True)
    i = 0
    while not stop:
        t0 = time.monotonic_ns()
        conn.request("GET", paths[i % 2], headers=headers)
        resp = conn.getresponse()
        resp.read()
        samples.append((t0, time.monotonic_ns(), resp.status))
        i += 1
        time.sleep(PROBE_PAUSE)
    print(json.dumps(samples), flush=True)


def spawn_probe() -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, "--probe"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)


def ms(values: list[float]) -> str:
    if not values:
        return "      —       —       —       —"
    return f"{percentile(values, 50):7.1f} {percentile(values, 90):7.1f} {percentile(values, 99):7.1f} {max(values):7.1f}"


async def main_async(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    root = Path(tempfile.mkdtemp(prefix="bench-import-"))
    hub = Hub(root / "hub")
    extra = [
        "--log-level=INFO",  # for the service's "created notebook" lines (and it logs every request)
        f"--HubCollab.max_cells={max(sizes)}",
        "--HubCollab.max_import_bytes=67108864",
        "--HubCollab.max_request_bytes=67108864",
    ]
    service = BenchService(hub, root / "collab", extra_args=extra)
    windows: list[tuple[int, int, int]] = []  # (size, start_ns, end_ns)
    import_times: dict[int, list[float]] = {n: [] for n in sizes}
    try:
        hub.start()
        service.start()
        base = service.public_url if args.via_proxy else service.direct_url
        alice = CollabClient(base, hub.token("alice"), request_timeout=600)
        bob_nb = await CollabClient(base, hub.token("bob")).create_notebook("bob's", content=realistic_notebook(5))
        probe = spawn_probe()
        assert probe.stdin is not None and probe.stdout is not None
        probe.stdin.write(json.dumps({"base_url": base, "token": hub.token("bob"), "notebook": bob_nb["id"]}) + "\n")
        probe.stdin.flush()
        assert json.loads(await asyncio.to_thread(probe.stdout.readline)).get("ready")
        await asyncio.sleep(2.0)  # the idle baseline
        for n in sizes:
            content = realistic_notebook(n)
            for r in range(args.repeat):
                t0 = time.monotonic_ns()
                nb = await alice.create_notebook(f"import {n} #{r}", content=content)
                t1 = time.monotonic_ns()
                assert len(nb["cells"]) == n
                windows.append((n, t0, t1))
                import_times[n].append((t1 - t0) / 1e6)
                await asyncio.sleep(1.0)  # idle between imports
        probe.stdin.close()
        samples = json.loads(await asyncio.to_thread(probe.stdout.readline))
        probe.wait(30)
        alice.close()
        log = service.log_path.read_text(errors="replace")
    finally:
        service.stop()
        hub.stop()
        shutil.rmtree(root, ignore_errors=True)

    splits: dict[int, list[tuple[float, float, float]]] = {n: [] for n in sizes}
    for m in LOG_LINE.finditer(log):
        cells = int(m.group(1))
        if cells in splits:
            splits[cells].append((float(m.group(4)), float(m.group(5)), float(m.group(6))))
    errors = sum(1 for _, _, status in samples if status != 200)
    during: dict[int, list[float]] = {n: [] for n in sizes}
    idle: list[float] = []
    for start, end, _ in samples:
        lat = (end - start) / 1e6
        hit = [n for n, w0, w1 in windows if start < w1 and end > w0]
        if hit:
            during[hit[0]].append(lat)
        else:
            idle.append(lat)
    route = "through the proxy" if args.via_proxy else "directly to the service"
    print()
    print(f"another user's small requests while notebooks are imported ({route})")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; bob's requests answered other than 200: {errors}")
    print()
    print("                     |  bob's latency (ms)             |        |  alice's import (ms)")
    print("  cells       import |     p50     p90     p99     max | bob n  |     p50     max  prepare  store  perms")
    print(f"  {'—':>5}    {'none':>9} | {ms(idle)} | {len(idle):5d}  |")
    for n in sizes:
        sp = splits[n]
        split = (
            f"{percentile([s[0] for s in sp], 50):8.0f} {percentile([s[1] for s in sp], 50):6.0f} {percentile([s[2] for s in sp], 50):6.0f}"
            if sp
            else ""
        )
        print(f"  {n:5d} {'in flight':>12} | {ms(during[n])} | {len(during[n]):5d}  | {percentile(import_times[n], 50):7.0f} {max(import_times[n]):7.0f}  {split}")
    print()
    print(f"{args.repeat} imports per size, one at a time, 1 s apart; each row's bob n is his requests that overlapped them.")


def main() -> None:
    if "--probe" in sys.argv:
        probe_main()
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,5000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--via-proxy", action="store_true")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
