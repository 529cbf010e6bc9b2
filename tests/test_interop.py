"""Interop: a Node.js client on yjs + y-protocols beside the Python client, through the real Hub.

The Node client (``tests/js/interop_client.mjs``, the stack the browser UI uses) and a
:class:`~hub_collab.client.NotebookConnection` open the same notebook through the proxy,
edit the same cell concurrently with non-ASCII text, and must converge to the same
text; the Node client sees a cell the Python client inserts, and the Python client sees
the Node client's presence with the user name the server put there.

Text offsets differ between the two libraries, and the tests say so rather than hide
it: yjs indexes a ``Y.Text`` in UTF-16 code units (JavaScript strings), while pycrdt
0.14 (yrs with ``OffsetKind::Bytes``) indexes ``Text`` in UTF-8 bytes, and
``len(text)`` is a byte count. The CRDT updates themselves are the same on both sides
(item lengths are UTF-16 units in the encoding), so the documents converge; only the
index an API call takes differs. ``NotebookConnection.edit`` takes Python character
positions and converts them to pycrdt's bytes itself; :func:`utf16_index` converts a
character position for yjs, and :func:`pycrdt_index` is kept for the test that pins
pycrdt's own unit.

The Node packages are installed by the README's set-up command
(``npm ci --prefix tests/js``); if ``tests/js/node_modules`` is missing, the conftest's
``node_modules`` fixture runs that itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Text

from hub_collab.client import CollabClient

on_module_loop = pytest.mark.asyncio(loop_scope="module")

JS_DIR = Path(__file__).resolve().parent / "js"
NODE = shutil.which("node")

BASE = "héllo – 日本 🎉\nprint('ok')"
NOTEBOOK = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {},
    "cells": [
        {
            "id": "first",
            "cell_type": "code",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": BASE,
        },
        {
            "id": "second",
            "cell_type": "markdown",
            "metadata": {},
            "source": "# Ωmega\n\n– naïve café 🍵",
        },
    ],
}


def pycrdt_index(text: str, position: int) -> int:
    """Where character ``position`` of ``text`` is, as pycrdt's ``Text`` counts (UTF-8 bytes)."""
    return len(text[:position].encode("utf-8"))


def utf16_index(text: str, position: int) -> int:
    """Where character ``position`` of ``text`` is, as yjs's ``Y.Text`` counts (UTF-16 units)."""
    return len(text[:position].encode("utf-16-le")) // 2


class NodeClient:
    """``interop_client.mjs`` in a subprocess, driven by JSON lines (replies matched by id)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self._next = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(cls) -> NodeClient:
        assert NODE is not None
        proc = await asyncio.create_subprocess_exec(
            NODE,
            str(JS_DIR / "interop_client.mjs"),
            cwd=JS_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=1 << 24,  # a "state" reply holds every source
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            reply = json.loads(line)
            fut = self._pending.pop(reply.get("id"), None) if "id" in reply else None
            if fut is None:
                self.events.append(reply)
            elif not fut.done():
                fut.set_result(reply)
        err = await self.proc.stderr.read() if self.proc.stderr else b""
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(
                    ConnectionError(f"node client exited: {err.decode(errors='replace')}")
                )
        self._pending.clear()

    async def call(self, cmd: str, timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
        """Send a command; return its reply (raise if ``ok`` is false)."""
        assert self.proc.stdin is not None
        if self._reader.done():
            raise ConnectionError("node client has exited")
        self._next += 1
        ident = self._next
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = fut
        self.proc.stdin.write(json.dumps({"id": ident, "cmd": cmd, **fields}).encode() + b"\n")
        await self.proc.stdin.drain()
        reply = await asyncio.wait_for(fut, timeout)
        if not reply.get("ok"):
            raise RuntimeError(f"node client: {cmd} failed: {reply.get('error')}")
        return reply

    async def close(self) -> int:
        """Ask it to close and exit; return its exit status."""
        if self.proc.returncode is None:
            with contextlib.suppress(RuntimeError, TimeoutError, ConnectionError):  # it is going away anyway
                await self.call("close", timeout=60)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await asyncio.gather(self._reader, return_exceptions=True)
        return self.proc.returncode if self.proc.returncode is not None else -1


async def node_client(url: str, token: str) -> NodeClient:
    node = await NodeClient.start()
    try:
        await node.call("connect", url=url, token=token)
        await node.call("synced")
    except BaseException:
        await node.close()
        raise
    return node


def test_pycrdt_and_yjs_count_text_offsets_differently() -> None:
    """Pin what the conversions below rely on: pycrdt indexes ``Text`` in UTF-8 bytes.

    If pycrdt ever switches to code points or UTF-16, this fails and the conversions
    (and :meth:`NotebookConnection.edit`'s callers) must be revisited.
    """
    doc: Doc[Any] = Doc()
    text = doc.get("source", type=Text)
    text.insert(0, BASE)
    assert len(BASE) == 24  # code points
    assert utf16_index(BASE, len(BASE)) == 25  # what Y.Text.length says: 🎉 is a surrogate pair
    assert len(text) == len(BASE.encode()) == 34  # pycrdt: UTF-8 bytes
    position = BASE.index("本") + 1  # just after 日本
    text.insert(pycrdt_index(BASE, position), "X")
    assert str(text) == BASE[:position] + "X" + BASE[position:]
    # A Python character index used as is lands elsewhere: "日" is character 8, but byte
    # 8 is inside "–" (bytes 7..9), and yrs then silently appends at the *end* instead
    # of raising. (A delete starting inside a character panics: PanicException.)
    other: Doc[Any] = Doc()
    t2 = other.get("source", type=Text)
    t2.insert(0, BASE)
    t2.insert(BASE.index("日"), "Y")
    assert str(t2) == BASE + "Y"


@on_module_loop
async def test_node_and_python_edit_one_cell_and_converge(hub, collab, node_modules):
    alice = CollabClient(collab.public_url, hub.token("alice"))
    nb = await alice.create_notebook(
        "interop", content=json.loads(json.dumps(NOTEBOOK)), group="students", mode="0770"
    )
    url = alice.ws_url(nb["id"])
    node = await node_client(url, hub.token("bob"))
    try:
        async with alice.open(nb["id"]) as py:
            await py.synced()
            # the seeded non-ASCII sources arrive identically in yjs
            state = await node.call("sources")
            assert state["sources"] == {"first": BASE, "second": py.source("second")}
            assert [c["id"] for c in state["cells"]] == py.cell_ids() == ["first", "second"]

            # sequential edits at positions given in each library's own unit
            src = py.source("first")
            pos = src.index("本") + 1
            await node.call("edit", cell="first", index=utf16_index(src, pos), insert="ß")
            expected = src[:pos] + "ß" + src[pos:]
            await py.wait_for(lambda: py.source("first") == expected)
            src = py.source("first")
            pos = src.index("🎉") + 1  # after the astral character
            py.edit("first", pos, insert="✓")  # the client converts to pycrdt's bytes
            expected = src[:pos] + "✓" + src[pos:]
            await node.call("wait", cell="first", source=expected)
            # a delete across the surrogate pair from yjs, a delete of 日 from Python
            src = expected
            pos = src.index("🎉")
            # 🎉 is 2 UTF-16 units
            await node.call("edit", cell="first", index=utf16_index(src, pos), delete=2)
            expected = src[:pos] + src[pos + 1 :]
            await py.wait_for(lambda: py.source("first") == expected)
            src = expected
            pos = src.index("日")
            py.edit("first", pos, delete=1)
            expected = src[:pos] + src[pos + 1 :]
            await node.call("wait", cell="first", source=expected)
            settled = expected

            # concurrent edits: neither side waits for the other. Node types "日🎉" just
            # before "print" (an anchor it finds in its own UTF-16 string), Python types
            # "é–" just after "héllo" (converted to bytes); anchored at different
            # characters of the settled text, so the merged result is determined.
            rounds = 25
            sends = []
            for i in range(rounds):
                sends.append(
                    asyncio.ensure_future(
                        node.call("edit", cell="first", before="print", insert="日🎉")
                    )
                )
                cur = py.source("first")
                py.edit("first", cur.index("héllo") + len("héllo"), insert="é–")
                if i % 5 == 0:
                    await asyncio.sleep(0)
            await asyncio.gather(*sends)
            head, tail = settled.split("héllo", 1)
            pre, post = tail.split("print", 1)
            expected = head + "héllo" + "é–" * rounds + pre + "日🎉" * rounds + "print" + post
            await py.wait_for(lambda: py.source("first") == expected, timeout=20)
            reply = await node.call("wait", cell="first", source=expected, timeout_ms=20000)
            assert reply["source"] == py.source("first") == expected
            # and the service stored the same
            await py.sync()
            exported = await alice.export(nb["id"])
            assert exported["cells"][0]["source"] == expected
            assert (await node.call("state"))["errors"] == []
    finally:
        assert await node.close() == 0
        alice.close()


@on_module_loop
async def test_node_sees_python_cell_and_python_sees_node_presence(hub, collab, node_modules):
    alice = CollabClient(collab.public_url, hub.token("alice"))
    nb = await alice.create_notebook("interop-structure", group="students", mode="0770")
    node = await node_client(alice.ws_url(nb["id"]), hub.token("bob"))
    try:
        async with alice.open(nb["id"]) as py:
            await py.synced()
            c1 = await py.insert_cell(0, "code", "x = 'ünïcode ✨'")
            c2 = await py.insert_cell(0, "markdown", "# 見出し 🎉")
            reply = await node.call("wait", cell=c1, source="x = 'ünïcode ✨'")
            assert reply["source"] == "x = 'ünïcode ✨'"
            await node.call("wait", cell=c2, source="# 見出し 🎉")
            state = await node.call("sources")
            assert [c["id"] for c in state["cells"]] == [c2, c1]
            assert [c["cell_type"] for c in state["cells"]] == ["markdown", "code"]
            # Node edits the new cell; Python gets it
            await node.call("edit", cell=c2, after="見出し", insert=" ✔")
            await py.wait_for(lambda: py.source(c2) == "# 見出し ✔ 🎉")

            # presence: Node claims to be someone else; the server writes bob
            sent = await node.call(
                "awareness",
                state={
                    "user": {"name": "instructor", "color": "#00aa00"},
                    "cell": c1,
                    "cursor": {"anchor": 3},
                    "typing": True,
                    "secret": "x",
                },
            )
            node_id = sent["client_id"]
            await py.wait_for(lambda: (py.awareness.get(node_id) or {}).get("cell") == c1)
            seen = py.awareness[node_id]
            assert seen is not None
            assert seen["user"] == {"name": "bob", "color": "#00aa00"}
            assert seen["cursor"] == {"anchor": 3} and seen["typing"] is True
            assert "secret" not in seen
            # and the other way round: Node sees Python's presence, also rewritten
            py.set_awareness({"user": {"name": "mallory"}, "cell": c2})
            py_id = py.client_id_for_awareness

            async def node_sees_alice() -> dict[str, Any]:
                while True:
                    st = (await node.call("state"))["awareness"].get(str(py_id))
                    if st and st.get("cell") == c2:
                        return dict(st)
                    await asyncio.sleep(0.02)

            st = await asyncio.wait_for(node_sees_alice(), 10)
            assert st["user"]["name"] == "alice"
            # Node leaves: its presence is removed for Python
        assert await node.close() == 0
    finally:
        await node.close()
        alice.close()


@on_module_loop
async def test_node_presence_removed_when_it_leaves(hub, collab, node_modules):
    alice = CollabClient(collab.public_url, hub.token("alice"))
    nb = await alice.create_notebook("interop-leave", group="students", mode="0770")
    try:
        async with alice.open(nb["id"]) as py:
            await py.synced()
            node = await node_client(alice.ws_url(nb["id"]), hub.token("bob"))
            sent = await node.call("awareness", state={"cell": None, "status": "here"})
            node_id = sent["client_id"]
            await py.wait_for(lambda: (py.awareness.get(node_id) or {}).get("status") == "here")
            assert await node.close() == 0
            await py.wait_for(lambda: py.awareness.get(node_id, {}) is None)
    finally:
        alice.close()


async def test_node_joins_like_the_browser_in_one_frame_and_holds_every_doc(hub, collab, node_modules):
    """Subscribing to index and every readable cell right after welcome (from its caps):
    the yjs client holds everything, the hidden cell excluded, answered in several frames."""
    alice = CollabClient(collab.public_url, hub.token("alice"))
    cells = [{"id": f"j{i}", "cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": f"# {i} ünï\n" + "y" * 2000} for i in range(50)]
    nb = await alice.create_notebook("interop-join", content={"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}, group="students", mode="0770")
    await alice.set_permissions(nb["id"], "j7", mode="0600")
    node = await NodeClient.start()
    try:
        reply = await node.call("connect", url=alice.ws_url(nb["id"]), token=hub.token("bob"), all=True)
        assert reply["welcome_ms"] > 0
        synced = await node.call("synced")
        assert synced["cells"] == [c["id"] for c in cells]
        assert synced["since_connect_ms"] >= reply["welcome_ms"]
        state = await node.call("state")
        assert state["sources"] == {c["id"]: c["source"] for c in cells if c["id"] != "j7"}
        assert state["frames"] >= 3, "100 KB of sources should come in several frames"
        assert not state["errors"]
    finally:
        await node.close()
        alice.close()


@on_module_loop
async def test_comment_anchors_agree_between_yjs_and_the_server(hub, collab, node_modules):
    """Anchors made by yjs (as the browser makes them) and by the Python client, resolved by
    the server (``range``) and by yjs (``createAbsolutePositionFromRelativePosition``) after
    concurrent edits from both sides, non-ASCII and surrogate pairs included: the same
    indexes, in UTF-16 units."""
    alice = CollabClient(collab.public_url, hub.token("alice"))
    src = "héllo – 日本 🎉 wörld\nprint('ok') # 🎉🎉 end"
    content = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [{"id": "c", "cell_type": "code", "source": src, "metadata": {}, "outputs": [], "execution_count": None}],
    }
    nb = await alice.create_notebook("interop-anchors", content=content, group="students", mode="0770")
    node = await node_client(alice.ws_url(nb["id"]), hub.token("bob"))
    try:
        async with alice.open(nb["id"]) as py:
            await py.synced()
            anchors = []
            # from yjs: every interesting pair of UTF-16 positions, start assoc 0, end assoc -1
            length = utf16_index(src, len(src))
            for start, end in ((0, 3), (8, 12), (11, 14), (12, 20), (length - 3, length), (0, length)):
                a = (await node.call("relpos", cell="c", index=start, assoc=0))["relpos"]
                b = (await node.call("relpos", cell="c", index=end, assoc=-1))["relpos"]
                anchors.append({"start": a, "end": b})
            # from the Python client
            anchors.append(py.anchor("c", src.index("wörld"), src.index("wörld") + 5))
            threads = []
            for i, anchor in enumerate(anchors):
                ack = await py.comment_create("c", f"anchor {i}", anchor)
                threads.append(ack["thread"])
            # concurrent edits from both sides, around, inside and across the ranges
            await node.call("edit", cell="c", after="日本", insert="🎌X")
            py.edit("c", 0, insert="¡¿")
            await node.call("edit", cell="c", before="wörld", delete=3)
            await py.sync()
            py.edit("c", len(py.source("c")), insert=" ✔")
            await py.sync()
            final = py.source("c")
            await node.call("wait", cell="c", source=final, timeout_ms=20000)
            listed = {t["id"]: t for t in (await py.comment_list("c"))["threads"]}
            for thread, anchor in zip(threads, anchors, strict=True):
                server = listed[thread["id"]]["range"]
                start = (await node.call("abspos", cell="c", relpos=anchor["start"]))["index"]
                end = (await node.call("abspos", cell="c", relpos=anchor["end"]))["index"]
                assert server == {"start": start, "end": max(start, end)}, (thread["anchor"]["quote"], server, start, end)
            assert (await node.call("state"))["errors"] == []
    finally:
        assert await node.close() == 0
        alice.close()
