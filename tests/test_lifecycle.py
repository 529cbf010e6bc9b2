"""Deleting a notebook is one step that removes all of it, and keeps its audit log.

Against the real service (``collab``) behind the real Hub: a notebook with
docs, a chat message, a running kernel that wrote a file, a chmod, a client
connected; then ``DELETE api/notebooks/{id}``. The store's tables are read
directly (the service's SQLite file) to prove what is gone and what stays.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest
import sqlalchemy as sa
from hubfixtures import CollabService, Hub, wait_until

from hub_collab import schema
from hub_collab.client import CollabAPIError, CollabClient

TABLES = {
    "notebooks": (schema.notebooks, schema.notebooks.c.id),
    "doc updates": (schema.doc_updates, schema.doc_updates.c.notebook_id),
    "checkpoints": (schema.doc_checkpoints, schema.doc_checkpoints.c.notebook_id),
    "chat": (schema.chat_messages, schema.chat_messages.c.notebook_id),
    "history": (schema.history_docs, schema.history_docs.c.notebook_id),
    "audit": (schema.audit, schema.audit.c.notebook_id),
}


def rows(db_url: str, nb_id: str) -> dict[str, int]:
    """Rows that belong to ``nb_id`` in every table of the service."""
    engine = sa.create_engine(db_url)
    rules = schema.metadata.tables["collab_permission_rules"]
    try:
        with engine.connect() as conn:
            out = {
                name: int(conn.execute(sa.select(sa.func.count()).select_from(table).where(col == nb_id)).scalar() or 0)
                for name, (table, col) in TABLES.items()
            }
            out["permissions"] = int(
                conn.execute(sa.select(sa.func.count()).select_from(rules).where(rules.c.v1 == nb_id)).scalar() or 0
            )
        return out
    finally:
        engine.dispose()


def audit_actions(db_url: str, nb_id: str) -> list[str]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            query = sa.select(schema.audit.c.action).where(schema.audit.c.notebook_id == nb_id).order_by(schema.audit.c.id)
            return [str(a) for a in conn.execute(query).scalars()]
    finally:
        engine.dispose()


def exists(path: str) -> bool:
    return os.path.exists(path)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def in_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def test_deleting_a_notebook_removes_docs_chat_permissions_and_kernel_keeps_audit(
    hub: Hub, collab: CollabService
) -> None:
    async with (
        CollabClient(collab.public_url, hub.token("alice"), request_timeout=120) as alice,
        CollabClient(collab.public_url, hub.token("bob")) as bob,
    ):
        nb = await alice.create_notebook("to be deleted", mode="0775")
        keep = await alice.create_notebook("kept", mode="0775")
        nb_id, keep_id = str(nb["id"]), str(keep["id"])
        conn = alice.open(nb_id)
        await conn.connect()
        await conn.synced()
        watcher = bob.open(nb_id)
        await watcher.connect()
        await watcher.synced()
        code = (
            "import os, json; open('left-behind.txt', 'w').write('x'); "
            "print(json.dumps({'pid': os.getpid(), 'cwd': os.getcwd()}))"
        )
        cid = await conn.insert_cell(0, "code", code)
        await conn.cell_ready(cid, timeout=30)
        await conn.wait_for(lambda: conn.source(cid) == code, timeout=30)
        await conn.execute(cid)
        state = await conn.wait_executed(cid, timeout=120)
        assert state["status"] == "ok", state
        [out] = [o for o in conn.outputs(cid) if o.get("output_type") == "stream"]
        kernel = json.loads(str(out["text"]))
        assert pid_alive(kernel["pid"]) and exists(os.path.join(kernel["cwd"], "left-behind.txt"))
        await conn.chat("gone with the notebook")
        await alice.post_chat(keep_id, "still here")
        await alice.set_permissions(nb_id, cid, mode="0700")
        await conn.sync()

        before = await in_thread(rows, collab.db_url, nb_id)
        assert all(before[t] > 0 for t in ("notebooks", "chat", "permissions", "audit")), before
        assert before["doc updates"] + before["checkpoints"] > 0, before
        keep_before = await in_thread(rows, collab.db_url, keep_id)

        # bob may read the notebook but not delete it: nothing happens
        with pytest.raises(CollabAPIError) as err:
            await bob.delete_notebook(nb_id)
        assert err.value.status == 403
        assert await in_thread(rows, collab.db_url, nb_id) == before

        await alice.delete_notebook(nb_id)

        # the connected clients were told and disconnected
        await watcher.wait_for(lambda: watcher.close_code is not None, timeout=30)
        assert watcher.close_code == 4404
        assert any(m.get("code") == "notebook_deleted" for m in watcher.messages if m.get("type") == "error")
        # the kernel is gone, and so is its working directory
        await in_thread(lambda: wait_until(lambda: not pid_alive(kernel["pid"]), timeout=30, what="kernel exit"))
        assert not exists(kernel["cwd"])
        # every row of it is gone but its audit log
        after = await in_thread(rows, collab.db_url, nb_id)
        assert after["audit"] >= before["audit"] + 1  # kept, with the deletion
        assert {t: n for t, n in after.items() if t != "audit"} == {
            "notebooks": 0,
            "doc updates": 0,
            "checkpoints": 0,
            "chat": 0,
            "history": 0,
            "permissions": 0,
        }, after
        actions = await in_thread(audit_actions, collab.db_url, nb_id)
        assert actions[0] == "create" and actions[-1] == "delete" and "chmod" in actions and "execute" in actions
        # the service forgot it; the other notebook is untouched
        for call in (alice.get_notebook(nb_id), alice.chat_history(nb_id), alice.export(nb_id)):
            with pytest.raises(CollabAPIError) as err:
                await call
            assert err.value.status == 404
        assert await in_thread(rows, collab.db_url, keep_id) == keep_before
        assert [m["text"] for m in (await alice.chat_history(keep_id))["messages"]] == ["still here"]
        await conn.close()
        await watcher.close()
