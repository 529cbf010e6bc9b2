"""Benchmark: what one hostile client costs everyone else (issue 13).

A real JupyterHub (with configurable-http-proxy) and hub-collab, started like the tests
do (``tests/hubfixtures.py``; local kernels). One notebook, owned by ``instructor``,
group ``students``: cells ``a0``..``a3`` writable by students (the attacker's targets),
``big`` readable by students only (a source of 300,000 characters from which every
eighth was deleted: 37,500 deletions, 1.4 MB of CRDT state), ``t`` (``1``, for
the execute flood) and ``mine``, bob's own cell.

For each attack, the service is restarted (a fresh process: its RSS is that run's),
then for ``--seconds``:

* **the attacker** (alice, a student), in a process of its own, sends frames of about
  2 KB, 64 KB and 4 MB (where the attack allows) as fast as the service takes them, on a
  raw WebSocket (``leanws``; it reads and discards what it is sent, except the deaf
  client);
* **the victim** (bob, another student, ``NotebookConnection`` subscribed to ``index``
  and his own cell, straight to the service's port) types one character into his cell
  every 10 ms and waits for the ``sync`` ack of it: the time from the edit to the ack is
  the latency he sees (the event loop's lag, plus a group commit); p50, p99, max;
* the service's RSS (``VmRSS`` in ``/proc/<pid>/status``, every 10 ms): the growth is
  the peak during the attack minus the value just before it; its CPU (user + system)
  over the attack.

Attacks:

1. ``gap``: updates to a writable cell whose structs start past what the server holds
   of their client (small structs, the costliest to read), after a sync step 1 that
   subscribes again (each is refused with ``invalid_update`` + ``resync``);
2. ``grow``: valid updates appending to writable cells, accepted until a cell holds
   ``max_doc_bytes`` (2 MB), then refused (``too_large``);
3. ``noop``: a reader repeating what it holds of ``big``: deletions it was sent (2 KB,
   64 KB), the whole state (4 MB frames: the state twice, then deletions);
4. ``deaf``: sync step 1 for ``big`` with an empty state vector, repeated to fill the
   frame, by a client with a 4 KB receive buffer that never reads (each frame is
   answered once, 1.2 MB; backpressure stops reading from it at 8 MB unread);
   ``ask``: the same in frames of one entry (25 bytes) by a client that reads all;
5. ``execute``: 1,500 ``execute`` commands for ``t`` (``1``), in JSON frames, as fast as
   the socket takes them; the kernel is started before the clock starts;
6. ``import``: ``POST api/notebooks`` with a 5,000-cell notebook (10 MB of JSON, within
   the default limits) one after the other, if this tree imports off the event loop
   (``hub_collab/documents/importer.py``); otherwise the row says so (``--classes import``
   runs it anyway).

    .venv/bin/python benchmarks/bench_hostile.py [--seconds 4] [--classes baseline,gap,grow,noop,deaf,ask,execute,import]
        [--sizes 2k,64k,4m]

Goals (issue 13): p99 at most 50 ms, RSS growth at most 64 MB per hostile connection.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

from bench_edit_latency import BenchService, percentile  # noqa: E402
from hubfixtures import Hub  # noqa: E402
from leanws import LeanConnection  # noqa: E402
from pycrdt import Doc, Text  # noqa: E402

from hub_collab.client import CollabClient, NotebookConnection  # noqa: E402
from hub_collab.documents import protocol as p  # noqa: E402
from hub_collab.documents.notebook import cell_doc, init_cell  # noqa: E402
from hub_collab.documents.updates import read_update  # noqa: E402

SIZES = {"2k": 2_000, "64k": 64_000, "4m": 4_000_000}
ATTACK_CELLS = ["a0", "a1", "a2", "a3"]
MAX_DOC_BYTES = 2 * 1024 * 1024  # HubCollab.max_doc_bytes (default)
BIG_CHARS = 300_000


def notebook() -> dict[str, Any]:
    def cell(cid: str, source: str) -> dict[str, Any]:
        return {"id": cid, "cell_type": "code", "source": source, "metadata": {}, "outputs": [], "execution_count": None}

    cells = [cell(c, f"{c} = 0\n") for c in ATTACK_CELLS]
    cells += [cell("big", "x" * BIG_CHARS), cell("t", "1"), cell("mine", "# bob\n")]
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": cells,
    }


def import_content(cells: int = 5000) -> dict[str, Any]:
    line = "x = 1  # " + "y" * 2000 + "\n"
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            {"id": f"i{i}", "cell_type": "code", "source": line, "metadata": {}, "outputs": [], "execution_count": None}
            for i in range(cells)
        ],
    }


def import_landed() -> bool:
    """Whether this tree imports notebooks off the event loop (``documents/importer.py``)."""
    return importlib.util.find_spec("hub_collab.documents.importer") is not None


# -- the attacker (a process of its own) ------------------------------------------------------


def var(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out)


def gap_update(size: int, client: int) -> bytes:
    """An update of one-character items typed one after the other by ``client``, from
    clock 1: the server never had clock 0, so the whole update is refused, once read."""
    structs = []
    total = 0
    clock = 1
    while total < size - 16:
        s = b"\x84" + var(client) + var(clock - 1) + b"\x01z"  # string "z", origin: the previous item
        structs.append(s)
        total += len(s)
        clock += 1
    return var(1) + var(len(structs)) + var(client) + var(1) + b"".join(structs) + b"\x00"


def delete_subset(deletes: dict[int, list[tuple[int, int]]], size: int, rng: random.Random) -> bytes:
    """An update that only deletes what is deleted already (a no-op), about ``size`` bytes."""
    client, ranges = max(deletes.items(), key=lambda kv: len(kv[1]))
    start = rng.randrange(max(1, len(ranges) - size))
    body = bytearray()
    count = 0
    for s, e in ranges[start:]:
        if len(body) >= size - 24:
            break
        body += var(s) + var(e - s)
        count += 1
    return b"\x00\x01" + var(client) + var(count) + bytes(body)


class Attacker(LeanConnection):
    """A raw WebSocket; ``rcvbuf`` shrinks the socket's receive buffer (the deaf client)."""

    def __init__(self, ws_url: str, token: str, rcvbuf: int | None = None) -> None:
        super().__init__(ws_url, token)
        self.rcvbuf = rcvbuf
        self.codes: dict[str, int] = {}
        self.close_code: int | None = None

    def send_text(self, text: str) -> None:
        self._send_frame(1, text.encode())

    def drain_forever(self) -> None:
        """Read and count what comes (on a thread) until the connection closes."""
        assert self.sock is not None
        self.sock.settimeout(None)
        try:
            while True:
                for opcode, payload in self.recv_some():
                    if opcode == 1:
                        msg = json.loads(payload)
                        if msg.get("type") == "error":
                            self.codes[msg["code"]] = self.codes.get(msg["code"], 0) + 1
                    elif opcode == 8:
                        self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                        return
        except (OSError, ConnectionError):
            return


def frames_for(attack: str, size: int, conn: Attacker, rng: random.Random) -> Any:
    """An endless iterator of the attack's frames (bytes: binary, str: text)."""
    if attack == "gap":
        update = gap_update(min(size, MAX_DOC_BYTES - 64) - 64, client=1000 + rng.randrange(1000))
        pairs = max(1, min(len(ATTACK_CELLS), size // len(update)))
        k = 0
        while True:
            frame = b""
            for _ in range(pairs):
                name = cell_doc(ATTACK_CELLS[k % len(ATTACK_CELLS)])
                frame += p.sync_step1(name, b"\x00") + p.sync_update(name, update)
                k += 1
            yield frame
    elif attack == "grow":
        docs = {}
        held = {}
        for c in ATTACK_CELLS:
            doc: Doc[Any] = Doc(client_id=5000 + rng.randrange(1000))
            doc.apply_update(conn.docs[cell_doc(c)].get_update())
            docs[c] = doc
            held[c] = len(doc.get_update())
        piece = min(size, MAX_DOC_BYTES - 64) - 128
        pairs = max(1, min(len(ATTACK_CELLS), size // piece))
        refused: dict[str, bytes] = {}
        k = 0
        while True:
            frame = b""
            for _ in range(pairs):
                c = ATTACK_CELLS[k % len(ATTACK_CELLS)]
                k += 1
                doc = docs[c]
                if c in refused:
                    update = refused[c]
                else:
                    before = doc.get_state()
                    copy: Doc[Any] = Doc(client_id=doc.client_id)
                    copy.apply_update(doc.get_update())
                    text = init_cell(copy)[0]
                    text.insert(len(text), "z" * piece)
                    update = copy.get_update(before)
                    if held[c] + len(update) > MAX_DOC_BYTES:
                        refused[c] = update  # too_large from now on, each time
                    else:
                        doc.apply_update(update)
                        held[c] += len(update)
                frame += p.sync_step1(cell_doc(c), docs[c].get_state()) + p.sync_update(cell_doc(c), update)
            yield frame
    elif attack == "noop":
        name = cell_doc("big")
        doc = conn.docs[name]
        whole = doc.get_update()
        deletes = read_update(doc.get_update(doc.get_state())).deletes
        # subscribed by the join; a reader's no-op repeat does not unsubscribe it
        while True:
            if size >= SIZES["4m"]:
                frame = p.sync_step2(name, whole) * (2 if 2 * len(whole) < size else 1)
                while len(frame) < size - 70_000:
                    frame += p.sync_update(name, delete_subset(deletes, 64_000, rng))
            else:
                frame = p.sync_update(name, delete_subset(deletes, size - 16, rng))
            yield frame
    elif attack == "ask":
        frame = p.sync_step1(cell_doc("big"), b"\x00")
        while True:
            yield frame
    elif attack == "deaf":
        entry = p.sync_step1(cell_doc("big"), b"\x00")
        frame = entry * max(1, size // len(entry))
        while True:
            yield frame
    elif attack == "execute":
        for i in range(1500):
            yield json.dumps({"type": "execute", "cell_id": "t", "ref": f"x{i}"})
    else:
        raise ValueError(attack)


def attacker_main() -> None:
    cfg = json.loads(sys.stdin.readline())
    attack, size = cfg["attack"], cfg["size"]
    rng = random.Random(13)
    stats: dict[str, Any] = {"frames": 0, "bytes": 0}
    if attack == "import":
        import requests

        body = json.dumps({"name": "import-flood", "content": import_content()})
        session = requests.Session()
        session.headers["Authorization"] = f"token {cfg['token']}"
        print(json.dumps({"ready": True}), flush=True)
        sys.stdin.readline()
        deadline = time.monotonic() + cfg["seconds"]
        statuses: dict[str, int] = {}
        while time.monotonic() < deadline:
            resp = session.post(cfg["base_url"] + "api/notebooks", data=body, headers={"Content-Type": "application/json"}, timeout=300)
            statuses[str(resp.status_code)] = statuses.get(str(resp.status_code), 0) + 1
            stats["frames"] += 1
            stats["bytes"] += len(body)
        stats["answers"] = statuses
        print(json.dumps(stats), flush=True)
        return
    if attack == "execute":
        # the kernel starts here, before the clock does
        asyncio.run(warm_kernel(cfg))
    # a joined client first: its docs are what the frames are made from
    joined = Attacker(cfg["ws_url"], cfg["token"])
    joined.join()
    conn = Attacker(cfg["ws_url"], cfg["token"], rcvbuf=4096 if attack == "deaf" else None)
    if attack == "deaf":
        conn.connect()
    else:
        conn.join()
    conn.docs = joined.docs
    joined.close()
    frames = frames_for(attack, size, conn, rng)
    first = next(frames)
    reader = None
    if attack != "deaf":
        reader = threading.Thread(target=conn.drain_forever, daemon=True)
        reader.start()
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    assert conn.sock is not None
    conn.sock.settimeout(1.0)
    deadline = time.monotonic() + cfg["seconds"]
    frame: bytes | str | None = first
    blocked = 0.0
    while frame is not None and time.monotonic() < deadline:
        # sent in pieces: a send that times out has sent part of the frame, which must
        # not be sent again (sendall cannot say how much it sent)
        wire = memoryview(conn.frame(0x1 if isinstance(frame, str) else 0x2, frame.encode() if isinstance(frame, str) else frame))
        sent = 0
        try:
            while sent < len(wire) and time.monotonic() < deadline:
                t0 = time.monotonic()
                try:
                    sent += conn.sock.send(wire[sent:])
                except TimeoutError:
                    blocked += time.monotonic() - t0  # the service stopped reading us: backpressure
        except OSError:
            break
        if sent < len(wire):
            break
        conn.bytes_sent += sent
        stats["frames"] += 1
        stats["bytes"] += len(frame)
        frame = next(frames, None)
    stats["received"] = conn.bytes_received
    stats["blocked_s"] = round(blocked, 2)
    stats["answers"] = conn.codes
    stats["closed"] = conn.close_code
    print(json.dumps(stats), flush=True)
    os._exit(0)  # the deaf socket's unsent bytes need not be flushed


async def warm_kernel(cfg: dict[str, Any]) -> None:
    async with CollabClient(cfg["base_url"], cfg["token"], request_timeout=120) as client:
        async with client.open(cfg["nb_id"]) as conn:
            await conn.synced()
            await conn.execute("t")
            await conn.wait_executed("t", timeout=120)


# -- the measuring side --------------------------------------------------------------------------


def vm_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class RssSampler:
    """Peak VmRSS of a process, every 10 ms on a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = self.peak = vm_rss(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            try:
                self.peak = max(self.peak, vm_rss(self.pid))
            except OSError:
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def probe(conn: NotebookConnection, seconds: float, interval: float = 0.01) -> list[float]:
    """Bob types a character into his cell every ``interval`` s and waits for its ``sync``
    ack; the latencies (ms)."""
    latencies = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        t0 = time.perf_counter()
        conn.edit("mine", len(conn.source("mine")), insert="b")
        await conn.sync()
        latencies.append((time.perf_counter() - t0) * 1000)
        rest = interval - (time.perf_counter() - t0)
        if rest > 0:
            await asyncio.sleep(rest)
    return latencies


class Bench:
    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args = args
        self.hub = Hub(root / "hub")
        self.service = BenchService(self.hub, root / "collab", extra_args=["--log-level=WARN"])
        self.nb_id = ""

    async def setup(self) -> None:
        self.hub.start()
        self.service.start()
        async with CollabClient(self.service.direct_url, self.hub.token("instructor"), request_timeout=120) as teacher:
            nb = await teacher.create_notebook("hostile", notebook(), group="students", mode="0775", default_cell_mode="0775")
            self.nb_id = str(nb["id"])
            await teacher.set_permissions(self.nb_id, "big", mode="0755")
            await teacher.set_permissions(self.nb_id, "mine", owner="bob", mode="0744")
            async with teacher.open(self.nb_id) as conn:
                await conn.synced()
                doc = conn.docs[cell_doc("big")]
                text = doc.get("source", type=Text)
                with doc.transaction():
                    for i in range(BIG_CHARS - 1, 0, -8):
                        del text[i : i + 1]
                await conn.sync()
                big = doc.get_update()
                self.big_state = len(big)
                self.big_deletions = sum(len(r) for r in read_update(doc.get_update(doc.get_state())).deletes.values())

    def spawn_attacker(self, attack: str, size: int) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--attacker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO
        )
        assert proc.stdin is not None and proc.stdout is not None
        cfg = {
            "attack": attack,
            "size": size,
            "seconds": self.args.seconds,
            "ws_url": CollabClient(self.service.direct_url, "").ws_url(self.nb_id),
            "base_url": self.service.direct_url,
            "nb_id": self.nb_id,
            "token": self.hub.token("alice"),
        }
        proc.stdin.write(json.dumps(cfg) + "\n")
        proc.stdin.flush()
        ready = proc.stdout.readline()
        if not ready:
            raise RuntimeError(f"the {attack} attacker ended early")
        return proc

    async def run(self, attack: str, size: int) -> dict[str, Any]:
        self.service.restart()
        assert self.service.process is not None
        pid = self.service.process.pid
        async with CollabClient(self.service.direct_url, self.hub.token("bob"), request_timeout=120) as bob_client:
            bob = bob_client.open(self.nb_id, subscribe_all=False)
            await bob.connect()
            bob.subscribe(cell_doc("mine"))
            await bob.cell_ready("mine")
            await probe(bob, 0.5)  # warm: the first syncs pay for the room's first writes
            proc = await asyncio.to_thread(self.spawn_attacker, attack, size) if attack != "baseline" else None
            cpu0 = cpu_seconds(pid)
            t0 = time.monotonic()
            with RssSampler(pid) as rss:
                if proc is not None:
                    assert proc.stdin is not None
                    proc.stdin.write("go\n")
                    proc.stdin.flush()
                latencies = await probe(bob, self.args.seconds)
            elapsed = time.monotonic() - t0
            cpu = (cpu_seconds(pid) - cpu0) / elapsed
            stats: dict[str, Any] = {}
            if proc is not None:
                assert proc.stdout is not None
                line = await asyncio.to_thread(proc.stdout.readline)
                stats = json.loads(line) if line else {"error": "no stats"}
                await asyncio.to_thread(proc.wait, 60)
            refused = [m for m in bob.messages if m["type"] in ("error", "resync")]
            victim_ok = bob.close_code is None and not refused
            if not victim_ok:
                print(f"  the victim was refused or closed ({bob.close_code}): {refused[:3]}", file=sys.stderr, flush=True)
            await bob.close()
        return {
            "attack": attack,
            "size": size,
            "latencies": latencies,
            "rss_growth": rss.peak - rss.start,
            "cpu": cpu,
            "stats": stats,
            "victim_ok": victim_ok,
        }


def label(size: int) -> str:
    for name, value in SIZES.items():
        if value == size:
            return name.upper().replace("K", " KB").replace("M", " MB")
    return "—" if size == 0 else f"{size} B"


TITLES = {
    "baseline": "baseline (no attacker)",
    "gap": "1 gap updates, writable cell",
    "grow": "2 growing a cell past max_doc_bytes",
    "noop": "3 no-op repeats, large read-only doc",
    "deaf": "4 step 1 for a large doc, deaf",
    "ask": "4 the same, one per frame, reading",
    "execute": "5 execute flood (1,500)",
    "import": "6 POST api/notebooks, 5,000 cells",
}


def row(r: dict[str, Any]) -> str:
    lat = r["latencies"]
    s = r["stats"]
    p50, p99, worst = percentile(lat, 50), percentile(lat, 99), max(lat)
    answers = ", ".join(f"{k} {v}" for k, v in sorted(s.get("answers", {}).items())) or "—"
    if s.get("closed"):
        answers += f"; closed {s['closed']}"
    goal = "yes" if p99 <= 50 and r["rss_growth"] <= 64e6 and r["victim_ok"] else "NO"
    if r["attack"] == "baseline":
        sent = f"{'—':>6} {'—':>7} {'—':>7}"
    else:
        back = f"{s['received'] / 1e6:>7.1f}" if "received" in s else f"{'—':>7}"
        sent = f"{s.get('frames', 0):>6} {s.get('bytes', 0) / 1e6:>7.1f} {back}"
    return (
        f"{TITLES[r['attack']]:<37} {label(r['size']):>6} | {sent} | {p50:7.1f} {p99:7.1f} {worst:7.1f} {len(lat):>5}"
        f" | {r['rss_growth'] / 1e6:7.1f} | {r['cpu'] * 100:4.0f}% | {goal:>4} | {answers}"
    )


async def main_async(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    bench = Bench(args, root)
    classes = args.classes.split(",")
    sizes = [SIZES[s] for s in args.sizes.split(",")]
    plan: list[tuple[str, int]] = []
    skipped: list[str] = []
    for attack in classes:
        if attack in ("baseline", "execute"):
            plan.append((attack, 0))
        elif attack == "ask":
            plan.append((attack, 25))
        elif attack == "import":
            if import_landed() or args.classes_given_import:
                plan.append((attack, 0))
            else:
                skipped.append(
                    "6 POST api/notebooks with a large content: skipped, the import work (notebooks created"
                    " off the event loop) is not in this tree; --classes import runs it anyway"
                )
        else:
            plan += [(attack, size) for size in sizes]
    load_before = os.getloadavg()
    results = []
    try:
        await bench.setup()
        for attack, size in plan:
            results.append(await bench.run(attack, size))
            print(f"  {attack} {label(size)} done", file=sys.stderr, flush=True)
    finally:
        bench.service.stop()
        bench.hub.stop()
        shutil.rmtree(root, ignore_errors=True)
    load_after = os.getloadavg()
    print()
    print("hostile clients: what one attacker costs another user (issue 13)")
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after;"
        f" {args.seconds:g} s per attack, the service restarted for each; big: {bench.big_state / 1e6:.2f} MB of state,"
        f" {bench.big_deletions:,} deletions"
    )
    print("victim: bob types a character into his own cell every 10 ms and waits for its sync ack (ms)")
    print("attacker: frames (requests for the import) and MB it wrote, MB it was sent back; the errors it was sent")
    print()
    head = (
        f"{'attack':<37} {'frame':>6} | {'frames':>6} {'MB out':>7} {'MB in':>7} | {'p50':>7} {'p99':>7} {'max':>7} {'syncs':>5}"
        f" | {'RSS +MB':>7} | {'CPU':>5} | {'goal':>4} | attacker was answered"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        print(row(r))
    for line in skipped:
        print(line)
    print()
    print("goal: p99 at most 50 ms and RSS growth at most 64 MB per hostile connection; CPU is the service's")
    bad = [r for r in results if not r["victim_ok"]]
    print(f"the victim's session: {'never refused or closed' if not bad else 'REFUSED OR CLOSED in ' + ', '.join(r['attack'] for r in bad)}")


def main() -> None:
    if "--attacker" in sys.argv:
        attacker_main()
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--classes", default="baseline,gap,grow,noop,deaf,ask,execute,import")
    parser.add_argument("--sizes", default="2k,64k,4m")
    args = parser.parse_args()
    # named alone, the import attack runs whether or not the import work is here
    args.classes_given_import = "import" in args.classes.split(",") and args.classes != parser.get_default("classes")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
