"""Real-time co-editing through the real Hub: convergence, structure, presence,
access by mode bits, export round trip, restart without loss or duplication."""

from __future__ import annotations

import asyncio
import copy

import nbformat
import pytest

from hub_collab.client import CollabAPIError, CollabClient, CommandError
from hub_collab.documents import protocol as p

pytestmark = pytest.mark.asyncio(loop_scope="module")

SAMPLE = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}, "custom": {"x": 1}},
    "cells": [
        {"id": "intro", "cell_type": "markdown", "metadata": {"tags": ["intro"]}, "source": "# Title\nSome *text*"},
        {
            "id": "code1",
            "cell_type": "code",
            "metadata": {"collapsed": False},
            "execution_count": 3,
            "source": ["x = 1\n", "print(x)"],
            "outputs": [
                {"output_type": "stream", "name": "stdout", "text": "1\n"},
                {"output_type": "execute_result", "execution_count": 3, "data": {"text/plain": "1"}, "metadata": {}},
                {"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}, "metadata": {"image/png": {"width": 10}}},
                {"output_type": "error", "ename": "ValueError", "evalue": "bad", "traceback": ["Traceback", "ValueError: bad"]},
            ],
        },
        {"id": "raw1", "cell_type": "raw", "metadata": {}, "source": "raw text"},
    ],
}


def client_for(hub, collab, user):
    return CollabClient(collab.public_url, hub.token(user))


async def test_two_users_edit_the_same_cell_concurrently_and_converge(hub, collab):
    alice, bob = client_for(hub, collab, "alice"), client_for(hub, collab, "bob")
    nb = await alice.create_notebook("converge", group="students", mode="0770")
    async with alice.open(nb["id"]) as a, bob.open(nb["id"]) as b:
        await a.synced()
        cid = await a.insert_cell(0, "code", "seed")
        await a.wait_for(lambda: cid in a.cell_ids() and f"cell:{cid}" in a.synced_docs)
        await b.wait_for(lambda: f"cell:{cid}" in b.synced_docs)
        assert b.source(cid) == "seed"
        # interleaved edits from both sides without waiting for each other
        for i in range(20):
            a.edit(cid, 0, insert="A")
            b.edit(cid, len(b.source(cid)), insert="b")
            if i % 5 == 0:
                await asyncio.sleep(0)
        await a.wait_for(lambda: a.source(cid).count("b") == 20 and a.source(cid).count("A") == 20)
        await b.wait_for(lambda: b.source(cid) == a.source(cid))
        assert "seed" in a.source(cid)
        assert len(a.source(cid)) == 44
    alice.close()
    bob.close()


async def test_structure_commands_reach_other_clients(hub, collab):
    alice, bob = client_for(hub, collab, "alice"), client_for(hub, collab, "bob")
    nb = await alice.create_notebook("structure", group="students", mode="0770")
    async with alice.open(nb["id"]) as a, bob.open(nb["id"]) as b:
        await a.synced()
        await b.synced()
        c1 = await a.insert_cell(0, "code", "one")
        c2 = await b.insert_cell(1, "markdown", "two")
        c3 = await a.insert_cell(2, "raw", "three")
        await b.wait_for(lambda: b.cell_ids() == [c1, c2, c3])
        await a.move_cell(c3, 0)
        await b.wait_for(lambda: b.cell_ids() == [c3, c1, c2])
        await b.set_cell_type(c2, "code")
        await a.wait_for(lambda: [c["cell_type"] for c in a.cells()] == ["raw", "code", "code"])
        await a.delete_cell(c1)
        await b.wait_for(lambda: b.cell_ids() == [c3, c2])
        assert f"cell:{c1}" not in b.docs or True  # dropped docs stop receiving updates
        # the other cells keep their content
        await b.wait_for(lambda: f"cell:{c3}" in b.synced_docs)
        assert b.source(c3) == "three"
        # bad commands: clear errors, nothing changed
        with pytest.raises(CommandError) as err:
            await a.move_cell("nope", 0)
        assert err.value.code == "unknown_cell"
        with pytest.raises(CommandError) as err:
            await a.insert_cell(99, "code")
        assert err.value.code == "invalid_command"
        with pytest.raises(CommandError) as err:
            await a.insert_cell(0, "python")
        assert err.value.code == "invalid_command"
        assert a.cell_ids() == [c3, c2]
    alice.close()
    bob.close()


async def test_user_outside_the_mode_gets_nothing(hub, collab):
    alice, dave = client_for(hub, collab, "alice"), client_for(hub, collab, "dave")
    nb = await alice.create_notebook("private", group="students", mode="0770")
    async with alice.open(nb["id"]) as a:
        await a.synced()
        await a.insert_cell(0, "code", "secret-value-123")
    with pytest.raises(CollabAPIError) as err:
        await dave.get_notebook(nb["id"])
    assert err.value.status == 404
    with pytest.raises(CollabAPIError) as err:
        await dave.export(nb["id"])
    assert err.value.status == 404
    assert nb["id"] not in [n["id"] for n in await dave.list_notebooks()]
    conn = dave.open(nb["id"])
    with pytest.raises(Exception) as exc:
        await conn.connect()
    assert "404" in str(exc.value)
    # world-readable: dave may read but not write
    await alice.set_permissions(nb["id"], mode="0774")
    async with dave.open(nb["id"]) as d:
        await d.synced()
        assert d.caps["notebook"] == "r--"
        with pytest.raises(CommandError) as cerr:
            await d.insert_cell(0, "code")
        assert cerr.value.code == "forbidden"
    alice.close()
    dave.close()


async def test_import_and_export_round_trip(hub, collab):
    alice = client_for(hub, collab, "alice")
    nb = await alice.create_notebook("imported", content=copy.deepcopy(SAMPLE))
    exported = await alice.export(nb["id"])
    nbformat.validate(nbformat.from_dict(exported))
    assert exported["metadata"]["custom"] == {"x": 1}
    assert [c["id"] for c in exported["cells"]] == ["intro", "code1", "raw1"]
    for got, want in zip(exported["cells"], SAMPLE["cells"], strict=True):
        src = want["source"] if isinstance(want["source"], str) else "".join(want["source"])
        assert got["source"] == src
        assert got["metadata"] == want["metadata"]
        if want["cell_type"] == "code":
            assert got["outputs"] == want["outputs"]
            assert got["execution_count"] == want["execution_count"]
    async with alice.open(nb["id"]) as a:
        await a.synced()
        assert a.source("code1") == "x = 1\nprint(x)"
        assert a.outputs("code1")[0]["text"] == "1\n"
    alice.close()


@pytest.mark.parametrize(
    "content, fragment",
    [
        ({"nbformat": 3, "cells": []}, "nbformat must be 4"),
        ({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": "x"}, "cells must be a list"),
        ({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"id": "a", "cell_type": "code", "source": "", "metadata": {}}]}, "not valid nbformat"),
        ({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"id": "../x", "cell_type": "raw", "source": "", "metadata": {}}]}, "invalid or duplicated"),
        ("not an object", "nbformat v4 notebook object"),
    ],
)
async def test_invalid_import_is_a_clear_400(hub, collab, content, fragment):
    alice = client_for(hub, collab, "alice")
    before = len(await alice.list_notebooks())
    with pytest.raises(CollabAPIError) as err:
        await alice.create_notebook("bad", content=content)
    assert err.value.status == 400
    assert fragment in err.value.message
    assert len(await alice.list_notebooks()) == before
    alice.close()


async def test_presence_names_are_the_server_s_not_the_client_s(hub, collab):
    alice, bob = client_for(hub, collab, "alice"), client_for(hub, collab, "bob")
    nb = await alice.create_notebook("presence", group="students", mode="0770")
    async with alice.open(nb["id"]) as a, bob.open(nb["id"]) as b:
        await a.synced()
        await b.synced()
        cid = await a.insert_cell(0, "code", "x")
        a.set_awareness({"user": {"name": "instructor", "color": "#ff0000"}, "cell": cid, "cursor": {"anchor": 1}, "evil": "<script>"})
        await b.wait_for(lambda: any(s and s.get("cell") == cid for s in b.awareness.values()))
        [state] = [s for s in b.awareness.values() if s and s.get("cell") == cid]
        assert state["user"] == {"name": "alice", "color": "#ff0000"}
        assert "evil" not in state and state["cursor"] == {"anchor": 1}
        rest = await bob.get_notebook(nb["id"])
        assert {"client_id": a.client_id_for_awareness, "user": "alice", "cell": cid} in rest["presence"]
    # alice left: bob's view of her presence is removed
    alice.close()
    bob.close()


async def test_restart_loses_nothing_and_duplicates_nothing(hub, collab):
    alice = client_for(hub, collab, "alice")
    nb = await alice.create_notebook("durable", content=copy.deepcopy(SAMPLE))
    async with alice.open(nb["id"]) as a:
        await a.synced()
        cid = await a.insert_cell(1, "code", "kept")
        await a.cell_ready(cid)
        for ch in "abc":
            a.edit(cid, len(a.source(cid)), insert=ch)
        await a.sync()
        epoch = a.epoch
    collab.restart()
    async with alice.open(nb["id"]) as a:
        await a.synced()
        assert a.cell_ids() == ["intro", cid, "code1", "raw1"]
        assert a.source(cid) == "keptabc"
        assert a.source("intro") == SAMPLE["cells"][0]["source"]
        assert a.epoch == epoch
        a.edit(cid, 0, insert=">")
        await a.sync()
    # a second restart after more edits: still exactly one copy of everything
    collab.restart()
    exported = await alice.export(nb["id"])
    assert [c["source"] for c in exported["cells"]] == [SAMPLE["cells"][0]["source"], ">keptabc", "x = 1\nprint(x)", "raw text"]
    alice.close()


async def test_after_a_restart_stored_docs_serve_joins_and_take_edits(hub, collab):
    """A loaded notebook keeps cell and output docs as stored bytes until first written:
    joins are answered from them, and the first edit (which builds the doc) reaches
    clients who joined before it and after it."""
    alice, bob, carol = (client_for(hub, collab, u) for u in ("alice", "bob", "carol"))
    nb = await alice.create_notebook("stored", content=copy.deepcopy(SAMPLE), group="students", mode="0770")
    collab.restart()
    async with alice.open(nb["id"]) as a, bob.open(nb["id"]) as b:
        await a.synced()
        await b.synced()
        assert b.source("code1") == "x = 1\nprint(x)"
        assert [o["output_type"] for o in b.outputs("code1")] == ["stream", "execute_result", "display_data", "error"]
        a.edit("code1", 0, insert="# edited\n")
        await b.wait_for(lambda: b.source("code1").startswith("# edited\n"))
        await a.sync()
        async with carol.open(nb["id"]) as c:
            await c.synced()
            assert c.source("code1") == "# edited\nx = 1\nprint(x)"
            assert c.source("raw1") == "raw text"
            c.edit("raw1", 0, insert="more ")
            await a.wait_for(lambda: a.source("raw1") == "more raw text")
            await c.sync()
    exported = await alice.export(nb["id"])
    assert [c["source"] for c in exported["cells"]] == [SAMPLE["cells"][0]["source"], "# edited\nx = 1\nprint(x)", "more raw text"]
    assert len(exported["cells"][1]["outputs"]) == 4
    for client in (alice, bob, carol):
        client.close()


async def test_stale_epoch_is_told_to_reset(hub, collab):
    alice = client_for(hub, collab, "alice")
    nb = await alice.create_notebook("epochs")
    conn = alice.open(nb["id"], epoch="0000stale")
    await conn.connect()
    await conn.wait_for(lambda: conn.closed.is_set())
    kinds = [(m["type"], m.get("code"), m.get("doc")) for m in conn.messages]
    assert kinds == [("welcome", None, None), ("error", "epoch_mismatch", None), ("resync", None, "*")]
    assert conn.close_code == 4409
    # with the right epoch it works
    async with alice.open(nb["id"], epoch=conn.welcome["epoch"]) as ok:
        await ok.synced()
    alice.close()


async def test_a_long_join_answer_comes_in_parts_index_first(hub, collab):
    """The answer to one subscription frame is sent in frames of ~64 KB, so a client can
    show the notebook's structure while the rest arrives; nothing is lost or repeated."""
    alice = client_for(hub, collab, "alice")
    cells = [{"id": f"big{i}", "cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": f"# {i}\n" + "x" * 3000} for i in range(60)]
    nb = await alice.create_notebook("long", content={"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells})
    conn = alice.open(nb["id"])
    frames: list[bytes] = []
    conn.listeners.append(lambda kind, data: frames.append(data) if kind == "binary" else None)
    async with conn:
        await conn.synced()
        assert [conn.source(c["id"]) for c in cells] == [c["source"] for c in cells]
    answers = [p.decode_frame(f) for f in frames]
    step2 = [e.doc for entries in answers for e in entries if e.kind == p.MSG_SYNC and e.sub == p.SYNC_STEP2]
    assert len(answers) >= 3, "180 KB of sources should come in several frames"
    assert step2[0] == "index"
    assert sorted(step2) == sorted(["index"] + [f"{k}:{c['id']}" for c in cells for k in ("cell", "out")])
    assert all(len(f) < 64 * 1024 + 8 * 1024 for f in frames), "each part is about 64 KB"
    alice.close()
