"""The history through the real Hub: REST and WebSocket commands, restore seen live,
rights of now applied to the past, bad input, and nothing of a hidden cell's past
reaching a student.

The instructor's notebook has a cell hidden from the students from the start
(``secret``: its source and its run's output carry :data:`SECRET`) and one the students
could read and edit for a while, hidden since (``notes``: bob typed :data:`ONCE` into it
while he could). Every REST body and WebSocket frame the students receive is recorded;
the last test asserts neither string reached them (the instructor's answers carry both:
the positive control).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tornado.httpclient import HTTPRequest, HTTPResponse

from hub_collab.client import CollabClient, CommandError, NotebookConnection

pytestmark = pytest.mark.asyncio(loop_scope="module")

SECRET = "HIDDEN-9d2f71c4-ANSWER"
ONCE = "ONCE-5b8e03aa-READABLE"
#: never readable by a student
NEEDLES = [SECRET, "9d2f71c4"]
#: readable by the students until ``notes`` was hidden, never after
LATER_NEEDLES = [ONCE, "5b8e03aa"]

#: (what, body) of every answer a student got
STUDENT: list[tuple[str, str]] = []
#: every answer the instructor got (the positive control)
STAFF: list[str] = []


def leaked(text: str, needles: list[str] = NEEDLES) -> list[str]:
    return [n for n in needles if n in text]


def content() -> dict[str, Any]:
    def code(cid: str, source: str) -> dict[str, Any]:
        return {"id": cid, "cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": source}

    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [code("task", "x = 1"), code("secret", f"print({SECRET!r})"), code("notes", "# notes"), code("scratch", "s = 0")],
    }


class Class:
    def __init__(self, hub: Any, collab: Any) -> None:
        self.hub, self.collab = hub, collab
        self.clients: dict[str, CollabClient] = {}
        self.conns: dict[str, NotebookConnection] = {}
        self.nb = ""
        self.marks: dict[str, float] = {}
        #: STUDENT's length when notes was hidden from the students
        self.hidden_from = 0

    def client(self, user: str) -> CollabClient:
        if user not in self.clients:
            self.clients[user] = CollabClient(self.collab.public_url, self.hub.token(user), request_timeout=60)
        return self.clients[user]

    async def connect(self, user: str) -> NotebookConnection:
        conn = self.client(user).open(self.nb)
        sink = STAFF if user == "instructor" else None

        def record(kind: str, data: Any) -> None:
            text = data.decode("latin-1") if isinstance(data, bytes) else json.dumps(data)
            if sink is not None:
                sink.append(text)
            else:
                STUDENT.append((f"{user} ws", text))

        conn.listeners.append(record)
        await conn.connect()
        await conn.synced()
        self.conns[user] = conn
        return conn

    async def rest(self, user: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, token: bool = True) -> HTTPResponse:
        """A request as ``user``, recorded whatever its status."""
        client = self.client(user)
        data = None if body is None else (body if isinstance(body, (str, bytes)) else json.dumps(body))
        if data is None and method == "POST":
            data = b""
        auth = {"Authorization": f"token {client.token}"} if token else {}
        req = HTTPRequest(
            client.base_url + path, method=method, body=data, request_timeout=60, allow_nonstandard_methods=True,
            headers={**auth, "Content-Type": "application/json", **(headers or {})},
        )  # fmt: skip
        resp = await client.http.fetch(req, raise_error=False)
        text = (resp.body or b"").decode("utf-8", "replace")
        if user == "instructor":
            STAFF.append(text)
        else:
            STUDENT.append((f"{user} {method} {path} -> {resp.code}", text))
        return resp

    async def ok(self, user: str, path: str, method: str = "GET") -> Any:
        resp = await self.rest(user, method, path)
        assert resp.code == 200, (path, resp.code, resp.body)
        return json.loads(resp.body)

    async def type(self, user: str, cell: str, text: str) -> None:
        """``user`` types ``text`` at the start of ``cell``; back once it is durable."""
        conn = self.conns[user]
        conn.edit(cell, 0, insert=text)
        await conn.sync()

    async def close(self) -> None:
        for conn in self.conns.values():
            await conn.close()
        for client in self.clients.values():
            client.close()


def error(resp: HTTPResponse) -> tuple[int, str]:
    body = json.loads(resp.body)
    assert set(body) == {"status", "code", "message"} and body["status"] == resp.code and body["message"]
    return resp.code, body["code"]


@pytest.fixture(scope="module")
async def cls(hub: Any, collab: Any) -> AsyncIterator[Class]:
    c = Class(hub, collab)
    teacher = c.client("instructor")
    nb = await teacher.create_notebook("history", content=content(), group="students", mode="1770", default_cell_mode="0770")
    c.nb = nb["id"]
    await teacher.set_permissions(c.nb, "secret", mode="0700")
    await c.connect("instructor")
    await c.connect("alice")
    await c.connect("bob")
    t, a, b = c.conns["instructor"], c.conns["alice"], c.conns["bob"]
    # the hidden cell: more secret versions, and a run whose output is the secret
    t.set_source("secret", f"print({SECRET!r})  # v2")
    await t.sync()
    result = await teacher.request("POST", f"api/notebooks/{c.nb}/cells/secret/execute?wait=1")
    assert SECRET in json.dumps(result["outputs"])
    # notes: readable, and bob writes into it; then it is hidden from the students
    b.edit("notes", 7, insert=f"\n{ONCE}")
    await b.sync()
    await t.wait_for(lambda: ONCE in t.source("notes"))
    c.marks["notes readable"] = time.time()
    await asyncio.sleep(0.05)  # a distinct moment on the service's clock
    await teacher.set_permissions(c.nb, "notes", mode="0700")
    await b.wait_for(lambda: b.caps["cells"]["notes"] == "---")
    await c.conns["alice"].wait_for(lambda: c.conns["alice"].caps["cells"]["notes"] == "---")
    c.hidden_from = len(STUDENT)
    # task: alice, then bob, type; it runs
    a.edit("task", 5, insert="\ny = 2")
    await a.sync()
    await b.wait_for(lambda: "y = 2" in b.source("task"))
    c.marks["alice typed"] = time.time()
    b.edit("task", 0, insert="# bob\n")
    await b.sync()
    await c.client("alice").request("POST", f"api/notebooks/{c.nb}/cells/task/execute?wait=1")
    await c.client("bob").post_chat(c.nb, "done with the task")
    try:
        yield c
    finally:
        await c.close()


# -- a cell's versions ----------------------------------------------------------------------------


async def test_timeline_version_and_diff(cls: Class) -> None:
    page = await cls.ok("bob", f"api/notebooks/{cls.nb}/cells/task/history")
    assert [v["author"] for v in page["versions"]] == ["bob", "alice", "instructor"]
    assert page["next_before"] is None
    assert all(v["end"] >= v["start"] > 0 and v["updates"] >= 1 for v in page["versions"])
    oldest = page["versions"][-1]["id"]
    version = await cls.ok("bob", f"api/notebooks/{cls.nb}/cells/task/history/{oldest}")
    assert (version["source"], version["current"]) == ("x = 1", "# bob\nx = 1\ny = 2")
    assert version["diff"] == "--- version\n+++ current\n@@ -1 +1,3 @@\n-x = 1\n+# bob\n+x = 1\n+y = 2\n"
    # the same through the WebSocket command
    b = cls.conns["bob"]
    ack = await b.command("cell_history", cell_id="task", limit=2)
    assert [v["id"] for v in ack["versions"]] == [v["id"] for v in page["versions"][:2]]
    rest = await b.command("cell_history", cell_id="task", before=ack["next_before"])
    assert [v["id"] for v in rest["versions"]] == [oldest] and rest["next_before"] is None
    assert (await b.command("cell_version", cell_id="task", version=oldest))["source"] == "x = 1"


async def test_restore_is_seen_live_and_recorded(cls: Class) -> None:
    a, b = cls.conns["alice"], cls.conns["bob"]
    versions = (await cls.ok("alice", f"api/notebooks/{cls.nb}/cells/task/history"))["versions"]
    alices = next(v for v in versions if v["author"] == "alice")
    reply = await cls.ok("alice", f"api/notebooks/{cls.nb}/cells/task/history/{alices['id']}/restore", "POST")
    assert reply == {"cell_id": "task", "version": alices["id"], "changed": True}
    await b.wait_for(lambda: b.source("task") == "x = 1\ny = 2")
    await a.wait_for(lambda: a.source("task") == "x = 1\ny = 2")
    newest = (await cls.ok("bob", f"api/notebooks/{cls.nb}/cells/task/history"))["versions"][0]
    assert newest["author"] == "alice"
    # bob undoes it over the WebSocket: restoring the version before the restore
    ack = await b.command("restore_version", cell_id="task", version=versions[0]["id"])
    assert ack["changed"] is True
    await a.wait_for(lambda: a.source("task") == "# bob\nx = 1\ny = 2")
    again = await b.command("restore_version", cell_id="task", version=versions[0]["id"])
    assert again["changed"] is False


async def test_concurrent_restores_converge(cls: Class) -> None:
    versions = (await cls.ok("alice", f"api/notebooks/{cls.nb}/cells/task/history"))["versions"]
    first, second = versions[-1]["id"], next(v for v in versions if v["author"] == "alice")["id"]
    newest_before = versions[0]["id"]
    answers = await asyncio.gather(
        cls.rest("alice", "POST", f"api/notebooks/{cls.nb}/cells/task/history/{first}/restore"),
        cls.rest("instructor", "POST", f"api/notebooks/{cls.nb}/cells/task/history/{second}/restore"),
        cls.conns["bob"].command("restore_version", cell_id="task", version=first),
    )
    assert [r.code for r in answers[:2]] == [200, 200]
    changed = [json.loads(r.body)["changed"] for r in answers[:2]] + [answers[2]["changed"]]
    a, b, t = cls.conns["alice"], cls.conns["bob"], cls.conns["instructor"]
    await t.sync()
    await a.sync()
    await b.sync()
    await b.wait_for(lambda: a.source("task") == b.source("task") == t.source("task"))
    assert t.source("task") in ("x = 1", "x = 1\ny = 2")
    # one after the other: each that changed the cell is a version of its author's
    versions = (await cls.ok("instructor", f"api/notebooks/{cls.nb}/cells/task/history"))["versions"]
    new = [v for v in versions if v["id"] > newest_before]
    assert any(changed) and len(new) == sum(changed)
    assert {v["author"] for v in new} <= {"alice", "bob", "instructor"}


async def test_restore_needs_w_now(cls: Class) -> None:
    teacher = cls.client("instructor")
    await teacher.set_permissions(cls.nb, "scratch", mode="0750")
    b = cls.conns["bob"]
    await b.wait_for(lambda: b.caps["cells"]["scratch"] == "r-x")
    [version] = (await cls.ok("bob", f"api/notebooks/{cls.nb}/cells/scratch/history"))["versions"]
    assert error(await cls.rest("bob", "POST", f"api/notebooks/{cls.nb}/cells/scratch/history/{version['id']}/restore")) == (403, "forbidden")
    with pytest.raises(CommandError) as err:
        await b.command("restore_version", cell_id="scratch", version=version["id"])
    assert err.value.code == "forbidden"
    await teacher.set_permissions(cls.nb, "scratch", mode="0770")


async def test_past_runs_with_who_ran_them(cls: Class) -> None:
    runs = (await cls.ok("bob", f"api/notebooks/{cls.nb}/cells/task/runs"))["runs"]
    assert len(runs) == 1
    [run] = runs
    assert (run["user"], run["status"], run["per_user"]) == ("alice", "ok", False)
    assert run["outputs"] == [] and run["execution_count"] >= 1
    staff = (await cls.ok("instructor", f"api/notebooks/{cls.nb}/cells/secret/runs"))["runs"]
    assert [r["user"] for r in staff] == ["instructor"] and SECRET in json.dumps(staff[0]["outputs"])


# -- the notebook -------------------------------------------------------------------------------


async def test_activity_feed_leaves_out_what_you_may_not_read_now(cls: Class) -> None:
    await cls.client("instructor").set_permissions(cls.nb, "scratch", mode="0775")
    bobs = (await cls.ok("bob", f"api/notebooks/{cls.nb}/activity"))["items"]
    kinds = {i["kind"] for i in bobs}
    assert {"edit", "run", "permissions", "chat", "created"} <= kinds
    assert not [i for i in bobs if i.get("cell_id") in ("secret", "notes") or i.get("target") in ("cell:secret", "cell:notes")]
    assert any(i["kind"] == "edit" and i["cell_id"] == "task" and i["user"] == "alice" for i in bobs)
    assert [i["at"] for i in bobs] == sorted((i["at"] for i in bobs), reverse=True)
    staff = (await cls.ok("instructor", f"api/notebooks/{cls.nb}/activity"))["items"]
    assert any(i.get("cell_id") == "notes" and i["kind"] == "edit" and i["user"] == "bob" for i in staff)
    assert any(i.get("cell_id") == "secret" and i["kind"] == "run" for i in staff)
    # pages, each going on below the last, make up the whole feed
    everything = (await cls.ok("bob", f"api/notebooks/{cls.nb}/activity?limit=200"))["items"]
    seen: list[Any] = []
    before: Any = None
    for _ in range(50):
        page = await cls.conns["bob"].command("activity", limit=3, **({"before": before} if before else {}))
        seen += page["items"]
        before = page["next_before"]
        if before is None:
            break
    assert seen == everything


async def test_the_notebook_at_a_time(cls: Class) -> None:
    at = cls.marks["notes readable"]
    bobs = await cls.ok("bob", f"api/notebooks/{cls.nb}/history?at={at}")
    # notes was readable then, and is not now: left out, as secret
    assert [c["id"] for c in bobs["cells"]] == ["task", "scratch"]
    assert bobs["cells"][0]["source"] == "x = 1" and bobs["nbformat"] == 4
    staff = await cls.ok("instructor", f"api/notebooks/{cls.nb}/history?at={at}")
    assert [c["id"] for c in staff["cells"]] == ["task", "secret", "notes", "scratch"]
    assert ONCE in staff["cells"][2]["source"] and SECRET in json.dumps(staff["cells"][1]["outputs"])
    later = await cls.ok("alice", f"api/notebooks/{cls.nb}/history?at={cls.marks['alice typed']}")
    assert later["cells"][0]["source"] == "x = 1\ny = 2"
    ack = await cls.conns["bob"].command("notebook_at", at=at)
    assert ack["notebook"] == bobs and ack["at"] == at
    resp = await cls.rest("bob", "GET", f"api/notebooks/{cls.nb}/history?at={at}&download=1")
    assert resp.code == 200 and resp.headers["Content-Disposition"].startswith('attachment; filename="history-')
    assert error(await cls.rest("bob", "GET", f"api/notebooks/{cls.nb}/history?at=1000")) == (404, "no_history")


async def test_a_deleted_cell_is_the_owners_past_only(cls: Class) -> None:
    b, t = cls.conns["bob"], cls.conns["instructor"]
    cid = await b.insert_cell(4, "code", "bob's own")
    await b.sync()
    [version] = (await cls.ok("bob", f"api/notebooks/{cls.nb}/cells/{cid}/history"))["versions"]
    before = time.time()
    await b.delete_cell(cid)
    await t.wait_for(lambda: cid not in t.cell_ids())
    for path in (f"cells/{cid}/history", f"cells/{cid}/history/{version['id']}", f"cells/{cid}/runs"):
        assert error(await cls.rest("bob", "GET", f"api/notebooks/{cls.nb}/{path}")) == (404, "unknown_cell")
    assert error(await cls.rest("instructor", "POST", f"api/notebooks/{cls.nb}/cells/{cid}/history/{version['id']}/restore")) == (404, "unknown_cell")
    bobs = await cls.ok("bob", f"api/notebooks/{cls.nb}/history?at={before}")
    assert cid not in [c["id"] for c in bobs["cells"]]
    assert not [i for i in (await cls.ok("bob", f"api/notebooks/{cls.nb}/activity"))["items"] if i.get("cell_id") == cid]
    staff = await cls.ok("instructor", f"api/notebooks/{cls.nb}/history?at={before}")
    assert cid in [c["id"] for c in staff["cells"]]
    feed = (await cls.ok("instructor", f"api/notebooks/{cls.nb}/activity"))["items"]
    assert {("structure", "delete_cell"), ("structure", "insert_cell")} <= {(i["kind"], i.get("action")) for i in feed if i.get("cell_id") == cid}


# -- bad input ----------------------------------------------------------------------------------


async def test_hidden_cells_are_forbidden_on_every_path(cls: Class) -> None:
    staff = (await cls.ok("instructor", f"api/notebooks/{cls.nb}/cells/secret/history"))["versions"]
    real = staff[0]["id"]
    for cell in ("secret", "notes"):
        for method, path in (
            ("GET", f"cells/{cell}/history"),
            ("GET", f"cells/{cell}/history?limit=1"),
            ("GET", f"cells/{cell}/history/{real}"),
            ("GET", f"cells/{cell}/history/0"),
            ("GET", f"cells/{cell}/history/not-a-number"),
            ("GET", f"cells/{cell}/runs"),
            ("POST", f"cells/{cell}/history/{real}/restore"),
        ):
            assert error(await cls.rest("bob", method, f"api/notebooks/{cls.nb}/{path}")) == (403, "forbidden"), path
        for kind, fields in (
            ("cell_history", {}),
            ("cell_version", {"version": real}),
            ("cell_runs", {}),
            ("restore_version", {"version": real}),
        ):
            with pytest.raises(CommandError) as err:
                await cls.conns["bob"].command(kind, cell_id=cell, **fields)
            assert err.value.code == "forbidden"
    # a hidden cell's version id on a cell he may read: an unknown version, like any other
    for version in (real, 0):
        assert error(await cls.rest("bob", "GET", f"api/notebooks/{cls.nb}/cells/task/history/{version}")) == (404, "unknown_version")
        assert error(await cls.rest("bob", "POST", f"api/notebooks/{cls.nb}/cells/task/history/{version}/restore")) == (404, "unknown_version")


async def test_malformed_oversized_and_forged_input(cls: Class) -> None:
    nb = f"api/notebooks/{cls.nb}"
    cases = [
        ("GET", f"{nb}/cells/task/history?limit=0", (400, "invalid_query")),
        ("GET", f"{nb}/cells/task/history?limit=201", (400, "invalid_query")),
        ("GET", f"{nb}/cells/task/history?limit=1e3", (400, "invalid_query")),
        ("GET", f"{nb}/cells/task/history?before=-5", (400, "invalid_query")),
        ("GET", f"{nb}/cells/task/history?before=" + "9" * 40, (400, "invalid_query")),
        ("GET", f"{nb}/cells/task/history?since=0", (400, "invalid_query")),
        ("GET", f"{nb}/cells/task/history/-1", (404, "unknown_version")),
        ("GET", f"{nb}/cells/task/history/" + "9" * 30, (404, "unknown_version")),
        ("GET", f"{nb}/cells/task/history/99999999999", (404, "unknown_version")),
        ("GET", f"{nb}/cells/task/history/1%3B%20drop", (404, "unknown_version")),
        ("GET", f"{nb}/cells/task/runs?limit=21", (400, "invalid_query")),
        ("GET", f"{nb}/cells/..%2Fsecret/history", (404, "not_found")),
        ("GET", f"{nb}/cells/nosuchcell/history", (404, "unknown_cell")),
        ("GET", f"{nb}/cells/{'x' * 65}/history", (404, "not_found")),
        ("GET", f"{nb}/activity?limit=100000", (400, "invalid_query")),
        ("GET", f"{nb}/activity?before=nan", (400, "invalid_query")),
        ("GET", f"{nb}/activity?before=inf", (400, "invalid_query")),
        ("GET", f"{nb}/activity?before=1e300", (400, "invalid_query")),
        ("GET", f"{nb}/activity?before=" + "1" * 100, (400, "invalid_query")),
        ("GET", f"{nb}/history", (400, "invalid_query")),
        ("GET", f"{nb}/history?at=", (400, "invalid_query")),
        ("GET", f"{nb}/history?at=yesterday", (400, "invalid_query")),
        ("GET", f"{nb}/history?at=-1", (400, "invalid_query")),
        ("GET", "api/notebooks/zzzzzzzzzzzz/history?at=1", (404, "unknown_notebook")),
        ("GET", "api/notebooks/zzzzzzzzzzzz/activity", (404, "unknown_notebook")),
        ("POST", f"{nb}/cells/task/history/1/restore?x=1", (400, "invalid_query")),
    ]
    for method, path, expected in cases:
        assert error(await cls.rest("bob", method, path)) == expected, path
    versions = (await cls.ok("bob", f"{nb}/cells/task/history"))["versions"]
    restore = f"{nb}/cells/task/history/{versions[0]['id']}/restore"
    assert error(await cls.rest("bob", "POST", restore, {"source": "forged"})) == (400, "invalid_field")
    assert error(await cls.rest("bob", "POST", restore, "{not json")) == (400, "invalid_json")
    assert error(await cls.rest("bob", "POST", restore, b"{" + b" " * 4096 + b"}")) == (413, "too_large")
    assert error(await cls.rest("bob", "POST", restore, token=False)) == (401, "unauthenticated")
    # forged identities in headers change nothing: the restore is bob's
    await cls.type("instructor", "task", "# changed\n")
    oldest = f"{nb}/cells/task/history/{versions[-1]['id']}/restore"
    forged = await cls.rest("bob", "POST", oldest, headers={"X-Forwarded-User": "instructor", "X-Remote-User": "alice"})
    assert forged.code == 200 and json.loads(forged.body)["changed"] is True
    assert (await cls.ok("bob", f"{nb}/cells/task/history"))["versions"][0]["author"] == "bob"
    b = cls.conns["bob"]
    for fields, code in (
        ({"cell_id": "task", "limit": "many"}, "invalid_query"),
        ({"cell_id": "task", "limit": True}, "invalid_query"),
        ({"cell_id": "task", "before": [1]}, "invalid_query"),
        ({"cell_id": 7}, "invalid_command"),
        ({"cell_id": "x" * 10_000}, "unknown_cell"),
        ({}, "invalid_command"),
    ):
        with pytest.raises(CommandError) as err:
            await b.command("cell_history", **fields)
        assert err.value.code == code, fields
    for version in (None, "abc", -1, 2**70, 1.5, {"id": 1}):
        with pytest.raises(CommandError) as err:
            await b.command("cell_version", cell_id="task", version=version)
        assert err.value.code == "unknown_version", version
    for at in (None, "soon", float("nan"), 1e200, -3):
        with pytest.raises(CommandError) as err:
            await b.command("notebook_at", **({"at": at} if at is not None else {}))
        assert err.value.code == "invalid_query", at
    # the connection is still fine
    assert (await b.command("cell_history", cell_id="task", limit=1))["versions"]


async def test_cookie_restore_needs_xsrf(cls: Class, browser_login: Any) -> None:
    s = await asyncio.to_thread(browser_login, cls.collab.public_url, "alice")
    await cls.type("instructor", "task", "# again\n")
    versions = (await cls.ok("alice", f"api/notebooks/{cls.nb}/cells/task/history"))["versions"]
    url = f"{cls.collab.public_url}api/notebooks/{cls.nb}/cells/task/history/{versions[-1]['id']}/restore"
    resp = await asyncio.to_thread(lambda: s.post(url, timeout=30))
    assert resp.status_code == 403 and resp.json()["code"] == "xsrf"
    resp = await asyncio.to_thread(lambda: s.post(url, headers=s.xsrf_headers(), timeout=30))
    assert resp.status_code == 200, resp.text
    assert (await cls.ok("bob", f"api/notebooks/{cls.nb}/cells/task/history"))["versions"][0]["author"] == "alice"


async def test_nothing_of_a_hidden_cells_past_reached_a_student(cls: Class) -> None:
    now = time.time()
    for user in ("alice", "bob"):
        for path in (
            "activity?limit=200",
            f"history?at={now}",
            f"history?at={cls.marks['notes readable']}",
            "ipynb",
            "cells/task/history?limit=200",
            "cells/task/runs",
            "cells/scratch/history",
        ):
            await cls.rest(user, "GET", f"api/notebooks/{cls.nb}/{path}")
    for conn in (cls.conns["alice"], cls.conns["bob"]):
        await conn.command("activity", limit=200)
        await conn.command("notebook_at", at=cls.marks["notes readable"])
        await conn.sync()
    assert any(leaked(text) for text in STAFF) and any(ONCE in t for t in STAFF), "the instructor's answers carry both"
    assert len(STUDENT) > 80
    for i, (what, text) in enumerate(STUDENT):
        found = leaked(text, NEEDLES + LATER_NEEDLES if i >= cls.hidden_from else NEEDLES)
        assert not found, f"{what} carries {found}: {text[:300]}"
    assert any(leaked(text, LATER_NEEDLES) for _, text in STUDENT[: cls.hidden_from]), "seen while readable"
