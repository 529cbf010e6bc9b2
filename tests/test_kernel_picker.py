"""Picking where kernels run, on the users' own Hub servers (the ``hub`` provider): the
user's servers listed with their kernelspecs, a stopped one started with progress,
switching between servers and back (each kernel keeps its state), the owner's
consent in shared mode, and what goes wrong: a server that never becomes ready, a
kernelspec the server lacks, a switch during a run, a name that is not a server of
the caller's. Real Hub, real LocalProcessSpawner, real Unix accounts: needs root.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from hubfixtures import HANGING_SERVER_PREFIX, CollabService, SpawningHub
from test_providers import connect, notebook, text_of

from hub_collab.client import CollabAPIError, CollabClient, CommandError, NotebookConnection

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVER_NAME = "import os\nprint(repr(os.environ.get('JUPYTERHUB_SERVER_NAME', '')))"
WHO = "import os, pwd\nprint(pwd.getpwuid(os.getuid()).pw_name)"


@pytest.fixture
async def bob(spawning_hub: SpawningHub, on_servers: CollabService) -> AsyncIterator[CollabClient]:
    async with CollabClient(on_servers.public_url, spawning_hub.token("bob"), request_timeout=240) as client:
        yield client


async def run(conn: NotebookConnection, cid: str) -> tuple[str, str]:
    await conn.command("execute", timeout=240, cell_id=cid)
    state = await conn.wait_executed(cid, timeout=240)
    return str(state["status"]), text_of(conn.outputs(cid))


async def per_user(client: CollabClient, *sources: str) -> str:
    nb = await client.create_notebook("picker", notebook(*sources))
    nb_id = str(nb["id"])
    await client.request("PUT", f"api/notebooks/{nb_id}/settings", {"kernel_mode": "per-user"})
    return nb_id


def entry(listing: dict[str, Any], resource: str) -> dict[str, Any]:
    [found] = [r for r in listing["resources"] if r["resource"] == resource]
    return found


async def test_a_user_starts_a_named_server_with_progress_and_switches_between_servers(bob: CollabClient) -> None:
    nb_id = await per_user(bob, "x = 'on the default server'\n" + SERVER_NAME, "print(x)")
    conn = await connect(bob, nb_id)
    progress: list[dict[str, Any]] = []
    conn.listeners.append(lambda kind, msg: progress.append(msg) if kind == "message" and msg.get("type") == "server_progress" else None)
    try:
        listing = await conn.kernel_resources()
        assert listing["default"] == "server:" and listing["may_choose"] is True
        assert entry(listing, "server:")["label"] == "your default server"
        # a second server of bob's, started from the picker: progress, then ready
        ack = await conn.start_server("second")
        assert (ack["resource"], ack["state"]) == ("server:second", "ready")
        assert progress and progress[-1]["resource"] == "server:second", progress
        assert any(p["ready"] for p in progress) and not any(p["failed"] for p in progress), progress
        listing = await conn.kernel_resources()
        second = entry(listing, "server:second")
        assert second["state"] == "ready" and "python3" in [s["name"] for s in second["kernelspecs"]]

        assert await run(conn, "c0") == ("ok", "''\n")
        status = await conn.select_kernel("server:second")
        assert status["where"] == "on bob's server 'second'" and status["state"] == "shutdown"
        assert [(k["resource"], k["state"]) for k in status["kept"]] == [("server:", "idle")]
        # the new kernel runs on the other server, with none of the first kernel's state
        assert await run(conn, "c0") == ("ok", "'second'\n")
        await conn.select_kernel("server:")
        assert await run(conn, "c1") == ("ok", "on the default server\n")
    finally:
        await conn.close()


async def test_a_server_that_never_becomes_ready_says_so(bob: CollabClient) -> None:
    nb_id = await per_user(bob, "print(1)")
    conn = await connect(bob, nb_id)
    try:
        with pytest.raises(CommandError) as failed:
            await conn.start_server(HANGING_SERVER_PREFIX + "1")
        assert failed.value.code == "server_failed", failed.value
        assert f"{HANGING_SERVER_PREFIX}1" in str(failed.value) and "could not start" in str(failed.value)
        # a kernel on such a server: the cell ends with the reason, nothing hangs
        await conn.select_kernel(f"server:{HANGING_SERVER_PREFIX}2")
        with pytest.raises(CommandError) as start:
            await conn.command("execute", timeout=240, cell_id="c0")
        assert start.value.code == "kernel_start_failed" and "could not start" in str(start.value)
        state = await conn.wait_executed("c0", timeout=60)
        assert state["status"] == "kernel_start_failed"
        assert conn.kernel_state["state"] == "dead" and f"{HANGING_SERVER_PREFIX}2" in conn.kernel_state["message"]
        # other notebooks are unaffected: back on the default server, cells run
        await conn.select_kernel("server:")
        assert await run(conn, "c0") == ("ok", "1\n")
    finally:
        await conn.close()


async def test_a_kernelspec_the_server_lacks_is_a_clear_error(bob: CollabClient) -> None:
    nb_id = await per_user(bob, "print(1)")
    started = await bob.request("POST", f"api/notebooks/{nb_id}/kernel/start-server", {})
    assert started == {"resource": "server:", "state": "ready"}
    listing = await bob.request("GET", f"api/notebooks/{nb_id}/kernel/resources")
    assert "python3" in [s["name"] for s in entry(listing, "server:")["kernelspecs"]]
    # known (the listing just fetched them): refused at once
    with pytest.raises(CollabAPIError) as unknown:
        await bob.request("PUT", f"api/notebooks/{nb_id}/kernel/selection", {"kernel_name": "nope"})
    assert unknown.value.code == "unknown_kernel" and "python3" in str(unknown.value)
    # on a server that is not running the service cannot tell yet: the start says it
    conn = await connect(bob, nb_id)
    try:
        await conn.select_kernel("server:fresh", "nope")
        with pytest.raises(CommandError) as start:
            await conn.command("execute", timeout=240, cell_id="c0")
        assert start.value.code == "kernel_start_failed" and "nope" in str(start.value), start.value
    finally:
        await conn.close()


async def test_no_switch_during_a_run_and_a_flood_of_switches_starts_nothing(bob: CollabClient) -> None:
    nb_id = await per_user(bob, "import time\nfor i in range(600):\n    print(i, flush=True)\n    time.sleep(0.1)")
    conn = await connect(bob, nb_id)
    try:
        await conn.command("execute", timeout=240, cell_id="c0")
        await conn.wait_for(lambda: "2\n" in text_of(conn.outputs("c0")), timeout=240)
        with pytest.raises(CommandError) as busy:
            await conn.select_kernel("server:second")
        assert busy.value.code == "kernel_busy"
        await conn.interrupt()
        assert (await conn.wait_executed("c0", timeout=60))["status"] == "interrupted"
        picks = ["server:second", "server:third", "server:"] * 40 + ["server:third"]
        for pick in picks:
            await conn.select_kernel(pick)
        status = await bob.request("GET", f"api/notebooks/{nb_id}/kernel")
        assert status["resource"] == "server:third" and status["state"] == "shutdown"
        assert [(k["resource"], k["state"]) for k in status["kept"]] == [("server:", "idle")]
        # no server was started by switching: "third" was never created
        listing = await conn.kernel_resources()
        assert "server:third" not in [r["resource"] for r in listing["resources"]]
    finally:
        await conn.close()


async def test_nobody_reaches_a_server_that_is_not_theirs(spawning_hub: SpawningHub, on_servers: CollabService) -> None:
    async with CollabClient(on_servers.public_url, spawning_hub.token("alice"), request_timeout=120) as alice:
        nb_id = await per_user(alice, WHO)
        conn = await connect(alice, nb_id)
        try:
            for resource, code in (
                ("server:../bob", "invalid_setting"),
                ("server:bob/", "invalid_setting"),
                ("gateway", "unknown_resource"),  # none configured
                ("local", "unknown_resource"),  # never offered beside isolated kernels
                ("user:bob", "invalid_setting"),
            ):
                with pytest.raises(CommandError) as err:
                    await conn.select_kernel(resource)
                assert err.value.code == code, (resource, err.value)
            for server, code in (("../bob", "invalid_setting"), (["bob"], "invalid_command")):
                with pytest.raises(CommandError) as err:
                    await conn.command("start_server", server=server)
                assert err.value.code == code, (server, err.value)
            with pytest.raises(CollabAPIError) as forged:
                await alice.request("POST", f"api/notebooks/{nb_id}/kernel/start-server", {"server": "", "user": "bob"})
            assert forged.value.code == "invalid_field"
            # "server:bob" is alice's own server named bob: a server name never names a user
            status = await conn.select_kernel("server:bob")
            assert status["where"] == "on alice's server 'bob'"
        finally:
            await conn.close()


async def test_the_owner_puts_the_shared_kernel_on_a_named_server_with_consent(
    spawning_hub: SpawningHub, on_servers: CollabService, bob: CollabClient
) -> None:
    async with CollabClient(on_servers.public_url, spawning_hub.token("alice"), request_timeout=240) as alice:
        nb = await alice.create_notebook("shared picker", notebook(WHO + "\n" + SERVER_NAME), mode="0777", default_cell_mode="0777")
        nb_id = str(nb["id"])
        owner = await connect(alice, nb_id)
        other = await connect(bob, nb_id)
        try:
            with pytest.raises(CommandError) as err:
                await other.select_kernel("server:")
            assert err.value.code == "forbidden"
            with pytest.raises(CommandError) as err:
                await owner.select_kernel("server:second")
            assert err.value.code == "consent_required" and "run code as you" in str(err.value)
            status = await owner.select_kernel("server:second", consent=True)
            assert status["where"] == "on alice's server 'second'"
            await other.wait_for(lambda: other.kernel_state.get("resource") == "server:second", timeout=30)
            # bob runs the cell in alice's kernel on her server 'second', as alice
            assert await run(other, "c0") == ("ok", "alice\n'second'\n")
        finally:
            await owner.close()
            await other.close()
