"""Idle kernels are culled after ``kernel_cull_idle_seconds``; the next execution
starts a fresh kernel. The service is restarted with a 2-second limit for this
module and restored afterwards."""

from __future__ import annotations

import pytest

from hub_collab.client import CollabClient

pytestmark = pytest.mark.asyncio(loop_scope="module")

CULL = "--HubCollab.kernel_cull_idle_seconds=2"


@pytest.fixture(scope="module")
def culling(collab):
    collab.extra_args.append(CULL)
    collab.restart()
    try:
        yield collab
    finally:
        collab.extra_args.remove(CULL)
        collab.restart()


async def test_an_idle_kernel_is_culled_and_a_fresh_one_starts(hub, culling):
    alice = CollabClient(culling.public_url, hub.token("alice"))
    nb = await alice.create_notebook("culled", default_cell_mode="0775")
    async with alice.open(nb["id"]) as conn:
        await conn.synced()
        cid = await conn.insert_cell(0, "code", "import os; x = os.getpid(); print(x)")
        await conn.cell_ready(cid)
        await conn.execute(cid)
        first = await conn.wait_executed(cid)
        assert first["status"] == "ok"
        pid1 = conn.outputs(cid)[0]["text"]
        # idle for more than 2 s: the kernel is shut down and every client is told
        await conn.wait_for(lambda: conn.kernel_state.get("state") == "shutdown", timeout=20)
        await conn.execute(cid)
        second = await conn.wait_executed(cid)
        assert second["status"] == "ok"
        assert conn.outputs(cid)[0]["text"] != pid1, "a fresh kernel (another process) ran the cell"
    audit = await alice.request("GET", f"api/notebooks/{nb['id']}/audit")
    assert [e["action"] for e in audit["events"]].count("execute") == 2
    alice.close()
