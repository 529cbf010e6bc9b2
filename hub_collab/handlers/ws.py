"""The notebook WebSocket: wire protocol v1 at ``api/notebooks/{id}/ws``.

Authentication, the Origin check and the notebook ``r`` check all happen in
:meth:`NotebookWebSocket.get`, *before* the upgrade: a refused client gets a
plain HTTP 403/404 and no socket. After ``welcome``, binary frames go to the
room (:meth:`NotebookRoom.handle_frame`) and JSON commands to the application's
command dispatcher (:meth:`hub_collab.commands.Dispatcher.handle`), which checks
each command's declared action, routes it to the notebook's home replica and
answers ``ack`` or ``error``. This module registers no command. A message over
``HubCollab.max_message_size`` gets ``error too_large``; one over twice that ends the
connection with a close frame 1009 the client really receives
(:class:`_TooBigClosesCleanly`). Security note: :meth:`check_origin` accepts same-origin
browsers, the origins in ``HubCollab.allowed_origins``, and non-browser
clients (no Origin header, which must then authenticate with a token or a
cookie they hold).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlparse

from tornado import web
from tornado.iostream import StreamClosedError
from tornado.websocket import (
    WebSocketClosedError,
    WebSocketHandler,
    WebSocketProtocol,
    WebSocketProtocol13,
)

from .. import logs
from ..documents.room import NotebookRoom
from ..documents.session import Session
from ..errors import NotFound
from ..ids import check_id, new_id
from ..permissions.access import Identity
from .base import BaseHandler

_last_frame: tuple[bytes, bytes] = (b"", b"")

#: a connection whose binary frames took this long (seconds) lets the others run
#: before its next frame is handled
FRAME_SLICE = 0.002


def _binary_frame(payload: bytes) -> bytes:
    """A final, unmasked binary WebSocket frame holding ``payload`` (RFC 6455 5.2);
    the last one is kept, since a fan-out frames the same payload for every session."""
    global _last_frame
    if _last_frame[0] is payload:
        return _last_frame[1]
    n = len(payload)
    if n < 126:
        header = bytes((0x82, n))
    elif n < 1 << 16:
        header = bytes((0x82, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x82, 127)) + n.to_bytes(8, "big")
    framed = header + payload
    _last_frame = (payload, framed)
    return framed


#: How long a connection closed for a message over the hard limit keeps reading (and
#: dropping) what the client still sends, so that it reads the close frame (seconds).
LINGER_SECONDS = 10.0
#: WebSocket close code "message too big" (RFC 6455, 7.4.1).
CLOSE_TOO_BIG = 1009


class _TooBigClosesCleanly(WebSocketProtocol13):
    """tornado's protocol, except that a message over the hard limit gets a close frame
    the client actually receives.

    tornado decides on the frame header: a message longer than
    ``websocket_max_message_size`` gets a close frame 1009, then tornado closes the
    socket at once with the rest of the frame unread. The kernel then resets the
    connection (RST), and the client, or the Hub's proxy in between, mostly loses the
    close frame: the connection just drops. Here the close frame (1009, with a reason
    naming the limits) is followed by a FIN, and what the client still sends is read
    and dropped until it closes its side or :data:`LINGER_SECONDS` pass (a lingering
    close, as HTTP servers do); nothing of it reaches the handler.
    """

    def __init__(self, handler: NotebookWebSocket, params: Any, reason: str) -> None:
        super().__init__(handler, False, params)
        self.too_big_reason = reason
        self._linger: asyncio.Task[None] | None = None

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        stream = self.stream
        if code == CLOSE_TOO_BIG and self._linger is None and not self.server_terminated and stream is not None and not stream.closed():
            super().close(code, self.too_big_reason)
            self._linger = asyncio.get_running_loop().create_task(self._drain())
            return
        super().close(code, reason)

    def _abort(self) -> None:
        # tornado aborts right after its 1009 close frame (and again when the handler
        # hears that the connection ended): the drain closes the stream when it is done
        if self._linger is not None and not self._linger.done():
            self.client_terminated = self.server_terminated = True
            return
        super()._abort()

    async def _drain(self) -> None:
        stream = self.stream
        assert stream is not None
        try:
            with contextlib.suppress(StreamClosedError, OSError, TimeoutError):
                async with asyncio.timeout(LINGER_SECONDS):
                    await stream.write(b"")  # the close frame is on its way
                    stream.socket.shutdown(socket.SHUT_WR)
                    while True:
                        await stream.read_bytes(1 << 16, partial=True)
        finally:
            super()._abort()


class WSSession(Session):
    def __init__(self, handler: NotebookWebSocket, identity: Identity) -> None:
        super().__init__(identity)
        self.handler = handler
        self.session_id = new_id()

    def send_bytes(self, data: bytes) -> None:
        self.handler.send(data, binary=True)

    def send_json(self, message: dict[str, Any]) -> None:
        # after the outputs written before it (they wait for their commit): a client
        # reads an ack or a kernel message only once the docs it speaks of are here
        text = json.dumps(message, separators=(",", ":"))
        self.handler.room.update_log.after_pending(lambda: self.handler.send(text, binary=False))

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.handler.close(code, reason)


class NotebookWebSocket(BaseHandler, WebSocketHandler):
    room: NotebookRoom
    session: WSSession
    #: seconds spent on this client's binary frames since it last let others run
    _busy = 0.0

    def check_origin(self, origin: str) -> bool:
        allowed = self.collab.allowed_origins
        if "*" in allowed or origin in allowed:
            return True
        host = self.request.headers.get("X-Forwarded-Host") or self.request.headers.get("Host", "")
        return urlparse(origin).netloc == host.split(",")[0].strip()

    def get_compression_options(self) -> None:
        return None

    def get_websocket_protocol(self) -> WebSocketProtocol | None:
        protocol = super().get_websocket_protocol()
        if not isinstance(protocol, WebSocketProtocol13):
            return protocol
        soft, hard = self.collab.max_message_size, self.max_message_size
        reason = f"message too big: more than {hard} bytes (max_message_size is {soft})"
        return _TooBigClosesCleanly(self, protocol.params, reason)

    async def get(self, nb_id: str) -> None:  # type: ignore[override]
        await self.resolve_user()
        if not self.current_user:
            raise web.HTTPError(403, "authentication required")
        try:
            nb_id = check_id(nb_id, "notebook", not_found=True)
            logs.bind(notebook=nb_id)  # for this connection's lifetime
            room = await self.collab.rooms.get(nb_id)
        except NotFound:
            raise web.HTTPError(404, "no such notebook") from None
        identity = self.identity
        assert identity is not None
        access = room.compute_access_for(identity)
        if not access.can("open"):
            raise web.HTTPError(404, "no such notebook")
        self.room = room
        self.session = WSSession(self, identity)
        self.session.access = access
        await super().get(nb_id)

    def open(self, nb_id: str) -> None:  # type: ignore[override]
        self.set_nodelay(True)
        room, session = self.room, self.session
        session.opened_at = time.perf_counter()  # the join time runs until its first sync is answered
        client_epoch = self.get_argument("epoch", "")
        session.send_json(
            {
                "type": "welcome",
                "protocol": 1,
                "user": {"name": session.identity.name, "admin": session.identity.admin, "groups": sorted(session.identity.groups)},
                "notebook": room.id,
                "epoch": room.epoch,
                "caps": session.access.caps_json(),
                "limits": {"max_message_size": self.collab.max_message_size},
            }
        )
        if client_epoch and client_epoch != room.epoch:
            session.send_error("epoch_mismatch", "the notebook was reset since you last synced: drop your local state and reconnect")
            session.send_json({"type": "resync", "doc": "*"})
            self.close(4409, "epoch changed")
            return
        room.join(session)
        self.collab.sessions_opened += 1

    def send(self, message: bytes | str, *, binary: bool) -> None:
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            return
        try:
            if binary and isinstance(message, bytes) and getattr(conn, "_compressor", None) is None:
                # Fan-out sends the same payload to many sessions: frame it once and
                # write the frame as it is (server frames are not masked).
                conn.stream.write(_binary_frame(message))  # type: ignore[attr-defined,union-attr]
            else:
                self.write_message(message, binary=binary)
        except (WebSocketClosedError, StreamClosedError):
            return
        if self.queued() > self.collab.max_queued_bytes:
            # a client that does not read what it is sent (or cannot keep up) is not
            # allowed to grow the service's memory: it is let go with a clear code
            self.close(1008, f"more than {self.collab.max_queued_bytes} bytes sent to you are unread")

    def queued(self) -> int:
        """Bytes written to this connection that the client has not received yet."""
        conn = self.ws_connection
        stream = getattr(conn, "stream", None)
        return len(stream._write_buffer) if stream is not None else 0  # noqa: SLF001 (tornado keeps no public count)

    def on_message(self, message: str | bytes) -> Awaitable[None] | None:
        """Binary frames are handled inline (the hot path), except large ones, which are
        read off the event loop (:meth:`NotebookRoom.handle_frame`); those and JSON
        commands are handled by a coroutine, which tornado awaits before it delivers the
        connection's next message.

        Backpressure: while more than ``HubCollab.max_unread_bytes`` sent to this client
        are unread, its next frame waits (tornado reads nothing more from it meanwhile);
        a client that reads nothing for ``HubCollab.unread_timeout`` seconds is closed."""
        session = self.session
        if len(message) > self.collab.max_message_size:
            session.send_error("too_large", f"message of {len(message)} bytes exceeds the limit of {self.collab.max_message_size}")
            return None
        if isinstance(message, bytes):
            started = time.perf_counter()
            pending = self.room.handle_frame(session, message)
            if pending is not None:
                return self._large_frame(pending)
            if self.queued() > self.collab.max_unread_bytes:
                return self._drained()
            spent = time.perf_counter() - started
            self._busy += spent
            # the loop time this user's frames may take, over all their connections
            wait = self.collab.frame_budgets.charge(session.identity.name, spent)
            if wait > 0:
                self._busy = 0.0
                return asyncio.sleep(wait)
            if self._busy >= FRAME_SLICE:
                # tornado hands us this client's buffered frames one after the other for
                # 256 KB before it lets anything else run: a client sending frames that
                # cost a millisecond each held everyone else for a quarter of a second
                self._busy = 0.0
                return asyncio.sleep(0)
            return None
        return self.collab.commands.handle(self.room, session, message)

    async def _large_frame(self, handled: Awaitable[None]) -> None:
        """Wait for a large frame to be handled (off the event loop, in parts: see
        :meth:`NotebookRoom.handle_frame`), then for the client to read its answers."""
        await handled
        self._busy = 0.0
        if self.queued() > self.collab.max_unread_bytes:
            await self._drained()

    async def _drained(self) -> None:
        conn = self.ws_connection
        stream = getattr(conn, "stream", None)
        if stream is None or conn is None or conn.is_closing():
            return
        try:
            with contextlib.suppress(StreamClosedError):
                await asyncio.wait_for(stream.write(b""), self.collab.unread_timeout)
        except TimeoutError:
            self.close(1008, f"you did not read what you were sent for {self.collab.unread_timeout:g} s")

    def on_close(self) -> None:
        room = getattr(self, "room", None)
        if room is not None and self.session in room.sessions:
            room.leave(self.session)


default_handlers = [(r"api/notebooks/([^/]+)/ws", NotebookWebSocket)]
