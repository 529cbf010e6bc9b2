"""An async Python client for hub-collab: REST v1 and wire protocol v1.

Use :class:`CollabClient` with a Hub API token::

    async with CollabClient("http://hub:8000/services/collab/", token) as client:
        nb = await client.create_notebook("lab 1")
        async with client.open(nb["id"]) as conn:
            await conn.synced()
            cid = await conn.insert_cell(0, "code", "print('hi')")
            conn.edit(cid, 0, insert="# ")
            await conn.sync()          # returns once the server has it durably

:class:`NotebookConnection` keeps a local copy of every doc the user may read,
follows ``caps`` (subscribing to newly readable docs and dropping revoked
ones) and sends local edits of cell docs as they happen. Tests, benchmarks and
bots use it; it is the reference for the protocol's client side.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode, urlparse, urlunparse

from pycrdt import Doc, Text, TransactionEvent
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from .documents import protocol as p
from .documents.anchors import b64, position_at
from .documents.docs import yrs_refused
from .documents.notebook import cell_doc, init_cell, init_index, init_out, out_doc, split_doc_name
from .documents.outputs import outputs_to_nbformat, widgets_root
from .types import INDEX_DOC

log = logging.getLogger(__name__)


class CollabAPIError(Exception):
    """An error answer of the service: ``status``, ``code``, ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class CommandError(Exception):
    """The server answered a WebSocket command with ``error``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class CollabClient:
    """REST calls with a Hub API token; :meth:`open` a notebook for live editing."""

    def __init__(self, base_url: str, token: str, *, request_timeout: float = 30.0) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.token = token
        self.request_timeout = request_timeout
        self.http = AsyncHTTPClient(force_instance=True)

    async def __aenter__(self) -> CollabClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    async def request(self, method: str, path: str, body: Any = None, *, raw: bool = False) -> Any:
        headers = {"Authorization": f"token {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = HTTPRequest(
            self.base_url + path,
            method=method,
            headers=headers,
            body=data if data is not None else (b"" if method in ("POST", "PUT") else None),
            request_timeout=self.request_timeout,
            follow_redirects=False,
        )
        try:
            resp = await self.http.fetch(req)
        except HTTPClientError as exc:
            if exc.response is None:
                raise
            try:
                err = json.loads(exc.response.body)
                raise CollabAPIError(exc.code, err.get("code", "error"), err.get("message", "")) from None
            except ValueError:
                raise CollabAPIError(exc.code, "error", exc.response.body.decode(errors="replace")[:200]) from None
        if raw:
            return resp.body
        return json.loads(resp.body) if resp.body else None

    async def me(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "api/me")
        return result

    async def list_notebooks(self) -> list[dict[str, Any]]:
        result = await self.request("GET", "api/notebooks")
        return list(result["notebooks"])

    async def create_notebook(self, name: str, content: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, **fields}
        if content is not None:
            body["content"] = content
        result: dict[str, Any] = await self.request("POST", "api/notebooks", body)
        return result

    async def get_notebook(self, nb_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"api/notebooks/{nb_id}")
        return result

    async def delete_notebook(self, nb_id: str) -> None:
        await self.request("DELETE", f"api/notebooks/{nb_id}")

    async def export(self, nb_id: str, *, comments: bool = False, widgets: bool = True) -> dict[str, Any]:
        """The notebook as nbformat v4 (with ``comments``: each cell's threads in its
        metadata, ``hub_collab.comments``; without ``widgets``: no widget state)."""
        query = "&".join(q for q, on in (("comments=1", comments), ("widgets=0", not widgets)) if on)
        query = f"?{query}" if query else ""
        result: dict[str, Any] = await self.request("GET", f"api/notebooks/{nb_id}/ipynb{query}")
        return result

    async def get_permissions(self, nb_id: str, cell_id: str | None = None) -> dict[str, Any]:
        path = f"api/notebooks/{nb_id}" + (f"/cells/{cell_id}" if cell_id else "") + "/permissions"
        result: dict[str, Any] = await self.request("GET", path)
        return result

    async def set_permissions(self, nb_id: str, cell_id: str | None = None, **fields: Any) -> dict[str, Any]:
        path = f"api/notebooks/{nb_id}" + (f"/cells/{cell_id}" if cell_id else "") + "/permissions"
        result: dict[str, Any] = await self.request("PUT", path, fields)
        return result

    async def chat_history(self, nb_id: str, before: int | None = None, limit: int | None = None) -> dict[str, Any]:
        """A page of the notebook's chat, oldest first: ``{messages, next_before}``."""
        query = urlencode({k: v for k, v in (("before", before), ("limit", limit)) if v is not None})
        result: dict[str, Any] = await self.request("GET", f"api/notebooks/{nb_id}/chat" + (f"?{query}" if query else ""))
        return result

    async def post_chat(self, nb_id: str, text: str) -> dict[str, Any]:
        """Post a message (bots): ``{message, warnings}``."""
        result: dict[str, Any] = await self.request("POST", f"api/notebooks/{nb_id}/chat", {"text": text})
        return result

    async def edit_chat(self, nb_id: str, msg_id: int, text: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("PUT", f"api/notebooks/{nb_id}/chat/{msg_id}", {"text": text})
        return result

    async def delete_chat(self, nb_id: str, msg_id: int) -> None:
        await self.request("DELETE", f"api/notebooks/{nb_id}/chat/{msg_id}")

    # -- comments (docs/comments.md) --------------------------------------------------------

    async def comment_threads(
        self, nb_id: str, cell_id: str | None = None, before: int | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        query = urlencode({k: v for k, v in (("cell_id", cell_id), ("before", before), ("limit", limit)) if v is not None})
        result: dict[str, Any] = await self.request("GET", f"api/notebooks/{nb_id}/comments" + (f"?{query}" if query else ""))
        return result

    async def create_thread(self, nb_id: str, cell_id: str, text: str, anchor: dict[str, str] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"cell_id": cell_id, "text": text}
        if anchor is not None:
            body["anchor"] = anchor
        result: dict[str, Any] = await self.request("POST", f"api/notebooks/{nb_id}/comments", body)
        return result

    async def comment_thread(self, nb_id: str, thread_id: int) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"api/notebooks/{nb_id}/comments/{thread_id}")
        return result

    async def reply(self, nb_id: str, thread_id: int, text: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", f"api/notebooks/{nb_id}/comments/{thread_id}", {"text": text})
        return result

    async def resolve_thread(self, nb_id: str, thread_id: int, resolved: bool = True) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "PUT", f"api/notebooks/{nb_id}/comments/{thread_id}", {"resolved": resolved}
        )
        return result

    async def edit_comment(self, nb_id: str, thread_id: int, comment_id: int, text: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "PUT", f"api/notebooks/{nb_id}/comments/{thread_id}/{comment_id}", {"text": text}
        )
        return result

    async def delete_comment(self, nb_id: str, thread_id: int, comment_id: int) -> None:
        await self.request("DELETE", f"api/notebooks/{nb_id}/comments/{thread_id}/{comment_id}")

    async def comment_summary(self, nb_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"api/notebooks/{nb_id}/comments/summary")
        return result

    async def comment_notices(self, nb_id: str, before: int | None = None, limit: int | None = None) -> dict[str, Any]:
        query = urlencode({k: v for k, v in (("before", before), ("limit", limit)) if v is not None})
        result: dict[str, Any] = await self.request(
            "GET", f"api/notebooks/{nb_id}/comments/notices" + (f"?{query}" if query else "")
        )
        return result

    async def mark_comments_read(self, nb_id: str, cell_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", f"api/notebooks/{nb_id}/comments/read", {"cell_id": cell_id})
        return result

    # -- history (docs/history.md) ---------------------------------------------------------

    async def _get(self, path: str, **query: Any) -> dict[str, Any]:
        args = urlencode({k: v for k, v in query.items() if v is not None})
        result: dict[str, Any] = await self.request("GET", path + (f"?{args}" if args else ""))
        return result

    async def cell_history(self, nb_id: str, cell_id: str, before: int | None = None, limit: int | None = None) -> dict[str, Any]:
        """A page of a cell's versions, newest first: ``{cell_id, versions, next_before}``."""
        return await self._get(f"api/notebooks/{nb_id}/cells/{cell_id}/history", before=before, limit=limit)

    async def cell_version(self, nb_id: str, cell_id: str, version: int) -> dict[str, Any]:
        """A version's ``source``, ``metadata``, the ``current`` source and the ``diff``."""
        return await self._get(f"api/notebooks/{nb_id}/cells/{cell_id}/history/{version}")

    async def restore_version(self, nb_id: str, cell_id: str, version: int) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", f"api/notebooks/{nb_id}/cells/{cell_id}/history/{version}/restore")
        return result

    async def cell_runs(self, nb_id: str, cell_id: str, before: int | None = None, limit: int | None = None) -> dict[str, Any]:
        return await self._get(f"api/notebooks/{nb_id}/cells/{cell_id}/runs", before=before, limit=limit)

    async def activity(self, nb_id: str, before: float | None = None, limit: int | None = None) -> dict[str, Any]:
        """A page of the notebook's activity, newest first: ``{items, next_before}``."""
        return await self._get(f"api/notebooks/{nb_id}/activity", before=before, limit=limit)

    async def notebook_at(self, nb_id: str, at: float) -> dict[str, Any]:
        """The notebook as it was at ``at`` (nbformat v4, the cells you may read now)."""
        return await self._get(f"api/notebooks/{nb_id}/history", at=repr(at))

    def ws_url(self, nb_id: str, epoch: str | None = None) -> str:
        parts = urlparse(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        query = urlencode({"epoch": epoch}) if epoch else ""
        return urlunparse((scheme, parts.netloc, parts.path + f"api/notebooks/{nb_id}/ws", "", query, ""))

    def open(self, nb_id: str, *, epoch: str | None = None, subscribe_all: bool = True) -> NotebookConnection:
        """A connection to use with ``async with`` (or call :meth:`NotebookConnection.connect`)."""
        return NotebookConnection(self, nb_id, epoch=epoch, subscribe_all=subscribe_all)


class NotebookConnection:
    """One live connection to one notebook."""

    def __init__(self, client: CollabClient, nb_id: str, *, epoch: str | None = None, subscribe_all: bool = True) -> None:
        self.client = client
        self.nb_id = nb_id
        self.epoch = epoch
        self.subscribe_all = subscribe_all
        self.ws: WebSocketClientConnection | None = None
        self.docs: dict[str, Doc[Any]] = {}
        self.synced_docs: set[str] = set()
        self.welcome: dict[str, Any] = {}
        self.caps: dict[str, Any] = {}
        self.messages: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.awareness: dict[int, dict[str, Any] | None] = {}
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._refs = itertools.count(1)
        self._pending: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self._remote = False
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._welcomed = asyncio.Event()
        self._awareness_clock = 0
        self.client_id_for_awareness: int | None = None
        self.listeners: list[Callable[[str, Any], None]] = []
        self.frames_received = 0
        #: the last ``kernel`` message (state, kernel_name, queue, running)
        self.kernel_state: dict[str, Any] = {}
        #: pending ``input_request`` messages for this user, by cell id
        self.input_requests: dict[str, dict[str, Any]] = {}
        self.bytes_received = 0

    async def __aenter__(self) -> NotebookConnection:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self, timeout: float = 30.0) -> None:
        req = HTTPRequest(
            self.client.ws_url(self.nb_id, self.epoch),
            headers={"Authorization": f"token {self.client.token}"},
            request_timeout=timeout,
        )
        self.ws = await websocket_connect(req, max_message_size=1 << 30)
        # No Nagle: tornado turns TCP_NODELAY off once the upgrade response is read, so a
        # command sent right after a frame the server does not answer (an awareness state,
        # an edit) waited for that frame's delayed ACK, about 40 ms (benchmarks/README.md).
        self.ws.stream.set_nodelay(True)
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())
        await asyncio.wait_for(self._welcomed.wait(), timeout)
        if self.close_code is None:
            # everything at once, as the browser does: welcome's caps list the readable cells
            wanted = [INDEX_DOC]
            if self.subscribe_all:
                cells = self.caps.get("cells", {})
                wanted += [name for cid in cells for name in (cell_doc(cid), out_doc(cid)) if self._readable(name)]
            self._subscribe(wanted)

    async def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)
        self.closed.set()

    # -- receiving ------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        assert self.ws is not None
        try:
            while True:
                msg = await self.ws.read_message()
                if msg is None:
                    break
                self.frames_received += 1
                self.bytes_received += len(msg)
                if isinstance(msg, bytes):
                    self._on_binary(msg)
                else:
                    self._on_json(json.loads(msg))
                self._changed.set()
        finally:
            self.close_code = self.ws.close_code if self.ws else None
            self._welcomed.set()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError(f"connection closed ({self.close_code})"))
            self.closed.set()
            self._changed.set()

    def _on_json(self, msg: dict[str, Any]) -> None:
        self.messages.append(msg)
        kind = msg.get("type")
        if kind == "welcome":
            self.welcome = msg
            self.caps = msg.get("caps", {})
            self.epoch = msg.get("epoch")
            self._welcomed.set()
        elif kind == "caps":
            self.caps = msg
            self._apply_caps()
        elif kind == "resync":
            name = msg.get("doc")
            if name == "*":
                self._drop_all()
            elif isinstance(name, str) and name in self.docs:
                self._drop(name)
                if self._readable(name):
                    self._subscribe([name])
        elif kind == "kernel":
            self.kernel_state = msg
        elif kind == "input_request":
            self.input_requests[str(msg.get("cell_id"))] = msg
        elif kind == "input_done":
            self.input_requests.pop(str(msg.get("cell_id")), None)
        elif kind in ("ack", "error"):
            if kind == "error":
                self.errors.append(msg)
            fut = self._pending.pop(msg.get("ref"), None) if msg.get("ref") is not None else None
            if fut is not None and not fut.done():
                fut.set_result(msg)
        for listener in self.listeners:
            listener("message", msg)

    def _on_binary(self, data: bytes) -> None:
        for entry in p.decode_frame(data):
            if entry.kind == p.MSG_AWARENESS:
                for st in p.decode_awareness(entry.payload, max_states=1 << 16):
                    self.awareness[st.client_id] = st.state
                continue
            doc = self.docs.get(entry.doc)
            if doc is None:
                continue
            try:
                if entry.sub == p.SYNC_STEP1:
                    self._send_bytes(p.sync_step2(entry.doc, doc.get_update(entry.payload)))
                    continue
                self._remote = True
                try:
                    doc.apply_update(entry.payload)
                finally:
                    self._remote = False
            except BaseException as exc:  # noqa: BLE001 (yrs panics are BaseExceptions)
                if not yrs_refused(exc):
                    raise
                # our copy cannot take what the server sent (it holds something the server
                # does not, such as what a test wrote raw): start the doc over, as on resync
                log.warning("could not apply what the server sent for %s; syncing it again", entry.doc)
                self._drop(entry.doc)
                if self._readable(entry.doc):
                    self._subscribe([entry.doc])
                continue
            if entry.sub == p.SYNC_STEP2:
                self.synced_docs.add(entry.doc)
                if entry.doc == INDEX_DOC:
                    self._subscribe_readable()
        for listener in self.listeners:
            listener("binary", data)

    # -- subscriptions ----------------------------------------------------------------------

    def _readable(self, name: str) -> bool:
        kind, cid = split_doc_name(name)
        if kind == "index":
            return "r" in str(self.caps.get("notebook", ""))
        cells = self.caps.get("cells", {})
        return bool(cid in cells and "r" in cells[cid])

    def _subscribe(self, names: list[str]) -> None:
        frames = []
        for name in names:
            if name in self.docs:
                continue
            doc: Doc[Any] = Doc()
            self.docs[name] = doc
            kind, _ = split_doc_name(name)
            if kind == "index":
                init_index(doc)
            elif kind == "cell":
                init_cell(doc)
                doc.observe(lambda event, name=name: self._on_local(name, event))
            else:
                init_out(doc)
            frames.append(p.sync_step1(name, doc.get_state()))
        if frames:
            self._send_bytes(b"".join(frames))

    def _subscribe_readable(self) -> None:
        if not self.subscribe_all:
            return
        wanted = []
        for cid in self.cell_ids():
            for name in (cell_doc(cid), out_doc(cid)):
                if name not in self.docs and self._readable(name):
                    wanted.append(name)
        self._subscribe(wanted)

    def _apply_caps(self) -> None:
        for name in list(self.docs):
            if not self._readable(name):
                self._drop(name)
        if INDEX_DOC not in self.docs and self._readable(INDEX_DOC):
            self._subscribe([INDEX_DOC])  # regained the notebook: its cells follow the index
        elif INDEX_DOC in self.synced_docs:
            self._subscribe_readable()

    def _drop(self, name: str) -> None:
        self.docs.pop(name, None)
        self.synced_docs.discard(name)

    def _drop_all(self) -> None:
        self.docs.clear()
        self.synced_docs.clear()

    def subscribe(self, *names: str) -> None:
        """Subscribe to docs explicitly (with ``subscribe_all=False``)."""
        self._subscribe(list(names))

    # -- sending ------------------------------------------------------------------------------

    def _send_bytes(self, data: bytes) -> None:
        if self.ws is not None and self.close_code is None and not self.closed.is_set():
            with contextlib.suppress(WebSocketClosedError):
                self.ws.write_message(data, binary=True)

    def send_raw(self, data: bytes | str) -> None:
        """Send a frame as it is (tests of bad input)."""
        assert self.ws is not None
        self.ws.write_message(data, binary=isinstance(data, bytes))

    def _on_local(self, name: str, event: TransactionEvent) -> None:
        if not self._remote:
            self._send_bytes(p.sync_update(name, event.update))

    async def command(self, kind: str, timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
        """Send a JSON command and wait for its ``ack``; raise :class:`CommandError` on ``error``."""
        ref = next(self._refs)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ref] = fut
        assert self.ws is not None
        await self.ws.write_message(json.dumps({"type": kind, "ref": ref, **fields}))
        reply = await asyncio.wait_for(fut, timeout)
        if reply.get("type") == "error":
            raise CommandError(reply.get("code", "error"), reply.get("message", ""))
        return reply

    async def insert_cell(self, index: int, cell_type: str = "code", source: str | None = None) -> str:
        fields: dict[str, Any] = {"index": index, "cell_type": cell_type}
        if source is not None:
            fields["source"] = source
        reply = await self.command("insert_cell", **fields)
        return str(reply["cell_id"])

    async def delete_cell(self, cell_id: str) -> None:
        await self.command("delete_cell", cell_id=cell_id)

    async def move_cell(self, cell_id: str, index: int) -> None:
        await self.command("move_cell", cell_id=cell_id, index=index)

    async def set_cell_type(self, cell_id: str, cell_type: str) -> None:
        await self.command("set_cell_type", cell_id=cell_id, cell_type=cell_type)

    async def execute(self, cell_id: str, *, source_hash: str | bool | None = True) -> dict[str, Any]:
        """Run a cell on the server (its copy of the source); the ack has ``queue_position``.

        ``source_hash=True`` sends the hash of the local copy of the source (if held),
        so a stale copy is refused with ``source_changed``; pass a string to send that.
        """
        fields: dict[str, Any] = {"cell_id": cell_id}
        if source_hash is True:
            if cell_doc(cell_id) in self.docs:
                fields["source_hash"] = hashlib.sha256(self.source(cell_id).encode()).hexdigest()
        elif isinstance(source_hash, str):
            fields["source_hash"] = source_hash
        return await self.command("execute", **fields)

    async def execute_all(self) -> dict[str, Any]:
        return await self.command("execute_all")

    async def execute_below(self, cell_id: str) -> dict[str, Any]:
        return await self.command("execute_below", cell_id=cell_id)

    async def interrupt(self) -> dict[str, Any]:
        return await self.command("interrupt")

    async def restart(self) -> dict[str, Any]:
        return await self.command("restart", timeout=90.0)

    async def shutdown_kernel(self) -> dict[str, Any]:
        return await self.command("shutdown_kernel")

    async def kernel_resources(self) -> dict[str, Any]:
        """Where this user may run the notebook's kernel (servers, gateway, kernelspecs)."""
        return dict((await self.command("kernel_resources", timeout=60.0))["resources"])

    async def select_kernel(self, resource: str | None = None, kernel_name: str | None = None, *, consent: bool | None = None) -> dict[str, Any]:
        """Switch to another resource and/or kernelspec; the ack's ``status`` is the new kernel status."""
        fields: dict[str, Any] = {
            k: v for k, v in (("resource", resource), ("kernel_name", kernel_name), ("consent", consent)) if v is not None
        }
        return dict((await self.command("select_kernel", **fields))["status"])

    async def start_server(self, server: str = "", timeout: float = 180.0) -> dict[str, Any]:
        """Start one of this user's servers; ``server_progress`` messages come meanwhile."""
        return await self.command("start_server", timeout=timeout, server=server)

    async def input_reply(self, cell_id: str, value: str) -> None:
        await self.command("input_reply", cell_id=cell_id, value=value)

    async def wait_executed(self, cell_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until the cell's execution has ended (``state.status`` set, idle); its state."""

        def ended() -> bool:
            doc = self.docs.get(out_doc(cell_id))
            if doc is None or out_doc(cell_id) not in self.synced_docs:
                return False
            state = self.out_state(cell_id)
            return state.get("execution_state") == "idle" and state.get("status") is not None

        await self.wait_for(ended, timeout)
        return self.out_state(cell_id)

    async def sync(self, timeout: float = 30.0) -> None:
        """Return once everything sent before is durable on the server."""
        await self.command("sync", timeout=timeout)

    async def chat(self, text: str) -> dict[str, Any]:
        """Post a chat message; the ``ack`` carries ``message`` and ``warnings``."""
        return await self.command("chat", text=text)

    async def chat_edit(self, msg_id: int, text: str) -> dict[str, Any]:
        return await self.command("chat_edit", id=msg_id, text=text)

    async def chat_delete(self, msg_id: int) -> dict[str, Any]:
        return await self.command("chat_delete", id=msg_id)

    async def chat_history(self, before: int | None = None, limit: int | None = None) -> dict[str, Any]:
        """A page of the chat, oldest first: the ``ack`` carries ``messages`` and ``next_before``."""
        fields = {k: v for k, v in (("before", before), ("limit", limit)) if v is not None}
        return await self.command("chat_history", **fields)

    def chat_events(self, kind: str = "chat") -> list[dict[str, Any]]:
        """Chat pushes received so far (``chat``, ``chat_edit`` or ``chat_delete``)."""
        return [m for m in self.messages if m.get("type") == kind]

    # -- comments (docs/comments.md) -------------------------------------------------------

    def anchor(self, cell_id: str, start: int, end: int) -> dict[str, str]:
        """An anchor on characters ``start``..``end`` (Python string positions) of the
        local copy of a cell's source: two Yjs relative positions, base64, as the
        browser makes them (the start sticks to the character after it, the end to
        the one before it)."""
        doc = self.docs[cell_doc(cell_id)]
        text = self.source(cell_id)

        def units(i: int) -> int:
            return len(text[:i].encode("utf-16-le")) // 2

        return {"start": b64(position_at(doc, units(start), 0)), "end": b64(position_at(doc, units(end), -1))}

    async def comment_create(self, cell_id: str, text: str, anchor: dict[str, str] | None = None) -> dict[str, Any]:
        """Open a thread: the ``ack`` carries ``thread``, ``comment`` and ``warnings``."""
        fields: dict[str, Any] = {"cell_id": cell_id, "text": text}
        if anchor is not None:
            fields["anchor"] = anchor
        return await self.command("comment_create", **fields)

    async def comment_reply(self, thread_id: int, text: str) -> dict[str, Any]:
        return await self.command("comment_reply", thread_id=thread_id, text=text)

    async def comment_edit(self, comment_id: int, text: str) -> dict[str, Any]:
        return await self.command("comment_edit", comment_id=comment_id, text=text)

    async def comment_delete(self, comment_id: int) -> dict[str, Any]:
        return await self.command("comment_delete", comment_id=comment_id)

    async def comment_resolve(self, thread_id: int, resolved: bool = True) -> dict[str, Any]:
        return await self.command("comment_resolve", thread_id=thread_id, resolved=resolved)

    async def comment_list(self, cell_id: str | None = None, before: int | None = None, limit: int | None = None) -> dict[str, Any]:
        fields: dict[str, Any] = {k: v for k, v in (("cell_id", cell_id), ("before", before), ("limit", limit)) if v is not None}
        return await self.command("comment_list", **fields)

    async def comment_summary(self) -> dict[str, Any]:
        return await self.command("comment_summary")

    async def comment_read(self, cell_id: str) -> dict[str, Any]:
        return await self.command("comment_read", cell_id=cell_id)

    async def comment_notices(self, before: int | None = None, limit: int | None = None) -> dict[str, Any]:
        fields: dict[str, Any] = {k: v for k, v in (("before", before), ("limit", limit)) if v is not None}
        return await self.command("comment_notices", **fields)

    def comment_events(self, kind: str = "comment") -> list[dict[str, Any]]:
        """Comment pushes received so far (``comment``, ``comment_thread``, ``comment_notice``, ``comment_seen``)."""
        return [m for m in self.messages if m.get("type") == kind]

    def set_awareness(self, state: dict[str, Any] | None) -> None:
        if self.client_id_for_awareness is None:
            self.client_id_for_awareness = int(time.time_ns() % (1 << 31))
        self._awareness_clock += 1
        payload = p.encode_awareness([p.AwarenessState(self.client_id_for_awareness, self._awareness_clock, state)])
        self._send_bytes(p.awareness_message(INDEX_DOC, payload))

    # -- reading and editing ------------------------------------------------------------------

    def cells(self) -> list[dict[str, Any]]:
        index = self.docs.get(INDEX_DOC)
        if index is None:
            return []
        cells, _ = init_index(index)
        return [dict(entry.to_py()) for entry in cells]

    def cell_ids(self) -> list[str]:
        return [c["id"] for c in self.cells()]

    def source(self, cell_id: str) -> str:
        doc = self.docs.get(cell_doc(cell_id))
        if doc is None:
            raise KeyError(f"cell {cell_id} is not readable or not subscribed")
        return str(doc.get("source", type=Text))

    def outputs(self, cell_id: str) -> list[dict[str, Any]]:
        doc = self.docs.get(out_doc(cell_id))
        if doc is None:
            raise KeyError(f"outputs of {cell_id} are not readable or not subscribed")
        return outputs_to_nbformat(doc)

    def widgets(self, cell_id: str) -> dict[str, dict[str, Any]]:
        """The widget models the cell's executions opened: comm id -> ``{model_name,
        model_module, state}`` (docs/widgets.md)."""
        doc = self.docs.get(out_doc(cell_id))
        if doc is None:
            raise KeyError(f"outputs of {cell_id} are not readable or not subscribed")
        return {k: dict(v) for k, v in (widgets_root(doc).to_py() or {}).items()}

    async def widget_update(self, cell_id: str, model_id: str, state: dict[str, Any]) -> dict[str, Any]:
        """Change a widget's state as the user (needs ``x`` on the cell)."""
        return await self.command("widget_update", cell_id=cell_id, model_id=model_id, state=state)

    def out_state(self, cell_id: str) -> dict[str, Any]:
        doc = self.docs.get(out_doc(cell_id))
        if doc is None:
            raise KeyError(f"outputs of {cell_id} are not readable or not subscribed")
        _, state = init_out(doc)
        return dict(state.to_py() or {})

    def edit(self, cell_id: str, index: int, delete: int = 0, insert: str = "") -> None:
        """Delete ``delete`` characters at character ``index`` and insert ``insert`` there.

        Positions are Python string positions (code points). pycrdt's ``Text`` counts
        UTF-8 bytes (yjs counts UTF-16 units); the conversion happens here.
        """
        doc = self.docs[cell_doc(cell_id)]
        text = doc.get("source", type=Text)
        current = str(text)
        if not 0 <= index <= len(current) or delete < 0 or index + delete > len(current):
            raise IndexError(f"edit of {delete} characters at {index} is outside a source of {len(current)}")
        start = len(current[:index].encode())
        end = start + len(current[index : index + delete].encode())
        with doc.transaction():
            if end > start:
                del text[start:end]
            if insert:
                text.insert(start, insert)

    def set_source(self, cell_id: str, source: str) -> None:
        doc = self.docs[cell_doc(cell_id)]
        text = doc.get("source", type=Text)
        with doc.transaction():
            if len(text):
                del text[0 : len(text)]
            if source:
                text.insert(0, source)

    # -- waiting --------------------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` holds (checked after every frame received)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            if self.closed.is_set() and not predicate():
                raise ConnectionError(f"connection closed ({self.close_code}) while waiting")
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError("condition not met in time")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def cell_ready(self, cell_id: str, timeout: float = 10.0) -> None:
        """Wait until the cell's source doc is synced here (for instance after an insert)."""
        await self.wait_for(lambda: cell_doc(cell_id) in self.synced_docs, timeout)

    async def synced(self, timeout: float = 30.0) -> None:
        """Wait until the index and every readable cell's docs are synced."""

        def done() -> bool:
            if INDEX_DOC not in self.synced_docs:
                return False
            if not self.subscribe_all:
                return True
            for cid in self.cell_ids():
                for name in (cell_doc(cid), out_doc(cid)):
                    if self._readable(name) and name not in self.synced_docs:
                        return False
            return True

        await self.wait_for(done, timeout)

    async def next_message(self, kind: str, timeout: float = 10.0, start: int = 0) -> dict[str, Any]:
        """The first JSON message of type ``kind`` received at or after position ``start``."""
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            for msg in self.messages[start:]:
                if msg.get("type") == kind:
                    found.append(msg)
                    return True
            return False

        await self.wait_for(seen, timeout)
        return found[0]

    def export(self) -> dict[str, Any]:
        """The local copy as nbformat-like cells (readable cells only)."""
        cells = []
        for entry in self.cells():
            cid = entry["id"]
            if cell_doc(cid) in self.docs:
                cells.append({"id": cid, "cell_type": entry["cell_type"], "source": self.source(cid)})
        return {"cells": cells}


@contextlib.asynccontextmanager
async def connect(base_url: str, token: str, nb_id: str) -> AsyncIterator[NotebookConnection]:
    """Shortcut: a client and an open, synced connection to one notebook."""
    async with CollabClient(base_url, token) as client:
        async with client.open(nb_id) as conn:
            await conn.synced()
            yield conn
