"""REST v1 for kernels: execute a cell, drive the kernel, the notebook's kernel settings.

| method and path | what |
| --- | --- |
| ``POST api/notebooks/{id}/cells/{cell_id}/execute`` | queue the cell: 202 ``{cell_id, queue_position}``; with ``?wait=1``: 200 ``{status, execution_count, outputs}`` at its end |
| ``GET api/notebooks/{id}/kernel`` | ``{state, kernel_name, kernel_mode, queue, running}`` |
| ``DELETE api/notebooks/{id}/kernel`` | shut the kernel down |
| ``POST api/notebooks/{id}/kernel/interrupt`` · ``…/kernel/restart`` | interrupt · restart |
| ``GET``/``PUT api/notebooks/{id}/settings`` | ``{kernel_mode: "shared"|"per-user", kernel_name}``; PUT: notebook owner or admin |

Rights are checked by :class:`~hub_collab.kernels.manager.KernelService` (the
same checks as the WebSocket commands, which this module also registers).
"""

from __future__ import annotations

import asyncio
from typing import Any

from pycrdt import TransactionEvent

from ..documents.notebook import out_doc
from ..documents.room import NotebookRoom
from ..documents.session import Session
from ..errors import BadRequest, Forbidden
from ..kernels import commands  # noqa: F401  (registers the WebSocket commands)
from ..kernels.manager import KernelService
from ..kernels.outputs import outputs_to_nbformat, read_state
from ..permissions.access import Identity
from .notebooks import NotebookAPIHandler


class KernelAPIHandler(NotebookAPIHandler):
    @property
    def kernels(self) -> KernelService:
        service: KernelService = self.collab.kernels
        return service

    def remote_home(self, room: NotebookRoom) -> Any:
        """The replicator if another replica is this notebook's home, else None."""
        rep = room.replicator
        return rep if rep is not None and not rep.is_home(room.id) else None

    async def on_home(self, room: NotebookRoom, msg: dict[str, Any]) -> dict[str, Any]:
        """Run a kernel command on the home replica (this request landed elsewhere)."""
        rep = self.remote_home(room)
        session = _RequestSession(self.me)
        session.access = room.compute_access_for(self.me)
        result: dict[str, Any] = await rep.forward(room, session, msg)
        return result

    def optional_json_body(self) -> dict[str, Any]:
        if not self.request.body.strip():
            return {}
        return self.json_body()


class ExecuteHandler(KernelAPIHandler):
    async def post(self, nb_id: str, cell_id: str) -> None:
        room, access = await self.room_for(nb_id)
        cid = self.path_id(cell_id, "cell")
        body = self.optional_json_body()
        unknown = set(body) - {"source_hash"}
        if unknown:
            raise BadRequest(
                f"unknown field(s): {', '.join(sorted(unknown))}", code="invalid_field"
            )
        wait = self.get_argument("wait", "") in ("1", "true", "yes")
        if self.remote_home(room) is not None:
            done = _run_finished(room, cid) if wait else None
            reply = await self.on_home(room, {"type": "execute", "cell_id": cid, "source_hash": body.get("source_hash")})
            if done is None:
                self.write_json({"cell_id": cid, "queue_position": reply.get("queue_position")}, status=202)
                return
            state = await done
            doc = room.docs[out_doc(cid)]
            self.write_json({"cell_id": cid, "status": state.get("status"), "execution_count": state.get("execution_count"), "outputs": outputs_to_nbformat(doc)})
            return
        ex, position = await self.kernels.execute(
            room, self.me, access, cid, body.get("source_hash")
        )
        if not wait:
            self.write_json({"cell_id": cid, "queue_position": position}, status=202)
            return
        status = await asyncio.shield(ex.done)
        self.write_json(
            {
                "cell_id": cid,
                "status": status,
                "execution_count": ex.execution_count,
                "outputs": outputs_to_nbformat(ex.doc),
            }
        )


class KernelHandler(KernelAPIHandler):
    async def get(self, nb_id: str) -> None:
        room, _ = await self.room_for(nb_id)
        if self.remote_home(room) is not None:
            self.write_json((await self.on_home(room, {"type": "kernel_status"}))["status"])
            return
        self.write_json(self.kernels.status(room, self.me))

    async def delete(self, nb_id: str) -> None:
        room, access = await self.room_for(nb_id)
        if self.remote_home(room) is not None:
            self.write_json(await self.on_home(room, {"type": "shutdown_kernel"}))
            return
        self.write_json(await self.kernels.shutdown(room, self.me, access))


class KernelActionHandler(KernelAPIHandler):
    async def post(self, nb_id: str, action: str) -> None:
        room, access = await self.room_for(nb_id)
        if self.remote_home(room) is not None:
            self.write_json(await self.on_home(room, {"type": action}))
            return
        if action == "interrupt":
            result = await self.kernels.interrupt(room, self.me, access)
        else:
            result = await self.kernels.restart(room, self.me, access)
        self.write_json(result)


class SettingsHandler(KernelAPIHandler):
    async def get(self, nb_id: str) -> None:
        room, _ = await self.room_for(nb_id)
        self.write_json(self.kernels.settings(room))

    async def put(self, nb_id: str) -> None:
        room, access = await self.room_for(nb_id)
        if not (access.is_notebook_owner or self.me.admin):
            raise Forbidden("only the notebook's owner or an admin may change its settings")
        body = self.json_body()
        if self.remote_home(room) is not None:
            self.write_json((await self.on_home(room, {"type": "kernel_settings", "settings": body}))["settings"])
            return
        self.write_json(await self.kernels.set_settings(room, self.me, body))


class _RequestSession(Session):
    """A REST request as the home replica sees it when it runs a forwarded command."""

    def __init__(self, identity: Identity) -> None:
        super().__init__(identity)
        self.session_id = ""

    def send_bytes(self, data: bytes) -> None:
        return None

    def send_json(self, message: dict[str, Any]) -> None:
        return None

    def close(self, code: int = 1000, reason: str = "") -> None:
        return None


def _run_finished(room: NotebookRoom, cid: str) -> asyncio.Future[dict[str, Any]]:
    """A future set with the cell's out state once a run that starts from now has ended
    (the home writes ``out:<cell>``; its updates reach this replica through the bus)."""
    doc = room.docs[out_doc(cid)]
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[dict[str, Any]] = loop.create_future()
    before = read_state(doc).get("queued_at")

    def check() -> None:
        if fut.done():
            return
        state = read_state(doc)
        # a new run has a new queued_at; it is over once the cell is idle again (this
        # replica may see only the final state, for instance through a catch-up)
        if state.get("queued_at") != before and state.get("execution_state") == "idle":
            fut.set_result(state)
            doc.unobserve(sub)

    def changed(_event: TransactionEvent) -> None:
        loop.call_soon(check)  # the doc cannot be read while its transaction commits

    sub = doc.observe(changed)
    return fut


_NB = r"api/notebooks/([^/]+)"
default_handlers = [
    (_NB + r"/cells/([^/]+)/execute", ExecuteHandler),
    (_NB + r"/kernel", KernelHandler),
    (_NB + r"/kernel/(interrupt|restart)", KernelActionHandler),
    (_NB + r"/settings", SettingsHandler),
]
