"""Benchmark: one user drags an ``interact`` slider in the browser; how soon the others' screens show it.

Like ``bench_widgets.py``, but from input to screen: a real JupyterHub, the service, a
local ipykernel with ipywidgets, and headless Chromium pages logged in through the Hub.
alice's page has the slider (ipywidgets' own view, as users see it); she presses the
arrow key on its thumb ``--keys`` times at ``--rate`` a second (a drag, value by value;
the page coalesces to one message in flight and at most 20 a second). ``--pages``
other users' pages watch the slider's readout and the ``interact`` output on screen
(a MutationObserver, same machine clock as alice's keydown), and ``--clients`` more
readers follow as Python clients in a thread of their own (the rest of a class), so
the service fans out to pages + clients.

Figures, p50/p95/max over keys × pages, from alice's keydown for value v until a page
shows v (or a later value):

* **readout on another page**: the service applies the change, no kernel in the way;
* **output on another page**: the kernel runs the function, the service writes its
  output, the page draws it;
* **kernel round trip** apart: until alice's own page shows the output;
* and the output's path split where the kernel runs the function (its ``time.time()``,
  same clock): from alice's keydown until the kernel runs it (the page, the service,
  the kernel's queue), and from there until another page shows its output.

The issue's figure is a drag reaching 50 other clients' screens: the defaults are 50
other pages (Chromium renderers on this machine, with the Hub, the service and the
kernel) and no Python clients; ``--pages 3 --clients 47`` is the lighter mix.

    .venv/bin/python benchmarks/bench_widgets_ui.py [--pages 50] [--clients 0] [--keys 100] [--rate 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "benchmarks")]

from bench_chat import pct  # noqa: E402
from hubfixtures import EXTRA_USERS, USERS, CollabService, Hub  # noqa: E402
from playwright.sync_api import Page, sync_playwright  # noqa: E402
from ui_helpers import Api, ensure_build, launch, login, notebook  # noqa: E402

from hub_collab.client import CollabClient, NotebookConnection  # noqa: E402
from hub_collab.documents.notebook import out_doc  # noqa: E402

SOURCE = """\
import time
import ipywidgets as w
from ipywidgets import interact

ran = {}

@interact(x=w.IntSlider(value=0, min=0, max=100000, description='x'))
def square(x):
    ran[x] = time.time() * 1000
    print('square', x * x)
"""
# what the kernel ran, and when (ms, the machine's clock)
RAN = "import json\nprint(json.dumps(ran))"

# In a page: the time (Date.now()) each readout value and each output's value first showed.
WATCH_JS = """() => {
    const cell = document.querySelector('.cell[data-cell-id="c0"]');
    window.__shown = {};
    window.__out = {};
    const look = () => {
        const now = Date.now();
        const r = cell.querySelector('.widget-slider .widget-readout');
        if (r) { const v = parseInt(r.textContent, 10); if (!(v in window.__shown)) window.__shown[v] = now; }
        const o = cell.querySelector('.widget-output');
        const m = o && /square (\\d+)/.exec(o.textContent);
        if (m) { const v = Math.round(Math.sqrt(parseInt(m[1], 10))); if (!(v in window.__out)) window.__out[v] = now; }
    };
    new MutationObserver(look).observe(cell, {subtree: true, childList: true, characterData: true});
    look();
}"""


def fmt(ms: list[float]) -> str:
    if not ms:
        return "(none)"
    return f"p50 {pct(ms, 50):7.1f} ms   p95 {pct(ms, 95):7.1f} ms   max {max(ms):7.1f} ms   (n={len(ms)})"


def latencies(sent: dict[int, float], shown: dict[str, float], n: int) -> list[float]:
    """For each value v sent, the time until the page showed v or a later value."""
    seen = sorted((int(v), t) for v, t in shown.items())
    out = []
    for v in range(1, n + 1):
        later = [t for value, t in seen if value >= v]
        if later and v in sent:
            out.append(max(0.0, min(later) - sent[v]))
    return out


class Readers:
    """``n`` Python clients following the notebook in a thread of their own."""

    def __init__(self, url: str, tokens: list[str], nb: str) -> None:
        self.url, self.tokens, self.nb = url, tokens, nb
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        clients = [CollabClient(self.url, t) for t in self.tokens]
        conns: list[NotebookConnection] = []
        for c in clients:
            conn = c.open(self.nb)
            await conn.connect()
            conns.append(conn)
        await asyncio.gather(*(c.wait_for(lambda c=c: out_doc("c0") in c.synced_docs, timeout=120) for c in conns))
        self.ready.set()
        await asyncio.get_running_loop().run_in_executor(None, self.stop.wait)
        for conn in conns:
            await conn.close()
        for c in clients:
            c.close()


def drag(alice: Page, keys: int, rate: float) -> dict[int, float]:
    """Press ArrowRight on the thumb ``keys`` times at ``rate`` a second; value -> keydown time."""
    alice.evaluate("() => { window.__keys = []; document.addEventListener('keydown', () => window.__keys.push(Date.now()), true); }")
    alice.locator('.cell[data-cell-id="c0"] .widget-slider .noUi-handle').focus()
    start = time.perf_counter()
    for i in range(keys):
        time.sleep(max(0.0, start + i / rate - time.perf_counter()))
        alice.keyboard.press("ArrowRight")
    stamps = alice.evaluate("() => window.__keys")
    return {i + 1: float(t) for i, t in enumerate(stamps)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=50, help="other users' browser pages watching")
    ap.add_argument("--clients", type=int, default=0, help="Python clients following as well")
    ap.add_argument("--keys", type=int, default=100)
    ap.add_argument("--rate", type=float, default=20.0, help="key presses a second")
    args = ap.parse_args()
    ensure_build()
    tmp = Path(tempfile.mkdtemp(prefix="bench-widgets-ui-"))
    hub = Hub(tmp / "hub")
    collab = None
    readers = None
    users = [u for u in USERS + EXTRA_USERS if u != "alice"]
    try:
        hub.start()
        for user in EXTRA_USERS:
            hub.create_user(user)
        collab = CollabService(hub, tmp / "collab", extra_args=["--log-level=WARN"])
        collab.start()
        url = collab.public_url
        api = Api(url, hub.token("alice"))
        nb = api.create("bench widgets ui", notebook([{"id": "c0", "source": SOURCE}, {"id": "c1", "source": RAN}]), mode="0755", default_cell_mode="0755")["id"]
        api.call("POST", f"api/notebooks/{nb}/cells/c0/execute?wait=1")
        readers = Readers(url, [hub.token(users[i % len(users)]) for i in range(args.clients)], nb)
        readers.thread.start()
        assert readers.ready.wait(180), "the Python readers did not connect"
        with sync_playwright() as pw:
            browser = launch(pw)
            pages: list[Any] = []
            _, alice = login(browser, url, "alice")
            for i in range(args.pages):
                _, page = login(browser, url, users[i % len(users)])
                pages.append(page)
            for page in [alice, *pages]:
                page.goto(f"{url}notebooks/{nb}")
                page.wait_for_selector("body[data-ready=true]", timeout=60_000)
                page.locator('.cell[data-cell-id="c0"] .widget-slider .noUi-handle').wait_for(timeout=60_000)
                page.evaluate(WATCH_JS)
            sent = drag(alice, args.keys, args.rate)
            last = max(sent)
            for page in [alice, *pages]:
                page.wait_for_function(f"() => {last} in window.__out", timeout=60_000)
            readout = [x for p in pages for x in latencies(sent, p.evaluate("() => window.__shown"), last)]
            output = [x for p in pages for x in latencies(sent, p.evaluate("() => window.__out"), last)]
            own = latencies(sent, alice.evaluate("() => window.__out"), last)
            outputs = api.call("POST", f"api/notebooks/{nb}/cells/c1/execute?wait=1")["outputs"]
            ran = {int(v): t for v, t in json.loads("".join(o.get("text", "") for o in outputs)).items()}
            to_kernel = latencies(sent, {str(v): t for v, t in ran.items()}, last)
            from_kernel = []  # each value the kernel ran, until each other page showed its output
            for page in pages:
                shown = page.evaluate("() => window.__out")
                from_kernel += [shown[str(v)] - t for v, t in ran.items() if v in sent and str(v) in shown]
            print(f"{args.keys} key presses at {args.rate:g}/s on alice's slider; {args.pages} other pages and {args.clients} Python clients follow")
            print(f"load average {os.getloadavg()[0]:.2f}")
            print(f"  readout on another page (no kernel):        {fmt(readout)}")
            print(f"  output on another page (kernel + fan-out):  {fmt(output)}")
            print(f"  kernel round trip, alice's own page:         {fmt(own)}")
            print(f"  ... keydown until the kernel runs it:        {fmt(to_kernel)}")
            print(f"  ... the kernel ran it until another page:    {fmt(from_kernel)}")
            browser.close()
    finally:
        if readers is not None:
            readers.stop.set()
            readers.thread.join(30)
        if collab is not None:
            collab.stop()
        hub.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
