"""Where a kernel runs: the :class:`KernelProvider` interface, and the ``local`` provider.

A :class:`~hub_collab.kernels.kernel.Kernel` (one notebook's kernel, or one
user's in per-user mode) owns the execution queue and routes every message into
the notebook's documents. It does not know where the kernel process is: it asks
a provider to :meth:`~KernelProvider.start` one (or to :meth:`~KernelProvider.attach`
to one that already runs, from what :meth:`KernelConnection.info` returned),
and talks to it through the :class:`KernelConnection` it gets back:

* :meth:`KernelConnection.execute` sends an ``execute_request`` and returns its
  ``msg_id``; :meth:`~KernelConnection.input_reply` answers ``input()``;
  :meth:`~KernelConnection.interrupt`, :meth:`~KernelConnection.shutdown`;
* every message from the kernel reaches the :class:`KernelSink` given to
  :meth:`~KernelConnection.listen`: IOPub, shell replies and stdin requests as
  plain dicts (``header``, ``parent_header``, ``msg_type``, ``content``), and
  :meth:`KernelSink.on_lost` once, when the kernel is gone (died, shut down
  elsewhere) or cannot be reached any more;
* :meth:`~KernelConnection.detach` closes the connection and leaves the kernel
  running (the service stops; a later :meth:`~KernelProvider.attach` finds it).

:class:`LocalProvider` runs kernels as child processes of the service
(jupyter_client). It is for one user or development: code in such a kernel runs
as the service's OS user (docs/kernels.md, "Trust").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import zmq
import zmq.asyncio
from jupyter_client.manager import AsyncKernelManager

from ..tasks import cancel_and_wait
from .wire import BadMessage, decode

log = logging.getLogger("hub_collab.kernels")

#: IOPub messages our side queues before the kernel's PUB socket would start dropping.
#: ZMQ's I/O thread (no GIL) drains the kernel's socket into this queue while the event
#: loop is busy, so a flood is not lost under CPU load; the bound keeps a runaway kernel
#: from growing the service's memory without limit (about 100 MB of small messages).
IOPUB_QUEUE = 250_000


@dataclass(frozen=True)
class KernelRequest:
    """What to start: a kernelspec, for whom, with what environment.

    ``user`` is the Hub user the kernel belongs to (the runner in per-user mode,
    the notebook's owner in shared mode); remote providers start the kernel on
    that user's resource. ``cwd`` and ``runtime_dir`` are for the local provider.
    """

    kernel_name: str
    user: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = ""
    runtime_dir: str = ""
    start_timeout: float = 60.0
    shutdown_wait: float = 3.0


class KernelSink(Protocol):
    """Where a connection delivers what the kernel says (the :class:`Kernel`)."""

    def on_iopub(self, msg: dict[str, Any]) -> None:
        """An IOPub message."""

    def on_shell(self, msg: dict[str, Any]) -> None:
        """A shell reply (``execute_reply``...)."""

    def on_stdin(self, msg: dict[str, Any]) -> None:
        """A stdin request (``input_request``)."""

    def on_lost(self, reason: str) -> None:
        """The kernel is gone or unreachable; called once, then nothing more."""


class KernelConnection(Protocol):
    """A running kernel, wherever it runs."""

    #: the kernel's id where it runs (a process-local id for the local provider)
    kernel_id: str

    def info(self) -> dict[str, Any]:
        """JSON that :meth:`KernelProvider.attach` takes to find this kernel again."""

    def listen(self, sink: KernelSink) -> None:
        """Start delivering the kernel's messages to ``sink`` (call once)."""

    def execute(self, code: str) -> str:
        """Send an ``execute_request`` (stdin allowed, history stored); return its msg_id."""

    def input_reply(self, value: str) -> None:
        """Answer the pending ``input_request``."""

    async def interrupt(self) -> None:
        """Interrupt what the kernel runs."""

    async def shutdown(self, *, now: bool) -> None:
        """Stop the kernel (``now``: do not wait for it to answer) and close the connection."""

    async def detach(self) -> None:
        """Close the connection; the kernel keeps running."""


class KernelProvider(Protocol):
    """Starts kernels somewhere and finds them again."""

    name: str

    async def start(self, request: KernelRequest) -> KernelConnection:
        """Start a kernel; raise an exception with a message for the user if it cannot."""

    async def attach(self, info: dict[str, Any], request: KernelRequest) -> KernelConnection:
        """Connect to a kernel started before (``info`` from :meth:`KernelConnection.info`)."""


# -- local: child processes of the service ------------------------------------------------------


class LocalConnection:
    """A kernel process started by jupyter_client, and its ZMQ channels."""

    def __init__(self, km: AsyncKernelManager, kc: Any, request: KernelRequest) -> None:
        self.km = km
        self.kc = kc
        self.request = request
        self.kernel_id = uuid.uuid4().hex
        self._tasks: list[asyncio.Task[None]] = []
        self._sink: KernelSink | None = None
        self._lost = False

    def info(self) -> dict[str, Any]:
        return {"provider": "local", "connection_file": self.km.connection_file}

    def listen(self, sink: KernelSink) -> None:
        if self._sink is not None:
            raise RuntimeError("LocalConnection.listen() called twice")
        self._sink = sink
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._iopub_loop(sink)),
            loop.create_task(self._shell_loop(sink)),
            loop.create_task(self._stdin_loop(sink)),
            loop.create_task(self._monitor(sink)),
        ]

    def execute(self, code: str) -> str:
        msg_id: str = self.kc.execute(code, silent=False, store_history=True, allow_stdin=True, stop_on_error=False)
        return msg_id

    def input_reply(self, value: str) -> None:
        self.kc.input(value)

    async def interrupt(self) -> None:
        await self.km.interrupt_kernel()

    async def _iopub_loop(self, sink: KernelSink) -> None:
        socket, session = self.kc.iopub_channel.socket, self.kc.session
        n = 0
        while True:
            parts = await socket.recv_multipart()
            try:
                sink.on_iopub(decode(session, parts))
            except BadMessage as exc:
                log.warning("dropped an IOPub message from a kernel: %s", exc)
            except Exception:
                log.exception("bad IOPub message from a kernel")
            n += 1
            if n % 200 == 0:
                # a ready socket never suspends: let the rest of the service run under a flood
                await asyncio.sleep(0)

    async def _shell_loop(self, sink: KernelSink) -> None:
        while True:
            msg = await self.kc.get_shell_msg()
            try:
                sink.on_shell(msg)
            except Exception:
                log.exception("bad shell reply from a kernel")

    async def _stdin_loop(self, sink: KernelSink) -> None:
        while True:
            msg = await self.kc.get_stdin_msg()
            try:
                sink.on_stdin(msg)
            except Exception:
                log.exception("bad stdin message from a kernel")

    async def _monitor(self, sink: KernelSink) -> None:
        km = self.km
        while True:
            await asyncio.sleep(0.2)
            if not await km.is_alive():
                code = None
                if km.provisioner is not None:
                    with contextlib.suppress(Exception):
                        code = await km.provisioner.poll()
                self._lose(sink, f"exit code {code}" if code is not None else "")
                return

    def _lose(self, sink: KernelSink, reason: str) -> None:
        if not self._lost:
            self._lost = True
            sink.on_lost(reason)

    async def _stop_tasks(self) -> None:
        tasks, self._tasks = self._tasks, []
        current = asyncio.current_task()
        await cancel_and_wait(*(t for t in tasks if t is not current))

    async def shutdown(self, *, now: bool) -> None:
        self._lost = True
        await self._stop_tasks()
        self.kc.stop_channels()
        km = self.km
        try:
            await asyncio.wait_for(km.shutdown_kernel(now=now), self.request.shutdown_wait + 5)
        except Exception as exc:
            log.warning("shutting down a local kernel: %s", exc)
            with contextlib.suppress(Exception):
                await km.shutdown_kernel(now=True)

    async def detach(self) -> None:
        self._lost = True
        await self._stop_tasks()
        self.kc.stop_channels()


class LocalProvider:
    """Kernels as child processes of the service, through jupyter_client."""

    name = "local"

    def __init__(self) -> None:
        self._context: zmq.asyncio.Context | None = None

    @property
    def context(self) -> zmq.asyncio.Context:
        """The ZMQ context of our kernel clients: deep receive queues (:data:`IOPUB_QUEUE`)."""
        if self._context is None:
            ctx = zmq.asyncio.Context()
            ctx.setsockopt(zmq.RCVHWM, IOPUB_QUEUE)
            self._context = ctx
        return self._context

    async def start(self, request: KernelRequest) -> LocalConnection:
        os.makedirs(request.cwd, mode=0o700, exist_ok=True)
        os.chmod(request.cwd, 0o700)
        os.makedirs(request.runtime_dir, mode=0o700, exist_ok=True)
        km = AsyncKernelManager(
            kernel_name=request.kernel_name,
            connection_file=os.path.join(request.runtime_dir, f"kernel-{uuid.uuid4().hex}.json"),
            context=self.context,
        )
        km.shutdown_wait_time = request.shutdown_wait
        kc: Any = None
        try:
            await asyncio.wait_for(km.start_kernel(env=dict(request.env), cwd=request.cwd), request.start_timeout)
            kc = km.client(context=self.context)
            kc.start_channels(hb=False)
            await asyncio.wait_for(kc.wait_for_ready(timeout=request.start_timeout), request.start_timeout + 1)
        except BaseException:
            if kc is not None:
                kc.stop_channels()
            with contextlib.suppress(Exception):
                if km.has_kernel:
                    await km.shutdown_kernel(now=True)
            with contextlib.suppress(Exception):
                km.cleanup_connection_file()
            raise
        return LocalConnection(km, kc, request)

    async def attach(self, info: dict[str, Any], request: KernelRequest) -> LocalConnection:
        raise LookupError("a local kernel ends with the service that started it: there is nothing to attach to")
