"""Kernels behind jupyter_server's kernel API: :class:`RemoteProvider`.

A Hub user's server (``jupyterhub-singleuser``, i.e. jupyter_server) and Jupyter
Kernel Gateway / Enterprise Gateway serve the same API: REST under
``{base}api/kernels`` and ``{base}api/kernelspecs``, and one WebSocket per client
session at ``{base}api/kernels/{id}/channels?session_id=...``. Use
:class:`RemoteProvider` (a :class:`~hub_collab.kernels.provider.KernelProvider`);
it hands out :class:`RemoteKernelConnection` objects. :class:`RemoteKernelClient`
is the REST part alone. Every failure is a :class:`RemoteKernelError` whose
message can be shown to the user as it is.

The WebSocket speaks ``v1.kernel.websocket.jupyter.org`` when the server offers it
and the default JSON protocol when it does not (a Kernel Gateway may not); both
framings are in :mod:`~hub_collab.kernels.remote_frames`, the REST calls in
:mod:`~hub_collab.kernels.remote_api`.

Reconnecting without loss: jupyter_server keeps the IOPub, shell and stdin
messages of a kernel whose last WebSocket closed, for the session id of that
socket, and replays them when a socket with the same session id comes back. So a
connection keeps its ``session_id`` for life (it is in :meth:`~RemoteKernelConnection.info`,
so a restarted service gets the buffer too) and reconnects with it, with backoff,
until ``reconnect_timeout``. A close handshake loses nothing; when the TCP
connection broke without one, what was in flight cannot be replayed, and each
run in progress gets a line on stderr saying output may be missing. A server's
IOPub rate limit ("IOPub message rate exceeded") arrives as a stderr stream
message and is passed on like any output.

The service's token for the server is in ``headers``: it is sent only to
``base_url`` and never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import socket
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError

from .provider import KernelRequest, KernelSink
from .remote_api import V1_PROTOCOL, RemoteKernelClient, RemoteKernelError, check_id
from .remote_frames import (
    BadFrame,
    as_message,
    decode_json,
    decode_v1,
    encode_json_binary,
    encode_v1,
)

__all__ = [
    "V1_PROTOCOL",
    "RemoteKernelClient",
    "RemoteKernelConnection",
    "RemoteKernelError",
    "RemoteProvider",
]

log = logging.getLogger("hub_collab.kernels.remote")

_MAX_HELD = 10_000
_MAX_OUTBOX = 1_000
_MAX_RUNNING = 256


def _quickack(ws: WebSocketClientConnection) -> Callable[[], None] | None:
    """A function that asks Linux to acknowledge what ``ws`` receives at once.

    jupyter_server does not turn Nagle's algorithm off on kernel WebSockets: after
    the first small frame of a run (``status: busy``) it holds the next ones until
    that frame is acknowledged, and a delayed ACK costs 40 ms before every run's
    first output. Quick-ACK mode does not stick, so the reader re-arms it.
    """
    option = getattr(socket, "TCP_QUICKACK", None)
    stream = ws.protocol.stream if ws.protocol is not None else None
    sock = getattr(stream, "socket", None)
    if option is None or not isinstance(sock, socket.socket):
        return None
    fd = sock

    def rearm() -> None:
        with contextlib.suppress(OSError):
            fd.setsockopt(socket.IPPROTO_TCP, option, 1)

    rearm()
    return rearm


# -- the connection -----------------------------------------------------------------------------


class RemoteKernelConnection:
    """One kernel on a jupyter_server or gateway, through its channels WebSocket.

    Implements :class:`~hub_collab.kernels.provider.KernelConnection`. Made by
    :class:`RemoteProvider`; ``session_id`` is kept for life so that the server
    replays what the kernel said while the socket was down.
    """

    def __init__(
        self,
        client: RemoteKernelClient,
        kernel_id: str,
        *,
        provider: str,
        username: str,
        session_id: str | None = None,
        reconnect_timeout: float = 30.0,
        poll_interval: float = 5.0,
    ) -> None:
        self.client = client
        self.kernel_id = check_id("kernel id", kernel_id)
        self.provider = provider
        self.session_id = check_id("session id", session_id or uuid.uuid4().hex)
        self.reconnect_timeout = reconnect_timeout
        self.poll_interval = poll_interval
        #: the subprotocol in use: :data:`V1_PROTOCOL`, or "" for the JSON protocol
        self.protocol = ""
        #: how many times the WebSocket was opened again after a drop
        self.reconnects = 0
        # the server signs what it passes to the kernel: this key only quiets Session's warning
        self._session = Session(
            session=self.session_id, username=username, key=secrets.token_bytes(16)
        )
        self._ws: WebSocketClientConnection | None = None
        self._sink: KernelSink | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._quickack: Callable[[], None] | None = None
        self._held: list[tuple[str, dict[str, Any]]] = []
        self._outbox: list[tuple[str, dict[str, Any]]] = []
        # execute_requests whose run has not gone idle yet: msg_id -> header
        self._running: dict[str, dict[str, Any]] = {}
        self._input_parent: dict[str, Any] = {}
        self._closing = False
        self._lost = False
        self._restarting = False
        # kernel_info_requests of our own (after a restart), and the event their IOPub sets
        self._probes: set[str] = set()
        self._probe_seen = asyncio.Event()

    def __repr__(self) -> str:
        return f"<RemoteKernelConnection {self.kernel_id} on {self.client.where}>"

    def info(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "base_url": self.client.base_url,
            "kernel_id": self.kernel_id,
            "session_id": self.session_id,
        }

    # -- opening ---------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the WebSocket (first time); messages wait in the socket until :meth:`listen`."""
        if self._ws is not None:
            raise RuntimeError("RemoteKernelConnection.connect() called twice")
        self._ws = await self._open()

    async def _open(self) -> WebSocketClientConnection:
        ws = await self.client.websocket(self.kernel_id, self.session_id)
        self.protocol = ws.selected_subprotocol or ""
        self._quickack = _quickack(ws)
        return ws

    async def wait_ready(self) -> None:
        """Send ``kernel_info_request`` and read until its reply (before :meth:`listen`).

        Whatever else arrives meanwhile is kept and delivered first by :meth:`listen`.
        """
        ws = self._ws
        if ws is None or self._sink is not None:
            raise RuntimeError("wait_ready() goes between connect() and listen()")
        msg_id = self._send("shell", "kernel_info_request", {})
        while True:
            frame = await ws.read_message()
            if frame is None:
                raise RemoteKernelError(
                    "unreachable",
                    f"{self.client.where} closed the kernel's WebSocket before the kernel answered",
                )
            try:
                channel, msg = self._decode(frame)
            except BadFrame as exc:
                log.warning("dropped a frame from %s: %s", self.client.where, exc)
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                if msg["msg_type"] == "kernel_info_reply":
                    return
                continue  # the status messages of our own request
            if len(self._held) < _MAX_HELD:
                self._held.append((channel, msg))

    def listen(self, sink: KernelSink) -> None:
        if self._sink is not None:
            raise RuntimeError("RemoteKernelConnection.listen() called twice")
        if self._ws is None:
            raise RuntimeError("RemoteKernelConnection.listen() before connect()")
        self._sink = sink
        held, self._held = self._held, []
        for channel, msg in held:
            self._deliver(sink, channel, msg)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read_loop(sink)),
            loop.create_task(self._monitor(sink)),
        ]

    # -- receiving -------------------------------------------------------------------------------

    def _decode(self, frame: str | bytes) -> tuple[str, dict[str, Any]]:
        if self.protocol == V1_PROTOCOL:
            if not isinstance(frame, bytes):
                raise BadFrame("a text frame on the v1 protocol")
            return decode_v1(frame)
        return decode_json(frame)

    async def _read_loop(self, sink: KernelSink) -> None:
        # tornado's client queue holds one message and reading it suspends this task
        # when the queue is empty, so other tasks run between messages even under a
        # flood, and what the kernel sends beyond that waits in the socket
        while not self._lost:
            ws = self._ws
            frame = await ws.read_message() if ws is not None else None
            if frame is None:
                if self._closing or self._lost:
                    return
                clean = ws is not None and ws.close_code is not None
                if not await self._reconnect(sink, clean=clean):
                    return
                continue
            if self._quickack is not None:
                self._quickack()
            try:
                channel, msg = self._decode(frame)
            except BadFrame as exc:
                log.warning("dropped a frame from %s: %s", self.client.where, exc)
                continue
            self._deliver(sink, channel, msg)

    async def _monitor(self, sink: KernelSink) -> None:
        # jupyter_server leaves the WebSocket of a kernel shut down by someone else
        # open and silent: ask after the kernel now and then
        while not self._lost:
            await asyncio.sleep(self.poll_interval)
            if self._ws is None:
                continue  # reconnecting: that looks after the kernel
            try:
                model = await self.client.get_kernel(self.kernel_id)
            except RemoteKernelError as exc:
                if exc.code == "not_found":
                    self._lose(sink, f"the kernel is gone: it was shut down on {self.client.where}")
                elif exc.code in ("not_allowed", "server_stopped"):
                    self._lose(sink, exc.message)
                continue
            if model.get("execution_state") == "dead" and not self._restarting:
                self._lose(sink, "the kernel died")

    def _deliver(self, sink: KernelSink, channel: str, msg: dict[str, Any]) -> None:
        if self._probes and msg["parent_header"].get("msg_id") in self._probes:
            if channel == "iopub":
                self._probe_seen.set()
            return
        try:
            if channel == "iopub":
                if msg["msg_type"] == "status":
                    state = msg["content"].get("execution_state")
                    if state == "idle":
                        self._running.pop(msg["parent_header"].get("msg_id", ""), None)
                    elif state in ("restarting", "dead") and not self._restarting:
                        # the server's restarter: the kernel process died (and was
                        # restarted empty, or could not be): its runs and state are gone
                        sink.on_iopub(msg)
                        self._lose(
                            sink,
                            "the kernel died"
                            + (
                                " and was restarted empty by its server"
                                if state == "restarting"
                                else ""
                            ),
                        )
                        return
                sink.on_iopub(msg)
            elif channel == "shell":
                sink.on_shell(msg)
            elif channel == "stdin":
                if msg["msg_type"] == "input_request":
                    self._input_parent = msg["header"]
                sink.on_stdin(msg)
        except Exception:
            log.exception("a %s message from a remote kernel could not be handled", channel)

    def _lose(self, sink: KernelSink, reason: str) -> None:
        if self._lost:
            return
        self._lost = True
        self._outbox.clear()
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()
        log.warning("kernel %s on %s lost: %s", self.kernel_id, self.client.where, reason)
        try:
            sink.on_lost(reason)
        except Exception:
            log.exception("on_lost failed")

    async def _reconnect(self, sink: KernelSink, *, clean: bool) -> bool:
        """Open the WebSocket again with the same session id; False once lost."""
        self._ws = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reconnect_timeout
        delay = 0.05
        last = ""
        log.info(
            "the WebSocket of kernel %s on %s closed; reconnecting",
            self.kernel_id,
            self.client.where,
        )
        while not self._closing:
            try:
                await self.client.get_kernel(self.kernel_id)
                ws = await self._open()
            except RemoteKernelError as exc:
                if exc.code == "not_found":
                    self._lose(sink, f"the kernel is gone: it was shut down on {self.client.where}")
                    return False
                if exc.code in ("not_allowed", "server_stopped"):
                    self._lose(sink, exc.message)
                    return False
                last = exc.message
            else:
                if self._closing:
                    ws.close()
                    return False
                self._ws = ws
                self.reconnects += 1
                log.info("reconnected to kernel %s on %s", self.kernel_id, self.client.where)
                if not clean:
                    self._notify_gap(sink)
                outbox, self._outbox = self._outbox, []
                for channel, msg in outbox:
                    self._write(channel, msg)
                return True
            if loop.time() + delay > deadline:
                self._lose(
                    sink,
                    f"lost the connection to the kernel on {self.client.where} and could not reconnect "
                    f"within {self.reconnect_timeout:g} s ({last})",
                )
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        return False

    def _notify_gap(self, sink: KernelSink) -> None:
        # the connection broke without a close handshake: what the server had already
        # written is not in its replay buffer; say so in every run in progress
        for header in list(self._running.values()):
            notice = self._session.msg(
                "stream",
                {
                    "name": "stderr",
                    "text": "[the connection to the kernel broke; output sent meanwhile may be missing]\n",
                },
                parent=header,
            )
            notice["header"]["date"] = notice["header"]["date"].isoformat()
            self._deliver(
                sink,
                "iopub",
                as_message(notice["header"], dict(header), {}, notice["content"], []),
            )

    # -- sending ---------------------------------------------------------------------------------

    def _send(
        self,
        channel: str,
        msg_type: str,
        content: dict[str, Any],
        parent: dict[str, Any] | None = None,
        username: str = "",
        buffers: list[bytes] | None = None,
    ) -> str:
        if self._lost or self._closing:
            raise RemoteKernelError(
                "lost", f"the connection to the kernel on {self.client.where} is closed"
            )
        header = self._session.msg_header(msg_type)
        if username:
            header["username"] = username
        msg = self._session.msg(msg_type, content, parent=parent, header=header)
        msg["buffers"] = list(buffers or [])
        if self._ws is None:
            if len(self._outbox) >= _MAX_OUTBOX:
                raise RemoteKernelError(
                    "lost", f"the kernel on {self.client.where} cannot be reached now"
                )
            self._outbox.append((channel, msg))  # sent when the WebSocket is back
        else:
            self._write(channel, msg)
        msg_id: str = msg["header"]["msg_id"]
        return msg_id

    def _write(self, channel: str, msg: dict[str, Any]) -> None:
        ws = self._ws
        assert ws is not None
        if ws.protocol is None or ws.protocol.is_closing():
            # a frame written during the close handshake would be ignored by the server
            self._outbox.append((channel, msg))
            return
        data: str | bytes
        if self.protocol == V1_PROTOCOL:
            pack = self._session.pack
            data = encode_v1(
                channel,
                [
                    pack(msg["header"]),
                    pack(msg["parent_header"]),
                    pack(msg["metadata"]),
                    pack(msg["content"]),
                    *msg["buffers"],
                ],
            )
        elif msg["buffers"]:
            text = json.dumps({**msg, "channel": channel, "buffers": []}, default=json_default)
            data = encode_json_binary(text.encode(), msg["buffers"])
        else:
            data = json.dumps({**msg, "channel": channel, "buffers": []}, default=json_default)
        try:
            ws.write_message(data, binary=isinstance(data, bytes))
        except WebSocketClosedError:
            self._outbox.append((channel, msg))  # the read loop is about to reconnect

    def execute(self, code: str) -> str:
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": True,
            "stop_on_error": False,
        }
        msg_id = self._send("shell", "execute_request", content)
        if len(self._running) >= _MAX_RUNNING:  # their idle status never came (dropped)
            del self._running[next(iter(self._running))]
        self._running[msg_id] = {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "session": self.session_id,
        }
        return msg_id

    def kernel_info(self) -> str:
        return self._send("shell", "kernel_info_request", {})

    def comm_msg(self, comm_id: str, data: dict[str, Any], username: str, buffers: list[bytes] | None = None) -> str:
        return self._send("shell", "comm_msg", {"comm_id": comm_id, "data": data}, username=username, buffers=buffers)

    def comm_info(self, target_name: str) -> str:
        return self._send("shell", "comm_info_request", {"target_name": target_name})

    def input_reply(self, value: str) -> None:
        self._send("stdin", "input_reply", {"value": value}, parent=self._input_parent or None)
        self._input_parent = {}

    # -- lifecycle -------------------------------------------------------------------------------

    async def interrupt(self) -> None:
        await self.client.interrupt(self.kernel_id)

    async def restart(self, *, timeout: float = 60.0) -> None:
        """Restart the kernel (its state is lost; the connection stays).

        Returns once the new kernel's IOPub reaches us: a subscriber that joins a
        restarted kernel misses what it publishes before the subscription is in
        place, so the first run after a restart could lose its output.
        """
        self._restarting = True
        try:
            await self.client.restart(self.kernel_id, timeout=timeout)
            self._running.clear()
            async with asyncio.timeout(timeout):
                await self._probe_iopub()
        except TimeoutError as exc:
            raise RemoteKernelError(
                "timeout",
                f"the kernel on {self.client.where} did not come back within {timeout:g} s",
            ) from exc
        finally:
            self._restarting = False
            self._probes.clear()

    async def _probe_iopub(self) -> None:
        # as jupyter_server's nudge: ask for kernel_info until IOPub answers one of them
        self._probe_seen.clear()
        while not self._probe_seen.is_set():
            self._probes.add(self._send("shell", "kernel_info_request", {}))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._probe_seen.wait(), 0.5)

    async def _close(self, *, drain: float = 0.0) -> None:
        self._closing = True
        ws = self._ws
        if ws is not None:
            ws.close()
        if drain and self._tasks and ws is not None:
            # what the server wrote before it saw our close is not in its replay
            # buffer: read (and deliver) up to its closing frame
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._tasks[0]), drain)
        self._ws = None
        tasks, self._tasks = self._tasks, []
        current = asyncio.current_task()
        for task in tasks:
            if task is not current:
                task.cancel()
        for task in tasks:
            if task is not current:
                with contextlib.suppress(BaseException):
                    await task

    async def shutdown(self, *, now: bool) -> None:
        await self._close()
        self._lost = True
        try:
            await self.client.delete(
                self.kernel_id, timeout=5.0 if now else max(self.client.request_timeout, 30.0)
            )
        except RemoteKernelError as exc:
            log.warning("shutting down kernel %s: %s", self.kernel_id, exc.message)

    async def detach(self) -> None:
        await self._close(drain=5.0)
        self._lost = True


# -- the provider -------------------------------------------------------------------------------


class RemoteProvider:
    """Kernels on one jupyter_server (a Hub user's server) or Kernel/Enterprise Gateway.

    ``headers`` authenticate the service to it (``{"Authorization": "token ..."}``).
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        headers: Mapping[str, str],
        *,
        request_timeout: float = 20.0,
        reconnect_timeout: float = 30.0,
        poll_interval: float = 5.0,
    ) -> None:
        self.name = name
        self.client = RemoteKernelClient(base_url, headers, request_timeout=request_timeout)
        self.reconnect_timeout = reconnect_timeout
        self.poll_interval = poll_interval

    def __repr__(self) -> str:
        return f"<RemoteProvider {self.name} {self.client.where}>"

    def _connection(
        self, kernel_id: str, request: KernelRequest, session_id: str | None = None
    ) -> RemoteKernelConnection:
        return RemoteKernelConnection(
            self.client,
            kernel_id,
            provider=self.name,
            username=request.user,
            session_id=session_id,
            reconnect_timeout=self.reconnect_timeout,
            poll_interval=self.poll_interval,
        )

    async def start(self, request: KernelRequest) -> RemoteKernelConnection:
        """Start a ``request.kernel_name`` kernel; return once it answered ``kernel_info``.

        The kernel gets ``KERNEL_USERNAME`` (the request's user) and the request's
        ``KERNEL_*`` variables (a gateway passes them on; jupyter_server ignores them).
        """
        env = {k: v for k, v in request.env.items() if k.startswith("KERNEL_")}
        env["KERNEL_USERNAME"] = request.user
        loop = asyncio.get_running_loop()
        deadline = loop.time() + request.start_timeout
        model = await self.client.start_kernel(
            request.kernel_name, env, timeout=request.start_timeout
        )
        conn = self._connection(model["id"], request)
        try:
            async with asyncio.timeout_at(deadline):
                await conn.connect()
                await conn.wait_ready()
        except BaseException as exc:
            await conn._close()
            with contextlib.suppress(Exception):
                await self.client.delete(conn.kernel_id, timeout=5.0)
            if isinstance(exc, TimeoutError):
                raise RemoteKernelError(
                    "timeout",
                    f"the kernel on {self.client.where} did not become ready within {request.start_timeout:g} s",
                ) from exc
            raise
        return conn

    async def attach(
        self, info: Mapping[str, Any], request: KernelRequest
    ) -> RemoteKernelConnection:
        """Connect again to a kernel from :meth:`RemoteKernelConnection.info`.

        The kernel must be on this provider's server: ``info`` cannot send the
        service's token anywhere else.
        """
        if info.get("provider") != self.name:
            raise RemoteKernelError(
                "bad_info",
                f"this kernel belongs to provider {info.get('provider')!r}, not {self.name!r}",
            )
        if info.get("base_url") != self.client.base_url:
            raise RemoteKernelError("bad_info", f"this kernel is not on {self.client.where}")
        kernel_id = check_id("kernel id", info.get("kernel_id"))
        session_id = check_id("session id", info.get("session_id"))
        await self.client.get_kernel(kernel_id)
        conn = self._connection(kernel_id, request, session_id)
        await conn.connect()
        return conn
