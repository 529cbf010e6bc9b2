"""Chat beside every notebook, through the real Hub and the real service.

Users (see conftest): alice, bob, carol (group ``students``), dave (no group),
admin (Hub admin). Each test makes its own notebook, owned by alice, so the
per-user, per-notebook rate limit of one test does not leak into another.
Absence of a push is proven with a round trip on the same socket: a ``sync``
ack arrives after everything the server queued for that client before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from hubfixtures import CollabService, Hub, wait_until

from hub_collab.chat import chat_messages, parse_refs
from hub_collab.client import CollabAPIError, CollabClient, CommandError, NotebookConnection
from hub_collab.errors import BadRequest, TooLarge
from hub_collab.messages import RateLimiter, clean_text, parse_mentions

pytestmark = pytest.mark.timeout(180)


def notebook_content(*sources: str) -> dict[str, Any]:
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            {
                "id": f"cell{i}",
                "cell_type": "code",
                "source": src,
                "metadata": {},
                "outputs": [],
                "execution_count": None,
            }
            for i, src in enumerate(sources)
        ],
    }


@contextlib.asynccontextmanager
async def client_for(
    hub: Hub, collab: CollabService, user: str, scopes: list[str] | None = None
) -> AsyncIterator[CollabClient]:
    async with CollabClient(collab.public_url, hub.token(user, scopes)) as client:
        yield client


@contextlib.asynccontextmanager
async def connection(
    hub: Hub, collab: CollabService, user: str, nb_id: str
) -> AsyncIterator[NotebookConnection]:
    async with client_for(hub, collab, user) as client:
        async with client.open(nb_id) as conn:
            await conn.synced()
            yield conn


async def new_notebook(
    hub: Hub,
    collab: CollabService,
    *,
    mode: str = "0755",
    group: str = "",
    cells: tuple[str, ...] = (),
) -> str:
    async with client_for(hub, collab, "alice") as alice:
        fields: dict[str, Any] = {"mode": mode}
        if group:
            fields["group"] = group
        nb = await alice.create_notebook(
            "chat test", notebook_content(*cells) if cells else None, **fields
        )
        return str(nb["id"])


async def settle(conn: NotebookConnection) -> None:
    """Return once every frame the server queued for ``conn`` so far has arrived."""
    await conn.command("sync")


def pushes(conn: NotebookConnection, kind: str = "chat") -> list[dict[str, Any]]:
    return conn.chat_events(kind)


# -- pure functions (no service) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("", "invalid_chat"),
        ("   \n\t ", "invalid_chat"),
        (None, "invalid_chat"),
        (42, "invalid_chat"),
        (["hi"], "invalid_chat"),
        ({"text": "hi"}, "invalid_chat"),
        ("bell\x07", "invalid_chat"),
        ("nul\x00", "invalid_chat"),
        ("\x1b[31mred", "invalid_chat"),
        ("lone\rreturn", "invalid_chat"),
        ("c1\x85", "invalid_chat"),
        ("surrogate \ud800", "invalid_chat"),
        ("x" * 4001, "too_large"),
    ],
)
def test_clean_text_refuses(value: Any, code: str) -> None:
    with pytest.raises((BadRequest, TooLarge)) as info:
        clean_text(value, 4000)
    assert info.value.code == code


def test_clean_text_accepts() -> None:
    assert clean_text("a\tb\nc", 4000) == "a\tb\nc"
    assert clean_text("windows\r\nline", 4000) == "windows\nline"
    assert clean_text("<script>alert(1)</script>", 4000) == "<script>alert(1)</script>"
    assert clean_text("x" * 4000, 4000) == "x" * 4000
    assert clean_text("héllo ✓ 🎉", 4000) == "héllo ✓ 🎉"


def test_mentions_and_refs_parsing() -> None:
    assert parse_mentions("hi @bob, @carol. and @bob again; mail me@example.com") == [
        "bob",
        "carol",
    ]
    assert parse_mentions("@first.last@example.org ok") == ["first.last@example.org"]
    assert parse_refs("see #cell1 and #nope and #cell1, x#cell0", ["cell0", "cell1"]) == ["cell1"]


def test_rate_limiter_bucket() -> None:
    now = [0.0]
    limiter = RateLimiter(2.0, 3, clock=lambda: now[0])
    assert [limiter.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("k") == pytest.approx(0.5)
    assert limiter.take("other") == 0.0
    now[0] += 0.5
    assert limiter.take("k") == 0.0
    assert limiter.take("k") > 0


# -- live chat through the Hub -----------------------------------------------------------------


async def test_two_users_chat_live(hub: Hub, collab: CollabService) -> None:
    nb = await new_notebook(hub, collab)
    async with (
        connection(hub, collab, "alice", nb) as alice,
        connection(hub, collab, "bob", nb) as bob,
    ):
        ack = await alice.chat("hello bob")
        msg = ack["message"]
        assert msg["author"] == "alice" and msg["text"] == "hello bob" and msg["notebook"] == nb
        assert msg["deleted"] is False and msg["edited_at"] is None and ack["warnings"] == []
        got = await bob.next_message("chat")
        assert got["message"]["id"] == msg["id"] and got["message"]["text"] == "hello bob"
        assert got["message"]["author"] == "alice"

        # every reader gets each message once, the writer too (as a push besides the ack)
        reply = await bob.chat("hi alice <b>not bold</b>")
        await alice.wait_for(
            lambda: any(m["message"]["id"] == reply["message"]["id"] for m in pushes(alice))
        )
        assert [m["message"]["text"] for m in pushes(alice)] == [
            "hello bob",
            "hi alice <b>not bold</b>",
        ]
        await settle(bob)
        assert [m["message"]["id"] for m in pushes(bob)] == [msg["id"], reply["message"]["id"]]

        # the ids order the conversation
        page = await bob.chat_history()
        assert [m["text"] for m in page["messages"]] == ["hello bob", "hi alice <b>not bold</b>"]
        assert page["next_before"] is None


async def test_chat_after_unanswered_frame_is_not_delayed(hub: Hub, collab: CollabService) -> None:
    """A chat command right after a frame the server does not answer (the "typing" awareness
    state a chat UI sends) is not held by Nagle's algorithm until the server's delayed ACK."""
    nb = await new_notebook(hub, collab)
    async with (
        connection(hub, collab, "alice", nb) as alice,
        connection(hub, collab, "bob", nb) as bob,
    ):
        assert alice.ws is not None
        sock = alice.ws.stream.socket
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        times = []
        for i in range(5):
            t = time.perf_counter()
            alice.set_awareness({"typing": True})
            await alice.chat(f"typed {i}")
            await bob.wait_for(
                lambda i=i: any(m["message"]["text"] == f"typed {i}" for m in pushes(bob))
            )
            times.append(time.perf_counter() - t)
        # with Nagle each took the delayed ACK, about 40 ms; now a few ms (generous bound)
        assert sorted(times)[2] < 0.030, times


async def test_history_after_reconnect_and_paging(hub: Hub, collab: CollabService) -> None:
    nb = await new_notebook(hub, collab)
    async with connection(hub, collab, "alice", nb) as alice:
        ids = [(await alice.chat(f"message {i}"))["message"]["id"] for i in range(7)]
    assert ids == sorted(ids)
    async with connection(hub, collab, "bob", nb) as bob:
        latest = await bob.chat_history(limit=3)
        assert [m["text"] for m in latest["messages"]] == ["message 4", "message 5", "message 6"]
        assert latest["next_before"] == ids[4]
        older = await bob.chat_history(before=latest["next_before"], limit=3)
        assert [m["id"] for m in older["messages"]] == ids[1:4]
        oldest = await bob.chat_history(before=older["next_before"], limit=3)
        assert [m["id"] for m in oldest["messages"]] == ids[:1] and oldest["next_before"] is None
        with pytest.raises(CommandError) as info:
            await bob.chat_history(limit=501)
        assert info.value.code == "invalid_query"
        with pytest.raises(CommandError) as info:
            await bob.command("chat_history", before="abc")
        assert info.value.code == "invalid_query"
    async with client_for(hub, collab, "bob") as rest:
        page = await rest.chat_history(nb, limit=2)
        assert [m["text"] for m in page["messages"]] == ["message 5", "message 6"]
        assert page["next_before"] == ids[5]
        full = await rest.chat_history(nb)
        assert len(full["messages"]) == 7
        for bad in ("limit=0", "limit=501", "limit=x", "before=-1", "before=1.5"):
            with pytest.raises(CollabAPIError) as err:
                await rest.request("GET", f"api/notebooks/{nb}/chat?{bad}")
            assert err.value.status == 400 and err.value.code == "invalid_query", bad


async def test_history_survives_restart(hub: Hub, collab: CollabService) -> None:
    nb = await new_notebook(hub, collab)
    async with client_for(hub, collab, "alice") as alice:
        first = (await alice.post_chat(nb, "before the restart"))["message"]
        await alice.post_chat(nb, "and this one")
        deleted = (await alice.post_chat(nb, "soon gone"))["message"]
        await alice.delete_chat(nb, deleted["id"])
    await asyncio.get_running_loop().run_in_executor(None, collab.restart)
    async with client_for(hub, collab, "alice") as alice:
        page = await alice.chat_history(nb)
        assert [m["text"] for m in page["messages"]] == ["before the restart", "and this one", ""]
        assert page["messages"][0]["id"] == first["id"] and page["messages"][2]["deleted"] is True
        again = (await alice.post_chat(nb, "after the restart"))["message"]
        assert again["id"] > deleted["id"]
    async with connection(hub, collab, "bob", nb) as bob:
        page = await bob.chat_history()
        assert [m["text"] for m in page["messages"]][-1] == "after the restart"


async def test_edit_own_not_others(hub: Hub, collab: CollabService) -> None:
    nb = await new_notebook(hub, collab)
    async with (
        connection(hub, collab, "alice", nb) as alice,
        connection(hub, collab, "bob", nb) as bob,
    ):
        mine = (await bob.chat("typo here"))["message"]
        edited = (await bob.chat_edit(mine["id"], "typo fixed"))["message"]
        assert (
            edited["text"] == "typo fixed"
            and edited["edited_at"] is not None
            and edited["id"] == mine["id"]
        )
        push = await alice.next_message("chat_edit")
        assert push["message"]["text"] == "typo fixed" and push["message"]["id"] == mine["id"]

        with pytest.raises(CommandError) as info:
            await alice.chat_edit(mine["id"], "alice was here")
        assert info.value.code == "forbidden"
        with pytest.raises(CommandError) as info:
            await alice.chat_edit(10**12, "nope")
        assert info.value.code == "unknown_message"
        with pytest.raises(CommandError) as info:
            await bob.chat_edit(mine["id"], "")
        assert info.value.code == "invalid_chat"

    async with (
        client_for(hub, collab, "alice") as rest_alice,
        client_for(hub, collab, "admin") as rest_admin,
    ):
        for client in (
            rest_alice,
            rest_admin,
        ):  # not even the owner or an admin edits others' words
            with pytest.raises(CollabAPIError) as err:
                await client.edit_chat(nb, mine["id"], "rewritten")
            assert (err.value.status, err.value.code) == (403, "forbidden")
        for bad_id in ("999999999", "abc", "0", "-3"):
            with pytest.raises(CollabAPIError) as err:
                await rest_alice.request("PUT", f"api/notebooks/{nb}/chat/{bad_id}", {"text": "x"})
            assert err.value.status == 404, bad_id
            with pytest.raises(CollabAPIError) as err:
                await rest_alice.request("DELETE", f"api/notebooks/{nb}/chat/{bad_id}")
            assert err.value.status == 404, bad_id
        page = await rest_alice.chat_history(nb)
        assert [m["text"] for m in page["messages"]] == ["typo fixed"]

    # a message id of another notebook is unknown here
    other = await new_notebook(hub, collab)
    async with client_for(hub, collab, "bob") as rest_bob:
        with pytest.raises(CollabAPIError) as err:
            await rest_bob.edit_chat(other, mine["id"], "moved?")
        assert err.value.status == 404


async def test_moderation(hub: Hub, collab: CollabService) -> None:
    nb = await new_notebook(hub, collab)
    async with (
        connection(hub, collab, "alice", nb) as alice,
        connection(hub, collab, "carol", nb) as carol,
    ):
        async with client_for(hub, collab, "bob") as bob:
            rude = (await bob.post_chat(nb, "something rude"))["message"]
            second = (await bob.post_chat(nb, "something else"))["message"]
            own = (await bob.post_chat(nb, "I take this back"))["message"]
        await carol.wait_for(lambda: len(pushes(carol)) == 3)

        # carol (not the owner) may not delete bob's message
        with pytest.raises(CommandError) as info:
            await carol.chat_delete(rude["id"])
        assert info.value.code == "forbidden"
        async with client_for(hub, collab, "carol") as rest_carol:
            with pytest.raises(CollabAPIError) as err:
                await rest_carol.delete_chat(nb, rude["id"])
            assert (err.value.status, err.value.code) == (403, "forbidden")

        # the owner moderates
        tomb = (await alice.chat_delete(rude["id"]))["message"]
        assert tomb["deleted"] is True and tomb["text"] == ""
        push = await carol.next_message("chat_delete")
        assert push == {"type": "chat_delete", "id": rude["id"]}
        # deleting a tombstone again is harmless
        await alice.chat_delete(rude["id"])

        # an admin moderates too, through REST
        async with client_for(hub, collab, "admin") as admin:
            await admin.delete_chat(nb, second["id"])

        # bob deletes his own
        async with client_for(hub, collab, "bob") as bob:
            await bob.delete_chat(nb, own["id"])
            with pytest.raises(CollabAPIError) as err:
                await bob.edit_chat(nb, own["id"], "resurrect")
            assert err.value.code == "chat_deleted"

        page = await carol.chat_history()
        assert [(m["id"], m["deleted"], m["text"]) for m in page["messages"]] == [
            (rude["id"], True, ""),
            (second["id"], True, ""),
            (own["id"], True, ""),
        ]
    async with client_for(hub, collab, "alice") as rest_alice:
        events = (await rest_alice.request("GET", f"api/notebooks/{nb}/audit"))["events"]
        moderated = sorted(
            (e["actor"], e["target"]) for e in events if e["action"] == "chat_moderate"
        )
        assert moderated == sorted([("alice", str(rude["id"])), ("admin", str(second["id"]))])


async def test_mentions(hub: Hub, collab: CollabService) -> None:
    # readable by the group students (alice, bob, carol), not by dave (no group)
    nb = await new_notebook(hub, collab, mode="0750", group="students")
    async with (
        connection(hub, collab, "alice", nb) as alice,
        connection(hub, collab, "bob", nb) as bob,
        connection(hub, collab, "carol", nb) as carol,
    ):
        ack = await alice.chat("@bob please look; @dave too, and @nosuchuser")
        assert ack["message"]["mentions"] == ["bob", "dave", "nosuchuser"]
        warned = {w["user"]: w for w in ack["warnings"]}
        assert set(warned) == {"dave", "nosuchuser"}
        assert warned["dave"]["code"] == "mention_no_access" and "dave" in warned["dave"]["message"]
        to_bob = (await bob.next_message("chat"))["message"]
        to_carol = (await carol.next_message("chat"))["message"]
        assert to_bob["mentioned"] is True and to_carol["mentioned"] is False
        assert to_bob["mentions"] == ["bob", "dave", "nosuchuser"]
        ack = await alice.chat("thanks @bob and @carol")
        assert ack["warnings"] == []
    async with client_for(hub, collab, "alice") as rest:
        body = await rest.post_chat(nb, "ping @dave")
        assert [w["user"] for w in body["warnings"]] == ["dave"]


async def test_hidden_cell_references(hub: Hub, collab: CollabService) -> None:
    secret = "SECRET_ANSWER = 42  # the solution"
    nb = await new_notebook(hub, collab, cells=("print('public')", secret))
    async with client_for(hub, collab, "alice") as owner:
        await owner.set_permissions(nb, "cell1", mode="0600")
    async with (
        connection(hub, collab, "alice", nb) as alice,
        connection(hub, collab, "bob", nb) as bob,
    ):
        assert "r" not in bob.caps["cells"].get("cell1", "")
        ack = await alice.chat("compare #cell0 with #cell1 (and #nocell)")
        assert ack["message"]["refs"] == [
            {"cell_id": "cell0", "readable": True},
            {"cell_id": "cell1", "readable": True},
        ]
        got = (await bob.next_message("chat"))["message"]
        assert got["refs"] == [
            {"cell_id": "cell0", "readable": True},
            {"cell_id": "cell1", "readable": False},
        ]
        hist = await bob.chat_history()
        assert hist["messages"][-1]["refs"][1] == {"cell_id": "cell1", "readable": False}
        # no frame bob ever got carries the hidden cell's content
        assert all(secret not in json.dumps(m) for m in bob.messages)
    async with client_for(hub, collab, "bob") as rest_bob:
        page = await rest_bob.chat_history(nb)
        assert page["messages"][-1]["refs"] == [
            {"cell_id": "cell0", "readable": True},
            {"cell_id": "cell1", "readable": False},
        ]
        assert secret not in json.dumps(page)


async def test_permission_loss_mid_conversation(hub: Hub, collab: CollabService) -> None:
    nb = await new_notebook(hub, collab, mode="0755")
    async with (
        connection(hub, collab, "alice", nb) as alice,
        connection(hub, collab, "bob", nb) as bob,
    ):
        await alice.chat("bob can read this")
        await bob.next_message("chat")

        async with client_for(hub, collab, "alice") as owner:
            await owner.set_permissions(nb, mode="0700")
        await bob.wait_for(lambda: bob.caps.get("notebook") == "---")

        await alice.chat("bob must not read this")
        await settle(bob)
        assert [m["message"]["text"] for m in pushes(bob)] == ["bob can read this"]
        with pytest.raises(CommandError) as info:
            await bob.chat("still here?")
        assert info.value.code == "forbidden"
        with pytest.raises(CommandError) as info:
            await bob.chat_history()
        assert info.value.code == "forbidden"
        async with client_for(hub, collab, "bob") as rest_bob:
            with pytest.raises(CollabAPIError) as err:
                await rest_bob.chat_history(nb)
            assert err.value.status == 404
            with pytest.raises(CollabAPIError) as err:
                await rest_bob.post_chat(nb, "let me in")
            assert err.value.status == 404

        # given back, bob receives again at once
        async with client_for(hub, collab, "alice") as owner:
            await owner.set_permissions(nb, mode="0755")
        await bob.wait_for(lambda: bob.caps.get("notebook") == "r-x")
        await alice.chat("welcome back")
        await bob.wait_for(lambda: len(pushes(bob)) == 2)
        assert pushes(bob)[-1]["message"]["text"] == "welcome back"
        assert [m["text"] for m in (await bob.chat_history())["messages"]] == [
            "bob can read this",
            "bob must not read this",
            "welcome back",
        ]


BAD_TEXTS: list[tuple[Any, str]] = [
    ("", "invalid_chat"),
    ("  \n\t  ", "invalid_chat"),
    (123, "invalid_chat"),
    (None, "invalid_chat"),
    (["a"], "invalid_chat"),
    ({"a": 1}, "invalid_chat"),
    (True, "invalid_chat"),
    ("ding\x07", "invalid_chat"),
    ("\x1b]0;title\x07", "invalid_chat"),
    ("null\x00byte", "invalid_chat"),
    ("x" * 4001, "too_large"),
]


async def test_bad_input_websocket(hub: Hub, collab: CollabService) -> None:
    nb = await new_notebook(hub, collab)
    async with (
        connection(hub, collab, "bob", nb) as bob,
        connection(hub, collab, "carol", nb) as carol,
    ):
        for value, code in BAD_TEXTS:
            with pytest.raises(CommandError) as info:
                await bob.command("chat", text=value)
            assert info.value.code == code, value
        with pytest.raises(CommandError) as info:
            await bob.command("chat")
        assert info.value.code == "invalid_chat"
        with pytest.raises(CommandError) as info:
            await bob.command("chat_delete", id="../../etc")
        assert info.value.code == "unknown_message"

        html = "<script>alert('x')</script><img src=x onerror=alert(1)>"
        ack = await bob.chat(html)
        assert ack["message"]["text"] == html
        assert (await carol.next_message("chat"))["message"]["text"] == html
        assert (await bob.chat("x" * 4000))["message"]["text"] == "x" * 4000

        await settle(carol)
        assert len(pushes(carol)) == 2  # nothing refused was delivered
        assert [m["text"] for m in (await carol.chat_history())["messages"]] == [html, "x" * 4000]


async def test_bad_input_rest(hub: Hub, collab: CollabService) -> None:
    nb = await new_notebook(hub, collab)
    token = hub.token("bob")
    url = f"{collab.public_url}api/notebooks/{nb}/chat"
    headers = {"Authorization": f"token {token}"}

    def post(**kwargs: Any) -> requests.Response:
        kwargs.setdefault("headers", headers)
        return requests.post(url, timeout=60, **kwargs)

    loop = asyncio.get_running_loop()
    for value, code in BAD_TEXTS:
        resp = await loop.run_in_executor(None, functools.partial(post, json={"text": value}))
        want = 413 if code == "too_large" else 400
        assert resp.status_code == want, (value, resp.text)
        body = resp.json()
        assert (
            set(body) == {"status", "code", "message"} and body["code"] == code and body["message"]
        )
    bodies: list[tuple[dict[str, Any], str]] = [
        (
            {"data": b"not json", "headers": {**headers, "Content-Type": "application/json"}},
            "invalid_json",
        ),
        ({"json": ["text"]}, "invalid_json"),
        ({"json": {}}, "invalid_chat"),
        ({"json": {"text": "hi", "author": "alice"}}, "invalid_field"),
    ]
    for kwargs, code in bodies:
        resp = await loop.run_in_executor(None, functools.partial(post, **kwargs))
        assert resp.status_code == 400 and resp.json()["code"] == code, resp.text
    resp = await loop.run_in_executor(None, lambda: post(json={"text": "<b>x</b>"}))
    assert resp.status_code == 201 and resp.headers["Content-Type"].startswith("application/json")
    assert (
        resp.json()["message"]["text"] == "<b>x</b>" and resp.json()["message"]["author"] == "bob"
    )
    page = (
        await loop.run_in_executor(None, lambda: requests.get(url, headers=headers, timeout=60))
    ).json()
    assert [m["text"] for m in page["messages"]] == ["<b>x</b>"]


async def test_flood_is_rate_limited(hub: Hub, collab: CollabService) -> None:
    nb = await new_notebook(hub, collab)
    async with (
        connection(hub, collab, "bob", nb) as bob,
        connection(hub, collab, "carol", nb) as carol,
    ):
        started = time.monotonic()
        results = await asyncio.gather(
            *(bob.command("chat", text=f"spam {i}") for i in range(40)), return_exceptions=True
        )
        accepted = [r for r in results if isinstance(r, dict)]
        refused = [r for r in results if isinstance(r, CommandError)]
        assert len(accepted) + len(refused) == 40
        # the burst of 10, plus what refilled meanwhile at 1 message/s (default settings)
        refilled = int(time.monotonic() - started) + 1
        assert 10 <= len(accepted) <= 10 + refilled and refused
        assert all(r.code == "rate_limited" and "retry after" in r.message for r in refused)

        # others are not affected, and nothing past the limit was stored or sent
        await carol.chat("I can still talk")
        await settle(carol)
        assert len(pushes(carol)) == len(accepted) + 1
        page = await carol.chat_history(limit=500)
        assert len(page["messages"]) == len(accepted) + 1

    token = hub.token("bob")
    url = f"{collab.public_url}api/notebooks/{nb}/chat"
    resp = await asyncio.get_running_loop().run_in_executor(
        None,
        lambda: requests.post(
            url, headers={"Authorization": f"token {token}"}, json={"text": "more"}, timeout=60
        ),
    )
    assert resp.status_code == 429
    body = resp.json()
    assert body["code"] == "rate_limited" and 0 < body["retry_after"] <= 1.0
    assert int(resp.headers["Retry-After"]) >= 1
    # after waiting as told, bob may post again
    await asyncio.sleep(body["retry_after"] + 0.05)
    async with client_for(hub, collab, "bob") as rest_bob:
        assert (await rest_bob.post_chat(nb, "patience"))["message"]["text"] == "patience"


async def test_bot_posts_with_a_hub_token(hub: Hub, collab: CollabService) -> None:
    nb = await new_notebook(hub, collab)
    hub.create_user("chat-bot")
    async with client_for(hub, collab, "alice") as owner:
        await owner.set_permissions(nb, acl=["user:chat-bot:r--"])
    async with connection(hub, collab, "alice", nb) as alice:
        # a token limited to the service, as a bot should hold
        async with client_for(
            hub, collab, "chat-bot", scopes=["access:services!service=collab"]
        ) as bot:
            body = await bot.post_chat(nb, "build #1234 passed ✓")
            assert body["message"]["author"] == "chat-bot" and body["warnings"] == []
        got = (await alice.next_message("chat"))["message"]
        assert got["author"] == "chat-bot" and got["text"] == "build #1234 passed ✓"


async def test_cookie_post_needs_xsrf(hub: Hub, collab: CollabService, browser_login: Any) -> None:
    nb = await new_notebook(hub, collab)
    loop = asyncio.get_running_loop()
    browser = await loop.run_in_executor(None, browser_login, collab.public_url, "bob")
    url = f"{collab.public_url}api/notebooks/{nb}/chat"
    resp = await loop.run_in_executor(
        None, lambda: browser.post(url, json={"text": "no xsrf"}, timeout=60)
    )
    assert resp.status_code == 403 and resp.json()["code"] == "xsrf"
    resp = await loop.run_in_executor(
        None,
        lambda: browser.post(
            url, json={"text": "with xsrf"}, headers=browser.xsrf_headers(), timeout=60
        ),
    )
    assert resp.status_code == 201, resp.text
    page = (await loop.run_in_executor(None, lambda: browser.get(url, timeout=60))).json()
    assert [m["text"] for m in page["messages"]] == ["with xsrf"]


async def test_deleting_the_notebook_deletes_its_chat(hub: Hub, collab: CollabService) -> None:
    nb = await new_notebook(hub, collab)
    keep = await new_notebook(hub, collab)
    async with client_for(hub, collab, "alice") as alice:
        await alice.post_chat(nb, "gone with the notebook")
        await alice.post_chat(keep, "still here")
        await alice.delete_notebook(nb)
        with pytest.raises(CollabAPIError) as err:
            await alice.chat_history(nb)
        assert err.value.status == 404

        engine = sa.create_engine(collab.db_url)
        try:

            def count(nb_id: str) -> int:
                with engine.connect() as conn:
                    query = sa.select(sa.func.count()).select_from(chat_messages)
                    return int(
                        conn.execute(query.where(chat_messages.c.notebook_id == nb_id)).scalar()
                        or 0
                    )

            await asyncio.get_running_loop().run_in_executor(
                None,
                lambda: wait_until(lambda: count(nb) == 0, timeout=60, what="chat rows purged"),
            )
            assert count(keep) == 1
        finally:
            engine.dispose()
        assert [m["text"] for m in (await alice.chat_history(keep))["messages"]] == ["still here"]
