"""Where a kernel runs: the :class:`KernelProvider` interface, and the ``local`` provider.

A :class:`~hub_collab.kernels.kernel.Kernel` (one notebook's kernel, or one
user's in per-user mode) owns the execution queue and routes every message into
the notebook's documents. It does not know where the kernel process is: it asks
a provider to :meth:`~KernelProvider.start` one (or to :meth:`~KernelProvider.attach`
to one that already runs, from what :meth:`KernelConnection.info` returned),
and talks to it through the :class:`KernelConnection` it gets back:

* :meth:`KernelConnection.execute` sends an ``execute_request`` and returns its
  ``msg_id``; :meth:`~KernelConnection.input_reply` answers ``input()``;
  :meth:`~KernelConnection.comm_msg` and :meth:`~KernelConnection.comm_info` talk to
  the kernel's comms (widgets: :mod:`hub_collab.kernels.widgets`);
  :meth:`~KernelConnection.interrupt`, :meth:`~KernelConnection.shutdown`;
* every message from the kernel reaches the :class:`KernelSink` given to
  :meth:`~KernelConnection.listen`: IOPub, shell replies and stdin requests as
  plain dicts (``header``, ``parent_header``, ``msg_type``, ``content``), and
  :meth:`KernelSink.on_lost` once, when the kernel is gone (died, shut down
  elsewhere) or cannot be reached any more;
* :meth:`~KernelConnection.detach` closes the connection and leaves the kernel
  running (the service stops; a later :meth:`~KernelProvider.attach` finds it).

:class:`LocalProvider` runs kernels as processes of the service's OS user
(jupyter_client). It is for one user or development: code in such a kernel runs
as the service's OS user (docs/kernels.md, "Trust"). Its kernels are started
independent of the service (no parent poller, a session of their own), so a
crashed or restarted service finds them again through :meth:`LocalProvider.attach`
(the connection file and the process id), with the same client session, so
that replies to requests sent before the restart still reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import zmq
import zmq.asyncio
from jupyter_client.asynchronous.client import AsyncKernelClient
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
    that user's resource (``server``: a named Hub server). ``cwd`` and
    ``runtime_dir`` are for the local provider.
    """

    kernel_name: str
    user: str
    #: the user's named server for the ``hub`` provider ("" for their default server)
    server: str = ""
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = ""
    runtime_dir: str = ""
    start_timeout: float = 60.0
    shutdown_wait: float = 3.0
    #: hears what happens before the kernel runs, in words ("Starting alice's server: 40%")
    progress: Callable[[str], None] | None = None


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

    def kernel_info(self) -> str:
        """Send a ``kernel_info_request``; return its msg_id. The kernel answers it only
        once it has finished what it runs (shell requests are handled in order)."""

    def input_reply(self, value: str) -> None:
        """Answer the pending ``input_request``."""

    def comm_msg(self, comm_id: str, data: dict[str, Any], username: str, buffers: list[bytes] | None = None) -> str:
        """Send a ``comm_msg`` (with binary ``buffers``) on shell whose header names
        ``username``; return its msg_id."""

    def comm_info(self, target_name: str) -> str:
        """Send a ``comm_info_request`` for ``target_name``; return its msg_id."""

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


def _pid_alive(pid: int) -> bool:
    """True if process ``pid`` runs (not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _exists(path: str) -> bool:
    return os.path.exists(path)


class LocalConnection:
    """A local kernel process and its ZMQ channels.

    ``km`` is the manager that started it, or None when attached to a kernel that a
    previous service process started (then ``pid`` is how it is signalled and watched).
    """

    def __init__(self, km: AsyncKernelManager | None, kc: Any, request: KernelRequest, pid: int) -> None:
        self.km = km
        self.kc = kc
        self.request = request
        self.pid = pid
        self.kernel_id = uuid.uuid4().hex
        self._tasks: list[asyncio.Task[None]] = []
        self._sink: KernelSink | None = None
        self._lost = False

    def info(self) -> dict[str, Any]:
        return {
            "provider": "local",
            "host": socket.gethostname(),
            "connection_file": self.kc.connection_file,
            "pid": self.pid,
            "session": self.kc.session.session,
        }

    def listen(self, sink: KernelSink) -> None:
        if self._sink is not None:
            raise RuntimeError("LocalConnection.listen() called twice")
        self._sink = sink
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read(self.kc.iopub_channel.socket, sink.on_iopub, "IOPub")),
            loop.create_task(self._read(self.kc.shell_channel.socket, sink.on_shell, "shell")),
            loop.create_task(self._read(self.kc.stdin_channel.socket, sink.on_stdin, "stdin")),
            loop.create_task(self._monitor(sink)),
        ]

    def execute(self, code: str) -> str:
        content = {
            "code": code, "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": True, "stop_on_error": False,
        }  # fmt: skip
        return self._send(self.kc.shell_channel.socket, "execute_request", content)

    def kernel_info(self) -> str:
        return self._send(self.kc.shell_channel.socket, "kernel_info_request", {})

    def input_reply(self, value: str) -> None:
        self._send(self.kc.stdin_channel.socket, "input_reply", {"value": value})

    def comm_msg(self, comm_id: str, data: dict[str, Any], username: str, buffers: list[bytes] | None = None) -> str:
        content = {"comm_id": comm_id, "data": data}
        return self._send(self.kc.shell_channel.socket, "comm_msg", content, username=username, buffers=buffers)

    def comm_info(self, target_name: str) -> str:
        return self._send(self.kc.shell_channel.socket, "comm_info_request", {"target_name": target_name})

    def _send(
        self, socket: zmq.asyncio.Socket, msg_type: str, content: dict[str, Any],
        *, username: str | None = None, buffers: list[bytes] | None = None,
    ) -> str:  # fmt: skip
        """Send a request on one of our channels' sockets; its message id.

        Through the socket itself, not jupyter_client's ``Session.send``: that sends on a
        synchronous shadow of the socket, which can take ZeroMQ's one readiness signal
        for a reply that arrived meanwhile without waking the receive waiting on the
        socket (:meth:`_read`). The reply then waits unread for good: seen here, an
        execution whose execute_reply sat in the shell socket never ended.
        """
        session = self.kc.session
        header = session.msg_header(msg_type)
        if username is not None:
            header["username"] = username
        msg = session.msg(msg_type, content, header=header)
        socket.send_multipart([*session.serialize(msg), *(buffers or [])])
        msg_id: str = msg["header"]["msg_id"]
        return msg_id

    async def interrupt(self) -> None:
        if self.km is not None and self.km.has_kernel:
            await self.km.interrupt_kernel()
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGINT)

    async def _read(self, socket: zmq.asyncio.Socket, deliver: Callable[[dict[str, Any]], None], channel: str) -> None:
        """Deliver every message of one channel, read with the socket's own
        ``recv_multipart``: after each send (:meth:`_send`) pyzmq checks for messages that
        arrived meanwhile and wakes this receive. jupyter_client's ``get_shell_msg`` waits
        in ``socket.poll()``, which such a check does not wake."""
        session = self.kc.session
        n = 0
        while True:
            parts = await socket.recv_multipart()
            try:
                deliver(decode(session, parts))
            except BadMessage as exc:
                log.warning("dropped a %s message from a kernel: %s", channel, exc)
            except Exception:
                log.exception("bad %s message from a kernel", channel)
            n += 1
            if n % 200 == 0:
                # a ready socket never suspends: let the rest of the service run under a flood
                await asyncio.sleep(0)

    async def _monitor(self, sink: KernelSink) -> None:
        km = self.km
        while True:
            await asyncio.sleep(0.2)
            if km is not None and km.has_kernel:
                alive = await km.is_alive()
            else:
                alive = _pid_alive(self.pid)
            if not alive:
                code = None
                if km is not None and km.provisioner is not None:
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
        km = self.km
        if km is not None and km.has_kernel:
            self.kc.stop_channels()
            try:
                await asyncio.wait_for(km.shutdown_kernel(now=now), self.request.shutdown_wait + 5)
            except Exception as exc:
                log.warning("shutting down a local kernel: %s", exc)
                with contextlib.suppress(Exception):
                    await km.shutdown_kernel(now=True)
            with contextlib.suppress(OSError):
                os.unlink(output_path(km.connection_file))
            return
        # attached: ask it to stop, then make sure it did
        if not now:
            with contextlib.suppress(Exception):
                self.kc.shutdown()
            for _ in range(int(self.request.shutdown_wait / 0.1)):
                if not _pid_alive(self.pid):
                    break
                await asyncio.sleep(0.1)
        self.kc.stop_channels()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.unlink(self.kc.connection_file)
        with contextlib.suppress(OSError):
            os.unlink(output_path(self.kc.connection_file))

    async def detach(self) -> None:
        self._lost = True
        await self._stop_tasks()
        self.kc.stop_channels()
        if self.km is not None:
            # the kernel goes on: its manager must not delete the connection file when it
            # is garbage-collected (jupyter_client does that for kernels it started)
            self.km._connection_file_written = False


def output_path(connection_file: str) -> str:
    """Where a local kernel's own stdout and stderr go when they are kept out of the
    service's log: beside its connection file."""
    return connection_file.removesuffix(".json") + ".log"


def _log_output_tail(connection_file: str, lines: int = 20) -> None:
    """Log (and remove) what a kernel that failed to start wrote on its stdout and stderr."""
    path = output_path(connection_file)
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            tail = f.read().decode(errors="replace").splitlines()[-lines:]
        os.unlink(path)
    except OSError:
        return
    if tail:
        log.warning("a local kernel that failed to start wrote:\n%s", "\n".join(tail))


class LocalProvider:
    """Kernels as child processes of the service, through jupyter_client.

    A kernel's own stdout and stderr (its start-up notes, a crash; never its cells'
    output, which travels over IOPub) are the service's, unless ``output_files``: then
    they go to a file beside the kernel's connection file (:func:`output_path`), so that
    the service's log stays one JSON object per line (``HubCollab.log_format``). The last
    lines of a kernel that failed to start are logged.
    """

    name = "local"

    def __init__(self, *, output_files: bool = False) -> None:
        self._context: zmq.asyncio.Context | None = None
        self.output_files = output_files

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
        output: dict[str, Any] = {}
        if self.output_files:
            fd = os.open(output_path(km.connection_file), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            output = {"stdout": fd, "stderr": fd}
        try:
            # independent: no parent poller, so the kernel outlives a crashed service
            await asyncio.wait_for(
                km.start_kernel(env=dict(request.env), cwd=request.cwd, independent=True, **output), request.start_timeout
            )
            kc = km.client(context=self.context)
            kc.start_channels(hb=False)
            await asyncio.wait_for(kc.wait_for_ready(timeout=request.start_timeout), request.start_timeout + 1)
        except BaseException:
            if kc is not None:
                kc.stop_channels()
            with contextlib.suppress(Exception):
                if km.has_kernel:
                    await km.shutdown_kernel(now=True)
            if output:
                _log_output_tail(km.connection_file)
            with contextlib.suppress(Exception):
                km.cleanup_connection_file()
            raise
        finally:
            if output:
                os.close(output["stdout"])  # the kernel holds its own copy
        assert km.provisioner is not None
        return LocalConnection(km, kc, request, int(getattr(km.provisioner, "pid", 0) or 0))

    async def attach(self, info: dict[str, Any], request: KernelRequest) -> LocalConnection:
        """Connect to a kernel a previous service process started (``info`` from
        :meth:`LocalConnection.info`); :class:`LookupError` if it is gone."""
        path, pid, session = info.get("connection_file"), info.get("pid"), info.get("session")
        if not (isinstance(path, str) and isinstance(pid, int) and isinstance(session, str)):
            raise LookupError("no record of the kernel's connection")
        if info.get("host") != socket.gethostname():
            raise LookupError(f"the kernel ran on another machine ({str(info.get('host'))[:80]})")
        if not _pid_alive(pid):
            raise LookupError("the kernel process is gone")
        if not _exists(path):
            raise LookupError("the kernel's connection file is gone")
        kc = AsyncKernelClient(connection_file=path, context=self.context)
        kc.load_connection_file()
        kc.session.session = session  # the same identity: replies to earlier requests reach us
        kc.start_channels(hb=False)
        return LocalConnection(None, kc, request, pid)
