"""Adversarial tests (issue 3, "Proof"): a hand-rolled WebSocket client against the real Hub.

Student ``bob`` talks to the service with a raw tornado WebSocket, frames built by hand
with :mod:`hub_collab.documents.protocol` and pycrdt, and every frame any student
connection receives during the scenario is recorded, as is every REST body a student
gets back. The instructor's notebook has a hidden solution cell whose source, metadata
and outputs (imported from nbformat, and produced again by running it) carry a secret;
the last test asserts the secret never reached a student: not in a doc, an index, an
awareness state, a ``caps``, an error, an export or any other REST answer. A positive
control proves the recording would have seen it (the instructor's connection receives it).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pycrdt import Doc, Map, Text
from tornado.httpclient import HTTPClientError, HTTPRequest, HTTPResponse
from tornado.websocket import WebSocketClientConnection, websocket_connect

from hub_collab.client import CollabClient, NotebookConnection
from hub_collab.documents import protocol as p
from hub_collab.documents.notebook import init_index, init_out

pytestmark = pytest.mark.asyncio(loop_scope="module")

SECRET = "XYZZY-7f3e9b1c-SOLUTION"
#: written into a cell after it was hidden from the students
LATER_SECRET = "PLUGH-4a8c2d6e-LATER"
NEEDLES = [SECRET.encode(), b"7f3e9b1c", LATER_SECRET.encode(), b"4a8c2d6e"]

SOLUTION_SOURCE = f"answer = 42\nprint({SECRET!r})\nanswer  # {SECRET}"

CONTENT = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    },
    "cells": [
        {"id": "intro", "cell_type": "markdown", "metadata": {}, "source": "# Exam\nAnswer below."},
        {
            "id": "task",
            "cell_type": "code",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": "data = [1, 2]",
        },
        {"id": "notes", "cell_type": "markdown", "metadata": {}, "source": "notes for everyone"},
        {
            "id": "solution",
            "cell_type": "code",
            "metadata": {"tags": [SECRET], "secret": {"value": SECRET}},
            "execution_count": 7,
            "source": SOLUTION_SOURCE,
            "outputs": [
                {"output_type": "stream", "name": "stdout", "text": f"{SECRET}\n"},
                {
                    "output_type": "execute_result",
                    "execution_count": 7,
                    "metadata": {},
                    "data": {"text/plain": repr(SECRET)},
                },
                {
                    "output_type": "display_data",
                    "metadata": {},
                    "data": {"text/html": f"<b>{SECRET}</b>", "text/plain": SECRET},
                },
                {
                    "output_type": "error",
                    "ename": "ValueError",
                    "evalue": SECRET,
                    "traceback": [SECRET],
                },
            ],
        },
    ],
}

#: (who, frame) for every frame a student's connection received
STUDENT_FRAMES: list[tuple[str, bytes | str]] = []
#: (what, body) for every REST answer a student got
STUDENT_REST: list[tuple[str, bytes]] = []
#: frames the instructor received (the positive control)
STAFF_FRAMES: list[bytes | str] = []


def leaks(data: bytes | str) -> list[bytes]:
    raw = data.encode() if isinstance(data, str) else data
    return [n for n in NEEDLES if n in raw]


def assert_no_leak() -> None:
    for who, frame in STUDENT_FRAMES:
        assert not leaks(frame), f"a frame sent to {who} carries the secret: {frame[:300]!r}"
    for what, body in STUDENT_REST:
        assert not leaks(body), f"{what} carries the secret: {body[:300]!r}"


class Raw:
    """A minimal wire protocol v1 client; records every frame it receives."""

    def __init__(self, base_url: str, token: str, who: str) -> None:
        self.base_url, self.token, self.who = base_url, token, who
        self.ws: WebSocketClientConnection | None = None
        self.frames: list[bytes | str] = []
        self.json: list[dict[str, Any]] = []
        self.entries: list[p.Entry] = []
        self.docs: dict[str, Doc[Any]] = {}
        self.welcome: dict[str, Any] = {}
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._refs = itertools.count(1)

    def url(self, nb_id: str, query: str = "") -> str:
        return (
            self.base_url.replace("http", "ws", 1)
            + f"api/notebooks/{nb_id}/ws"
            + (f"?{query}" if query else "")
        )

    async def connect(
        self, nb_id: str, *, query: str = "", headers: dict[str, str] | None = None
    ) -> Raw:
        req = HTTPRequest(
            self.url(nb_id, query),
            headers={"Authorization": f"token {self.token}", **(headers or {})},
            request_timeout=30,
        )
        self.ws = await websocket_connect(req, max_message_size=1 << 30)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        await self.wait_for(lambda: bool(self.welcome))
        return self

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            while True:
                msg = await self.ws.read_message()
                if msg is None:
                    break
                self.frames.append(msg)
                STUDENT_FRAMES.append((self.who, msg))
                if isinstance(msg, str):
                    data = json.loads(msg)
                    self.json.append(data)
                    if data.get("type") == "welcome":
                        self.welcome = data
                else:
                    for entry in p.decode_frame(msg):
                        self.entries.append(entry)
                        doc = self.docs.get(entry.doc)
                        if (
                            doc is not None
                            and entry.kind == p.MSG_SYNC
                            and entry.sub != p.SYNC_STEP1
                        ):
                            doc.apply_update(entry.payload)
                self._changed.set()
        finally:
            self.closed.set()
            self._changed.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"{self.who}: condition not met")
            if self.closed.is_set():
                raise ConnectionError(f"{self.who}: connection closed")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def send(self, data: bytes | str) -> None:
        assert self.ws is not None
        self.ws.write_message(data, binary=isinstance(data, bytes))

    async def command(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send a JSON command; its ``ack`` or ``error`` (matched by ``ref``)."""
        ref = f"{self.who}-{next(self._refs)}"
        self.send(json.dumps({"type": kind, "ref": ref, **fields}))
        found: list[dict[str, Any]] = []

        def answered() -> bool:
            found[:] = [
                m for m in self.json if m.get("ref") == ref and m["type"] in ("ack", "error")
            ]
            return bool(found)

        await self.wait_for(answered)
        return found[0]

    async def fence(self) -> int:
        """Return once the server has handled everything sent before; the position of its ack."""
        ack = await self.command("sync")
        return next(i for i, m in enumerate(self.json) if m is ack)

    async def roundtrip(self, frame: bytes | str) -> list[dict[str, Any]]:
        """Send ``frame``, fence, and return the JSON messages received meanwhile (but
        ``kernel`` state messages, which come whenever the kernel changes state)."""
        start = len(self.json)
        self.send(frame)
        end = await self.fence()
        return [m for m in self.json[start:end] if m["type"] != "kernel"]

    def subscribe(self, *names: str) -> None:
        frames = b""
        for name in names:
            self.docs.setdefault(name, Doc())
            frames += p.sync_step1(name, self.docs[name].get_state())
        self.send(frames)

    def step2_docs(self) -> set[str]:
        return {e.doc for e in self.entries if e.kind == p.MSG_SYNC and e.sub == p.SYNC_STEP2}

    def awareness_states(self) -> dict[int, Any]:
        out: dict[int, Any] = {}
        for e in self.entries:
            if e.kind == p.MSG_AWARENESS:
                for st in p.decode_awareness(e.payload, max_states=1 << 16):
                    out[st.client_id] = st.state
        return out

    async def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 10)


class Scenario:
    def __init__(self, hub: Any, collab: Any) -> None:
        self.hub, self.collab = hub, collab
        self.clients: dict[str, CollabClient] = {}
        self.conns: dict[str, NotebookConnection] = {}
        self.raws: list[Raw] = []
        self.nb_id = ""
        self.private_nb = ""

    def client(self, user: str) -> CollabClient:
        if user not in self.clients:
            self.clients[user] = CollabClient(
                self.collab.public_url, self.hub.token(user), request_timeout=120
            )
        return self.clients[user]

    async def raw(self, user: str, nb_id: str | None = None, **kw: Any) -> Raw:
        r = Raw(self.collab.public_url, self.hub.token(user), user)
        self.raws.append(r)
        return await r.connect(nb_id or self.nb_id, **kw)

    async def connect(self, user: str) -> NotebookConnection:
        conn = self.client(user).open(self.nb_id)
        if user in ("instructor", "ta"):
            conn.listeners.append(
                lambda kind, data: STAFF_FRAMES.append(
                    data if kind == "binary" else json.dumps(data)
                )
            )
        else:
            conn.listeners.append(
                lambda kind, data: STUDENT_FRAMES.append(
                    (user, data if kind == "binary" else json.dumps(data))
                )
            )
        await conn.connect()
        await conn.synced()
        self.conns[user] = conn
        return conn

    async def student_rest(
        self,
        user: str,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> HTTPResponse:
        """A REST call as a student; the answer is recorded whatever its status."""
        client = self.client(user)
        data = (
            None if body is None else (body if isinstance(body, (bytes, str)) else json.dumps(body))
        )
        if data is None and method in ("POST", "PUT"):
            data = b""
        req = HTTPRequest(
            client.base_url + path,
            method=method,
            headers={
                "Authorization": f"token {client.token}",
                "Content-Type": "application/json",
                **(headers or {}),
            },
            body=data,
            request_timeout=120,
            follow_redirects=False,
            allow_nonstandard_methods=True,
        )
        resp = await client.http.fetch(req, raise_error=False)
        STUDENT_REST.append((f"{user} {method} {path} -> {resp.code}", resp.body or b""))
        return resp

    async def close(self) -> None:
        for r in self.raws:
            await r.close()
        for conn in self.conns.values():
            await conn.close()
        for client in self.clients.values():
            client.close()


@pytest.fixture(scope="module")
async def sc(hub: Any, collab: Any) -> AsyncIterator[Scenario]:
    s = Scenario(hub, collab)
    teacher = s.client("instructor")
    # everything starts hidden (default cell mode 0700); then the instructions are opened
    nb = await teacher.create_notebook(
        "exam",
        content=copy.deepcopy(CONTENT),
        group="students",
        mode="1770",
        default_cell_mode="0700",
    )
    s.nb_id = nb["id"]
    await teacher.set_permissions(s.nb_id, acl=["user:ta:rwx"], default_acl=["user:ta:rwx"])
    for cid in ("intro", "task", "notes"):
        await teacher.set_permissions(s.nb_id, cid, mode="0750", acl=["user:ta:rwx"])
    await teacher.set_permissions(s.nb_id, "solution", acl=["user:ta:rwx"])
    private = await teacher.create_notebook(
        "private",
        content={
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {},
            "cells": [{"id": "private1", "cell_type": "raw", "metadata": {}, "source": SECRET}],
        },
        mode="0700",
    )
    s.private_nb = private["id"]
    await s.connect("instructor")
    await s.connect("ta")
    await s.connect("alice")
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture(scope="module")
async def bob(sc: Scenario) -> Raw:
    """Bob's raw connection, subscribed to everything he may read; it stays open."""
    r = await sc.raw("bob")
    assert r.welcome["user"] == {"name": "bob", "admin": False, "groups": ["students"]}
    caps = r.welcome["caps"]
    assert caps["cells"] == {"intro": "r-x", "task": "r-x", "notes": "r-x", "solution": "---"}
    r.subscribe(
        "index", "cell:intro", "out:intro", "cell:task", "out:task", "cell:notes", "out:notes"
    )
    await r.wait_for(lambda: {"index", "cell:intro", "cell:notes", "out:task"} <= r.step2_docs())
    cells, _ = init_index(r.docs["index"])
    assert [c["id"] for c in cells] == ["intro", "task", "notes", "solution"]
    return r


async def test_hidden_docs_cannot_be_subscribed(sc: Scenario, bob: Raw) -> None:
    for name in ("cell:solution", "out:solution"):
        [err] = await bob.roundtrip(p.sync_step1(name, b"\x00"))
        assert (err["type"], err["code"], err["doc"]) == ("error", "forbidden", name)
    # hidden in a batch with allowed ones: the allowed ones are answered, the hidden one not
    seen = len(bob.entries)
    msgs = await bob.roundtrip(
        p.sync_step1("cell:intro", b"\x00")
        + p.sync_step1("cell:solution", b"\x00")
        + p.sync_step1("out:solution", b"\x00")
    )
    assert [(m["code"], m["doc"]) for m in msgs] == [
        ("forbidden", "cell:solution"),
        ("forbidden", "out:solution"),
    ]
    assert {e.doc for e in bob.entries[seen:]} == {"cell:intro"}
    # a state vector claiming to know everything changes nothing
    sv = p.write_var_uint(1) + p.write_var_uint(123456) + p.write_var_uint(1 << 30)
    [err] = await bob.roundtrip(p.sync_step1("cell:solution", sv))
    assert err["code"] == "forbidden"
    assert not any(e.doc.endswith(":solution") for e in bob.entries)
    assert_no_leak()


async def test_guessed_ids_and_cells_of_other_notebooks(sc: Scenario, bob: Raw) -> None:
    for name in (
        "cell:solution2",
        "cell:Solution",
        "out:answer",
        "cell:private1",
        "out:private1",
        "cell:0",
        "cell:-",
    ):
        [err] = await bob.roundtrip(p.sync_step1(name, b"\x00"))
        assert (err["code"], err["doc"]) == ("unknown_doc", name)
    for cmd in (
        {"type": "delete_cell", "cell_id": "private1"},
        {"type": "set_cell_type", "cell_id": "private1", "cell_type": "code"},
    ):
        [err] = await bob.roundtrip(json.dumps(cmd))
        assert err["code"] == "unknown_cell"
    # the instructor's private notebook: not there, whatever the way in
    with pytest.raises(HTTPClientError) as exc:
        await sc.raw("bob", sc.private_nb)
    assert exc.value.code == 404
    unknown = await sc.student_rest("bob", "GET", "api/notebooks/zzzzzzzzzzzz")
    for path in (
        "",
        "/ipynb",
        "/permissions",
        "/cells/private1/permissions",
        "/audit",
        "/chat",
        "/comments",
        "/comments/summary",
        "/comments/notices",
        "/ipynb?comments=1",
        "/kernel",
    ):
        resp = await sc.student_rest("bob", "GET", f"api/notebooks/{sc.private_nb}{path}")
        assert resp.code == 404
        if not path:
            assert (
                resp.body == unknown.body
            )  # indistinguishable from a notebook that does not exist
    for path in ("cells/private1/permissions", "cells/private1/execute"):
        resp = await sc.student_rest(
            "bob",
            "GET" if "permissions" in path else "POST",
            f"api/notebooks/{sc.nb_id}/{path}",
            None if "permissions" in path else {},
        )
        assert resp.code == 404
    listed = await sc.student_rest("bob", "GET", "api/notebooks")
    assert sc.private_nb not in listed.body.decode()
    assert_no_leak()


def forge(base: Doc[Any], mutate: Callable[[Doc[Any]], None]) -> bytes:
    scratch: Doc[Any] = Doc()
    scratch.apply_update(base.get_update())
    sv = scratch.get_state()
    with scratch.transaction():
        mutate(scratch)
    return scratch.get_update(sv)


async def test_forged_updates_to_locked_cells(sc: Scenario, bob: Raw) -> None:
    teacher, alice = sc.conns["instructor"], sc.conns["alice"]
    intro_before = teacher.source("intro")
    alice_frames = alice.frames_received
    update = forge(
        bob.docs["cell:intro"], lambda d: d.get("source", type=Text).insert(0, "FORGED ")
    )
    for step in (p.SYNC_UPDATE, p.SYNC_STEP2):
        msgs = await bob.roundtrip(p.encode_sync("cell:intro", step, update))
        assert [(m["type"], m.get("code"), m["doc"]) for m in msgs] == [
            ("error", "forbidden", "cell:intro"),
            ("resync", None, "cell:intro"),
        ]
        bob.subscribe("cell:intro")  # what a client does after resync
    # a locked cell he is not even subscribed to, an output, the index
    fake_solution = Doc()
    fake_solution.get("source", type=Text).insert(0, "overwritten")
    outputs = forge(
        Doc(),
        lambda d: init_out(d)[0].append(
            Map({"output_type": "stream", "name": "stdout", "text": "pwned"})
        ),
    )

    def chmod_in_index(d: Doc[Any]) -> None:
        cells, _ = init_index(d)
        for entry in cells:
            entry["mode"] = "0777"
            entry["acl"] = ["user:bob:rwx"]

    index_update = forge(bob.docs["index"], chmod_in_index)
    for name, payload in (
        ("cell:solution", fake_solution.get_update()),
        ("out:solution", outputs),
        ("out:task", outputs),
        ("index", index_update),
    ):
        for step in (p.SYNC_UPDATE, p.SYNC_STEP2):
            msgs = await bob.roundtrip(p.encode_sync(name, step, payload))
            assert [(m["type"], m.get("code"), m["doc"]) for m in msgs] == [
                ("error", "forbidden", name),
                ("resync", None, name),
            ], msgs
            if name in ("index", "out:task"):
                bob.subscribe(name)  # what a client does after resync
    # nothing changed anywhere, and alice (the other student) heard nothing of it
    await teacher.sync()
    assert teacher.source("intro") == intro_before
    assert teacher.source("solution") == SOLUTION_SOURCE
    assert teacher.outputs("task") == []
    assert (await sc.client("instructor").get_permissions(sc.nb_id, "solution"))["mode"] == "0700"
    await alice.sync()
    assert alice.frames_received == alice_frames + 1
    [err] = await bob.roundtrip(p.sync_step1("cell:solution", b"\x00"))
    assert err["code"] == "forbidden"
    assert_no_leak()


async def test_structure_commands_on_hidden_cells(sc: Scenario, bob: Raw) -> None:
    teacher = sc.conns["instructor"]
    for cmd in (
        {"type": "set_cell_type", "cell_id": "solution", "cell_type": "markdown"},
        {"type": "delete_cell", "cell_id": "solution"},
        {"type": "move_cell", "cell_id": "solution", "index": 0},
        {"type": "delete_cell", "cell_id": "intro"},
    ):
        reply = await bob.command(cmd.pop("type"), **cmd)
        assert (reply["type"], reply["code"]) == ("error", "forbidden")
    # execute is refused the same way whether or not the guessed source hash is right: no oracle
    right = hashlib.sha256(SOLUTION_SOURCE.encode()).hexdigest()
    answers = [
        await bob.command("execute", cell_id="solution", source_hash=h)
        for h in (right, "0" * 64, None)
    ]
    assert all(a["type"] == "error" and a["code"] == "forbidden" for a in answers)
    assert len({a["message"] for a in answers}) == 1
    for h in (right, "0" * 64):
        resp = await sc.student_rest(
            "bob", "POST", f"api/notebooks/{sc.nb_id}/cells/solution/execute", {"source_hash": h}
        )
        assert resp.code == 403
    assert teacher.cell_ids() == ["intro", "task", "notes", "solution"]
    assert teacher.outputs("solution")[0]["text"] == f"{SECRET}\n"
    assert_no_leak()


async def test_chmod_chown_and_audit_by_a_non_owner(sc: Scenario, bob: Raw) -> None:
    teacher_api = sc.client("instructor")
    before_nb = await teacher_api.get_permissions(sc.nb_id)
    before_cell = await teacher_api.get_permissions(sc.nb_id, "solution")
    mine = await bob.command("insert_cell", index=4, cell_type="code", source="bob's")
    assert mine["type"] == "ack"
    own = mine["cell_id"]
    seen = await bob.fence()
    attempts = [
        ("PUT", f"api/notebooks/{sc.nb_id}/permissions", {"mode": "0777"}),
        ("PUT", f"api/notebooks/{sc.nb_id}/permissions", {"acl": ["user:bob:rwx"]}),
        ("PUT", f"api/notebooks/{sc.nb_id}/permissions", {"owner": "bob"}),
        ("PUT", f"api/notebooks/{sc.nb_id}/permissions", {"group": "staff"}),
        ("PUT", f"api/notebooks/{sc.nb_id}/permissions", {"default_cell_mode": "0777"}),
        ("PUT", f"api/notebooks/{sc.nb_id}/cells/solution/permissions", {"mode": "0777"}),
        ("PUT", f"api/notebooks/{sc.nb_id}/cells/solution/permissions", {"acl": ["user:bob:r--"]}),
        ("PUT", f"api/notebooks/{sc.nb_id}/cells/solution/permissions", {"owner": "bob"}),
        ("PUT", f"api/notebooks/{sc.nb_id}/cells/intro/permissions", {"mode": "0777"}),
        ("PUT", f"api/notebooks/{sc.nb_id}/cells/{own}/permissions", {"owner": "alice"}),
        ("GET", f"api/notebooks/{sc.nb_id}/audit", None),
        ("DELETE", f"api/notebooks/{sc.nb_id}", None),
        ("PUT", f"api/notebooks/{sc.nb_id}/settings", {"kernel_mode": "per-user"}),
    ]
    for method, path, body in attempts:
        resp = await sc.student_rest("bob", method, path, body)
        assert resp.code == 403, (method, path, resp.code, resp.body)
        err = json.loads(resp.body)
        assert err["status"] == 403 and err["code"] == "forbidden" and err["message"]
    assert await teacher_api.get_permissions(sc.nb_id) == before_nb
    assert await teacher_api.get_permissions(sc.nb_id, "solution") == before_cell
    end = await bob.fence()
    # no caps were pushed: nothing changed
    assert [m for m in bob.json[seen + 1 : end] if m["type"] != "kernel"] == []
    # what a student may read: permissions (no content) and his own cell's chmod
    for path in ("permissions", "cells/solution/permissions"):
        assert (await sc.student_rest("bob", "GET", f"api/notebooks/{sc.nb_id}/{path}")).code == 200
    assert (
        await sc.student_rest(
            "bob", "PUT", f"api/notebooks/{sc.nb_id}/cells/{own}/permissions", {"mode": "0700"}
        )
    ).code == 200
    reply = await bob.command("delete_cell", cell_id=own)
    assert reply["type"] == "ack"
    assert_no_leak()


FORGED_HEADERS = {
    "X-Forwarded-User": "instructor",
    "X-Remote-User": "instructor",
    "Remote-User": "instructor",
    "X-JupyterHub-User": "instructor",
    "X-Forwarded-Groups": "staff",
    "X-Forwarded-Preferred-Username": "instructor",
    "X-Auth-Request-Groups": "staff,admin",
    "X-Forwarded-For": "127.0.0.1",
    "X-Real-Ip": "127.0.0.1",
}
FORGED_QUERY = "user=instructor&groups=staff&group=staff&admin=1&owner=1&as=instructor"


async def test_forged_group_claims_grant_nothing(sc: Scenario, bob: Raw) -> None:
    forged = await sc.raw("bob", query=FORGED_QUERY, headers=FORGED_HEADERS)
    assert forged.welcome["user"] == {"name": "bob", "admin": False, "groups": ["students"]}
    assert forged.welcome["caps"] == bob.welcome["caps"]
    forged.subscribe("index")
    # a group claim in awareness: rewritten, and no right follows from it
    claim = {
        "user": {"name": "instructor", "groups": ["staff"], "admin": True},
        "groups": ["staff"],
        "admin": True,
        "owner": True,
        "cell": "intro",
    }
    payload = p.encode_awareness([p.AwarenessState(424242, 1, claim)])
    msgs = await forged.roundtrip(p.awareness_message("index", payload))
    assert msgs == []  # no caps, no error: a presence update, nothing more
    [err] = await forged.roundtrip(p.sync_step1("cell:solution", b"\x00"))
    assert err["code"] == "forbidden"
    teacher = sc.conns["instructor"]
    await teacher.wait_for(lambda: teacher.awareness.get(424242) is not None)
    assert teacher.awareness[424242] == {"user": {"name": "bob"}, "cell": "intro"}
    # the same through REST
    for headers, query in ((FORGED_HEADERS, ""), ({}, "?" + FORGED_QUERY)):
        me = json.loads(
            (await sc.student_rest("bob", "GET", f"api/me{query}", headers=headers)).body
        )
        assert me == {"name": "bob", "groups": ["students"], "admin": False}
        model = json.loads(
            (
                await sc.student_rest(
                    "bob", "GET", f"api/notebooks/{sc.nb_id}{query}", headers=headers
                )
            ).body
        )
        assert {c["id"]: c["readable"] for c in model["cells"]}["solution"] is False
        assert model["caps"]["cells"]["solution"] == "---"
        exported = json.loads(
            (
                await sc.student_rest(
                    "bob", "GET", f"api/notebooks/{sc.nb_id}/ipynb{query}", headers=headers
                )
            ).body
        )
        assert "solution" not in [c["id"] for c in exported["cells"]]
        resp = await sc.student_rest(
            "bob",
            "PUT",
            f"api/notebooks/{sc.nb_id}/cells/solution/permissions{query}",
            {"mode": "0777"},
            headers=headers,
        )
        assert resp.code == 403
    # a dave-style outsider claiming the group gets nothing at all
    with pytest.raises(HTTPClientError) as exc:
        await sc.raw(
            "dave", query=FORGED_QUERY, headers={**FORGED_HEADERS, "X-Forwarded-Groups": "students"}
        )
    assert exc.value.code == 404
    await forged.close()
    assert_no_leak()


async def test_forged_awareness_for_another_client(sc: Scenario, bob: Raw) -> None:
    alice, teacher = sc.conns["alice"], sc.conns["instructor"]
    alice.set_awareness({"cell": "task", "status": "thinking"})
    alice_id = alice.client_id_for_awareness
    assert alice_id is not None
    await teacher.wait_for(
        lambda: (teacher.awareness.get(alice_id) or {}).get("status") == "thinking"
    )
    presence = (await sc.client("instructor").get_notebook(sc.nb_id))["presence"]
    for state in ({"user": {"name": "alice"}, "cell": "intro", "status": "I give up"}, None):
        payload = p.encode_awareness([p.AwarenessState(alice_id, 10_000, state)])
        [err] = await bob.roundtrip(p.awareness_message("index", payload))
        assert err["code"] == "bad_awareness"
    await teacher.sync()
    assert teacher.awareness[alice_id] == {
        "user": {"name": "alice"},
        "cell": "task",
        "status": "thinking",
    }
    assert (await sc.client("instructor").get_notebook(sc.nb_id))["presence"] == presence
    assert_no_leak()


async def test_cursor_in_a_hidden_cell_is_not_sent_to_students(sc: Scenario, bob: Raw) -> None:
    teacher, ta, alice = sc.conns["instructor"], sc.conns["ta"], sc.conns["alice"]
    teacher.set_awareness(
        {
            "cell": "solution",
            "cursor": {"anchor": 3, "head": 9, "selection": SECRET},
            "status": "grading",
        }
    )
    tid = teacher.client_id_for_awareness
    await ta.wait_for(lambda: (ta.awareness.get(tid) or {}).get("cursor") is not None)
    assert ta.awareness[tid]["cursor"]["selection"] == SECRET  # staff may read the cell
    await bob.wait_for(lambda: tid in bob.awareness_states())
    await alice.wait_for(lambda: tid in alice.awareness)
    for state in (bob.awareness_states()[tid], alice.awareness[tid]):
        assert state == {"user": {"name": "instructor"}, "cell": "solution", "status": "grading"}
    assert_no_leak()


async def test_running_the_hidden_cell_sends_its_output_to_staff_only(
    sc: Scenario, bob: Raw
) -> None:
    teacher = sc.conns["instructor"]
    result = await sc.client("instructor").request(
        "POST", f"api/notebooks/{sc.nb_id}/cells/solution/execute?wait=1"
    )
    assert result["status"] == "ok"
    assert any(SECRET in json.dumps(o) for o in result["outputs"])
    await teacher.wait_for(
        lambda: (
            teacher.out_state("solution").get("execution_state") == "idle"
            and SECRET in json.dumps(teacher.outputs("solution"))
        ),
        timeout=60,
    )
    await bob.fence()
    await sc.conns["alice"].sync()
    assert any(
        m.get("type") == "kernel" for m in bob.json
    )  # kernel state is public, its outputs are not
    kernel = await sc.student_rest("bob", "GET", f"api/notebooks/{sc.nb_id}/kernel")
    assert kernel.code == 200
    assert_no_leak()
    await sc.client("instructor").request("DELETE", f"api/notebooks/{sc.nb_id}/kernel")


async def test_a_revoked_cell_stops_flowing_at_once(sc: Scenario, bob: Raw) -> None:
    teacher, alice = sc.conns["instructor"], sc.conns["alice"]
    assert "notes" in bob.docs["cell:notes"].get("source", type=Text).to_py()
    start = len(bob.json)
    await sc.client("instructor").set_permissions(sc.nb_id, "notes", mode="0700")
    await bob.wait_for(
        lambda: any(
            m["type"] == "caps" and m["cells"].get("notes") == "---" for m in bob.json[start:]
        )
    )
    await alice.wait_for(lambda: alice.caps["cells"]["notes"] == "---")
    teacher.edit("notes", 0, insert=f"{LATER_SECRET}\n")
    await sc.conns["ta"].wait_for(lambda: sc.conns["ta"].source("notes").startswith(LATER_SECRET))
    await bob.fence()
    await alice.sync()
    [err] = await bob.roundtrip(p.sync_step1("cell:notes", b"\x00"))
    assert err["code"] == "forbidden"
    assert "cell:notes" not in alice.docs
    exported = await sc.student_rest("bob", "GET", f"api/notebooks/{sc.nb_id}/ipynb")
    assert "notes" not in [c["id"] for c in json.loads(exported.body)["cells"]]
    assert_no_leak()


async def test_comments_on_the_hidden_cell_reach_staff_only(sc: Scenario, bob: Raw) -> None:
    """The instructor and the TA discuss the solution in a thread anchored in its source
    (mentioning students, who may not read the cell): no push, count, notice, listing,
    thread, export or error a student gets carries a byte of it, by any comment command
    or endpoint, with guessed ids and forged fields."""
    teacher, ta = sc.conns["instructor"], sc.conns["ta"]
    at = teacher.source("solution").index(SECRET)
    anchor = teacher.anchor("solution", at, at + len(SECRET))
    ack = await teacher.comment_create("solution", f"@bob @alice never show them {SECRET}", anchor)
    tid, cid = ack["thread"]["id"], ack["comment"]["id"]
    assert ack["thread"]["anchor"]["quote"] == SECRET and {w["user"] for w in ack["warnings"]} == {"bob", "alice"}
    reply = await ta.comment_reply(tid, f"agreed, {SECRET} stays here")
    await teacher.wait_for(lambda: any(m["comment"]["id"] == reply["comment"]["id"] for m in teacher.comment_events()))
    public = await teacher.comment_create("task", "a public remark on the task")
    alice = sc.conns["alice"]
    await alice.wait_for(lambda: any(m["comment"]["id"] == public["comment"]["id"] for m in alice.comment_events()))
    await alice.sync()
    await bob.fence()
    assert [m["comment"]["cell_id"] for m in alice.comment_events()] == ["task"]
    assert alice.comment_events("comment_notice") == []
    # everything a student can send about comments, with real and guessed ids
    probes: list[dict[str, Any]] = [
        {"type": "comment_summary"},
        {"type": "comment_list"},
        {"type": "comment_list", "cell_id": "solution"},
        {"type": "comment_notices"},
        {"type": "comment_read", "cell_id": "solution"},
        {"type": "comment_create", "cell_id": "solution", "text": "let me see", "anchor": anchor},
        {"type": "comment_create", "cell_id": "task", "text": "x", "anchor": anchor},
        {"type": "comment_create", "cell_id": "task", "text": "x", "author": "instructor"},
    ]
    for guess in (tid, tid + 1, tid - 1, 10**9):
        probes += [
            {"type": "comment_thread", "thread_id": guess},
            {"type": "comment_reply", "thread_id": guess, "text": "hello"},
            {"type": "comment_resolve", "thread_id": guess, "resolved": True},
        ]
    for guess in (cid, reply["comment"]["id"], cid + 5):
        probes += [
            {"type": "comment_edit", "comment_id": guess, "text": "mine"},
            {"type": "comment_delete", "comment_id": guess},
            {"type": "comment_delete", "comment_id": guess, "thread_id": public["thread"]["id"]},
        ]
    for probe in probes:
        answer = await bob.command(str(probe.pop("type")), **probe)
        assert SECRET not in json.dumps(answer), (probe, answer)
        if probe.get("thread_id") == tid or probe.get("comment_id") == cid:
            assert answer["type"] == "error" and answer["code"] in ("unknown_thread", "unknown_comment"), answer
    summary = await bob.command("comment_summary")
    assert set(summary["cells"]) == {"task"}
    paths = ["", "?cell_id=solution", "/summary", "/notices", f"/{tid}", f"/{tid + 1}"]
    for path in paths:
        await sc.student_rest("bob", "GET", f"api/notebooks/{sc.nb_id}/comments{path}")
    for method, path, body in (
        ("POST", "", {"cell_id": "solution", "text": "x"}),
        ("POST", f"/{tid}", {"text": "x"}),
        ("PUT", f"/{tid}", {"resolved": True}),
        ("PUT", f"/{tid}/{cid}", {"text": "x"}),
        ("DELETE", f"/{tid}/{cid}", None),
        ("POST", "/read", {"cell_id": "solution"}),
    ):
        resp = await sc.student_rest("bob", method, f"api/notebooks/{sc.nb_id}/comments{path}", body)
        assert resp.code in (403, 404), (method, path, resp.code)
    await sc.student_rest("bob", "GET", f"api/notebooks/{sc.nb_id}/ipynb?comments=1")
    # positive control: the staff got the thread, and the export holds it for them
    assert any(SECRET in json.dumps(m) for m in ta.comment_events())
    staff_export = await sc.client("ta").export(sc.nb_id, comments=True)
    assert SECRET in json.dumps(staff_export)
    assert_no_leak()


async def test_the_secret_never_reached_a_student(sc: Scenario, bob: Raw) -> None:
    # what else a student can ask for
    for path in (
        "",
        "/ipynb",
        "/permissions",
        "/cells/solution/permissions",
        "/audit",
        "/chat",
        "/comments",
        "/comments/summary",
        "/comments/notices",
        "/ipynb?comments=1",
        "/kernel",
        "/settings",
    ):
        await sc.student_rest("bob", "GET", f"api/notebooks/{sc.nb_id}{path}")
        await sc.student_rest("alice", "GET", f"api/notebooks/{sc.nb_id}{path}")
    # the history (docs/history.md): the solution's past (its import, its run) and that of
    # notes (readable once, hidden now) are refused or left out on every path
    teacher_api = sc.client("instructor")
    [version] = (await teacher_api.cell_history(sc.nb_id, "solution"))["versions"][-1:]
    assert SECRET in (await teacher_api.cell_version(sc.nb_id, "solution", version["id"]))["source"]
    for path in (
        "/activity?limit=200",
        f"/history?at={time.time()}",
        "/cells/task/history",
        "/cells/task/runs",
        f"/cells/task/history/{version['id']}",
    ):
        for student in ("bob", "alice"):
            await sc.student_rest(student, "GET", f"api/notebooks/{sc.nb_id}{path}")
    for cell in ("solution", "notes"):
        for method, path in (("GET", "history"), ("GET", f"history/{version['id']}"), ("GET", "runs"),
                             ("POST", f"history/{version['id']}/restore")):  # fmt: skip
            resp = await sc.student_rest("bob", method, f"api/notebooks/{sc.nb_id}/cells/{cell}/{path}")
            assert resp.code == 403, (cell, path, resp.code)
        for kind in ("cell_history", "cell_version", "cell_runs", "restore_version"):
            reply = await bob.command(kind, cell_id=cell, version=version["id"])
            assert (reply["type"], reply["code"]) == ("error", "forbidden")
    for kind, fields in (("activity", {"limit": 200}), ("notebook_at", {"at": time.time()})):
        assert (await bob.command(kind, **fields))["type"] == "ack"
    await sc.student_rest("bob", "GET", "api/notebooks")
    late = await sc.raw("carol")  # a late joiner gets the current awareness and index
    late.subscribe("index")
    await late.wait_for(lambda: "index" in late.step2_docs())
    await late.fence()
    # positive control: the recording sees the secret where it is allowed to be
    assert any(leaks(f) for f in STAFF_FRAMES), "the instructor's frames should carry the secret"
    assert sum(len(f) for _, f in STUDENT_FRAMES) > 10_000 and len(STUDENT_REST) > 30
    assert_no_leak()
