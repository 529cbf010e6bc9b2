"""A minimal-overhead wire protocol v1 client for the benchmarks (not for production).

Blocking sockets, a hand-written WebSocket frame parser (RFC 6455, client side) and
pycrdt docs: receiving an update costs a ``recv``, a frame parse, a
:func:`~hub_collab.documents.protocol.decode_frame` and ``Doc.apply_update``, which is
what any client must do, without an event loop's or a WebSocket library's per-message
overhead. The benchmarks use it so that 50 clients on a 2-core machine measure the
service rather than the clients. :class:`~hub_collab.client.NotebookConnection` is the
full client; the benchmarks can use that too (``--client full``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import struct
import time
from typing import Any
from urllib.parse import urlparse

from pycrdt import Doc, Text

from hub_collab.documents import protocol as p
from hub_collab.documents.notebook import cell_doc, init_cell, init_index, init_out, out_doc

__all__ = ["LeanConnection"]

#: stands for a doc the raw mode does not hold
_NO_DOC: Doc[Any] = Doc()
#: a doc subscribed to but not answered yet
_PENDING: Doc[Any] = Doc()

_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0, 1, 2, 8, 9, 10


class LeanConnection:
    """One WebSocket to one notebook: join (every readable doc), then receive updates."""

    def __init__(self, ws_url: str, token: str, *, apply: bool = True) -> None:
        #: False: cell/out docs are only decoded, not applied (measures the service and the wire)
        self.apply = apply
        self.url = urlparse(ws_url)
        self.token = token
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        self._frag: list[bytes] = []
        self._frag_op = 0
        self.docs: dict[str, Doc[Any]] = {}
        self.synced: set[str] = set()
        self.welcome: dict[str, Any] = {}
        self.errors: list[dict[str, Any]] = []
        self.bytes_received = 0
        self.bytes_sent = 0
        self.frames_received = 0
        #: perf_counter() marks of the join: connected, welcome, index, all
        self.marks: dict[str, float] = {}
        self.closed = False
        #: a receive buffer this small (bytes), set before :meth:`connect` (a client that reads slowly)
        self.rcvbuf: int | None = None

    # -- the socket -----------------------------------------------------------------------

    def connect(self, timeout: float = 30.0) -> None:
        host, port = self.url.hostname or "127.0.0.1", self.url.port or 80
        t0 = time.perf_counter()
        if self.rcvbuf is None:
            sock = socket.create_connection((host, port), timeout=timeout)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)  # before the handshake
            sock.settimeout(timeout)
            sock.connect((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        path = self.url.path + (f"?{self.url.query}" if self.url.query else "")
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: token {self.token}\r\n\r\n"
        )
        sock.sendall(request.encode())
        head = bytearray()
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            head += chunk
        end = head.index(b"\r\n\r\n") + 4
        status = head[: head.index(b"\r\n")].decode()
        if " 101 " not in status + " ":
            raise ConnectionError(f"handshake refused: {status}")
        self.buf += head[end:]
        self.bytes_received += len(head)
        self.sock = sock
        self.marks["start"] = t0
        self.marks["connected"] = time.perf_counter()

    def close(self) -> None:
        if self.sock is not None and not self.closed:
            with contextlib.suppress(OSError):  # the peer is gone already: nothing to tell it
                self._send_frame(_OP_CLOSE, struct.pack("!H", 1000))
            self.sock.close()
        self.closed = True

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        assert self.sock is not None
        data = self.frame(opcode, payload)
        self.sock.sendall(data)
        self.bytes_sent += len(data)

    @staticmethod
    def frame(opcode: int, payload: bytes) -> bytes:
        """``payload`` as one masked WebSocket frame."""
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        # A client must mask; an all-zero masking key is a valid key (XOR is the identity),
        # which spares masking the payload in Python. Fine on loopback, for a benchmark.
        return header + b"\0\0\0\0" + payload

    def send_binary(self, payload: bytes) -> None:
        self._send_frame(_OP_BINARY, payload)

    def parse(self) -> list[tuple[int, bytes]]:
        """Complete messages in the buffer: ``(opcode, payload)``; the rest stays."""
        out: list[tuple[int, bytes]] = []
        buf = self.buf
        pos = 0
        while True:
            if len(buf) - pos < 2:
                break
            b0, b1 = buf[pos], buf[pos + 1]
            n = b1 & 0x7F
            hdr = 2
            if n == 126:
                if len(buf) - pos < 4:
                    break
                n = struct.unpack_from("!H", buf, pos + 2)[0]
                hdr = 4
            elif n == 127:
                if len(buf) - pos < 10:
                    break
                n = struct.unpack_from("!Q", buf, pos + 2)[0]
                hdr = 10
            if len(buf) - pos < hdr + n:
                break
            payload = bytes(buf[pos + hdr : pos + hdr + n])
            pos += hdr + n
            fin, opcode = b0 & 0x80, b0 & 0x0F
            if opcode == _OP_PING:
                self._send_frame(_OP_PONG, payload)
                continue
            if opcode == _OP_CLOSE:
                self.closed = True
                out.append((opcode, payload))
                continue
            if opcode == _OP_CONT:
                self._frag.append(payload)
                if fin:
                    out.append((self._frag_op, b"".join(self._frag)))
                    self._frag = []
                continue
            if not fin:
                self._frag_op, self._frag = opcode, [payload]
                continue
            out.append((opcode, payload))
        if pos:
            del buf[:pos]
        self.frames_received += len(out)
        return out

    def recv_some(self) -> list[tuple[int, bytes]]:
        """One ``recv`` (blocking unless the socket is non-blocking) and the messages it completes."""
        assert self.sock is not None
        if self.buf:
            ready = self.parse()  # what arrived with the handshake or an earlier recv
            if ready:
                return ready
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            self.closed = True
            raise ConnectionError("connection closed by the server")
        self.bytes_received += len(chunk)
        self.buf += chunk
        return self.parse()

    # -- the protocol ---------------------------------------------------------------------

    def handle(self, opcode: int, payload: bytes) -> list[str]:
        """Apply one message; return the names of the docs it changed."""
        if opcode == _OP_TEXT:
            msg = json.loads(payload)
            if msg.get("type") == "welcome":
                self.welcome = msg
            elif msg.get("type") == "error":
                self.errors.append(msg)
            return []
        if opcode != _OP_BINARY:
            return []
        if "subscribed" in self.marks and "answer" not in self.marks:
            self.marks["answer"] = time.perf_counter()  # the first answer is complete
        changed = []
        replies = []
        for entry in p.decode_frame(payload):
            if entry.kind != p.MSG_SYNC:
                continue
            doc = self.docs.get(entry.doc)
            if doc is None:
                continue
            if doc is _PENDING:  # subscribed holding nothing: the doc is made from the answer
                doc = self.docs[entry.doc] = self._make_doc(entry.doc)
            if entry.sub == p.SYNC_STEP1:
                if doc is _NO_DOC:
                    continue
                replies.append(p.sync_step2(entry.doc, doc.get_update(entry.payload)))
                continue
            if doc is not _NO_DOC:
                doc.apply_update(entry.payload)
            changed.append(entry.doc)
            if entry.sub == p.SYNC_STEP2:
                self.synced.add(entry.doc)
        if replies:
            self.send_binary(b"".join(replies))
        return changed

    def _make_doc(self, name: str) -> Doc[Any]:
        if not self.apply and name != "index":
            return _NO_DOC  # raw: answers are only decoded
        doc: Doc[Any] = Doc()
        if name == "index":
            init_index(doc)
        elif name.startswith("cell:"):
            init_cell(doc)
        else:
            init_out(doc)
        return doc

    def cell_ids(self) -> list[str]:
        cells, _ = init_index(self.docs["index"])
        # one JSON encoding in yrs, not 1,000 Map reads through pycrdt
        return [str(entry["id"]) for entry in json.loads(str(cells))]

    def join(self, timeout: float = 60.0) -> None:
        """Connect, then subscribe (in one frame, as the browser client does) to ``index``
        and the docs of every cell that ``welcome``'s caps say we may read."""
        if self.sock is None:
            self.connect(timeout)
        deadline = time.monotonic() + timeout
        while not self.welcome:
            self._pump(deadline)
        self.marks["welcome"] = time.perf_counter()
        cells = self.welcome.get("caps", {}).get("cells", {})
        wanted = ["index"] + [name for cid, rwx in cells.items() if "r" in rwx for name in (cell_doc(cid), out_doc(cid))]
        for name in wanted:
            self.docs[name] = _PENDING
        # holding nothing yet: empty state vectors
        self.send_binary(b"".join(p.sync_step1(name, b"\x00") for name in wanted))
        self.marks["subscribed"] = time.perf_counter()
        while not all(name in self.synced for name in wanted):
            self._pump(deadline)
            if "index" in self.synced and "index" not in self.marks:
                self.marks["index"] = time.perf_counter()
        self.marks["synced"] = time.perf_counter()

    def _pump(self, deadline: float) -> None:
        if time.monotonic() > deadline:
            raise TimeoutError("join timed out")
        for opcode, payload in self.recv_some():
            if opcode == _OP_CLOSE:
                raise ConnectionError(f"closed by the server: {payload[2:].decode(errors='replace')}")
            self.handle(opcode, payload)

    def source_length(self, cell_id: str) -> int:
        """Length of a cell's source as pycrdt counts (UTF-8 bytes; the benchmarks type ASCII)."""
        return len(self.docs[cell_doc(cell_id)].get("source", type=Text))
