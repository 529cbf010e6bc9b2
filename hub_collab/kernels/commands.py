"""WebSocket commands for kernels: ``execute``, ``execute_all``, ``execute_below``,
``interrupt``, ``restart``, ``shutdown_kernel``, ``input_reply``, and for the REST
handlers on other replicas ``kernel_status`` and ``kernel_settings``.

Importing this module registers them with :func:`hub_collab.handlers.ws.command`
(:mod:`hub_collab.apihandlers.kernels` imports it). Each one hands the
session's identity and current rights to :class:`KernelService`, which checks
them; see docs/kernels.md for the messages.
"""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest, Forbidden
from ..handlers.ws import NotebookWebSocket, command
from .manager import KernelService


def _service(ws: NotebookWebSocket) -> KernelService:
    service: KernelService = ws.collab.kernels
    return service


@command("execute")
async def execute(ws: NotebookWebSocket, msg: dict[str, Any]) -> dict[str, Any]:
    ex, position = await _service(ws).execute(
        ws.room, ws.session.identity, ws.session.access, msg.get("cell_id"), msg.get("source_hash")
    )
    return {"cell_id": ex.cell_id, "queue_position": position}


@command("execute_all")
async def execute_all(ws: NotebookWebSocket, msg: dict[str, Any]) -> dict[str, Any]:
    queued, skipped = await _service(ws).execute_many(
        ws.room, ws.session.identity, ws.session.access
    )
    return {"cell_ids": [ex.cell_id for ex in queued], "skipped": skipped}


@command("execute_below")
async def execute_below(ws: NotebookWebSocket, msg: dict[str, Any]) -> dict[str, Any]:
    queued, skipped = await _service(ws).execute_many(
        ws.room, ws.session.identity, ws.session.access, start=msg.get("cell_id")
    )
    return {"cell_ids": [ex.cell_id for ex in queued], "skipped": skipped}


@command("interrupt")
async def interrupt(ws: NotebookWebSocket, msg: dict[str, Any]) -> dict[str, Any]:
    return await _service(ws).interrupt(ws.room, ws.session.identity, ws.session.access)


@command("restart")
async def restart(ws: NotebookWebSocket, msg: dict[str, Any]) -> dict[str, Any]:
    return await _service(ws).restart(ws.room, ws.session.identity, ws.session.access)


@command("shutdown_kernel")
async def shutdown_kernel(ws: NotebookWebSocket, msg: dict[str, Any]) -> dict[str, Any]:
    return await _service(ws).shutdown(ws.room, ws.session.identity, ws.session.access)


@command("input_reply")
def input_reply(ws: NotebookWebSocket, msg: dict[str, Any]) -> None:
    _service(ws).input_reply(ws.room, ws.session.identity, msg.get("cell_id"), msg.get("value"))


@command("kernel_status")
def kernel_status(ws: NotebookWebSocket, msg: dict[str, Any]) -> dict[str, Any]:
    return {"status": _service(ws).status(ws.room, ws.session.identity)}


@command("kernel_settings")
async def kernel_settings(ws: NotebookWebSocket, msg: dict[str, Any]) -> dict[str, Any]:
    access = ws.session.access
    if not (access.is_notebook_owner or ws.session.identity.admin):
        raise Forbidden("only the notebook's owner or an admin may change its settings")
    settings = msg.get("settings")
    if not isinstance(settings, dict):
        raise BadRequest("settings must be an object", code="invalid_command")
    return {"settings": await _service(ws).set_settings(ws.room, ws.session.identity, settings)}
