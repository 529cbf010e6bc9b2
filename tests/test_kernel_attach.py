"""A kernel found again after a service restart (``Kernel.attach``), in process with a real
ipykernel: an execution sent right after the attach ends, although IOPub delivers nothing
at first (a subscription made just then has not taken effect yet: ZeroMQ's "slow joiner"),
and its output is kept. Without the wait for IOPub the output was lost here (and in CI,
where the idle status went too, the execution never ended).

And a reply that arrives while something else takes the socket's readiness signal is
still read (the cause of executions that never ended, after an attach and elsewhere).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import zmq
from pycrdt import Doc

from hub_collab.kernels.kernel import Execution, Kernel, KernelConfig
from hub_collab.kernels.outputs import OutputWriter, outputs_to_nbformat
from hub_collab.kernels.provider import KernelRequest, LocalConnection, LocalProvider

pytestmark = pytest.mark.asyncio

#: how long the attached connection's IOPub delivers nothing
DEAF_SECONDS = 1.0


class Owner:
    """What a KernelService would hear; only the finished executions are kept."""

    def __init__(self) -> None:
        self.finished: list[Execution] = []

    def on_state(self, kernel: Kernel) -> None: ...
    def on_started(self, kernel: Kernel) -> None: ...
    def on_run(self, kernel: Kernel, ex: Execution) -> None: ...
    def on_stopped(self, kernel: Kernel) -> None: ...
    def on_input(self, kernel: Kernel, ex: Execution, prompt: str, password: bool) -> None: ...
    def on_input_done(self, kernel: Kernel, ex: Execution) -> None: ...

    def on_finished(self, kernel: Kernel, ex: Execution) -> None:
        self.finished.append(ex)


class LateSubscription(LocalProvider):
    """Attaches as the local provider does, but its IOPub drops what comes in the first
    DEAF_SECONDS, as a subscription that has not taken effect yet does."""

    async def attach(self, info: dict[str, Any], request: KernelRequest) -> LocalConnection:
        conn = await super().attach(info, request)
        listen = conn.listen

        def late_listen(sink: Any) -> None:
            until = time.monotonic() + DEAF_SECONDS

            class Deaf:
                def on_iopub(self, msg: dict[str, Any]) -> None:
                    if time.monotonic() >= until:
                        sink.on_iopub(msg)

                def __getattr__(self, name: str) -> Any:
                    return getattr(sink, name)

            listen(Deaf())

        conn.listen = late_listen  # type: ignore[method-assign]
        return conn


async def test_an_execution_right_after_an_attach_ends(tmp_path: Path) -> None:
    config = KernelConfig(env={}, cwd=str(tmp_path / "cwd"), runtime_dir=str(tmp_path / "runtime"), start_timeout=60)
    first = Kernel(Owner(), "nb", None, "python3", config, LocalProvider())
    await first.ensure_started()
    assert first.conn is not None
    info = first.conn.info()
    await first.detach("the service stops")  # the kernel goes on
    again = Kernel(Owner(), "nb", None, "python3", config, LateSubscription())
    try:
        again.attach(info, None)
        doc: Doc[Any] = Doc()
        ex = Execution(cell_id="c", user="alice", source="print('after the attach')", doc=doc, writer=OutputWriter(doc))
        again.submit(ex)
        assert await asyncio.wait_for(ex.done, 60) == "ok"
        assert [o.get("text") for o in outputs_to_nbformat(doc)] == ["after the attach\n"]
    finally:
        await again.shutdown("the test is over")


class Replies:
    """A KernelSink that keeps the shell replies."""

    def __init__(self) -> None:
        self.shell: list[dict[str, Any]] = []

    def on_iopub(self, msg: dict[str, Any]) -> None: ...
    def on_stdin(self, msg: dict[str, Any]) -> None: ...
    def on_lost(self, reason: str) -> None: ...

    def on_shell(self, msg: dict[str, Any]) -> None:
        self.shell.append(msg)


async def test_a_reply_that_arrived_unnoticed_is_read_after_the_next_send(tmp_path: Path) -> None:
    """ZeroMQ signals once that messages wait in a socket; whoever processes the socket's
    commands next takes the signal. jupyter_client's ``Session.send`` sends on a
    synchronous shadow of the socket and took it, unseen by the receive waiting on the
    socket: a reply that arrived then stayed unread for good, and since that socket's queue
    was never emptied, ZeroMQ never signalled again (seen: ~1 attach in 10 here, an
    execution whose execute_reply sat in the shell socket never ended).

    Here the test takes the signal itself (reading the socket's events while the event
    loop is held), then sends one more request through the connection: both replies must
    be read. With jupyter_client's send and ``get_shell_msg`` neither ever was."""
    request = KernelRequest(
        kernel_name="python3", user="", cwd=str(tmp_path / "cwd"), runtime_dir=str(tmp_path / "runtime"),
        start_timeout=60,
    )  # fmt: skip
    conn = await LocalProvider().start(request)
    sink = Replies()
    try:
        conn.listen(sink)
        await asyncio.sleep(0.2)  # the reading tasks wait in their receive now
        first = conn.kernel_info()
        shadow: zmq.Socket[bytes] = zmq.Socket.shadow(conn.kc.shell_channel.socket.underlying)
        # the event loop is held: nothing but this poll (which processes the socket's
        # commands, as a synchronous send does) reads the socket until the reply is in it
        assert shadow.poll(120_000, zmq.POLLIN), "no kernel_info_reply within 120 s"
        second = conn.kernel_info()
        for _ in range(600):
            if len(sink.shell) >= 2:
                break
            await asyncio.sleep(0.1)
        assert [m["parent_header"].get("msg_id") for m in sink.shell] == [first, second]
        assert all(m["msg_type"] == "kernel_info_reply" for m in sink.shell)
    finally:
        await conn.shutdown(now=True)
