"""Kernels outside the service, end to end through the real service.

* ``gateway``: the service (the ``collab`` fixture, restarted with
  ``kernel_provider=gateway``) runs its kernels on a real Jupyter Kernel Gateway; the
  kernel gets the Hub user as ``KERNEL_USERNAME``; a run goes on through a kill -9 of
  the service (the gateway replays what the kernel said meanwhile).
* ``hub``: the service for the spawning Hub (``spawning_collab``, restarted with
  ``kernel_provider=hub``) runs each user's kernel on that user's own server, as that
  user's Unix account; a student's kernel, searching the file system and ``/proc``,
  finds none of the service's secrets; shared mode needs the owner's consent and then
  runs as the owner. Needs root (the fixtures say so).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pwd
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hubfixtures import CollabService, Hub, SpawningHub, browser_login
from test_remote_kernels import Server, _start_server
from test_widgets import has_model, model, output_text

from hub_collab.client import CollabAPIError, CollabClient, CommandError, NotebookConnection
from hub_collab.documents.notebook import init_out, out_doc

pytestmark = pytest.mark.asyncio(loop_scope="module")


def notebook(*sources: str) -> dict[str, Any]:
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [
            {"id": f"c{i}", "cell_type": "code", "source": src, "metadata": {}, "outputs": [], "execution_count": None}
            for i, src in enumerate(sources)
        ],
    }


def text_of(outputs: list[dict[str, Any]]) -> str:
    return "".join(str(o.get("text", "")) for o in outputs if o.get("output_type") == "stream")


async def connect(client: CollabClient, nb_id: str) -> NotebookConnection:
    conn = client.open(nb_id)
    await conn.connect()
    await conn.synced()
    return conn


async def run(conn: NotebookConnection, cid: str, timeout: float = 120) -> tuple[dict[str, Any], str]:
    await conn.execute(cid)
    state = await conn.wait_executed(cid, timeout=timeout)
    return state, text_of(conn.outputs(cid))


def reconfigure(collab: CollabService, *args: str) -> list[str]:
    """Restart ``collab`` with ``args`` added; return its previous extra args."""
    old = list(collab.extra_args)
    collab.extra_args = [*old, *args]
    collab.restart()
    return old


# -- local: the admin's explicit choice, said on every page -------------------------------------

NOT_ISOLATED = "Kernels are not isolated here"


def pages_of(public_url: str, user: str) -> list[str]:
    """The home page and a notebook page as a logged-in browser sees them."""
    session = browser_login(public_url, user)
    home = session.get(public_url, timeout=60)
    notebook_page = session.get(public_url + "notebooks/abcdef", timeout=60)
    return [home.text, notebook_page.text]


async def test_local_kernels_say_on_every_page_that_they_are_not_isolated(hub: Hub, collab: CollabService) -> None:
    # the tests' service runs local kernels (hubfixtures passes --HubCollab.kernel_provider=local)
    for page in await asyncio.to_thread(pages_of, collab.public_url, "alice"):
        assert NOT_ISOLATED in page and '"kernels_isolated": false' in page
    async with CollabClient(collab.public_url, hub.token("alice")) as alice:
        nb = await alice.create_notebook("where", notebook("1"))
        status = await alice.request("GET", f"api/notebooks/{nb['id']}/kernel")
        assert status["where"] == "on the service (not isolated)"


# -- gateway ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(collab: CollabService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = _start_server("kernel_gateway", tmp_path_factory.mktemp("gateway"))
    old = list(collab.extra_args)
    try:
        reconfigure(
            collab,
            "--HubCollab.kernel_provider=gateway",
            f"--HubCollab.kernel_gateway_url={server.base_url}",
            f"--HubCollab.kernel_gateway_token={server.token}",
        )
        yield server
    finally:
        server.process.stop()
        collab.extra_args = old
        collab.restart()


async def test_gateway_kernels_run_there_as_the_hub_user(hub: Hub, collab: CollabService, gateway: Server) -> None:
    async with (
        CollabClient(collab.public_url, hub.token("instructor"), request_timeout=120) as owner,
        CollabClient(collab.public_url, hub.token("alice"), request_timeout=120) as alice,
    ):
        nb = await owner.create_notebook(
            "on the gateway",
            notebook("import os\nprint(os.environ.get('KERNEL_USERNAME'), os.getppid())"),
            group="students",
            mode="0775",
            default_cell_mode="0775",
        )
        nb_id = str(nb["id"])
        settings = await owner.request("GET", f"api/notebooks/{nb_id}/settings")
        assert settings["provider"] == "gateway"
        conn = await connect(alice, nb_id)
        try:
            state, text = await run(conn, "c0")
            user, parent = text.split()
            # shared mode: the kernel belongs to the notebook's owner, on the gateway
            assert state["status"] == "ok" and user == "instructor", text
            assert int(parent) in {p.pid for p in [*_children(gateway.process.pid)]} | {gateway.process.pid}
        finally:
            await conn.close()


def _children(pid: int) -> list[Any]:
    import psutil

    return list(psutil.Process(pid).children(recursive=True))


async def test_a_gateway_run_goes_on_through_a_kill_of_the_service(
    hub: Hub, collab: CollabService, gateway: Server
) -> None:
    async with CollabClient(collab.public_url, hub.token("instructor"), request_timeout=120) as owner:
        nb = await owner.create_notebook(
            "through a crash",
            notebook("import time\nfor i in range(30):\n    print('tick', i, flush=True)\n    time.sleep(0.2)"),
        )
        nb_id = str(nb["id"])
        conn = await connect(owner, nb_id)
        try:
            await conn.execute("c0")
            await conn.wait_for(lambda: "tick 3\n" in text_of(conn.outputs("c0")), timeout=60)
        finally:
            await conn.close()
        assert collab.process is not None and collab.process.proc is not None
        os.kill(collab.process.pid, signal.SIGKILL)
        collab.process.proc.wait(60)
        collab.process = None
        collab.start()
        conn = await connect(owner, nb_id)
        try:
            state = await conn.wait_executed("c0", timeout=90)
            ticks = [int(line.split()[1]) for line in text_of(conn.outputs("c0")).splitlines()]
            assert state["status"] == "ok", state
            # the gateway kept what the kernel said while no service listened: nothing is missing
            assert ticks == list(range(30)), ticks
        finally:
            await conn.close()


# -- hub: the users' own servers -------------------------------------------------------------


PROBE = r"""
import base64, contextlib, json, os, pwd, stat
found = {"user": pwd.getpwuid(os.getuid()).pw_name, "read": [], "secrets": []}
# base64 in the source: the cell's own text (kept in the kernel's history) holds no needle
needles = [base64.b64decode(n) for n in NEEDLES]
def look(data, where):
    for n in needles:
        if n and n in data:
            found["secrets"].append(where)
for path in PATHS:
    with contextlib.suppress(OSError):  # refused: what isolation means
        with open(path, "rb") as f:
            f.read(1)
        found["read"].append(path)
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    for part in ("environ", "cmdline"):
        with contextlib.suppress(OSError):  # another user's process: refused
            with open(f"/proc/{pid}/{part}", "rb") as f:
                look(f.read(), f"/proc/{pid}/{part}")
for root in ROOTS:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            p = os.path.join(dirpath, name)
            with contextlib.suppress(OSError):  # unreadable, or gone meanwhile
                # regular files only: opening a FIFO someone left in /tmp waits for a writer
                st = os.lstat(p)
                if stat.S_ISREG(st.st_mode) and st.st_size < 5_000_000:
                    fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
                    with open(fd, "rb") as f:
                        look(f.read(), p)
print(json.dumps(found))
"""


def encoded(needles: list[str]) -> list[str]:
    return [base64.b64encode(n.encode()).decode() for n in needles]


def probe_source(collab: CollabService, hub: SpawningHub, needles: list[str]) -> str:
    paths = [
        str(collab.data_dir / "hub-collab.sqlite"),
        str(collab.data_dir / "cookie_secret"),
        str(collab.data_dir),
        str(hub.root),
    ]
    roots = ["/tmp", "/home", "/root", "/var/tmp", str(collab.data_dir), str(hub.root)]
    return f"NEEDLES = {encoded(needles)!r}\nPATHS = {paths!r}\nROOTS = {roots!r}\n" + PROBE


async def test_each_users_kernel_runs_on_their_own_server_and_finds_no_secret(
    spawning_hub: SpawningHub, on_servers: CollabService
) -> None:
    collab = on_servers
    secret_cell = "hidden-" + os.urandom(6).hex()
    cookie_secret = (collab.data_dir / "cookie_secret").read_text().strip()
    service_token = collab.env().get("JUPYTERHUB_API_TOKEN", "")
    assert service_token and cookie_secret
    needles = [secret_cell, cookie_secret, service_token]
    async with (
        CollabClient(collab.public_url, spawning_hub.token("alice"), request_timeout=180) as alice,
        CollabClient(collab.public_url, spawning_hub.token("bob"), request_timeout=180) as bob,
    ):
        nb = await alice.create_notebook(
            "exam",
            notebook(probe_source(collab, spawning_hub, needles), f"answer = {secret_cell!r}"),
            mode="0777",
            default_cell_mode="0777",
        )
        nb_id = str(nb["id"])
        await alice.request("PUT", f"api/notebooks/{nb_id}/settings", {"kernel_mode": "per-user"})
        # alice's private cell: hidden from bob
        await alice.set_permissions(nb_id, "c1", mode="0700")
        results = {}
        for name, client in (("alice", alice), ("bob", bob)):
            conn = await connect(client, nb_id)
            try:
                state, text = await run(conn, "c0", timeout=240)
                assert state["status"] == "ok", (name, state, text)
                results[name] = json.loads(text)
            finally:
                await conn.close()
    for name, found in results.items():
        # on their own server, as their own Unix account
        assert found["user"] == name, found
        assert pwd.getpwnam(name).pw_uid != 0
        # none of the service's files, no hidden cell, no Hub token, no cookie secret
        assert found["read"] == [], (name, found["read"])
        assert found["secrets"] == [], (name, found["secrets"])


async def test_pages_on_isolated_kernels_carry_no_warning(on_servers: CollabService) -> None:
    for page in await asyncio.to_thread(pages_of, on_servers.public_url, "alice"):
        assert NOT_ISOLATED not in page and '"kernels_isolated": true' in page


async def test_shared_kernels_need_the_owners_consent_and_run_as_the_owner(
    spawning_hub: SpawningHub, on_servers: CollabService
) -> None:
    collab = on_servers
    async with (
        CollabClient(collab.public_url, spawning_hub.token("alice"), request_timeout=180) as alice,
        CollabClient(collab.public_url, spawning_hub.token("bob"), request_timeout=180) as bob,
    ):
        nb = await alice.create_notebook(
            "shared", notebook("import os, pwd\nprint(pwd.getpwuid(os.getuid()).pw_name)"), mode="0777", default_cell_mode="0777"
        )
        nb_id = str(nb["id"])
        conn = await connect(bob, nb_id)
        try:
            await conn.wait_for(lambda: "where" in conn.kernel_state, timeout=30)
            assert conn.kernel_state["where"] == "nowhere yet: alice must choose a server for it"
            with pytest.raises(CommandError) as refused:
                await conn.execute("c0")
            assert refused.value.code == "kernel_consent_required"
            assert "alice" in str(refused.value) and "consent" in str(refused.value)
        finally:
            await conn.close()
        # consent is the owner's alone, and must be explicit
        for client, body, code in (
            (bob, {"shared_server": "", "consent": True}, "forbidden"),
            (alice, {"shared_server": ""}, "consent_required"),
            (alice, {"shared_server": "../x", "consent": True}, "invalid_setting"),
            (alice, {"shared_server": "x" * 300, "consent": True}, "invalid_setting"),
            (alice, {"shared_server": ["a"], "consent": True}, "invalid_setting"),
            (alice, {"shared_server": "", "consent": "yes"}, "consent_required"),
            (alice, {"consent": True, "kernel_owner": "bob"}, "invalid_field"),
        ):
            with pytest.raises(CollabAPIError) as err:
                await client.request("PUT", f"api/notebooks/{nb_id}/settings", body)
            assert err.value.code == code, (body, err.value)
        settings = await alice.request(
            "PUT", f"api/notebooks/{nb_id}/settings", {"shared_server": "", "consent": True}
        )
        assert settings["shared_server"] == "" and settings["provider"] == "hub"
        conn = await connect(bob, nb_id)
        try:
            state, text = await run(conn, "c0", timeout=240)
            # bob ran it, in alice's kernel, as alice: what the consent said
            assert state["status"] == "ok" and text == "alice\n", (state, text)
            assert conn.kernel_state["where"] == "on alice's server"
        finally:
            await conn.close()


async def test_probe_finds_a_planted_secret(tmp_path: Path) -> None:
    """Positive control: the probe sees a secret it may read, and reports it."""
    planted = tmp_path / "planted.txt"
    planted.write_text("needle-123")
    source = (
        f"NEEDLES = {encoded(['needle-123'])!r}\nPATHS = [{str(planted)!r}]\nROOTS = [{str(tmp_path)!r}]\n" + PROBE
    )
    import subprocess
    import sys

    out = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", source], capture_output=True, text=True, timeout=120, check=True
    )
    found = json.loads(out.stdout)
    assert found["read"] == [str(planted)]
    assert str(planted) in found["secrets"]


async def test_a_server_stopped_mid_run_ends_the_run_and_the_next_run_starts_it(
    spawning_hub: SpawningHub, on_servers: CollabService
) -> None:
    collab = on_servers
    async with CollabClient(collab.public_url, spawning_hub.token("bob"), request_timeout=180) as bob:
        nb = await bob.create_notebook(
            "long", notebook("import time\nfor i in range(600):\n    print(i, flush=True)\n    time.sleep(0.1)", "print('again')")
        )
        nb_id = str(nb["id"])
        await bob.request("PUT", f"api/notebooks/{nb_id}/settings", {"kernel_mode": "per-user"})
        conn = await connect(bob, nb_id)
        try:
            await conn.execute("c0")
            await conn.wait_for(lambda: "3\n" in text_of(conn.outputs("c0")), timeout=240)
            # bob's server goes away (stopped by the Hub, culled, crashed)
            await asyncio.to_thread(spawning_hub.api, "DELETE", "users/bob/server", expect=(202, 204))
            state = await conn.wait_executed("c0", timeout=120)
            assert state["status"] == "kernel_died", state
            outputs, _ = init_out(conn.docs[out_doc("c0")])
            notices = [str(o["text"]) for o in outputs.to_py() or [] if o.get("output_type") == "notice"]
            assert notices and "Run it again" in notices[-1], notices
            # the next run starts bob's server again, and a fresh kernel on it
            state, text = await run(conn, "c1", timeout=240)
            assert state["status"] == "ok" and text == "again\n", (state, text)
        finally:
            await conn.close()


async def test_a_new_owner_must_consent_again_also_after_a_restart(
    spawning_hub: SpawningHub, on_servers: CollabService
) -> None:
    collab = on_servers
    async with CollabClient(collab.public_url, spawning_hub.token("alice"), request_timeout=180) as alice:
        nb = await alice.create_notebook("handed over", notebook("x = 1\nprint(x)"), mode="0777", default_cell_mode="0777")
        nb_id = str(nb["id"])
        await alice.request("PUT", f"api/notebooks/{nb_id}/settings", {"shared_server": "", "consent": True})
        conn = await connect(alice, nb_id)
        try:
            state, text = await run(conn, "c0", timeout=240)
            assert state["status"] == "ok" and text == "1\n"
        finally:
            await conn.close()
        await alice.set_permissions(nb_id, owner="bob")  # alice's consent does not pass to bob
    await asyncio.to_thread(collab.restart)  # the kernel on alice's server is recorded
    async with CollabClient(collab.public_url, spawning_hub.token("bob"), request_timeout=180) as bob:
        conn = await connect(bob, nb_id)  # the notebook opens: the stale kernel is not used
        try:
            await conn.wait_for(lambda: "where" in conn.kernel_state, timeout=30)
            assert conn.kernel_state["where"] == "nowhere yet: bob must choose a server for it"
            with pytest.raises(CommandError) as refused:
                await conn.execute("c0")
            assert refused.value.code == "kernel_consent_required" and "bob" in str(refused.value)
        finally:
            await conn.close()


# -- widgets on remote kernels: the comms go through the provider's connection ---------------

#: an ``interact`` slider whose function prints who runs the kernel and who moved it
#: (the comm_msg's header names the user who sent the change)
WHO_INTERACT = """\
import os, pwd
import ipywidgets as w
from ipywidgets import interact
who = pwd.getpwuid(os.getuid()).pw_name

@interact(x=w.IntSlider(value=3, min=0, max=100, description='x'))
def square(x):
    print(who, get_ipython().kernel.get_parent()['header']['username'], 'square', x * x)
"""


def slider_moved_to(conn: NotebookConnection, cid: str, value: int) -> bool:
    return has_model(conn, cid, "IntSliderModel") and model(conn, cid, "IntSliderModel")[1]["value"] == value


def interact_printed(conn: NotebookConnection, cid: str, text: str) -> bool:
    return has_model(conn, cid, "OutputModel") and output_text(model(conn, cid, "OutputModel")[1]) == text


async def test_widgets_on_a_gateway_kernel_are_shared_and_outlive_a_kill_of_the_service(
    hub: Hub, collab: CollabService, gateway: Server
) -> None:
    async with (
        CollabClient(collab.public_url, hub.token("instructor"), request_timeout=120) as owner,
        CollabClient(collab.public_url, hub.token("alice"), request_timeout=120) as alice_client,
        CollabClient(collab.public_url, hub.token("bob"), request_timeout=120) as bob_client,
    ):
        nb = await owner.create_notebook(
            "widgets on the gateway", notebook(WHO_INTERACT), group="students", mode="0775", default_cell_mode="0775"
        )
        nb_id = str(nb["id"])
        me = pwd.getpwuid(os.getuid()).pw_name  # the gateway's kernels run as the gateway's account
        try:
            alice, bob = await connect(alice_client, nb_id), await connect(bob_client, nb_id)
            try:
                state, _ = await run(alice, "c0")
                assert state["status"] == "ok", alice.outputs("c0")
                # the kernel's comm_open came through the gateway: the models are in the out doc
                await bob.wait_for(lambda: has_model(bob, "c0", "IntSliderModel") and has_model(bob, "c0", "OutputModel"), timeout=60)
                slider_id, slider = model(bob, "c0", "IntSliderModel")
                assert slider["value"] == 3 and slider["max"] == 100
                # the first call, in alice's run (the shared kernel's session is its owner's)
                await bob.wait_for(lambda: interact_printed(bob, "c0", f"{me} instructor square 9\n"), timeout=60)
                # bob moves it: the comm_msg reaches the kernel on the gateway, as bob's
                await bob.widget_update("c0", slider_id, {"value": 12})
                await alice.wait_for(lambda: interact_printed(alice, "c0", f"{me} bob square 144\n"), timeout=60)
                assert slider_moved_to(alice, "c0", 12)
            finally:
                await alice.close()
                await bob.close()
            # the service dies; the kernel lives on the gateway with its comms
            assert collab.process is not None and collab.process.proc is not None
            os.kill(collab.process.pid, signal.SIGKILL)
            collab.process.proc.wait(60)
            collab.process = None
            await asyncio.to_thread(collab.start)
            bob = await connect(bob_client, nb_id)
            try:
                # adopted from the docs (and kept: the kernel still has the comm)
                assert model(bob, "c0", "IntSliderModel")[0] == slider_id
                assert slider_moved_to(bob, "c0", 12) and interact_printed(bob, "c0", f"{me} bob square 144\n")
                await bob.widget_update("c0", slider_id, {"value": 6})
                await bob.wait_for(lambda: interact_printed(bob, "c0", f"{me} bob square 36\n"), timeout=90)
            finally:
                await bob.close()
        finally:
            await owner.request("DELETE", f"api/notebooks/{nb_id}/kernel")


async def test_widgets_on_a_users_own_server_are_shared(spawning_hub: SpawningHub, on_servers: CollabService) -> None:
    collab = on_servers
    async with (
        CollabClient(collab.public_url, spawning_hub.token("alice"), request_timeout=180) as alice_client,
        CollabClient(collab.public_url, spawning_hub.token("bob"), request_timeout=180) as bob_client,
    ):
        nb = await alice_client.create_notebook("widgets on alice's server", notebook(WHO_INTERACT), mode="0777", default_cell_mode="0777")
        nb_id = str(nb["id"])
        await alice_client.request("PUT", f"api/notebooks/{nb_id}/settings", {"shared_server": "", "consent": True})
        alice, bob = await connect(alice_client, nb_id), await connect(bob_client, nb_id)
        try:
            state, _ = await run(alice, "c0", timeout=240)
            assert state["status"] == "ok", alice.outputs("c0")
            assert alice.kernel_state["where"] == "on alice's server"
            await bob.wait_for(lambda: has_model(bob, "c0", "IntSliderModel") and has_model(bob, "c0", "OutputModel"), timeout=60)
            slider_id, slider = model(bob, "c0", "IntSliderModel")
            assert slider["value"] == 3 and slider["max"] == 100
            await bob.wait_for(lambda: interact_printed(bob, "c0", "alice alice square 9\n"), timeout=60)
            # bob moves it: the kernel, as alice on her server, runs the function for bob
            await bob.widget_update("c0", slider_id, {"value": 12})
            await alice.wait_for(lambda: interact_printed(alice, "c0", "alice bob square 144\n"), timeout=60)
            assert slider_moved_to(alice, "c0", 12)
            # the kernel's own answer (a value clamped to max) comes back the same way
            await alice.widget_update("c0", slider_id, {"value": 1000})
            await bob.wait_for(lambda: slider_moved_to(bob, "c0", 100), timeout=60)
            await bob.wait_for(lambda: interact_printed(bob, "c0", "alice alice square 10000\n"), timeout=60)
        finally:
            await alice.close()
            await bob.close()
            await alice_client.request("DELETE", f"api/notebooks/{nb_id}/kernel")
