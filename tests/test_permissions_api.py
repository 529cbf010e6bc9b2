"""Permission PUTs from hostile and careless clients (issue 13, item 7), through the real Hub.

``PUT api/notebooks/{id}/permissions`` and ``PUT api/notebooks/{id}/cells/{cell_id}/permissions``:

* who may not ``chmod`` the object gets 403 whatever the body (none, ``{}``, the current
  permissions, a change, malformed, oversized, the wrong content type): the check comes
  before the body is read; a user who may not open the notebook gets the 404 of a
  notebook that does not exist;
* a change that changes nothing (the same permissions, however spelt) answers 200 with
  the current permissions and writes nothing: the notebook's rule rows in the service's
  database keep their ids, the audit log gets no entry, and no session receives
  anything (no ``caps``, no ``index`` update);
* malformed bodies get a clear 4xx in the one error shape and change nothing;
* a student (a member of the notebook's group, not its owner) cannot widen their rights
  by any body.

"Receives nothing" is checked with fences, as in ``test_bad_input``: after the request
every connection sends ``sync``, whose ack comes after anything the server queued for it
before; the ack must be the only frame it got. Positive controls show that the same
checks see a real change. The notebook (owner ``instructor``, group ``students``) and the
three connections (instructor, alice, bob) live for the module; every test leaves the
permissions as it found them.
"""

from __future__ import annotations

import asyncio
import copy
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from tornado.httpclient import HTTPRequest, HTTPResponse

from hub_collab.client import CollabClient, NotebookConnection

pytestmark = pytest.mark.asyncio(loop_scope="module")

USERS = ("instructor", "ta", "alice", "bob", "dave", "admin")
#: HubCollab.max_request_bytes (the default)
MAX_REQUEST_BYTES = 32 * 1024 * 1024

CONTENT = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {},
    "cells": [
        {"id": "intro", "cell_type": "markdown", "metadata": {}, "source": "# Lab"},
        {
            "id": "solution",
            "cell_type": "code",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": "answer = 42",
        },
    ],
}


@dataclass
class Env:
    collab: Any
    clients: dict[str, CollabClient]
    conns: dict[str, NotebookConnection]
    nb_id: str
    bobs: str  # a cell bob created (he owns it)
    cells: list[str] = field(default_factory=list)

    def path(self, cell_id: str | None = None) -> str:
        cell = f"/cells/{cell_id}" if cell_id is not None else ""
        return f"api/notebooks/{self.nb_id}{cell}/permissions"


@pytest.fixture(scope="module")
async def env(hub: Any, collab: Any) -> AsyncIterator[Env]:
    clients = {
        u: CollabClient(collab.public_url, hub.token(u), request_timeout=120) for u in USERS
    }
    teacher = clients["instructor"]
    nb = await teacher.create_notebook(
        "permission puts",
        content=copy.deepcopy(CONTENT),
        group="students",
        mode="1770",
        default_cell_mode="0770",
    )
    nb_id = nb["id"]
    await teacher.set_permissions(nb_id, acl=["user:ta:rwx", "mask::rwx"])
    await teacher.set_permissions(nb_id, "intro", mode="0750")
    await teacher.set_permissions(nb_id, "solution", mode="0700")
    conns: dict[str, NotebookConnection] = {}
    for user in ("instructor", "alice", "bob"):
        conns[user] = clients[user].open(nb_id)
        await conns[user].connect()
        await conns[user].synced()
    bobs = await conns["bob"].insert_cell(2, "code", "bob's answer")
    for conn in conns.values():
        await conn.wait_for(lambda conn=conn: bobs in conn.cell_ids())
        await conn.synced()
    assert conns["bob"].caps["cells"] == {"intro": "r-x", "solution": "---", bobs: "rwx"}
    env = Env(collab, clients, conns, nb_id, bobs, ["intro", "solution", bobs])
    try:
        yield env
    finally:
        for conn in conns.values():
            await conn.close()
        for client in clients.values():
            client.close()


# -- helpers ---------------------------------------------------------------------------


async def put(
    env: Env,
    user: str,
    path: str,
    body: Any = None,
    *,
    content_type: str = "application/json",
) -> HTTPResponse:
    """A raw PUT as ``user``: ``body`` bytes or str as they are, anything else as JSON."""
    client = env.clients[user]
    if body is None:
        data = b""
    elif isinstance(body, bytes):
        data = body
    elif isinstance(body, str):
        data = body.encode()
    else:
        data = json.dumps(body).encode()
    req = HTTPRequest(
        client.base_url + path,
        method="PUT",
        headers={"Authorization": f"token {client.token}", "Content-Type": content_type},
        body=data,
        request_timeout=120,
        follow_redirects=False,
    )
    return await client.http.fetch(req, raise_error=False)


def error_body(resp: HTTPResponse, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert ``resp`` is the JSON error shape with ``status`` (and ``code``); return it."""
    body = resp.body or b""
    assert resp.code == status, f"expected {status}, got {resp.code}: {body[:300]!r}"
    assert resp.headers.get("Content-Type", "").startswith("application/json")
    data = json.loads(body)
    assert set(data) == {"status", "code", "message"}, data
    assert data["status"] == status and isinstance(data["code"], str) and data["code"]
    assert isinstance(data["message"], str) and 0 < len(data["message"]) < 500, data
    if code is not None:
        assert data["code"] == code, data
    return dict(data)


def rule_rows(env: Env) -> list[tuple[Any, ...]]:
    """The notebook's stored permission lines with their row ids (a rewrite gives new ids)."""
    path = env.collab.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute(
            "SELECT id, ptype, v0, v2, v3, v4, v5 FROM collab_permission_rules"
            " WHERE v1 = ? ORDER BY id",
            (env.nb_id,),
        ).fetchall()


async def state(env: Env) -> dict[str, Any]:
    """Everything a permission PUT could change, read as the notebook's owner."""
    teacher = env.clients["instructor"]
    audit = await teacher.request("GET", f"api/notebooks/{env.nb_id}/audit")
    return {
        "notebook": await teacher.get_permissions(env.nb_id),
        "cells": {c: await teacher.get_permissions(env.nb_id, c) for c in env.cells},
        "audit": audit["events"],
        "rows": rule_rows(env),
        "caps": {u: c.caps for u, c in env.conns.items()},
    }


def frames(env: Env) -> dict[str, int]:
    return {u: c.frames_received for u, c in env.conns.items()}


async def nothing_pushed(env: Env, before: dict[str, int]) -> None:
    """Every connection's ``sync`` ack is the only frame it received since ``before``."""
    for user, conn in env.conns.items():
        start = len(conn.messages)
        await conn.sync()
        got = [m["type"] for m in conn.messages[start:]]
        assert conn.frames_received == before[user] + 1 and got == ["ack"], (
            f"{user} received {conn.frames_received - before[user] - 1} frame(s) besides "
            f"the ack of its sync: {conn.messages[start:]}"
        )


async def caps_pushed(env: Env, user: str, start: int) -> list[dict[str, Any]]:
    """The ``caps`` messages ``user``'s connection received after ``start``, fenced by a sync."""
    conn = env.conns[user]
    await conn.sync()
    return [m for m in conn.messages[start:] if m["type"] == "caps"]


def hostile_bodies(current: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    """Bodies that must make no difference to who may not chmod: (body, content type)."""
    json_type = "application/json"
    return {
        "no body": (None, json_type),
        "empty object": ({}, json_type),
        "the current permissions": (current, json_type),
        "mode": ({"mode": "0777"}, json_type),
        "symbolic mode": ({"mode": "a+rwx"}, json_type),
        "acl": ({"acl": ["user:bob:rwx", "mask::rwx"]}, json_type),
        "owner": ({"owner": "bob"}, json_type),
        "group": ({"group": "staff"}, json_type),
        "defaults": ({"default_cell_mode": "0777", "default_acl": ["user:bob:rwx"]}, json_type),
        "everything": (
            {"owner": "bob", "group": "students", "mode": "1777", "acl": ["group:students:rwx"]},
            json_type,
        ),
        "not json": (b"{mode: 0777", json_type),
        "json array": (b'["mode", "0777"]', json_type),
        "invalid utf-8": (b'{"mode": "\xff\xfe"}', json_type),
        "wrong types": ({"mode": ["0777"], "acl": "user:bob:rwx", "owner": 5}, json_type),
        "unknown field": ({"admin": True, "mode": "0777"}, json_type),
        "text/plain": ('{"mode": "0777"}', "text/plain"),
        "oversized": (b'{"mode": "' + b"7" * (MAX_REQUEST_BYTES + 16) + b'"}', json_type),
    }


# -- who may not chmod -------------------------------------------------------------------


async def test_who_may_not_chmod_gets_403_whatever_the_body(env: Env) -> None:
    before, seen = await state(env), frames(env)
    targets = [
        ("bob", None),  # a student: the notebook is not his
        ("bob", "intro"),  # a cell he may read and run
        ("bob", "solution"),  # a cell hidden from him
        ("alice", env.bobs),  # another student's cell
        ("ta", "intro"),  # named in the notebook's ACL (rwx): still not an owner
    ]
    for user, cell in targets:
        current = before["notebook"] if cell is None else before["cells"][cell]
        for what, (body, ctype) in hostile_bodies(current).items():
            resp = await put(env, user, env.path(cell), body, content_type=ctype)
            err = error_body(resp, 403, "forbidden")
            assert "may change" in err["message"], (user, cell, what, err)
    assert await state(env) == before
    await nothing_pushed(env, seen)


async def test_who_may_not_open_the_notebook_gets_the_404_of_no_notebook(env: Env) -> None:
    before, seen = await state(env), frames(env)
    for cell in (None, "intro", env.bobs):
        nowhere = f"api/notebooks/zzzzzzzzzzzz{f'/cells/{cell}' if cell else ''}/permissions"
        for what, (body, ctype) in hostile_bodies(before["notebook"]).items():
            if what == "oversized":
                continue  # the same answer, without sending 32 MiB twice per path
            resp = await put(env, "dave", env.path(cell), body, content_type=ctype)
            missing = await put(env, "dave", nowhere, body, content_type=ctype)
            assert error_body(resp, 404) == error_body(missing, 404), what
    assert await state(env) == before
    await nothing_pushed(env, seen)


# -- a change that changes nothing --------------------------------------------------------


async def test_a_change_that_changes_nothing_writes_and_pushes_nothing(env: Env) -> None:
    before, seen = await state(env), frames(env)
    nb, bobs = before["notebook"], before["cells"][env.bobs]
    assert nb["mode"] == "1770" and nb["acl"] == ["user:ta:rwx", "mask::rwx"]
    no_ops = [
        ("instructor", None, {}),
        ("instructor", None, nb),  # what GET answered, sent back
        ("instructor", None, {"mode": 0o1770}),  # the mode as a JSON number (1016)
        ("instructor", None, {"mode": "ug+rwx,o-rwx"}),  # symbolic, already so; sticky kept
        ("instructor", None, {"acl": ["m::7", "u:ta:rwx"]}),  # another order and spelling
        ("instructor", None, {"owner": "instructor", "group": "students"}),
        ("instructor", None, {"default_cell_mode": "770", "default_acl": []}),
        ("instructor", "solution", {"mode": "u=rwx,go="}),  # the notebook's owner, any cell
        ("admin", "intro", {"mode": "0750", "acl": []}),  # a Hub admin
        ("bob", env.bobs, {}),  # a cell's owner
        ("bob", env.bobs, bobs),
        ("bob", env.bobs, {"mode": "ug+rw", "group": "students", "owner": "bob"}),
    ]
    for user, cell, body in no_ops:
        resp = await put(env, user, env.path(cell), body)
        assert resp.code == 200, (user, cell, body, resp.code, resp.body)
        current = nb if cell is None else before["cells"][cell]
        assert json.loads(resp.body) == current, (user, cell, body)
    # no rule rewritten, no audit entry, no caps, no index update: nothing at all
    assert await state(env) == before
    await nothing_pushed(env, seen)

    # the control: the same checks see a real change, and the change back
    start = {u: len(c.messages) for u, c in env.conns.items()}
    changed = await env.clients["bob"].set_permissions(env.nb_id, env.bobs, mode="0700")
    assert changed == {**bobs, "mode": "0700"}
    alice_caps = await caps_pushed(env, "alice", start["alice"])
    assert alice_caps and alice_caps[-1]["cells"][env.bobs] == "---"
    after = await state(env)
    assert after["rows"] != before["rows"]
    assert [(e["actor"], e["target"]) for e in after["audit"][:1]] == [("bob", f"cell:{env.bobs}")]
    start_alice = len(env.conns["alice"].messages)
    await env.clients["bob"].set_permissions(env.nb_id, env.bobs, mode=bobs["mode"])
    alice_caps = await caps_pushed(env, "alice", start_alice)
    assert alice_caps and alice_caps[-1]["cells"][env.bobs] == "rwx"
    restored = await state(env)
    assert restored["notebook"] == nb and restored["cells"] == before["cells"]
    assert len(restored["audit"]) == len(before["audit"]) + 2


# -- chgrp -----------------------------------------------------------------------------------


async def test_a_cells_owner_gives_it_only_to_a_group_they_are_in(env: Env, hub: Any) -> None:
    bob, teacher = env.clients["bob"], env.clients["instructor"]
    before, seen = await state(env), frames(env)
    mine = before["cells"][env.bobs]
    assert (mine["owner"], mine["group"]) == ("bob", "students")
    for body in (
        {"group": "staff"},
        {"group": "nosuchgroup"},
        {"group": "staff", "mode": "0700"},  # refused as a whole: the mode stays too
        {"mode": "0700", "acl": ["user:alice:r"], "group": "ta"},
    ):
        err = error_body(await put(env, "bob", env.path(env.bobs), body), 403, "forbidden")
        assert err["message"] == (
            "you may give this cell only to a group you are a member of, and you are not in "
            f"{body['group']!r} (the notebook's owner or an admin may give it to any group)"
        )
    assert await state(env) == before
    await nothing_pushed(env, seen)

    # to a group he is in, or to none: his to do (real changes, recorded)
    assert (await bob.set_permissions(env.nb_id, env.bobs, group=""))["group"] == ""
    assert (await bob.set_permissions(env.nb_id, env.bobs, group="students"))["group"] == "students"
    events = (await teacher.request("GET", f"api/notebooks/{env.nb_id}/audit"))["events"]
    assert [(e["actor"], e["detail"]["new"]["group"]) for e in events[:2]] == [
        ("bob", "students"),
        ("bob", ""),
    ]
    # the notebook's owner (in "staff" only) and an admin give it to any group; bob still
    # chmods it while it is another group's, but does not give it to a third
    assert (await teacher.set_permissions(env.nb_id, env.bobs, group="ta"))["group"] == "ta"
    kept = await bob.set_permissions(env.nb_id, env.bobs, group="ta", mode="0750")
    assert (kept["group"], kept["mode"]) == ("ta", "0750")
    error_body(await put(env, "bob", env.path(env.bobs), {"group": "staff"}), 403, "forbidden")
    admin = env.clients["admin"]
    assert (await admin.set_permissions(env.nb_id, env.bobs, group="nosuchgroup"))["group"] == (
        "nosuchgroup"
    )
    # membership is the Hub's, read live: once in "staff", bob may give his cell to it
    try:
        hub.add_to_group("staff", "bob")
        await bob_sees_groups(bob, {"staff", "students"})
        assert (await bob.set_permissions(env.nb_id, env.bobs, group="staff"))["group"] == "staff"
    finally:
        hub.reset_groups()
    await bob_sees_groups(bob, {"students"})
    error_body(await put(env, "bob", env.path(env.bobs), {"group": "ta"}), 403, "forbidden")
    assert (await bob.set_permissions(env.nb_id, env.bobs, group="students"))["group"] == "students"
    await teacher.set_permissions(env.nb_id, env.bobs, group="students", mode=mine["mode"])
    after = await state(env)
    assert after["cells"] == before["cells"] and after["notebook"] == before["notebook"]


async def bob_sees_groups(bob: CollabClient, groups: set[str]) -> None:
    """Wait until the service knows bob's Hub groups are ``groups`` (it re-reads them)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while set((await bob.me())["groups"]) != groups:
        assert loop.time() < deadline, f"the service never saw bob in {groups}"
        await asyncio.sleep(0.1)  # polling the service: there is no event to wait on


async def test_the_notebook_owner_and_admins_give_the_notebook_to_any_group(env: Env) -> None:
    teacher, admin = env.clients["instructor"], env.clients["admin"]
    before = await state(env)
    assert "students" not in (await teacher.me())["groups"]  # the instructor teaches students
    assert (await teacher.set_permissions(env.nb_id, group="staff"))["group"] == "staff"
    assert (await admin.set_permissions(env.nb_id, group="nosuchgroup"))["group"] == "nosuchgroup"
    assert (await teacher.set_permissions(env.nb_id, group="students"))["group"] == "students"
    # who is not the notebook's owner may not chmod it, let alone chgrp it
    for user in ("bob", "ta"):
        err = error_body(await put(env, user, env.path(), {"group": "students"}), 403, "forbidden")
        assert err["message"] == "only the notebook's owner or an admin may change its permissions"
    after = await state(env)
    assert after["notebook"] == before["notebook"] and after["cells"] == before["cells"]


# -- malformed bodies ----------------------------------------------------------------------

MALFORMED = {
    "no body": (None, "application/json", 400, "invalid_json"),
    "not json": (b"{mode: 0750", "application/json", 400, "invalid_json"),
    "truncated json": (b'{"mode": "0750"', "application/json", 400, "invalid_json"),
    "json array": (b'["mode", "0750"]', "application/json", 400, "invalid_json"),
    "json string": (b'"0750"', "application/json", 400, "invalid_json"),
    "json null": (b"null", "application/json", 400, "invalid_json"),
    "invalid utf-8": (b'{"mode": "\xff\xfe"}', "application/json", 400, "invalid_json"),
    "deeply nested": (
        b'{"acl": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
        "application/json",
        400,
        "invalid_json",
    ),
    "text/plain": (b'{"mode": "0750"}', "text/plain", 415, "unsupported_media_type"),
    "form": (b"mode=0750", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    "unknown field": ({"mode": "0700", "sticky": True}, "application/json", 400, "invalid_field"),
    "mode a list": ({"mode": ["0700"]}, "application/json", 400, "invalid_mode"),
    "mode a bool": ({"mode": True}, "application/json", 400, "invalid_mode"),
    "mode null": ({"mode": None}, "application/json", 400, "invalid_mode"),
    "mode an object": ({"mode": {"u": "rwx"}}, "application/json", 400, "invalid_mode"),
    "mode negative": ({"mode": -1}, "application/json", 400, "invalid_mode"),
    "mode 9": ({"mode": "0790"}, "application/json", 400, "invalid_mode"),
    "mode setuid": ({"mode": "4770"}, "application/json", 400, "invalid_mode"),
    "mode unknown letter": ({"mode": "u+q"}, "application/json", 400, "invalid_mode"),
    "acl a string": ({"acl": "user:ta:rwx"}, "application/json", 400, "invalid_acl"),
    "acl of numbers": ({"acl": [1, 2]}, "application/json", 400, "invalid_acl"),
    "acl with null": ({"acl": [None]}, "application/json", 400, "invalid_acl"),
    "acl base entry": ({"acl": ["user::rwx"]}, "application/json", 400, "invalid_acl"),
    "acl duplicate": (
        {"acl": ["user:ta:rwx", "u:ta:r"]},
        "application/json",
        400,
        "invalid_acl",
    ),
    "acl bad name": ({"acl": ["user:../ta:rwx"]}, "application/json", 400, "invalid_acl"),
    "group a number": ({"group": 7}, "application/json", 400, "invalid_group"),
    "group a path": ({"group": "../staff"}, "application/json", 400, "invalid_group"),
    "owner empty": ({"owner": ""}, "application/json", 400, "invalid_owner"),
    "owner a list": ({"owner": ["alice"]}, "application/json", 400, "invalid_owner"),
    "owner with a space": ({"owner": "a b"}, "application/json", 400, "invalid_owner"),
    "over max_request_bytes": (
        b'{"acl": ["' + b"u:ta:rwx" * (MAX_REQUEST_BYTES // 8 + 2) + b'"]}',
        "application/json",
        413,
        "too_large",
    ),
    "a mode of 4 MB": (
        {"mode": "u+r," * 1_000_000 + "u+r"},
        "application/json",
        400,
        "invalid_mode",
    ),
    "an ACL entry of 1 MB": (
        {"acl": ["user:" + "b" * 1_000_000 + ":rwx"]},
        "application/json",
        400,
        "invalid_acl",
    ),
    "a group of 1 MB": ({"group": "g" * 1_000_000}, "application/json", 400, "invalid_group"),
    "an owner of 1 MB": ({"owner": "o" * 1_000_000}, "application/json", 400, "invalid_owner"),
    "10,000 unknown fields of 1 KB": (
        {f"{i:05d}" + "k" * 1000: 1 for i in range(10_000)},
        "application/json",
        400,
        "invalid_field",
    ),
    "an ACL of 257 entries": (
        {"acl": [f"user:u{i}:r" for i in range(257)]},
        "application/json",
        400,
        "invalid_acl",
    ),
}


@pytest.mark.parametrize(
    "body, ctype, status, code", MALFORMED.values(), ids=list(MALFORMED.keys())
)
async def test_malformed_bodies_are_clear_4xx_and_change_nothing(
    env: Env, body: Any, ctype: str, status: int, code: str
) -> None:
    before, seen = await state(env), frames(env)
    # by the notebook's owner on the notebook and on a cell, and by a cell's owner
    for user, cell in (("instructor", None), ("instructor", "intro"), ("bob", env.bobs)):
        resp = await put(env, user, env.path(cell), body, content_type=ctype)
        if code == "invalid_owner" and user == "bob":
            code_now, status_now = "forbidden", 403  # changing the owner needs chown first
        else:
            code_now, status_now = code, status
        error_body(resp, status_now, code_now)
    assert await state(env) == before
    await nothing_pushed(env, seen)


async def test_a_field_of_the_notebook_is_unknown_on_a_cell(env: Env) -> None:
    before, seen = await state(env), frames(env)
    for body in ({"default_cell_mode": "0700"}, {"default_acl": []}, {"mode": "0700", "x": 1}):
        err = error_body(await put(env, "instructor", env.path("intro"), body), 400, "invalid_field")
        assert all(k in err["message"] for k in body if k != "mode")
    assert await state(env) == before
    await nothing_pushed(env, seen)


# -- a student cannot escalate ---------------------------------------------------------------


async def test_a_student_cannot_escalate_by_any_body(env: Env) -> None:
    bob = env.clients["bob"]
    before, seen = await state(env), frames(env)
    model_before = await bob.get_notebook(env.nb_id)
    # everything but his own cell: 403, whatever he sends
    for cell in (None, "intro", "solution"):
        current = before["notebook"] if cell is None else before["cells"][cell]
        for what, (body, ctype) in hostile_bodies(current).items():
            if what == "oversized":
                continue  # sent in test_who_may_not_chmod_gets_403_whatever_the_body
            error_body(await put(env, "bob", env.path(cell), body, content_type=ctype), 403)
    # his own cell: he may chmod it, not give it away nor reach beyond it
    for body, status, code in (
        ({"owner": "alice"}, 403, "forbidden"),
        ({"owner": "instructor", "mode": "0777"}, 403, "forbidden"),
        ({"group": "staff"}, 403, "forbidden"),  # a group he is not in
        ({"group": "staff", "mode": "0707"}, 403, "forbidden"),
        ({"default_cell_mode": "0777"}, 400, "invalid_field"),
        ({"mode": "0777", "admin": True}, 400, "invalid_field"),
        ({"mode": "0777", "notebook": {"mode": "0777"}}, 400, "invalid_field"),
    ):
        error_body(await put(env, "bob", env.path(env.bobs), body), status, code)
    assert await state(env) == before
    await nothing_pushed(env, seen)
    # his rights are what they were: the hidden cell stays hidden, the notebook is not his
    model = await bob.get_notebook(env.nb_id)
    assert model["caps"] == model_before["caps"]
    assert model["caps"]["cells"]["solution"] == "---" and model["caps"]["owner"] is False
    exported = await bob.export(env.nb_id)
    assert "solution" not in [c["id"] for c in exported["cells"]]
