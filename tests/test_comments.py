"""Comment threads on cells, through the real Hub and the real service.

Users (see conftest): alice (owner of every notebook made here), bob, carol (group
``students``), dave (no group), admin (Hub admin). Each test makes its own notebook,
so the per-user, per-notebook rate limit of one test does not leak into another.
Absence of a push is proven with a round trip on the same socket: a ``sync`` ack
arrives after everything the server queued for that client before it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from hubfixtures import CollabService, Hub, wait_until

from hub_collab.client import CollabAPIError, CollabClient, CommandError, NotebookConnection
from hub_collab.schema import comment_threads, comments

pytestmark = pytest.mark.timeout(240)

SECRET = "HIDDEN-c0ffee-ANSWER"


def content(*sources: str) -> dict[str, Any]:
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            {"id": f"cell{i}", "cell_type": "code", "source": src, "metadata": {}, "outputs": [], "execution_count": None}
            for i, src in enumerate(sources)
        ],
    }


@contextlib.asynccontextmanager
async def client_for(hub: Hub, collab: CollabService, user: str) -> AsyncIterator[CollabClient]:
    async with CollabClient(collab.public_url, hub.token(user)) as client:
        yield client


@contextlib.asynccontextmanager
async def connection(hub: Hub, collab: CollabService, user: str, nb_id: str) -> AsyncIterator[NotebookConnection]:
    async with client_for(hub, collab, user) as client:
        async with client.open(nb_id) as conn:
            await conn.synced()
            yield conn


async def new_notebook(hub: Hub, collab: CollabService, *sources: str, mode: str = "0755", group: str = "") -> str:
    """A notebook of alice's (with ``group="students"`` and mode 0775 its group writes its cells)."""
    fields: dict[str, Any] = {"mode": mode}
    if group:
        fields["group"] = group
    async with client_for(hub, collab, "alice") as alice:
        nb = await alice.create_notebook("comments test", content(*(sources or ("x = 1", "y = 2"))), **fields)
        return str(nb["id"])


async def settle(conn: NotebookConnection) -> None:
    await conn.command("sync")


def texts(thread: dict[str, Any]) -> list[str]:
    return [c["text"] for c in thread["comments"]]


async def expect_error(code: str, coro: Any) -> CommandError:
    with pytest.raises(CommandError) as info:
        await coro
    assert info.value.code == code, info.value
    return info.value


async def expect_status(status: int, code: str, coro: Any) -> None:
    with pytest.raises(CollabAPIError) as info:
        await coro
    assert (info.value.status, info.value.code) == (status, code), info.value


# -- live threads ----------------------------------------------------------------------------------


async def test_threads_replies_mentions_and_unread_counts_live(hub: Hub, collab: CollabService) -> None:
    nb = await new_notebook(hub, collab, "total = price * quantity", "print(total)")
    async with (
        connection(hub, collab, "alice", nb) as alice,
        connection(hub, collab, "bob", nb) as bob,
        connection(hub, collab, "carol", nb) as carol,
    ):
        ack = await alice.comment_create("cell0", "is <b>quantity</b> ever negative? @carol", alice.anchor("cell0", 16, 24))
        thread, first = ack["thread"], ack["comment"]
        assert thread["cell_id"] == "cell0" and thread["author"] == "alice" and thread["resolved"] is False
        assert thread["anchor"]["quote"] == "quantity" and thread["range"] == {"start": 16, "end": 24}
        assert first["text"] == "is <b>quantity</b> ever negative? @carol" and first["mentions"] == ["carol"]
        assert ack["warnings"] == []

        # every reader gets the thread and its comment, rendered for them
        pushed = (await bob.next_message("comment_thread"))["thread"]
        assert pushed["id"] == thread["id"] and pushed["range"] == {"start": 16, "end": 24}
        got = (await bob.next_message("comment"))["comment"]
        assert got["id"] == first["id"] and got["mentioned"] is False and got["thread_id"] == thread["id"]
        notice = (await carol.next_message("comment_notice"))["notice"]
        assert notice["kind"] == "mention" and notice["comment_id"] == first["id"] and notice["unread"] is True
        assert (await carol.next_message("comment"))["comment"]["mentioned"] is True

        # a reply notifies the thread's author
        reply = (await bob.comment_reply(thread["id"], "no: it is checked above"))["comment"]
        notice = (await alice.next_message("comment_notice"))["notice"]
        assert notice["kind"] == "reply" and notice["author"] == "bob" and notice["thread_id"] == thread["id"]
        await settle(bob)
        assert [n["notice"]["kind"] for n in bob.comment_events("comment_notice")] == []

        # unread: others' comments after your read mark, per cell
        assert (await alice.comment_summary())["cells"] == {"cell0": {"threads": 1, "open": 1, "unread": 1}}
        assert (await carol.comment_summary())["cells"]["cell0"]["unread"] == 2
        assert (await alice.comment_read("cell0"))["unread"] == 0
        assert (await alice.comment_summary())["cells"]["cell0"]["unread"] == 0
        notices = (await alice.comment_notices())["notices"]
        assert [(n["kind"], n["unread"]) for n in notices] == [("reply", False)]

        listed = (await carol.comment_list("cell0"))["threads"]
        assert [t["id"] for t in listed] == [thread["id"]] and texts(listed[0]) == [first["text"], reply["text"]]

    # persisted: read back over REST by another client
    async with client_for(hub, collab, "carol") as rest:
        page = await rest.comment_threads(nb)
        assert [texts(t) for t in page["threads"]] == [[first["text"], reply["text"]]]
        assert (await rest.comment_notices(nb))["notices"][0]["text"] == first["text"]


async def test_an_anchor_follows_edits_and_the_cell_when_it_moves(hub: Hub, collab: CollabService) -> None:
    nb = await new_notebook(hub, collab, "héllo wörld 🎉 end", "second", mode="0775", group="students")
    async with connection(hub, collab, "alice", nb) as alice, connection(hub, collab, "bob", nb) as bob:
        src = alice.source("cell0")
        start = src.index("wörld")
        ack = await alice.comment_create("cell0", "typo?", alice.anchor("cell0", start, start + 5))
        tid = ack["thread"]["id"]
        assert ack["thread"]["anchor"]["quote"] == "wörld"
        # bob types before the range, alice inside it, bob deletes the text after it
        bob.edit("cell0", 0, insert="¡Ω! ")
        await bob.sync()
        await alice.wait_for(lambda: alice.source("cell0").startswith("¡Ω! "))
        alice.edit("cell0", alice.source("cell0").index("wörld") + 1, insert="ee")
        await alice.sync()
        await bob.wait_for(lambda: "weeörld" in bob.source("cell0"))
        bob.edit("cell0", bob.source("cell0").index(" 🎉"), delete=len(" 🎉 end"))
        await bob.sync()
        await alice.wait_for(lambda: alice.source("cell0").endswith("örld"))
        now = alice.source("cell0")
        thread = (await bob.command("comment_thread", thread_id=tid))["thread"]
        rng = thread["range"]
        utf16 = now.encode("utf-16-le")
        assert utf16[2 * rng["start"] : 2 * rng["end"]].decode("utf-16-le") == "weeörld"
        assert thread["anchor"]["quote"] == "wörld"  # what was commented on, as it was
        # the cell moves: the thread goes with it (anchored by the cell's id)
        await alice.move_cell("cell0", 1)
        await bob.wait_for(lambda: bob.cell_ids() == ["cell1", "cell0"])
        assert [t["id"] for t in (await bob.comment_list("cell0"))["threads"]] == [tid]
        assert (await bob.comment_summary())["cells"] == {"cell0": {"threads": 1, "open": 1, "unread": 1}}


async def test_hidden_cells_show_no_thread_count_or_notice_and_follow_chmod_live(hub: Hub, collab: CollabService) -> None:
    nb = await new_notebook(hub, collab, "public", f"answer = '{SECRET}'")
    async with client_for(hub, collab, "alice") as owner:
        await owner.set_permissions(nb, "cell1", mode="0600")
    async with (
        connection(hub, collab, "alice", nb) as alice,
        connection(hub, collab, "bob", nb) as bob,
    ):
        assert bob.caps["cells"]["cell1"] == "---"
        ack = await alice.comment_create("cell1", f"@bob the answer is {SECRET}", alice.anchor("cell1", 10, 30))
        tid, cid = ack["thread"]["id"], ack["comment"]["id"]
        assert [w["user"] for w in ack["warnings"]] == ["bob"]  # bob cannot read the cell
        await alice.comment_create("cell0", "a public remark")
        await bob.wait_for(lambda: len(bob.comment_events("comment")) == 1)
        await settle(bob)
        # nothing of the hidden thread: no push, no notice, no count, no listing, unknown ids
        assert all(SECRET not in json.dumps(m) for m in bob.messages)
        assert bob.comment_events("comment_notice") == []
        assert set((await bob.comment_summary())["cells"]) == {"cell0"}
        assert [t["cell_id"] for t in (await bob.comment_list())["threads"]] == ["cell0"]
        await expect_error("forbidden", bob.comment_list("cell1"))
        await expect_error("forbidden", bob.comment_create("cell1", "let me in"))
        await expect_error("forbidden", bob.comment_read("cell1"))
        await expect_error("unknown_thread", bob.command("comment_thread", thread_id=tid))
        await expect_error("unknown_thread", bob.comment_reply(tid, "hello?"))
        await expect_error("unknown_thread", bob.comment_resolve(tid))
        await expect_error("unknown_comment", bob.comment_edit(cid, "mine now"))
        await expect_error("unknown_comment", bob.comment_delete(cid))
        assert (await bob.comment_notices())["notices"] == []
        async with client_for(hub, collab, "bob") as rest:
            for path in ("", "?cell_id=cell0", f"/{tid}", "/summary", "/notices"):
                try:
                    body = await rest.request("GET", f"api/notebooks/{nb}/comments{path}")
                except CollabAPIError as exc:
                    assert exc.status == 404 and path == f"/{tid}"
                    continue
                assert SECRET not in json.dumps(body), path
            await expect_status(404, "unknown_thread", rest.reply(nb, tid, "x"))
            await expect_status(404, "unknown_comment", rest.delete_comment(nb, tid, cid))
            exported = await rest.export(nb, comments=True)
            assert SECRET not in json.dumps(exported)

        # the cell is opened to bob: its threads appear, pushes flow; closed again: they stop
        async with client_for(hub, collab, "alice") as owner:
            await owner.set_permissions(nb, "cell1", mode="0644")
        await bob.wait_for(lambda: bob.caps["cells"]["cell1"] == "r--")
        assert [t["id"] for t in (await bob.comment_list("cell1"))["threads"]] == [tid]
        assert [n["comment_id"] for n in (await bob.comment_notices())["notices"]] == [cid]
        await alice.comment_reply(tid, "now you can see it")
        await bob.wait_for(lambda: any(m["comment"]["thread_id"] == tid for m in bob.comment_events("comment")))
        async with client_for(hub, collab, "alice") as owner:
            await owner.set_permissions(nb, "cell1", mode="0600")
        await bob.wait_for(lambda: bob.caps["cells"]["cell1"] == "---")
        seen, mark = len(bob.comment_events("comment")), len(bob.messages)
        await alice.comment_reply(tid, f"hidden again {SECRET}")
        await alice.comment_resolve(tid)
        await settle(alice)
        await settle(bob)
        assert len(bob.comment_events("comment")) == seen
        assert [m["type"] for m in bob.messages[mark:]] == ["ack"] and SECRET not in json.dumps(bob.messages[mark:])
        await expect_error("unknown_thread", bob.command("comment_thread", thread_id=tid))


async def test_edit_delete_resolve_and_moderation(hub: Hub, collab: CollabService) -> None:
    nb = await new_notebook(hub, collab, "a = 1", "b = 2")
    async with client_for(hub, collab, "alice") as owner:
        # bob and carol may read cell1 but not write it
        await owner.set_permissions(nb, "cell1", mode="0744")
    async with (
        connection(hub, collab, "alice", nb) as alice,
        connection(hub, collab, "bob", nb) as bob,
        connection(hub, collab, "carol", nb) as carol,
    ):
        ack = await bob.comment_create("cell1", "tpyo")
        tid, mine = ack["thread"]["id"], ack["comment"]["id"]
        edited = (await bob.comment_edit(mine, "typo fixed"))["comment"]
        assert edited["text"] == "typo fixed" and edited["edited_at"] is not None
        assert (await carol.next_message("comment", start=0))["comment"]["id"] == mine
        await carol.wait_for(lambda: any(m["comment"]["text"] == "typo fixed" for m in carol.comment_events()))
        await expect_error("forbidden", carol.comment_edit(mine, "carol was here"))
        await expect_error("forbidden", alice.comment_edit(mine, "not even the owner"))
        await expect_error("forbidden", carol.comment_delete(mine))
        # resolve: the author, the cell's writers, the owner; not another reader
        await expect_error("forbidden", carol.comment_resolve(tid))
        assert (await bob.comment_resolve(tid))["thread"]["resolved"] is True
        await carol.wait_for(lambda: len(carol.comment_events("comment_thread")) == 2)
        pushed = carol.comment_events("comment_thread")[1]["thread"]
        assert pushed["resolved"] is True and pushed["resolved_by"] == "bob" and pushed["id"] == tid
        reopened = (await alice.comment_resolve(tid, False))["thread"]
        assert reopened["resolved"] is False and reopened["resolved_by"] is None
        # moderation: the owner and admins delete anyone's comment; audited
        other = (await carol.comment_reply(tid, "rude words"))["comment"]
        tomb = (await alice.comment_delete(other["id"]))["comment"]
        assert tomb["deleted"] is True and tomb["text"] == "" and tomb["author"] == "carol"
        await expect_error("comment_deleted", carol.comment_edit(other["id"], "resurrect"))
        assert (await alice.comment_delete(other["id"]))["comment"]["deleted"] is True  # again: no-op
        async with client_for(hub, collab, "admin") as admin:
            await admin.delete_comment(nb, tid, mine)
        listed = (await carol.comment_list("cell1"))["threads"][0]["comments"]
        assert [(c["author"], c["deleted"], c["text"]) for c in listed] == [("bob", True, ""), ("carol", True, "")]
    async with client_for(hub, collab, "alice") as owner:
        events = (await owner.request("GET", f"api/notebooks/{nb}/audit"))["events"]
        assert sorted((e["actor"], e["target"]) for e in events if e["action"] == "comment_moderate") == sorted(
            [("alice", str(other["id"])), ("admin", str(mine))]
        )


async def test_a_deleted_cells_threads_are_kept_marked_for_the_owner(hub: Hub, collab: CollabService) -> None:
    nb = await new_notebook(hub, collab, "keep", "to be deleted")
    async with connection(hub, collab, "alice", nb) as alice, connection(hub, collab, "bob", nb) as bob:
        tid = (await bob.comment_create("cell1", "why this cell?"))["thread"]["id"]
        await alice.delete_cell("cell1")
        await alice.wait_for(lambda: any(m["thread"]["cell_deleted"] for m in alice.comment_events("comment_thread")))
        owners = (await alice.comment_list())["threads"]
        assert [(t["id"], t["cell_deleted"], texts(t)) for t in owners] == [(tid, True, ["why this cell?"])]
        await settle(bob)
        assert not any(m["thread"]["cell_deleted"] for m in bob.comment_events("comment_thread"))
        assert (await bob.comment_list())["threads"] == []
        await expect_error("unknown_thread", bob.comment_reply(tid, "still there?"))
        await expect_error("cell_deleted", alice.comment_reply(tid, "kept read-only"))
        await expect_error("unknown_cell", alice.comment_create("cell1", "gone"))
        assert (await alice.comment_summary())["cells"] == {}


async def test_threads_of_a_cell_deleted_just_before_a_crash_are_marked_on_the_next_load(hub: Hub, collab: CollabService) -> None:
    """The index change of a deletion was kept but the service died before marking the
    cell's threads: the next load of the notebook marks them."""
    nb = await new_notebook(hub, collab, "keep", "to be deleted")
    async with connection(hub, collab, "alice", nb) as alice:
        tid = (await alice.comment_create("cell1", "about to go"))["thread"]["id"]
        await alice.delete_cell("cell1")
        await alice.wait_for(lambda: any(m["thread"]["cell_deleted"] for m in alice.comment_events("comment_thread")))
    # the crash, as the database saw it: the deletion is there, the mark is not
    engine = sa.create_engine(collab.db_url)
    try:
        with engine.begin() as conn:
            conn.execute(comment_threads.update().where(comment_threads.c.id == tid).values(cell_deleted=False))
        await asyncio.get_running_loop().run_in_executor(None, collab.restart)
        async with connection(hub, collab, "alice", nb) as alice:

            def marked() -> bool:
                with engine.connect() as conn:
                    return bool(conn.execute(sa.select(comment_threads.c.cell_deleted).where(comment_threads.c.id == tid)).scalar())

            await asyncio.get_running_loop().run_in_executor(None, lambda: wait_until(marked, timeout=20, what="the thread marked"))
            owners = (await alice.comment_list())["threads"]
            assert [(t["id"], t["cell_deleted"]) for t in owners] == [(tid, True)]
            assert (await alice.comment_summary())["cells"] == {}
            await expect_error("cell_deleted", alice.comment_reply(tid, "read-only now"))
    finally:
        engine.dispose()


# -- bad input ------------------------------------------------------------------------------------------

BAD_TEXTS: list[tuple[Any, str]] = [
    ("", "invalid_comment"),
    ("  \n\t ", "invalid_comment"),
    (None, "invalid_comment"),
    (123, "invalid_comment"),
    (["a"], "invalid_comment"),
    ("bell\x07", "invalid_comment"),
    ("\x1b[31mred", "invalid_comment"),
    ("surrogate \ud800", "invalid_comment"),
    ("x" * 4001, "too_large"),
]


def relpos(kind: int, *parts: bytes) -> str:
    return base64.b64encode(bytes([kind]) + b"".join(parts)).decode()


async def test_bad_input_over_the_websocket(hub: Hub, collab: CollabService) -> None:
    nb = await new_notebook(hub, collab, "0123456789")
    other = await new_notebook(hub, collab, "other notebook")
    async with connection(hub, collab, "bob", nb) as bob, connection(hub, collab, "carol", nb) as carol:
        for value, code in BAD_TEXTS:
            await expect_error(code, bob.command("comment_create", cell_id="cell0", text=value))
        await expect_error("invalid_comment", bob.command("comment_create", cell_id="cell0"))
        await expect_error("invalid_command", bob.command("comment_create", cell_id=7, text="x"))
        await expect_error("unknown_cell", bob.command("comment_create", cell_id="nosuchcell", text="x"))
        await expect_error("invalid_field", bob.command("comment_create", cell_id="cell0", text="x", author="alice"))
        await expect_error("invalid_field", bob.command("comment_reply", thread_id=1, text="x", created_at=0))
        good = bob.anchor("cell0", 2, 5)
        item = base64.b64decode(good["start"])
        bad_anchors: list[Any] = [
            "cell0",
            {"start": good["start"]},
            {"start": good["start"], "end": good["end"], "extra": 1},
            {"start": "!!notbase64!!", "end": good["end"]},
            {"start": "", "end": good["end"]},
            {"start": base64.b64encode(b"\x00" * 40).decode(), "end": good["end"]},
            {"start": relpos(2, b"\x07\x00\x00"), "end": good["end"]},  # a nested type's id
            {"start": relpos(1, b"\x08metadata\x00"), "end": good["end"]},  # another root type
            {"start": relpos(0, b"\x63\x05\x00"), "end": good["end"]},  # an item this doc lacks
            {"start": base64.b64encode(item + b"\x00\x00").decode(), "end": good["end"]},  # trailing bytes
            {"start": good["end"], "end": good["start"]},  # reversed
            {"start": good["start"], "end": good["start"]},  # empty
        ]
        for anchor in bad_anchors:
            await expect_error("invalid_anchor", bob.command("comment_create", cell_id="cell0", text="x", anchor=anchor))
        # an item of another notebook's cell is not a position here
        async with connection(hub, collab, "alice", other) as alice_other:
            foreign = alice_other.anchor("cell0", 1, 4)
        await expect_error("invalid_anchor", bob.command("comment_create", cell_id="cell0", text="x", anchor=foreign))
        for bad_id in ("abc", 0, -3, 2**70, None, [1], "1 OR 1=1", True):
            await expect_error("unknown_thread", bob.command("comment_reply", thread_id=bad_id, text="x"))
            await expect_error("unknown_comment", bob.command("comment_edit", comment_id=bad_id, text="x"))
        for bad in ({"limit": 0}, {"limit": 201}, {"limit": "x"}, {"before": -1}):
            await expect_error("invalid_query", bob.command("comment_list", **bad))
        await expect_error("invalid_command", bob.command("comment_resolve", thread_id=1, resolved="yes"))

        html = "<script>alert(1)</script><img src=x onerror=alert(2)>"
        ack = await bob.comment_create("cell0", html, good)
        assert ack["comment"]["text"] == html and ack["thread"]["anchor"]["quote"] == "234"
        assert (await carol.next_message("comment"))["comment"]["text"] == html
        await settle(carol)
        assert len(carol.comment_events("comment")) == 1  # nothing refused was stored or sent
        # ids of another notebook are unknown here
        async with client_for(hub, collab, "alice") as alice:
            elsewhere = await alice.create_thread(other, "cell0", "in the other notebook")
        await expect_error("unknown_thread", bob.comment_reply(elsewhere["thread"]["id"], "x"))
        await expect_error("unknown_comment", bob.comment_delete(elsewhere["comment"]["id"]))


async def test_bad_input_over_rest(hub: Hub, collab: CollabService) -> None:
    nb = await new_notebook(hub, collab)
    token = hub.token("bob")
    base = f"{collab.public_url}api/notebooks/{nb}/comments"
    headers = {"Authorization": f"token {token}"}
    loop = asyncio.get_running_loop()

    def call(method: str, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("headers", headers)
        return requests.request(method, url, timeout=20, **kwargs)

    async def answer(method: str, url: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        resp = await loop.run_in_executor(None, functools.partial(call, method, url, **kwargs))
        return resp.status_code, (resp.json() if resp.content else {})

    for value, code in BAD_TEXTS:
        status, body = await answer("POST", base, json={"cell_id": "cell0", "text": value})
        assert (status, body["code"]) == (413 if code == "too_large" else 400, code), value
        assert set(body) == {"status", "code", "message"}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"data": b"not json", "headers": {**headers, "Content-Type": "application/json"}}, 400, "invalid_json"),
        ({"json": ["text"]}, 400, "invalid_json"),
        ({"json": {"text": "x"}}, 400, "invalid_comment"),
        ({"json": {"cell_id": "cell0", "text": "x", "author": "alice"}}, 400, "invalid_field"),
        ({"json": {"cell_id": ["cell0"], "text": "x"}}, 400, "invalid_command"),
        ({"json": {"cell_id": "nope", "text": "x"}}, 404, "unknown_cell"),
        ({"json": {"cell_id": "cell0", "text": "x" * 60_000}}, 413, "too_large"),
        ({"data": b"{" * 100_000, "headers": {**headers, "Content-Type": "application/json"}}, 413, "too_large"),
    ]
    for kwargs, want_status, want_code in cases:
        status, body = await answer("POST", base, **kwargs)
        assert (status, body["code"]) == (want_status, want_code), kwargs.get("json", "")
    status, created = await answer("POST", base, json={"cell_id": "cell0", "text": "<i>hi</i>"})
    assert status == 201 and created["comment"]["author"] == "bob" and created["comment"]["text"] == "<i>hi</i>"
    tid, cid = created["thread"]["id"], created["comment"]["id"]
    for bad in ("abc", "0", "-1", "99999999999", "1e3"):
        assert (await answer("GET", f"{base}/{bad}"))[0] == 404, bad
        assert (await answer("POST", f"{base}/{bad}", json={"text": "x"}))[0] == 404, bad
        assert (await answer("DELETE", f"{base}/{tid}/{bad}"))[0] == 404, bad
    # a comment named under another thread is unknown there
    status, second = await answer("POST", base, json={"cell_id": "cell1", "text": "second thread"})
    assert (await answer("PUT", f"{base}/{second['thread']['id']}/{cid}", json={"text": "x"}))[1]["code"] == "unknown_comment"
    for body in ({"resolved": "yes"}, {"resolved": True, "by": "alice"}, {}):
        status, err = await answer("PUT", f"{base}/{tid}", json=body)
        assert status == 400, body
    for query in ("limit=0", "limit=201", "before=x", "cell_id=nope"):
        status, err = await answer("GET", f"{base}?{query}")
        assert status in (400, 404), query
    for query in ("comments=maybe", "widgets=maybe", "widgets=2&comments=1"):
        status, err = await answer("GET", f"{collab.public_url}api/notebooks/{nb}/ipynb?{query}")
        assert (status, err["code"]) == (400, "invalid_query"), query
    # someone else's comment: 403; the notebook of someone who cannot read it: 404
    async with client_for(hub, collab, "carol") as carol:
        await expect_status(403, "forbidden", carol.edit_comment(nb, tid, cid, "carol's now"))
        await expect_status(403, "forbidden", carol.delete_comment(nb, tid, cid))
    async with client_for(hub, collab, "alice") as owner:
        await owner.set_permissions(nb, mode="0700")
    status, err = await answer("GET", base)
    assert (status, err["code"]) == (404, "unknown_notebook")
    status, err = await answer("POST", base, json={"cell_id": "cell0", "text": "x"})
    assert (status, err["code"]) == (404, "unknown_notebook")


async def test_a_flood_is_rate_limited_per_user(hub: Hub, collab: CollabService) -> None:
    nb = await new_notebook(hub, collab)
    async with connection(hub, collab, "bob", nb) as bob, connection(hub, collab, "carol", nb) as carol:
        started = time.monotonic()
        results = await asyncio.gather(
            *(bob.command("comment_create", cell_id="cell0", text=f"spam {i}") for i in range(40)),
            return_exceptions=True,
        )
        accepted = [r for r in results if isinstance(r, dict)]
        refused = [r for r in results if isinstance(r, CommandError)]
        refilled = int(time.monotonic() - started) + 1
        assert len(accepted) + len(refused) == 40 and 10 <= len(accepted) <= 10 + refilled
        assert all(r.code == "rate_limited" and "retry after" in r.message for r in refused)
        await carol.comment_create("cell1", "I can still comment")
        await settle(carol)
        assert len(carol.comment_events("comment")) == len(accepted) + 1
        assert (await carol.comment_summary())["cells"]["cell0"]["threads"] == len(accepted)
    resp = await asyncio.get_running_loop().run_in_executor(
        None,
        lambda: requests.post(
            f"{collab.public_url}api/notebooks/{nb}/comments",
            headers={"Authorization": f"token {hub.token('bob')}"},
            json={"cell_id": "cell0", "text": "more"},
            timeout=60,
        ),
    )
    assert resp.status_code == 429 and resp.json()["code"] == "rate_limited"
    assert 0 < resp.json()["retry_after"] <= 1.0 and int(resp.headers["Retry-After"]) >= 1


async def test_export_with_comments_only_when_asked_and_only_readable_cells(hub: Hub, collab: CollabService) -> None:
    nb = await new_notebook(hub, collab, "shown", f"hidden = '{SECRET}'")
    async with client_for(hub, collab, "alice") as alice:
        await alice.set_permissions(nb, "cell1", mode="0600")
        t0 = await alice.create_thread(nb, "cell0", "on the shown cell")
        await alice.reply(nb, t0["thread"]["id"], "and a reply")
        await alice.create_thread(nb, "cell1", f"on the hidden one {SECRET}")
        plain = await alice.export(nb)
        assert all("hub_collab" not in c["metadata"] for c in plain["cells"])
        full = await alice.export(nb, comments=True)
        by_cell = {c["id"]: c["metadata"].get("hub_collab", {}).get("comments") for c in full["cells"]}
        assert [texts(t) for t in by_cell["cell0"]] == [["on the shown cell", "and a reply"]]
        assert texts(by_cell["cell1"][0]) == [f"on the hidden one {SECRET}"]
    async with client_for(hub, collab, "bob") as bob:
        mine = await bob.export(nb, comments=True)
        assert [c["id"] for c in mine["cells"]] == ["cell0"] and SECRET not in json.dumps(mine)
        assert texts(mine["cells"][0]["metadata"]["hub_collab"]["comments"][0]) == ["on the shown cell", "and a reply"]


async def test_comments_survive_a_restart_and_go_with_the_notebook(hub: Hub, collab: CollabService) -> None:
    nb = await new_notebook(hub, collab)
    keep = await new_notebook(hub, collab)
    async with client_for(hub, collab, "alice") as alice:
        made = await alice.create_thread(nb, "cell0", "before the restart")
        await alice.create_thread(keep, "cell0", "kept")
        await alice.mark_comments_read(nb, "cell0")
    await asyncio.get_running_loop().run_in_executor(None, collab.restart)
    async with client_for(hub, collab, "alice") as alice:
        page = await alice.comment_threads(nb)
        assert [t["id"] for t in page["threads"]] == [made["thread"]["id"]]
        assert (await alice.comment_summary(nb))["cells"]["cell0"] == {"threads": 1, "open": 1, "unread": 0}
        await alice.delete_notebook(nb)
        engine = sa.create_engine(collab.db_url)
        try:

            def count(nb_id: str) -> int:
                with engine.connect() as conn:
                    return sum(
                        int(conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.notebook_id == nb_id)).scalar() or 0)
                        for t in (comment_threads, comments)
                    )

            await asyncio.get_running_loop().run_in_executor(
                None, lambda: wait_until(lambda: count(nb) == 0, timeout=20, what="comment rows purged")
            )
            assert count(keep) == 2
        finally:
            engine.dispose()
