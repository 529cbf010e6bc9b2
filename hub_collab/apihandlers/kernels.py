"""REST v1 for kernels: execute a cell, drive the kernel, the notebook's kernel settings.

| method and path | what |
| --- | --- |
| ``POST api/notebooks/{id}/cells/{cell_id}/execute`` | queue the cell: 202 ``{cell_id, queue_position}``; with ``?wait=1``: 200 ``{status, execution_count, outputs}`` at its end |
| ``GET api/notebooks/{id}/kernel`` | ``{state, kernel_name, kernel_mode, resource, where, kept, queue, running}`` |
| ``DELETE api/notebooks/{id}/kernel`` | shut the kernel down (``?resource=&kernel_name=``: a kept one) |
| ``POST api/notebooks/{id}/kernel/interrupt`` · ``…/kernel/restart`` | interrupt · restart |
| ``GET api/notebooks/{id}/kernel/resources`` | where the caller may run kernels (servers, gateway, kernelspecs) |
| ``PUT api/notebooks/{id}/kernel/selection`` | switch to ``{resource?, kernel_name?, consent?}`` |
| ``POST api/notebooks/{id}/kernel/start-server`` | start the caller's server ``{server}``; answers when it is ready |
| ``GET``/``PUT api/notebooks/{id}/settings`` | ``{kernel_mode: "shared"|"per-user", kernel_name, resource}``; PUT: notebook owner or admin |

Every handler here runs a kernel command (:mod:`hub_collab.kernels.commands`)
through the application's dispatcher, which checks the command's action again
and runs it on the notebook's home replica, wherever the request landed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pycrdt import Doc, TransactionEvent

from ..documents.notebook import out_doc
from ..documents.outputs import outputs_to_nbformat, read_state
from ..documents.room import NotebookRoom
from ..documents.session import Session
from ..errors import BadRequest
from ..permissions.access import Access
from ..types import JSONDict
from .base import RequestSession
from .notebooks import NotebookAPIHandler


class KernelAPIHandler(NotebookAPIHandler):
    async def command(self, room: NotebookRoom, access: Access, msg: JSONDict) -> JSONDict:
        """Run a command as the caller (on the notebook's home replica)."""
        return await self.collab.commands.run(room, RequestSession(self.me, access), msg)

    def optional_json_body(self) -> dict[str, Any]:
        if not self.request.body.strip():
            return {}
        return self.json_body()


class ExecuteHandler(KernelAPIHandler):
    actions = {"POST": "execute"}
    denied = {"POST": "you may not execute this cell (it needs notebook x and cell r and x)"}

    async def post(self, nb_id: str, cell_id: str) -> None:
        cid = self.path_id(cell_id, "cell")
        room, access = await self.room_for(nb_id, cid)
        body = self.optional_json_body()
        unknown = set(body) - {"source_hash"}
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}", code="invalid_field")
        wait = self.get_argument("wait", "") in ("1", "true", "yes")
        session = RequestSession(self.me, access)
        before = read_state(_out_view(room, session, cid)).get("queued_at") if wait else None
        reply = await self.collab.commands.run(
            room, session, {"type": "execute", "cell_id": cid, "source_hash": body.get("source_hash")}
        )
        if not wait:
            self.write_json({"cell_id": cid, "queue_position": reply.get("queue_position")}, status=202)
            return
        state, doc = await _run_finished(room, session, cid, before)
        self.write_json(
            {
                "cell_id": cid,
                "status": state.get("status"),
                "execution_count": state.get("execution_count"),
                "outputs": outputs_to_nbformat(doc),
            }
        )


class KernelHandler(KernelAPIHandler):
    actions = {"GET": "open", "DELETE": "restart"}
    denied = {"DELETE": "you may not shut down this notebook's kernel (it needs notebook w and x)"}

    async def get(self, nb_id: str) -> None:
        room, access = await self.room_for(nb_id)
        self.write_json((await self.command(room, access, {"type": "kernel_status"}))["status"])

    async def delete(self, nb_id: str) -> None:
        room, access = await self.room_for(nb_id)
        msg: JSONDict = {"type": "shutdown_kernel"}
        for field in ("resource", "kernel_name"):
            value = self.get_argument(field, None)
            if value is not None:
                msg[field] = value
        self.write_json(await self.command(room, access, msg))


class InterruptHandler(KernelAPIHandler):
    actions = {"POST": "interrupt"}
    denied = {"POST": "you may not interrupt this notebook's kernel (it needs notebook x)"}

    async def post(self, nb_id: str) -> None:
        room, access = await self.room_for(nb_id)
        self.write_json(await self.command(room, access, {"type": "interrupt"}))


class RestartHandler(KernelAPIHandler):
    actions = {"POST": "restart"}
    denied = {"POST": "you may not restart this notebook's kernel (it needs notebook w and x)"}

    async def post(self, nb_id: str) -> None:
        room, access = await self.room_for(nb_id)
        self.write_json(await self.command(room, access, {"type": "restart"}))


class ResourcesHandler(KernelAPIHandler):
    actions = {"GET": "choose_kernel"}
    denied = {"GET": "you may not pick where this notebook's kernel runs (it needs notebook x)"}

    async def get(self, nb_id: str) -> None:
        room, access = await self.room_for(nb_id)
        self.write_json((await self.command(room, access, {"type": "kernel_resources"}))["resources"])


class SelectionHandler(KernelAPIHandler):
    actions = {"PUT": "choose_kernel"}
    denied = {"PUT": "you may not pick where this notebook's kernel runs (it needs notebook x)"}

    async def put(self, nb_id: str) -> None:
        room, access = await self.room_for(nb_id)
        body = self.json_body()
        unknown = set(body) - {"resource", "kernel_name", "consent"}
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))[:200]}", code="invalid_field")
        self.write_json((await self.command(room, access, {**body, "type": "select_kernel"}))["status"])


class StartServerHandler(KernelAPIHandler):
    actions = {"POST": "choose_kernel"}
    denied = {"POST": "you may not start servers from this notebook (it needs notebook x)"}

    async def post(self, nb_id: str) -> None:
        room, access = await self.room_for(nb_id)
        body = self.optional_json_body()
        unknown = set(body) - {"server"}
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))[:200]}", code="invalid_field")
        self.write_json(await self.command(room, access, {"type": "start_server", "server": body.get("server", "")}))


class SettingsHandler(KernelAPIHandler):
    actions = {"GET": "open", "PUT": "change_settings"}
    denied = {"PUT": "only the notebook's owner or an admin may change its settings"}

    async def get(self, nb_id: str) -> None:
        room, _ = await self.room_for(nb_id)
        self.write_json(self.collab.kernels.settings(room))

    async def put(self, nb_id: str) -> None:
        room, access = await self.room_for(nb_id)
        body = self.json_body()
        self.write_json((await self.command(room, access, {"type": "kernel_settings", "settings": body}))["settings"])


def _out_view(room: NotebookRoom, session: Session, cid: str) -> Doc[Any]:
    """The out doc ``session`` sees for the cell (its own in per-user mode, once it ran there)."""
    return room.docs[room.view_name(session, out_doc(cid))]


async def _run_finished(room: NotebookRoom, session: Session, cid: str, before: Any) -> tuple[dict[str, Any], Doc[Any]]:
    """The cell's out state and doc once the run queued after ``before`` (the previous
    run's ``queued_at``) has ended. The doc is written by the home replica; on another
    replica its updates arrive through the bus, perhaps only the final state of a catch-up."""
    doc = _out_view(room, session, cid)  # after the command: a new per-user view exists now
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[dict[str, Any]] = loop.create_future()

    def check() -> None:
        if fut.done():
            return
        state = read_state(doc)
        if state.get("queued_at") != before and state.get("execution_state") == "idle":
            fut.set_result(state)

    def changed(_event: TransactionEvent) -> None:
        loop.call_soon(check)  # the doc cannot be read while its transaction commits

    sub = doc.observe(changed)
    try:
        check()
        return await fut, doc
    finally:
        doc.unobserve(sub)


_NB = r"api/notebooks/([^/]+)"
default_handlers = [
    (_NB + r"/cells/([^/]+)/execute", ExecuteHandler),
    (_NB + r"/kernel", KernelHandler),
    (_NB + r"/kernel/interrupt", InterruptHandler),
    (_NB + r"/kernel/restart", RestartHandler),
    (_NB + r"/kernel/resources", ResourcesHandler),
    (_NB + r"/kernel/selection", SelectionHandler),
    (_NB + r"/kernel/start-server", StartServerHandler),
    (_NB + r"/settings", SettingsHandler),
]
