"""Browser benchmark of the web UI (headless Debian Chromium through the real Hub).

    .venv/bin/python benchmarks/bench_ui.py [--cells 1000] [--keys 200]

Prints:

* time until a notebook of ``--cells`` cells (code and markdown, with short
  outputs) is interactive: from navigation start until the index and every
  readable doc are synced and every cell is in the page (``window.hubCollab.readyAt``),
  and until a keystroke typed into the first cell is on screen;
* keystroke-to-screen latency between two browsers (alice types, bob's
  editor shows it): p50/p95/max over ``--keys`` keystrokes, measured from
  alice's ``keydown`` to the DOM mutation in bob's page (same machine clock);
* the JS heap of the big page (CDP ``Runtime.getHeapUsage``, after GC), before and after
  the scroll, and the DOM nodes alive after it (``Memory.getDOMCounters``: in the page or
  held by the page's scripts);
* scrolling the big notebook from top to bottom (one screen per animation frame):
  how long it takes, the longest frame, and the long tasks (over 50 ms, from
  Chromium's ``longtask`` entries) meanwhile; each scroll starts from a fresh load (the
  first cell active, its editor made). With ``--scrolls N``, N such scrolls, and the
  times of the frames of those neither profiled nor traced, pooled (p50, p99, p99.9,
  max, how many over 33 and 50 ms).

With ``--profile``, the first load and the first scroll are profiled (V8's sampling
profiler) and the functions that took their time are printed (self and total ms; build
the front end with ``node frontend/build.mjs --dev`` first for readable names). With
``--trace``, Chromium's own trace is recorded while scrolling, and each task longer than
``--long`` ms (50) is printed with where its time went (self time by trace event: script,
style, layout, garbage collection).

Goals (issue 16, with ``--cells 5000``): interactive ≤ 2 s, scrolling without
long tasks over 50 ms, p95 keystroke ≤ 50 ms.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from hubfixtures import CollabService, Hub  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402
from ui_helpers import Api, ensure_build, launch, login, notebook  # noqa: E402


def big_notebook(n: int) -> dict:
    cells = []
    for i in range(n):
        if i % 5 == 4:
            cells.append({"id": f"m{i}", "cell_type": "markdown", "source": f"## Step {i}\n\nSome *text* with `code` and a [link](https://example.org)."})
        else:
            cells.append({
                "id": f"c{i}",
                "source": f"x{i} = {i} * 2\nprint('value', x{i})",
                "execution_count": i,
                "outputs": [{"output_type": "stream", "name": "stdout", "text": f"value {i * 2}\n"}],
            })
    return notebook(cells)


# Scroll one screen per animation frame; long tasks come from Chromium's PerformanceObserver.
SCROLL_JS = """async () => {
    const long = [];
    const obs = new PerformanceObserver((list) => { for (const e of list.getEntries()) long.push(e.duration); });
    obs.observe({ type: 'longtask' });
    const cells = document.querySelector('.cells');
    const box = cells.scrollHeight > cells.clientHeight + 10 ? cells : document.scrollingElement;
    box.scrollTop = 0;
    const frame = () => new Promise((r) => requestAnimationFrame(r));
    await frame();
    const t0 = performance.now();
    let last = t0, worst = 0, frames = 0;
    const times = [];
    while (box.scrollTop + box.clientHeight < box.scrollHeight - 2 && frames < 100000) {
        box.scrollTop += box.clientHeight;
        await frame();
        const now = performance.now();
        worst = Math.max(worst, now - last);
        times.push(now - last);
        last = now;
        frames++;
    }
    await new Promise((r) => setTimeout(r, 200));  // let the last long-task entries arrive
    obs.disconnect();
    return { ms: last - t0, frames, worst, long, times };
}"""


TRACE_CATEGORIES = ["devtools.timeline", "disabled-by-default-devtools.timeline.stack", "disabled-by-default-devtools.timeline", "toplevel", "v8", "blink.user_timing"]


def _label(event: dict) -> str:
    data = event.get("args", {}).get("data", {}) or {}
    if event["name"] in ("FunctionCall", "EvaluateScript") and data.get("functionName"):
        return f"{event['name']} {data['functionName']} ({data.get('url', '').rsplit('/', 1)[-1]}:{data.get('lineNumber', '?')})"
    if event["name"] == "EventDispatch" and data.get("type"):
        return f"EventDispatch {data['type']}"
    return str(event["name"])


def long_task_breakdown(trace: bytes, over_ms: float = 50.0, top: int = 8) -> list[tuple[float, list[tuple[str, float]]]]:
    """Each task of the renderer's main thread longer than ``over_ms``: its length and the
    trace events that took its time (self time, ms, the largest first)."""
    events = json.loads(trace)
    events = events["traceEvents"] if isinstance(events, dict) else events
    main = {(e["pid"], e["tid"]) for e in events if e.get("ph") == "M" and e.get("name") == "thread_name" and e.get("args", {}).get("name") == "CrRendererMain"}
    spans = sorted(
        (e for e in events if e.get("ph") == "X" and (e.get("pid"), e.get("tid")) in main and "dur" in e),
        key=lambda e: (e["ts"], -e["dur"]),
    )
    found = []
    last_end = -1.0
    for task in spans:
        if task["name"] not in ("RunTask", "ThreadControllerImpl::RunTask") or task["dur"] < over_ms * 1000:
            continue
        if task["ts"] < last_end:
            continue  # a task inside one already counted
        last_end = task["ts"] + task["dur"]
        end = task["ts"] + task["dur"]
        inside = [e for e in spans if task["ts"] <= e["ts"] < end and e is not task and (e["pid"], e["tid"]) == (task["pid"], task["tid"])]
        self_time: dict[str, float] = {}
        stack: list[tuple[dict, list[float]]] = []
        for e in inside:
            while stack and e["ts"] >= stack[-1][0]["ts"] + stack[-1][0]["dur"]:
                done, child = stack.pop()
                self_time[_label(done)] = self_time.get(_label(done), 0.0) + (done["dur"] - child[0]) / 1000
            if stack:
                stack[-1][1][0] += e["dur"]
            stack.append((e, [0.0]))
        while stack:
            done, child = stack.pop()
            self_time[_label(done)] = self_time.get(_label(done), 0.0) + (done["dur"] - child[0]) / 1000
        ranked = sorted(self_time.items(), key=lambda kv: -kv[1])[:top]
        found.append((task["dur"] / 1000, ranked))
    return found


def profile_summary(profile: dict, top: int = 30) -> list[str]:
    """The functions of a V8 CPU profile by self time, with their total (self and what
    they called) time, in ms."""
    nodes = {n["id"]: n for n in profile["nodes"]}
    parent = {c: n["id"] for n in profile["nodes"] for c in n.get("children", [])}
    own: dict[int, float] = {}
    for node_id, delta in zip(profile["samples"], profile["timeDeltas"], strict=True):
        own[node_id] = own.get(node_id, 0.0) + delta / 1000

    def label(node: dict) -> str:
        frame = node["callFrame"]
        return f"{frame['functionName'] or '(anonymous)'} {frame['url'].rsplit('/', 1)[-1].split('?')[0]}:{frame['lineNumber'] + 1}"

    self_ms: dict[str, float] = {}
    total_ms: dict[str, float] = {}
    for node_id, ms in own.items():
        name = label(nodes[node_id])
        self_ms[name] = self_ms.get(name, 0.0) + ms
        seen = set()
        at: int | None = node_id
        while at is not None:
            name = label(nodes[at])
            if name not in seen:  # a recursive function counts once
                seen.add(name)
                total_ms[name] = total_ms.get(name, 0.0) + ms
            at = parent.get(at)
    lines = [f"{'self ms':>9} {'total ms':>9}  function"]
    for name, ms in sorted(self_ms.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{ms:9.1f} {total_ms[name]:9.1f}  {name}")
    lines.append("by total time:")
    for name, ms in sorted(total_ms.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{self_ms.get(name, 0.0):9.1f} {ms:9.1f}  {name}")
    return lines


def start_profiler(context, page):
    """V8's sampling profiler on ``page``, started (every 200 µs)."""
    profiler = context.new_cdp_session(page)
    profiler.send("Profiler.enable")
    profiler.send("Profiler.setSamplingInterval", {"interval": 200})
    profiler.send("Profiler.start")
    return profiler


def stop_profiler(profiler) -> str:
    """Stop a profiler of start_profiler: where the time went, by function."""
    summary = "\n".join(profile_summary(profiler.send("Profiler.stop")["profile"]))
    profiler.detach()
    return summary


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=1000)
    ap.add_argument("--keys", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3, help="page loads of the big notebook")
    ap.add_argument("--profile", action="store_true", help="profile the first load's and the first scroll's JavaScript and print where its time went")
    ap.add_argument("--scrolls", type=int, default=1, help="scrolls of the big notebook, each from a fresh load (the frames' times are pooled)")
    ap.add_argument("--trace", action="store_true", help="record Chromium's trace while scrolling and print where each long task's time went")
    ap.add_argument("--long", type=float, default=50.0, help="with --trace: break down the tasks longer than this (ms)")
    ap.add_argument("--trace-file", type=Path, help="with --trace: also save the scrolling's trace there (opens in Chromium's DevTools)")
    args = ap.parse_args()
    ensure_build()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    hub = Hub(tmp / "hub")
    collab = None
    try:
        hub.start()
        collab = CollabService(hub, tmp / "collab")
        collab.start()
        url = collab.public_url
        alice_api = Api(url, hub.token("alice"))
        big = alice_api.create("big", big_notebook(args.cells), group="students", mode="0770")
        small = alice_api.create("keys", notebook([{"id": "k1", "source": ""}]), group="students", mode="0770")
        with sync_playwright() as pw:
            browser = launch(pw)
            ctx_a, alice = login(browser, url, "alice")
            ctx_b, bob = login(browser, url, "bob")

            # -- time to interactive ------------------------------------------------------
            ready, typed = [], []
            for run in range(args.runs):
                if args.trace and run == 0:
                    browser.start_tracing(page=alice, categories=TRACE_CATEGORIES)
                profiler = start_profiler(ctx_a, alice) if args.profile and run == 0 else None
                alice.goto(f"{url}notebooks/{big['id']}")
                alice.wait_for_selector("body[data-ready=true]", timeout=60_000)
                if profiler is not None:
                    print("first load, JavaScript by function:")
                    print(stop_profiler(profiler))
                if args.trace and run == 0:
                    loading = long_task_breakdown(browser.stop_tracing(), over_ms=0.0, top=1000)
                    total: dict[str, float] = {}
                    for _took, ranked in loading:
                        for name, ms in ranked:
                            total[name] = total.get(name, 0.0) + ms
                    print(f"first load, the page's main thread: {sum(t for t, _ in loading):.0f} ms in {len(loading)} tasks; where it went:")
                    for name, ms in sorted(total.items(), key=lambda kv: -kv[1])[:25]:
                        print(f"  {ms:8.1f} ms  {name}")
                ready_ms = alice.evaluate("() => window.hubCollab.readyAt")
                first = alice.locator(".cell").first
                first.locator(".cm-content").click()
                alice.keyboard.press("Control+End")
                alice.keyboard.type("#")
                first.locator(".cm-content").filter(has_text="#").wait_for()
                typed_ms = alice.evaluate("() => performance.now()")
                ready.append(ready_ms)
                typed.append(typed_ms)
                alice.keyboard.press("Backspace")
            n_cells = args.cells
            in_page = alice.locator(".cell").count()
            cdp = ctx_a.new_cdp_session(alice)
            cdp.send("HeapProfiler.collectGarbage")
            heap = cdp.send("Runtime.getHeapUsage")
            dom_nodes = alice.evaluate("() => document.getElementsByTagName('*').length")
            print(f"notebook of {n_cells} cells ({args.runs} loads, from navigation start):")
            print(f"  all docs synced and every cell shown: median {statistics.median(ready):.0f} ms (min {min(ready):.0f}, max {max(ready):.0f})")
            print(f"  ... and a keystroke in the first cell on screen: median {statistics.median(typed):.0f} ms")
            print(f"  JS heap used {heap['usedSize'] / 1e6:.1f} MB of {heap['totalSize'] / 1e6:.1f} MB; {dom_nodes} DOM elements, {in_page} cells in the page")
            frames: list[float] = []  # of the scrolls neither profiled nor traced
            for k in range(args.scrolls):
                alice.goto(f"{url}notebooks/{big['id']}")
                alice.wait_for_selector("body[data-ready=true]", timeout=60_000)
                alice.wait_for_timeout(1000)
                if args.trace and k == 0:
                    browser.start_tracing(page=alice, categories=TRACE_CATEGORIES)
                profiler = start_profiler(ctx_a, alice) if args.profile and k == 0 else None
                scroll = alice.evaluate(SCROLL_JS)
                if profiler is None and not (args.trace and k == 0):
                    frames += scroll["times"]
                print(f"scrolling the {n_cells} cells top to bottom ({scroll['frames']} frames of one screen each):")
                print(f"  {scroll['ms']:.0f} ms, longest frame {scroll['worst']:.0f} ms; {len(scroll['long'])} long tasks over 50 ms" + (f" (longest {max(scroll['long']):.0f} ms)" if scroll["long"] else ""))
                if profiler is not None:
                    print("  JavaScript while scrolling, by function:")
                    print(stop_profiler(profiler))
                if args.trace and k == 0:
                    trace = browser.stop_tracing()
                    if args.trace_file:
                        args.trace_file.write_bytes(trace)
                    for took, ranked in long_task_breakdown(trace, over_ms=args.long):
                        print(f"  a task of {took:.0f} ms: " + "; ".join(f"{name} {ms:.1f}" for name, ms in ranked))
                    per_frame: dict[str, float] = {}
                    for _took, ranked in long_task_breakdown(trace, over_ms=0.0, top=1000):
                        for name, ms in ranked:
                            per_frame[name] = per_frame.get(name, 0.0) + ms / max(scroll["frames"], 1)
                    print("  per frame, on average: " + "; ".join(f"{name} {ms:.1f} ms" for name, ms in sorted(per_frame.items(), key=lambda kv: -kv[1])[:8]))
            if frames:
                print(
                    f"frames of the scrolls neither profiled nor traced ({len(frames)}): p50 {pct(frames, 50):.1f} ms, p99 {pct(frames, 99):.1f} ms, p99.9 {pct(frames, 99.9):.1f} ms, "
                    f"max {max(frames):.1f} ms; over 33 ms: {sum(f > 33 for f in frames)}, over 50 ms: {sum(f > 50 for f in frames)}"
                )
            # (after the trace: the collection asked for here is the benchmark's, not the page's)
            cdp.send("HeapProfiler.collectGarbage")
            heap_after = cdp.send("Runtime.getHeapUsage")
            counters = cdp.send("Memory.getDOMCounters")
            print(f"  after the last scroll: JS heap used {heap_after['usedSize'] / 1e6:.1f} MB; {counters['nodes']} DOM nodes alive (in the page or held), {counters['jsEventListeners']} listeners")

            # -- keystroke latency between two browsers -----------------------------------
            for page in (alice, bob):
                page.goto(f"{url}notebooks/{small['id']}")
                page.wait_for_selector("body[data-ready=true]", timeout=60_000)
            bob.locator('.cell[data-cell-id="k1"] .cell-preview, .cell[data-cell-id="k1"] .cm-content').first.click()
            bob.keyboard.press("Escape")
            alice.locator('.cell[data-cell-id="k1"] .cell-preview, .cell[data-cell-id="k1"] .cm-content').first.click()
            alice.locator('.cell[data-cell-id="k1"] .cm-content').click()
            bob.evaluate(
                """() => {
                window.__seen = {};
                const el = document.querySelector('.cell[data-cell-id="k1"] .cm-content')
                    || document.querySelector('.cell[data-cell-id="k1"] .cell-preview');
                const target = el.closest('.cell');
                new MutationObserver(() => {
                    // the text only: not the placeholder nor alice's caret label
                    const box = target.querySelector('.cm-content, .cell-preview').cloneNode(true);
                    box.querySelectorAll('.remote-caret, .cm-placeholder').forEach((e) => e.remove());
                    const t = box.textContent.replace(/\\u200b/g, '');
                    if (!(t.length in window.__seen)) window.__seen[t.length] = Date.now();
                }).observe(target, {subtree: true, childList: true, characterData: true});
            }"""
            )
            alice.evaluate(
                """() => {
                window.__keys = [];
                document.addEventListener('keydown', () => window.__keys.push(Date.now()), true);
            }"""
            )
            for i in range(args.keys):
                alice.keyboard.type("abcdefghij"[i % 10])
                time.sleep(0.02)
            bob.wait_for_timeout(500)
            keys = alice.evaluate("() => window.__keys")
            seen = bob.evaluate("() => window.__seen")
            lat = [seen[str(i + 1)] - keys[i] for i in range(len(keys)) if str(i + 1) in seen]
            print(f"keystroke to the other browser's screen ({len(lat)} of {args.keys} keys matched):")
            print(f"  p50 {pct(lat, 50):.0f} ms, p95 {pct(lat, 95):.0f} ms, max {max(lat):.0f} ms")
            ctx_a.close()
            ctx_b.close()
            browser.close()
    finally:
        if collab is not None:
            collab.stop()
        hub.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
