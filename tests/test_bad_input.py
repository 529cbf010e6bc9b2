"""Hostile and broken input (issue 2, "Bad input"), through the real Hub and proxy.

Every case proves two things:

(a) the sender gets a clear answer: an ``error`` frame with a stable code (plus
    ``resync`` for refused writes), or a 4xx JSON ``{"status", "code", "message"}``;
(b) nothing else moves: the notebook exports exactly as before, a second client
    (the *witness*, connected to the same notebook throughout) receives no frame
    at all because of it and its copy is unchanged, and the offender's connection
    still works afterwards (where it is not meant to be closed).

"Receives no frame" is checked with fences: the offender's ``sync`` command is
acknowledged only after the server has handled everything it sent before, and a
``sync`` round trip on the witness then flushes anything the server may have
queued for it; the only frame the witness may have received is that ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import sqlite3
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map, Text
from tornado.httpclient import HTTPClientError, HTTPRequest, HTTPResponse
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from hub_collab.client import CollabClient, NotebookConnection
from hub_collab.documents import protocol as p
from hub_collab.documents.notebook import init_index, init_out

pytestmark = pytest.mark.asyncio(loop_scope="module")

CONTENT = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    },
    "cells": [
        {
            "id": "c1",
            "cell_type": "code",
            "metadata": {"tags": ["one"]},
            "execution_count": 1,
            "source": "x = 1\nx",
            "outputs": [
                {
                    "output_type": "execute_result",
                    "execution_count": 1,
                    "data": {"text/plain": "1"},
                    "metadata": {},
                }
            ],
        },
        {"id": "c2", "cell_type": "markdown", "metadata": {}, "source": "# two"},
        {
            "id": "scratch",
            "cell_type": "code",
            "metadata": {},
            "execution_count": None,
            "source": "",
            "outputs": [],
        },
    ],
}

#: ids that must never reach the store: path-like, dotted, spaced, unicode, too long
BAD_IDS = [
    "..%2F..",
    "..%2F..%2Fetc%2Fpasswd",
    "a%2Fb",
    "%2E%2E",
    "a.b",
    "a%20b",
    "%C3%A9t%C3%A9",
    "%00",
    "x" * 65,
]


def error_body(resp: HTTPResponse, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert ``resp`` is the JSON error shape with ``status`` (and ``code``); return it."""
    body = resp.body or b""
    assert resp.code == status, f"expected {status}, got {resp.code}: {body[:300]!r}"
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers.get(
        "Content-Type"
    )
    data = json.loads(body)
    assert set(data) == {"status", "code", "message"}, data
    assert data["status"] == status
    assert isinstance(data["code"], str) and data["code"]
    assert isinstance(data["message"], str) and data["message"]
    if code is not None:
        assert data["code"] == code, data
    return dict(data)


async def rest(
    client: CollabClient,
    method: str,
    path: str,
    body: bytes | str | None = None,
    *,
    content_type: str | None = "application/json",
    headers: dict[str, str] | None = None,
) -> HTTPResponse:
    """A raw REST call (no client-side validation or normalisation); any status is returned."""
    hdrs = {"Authorization": f"token {client.token}", **(headers or {})}
    if content_type is not None:
        hdrs["Content-Type"] = content_type
    data = body.encode() if isinstance(body, str) else body
    if data is None and method in ("POST", "PUT", "PATCH"):
        data = b""
    req = HTTPRequest(
        client.base_url + path,
        method=method,
        headers=hdrs,
        body=data,
        request_timeout=120,
        follow_redirects=False,
        allow_nonstandard_methods=True,
    )
    return await client.http.fetch(req, raise_error=False)


def forged(conn: NotebookConnection, name: str, mutate: Callable[[Doc[Any]], None]) -> bytes:
    """An update that ``mutate`` makes to a scratch copy of ``conn``'s ``name`` doc."""
    scratch: Doc[Any] = Doc()
    scratch.apply_update(conn.docs[name].get_update())
    before = scratch.get_state()
    with scratch.transaction():
        mutate(scratch)
    update = scratch.get_update(before)
    assert len(update) > 2
    return update


@dataclass
class Env:
    alice: CollabClient  # the notebook's owner, and the offender
    bob: CollabClient  # the witness
    dave: CollabClient  # a stranger, owner of a private notebook
    nb_id: str
    other_nb: str
    a: NotebookConnection
    b: NotebookConnection
    max_message_size: int

    def view(self, conn: NotebookConnection | None = None) -> dict[str, Any]:
        conn = conn or self.b
        return {
            "cells": conn.cells(),
            "sources": {cid: conn.source(cid) for cid in conn.cell_ids()},
            "outputs": {cid: conn.outputs(cid) for cid in conn.cell_ids()},
            "meta": conn.docs["index"].get("meta", type=Map).to_py(),
        }


@pytest.fixture(scope="module")
async def env(hub: Any, collab: Any) -> AsyncIterator[Env]:
    alice = CollabClient(collab.public_url, hub.token("alice"), request_timeout=120)
    bob = CollabClient(collab.public_url, hub.token("bob"), request_timeout=120)
    dave = CollabClient(collab.public_url, hub.token("dave"), request_timeout=120)
    nb = await alice.create_notebook(
        "bad input", content=copy.deepcopy(CONTENT), group="students", mode="0770"
    )
    other = await dave.create_notebook(
        "dave's",
        content={
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {},
            "cells": [{"id": "davecell", "cell_type": "raw", "metadata": {}, "source": "dave"}],
        },
        mode="0700",
    )
    a, b = alice.open(nb["id"]), bob.open(nb["id"])
    await a.connect()
    await b.connect()
    await a.synced()
    await b.synced()
    # a move is a delete and an insert in `index`: its delete set is no longer empty
    await a.move_cell("c2", 0)
    await a.move_cell("c2", 1)
    await b.wait_for(lambda: b.cell_ids() == ["c1", "c2", "scratch"])
    await a.wait_for(lambda: a.cell_ids() == ["c1", "c2", "scratch"])
    env = Env(
        alice, bob, dave, nb["id"], other["id"], a, b, int(a.welcome["limits"]["max_message_size"])
    )
    try:
        yield env
    finally:
        await a.close()
        await b.close()
        for c in (alice, bob, dave):
            c.close()


async def reconnect_if_closed(env: Env) -> None:
    """Keep one failure (a killed connection) from cascading into the next tests."""
    if env.a.closed.is_set():
        env.a = env.alice.open(env.nb_id)
        await env.a.connect()
        await env.a.synced()


async def rejected(
    env: Env,
    send: Callable[[], None],
    codes: list[str],
    *,
    resync: list[str] | None = None,
    offender: NotebookConnection | None = None,
) -> list[dict[str, Any]]:
    """Send bad input from ``offender`` (default: alice's connection) and prove (a) and (b)."""
    await reconnect_if_closed(env)
    off = offender or env.a
    export_before = await env.alice.export(env.nb_id)
    view_before = env.view()
    witness_frames = env.b.frames_received
    witness_msgs = len(env.b.messages)
    start = len(off.messages)
    send()
    await off.sync()
    # (a fresh connection's kernel state may arrive at any time: not part of the answer)
    new = [m for m in off.messages[start:] if m["type"] != "kernel"]
    errors = [m for m in new if m["type"] == "error"]
    assert [e["code"] for e in errors] == codes, new
    for e in errors:
        assert isinstance(e["message"], str) and e["message"]
    assert [m["doc"] for m in new if m["type"] == "resync"] == (resync or [])
    assert all(m["type"] in ("error", "resync", "ack") for m in new), new
    # the witness got nothing but the ack of its own fence, and its copy is unchanged
    await env.b.sync()
    assert env.b.frames_received == witness_frames + 1
    assert [m["type"] for m in env.b.messages[witness_msgs:]] == ["ack"]
    assert env.b.errors == []
    assert env.view() == view_before
    assert await env.alice.export(env.nb_id) == export_before
    # a refused doc comes back: the client subscribes again and holds the server's copy
    await off.synced()
    return errors


async def still_works(env: Env, conn: NotebookConnection | None = None) -> None:
    """The offender's connection still edits, and the witness sees the edit."""
    conn = conn or env.a
    await conn.synced()
    mark = f"<{len(conn.source('scratch'))}>"
    conn.edit("scratch", len(conn.source("scratch")), insert=mark)
    await env.b.wait_for(lambda: env.b.source("scratch") == conn.source("scratch"), timeout=30)
    assert env.b.source("scratch").endswith(mark)


# -- binary frames ---------------------------------------------------------------------


def _two_entries_second_truncated() -> bytes:
    doc: Doc[Any] = Doc()
    doc.get("source", type=Text).insert(0, "SHOULD-NOT-APPLY")
    good = p.sync_update("cell:c1", doc.get_update())
    return good + p.sync_update("cell:c1", doc.get_update())[:-4]


MALFORMED = {
    "empty": b"",
    "truncated varuint": b"\x80",
    "varuint too long": b"\xff" * 12,
    "doc name longer than frame": b"\x05ind",
    "invalid utf-8 doc name": b"\x02\xff\xfe\x00\x00\x00",
    "empty doc name": b"\x00\x00\x00\x00",
    "doc name too long": p.encode_var_string("cell:" + "a" * 90) + b"\x00\x00\x00",
    "unknown message type": p.encode_var_string("index") + b"\x07\x00",
    "unknown sync step": p.encode_var_string("index") + b"\x00\x05\x00",
    "missing sync step": p.encode_var_string("index") + b"\x00",
    "truncated payload": p.sync_step1("index", b"\x00\x00\x00")[:-2],
    "second entry truncated": _two_entries_second_truncated(),
    "trailing garbage": p.sync_step1("index", b"\x00") + b"\x05",
}


@pytest.mark.parametrize("frame", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_and_truncated_frames(env: Env, frame: bytes) -> None:
    [err] = await rejected(env, lambda: env.a.send_raw(frame), ["malformed_frame"])
    assert "doc" not in err
    assert "SHOULD-NOT-APPLY" not in env.a.source("c1")
    await still_works(env)


UNKNOWN_DOCS = [
    "nope",
    "cell:",
    "out:",
    "cell:nosuchcell",
    "out:nosuchcell",
    "cell:../c1",
    "cell:a/b",
    "cell:c1 ",
    "cell:é",
    "Index",
    "cell:" + "x" * 65,
]


@pytest.mark.parametrize("name", UNKNOWN_DOCS)
async def test_unknown_doc_names(env: Env, name: str) -> None:
    frame = p.sync_step1(name, b"\x00")
    [err] = await rejected(env, lambda: env.a.send_raw(frame), ["unknown_doc"])
    assert err["doc"] == name
    # an update to it is refused the same way (and nothing is created)
    doc: Doc[Any] = Doc()
    doc.get("source", type=Text).insert(0, "x")
    await rejected(
        env, lambda: env.a.send_raw(p.sync_update(name, doc.get_update())), ["unknown_doc"]
    )
    await still_works(env)


async def test_a_doc_of_another_notebooks_cell_is_unknown(env: Env) -> None:
    await rejected(
        env, lambda: env.a.send_raw(p.sync_step1("cell:davecell", b"\x00")), ["unknown_doc"]
    )
    await rejected(
        env, lambda: env.a.send_raw(p.sync_step1("out:davecell", b"\x00")), ["unknown_doc"]
    )


async def test_one_bad_entry_does_not_spoil_the_others(env: Env) -> None:
    """A batch with an unknown doc between two good subscriptions: both good ones answered."""
    replies: list[list[p.Entry]] = []

    def listen(kind: str, data: Any) -> None:
        if kind == "binary":
            replies.append(p.decode_frame(data))

    env.a.listeners.append(listen)
    try:
        frame = (
            p.sync_step1("cell:c2", b"\x00")
            + p.sync_step1("cell:nosuch", b"\x00")
            + p.sync_step1("out:c1", b"\x00")
        )
        await rejected(env, lambda: env.a.send_raw(frame), ["unknown_doc"])
    finally:
        env.a.listeners.remove(listen)
    answered = {(e.doc, e.sub) for batch in replies for e in batch}
    assert ("cell:c2", p.SYNC_STEP2) in answered and ("out:c1", p.SYNC_STEP2) in answered
    assert not any(doc == "cell:nosuch" for doc, _ in answered)


# -- writes to server-only docs ------------------------------------------------------


def _index_change(doc: Doc[Any]) -> None:
    cells, meta = init_index(doc)
    cells[0]["mode"] = "0777"
    meta["metadata"] = {"forged": True}


def _index_new_cell(doc: Doc[Any]) -> None:
    cells, _ = init_index(doc)
    cells.append(
        Map(
            {
                "id": "forged",
                "cell_type": "code",
                "owner": "alice",
                "group": "",
                "mode": "0777",
                "acl": [],
            }
        )
    )


def _outputs_change(doc: Doc[Any]) -> None:
    outputs, state = init_out(doc)
    outputs.append(Map({"output_type": "stream", "name": "stdout", "text": "forged"}))
    state["execution_count"] = 99


@pytest.mark.parametrize("step", [p.SYNC_UPDATE, p.SYNC_STEP2], ids=["update", "step2"])
@pytest.mark.parametrize(
    "name, mutate",
    [("index", _index_change), ("index", _index_new_cell), ("out:c1", _outputs_change)],
    ids=["index-fields", "index-insert", "outputs"],
)
async def test_writes_to_index_and_outputs_are_forbidden(
    env: Env, step: int, name: str, mutate: Callable[[Doc[Any]], None]
) -> None:
    update = forged(env.a, name, mutate)
    frame = p.encode_sync(name, step, update)
    [err] = await rejected(env, lambda: env.a.send_raw(frame), ["forbidden"], resync=[name])
    assert err["doc"] == name
    # the REST view agrees: no forged cell, modes unchanged
    model = await env.alice.get_notebook(env.nb_id)
    assert [c["id"] for c in model["cells"]] == ["c1", "c2", "scratch"]
    assert model["cells"][0]["mode"] != "0777"
    await still_works(env)


@pytest.mark.parametrize("name", ["index", "out:c1"])
async def test_noop_step2_to_server_docs_is_accepted_silently(env: Env, name: str) -> None:
    """What every y-protocols client answers to the server's step 1: accepted without a word."""
    local = env.a.docs[name]
    server_sv = local.get_state()  # synced: the server's state vector equals ours
    delete_set_only = local.get_update(server_sv)
    if name == "index":
        assert len(delete_set_only) > 2, "the index has deletions (cells were moved)"
    full_state = local.get_update()
    for payload in (b"\x00\x00", delete_set_only, full_state):
        for step in (p.SYNC_STEP2, p.SYNC_UPDATE):
            await rejected(
                env,
                lambda payload=payload, step=step: env.a.send_raw(
                    p.encode_sync(name, step, payload)
                ),
                [],
            )
    # and it stayed subscribed: a later server change still arrives
    assert name in env.a.docs and name in env.a.synced_docs


async def test_noop_step2_to_a_read_only_cell_is_accepted_silently(env: Env) -> None:
    """A reader (no w) of a cell answering the y-protocols way is not an error."""
    await env.alice.set_permissions(env.nb_id, "c2", mode="0644")
    try:
        await env.b.wait_for(lambda: env.b.caps.get("cells", {}).get("c2") == "r--")
        await env.b.synced()
        local = env.b.docs["cell:c2"]
        payload = local.get_update(local.get_state())
        start = len(env.b.messages)
        env.b.send_raw(p.sync_step2("cell:c2", payload))
        env.b.send_raw(p.sync_step2("cell:c2", local.get_update()))
        await env.b.sync()
        assert [m["type"] for m in env.b.messages[start:]] == ["ack"]
    finally:
        await env.alice.set_permissions(env.nb_id, "c2", mode="0664")
        await env.b.wait_for(lambda: env.b.caps.get("cells", {}).get("c2") == "rw-")


async def test_updates_that_do_not_decode(env: Env) -> None:
    garbage = b"\x05\x01\x02\x03garbage\xff\xff"
    for step in (p.SYNC_UPDATE, p.SYNC_STEP2):
        [err] = await rejected(
            env,
            lambda step=step: env.a.send_raw(p.encode_sync("cell:c1", step, garbage)),
            ["invalid_update"],
            resync=["cell:c1"],
        )
        assert err["doc"] == "cell:c1"
    # a server-only doc: refused (it is not a no-op), never applied
    await rejected(
        env,
        lambda: env.a.send_raw(p.sync_update("out:c1", garbage)),
        ["forbidden"],
        resync=["out:c1"],
    )
    # a state vector that does not decode: a clear error, no resync (nothing was written)
    [err] = await rejected(
        env, lambda: env.a.send_raw(p.sync_step1("cell:c1", b"\xff")), ["invalid_update"]
    )
    assert err["doc"] == "cell:c1"
    await still_works(env)


async def test_updates_before_subscribing_are_refused(env: Env) -> None:
    conn = env.alice.open(env.nb_id, subscribe_all=False)
    await conn.connect()
    try:
        await conn.wait_for(lambda: "index" in conn.synced_docs)
        doc: Doc[Any] = Doc()
        doc.apply_update(env.a.docs["cell:c1"].get_update())
        sv = doc.get_state()
        doc.get("source", type=Text).insert(0, "unsubscribed ")
        update = doc.get_update(sv)
        [err] = await rejected(
            env,
            lambda: conn.send_raw(p.sync_update("cell:c1", update)),
            ["not_subscribed"],
            offender=conn,
        )
        assert err["doc"] == "cell:c1"
        assert not env.a.source("c1").startswith("unsubscribed")
    finally:
        await conn.close()


async def test_update_growing_a_cell_past_max_doc_bytes(env: Env) -> None:
    big = "y" * (3 * 1024 * 1024)
    update = forged(env.a, "cell:scratch", lambda d: d.get("source", type=Text).insert(0, big))
    assert len(update) < env.max_message_size
    await rejected(
        env,
        lambda: env.a.send_raw(p.sync_update("cell:scratch", update)),
        ["too_large"],
        resync=["cell:scratch"],
    )
    assert "yyyy" not in env.a.source("scratch")
    await still_works(env)


# -- oversized messages ------------------------------------------------------------------


async def test_oversized_binary_and_text_messages_are_refused(env: Env) -> None:
    limit = env.max_message_size
    frame = p.sync_update("cell:c1", b"\x00" * (limit + 1))
    assert limit < len(frame) <= 2 * limit
    [err] = await rejected(env, lambda: env.a.send_raw(frame), ["too_large"])
    assert str(limit) in err["message"]
    text = json.dumps(
        {"type": "insert_cell", "index": 0, "cell_type": "code", "source": "z" * (limit + 10)}
    )
    await rejected(env, lambda: env.a.send_raw(text), ["too_large"])
    assert env.a.cell_ids() == ["c1", "c2", "scratch"]
    await still_works(env)


def stored_docs(collab: Any, nb_id: str) -> tuple[Any, ...]:
    """What the service's database holds of a notebook's docs: its newest update-log row
    and its checkpoints (read from the database file itself)."""
    path = collab.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        newest = db.execute(
            "SELECT max(id), count(*) FROM collab_doc_updates WHERE notebook_id = ?", (nb_id,)
        ).fetchone()
        checkpoints = db.execute(
            "SELECT doc, upto, length(data) FROM collab_doc_checkpoints WHERE notebook_id = ?"
            " ORDER BY doc",
            (nb_id,),
        ).fetchall()
    return (newest, checkpoints)


def log_since(path: Path, start: int) -> bytes:
    with open(path, "rb") as log:
        log.seek(start)
        return log.read()


async def closed_for_size(ws: WebSocketClientConnection, timeout: float = 60) -> tuple[Any, Any]:
    """Read (and drop) frames until the server closes; its close code and reason."""

    async def until_closed() -> None:
        message = ""
        while message is not None:
            message = await ws.read_message()

    await asyncio.wait_for(until_closed(), timeout)
    return ws.close_code, ws.close_reason


def client_frame(opcode: int, payload_length: int, *, final: bool = True) -> bytes:
    """A client frame header (RFC 6455 5.2) with a zero mask: the payload is sent as is."""
    first = (0x80 if final else 0) | opcode
    return bytes([first, 0x80 | 127]) + struct.pack(">Q", payload_length) + b"\x00" * 4


async def test_messages_over_twice_the_limit_close_the_connection(
    env: Env, hub: Any, collab: Any
) -> None:
    """Over the hard limit (twice ``max_message_size``) the connection ends with a close
    frame, code 1009 and a reason, every time, through the proxy: whether the client is
    still writing the message, waits after its header, sends text or a fragmented
    message. The notebook's other sessions notice nothing, nothing is stored and the
    service logs no traceback."""
    await reconnect_if_closed(env)
    await env.a.sync()
    await env.b.sync()
    export_before = await env.alice.export(env.nb_id)
    stored_before = stored_docs(collab, env.nb_id)
    log_start = collab.log_path.stat().st_size
    witness_frames = env.b.frames_received
    limit = env.max_message_size
    reason = f"message too big: more than {2 * limit} bytes (max_message_size is {limit})"

    async def raw() -> WebSocketClientConnection:
        """alice's raw connection: the Hub token, welcome read."""
        req = HTTPRequest(
            env.alice.ws_url(env.nb_id),
            headers={"Authorization": f"token {hub.token('alice')}"},
            request_timeout=30,
        )
        ws = await websocket_connect(req, max_message_size=1 << 30)
        welcome = await ws.read_message()
        assert isinstance(welcome, str) and json.loads(welcome)["type"] == "welcome"
        return ws

    # as a client really sends it: the server answers while the client is still writing
    for attempt in range(5):
        ws = await raw()
        with contextlib.suppress(WebSocketClosedError):
            await ws.write_message(b"\x00" * (2 * limit + 1), binary=True)
        assert await closed_for_size(ws) == (1009, reason), f"attempt {attempt}"
    ws = await raw()
    with contextlib.suppress(WebSocketClosedError):
        await ws.write_message("t" * (2 * limit + 1))
    assert await closed_for_size(ws) == (1009, reason), "a text message"
    # the decision is taken on the frame header: announce the size, send a little, wait
    ws = await raw()
    assert ws.protocol is not None and ws.protocol.stream is not None
    await ws.protocol.stream.write(client_frame(0x2, 2 * limit + 1) + b"\x00" * 1024)
    assert await closed_for_size(ws) == (1009, reason), "a header alone"
    # a fragmented message: no frame is over the limit, their sum is
    ws = await raw()
    assert ws.protocol is not None and ws.protocol.stream is not None
    first = limit + limit // 2
    await ws.protocol.stream.write(client_frame(0x2, first, final=False) + b"\x00" * first)
    await ws.protocol.stream.write(client_frame(0x0, limit) + b"\x00" * 1024)
    assert await closed_for_size(ws) == (1009, reason), "a fragmented message"

    # nothing reached the witness, nothing was stored, nothing changed
    await env.b.sync()
    assert env.b.frames_received == witness_frames + 1
    assert env.b.errors == [] and not env.b.closed.is_set()
    assert stored_docs(collab, env.nb_id) == stored_before
    assert await env.alice.export(env.nb_id) == export_before
    assert b"Traceback" not in log_since(collab.log_path, log_start)
    # the others' connections (alice's own first one too) still work
    await still_works(env)


# -- JSON commands ------------------------------------------------------------------------

BAD_COMMANDS = {
    "not json": ("{type: insert_cell", "invalid_json"),
    "empty": ("", "invalid_json"),
    "json array": ('[{"type": "insert_cell"}]', "invalid_json"),
    "json string": ('"insert_cell"', "invalid_json"),
    "json null": ("null", "invalid_json"),
    "deeply nested": ("[" * 20_000 + "]" * 20_000, "invalid_json"),
    "deeply nested object": (
        '{"type": "sync", "x": ' + "[" * 20_000 + "]" * 20_000 + "}",
        "invalid_json",
    ),
    "missing type": ('{"index": 0}', "unknown_type"),
    "unknown type": ('{"type": "drop_database"}', "unknown_type"),
    "type not a string": ('{"type": ["insert_cell"]}', "unknown_type"),
    "index as string": (
        '{"type": "insert_cell", "index": "0", "cell_type": "code"}',
        "invalid_command",
    ),
    "index as bool": (
        '{"type": "insert_cell", "index": true, "cell_type": "code"}',
        "invalid_command",
    ),
    "index as float": (
        '{"type": "insert_cell", "index": 0.5, "cell_type": "code"}',
        "invalid_command",
    ),
    "negative index": (
        '{"type": "insert_cell", "index": -1, "cell_type": "code"}',
        "invalid_command",
    ),
    "huge index": (
        '{"type": "insert_cell", "index": 1e400, "cell_type": "code"}',
        "invalid_command",
    ),
    "cell_type number": ('{"type": "insert_cell", "index": 0, "cell_type": 5}', "invalid_command"),
    "source list": (
        '{"type": "insert_cell", "index": 0, "cell_type": "code", "source": ["a"]}',
        "invalid_command",
    ),
    "cell_id number": ('{"type": "delete_cell", "cell_id": 5}', "invalid_command"),
    "cell_id object": ('{"type": "delete_cell", "cell_id": {"$ne": null}}', "invalid_command"),
    "move index null": ('{"type": "move_cell", "cell_id": "c1", "index": null}', "invalid_command"),
    "move index out of range": (
        '{"type": "move_cell", "cell_id": "c1", "index": 3}',
        "invalid_command",
    ),
    "cell type list": (
        '{"type": "set_cell_type", "cell_id": "c1", "cell_type": ["raw"]}',
        "invalid_command",
    ),
    "huge ref": ('{"type": "sync", "ref": "' + "r" * 65 + '"}', "invalid_command"),
    "ref object": ('{"type": "sync", "ref": {"a": 1}}', "invalid_command"),
}


@pytest.mark.parametrize("text, code", BAD_COMMANDS.values(), ids=BAD_COMMANDS.keys())
async def test_invalid_json_commands(env: Env, text: str, code: str) -> None:
    [err] = await rejected(env, lambda: env.a.send_raw(text), [code])
    assert env.a.cell_ids() == ["c1", "c2", "scratch"]
    assert "ref" not in err  # an invalid ref is never echoed
    await still_works(env)


async def test_command_errors_echo_a_valid_ref(env: Env) -> None:
    start = len(env.a.messages)
    env.a.send_raw(json.dumps({"type": "delete_cell", "cell_id": 5, "ref": "my-ref"}))
    await env.a.sync()
    [err] = [m for m in env.a.messages[start:] if m["type"] == "error"]
    assert err["ref"] == "my-ref" and err["code"] == "invalid_command"


# -- unknown and foreign ids on the WebSocket --------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        {"type": "delete_cell", "cell_id": "nosuchcell"},
        {"type": "delete_cell", "cell_id": "davecell"},
        {"type": "move_cell", "cell_id": "davecell", "index": 0},
        {"type": "set_cell_type", "cell_id": "davecell", "cell_type": "code"},
        {"type": "delete_cell", "cell_id": "../c1"},
        {"type": "delete_cell", "cell_id": "c1/../c2"},
        {"type": "delete_cell", "cell_id": "c" * 65},
    ],
)
async def test_unknown_and_foreign_cell_ids_in_commands(env: Env, command: dict[str, Any]) -> None:
    await rejected(env, lambda: env.a.send_raw(json.dumps(command)), ["unknown_cell"])
    assert env.a.cell_ids() == ["c1", "c2", "scratch"]


async def test_websocket_to_unknown_foreign_or_path_like_notebook_is_refused_before_upgrade(
    env: Env,
) -> None:
    statuses = {}
    for nb in ["nosuchnotebook", env.other_nb, *BAD_IDS[:7]]:
        req = HTTPRequest(
            env.alice.ws_url(nb),
            headers={"Authorization": f"token {env.alice.token}"},
            request_timeout=30,
        )
        with pytest.raises(HTTPClientError) as err:
            conn = await websocket_connect(req)
            conn.close()
        statuses[nb] = err.value.code
    assert set(statuses.values()) == {404}, statuses
    # the witness saw nothing of it
    frames = env.b.frames_received
    await env.b.sync()
    assert env.b.frames_received == frames + 1


# -- REST: unknown, foreign and path-like ids --------------------------------------------


def rest_paths(nb: str, cell: str = "c1") -> list[tuple[str, str, str | None]]:
    """(method, path, body) of every REST endpoint that takes an id."""
    return [
        ("GET", f"api/notebooks/{nb}", None),
        ("DELETE", f"api/notebooks/{nb}", None),
        ("GET", f"api/notebooks/{nb}/ipynb", None),
        ("GET", f"api/notebooks/{nb}/permissions", None),
        ("PUT", f"api/notebooks/{nb}/permissions", '{"mode": "0777"}'),
        ("GET", f"api/notebooks/{nb}/cells/{cell}/permissions", None),
        ("PUT", f"api/notebooks/{nb}/cells/{cell}/permissions", '{"mode": "0777"}'),
        ("POST", f"api/notebooks/{nb}/cells/{cell}/execute", "{}"),
        ("GET", f"api/notebooks/{nb}/audit", None),
        ("GET", f"api/notebooks/{nb}/chat", None),
        ("POST", f"api/notebooks/{nb}/chat", '{"text": "hi"}'),
        ("PUT", f"api/notebooks/{nb}/chat/1", '{"text": "hi"}'),
        ("DELETE", f"api/notebooks/{nb}/chat/1", None),
        ("GET", f"api/notebooks/{nb}/kernel", None),
        ("DELETE", f"api/notebooks/{nb}/kernel", None),
        ("POST", f"api/notebooks/{nb}/kernel/interrupt", "{}"),
        ("POST", f"api/notebooks/{nb}/kernel/restart", "{}"),
        ("GET", f"api/notebooks/{nb}/settings", None),
        ("PUT", f"api/notebooks/{nb}/settings", '{"kernel_mode": "shared"}'),
    ]


@pytest.mark.parametrize("bad", BAD_IDS + ["a/b", "nosuchnotebook", "FOREIGN"])
async def test_rest_bad_notebook_ids_are_404_json(env: Env, bad: str) -> None:
    nb = env.other_nb if bad == "FOREIGN" else bad
    export_before = await env.alice.export(env.nb_id)
    answers = {}
    for method, path, body in rest_paths(nb):
        resp = await rest(env.alice, method, path, body)
        answers[(method, path)] = error_body(resp, 404)
    # an unknown notebook and someone else's notebook look exactly the same
    if bad in ("nosuchnotebook", "FOREIGN"):
        unknown = {k[0] + k[1].split(nb, 1)[1]: v for k, v in answers.items()}
        reference = {}
        for method, path, body in rest_paths("zzzzzzzzzzzz"):
            reference[method + path.split("zzzzzzzzzzzz", 1)[1]] = error_body(
                await rest(env.alice, method, path, body), 404
            )
        assert unknown == reference
    assert await env.alice.export(env.nb_id) == export_before
    # the stranger's notebook is still there and untouched
    assert [c["source"] for c in (await env.dave.export(env.other_nb))["cells"]] == ["dave"]


# "%2E%2E" is left out here: the proxy resolves "cells/%2E%2E/permissions" to the
# notebook's "permissions" (WHATWG URL dot segments) before the service sees it.
@pytest.mark.parametrize(
    "bad", [b for b in BAD_IDS if b != "%2E%2E"] + ["a/b", "nosuchcell", "davecell"]
)
async def test_rest_bad_cell_ids_are_404_json(env: Env, bad: str) -> None:
    perms_before = await env.alice.get_permissions(env.nb_id)
    for method, path, body in rest_paths(env.nb_id, bad):
        if "/cells/" not in path:
            continue
        error_body(await rest(env.alice, method, path, body), 404)
    assert await env.alice.get_permissions(env.nb_id) == perms_before
    assert [c["id"] for c in (await env.alice.get_notebook(env.nb_id))["cells"]] == [
        "c1",
        "c2",
        "scratch",
    ]


async def test_rest_unknown_endpoints_are_404_json(env: Env) -> None:
    for path in [
        "api/nope",
        f"api/notebooks/{env.nb_id}/nope",
        f"api/notebooks/{env.nb_id}/cells/c1",
        f"api/notebooks/{env.nb_id}/cells/c1/permissions/x",
    ]:
        error_body(await rest(env.alice, "GET", path), 404)


# -- REST: malformed bodies ----------------------------------------------------------------


def bodies_cases(nb: str) -> list[tuple[str, str]]:
    return [
        ("POST", "api/notebooks"),
        ("PUT", f"api/notebooks/{nb}/permissions"),
        ("PUT", f"api/notebooks/{nb}/cells/c1/permissions"),
        ("POST", f"api/notebooks/{nb}/chat"),
        ("POST", f"api/notebooks/{nb}/cells/c1/execute"),
        ("PUT", f"api/notebooks/{nb}/settings"),
    ]


MALFORMED_BODIES = {
    "not json": ("{name: 1", "application/json", 400, "invalid_json"),
    "truncated json": ('{"name": "x"', "application/json", 400, "invalid_json"),
    "json array": ('["name", "x"]', "application/json", 400, "invalid_json"),
    "json string": ('"x"', "application/json", 400, "invalid_json"),
    "invalid utf-8": (b'{"name": "\xff\xfe"}', "application/json", 400, "invalid_json"),
    "deeply nested": (
        '{"name": ' + "[" * 20_000 + "]" * 20_000 + "}",
        "application/json",
        400,
        "invalid_json",
    ),
    "text/plain": ('{"name": "x"}', "text/plain", 415, "unsupported_media_type"),
    "form": ("name=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    "unknown field": (
        '{"name": "x", "mode": "0770", "text": "hi", "evil": 1}',
        "application/json",
        400,
        "invalid_field",
    ),
}


@pytest.mark.parametrize(
    "body, ctype, status, code", MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys()
)
async def test_malformed_rest_bodies(
    env: Env, body: str | bytes, ctype: str, status: int, code: str
) -> None:
    listed = len(await env.alice.list_notebooks())
    perms = await env.alice.get_permissions(env.nb_id)
    cell_perms = await env.alice.get_permissions(env.nb_id, "c1")
    chat = await env.alice.chat_history(env.nb_id)
    for method, path in bodies_cases(env.nb_id):
        data = body.encode() if isinstance(body, str) else body
        error_body(await rest(env.alice, method, path, data, content_type=ctype), status, code)
    assert len(await env.alice.list_notebooks()) == listed
    assert await env.alice.get_permissions(env.nb_id) == perms
    assert await env.alice.get_permissions(env.nb_id, "c1") == cell_perms
    assert await env.alice.chat_history(env.nb_id) == chat


@pytest.mark.parametrize(
    "path, body, code",
    [
        ("api/notebooks", {"name": 5}, "invalid_name"),
        ("api/notebooks", {"name": "../../etc"}, "invalid_name"),
        ("api/notebooks", {"name": "x", "mode": "9999"}, "invalid_mode"),
        ("api/notebooks", {"name": "x", "mode": ["0777"]}, "invalid_mode"),
        ("api/notebooks", {"name": "x", "group": "../staff"}, "invalid_group"),
        ("api/notebooks", {"name": "x", "content": "x" * 10}, "invalid_notebook"),
        ("PERMS", {"mode": "u+q"}, "invalid_mode"),
        ("PERMS", {"mode": "4755"}, "invalid_mode"),
        ("PERMS", {"acl": "user:bob:rwx"}, "invalid_acl"),
        ("PERMS", {"acl": ["user::rwx"]}, "invalid_acl"),
        ("PERMS", {"acl": ["user:bob:rwx", "user:bob:r--"]}, "invalid_acl"),
        ("PERMS", {"group": 7}, "invalid_group"),
        ("PERMS", {"owner": ""}, "invalid_owner"),
        ("CELL", {"mode": True}, "invalid_mode"),
        ("CELL", {"acl": [1, 2]}, "invalid_acl"),
        ("CELL", {"owner": "a b"}, "invalid_owner"),
    ],
)
async def test_wrong_field_types_are_clear_400s(
    env: Env, path: str, body: dict[str, Any], code: str
) -> None:
    real = {
        "PERMS": f"api/notebooks/{env.nb_id}/permissions",
        "CELL": f"api/notebooks/{env.nb_id}/cells/c1/permissions",
    }.get(path, path)
    method = "POST" if path == "api/notebooks" else "PUT"
    listed = len(await env.alice.list_notebooks())
    perms = await env.alice.get_permissions(env.nb_id)
    cell_perms = await env.alice.get_permissions(env.nb_id, "c1")
    error_body(await rest(env.alice, method, real, json.dumps(body)), 400, code)
    assert len(await env.alice.list_notebooks()) == listed
    assert await env.alice.get_permissions(env.nb_id) == perms
    assert await env.alice.get_permissions(env.nb_id, "c1") == cell_perms


async def test_chat_body_over_its_limit_is_413(env: Env) -> None:
    chat = await env.alice.chat_history(env.nb_id)
    body = json.dumps({"text": "c" * 200_000})
    error_body(
        await rest(env.alice, "POST", f"api/notebooks/{env.nb_id}/chat", body), 413, "too_large"
    )
    assert await env.alice.chat_history(env.nb_id) == chat


async def test_huge_request_body_is_413_json(env: Env, collab: Any) -> None:
    """A body over HubCollab.max_request_bytes (default 32 MiB) is a 413 in the JSON shape."""
    listed = len(await env.alice.list_notebooks())
    huge = b'{"name": "huge", "content": "' + b"h" * (32 * 1024 * 1024 + 16) + b'"}'
    error_body(await rest(env.alice, "POST", "api/notebooks", huge), 413, "too_large")
    assert len(await env.alice.list_notebooks()) == listed
    await still_works(env)


# -- awareness abuse ------------------------------------------------------------------------


def awareness(*states: tuple[int, int, Any]) -> bytes:
    payload = p.write_var_uint(len(states))
    for client_id, clock, state in states:
        raw = state if isinstance(state, str) else json.dumps(state)
        payload += p.write_var_uint(client_id) + p.write_var_uint(clock) + p.encode_var_string(raw)
    return p.awareness_message("index", payload)


async def presence(env: Env) -> list[dict[str, Any]]:
    return list((await env.alice.get_notebook(env.nb_id))["presence"])


async def test_awareness_abuse(env: Env) -> None:
    # the witness announces itself; everyone may see that
    env.b.set_awareness({"cell": "c1", "status": "here"})
    bob_id = env.b.client_id_for_awareness
    assert bob_id is not None
    await env.a.wait_for(lambda: (env.a.awareness.get(bob_id) or {}).get("cell") == "c1")
    bob_before = env.a.awareness[bob_id]
    presence_before = await presence(env)
    assert {"client_id": bob_id, "user": "bob", "cell": "c1"} in presence_before

    conn = env.alice.open(env.nb_id)
    await conn.connect()
    await conn.synced()
    try:
        cases = [
            # someone else's client id: a new state, and a removal
            (awareness((bob_id, 99, {"cell": "c2", "user": {"name": "bob"}})), "bad_awareness"),
            (awareness((bob_id, 99, None)), "bad_awareness"),
            # more ids in one message than a connection may hold
            (awareness(*[(7000 + i, 1, {"cell": "c1"}) for i in range(5)]), "bad_awareness"),
            # states that are not JSON objects
            (awareness((8001, 1, [1, 2])), "bad_awareness"),
            (awareness((8001, 1, "not json")), "bad_awareness"),
            (awareness((8001, 1, 42)), "bad_awareness"),
            (awareness((8001, 1, '"a string"')), "bad_awareness"),
            (awareness((8001, 1, "[" * 1500 + "]" * 1500)), "bad_awareness"),
            (awareness((8001, 1, '{"status": ' + "[" * 1500 + "]" * 1500 + "}")), "bad_awareness"),
            # truncated, trailing bytes, wrong doc
            (awareness((8001, 1, {"cell": "c1"}))[:-3], "malformed_frame"),
            (
                p.awareness_message("index", p.write_var_uint(1) + p.write_var_uint(8001)),
                "bad_awareness",
            ),
            (
                p.awareness_message("index", bytes.fromhex("0100") + b"\x01\x02{}" + b"extra"),
                "bad_awareness",
            ),
            (
                p.awareness_message(
                    "cell:c1", p.encode_awareness([p.AwarenessState(8001, 1, {"cell": "c1"})])
                ),
                "bad_awareness",
            ),
            # oversized state
            (awareness((8001, 1, {"status": "s" * 10_000})), "too_large"),
        ]
        for frame, code in cases:
            await rejected(env, lambda frame=frame: conn.send_raw(frame), [code], offender=conn)
        assert await presence(env) == presence_before
        assert env.a.awareness[bob_id] == bob_before

        # a batch of a valid state of its own and a foreign one is refused as a whole
        await rejected(
            env,
            lambda: conn.send_raw(
                awareness((8100, 1, {"cell": "c2"}), (bob_id, 100, {"cell": "c2"}))
            ),
            ["bad_awareness"],
            offender=conn,
        )
        assert await presence(env) == presence_before, (
            "a refused awareness update must not be half applied"
        )

        # at most 4 ids per connection, also across messages
        fresh = env.alice.open(env.nb_id)
        await fresh.connect()
        await fresh.synced()
        try:
            for i in range(4):
                fresh.send_raw(awareness((9000 + i, 1, {"cell": "c1"})))
            await env.b.wait_for(lambda: all(9000 + i in env.b.awareness for i in range(4)))
            await rejected(
                env,
                lambda: fresh.send_raw(awareness((9004, 1, {"cell": "c1"}))),
                ["bad_awareness"],
                offender=fresh,
            )
            assert 9004 not in {s["client_id"] for s in await presence(env)}
        finally:
            await fresh.close()
        await env.b.wait_for(lambda: all(env.b.awareness.get(9000 + i) is None for i in range(4)))
    finally:
        await conn.close()
    # the witness's own state survived all of it
    assert {"client_id": bob_id, "user": "bob", "cell": "c1"} in await presence(env)
