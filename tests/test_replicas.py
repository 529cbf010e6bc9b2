"""Scale-out: three real replica processes joined by a private Redis and a PostgreSQL
database of their own, behind the real Hub (replica r2 is the Hub's service URL).

Covers: convergence of clients spread over replicas (edits, structure commands,
presence), command forwarding to the home replica, a chmod enforced on another
replica at once, kill -9 of the home during an edit storm (no acknowledged edit
lost, a new home), a Redis restart mid-run (local editing goes on, convergence
after), and a login begun on one replica finished on another.
"""

from __future__ import annotations

import asyncio
import html
import re
import secrets
import time
from urllib.parse import urljoin

import pytest
import requests
from replicas import PostgresDatabase, RedisServer, Replica, new_prefix

from hub_collab.client import CollabClient

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def cluster(hub, collab, tmp_path_factory):
    collab.stop()  # r2 takes the Hub's service port
    root = tmp_path_factory.mktemp("replicas")
    db = PostgresDatabase()
    db.create()
    redis_server = RedisServer(root)
    redis_server.start()
    prefix = new_prefix()
    secret = secrets.token_hex(32)
    replicas = [
        Replica(hub, root / name, name, db_url=db.url, redis_url=redis_server.url, prefix=prefix, cookie_secret=secret, port=port)
        for name, port in (("r1", None), ("r2", hub.collab_port), ("r3", None))
    ]
    try:
        # all at once on the new database, as a Deployment starts them
        for r in replicas:
            r.launch()
        for r in replicas:
            r.wait_ready()
        yield {"replicas": replicas, "redis": redis_server, "db": db, "prefix": prefix}
    finally:
        for r in replicas:
            r.stop()
        redis_server.stop()
        db.drop()
        collab.start()


def home_of(cluster, nb):
    """The replica holding the notebook's home lease, read from Redis itself."""
    import redis

    value = redis.Redis.from_url(cluster["redis"].url).get(f"{cluster['prefix']}home:{nb}")
    return value.decode() if value else None


def client(hub, replica, user):
    return CollabClient(replica.direct_url, hub.token(user))


async def shared_notebook(hub, r1, name):
    alice = client(hub, r1, "alice")
    nb = await alice.create_notebook(name, group="students", mode="0770")
    return alice, nb["id"]


async def test_clients_on_three_replicas_converge(hub, cluster):
    r1, r2, r3 = cluster["replicas"]
    alice, nb = await shared_notebook(hub, r1, "spread")
    bob, carol = client(hub, r2, "bob"), client(hub, r3, "carol")
    async with alice.open(nb) as a, bob.open(nb) as b, carol.open(nb) as c:
        for conn in (a, b, c):
            await conn.synced()
        # a structure command from each replica (two of them forwarded to the home)
        c1 = await a.insert_cell(0, "code", "")
        c2 = await b.insert_cell(1, "markdown", "# notes")
        c3 = await c.insert_cell(2, "code", "three")
        for conn in (a, b, c):
            await conn.wait_for(lambda conn=conn: conn.cell_ids() == [c1, c2, c3])
            await conn.cell_ready(c1)
        for i in range(15):
            a.edit(c1, 0, insert="a")
            b.edit(c1, 0, insert="b")
            c.edit(c1, 0, insert="c")
            if i % 4 == 0:
                await asyncio.sleep(0.01)

        def converged() -> bool:
            sources = {conn.source(c1) for conn in (a, b, c)}
            if len(sources) != 1:
                return False
            text = sources.pop()
            return all(text.count(ch) == 15 for ch in "abc")

        for conn in (a, b, c):
            await conn.wait_for(converged, timeout=20)
        # presence crosses replicas, with the server's name for the user
        a.set_awareness({"user": {"name": "mallory"}, "cell": c1})
        await c.wait_for(lambda: any(s and s.get("user", {}).get("name") == "alice" for s in c.awareness.values()))
        # a move from r3 is seen everywhere
        await c.move_cell(c3, 0)
        for conn in (a, b, c):
            await conn.wait_for(lambda conn=conn: conn.cell_ids() == [c3, c1, c2])
    # the database holds the same thing whoever reads it
    exports = [await client(hub, r, "alice").export(nb) for r in (r1, r2, r3)]
    assert exports[0] == exports[1] == exports[2]
    assert [cell["id"] for cell in exports[0]["cells"]] == [c3, c1, c2]


async def test_chmod_on_one_replica_is_enforced_on_another_at_once(hub, cluster):
    r1, _, r3 = cluster["replicas"]
    alice, nb = await shared_notebook(hub, r1, "chmod-fast")
    bob = client(hub, r3, "bob")
    async with bob.open(nb) as b:
        await b.synced()
        assert b.caps["notebook"] == "rwx"
        start = len(b.messages)
        await alice.set_permissions(nb, mode="0700")
        returned = time.monotonic()
        msg = await b.next_message("caps", start=start, timeout=5)
        latency = time.monotonic() - returned
        assert msg["notebook"] in ("---", "")
    with pytest.raises(Exception) as err:
        await bob.get_notebook(nb)
    assert "404" in str(err.value)
    print(f"chmod on r1 reached a client on r3 {latency * 1000:.1f} ms after the API call returned")
    assert latency < 0.1


async def test_a_chmod_that_changes_nothing_tells_no_replica(hub, cluster):
    """A permission PUT that changes nothing publishes no bus event: every message r1
    publishes on the ``perms`` channel is read from Redis, up to a marker (a real change
    of another notebook, published after the no-ops: Redis keeps one publisher's order)."""
    import redis.asyncio as aioredis

    from hub_collab.replication import REC_EVENT, decode_message

    r1, _, r3 = cluster["replicas"]
    listener = aioredis.Redis.from_url(cluster["redis"].url)
    pubsub = listener.pubsub()
    await pubsub.subscribe(f"{cluster['prefix']}perms")
    confirmed = await pubsub.get_message(timeout=5)
    assert confirmed is not None and confirmed["type"] == "subscribe"
    try:
        alice, nb = await shared_notebook(hub, r1, "chmod-noop")
        _, marker_nb = await shared_notebook(hub, r1, "chmod-noop-marker")
        bob = client(hub, r3, "bob")
        async with bob.open(nb) as b:
            await b.synced()
            start = len(b.messages)
            await alice.set_permissions(nb, mode="0750")  # a real change (the control)
            msg = await b.next_message("caps", start=start, timeout=5)
            assert msg["notebook"] == "r-x"
            await b.sync()
            frames = b.frames_received
            current = await alice.get_permissions(nb)
            for body in ({}, current, {"mode": "0750"}, {"mode": "g-w"}, {"group": "students"}):
                assert await alice.request("PUT", f"api/notebooks/{nb}/permissions", body) == current
            await b.sync()
            assert b.frames_received == frames + 1  # the sync's ack, nothing else
            await alice.set_permissions(marker_nb, mode="0700")
        notebooks = []
        while notebooks.count(marker_nb) < 2:  # its creation, then the marker
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=60)
            assert msg is not None, f"the marker never came; r1 published for {notebooks}"
            sender, _, _, records = decode_message(msg["data"])
            if sender == "r1":
                notebooks += [data["nb"] for kind, (name, data) in records if kind == REC_EVENT and name == "perms"]
        assert notebooks.count(nb) == 2, notebooks  # its creation and the real change only
    finally:
        await pubsub.aclose()
        await listener.aclose()


async def test_kill9_of_the_home_loses_no_acknowledged_edit(hub, cluster):
    r1, r2, r3 = cluster["replicas"]
    alice, nb = await shared_notebook(hub, r1, "storm")
    async with alice.open(nb) as a:
        await a.synced()
        cid = await a.insert_cell(0, "code", "")
        await a.cell_ready(cid)
    assert home_of(cluster, nb) == "r1"
    bob = client(hub, r2, "bob")
    acknowledged = ""
    async with bob.open(nb) as b:
        await b.synced()
        await b.cell_ready(cid)
        for i in range(60):
            b.edit(cid, len(b.source(cid)), insert=f"{i % 10}")
            if i % 5 == 4:
                await b.sync()
                acknowledged = b.source(cid)
            if i == 30:
                r1.kill9()
        await b.sync()
        acknowledged = b.source(cid)
        # another replica takes the lease within the lease time plus a watch interval
        deadline = time.monotonic() + 15
        # polling another process: there is no event to wait on
        while time.monotonic() < deadline and home_of(cluster, nb) not in ("r2", "r3"):  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        assert home_of(cluster, nb) in ("r2", "r3")
        # and structure commands work again (through the new home)
        cid2 = await b.insert_cell(1, "code", "after")
        assert cid2 in b.cell_ids() or await b.wait_for(lambda: cid2 in b.cell_ids()) is None
    carol = client(hub, r3, "carol")
    async with carol.open(nb) as c:
        await c.synced()
        assert c.source(cid).startswith(acknowledged[: len(acknowledged)])
        assert c.source(cid) == acknowledged
    r1.start()


async def test_redis_restart_mid_run_loses_nothing(hub, cluster):
    r1, r2, _ = cluster["replicas"]
    redis_server = cluster["redis"]
    alice, nb = await shared_notebook(hub, r1, "redis-down")
    bob = client(hub, r2, "bob")
    async with alice.open(nb) as a, bob.open(nb) as b:
        await a.synced()
        cid = await a.insert_cell(0, "code", "")
        await a.cell_ready(cid)
        await b.wait_for(lambda: f"cell:{cid}" in b.synced_docs)
        redis_server.stop()
        # both keep editing on their own replica
        for ch in "xyz":
            a.edit(cid, 0, insert=ch)
            b.edit(cid, len(b.source(cid)), insert=ch.upper())
        await a.sync()
        await b.sync()
        assert "x" in a.source(cid) and "X" in b.source(cid)
        redis_server.start()
        returned = time.monotonic()

        def converged() -> bool:
            return a.source(cid) == b.source(cid) and all(ch in a.source(cid) for ch in "xyzXYZ")

        await a.wait_for(converged, timeout=20)
        await b.wait_for(converged, timeout=20)
        print(f"converged {time.monotonic() - returned:.2f} s after Redis returned")


async def test_login_begun_on_r1_finishes_on_r2(hub, cluster):
    r1, r2, _ = cluster["replicas"]
    s = requests.Session()
    # r1 starts the OAuth dance (its state goes to Redis) ...
    first = s.get(r1.direct_url, timeout=60, allow_redirects=False)
    assert first.status_code == 302
    # ... its redirect is relative to the public host, as behind one proxy
    page = s.get(urljoin(hub.url, first.headers["Location"]), timeout=60)
    assert "/hub/login" in page.url
    form = re.search(r'<form[^>]*action="([^"]+)"', page.text)
    xsrf = re.search(r'name="_xsrf"[^>]*value="([^"]*)"', page.text)
    assert form and xsrf
    # ... and the Hub sends the browser back to the public URL, served by r2
    page = s.post(urljoin(page.url, html.unescape(form.group(1))), data={"username": "alice", "password": "demo", "_xsrf": xsrf.group(1)}, timeout=60)
    assert page.status_code == 200, page.text[:300]
    assert page.url.startswith(hub.url), page.url
    me = s.get(urljoin(hub.url, "/services/collab/api/me"), timeout=60)
    assert me.status_code == 200 and me.json()["name"] == "alice"


async def test_execution_runs_on_the_home_and_outputs_reach_every_replica(hub, cluster):
    r1, r2, r3 = cluster["replicas"]
    alice, nb = await shared_notebook(hub, r1, "run-anywhere")
    carol = client(hub, r3, "carol")
    async with alice.open(nb) as a, carol.open(nb) as c:
        await a.synced()
        await c.synced()
        cid = await a.insert_cell(0, "code", "print('from the home', 6 * 7)")
        await alice.set_permissions(nb, cid, mode="0775")  # students may run it
        await c.cell_ready(cid)
        await c.wait_for(lambda: c.caps["cells"].get(cid) == "rwx")
        home = home_of(cluster, nb)
        # carol's replica forwards the execute to the home; the outputs come back to everyone
        start = len(c.messages)
        await c.command("execute", cell_id=cid)
        for conn in (a, c):
            await conn.wait_for(lambda conn=conn: conn.out_state(cid).get("status") == "ok", timeout=60)
            assert conn.outputs(cid)[0]["text"] == "from the home 42\n"
        kinds = {m.get("type") for m in c.messages[start:]}
        assert "kernel" in kinds, "kernel state reaches sessions on other replicas"
    # REST execute on a replica that is not the home, waiting for the result
    not_home = next(r for r in (r1, r2, r3) if r.name != home)
    resp = await asyncio.to_thread(
        requests.post,
        f"{not_home.direct_url}api/notebooks/{nb}/cells/{cid}/execute?wait=1",
        headers={"Authorization": f"token {hub.token('alice')}"},
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "ok"
    assert resp.json()["outputs"][0]["text"] == "from the home 42\n"
    status = await asyncio.to_thread(requests.get, f"{not_home.direct_url}api/notebooks/{nb}/kernel", headers={"Authorization": f"token {hub.token('alice')}"}, timeout=60)
    assert status.json()["state"] in ("idle", "busy")


async def test_chat_reaches_clients_on_other_replicas(hub, cluster):
    r1, _, r3 = cluster["replicas"]
    alice, nb = await shared_notebook(hub, r1, "chat-across")
    bob = client(hub, r3, "bob")
    async with alice.open(nb) as a, bob.open(nb) as b:
        await a.synced()
        await b.synced()
        start = len(b.messages)
        before = r3.health()["bus"]
        await a.command("chat", text="hello from r1 @bob")
        try:
            msg = await b.next_message("chat", start=start, timeout=60)
        except TimeoutError:
            print("R1", r1.health(), "R3 before", before, "R3", r3.health(), b.messages[start:])
            print(r3.tail(30))
            raise
        assert msg["message"]["text"] == "hello from r1 @bob"
        assert msg["message"]["author"] == "alice"


async def test_comments_cross_replicas_and_follow_rights_there(hub, cluster):
    """A thread opened on r1 reaches a reader on r3 at once, rendered there for him; his
    reply reaches the author on r1 with a notice; hidden on r1, the cell's comments stop
    flowing to r3 at once; its deletion (on the home, wherever that is) marks its threads
    for the owner on every replica."""
    r1, _, r3 = cluster["replicas"]
    alice, nb = await shared_notebook(hub, r1, "comments-across")
    bob = client(hub, r3, "bob")
    async with alice.open(nb) as a, bob.open(nb) as b:
        await a.synced()
        cid = await a.insert_cell(0, "code", "total = price * quantity")
        await a.cell_ready(cid)
        await b.wait_for(lambda: cid in b.cell_ids())
        await b.cell_ready(cid)
        ack = await a.comment_create(cid, "@bob is this right?", a.anchor(cid, 16, 24))
        tid = ack["thread"]["id"]
        got = (await b.next_message("comment", timeout=60))["comment"]
        assert got["thread_id"] == tid and got["mentioned"] is True and got["author"] == "alice"
        assert (await b.next_message("comment_notice", timeout=60))["notice"]["kind"] == "mention"
        assert (await b.next_message("comment_thread", timeout=60))["thread"]["range"] == {"start": 16, "end": 24}
        await b.comment_reply(tid, "yes, from r3")
        notice = (await a.next_message("comment_notice", timeout=60))["notice"]
        assert notice["kind"] == "reply" and notice["author"] == "bob"
        # hidden from bob on r1: nothing more reaches him on r3
        await alice.set_permissions(nb, cid, mode="0700")
        await b.wait_for(lambda: "r" not in b.caps["cells"].get(cid, ""), timeout=60)
        seen = len(b.comment_events())
        await a.comment_reply(tid, "now only for me")
        await a.wait_for(lambda: any(m["comment"]["text"] == "now only for me" for m in a.comment_events()))
        await b.sync()
        assert len(b.comment_events()) == seen
        with pytest.raises(Exception) as err:
            await b.command("comment_thread", thread_id=tid)
        assert "unknown_thread" in str(err.value)
        # deleted (a home command, forwarded to the home): the owner sees it marked, on r1
        await a.delete_cell(cid)
        await a.wait_for(lambda: any(m["thread"]["cell_deleted"] for m in a.comment_events("comment_thread")), timeout=15)
    listed = await client(hub, r3, "alice").comment_threads(nb)
    assert [(t["id"], t["cell_deleted"]) for t in listed["threads"]] == [(tid, True)]
    assert (await client(hub, r3, "bob").comment_threads(nb))["threads"] == []
