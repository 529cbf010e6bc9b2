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

from ..errors import BadRequest, Forbidden
from ..kernels import commands  # noqa: F401  (registers the WebSocket commands)
from ..kernels.manager import KernelService
from ..kernels.outputs import outputs_to_nbformat
from .notebooks import NotebookAPIHandler


class KernelAPIHandler(NotebookAPIHandler):
    @property
    def kernels(self) -> KernelService:
        service: KernelService = self.collab.kernels
        return service

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
        ex, position = await self.kernels.execute(
            room, self.me, access, cid, body.get("source_hash")
        )
        if self.get_argument("wait", "") not in ("1", "true", "yes"):
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
        self.write_json(self.kernels.status(room, self.me))

    async def delete(self, nb_id: str) -> None:
        room, access = await self.room_for(nb_id)
        self.write_json(await self.kernels.shutdown(room, self.me, access))


class KernelActionHandler(KernelAPIHandler):
    async def post(self, nb_id: str, action: str) -> None:
        room, access = await self.room_for(nb_id)
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
        self.write_json(await self.kernels.set_settings(room, self.me, body))


_NB = r"api/notebooks/([^/]+)"
default_handlers = [
    (_NB + r"/cells/([^/]+)/execute", ExecuteHandler),
    (_NB + r"/kernel", KernelHandler),
    (_NB + r"/kernel/(interrupt|restart)", KernelActionHandler),
    (_NB + r"/settings", SettingsHandler),
]
