"""A kernel found again after a service restart (``Kernel.attach``), in process with a real
ipykernel: an execution sent right after the attach ends, although IOPub delivers nothing
at first (a subscription made just then has not taken effect yet: ZeroMQ's "slow joiner"),
and its output is kept. Without the wait for IOPub the output was lost here (and in CI,
where the idle status went too, the execution never ended).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
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
