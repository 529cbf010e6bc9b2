"""Kernel faults: each ends in a clear state and message, the service stays healthy,
and another notebook's kernel is unaffected (its variable survives every fault).

The module restarts the ``collab`` service once with ``JUPYTER_PATH`` pointing at a
directory holding a broken kernelspec (the service inherits it from its env).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from hub_collab.client import CollabAPIError, CollabClient, CommandError, NotebookConnection
from hub_collab.documents.notebook import init_out, out_doc

pytestmark = pytest.mark.asyncio(loop_scope="module")


def notebook(*sources: str, kernel: str = "python3") -> dict[str, Any]:
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": kernel, "display_name": kernel, "language": "python"}},
        "cells": [
            {
                "id": f"c{i}",
                "cell_type": "code",
                "source": src,
                "metadata": {},
                "outputs": [],
                "execution_count": None,
            }
            for i, src in enumerate(sources)
        ],
    }


def text_of(outputs: list[dict[str, Any]]) -> str:
    return "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream")


def notices(conn: NotebookConnection, cid: str) -> list[str]:
    outputs, _ = init_out(conn.docs[out_doc(cid)])
    return [str(o["text"]) for o in outputs.to_py() or [] if o.get("output_type") == "notice"]


@pytest.fixture(scope="module")
def kernelspecs(collab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("jupyter_path")
    spec = root / "kernels" / "broken"
    spec.mkdir(parents=True)
    spec.joinpath("kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-c", "import sys; sys.exit(3)", "{connection_file}"],
                "display_name": "Broken",
                "language": "python",
            }
        )
    )
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(root)
    collab.restart()
    yield root
    if old is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = old


class Env:
    def __init__(self, hub: Any, collab: Any) -> None:
        self.hub, self.collab = hub, collab
        self.clients: dict[str, CollabClient] = {}
        self.other = ""

    def client(self, user: str) -> CollabClient:
        if user not in self.clients:
            self.clients[user] = CollabClient(
                self.collab.public_url, self.hub.token(user), request_timeout=120
            )
        return self.clients[user]

    async def notebook(self, *sources: str, kernel: str = "python3") -> str:
        nb = await self.client("instructor").create_notebook(
            "faults",
            notebook(*sources, kernel=kernel),
            group="students",
            mode="0775",
            default_cell_mode="0775",
        )
        return str(nb["id"])

    async def connect(self, user: str, nb_id: str) -> NotebookConnection:
        conn = self.client(user).open(nb_id)
        await conn.connect()
        await conn.synced()
        return conn

    async def run(self, user: str, nb_id: str, cid: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.client(user).request(
            "POST", f"api/notebooks/{nb_id}/cells/{cid}/execute?wait=1"
        )
        return result

    async def other_is_fine(self) -> None:
        """The bystander notebook's kernel kept its state: it was never restarted."""
        result = await self.run("carol", self.other, "c1")
        assert result["status"] == "ok" and text_of(result["outputs"]) == "still here\n", result


@pytest.fixture(scope="module")
async def env(hub: Any, collab: Any, kernelspecs: Path) -> AsyncIterator[Env]:
    e = Env(hub, collab)
    e.other = await e.notebook("marker = 'still here'", "print(marker)")
    assert (await e.run("carol", e.other, "c0"))["status"] == "ok"
    yield e
    for c in e.clients.values():
        c.close()


async def test_kernel_killed_mid_run(env: Env) -> None:
    nb_id = await env.notebook("import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)")
    alice = await env.connect("alice", nb_id)
    try:
        await alice.execute("c0")
        await alice.wait_for(lambda: text_of(alice.outputs("c0")).strip().isdigit(), timeout=60)
        pid = int(text_of(alice.outputs("c0")))
        os.kill(pid, signal.SIGKILL)
        state = await alice.wait_executed("c0", timeout=30)
        assert state["status"] == "kernel_died"
        assert any("kernel died" in n for n in notices(alice, "c0"))
        await alice.wait_for(lambda: alice.kernel_state.get("state") == "dead")
        assert "died" in alice.kernel_state["message"]
        # the next execution starts a fresh kernel
        await alice.execute("c0")
        await alice.wait_for(
            lambda: (
                alice.out_state("c0")["execution_state"] == "running"
                and text_of(alice.outputs("c0")).strip().isdigit()
            ),
            timeout=60,
        )
        assert int(text_of(alice.outputs("c0"))) != pid
        await alice.interrupt()
        assert (await alice.wait_executed("c0"))["status"] == "interrupted"
    finally:
        await alice.close()
    await env.other_is_fine()


async def test_broken_kernelspec(env: Env) -> None:
    nb_id = await env.notebook("print('never')", kernel="broken")
    bob = await env.connect("bob", nb_id)
    try:
        with pytest.raises(CommandError) as err:
            await bob.execute("c0")
        assert err.value.code == "kernel_start_failed"
        assert "broken" in err.value.message
        state = await bob.wait_executed("c0")
        assert state["status"] == "kernel_start_failed"
        assert any("could not start" in n for n in notices(bob, "c0"))
        await bob.wait_for(lambda: bob.kernel_state.get("state") == "dead")
        assert "could not start" in bob.kernel_state["message"]
    finally:
        await bob.close()
    with pytest.raises(CollabAPIError) as api_err:
        await env.client("bob").request("POST", f"api/notebooks/{nb_id}/cells/c0/execute")
    assert (api_err.value.status, api_err.value.code) == (503, "kernel_start_failed")
    # the owner switches the notebook to a working kernel
    await env.client("instructor").request(
        "PUT", f"api/notebooks/{nb_id}/settings", {"kernel_name": "python3"}
    )
    assert (await env.run("bob", nb_id, "c0"))["status"] == "ok"
    await env.other_is_fine()


async def test_fifty_megabytes_of_output_are_capped(env: Env) -> None:
    nb_id = await env.notebook("for _ in range(50):\n    print('x' * 999_999)\nprint('done')")
    alice = await env.connect("alice", nb_id)
    try:
        await alice.execute("c0")
        state = await alice.wait_executed("c0", timeout=100)
        assert state["status"] == "ok" and state["truncated"] is True
        text = text_of(alice.outputs("c0"))
        assert 9_000_000 < len(text) <= 10_000_000
        assert any("Output truncated" in n for n in notices(alice, "c0"))
    finally:
        await alice.close()
    await env.other_is_fine()


@contextlib.contextmanager
def cpu_burners(n: int) -> Iterator[None]:
    """``n`` processes that keep a CPU busy each, for as long as the block runs."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


@pytest.mark.parametrize("load", [0, 2], ids=["idle", "both-cpus-busy"])
async def test_a_flood_of_tiny_messages_is_batched(env: Env, load: int) -> None:
    # ipykernel's own flush() waits for its IO thread (about 1 ms a message): send the
    # 100,000 stream messages straight through the kernel's session instead (about
    # 0.2 ms a message), pausing now and then as a chatty program would. Under load this
    # dropped lines at the kernel's PUB socket before our side kept a deep receive queue.
    source = (
        "import sys, time\nout = sys.stdout\nfor i in range(100_000):\n"
        "    out.session.send(out.pub_thread, 'stream', content={'name': 'stdout', 'text': f'{i}\\n'},"
        " parent=out.parent_header, ident=out.topic)\n"
        "    if i % 200 == 199:\n        time.sleep(0.004)"
    )
    nb_id = await env.notebook(source)
    alice = await env.connect("alice", nb_id)
    try:
        with cpu_burners(load):
            await flood(env, alice, load)
    finally:
        await alice.close()
    await env.other_is_fine()


async def flood(env: Env, alice: NotebookConnection, load: int) -> None:
    """Run the flood cell (c0) and check every line arrived, in order, batched."""
    frames_before = alice.frames_received
    await alice.execute("c0")
    await alice.wait_for(
        lambda: alice.out_state("c0")["execution_state"] == "running", timeout=60
    )
    # the service stays responsive while the flood comes in
    worst = 0.0
    while alice.out_state("c0")["execution_state"] == "running":
        t0 = time.monotonic()
        await env.client("bob").me()
        worst = max(worst, time.monotonic() - t0)
        await asyncio.sleep(0.2)
    state = await alice.wait_executed("c0", timeout=100)
    assert state["status"] == "ok"
    # nothing lost (our side queues what the kernel's PUB socket would drop), in order
    numbers = [int(n) for n in text_of(alice.outputs("c0")).split()]
    assert numbers == list(range(100_000)), (len(numbers), numbers[:3], numbers[-3:])
    if not load:  # under load the machine, not the service, sets the pace
        assert worst < 2.0, f"the service answered api/me in {worst:.2f} s during the flood"
    assert alice.frames_received - frames_before < 5_000  # batched, not one frame per message


async def test_unanswered_input_is_ended_by_interrupt(env: Env) -> None:
    nb_id = await env.notebook("answer = input('password: ')")
    alice, bob = await env.connect("alice", nb_id), await env.connect("bob", nb_id)
    try:
        await alice.execute("c0")
        await alice.wait_for(lambda: "c0" in alice.input_requests, timeout=60)
        start = len(bob.messages)
        await bob.interrupt()  # nobody answers; someone with notebook x interrupts
        state = await alice.wait_executed("c0")
        assert state["status"] == "interrupted"
        assert alice.outputs("c0")[-1]["ename"] == "KeyboardInterrupt"
        await bob.next_message("input_done", start=start)
        await alice.wait_for(lambda: "c0" not in alice.input_requests)
    finally:
        await alice.close()
        await bob.close()
    await env.other_is_fine()


async def test_interrupt_during_a_queue(env: Env) -> None:
    nb_id = await env.notebook(
        "import time\nprint('start', flush=True)\ntime.sleep(60)", "print('one')", "print('two')"
    )
    alice, bob = await env.connect("alice", nb_id), await env.connect("bob", nb_id)
    try:
        await alice.execute("c0")
        await alice.wait_for(lambda: text_of(alice.outputs("c0")) == "start\n", timeout=60)
        assert (await bob.execute("c1"))["queue_position"] == 1
        assert (await alice.execute("c2"))["queue_position"] == 2
        await bob.wait_for(lambda: bob.kernel_state.get("queue") == ["c1", "c2"])
        assert bob.out_state("c1")["execution_state"] == "queued"
        ack = await bob.interrupt()
        assert ack["interrupted"] == "c0" and ack["aborted"] == ["c1", "c2"]
        assert (await alice.wait_executed("c0"))["status"] == "interrupted"
        for cid in ("c1", "c2"):
            assert (await alice.wait_executed(cid))["status"] == "aborted"
            assert any("interrupted by bob" in n for n in notices(alice, cid))
            assert alice.outputs(cid) == []
        await alice.wait_for(
            lambda: (
                alice.kernel_state.get("state") == "idle" and alice.kernel_state.get("queue") == []
            )
        )
        await alice.execute("c1")  # the kernel survived
        assert (await alice.wait_executed("c1"))["status"] == "ok"
    finally:
        await alice.close()
        await bob.close()
    await env.other_is_fine()


async def test_service_restart_marks_running_cells_interrupted(env: Env) -> None:
    nb_id = await env.notebook(
        "import time\nprint('working', flush=True)\ntime.sleep(60)", "print('after')"
    )
    for how in ("killed", "graceful"):
        alice = await env.connect("alice", nb_id)
        try:
            await alice.execute("c0")
            conn = alice

            def working(conn: NotebookConnection = conn) -> bool:
                # this run's output: the previous round's "working" is still shown until
                # the new run begins (and clears it), so wait for the run to be running too
                running = conn.out_state("c0").get("execution_state") == "running"
                return running and text_of(conn.outputs("c0")) == "working\n"

            await alice.wait_for(working, timeout=60)
        finally:
            await alice.close()
        if how == "graceful":
            env.collab.restart()
        else:
            assert env.collab.process is not None
            env.collab.process.stop(sig=signal.SIGKILL)
            env.collab.process = None
            env.collab.start()
        alice = await env.connect("alice", nb_id)
        try:
            # the kernel is not found again (gone with the service): the run is lost
            await alice.wait_for(functools.partial(lambda c: c.out_state("c0").get("execution_state") == "idle", alice), timeout=60)
            await alice.wait_for(functools.partial(lambda c: c.kernel_state.get("state") == "shutdown", alice), timeout=60)
            state = alice.out_state("c0")
            assert state["status"] == "interrupted" and state["execution_state"] == "idle", (
                how,
                state,
            )
            assert text_of(alice.outputs("c0")) == "working\n", (
                how,
                alice.outputs("c0"),
                notices(alice, "c0"),
            )  # nothing is lost
            assert notices(alice, "c0"), how
            assert alice.kernel_state["state"] == "shutdown"
            await alice.execute("c1")
            assert (await alice.wait_executed("c1"))["status"] == "ok"
        finally:
            await alice.close()


def stop_only_the_service(collab: Any, sig: int) -> None:
    """Stop the service's own process (not the kernels it started) and forget it."""
    proc = collab.process
    assert proc is not None and proc.proc is not None
    os.kill(proc.pid, sig)
    proc.proc.wait(60)
    collab.process = None


@pytest.fixture(scope="module")
def surviving(env: Env) -> Iterator[Env]:
    """The service with ``kernels_survive_stop``, for this module's last tests only."""
    flag = "--HubCollab.kernels_survive_stop=True"
    env.collab.extra_args.append(flag)
    env.collab.restart()
    try:
        yield env
    finally:
        env.collab.extra_args.remove(flag)
        env.collab.restart()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("how", ["graceful", "killed"])
async def test_a_run_goes_on_across_a_service_restart(surviving: Env, how: str, tmp_path: Path) -> None:
    """The kernel outlives the service: a stop (with ``kernels_survive_stop``) or a
    kill -9 leaves it running; the next start finds it again, the run in progress
    goes on, its later output lands in the cell, and the kernel keeps its state.

    The run ticks until the test lets it end (a file appears), so it is still running
    when the service is back, however long the restart takes on a busy machine."""
    env = surviving
    gate = tmp_path / "end-the-run"
    nb_id = await env.notebook(
        "import os, time\nx = 41\ni = 0\n"
        f"while not os.path.exists({str(gate)!r}) and i < 4000:\n"
        "    print('tick', i, flush=True)\n    i += 1\n    time.sleep(0.25)\n"
        "x += 1\nprint('tick', i, flush=True)",
        "print(x)",
    )
    alice = await env.connect("alice", nb_id)
    try:
        await alice.execute("c0")
        await alice.wait_for(lambda: "tick 3\n" in text_of(alice.outputs("c0")), timeout=60)
    finally:
        await alice.close()
    stop_only_the_service(env.collab, signal.SIGTERM if how == "graceful" else signal.SIGKILL)
    env.collab.start()
    alice = await env.connect("alice", nb_id)
    try:
        # the same run goes on: later ticks arrive in the same cell
        seen = len(text_of(alice.outputs("c0")).splitlines())
        await alice.wait_for(lambda: len(text_of(alice.outputs("c0")).splitlines()) >= seen + 2, timeout=120)
        gate.touch()
        state = await alice.wait_executed("c0", timeout=120)
        assert state["status"] == "ok", (how, state, notices(alice, "c0"))
        ticks = [int(line.split()[1]) for line in text_of(alice.outputs("c0")).splitlines()]
        assert ticks == sorted(set(ticks)) and ticks[0] == 0 and ticks[-1] > 3, ticks
        # what it printed while no service listened may be missing (one gap, as long as
        # the restart took), never duplicated: before and after the gap, every tick
        gaps = [(a, b) for a, b in zip(ticks, ticks[1:], strict=False) if b != a + 1]
        assert len(gaps) <= 1, ticks
        # the kernel kept its state: x went from 41 to 42 in the run that went on
        await alice.execute("c1")
        result = await alice.wait_executed("c1", timeout=60)
        assert result["status"] == "ok" and text_of(alice.outputs("c1")) == "42\n", alice.outputs("c1")
    finally:
        await alice.close()
        # the kernel is no child of the restarted service: shut it down, leave nothing behind
        await env.client("instructor").request("DELETE", f"api/notebooks/{nb_id}/kernel")
