"""Shared kernels and server-side execution, against a real Hub and real ipykernels.

One notebook per scenario, owned by ``instructor``, group ``students`` (alice, bob,
carol) with rwx. Kernels are shared inside the module where the scenario allows it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hub_collab.client import CollabAPIError, CollabClient, CommandError, NotebookConnection

pytestmark = pytest.mark.asyncio(loop_scope="module")


def notebook(*sources: str, markdown: tuple[str, ...] = ()) -> dict[str, Any]:
    cells: list[dict[str, Any]] = [
        {
            "id": f"c{i}",
            "cell_type": "code",
            "source": src,
            "metadata": {},
            "outputs": [],
            "execution_count": None,
        }
        for i, src in enumerate(sources)
    ]
    cells += [
        {"id": f"m{i}", "cell_type": "markdown", "source": src, "metadata": {}}
        for i, src in enumerate(markdown)
    ]
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "cells": cells,
    }


def text_of(outputs: list[dict[str, Any]]) -> str:
    return "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream")


class Users:
    """Clients for the demo users, closed at the end of the module."""

    def __init__(self, hub: Any, collab: Any) -> None:
        self.hub, self.collab = hub, collab
        self.clients: dict[str, CollabClient] = {}

    def __call__(self, name: str) -> CollabClient:
        if name not in self.clients:
            self.clients[name] = CollabClient(
                self.collab.public_url, self.hub.token(name), request_timeout=120
            )
        return self.clients[name]

    def close(self) -> None:
        for c in self.clients.values():
            c.close()


@pytest.fixture(scope="module")
async def users(hub: Any, collab: Any) -> AsyncIterator[Users]:
    u = Users(hub, collab)
    yield u
    u.close()


async def make_notebook(
    users: Users, *sources: str, markdown: tuple[str, ...] = (), name: str = "kernels"
) -> str:
    nb = await users("instructor").create_notebook(
        name,
        notebook(*sources, markdown=markdown),
        group="students",
        mode="0775",
        default_cell_mode="0775",
    )
    return str(nb["id"])


async def connect(users: Users, user: str, nb_id: str) -> NotebookConnection:
    conn = users(user).open(nb_id)
    await conn.connect()
    await conn.synced()
    return conn


@pytest.fixture(scope="module")
async def shared_nb(users: Users) -> AsyncIterator[str]:
    """A notebook whose kernel several tests share."""
    nb_id = await make_notebook(
        users,
        "import time\nfor i in range(6):\n    print('line', i, flush=True)\n    time.sleep(0.5)",
        "import os; print(sorted(os.environ)); print(os.getcwd()); print(os.environ['HOME'])",
        "name = input('your name? ')\nprint('hello', name)",
        "x = 40 + 2\nx",
        "print('locked')",
        markdown=("# title",),
    )
    yield nb_id
    await users("instructor").request("DELETE", f"api/notebooks/{nb_id}/kernel")


async def test_two_users_see_outputs_live_and_audit(users: Users, shared_nb: str) -> None:
    alice, bob = await connect(users, "alice", shared_nb), await connect(users, "bob", shared_nb)
    try:
        assert bob.kernel_state.get("type") == "kernel"
        ack = await alice.execute("c0")
        assert ack["queue_position"] == 0
        # bob sees output while the cell still runs
        await bob.wait_for(lambda: "line 1" in text_of(bob.outputs("c0")), timeout=60)
        assert bob.out_state("c0")["execution_state"] == "running"
        assert bob.kernel_state["state"] == "busy" and bob.kernel_state["running"] == "c0"
        state = await bob.wait_executed("c0")
        await alice.wait_executed("c0")
        expected = "".join(f"line {i}\n" for i in range(6))
        assert text_of(bob.outputs("c0")) == expected == text_of(alice.outputs("c0"))
        assert state["status"] == "ok" and state["executed_by"] == "alice"
        assert isinstance(state["execution_count"], (int, float)) and state["execution_count"] >= 1
        assert state["started_at"] <= state["ended_at"]
        await bob.wait_for(lambda: bob.kernel_state.get("state") == "idle")
    finally:
        await alice.close()
        await bob.close()
    audit = await users("instructor").request("GET", f"api/notebooks/{shared_nb}/audit")
    runs = [e for e in audit["events"] if e["action"] == "execute" and e["target"] == "cell:c0"]
    assert runs and runs[0]["actor"] == "alice"
    assert runs[0]["detail"]["status"] == "ok" and runs[0]["detail"]["duration"] > 2


async def test_runner_disconnects_and_a_late_joiner_sees_everything(
    users: Users, shared_nb: str
) -> None:
    alice = await connect(users, "alice", shared_nb)
    await alice.execute("c0")
    await alice.wait_for(lambda: alice.out_state("c0")["execution_state"] == "running", timeout=60)
    await alice.close()  # the runner leaves mid-run
    await asyncio.sleep(3.5)
    alice = await connect(users, "alice", shared_nb)
    carol = None
    try:
        await alice.wait_executed("c0")
        expected = "".join(f"line {i}\n" for i in range(6))
        assert text_of(alice.outputs("c0")) == expected
        carol = await connect(users, "carol", shared_nb)  # joins after the run
        assert text_of(carol.outputs("c0")) == expected
        assert carol.out_state("c0")["executed_by"] == "alice"
        assert carol.out_state("c0")["status"] == "ok"
    finally:
        await alice.close()
        if carol is not None:
            await carol.close()


async def test_bad_executes(users: Users, shared_nb: str) -> None:
    bob = await connect(users, "bob", shared_nb)
    try:
        with pytest.raises(CommandError) as err:
            await bob.execute("m0")
        assert err.value.code == "not_code"
        with pytest.raises(CommandError) as err:
            await bob.execute("nope")
        assert err.value.code == "unknown_cell"
        with pytest.raises(CommandError) as err:
            await bob.execute("c3", source_hash=hashlib.sha256(b"something else").hexdigest())
        assert err.value.code == "source_changed"
        with pytest.raises(CommandError) as err:
            await bob.input_reply("c3", "x")
        assert err.value.code == "no_input_request"
    finally:
        await bob.close()
    with pytest.raises(CollabAPIError) as api_err:
        await users("bob").request("POST", f"api/notebooks/{shared_nb}/cells/m0/execute")
    assert (api_err.value.status, api_err.value.code) == (400, "not_code")
    with pytest.raises(CollabAPIError) as api_err:
        await users("bob").request("POST", f"api/notebooks/{shared_nb}/cells/zzz/execute")
    assert (api_err.value.status, api_err.value.code) == (404, "unknown_cell")


async def test_rest_execute_and_kernel_state(users: Users, shared_nb: str) -> None:
    bob = users("bob")
    result = await bob.request("POST", f"api/notebooks/{shared_nb}/cells/c3/execute?wait=1")
    assert result["status"] == "ok"
    assert result["outputs"][0]["data"]["text/plain"] == "42"
    assert result["execution_count"] == result["outputs"][0]["execution_count"]
    queued = await bob.request(
        "POST",
        f"api/notebooks/{shared_nb}/cells/c3/execute",
        {"source_hash": hashlib.sha256(b"x = 40 + 2\nx").hexdigest()},
    )
    assert queued["queue_position"] == 0
    state = await bob.request("GET", f"api/notebooks/{shared_nb}/kernel")
    assert state["kernel_name"] == "python3" and state["kernel_mode"] == "shared"
    assert state["state"] in ("idle", "busy")


async def test_execute_denied_then_granted_per_cell(users: Users, shared_nb: str) -> None:
    instructor = users("instructor")
    await instructor.set_permissions(shared_nb, "c4", mode="0664")  # group rw-, no x
    bob = await connect(users, "bob", shared_nb)
    try:
        with pytest.raises(CommandError) as err:
            await bob.execute("c4")
        assert err.value.code == "forbidden"
        with pytest.raises(CollabAPIError) as api_err:
            await users("bob").request("POST", f"api/notebooks/{shared_nb}/cells/c4/execute")
        assert api_err.value.status == 403
        await instructor.set_permissions(shared_nb, "c4", mode="0775")
        await bob.wait_for(lambda: bob.caps.get("cells", {}).get("c4") == "rwx")
        await bob.execute("c4")
        state = await bob.wait_executed("c4")
        assert state["status"] == "ok" and text_of(bob.outputs("c4")) == "locked\n"
    finally:
        await bob.close()


async def test_kernel_environment_and_working_directory(
    users: Users, shared_nb: str, collab: Any
) -> None:
    result = await users("alice").request(
        "POST", f"api/notebooks/{shared_nb}/cells/c1/execute?wait=1"
    )
    assert result["status"] == "ok", result
    names_line, cwd, home = text_of(result["outputs"]).splitlines()
    names = eval(names_line)  # a printed list of strings
    assert not [n for n in names if n.startswith(("JUPYTERHUB_", "HUB_COLLAB_"))], names
    allowed_prefixes = (
        "LC_",
        "JPY_",
        "PYTHON",
        "PYDEVD",
        "MPL",
        "CLICOLOR",
        "FORCE_COLOR",
        "TERM",
        "GIT_PAGER",
        "PAGER",
    )
    allowed = {"PATH", "LANG", "LANGUAGE", "TZ", "TMPDIR", "HOME"}
    assert all(n in allowed or n.startswith(allowed_prefixes) for n in names), names
    expected = os.path.join(str(collab.data_dir), "notebooks", shared_nb)
    assert cwd == expected and home == expected
    assert stat.S_IMODE(os.stat(expected).st_mode) == 0o700


async def test_input_goes_to_the_runner_only(users: Users, shared_nb: str) -> None:
    alice, bob = await connect(users, "alice", shared_nb), await connect(users, "bob", shared_nb)
    try:
        start = len(bob.messages)
        await alice.execute("c2")
        await alice.wait_for(lambda: "c2" in alice.input_requests, timeout=60)
        assert alice.input_requests["c2"]["prompt"] == "your name? "
        waiting = await bob.next_message("input_waiting", start=start)
        assert waiting == {"type": "input_waiting", "cell_id": "c2", "user": "alice"}
        assert not [m for m in bob.messages if m.get("type") == "input_request"]
        with pytest.raises(CommandError) as err:
            await bob.input_reply("c2", "mallory")
        assert err.value.code == "forbidden"
        await alice.input_reply("c2", "Alice")
        state = await alice.wait_executed("c2")
        assert state["status"] == "ok"
        assert "hello Alice" in text_of(alice.outputs("c2"))
        await bob.next_message("input_done", start=start)
    finally:
        await alice.close()
        await bob.close()


async def test_execute_all_below_and_restart(users: Users) -> None:
    nb_id = await make_notebook(
        users,
        "a = 1\nprint('one')",
        "b = a + 1\nprint(b)",
        "raise ValueError('boom')",
        "print('never')",
    )
    alice = await connect(users, "alice", nb_id)
    try:
        ack = await alice.execute_all()
        assert ack["cell_ids"] == ["c0", "c1", "c2", "c3"] and ack["skipped"] == []
        assert (await alice.wait_executed("c2"))["status"] == "error"
        assert alice.outputs("c2")[-1]["ename"] == "ValueError"
        assert (await alice.wait_executed("c3"))["status"] == "aborted"
        assert text_of(alice.outputs("c1")) == "2\n"
        ack = await alice.execute_below("c3")
        assert ack["cell_ids"] == ["c3"]
        assert (await alice.wait_executed("c3"))["status"] == "ok"
        await alice.restart()
        await alice.wait_for(lambda: alice.kernel_state.get("state") == "idle", timeout=60)
        await alice.execute("c1")
        assert (await alice.wait_executed("c1"))[
            "status"
        ] == "error"  # `a` is gone with the old kernel
        assert alice.outputs("c1")[-1]["ename"] == "NameError"
        await alice.shutdown_kernel()
        await alice.wait_for(lambda: alice.kernel_state.get("state") == "shutdown")
    finally:
        await alice.close()
    # bob is a student: w and x on the notebook let him restart; dave (other: r-x) may not
    dave = await connect(users, "dave", nb_id)
    try:
        with pytest.raises(CommandError) as err:
            await dave.restart()
        assert err.value.code == "forbidden"
    finally:
        await dave.close()


async def test_settings_need_the_owner(users: Users) -> None:
    nb_id = await make_notebook(users, "1")
    with pytest.raises(CollabAPIError) as err:
        await users("alice").request(
            "PUT", f"api/notebooks/{nb_id}/settings", {"kernel_mode": "per-user"}
        )
    assert err.value.status == 403
    with pytest.raises(CollabAPIError) as err:
        await users("instructor").request(
            "PUT", f"api/notebooks/{nb_id}/settings", {"kernel_mode": "solo"}
        )
    assert err.value.code == "invalid_setting"
    with pytest.raises(CollabAPIError) as err:
        await users("instructor").request(
            "PUT", f"api/notebooks/{nb_id}/settings", {"kernel_name": "no-such-kernel"}
        )
    assert err.value.code == "unknown_kernel"
    got = await users("instructor").request(
        "PUT", f"api/notebooks/{nb_id}/settings", {"kernel_mode": "per-user"}
    )
    assert got == {
        "kernel_mode": "per-user",
        "kernel_name": "python3",
        "provider": "local",
        "default_resource": "local",
        "resource": "local",
        "shared_server": None,
    }
    # a Hub server or a gateway is not offered by a service that runs local kernels
    for body in ({"shared_server": "", "consent": True}, {"resource": "gateway"}):
        with pytest.raises(CollabAPIError) as err:
            await users("instructor").request("PUT", f"api/notebooks/{nb_id}/settings", body)
        assert err.value.code == "unknown_resource" and "it offers: local" in str(err.value)


async def test_per_user_mode_isolation(users: Users) -> None:
    secret = "s3cr3t-" + os.urandom(4).hex()
    nb_id = await make_notebook(users, f"x = {secret!r}\nprint(x)", "print(x)")
    await users("instructor").request(
        "PUT", f"api/notebooks/{nb_id}/settings", {"kernel_mode": "per-user"}
    )
    alice, bob = await connect(users, "alice", nb_id), await connect(users, "bob", nb_id)
    seen_by_bob: list[bytes] = []
    bob.listeners.append(
        lambda kind, data: seen_by_bob.append(
            data if isinstance(data, bytes) else repr(data).encode()
        )
    )
    try:
        await alice.execute("c0")
        assert (await alice.wait_executed("c0"))["status"] == "ok"
        assert text_of(alice.outputs("c0")) == secret + "\n"
        await alice.execute("c1")
        assert (await alice.wait_executed("c1"))["status"] == "ok"
        # bob: his own kernel, where x does not exist; alice's outputs never reach him
        await bob.execute("c1")
        assert (await bob.wait_executed("c1"))["status"] == "error"
        assert bob.outputs("c1")[-1]["ename"] == "NameError"
        assert bob.outputs("c0") == [] and bob.out_state("c0")["executed_by"] in ("", None)
        assert text_of(alice.outputs("c1")) == secret + "\n"  # bob's run did not touch alice's view
        carol = await connect(users, "carol", nb_id)
        try:
            assert carol.outputs("c0") == [] and carol.outputs("c1") == []
        finally:
            await carol.close()
        assert not any(secret.encode() in chunk for chunk in seen_by_bob)
        assert bob.kernel_state["state"] in ("idle", "busy")
        # alice reconnects and still sees her outputs
        await alice.close()
        alice = await connect(users, "alice", nb_id)
        assert text_of(alice.outputs("c0")) == secret + "\n"
    finally:
        await alice.close()
        await bob.close()
    export = await users("instructor").export(nb_id)
    assert secret not in str(export["cells"][0]["outputs"])
