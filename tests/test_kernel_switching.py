"""Switching a notebook's kernel to another kernelspec, keeping the previous one, with
real kernels (the ``local`` provider, which needs no root: the switching logic is the
same for every provider; tests/test_kernel_picker.py runs it on users' Hub servers).

The service is restarted for this module with two extra kernelspecs (``alt`` and
``third``, the same Python under other names, in a ``JUPYTER_PATH`` of its own),
``max_kernels_per_user=2`` and ``kernels_survive_stop``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from hubfixtures import CollabService, Hub
from test_kernel_faults import stop_only_the_service
from test_kernels import Users, connect, notebook, text_of

from hub_collab.client import CollabAPIError, CommandError, NotebookConnection
from hub_collab.store import make_engine

pytestmark = pytest.mark.asyncio(loop_scope="module")

SPECS = ("alt", "third")


@pytest.fixture(scope="module")
def switching(collab: CollabService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollabService]:
    root = tmp_path_factory.mktemp("jupyter-path")
    for name in SPECS:
        spec = root / "kernels" / name
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": f"Python ({name})",
                    "language": "python",
                }
            )
        )
    old_args, old_env = list(collab.extra_args), dict(collab.extra_env)
    collab.extra_args = [*old_args, "--HubCollab.max_kernels_per_user=2", "--HubCollab.kernels_survive_stop=True"]
    collab.extra_env = {**old_env, "JUPYTER_PATH": str(root)}
    try:
        collab.restart()
        yield collab
    finally:
        collab.extra_args, collab.extra_env = old_args, old_env
        collab.restart()


@pytest.fixture(scope="module")
async def users(hub: Hub, switching: CollabService) -> AsyncIterator[Users]:
    u = Users(hub, switching)
    yield u
    u.close()


async def per_user_notebook(users: Users, *sources: str) -> str:
    nb = await users("instructor").create_notebook(
        "switching", notebook(*sources), group="students", mode="0775", default_cell_mode="0775"
    )
    nb_id = str(nb["id"])
    await users("instructor").request("PUT", f"api/notebooks/{nb_id}/settings", {"kernel_mode": "per-user"})
    return nb_id


async def run(conn: NotebookConnection, cid: str) -> tuple[str, str]:
    await conn.execute(cid)
    state = await conn.wait_executed(cid, timeout=90)
    return str(state["status"]), text_of(conn.outputs(cid))


async def shut_all(users: Users, user: str, nb_id: str) -> None:
    """Shut down ``user``'s kernels of the notebook: the current one and those kept."""
    client = users(user)
    status = await client.request("GET", f"api/notebooks/{nb_id}/kernel")
    for kept in status["kept"]:
        await client.request(
            "DELETE", f"api/notebooks/{nb_id}/kernel?resource={kept['resource']}&kernel_name={kept['kernel_name']}"
        )
    await client.request("DELETE", f"api/notebooks/{nb_id}/kernel")


def kernel_rows(collab: CollabService, nb_id: str) -> list[tuple[str, str, str]]:
    engine = make_engine(collab.db_url)
    try:
        with engine.connect() as db:
            rows = db.execute(
                sa.text("SELECT user, resource, kernel_name FROM collab_kernels WHERE notebook_id = :nb"), {"nb": nb_id}
            ).all()
    finally:
        engine.dispose()
    return sorted((str(r[0]), str(r[1]), str(r[2])) for r in rows)


async def test_the_picker_lists_the_kernelspecs_of_the_service(users: Users) -> None:
    nb_id = await per_user_notebook(users, "1")
    listing = await users("alice").request("GET", f"api/notebooks/{nb_id}/kernel/resources")
    [local] = listing["resources"]
    assert (local["resource"], local["kind"], local["state"]) == ("local", "local", "ready")
    names = [s["name"] for s in local["kernelspecs"]]
    assert {"python3", *SPECS} <= set(names)
    assert {s["display_name"] for s in local["kernelspecs"] if s["name"] == "alt"} == {"Python (alt)"}
    assert listing["may_choose"] is True and listing["kernel_mode"] == "per-user"
    assert (listing["resource"], listing["kernel_name"], listing["default"]) == ("local", "python3", "local")


async def test_switching_back_finds_the_kernel_with_its_state(users: Users, switching: CollabService) -> None:
    nb_id = await per_user_notebook(
        users, "x = 'first'\nprint(x)", "print(x)", "import sys\nprint(sys.argv[0].rsplit('/', 1)[-1])"
    )
    alice = await connect(users, "alice", nb_id)
    bob = await connect(users, "bob", nb_id)
    try:
        assert await run(alice, "c0") == ("ok", "first\n")
        status = await alice.select_kernel(kernel_name="alt")
        assert (status["kernel_name"], status["state"], status["resource"]) == ("alt", "shutdown", "local")
        assert [(k["kernel_name"], k["state"]) for k in status["kept"]] == [("python3", "idle")]
        # a new kernel on the other kernelspec: x is not there
        status_, text = await run(alice, "c1")
        assert status_ == "error" and "NameError" in str(alice.outputs("c1")), alice.outputs("c1")
        await alice.wait_for(lambda: alice.kernel_state.get("kernel_name") == "alt", timeout=30)
        assert alice.kernel_state["kept"][0]["kernel_name"] == "python3"
        # back: the first kernel kept its variables
        await alice.select_kernel(kernel_name="python3")
        assert await run(alice, "c1") == ("ok", "first\n")
        # bob's choice is his own: he never switched
        await bob.wait_for(lambda: "kernel_name" in bob.kernel_state, timeout=30)
        assert bob.kernel_state["kernel_name"] == "python3" and bob.kernel_state["kept"] == []
        assert kernel_rows(switching, nb_id) == [("alice", "local", "alt"), ("alice", "local", "python3")]
        # a kept kernel can be shut down by name, and is gone
        await users("alice").request("DELETE", f"api/notebooks/{nb_id}/kernel?resource=local&kernel_name=alt")
        await alice.wait_for(lambda: alice.kernel_state.get("kept") == [], timeout=30)
        await alice.wait_for(lambda: kernel_rows(switching, nb_id) == [("alice", "local", "python3")], timeout=30)
        # the audit log says who switched to what
        audit = await users("instructor").request("GET", f"api/notebooks/{nb_id}/audit")
        switched = [e["detail"] for e in audit["events"] if e["action"] == "select_kernel"]
        assert {"resource": "local", "kernel_name": "alt"} in switched
    finally:
        await shut_all(users, "alice", nb_id)
        await alice.close()
        await bob.close()


async def test_a_busy_kernel_is_not_switched_away_from_and_a_cell_runs_in_one_kernel_at_a_time(users: Users) -> None:
    nb_id = await per_user_notebook(
        users, "import time\nfor i in range(300):\n    print(i, flush=True)\n    time.sleep(0.1)", "print('next')"
    )
    alice = await connect(users, "alice", nb_id)
    try:
        await alice.execute("c0")
        await alice.wait_for(lambda: "2\n" in text_of(alice.outputs("c0")), timeout=60)
        with pytest.raises(CommandError) as busy:
            await alice.select_kernel(kernel_name="alt")
        assert busy.value.code == "kernel_busy" and "interrupt" in str(busy.value)
        assert alice.kernel_state["kernel_name"] == "python3"
        # the REST path says the same, with 409
        with pytest.raises(CollabAPIError) as rest:
            await users("alice").request("PUT", f"api/notebooks/{nb_id}/kernel/selection", {"kernel_name": "alt"})
        assert (rest.value.status, rest.value.code) == (409, "kernel_busy")
        await alice.interrupt()
        state = await alice.wait_executed("c0", timeout=60)
        assert state["status"] == "interrupted"
        await alice.select_kernel(kernel_name="alt")
        assert await run(alice, "c1") == ("ok", "next\n")
    finally:
        await shut_all(users, "alice", nb_id)
        await alice.close()


async def test_past_the_limit_the_least_recently_used_idle_kernel_goes(users: Users, switching: CollabService) -> None:
    nb_id = await per_user_notebook(users, "y = 1\nprint(y)", "print(y)")
    alice = await connect(users, "alice", nb_id)
    try:
        assert await run(alice, "c0") == ("ok", "1\n")  # python3
        await alice.select_kernel(kernel_name="alt")
        assert await run(alice, "c0") == ("ok", "1\n")  # alt
        await alice.select_kernel(kernel_name="third")
        # a third kernel (max_kernels_per_user=2): python3, used longest ago, is shut down
        assert await run(alice, "c0") == ("ok", "1\n")
        await alice.wait_for(lambda: [k["kernel_name"] for k in alice.kernel_state.get("kept", [])] == ["alt"], timeout=30)
        await alice.wait_for(
            lambda: kernel_rows(switching, nb_id) == [("alice", "local", "alt"), ("alice", "local", "third")], timeout=30
        )
        await alice.select_kernel(kernel_name="python3")
        status, _ = await run(alice, "c1")
        assert status == "error", "python3 was shut down: a fresh kernel has no y"
    finally:
        await shut_all(users, "alice", nb_id)
        await alice.close()


async def test_kept_kernels_and_choices_outlive_a_restart(users: Users, switching: CollabService) -> None:
    nb_id = await per_user_notebook(users, "z = 'kept'\nprint(z)", "print(z)")
    alice = await connect(users, "alice", nb_id)
    try:
        assert await run(alice, "c0") == ("ok", "kept\n")  # python3
        await alice.select_kernel(kernel_name="alt")
        assert await run(alice, "c0") == ("ok", "kept\n")  # alt
        await alice.select_kernel(kernel_name="python3")
    finally:
        await alice.close()
    await alice.wait_for(
        lambda: kernel_rows(switching, nb_id) == [("alice", "local", "alt"), ("alice", "local", "python3")], timeout=30
    )
    # SIGTERM to the service alone (the fixture's restart would stop its kernels too)
    await asyncio.to_thread(stop_only_the_service, switching, signal.SIGTERM)
    await asyncio.to_thread(switching.start)
    alice = await connect(users, "alice", nb_id)
    try:
        # alice's pick (python3) was remembered, and both kernels were found again
        try:
            await alice.wait_for(lambda: alice.kernel_state.get("state") == "idle", timeout=60)
        except TimeoutError:
            raise AssertionError(f"kernel state after the restart: {alice.kernel_state}") from None
        assert alice.kernel_state["kernel_name"] == "python3"
        assert [k["kernel_name"] for k in alice.kernel_state["kept"]] == ["alt"]
        assert await run(alice, "c1") == ("ok", "kept\n")
        await alice.select_kernel(kernel_name="alt")
        assert await run(alice, "c1") == ("ok", "kept\n")
    finally:
        await shut_all(users, "alice", nb_id)
        await alice.close()


async def test_a_flood_of_switches_is_cheap_and_the_last_one_wins(users: Users, switching: CollabService) -> None:
    nb_id = await per_user_notebook(users, "print(1)")
    alice = await connect(users, "alice", nb_id)
    try:
        names = ["alt", "third", "python3"] * 100 + ["third"]
        replies = await asyncio.gather(*(alice.command("select_kernel", timeout=60, kernel_name=n) for n in names))
        assert all(r["type"] == "ack" for r in replies)
        assert alice.kernel_state["kernel_name"] == "third"
        # nothing was started by switching, and only the last pick is stored
        assert alice.kernel_state["state"] == "shutdown" and alice.kernel_state["kept"] == []
        assert kernel_rows(switching, nb_id) == []

        def stored() -> list[tuple[str, str, str]]:
            engine = make_engine(switching.db_url)
            try:
                with engine.connect() as db:
                    return [
                        (str(r[0]), str(r[1]), str(r[2]))
                        for r in db.execute(
                            sa.text("SELECT user, resource, kernel_name FROM collab_kernel_choices WHERE notebook_id = :nb"),
                            {"nb": nb_id},
                        ).all()
                    ]
            finally:
                engine.dispose()

        await alice.wait_for(lambda: stored() == [("alice", "local", "third")], timeout=30)
        # another connection of alice's hears it too
        again = await connect(users, "alice", nb_id)
        try:
            await again.wait_for(lambda: again.kernel_state.get("kernel_name") == "third", timeout=30)
        finally:
            await again.close()
    finally:
        await alice.close()


async def test_bad_picks_get_clear_errors_and_change_nothing(users: Users) -> None:
    nb_id = await per_user_notebook(users, "print(1)")
    alice = await connect(users, "alice", nb_id)
    try:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"kernel_name": "no-such-spec"}, "unknown_kernel"),
            ({"kernel_name": ""}, "invalid_setting"),
            ({"kernel_name": ["python3"]}, "invalid_setting"),
            ({"kernel_name": "k" * 300}, "invalid_setting"),
            ({"resource": "gateway"}, "unknown_resource"),
            ({"resource": "server:"}, "unknown_resource"),
            ({"resource": "server:../bob"}, "invalid_setting"),
            ({"resource": "elsewhere"}, "invalid_setting"),
            ({"resource": "x" * 10_000}, "invalid_setting"),
            ({"resource": {"server": "bob"}}, "invalid_setting"),
        ]
        for fields, code in cases:
            with pytest.raises(CommandError) as err:
                await alice.command("select_kernel", **fields)
            assert err.value.code == code, (fields, err.value)
        # REST: forged fields are refused before anything happens
        for body, code in (({"user": "bob", "kernel_name": "alt"}, "invalid_field"), ({"runs_as": "root"}, "invalid_field")):
            with pytest.raises(CollabAPIError) as rest:
                await users("alice").request("PUT", f"api/notebooks/{nb_id}/kernel/selection", body)
            assert rest.value.code == code
        status = await users("alice").request("GET", f"api/notebooks/{nb_id}/kernel")
        assert (status["kernel_name"], status["resource"]) == ("python3", "local")
        # a server cannot be started where kernels do not run on Hub servers
        with pytest.raises(CommandError) as err:
            await alice.start_server("gpu")
        assert err.value.code == "unknown_resource"
        # who may read but not run may not pick either
        await users("instructor").set_permissions(nb_id, mode="0744")
        carol = await connect(users, "carol", nb_id)
        try:
            for kind in ("select_kernel", "kernel_resources", "start_server"):
                with pytest.raises(CommandError) as err:
                    await carol.command(kind)
                assert err.value.code == "forbidden", kind
        finally:
            await carol.close()
    finally:
        await alice.close()


async def test_in_shared_mode_only_the_owner_switches_for_everyone(users: Users) -> None:
    nb = await users("instructor").create_notebook(
        "shared switching", notebook("import sys\nprint(sys.argv)"), group="students", mode="0775", default_cell_mode="0775"
    )
    nb_id = str(nb["id"])
    owner = await connect(users, "instructor", nb_id)
    alice = await connect(users, "alice", nb_id)
    try:
        with pytest.raises(CommandError) as err:
            await alice.select_kernel(kernel_name="alt")
        assert err.value.code == "forbidden" and "owner" in str(err.value)
        listing = await alice.kernel_resources()
        assert listing["may_choose"] is False and listing["owner"] == "instructor"
        status = await owner.select_kernel(kernel_name="alt")
        assert status["kernel_name"] == "alt"
        await alice.wait_for(lambda: alice.kernel_state.get("kernel_name") == "alt", timeout=30)
        settings = await users("alice").request("GET", f"api/notebooks/{nb_id}/settings")
        assert settings["kernel_name"] == "alt"
    finally:
        await owner.close()
        await alice.close()
