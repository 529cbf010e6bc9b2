"""Structure commands: the only writes to a notebook's ``index`` that clients can ask for.

``insert_cell``, ``delete_cell``, ``move_cell`` and ``set_cell_type`` change the
cell list (and create or drop the cells' docs and permissions); ``sync``
answers once everything the client sent before is durable. The functions here
take a :class:`~hub_collab.documents.room.NotebookRoom` and validate their
arguments; who may call them is declared where they are registered
(:func:`register_commands`) and checked by the command dispatcher
(:mod:`hub_collab.commands`), never here. Index writes happen on the notebook's
home replica only: the four structure commands are home commands.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pycrdt import Doc, Map

from ..commands import CommandContext, CommandRegistry
from ..errors import BadRequest, TooLarge
from ..ids import new_id
from ..types import JSONDict
from .notebook import CELL_TYPES, cell_doc, index_entry, init_cell, init_index, init_out, out_doc
from .room import NotebookRoom


def insert_cell(room: NotebookRoom, user: str, index: Any, cell_type: Any, source: Any = None) -> str:
    """Insert a new cell owned by ``user`` at ``index``; return its id."""
    if cell_type not in CELL_TYPES:
        raise BadRequest(f"cell_type must be one of {', '.join(CELL_TYPES)}, got {str(cell_type)[:40]!r}", code="invalid_command")
    cells, _ = init_index(room.index)
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= len(cells):
        raise BadRequest(f"index must be an integer from 0 to {len(cells)}", code="invalid_command")
    if source is not None and not isinstance(source, str):
        raise BadRequest("source must be a string", code="invalid_command")
    if source is not None and len(source.encode()) > room.max_doc_bytes:
        raise TooLarge("source is too large")
    cid = new_id()
    perms = room.permissions.create_cell(room.id, cid, user)
    cdoc: Doc[Any] = Doc()
    odoc: Doc[Any] = Doc()
    src, _, _ = init_cell(cdoc)
    init_out(odoc)
    room.add_doc(cell_doc(cid), cdoc)
    room.add_doc(out_doc(cid), odoc)
    if source:
        with cdoc.transaction():
            src += source
    with room.index.transaction():
        cells.insert(index, index_entry(cid, cell_type, perms.to_json()))
    # rights of every session change (a new cell); each one learns its caps for it
    room.refresh_all()
    return cid


def delete_cell(room: NotebookRoom, cid: str) -> None:
    """Delete a cell, its docs and its permissions."""
    i, _ = room.find_cell(cid)
    cells, _ = init_index(room.index)
    with room.index.transaction():
        del cells[i]
    for name in (cell_doc(cid), out_doc(cid)):
        room.drop_doc(name)
    room.permissions.delete_cell(room.id, cid)
    room.refresh_all()


def move_cell(room: NotebookRoom, cid: str, index: Any) -> bool:
    """Move a cell to ``index`` (its position after the move); False if it is there."""
    i, entry = room.find_cell(cid)
    cells, _ = init_index(room.index)
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cells):
        raise BadRequest(f"index must be an integer from 0 to {len(cells) - 1}", code="invalid_command")
    if index == i:
        return False
    data = entry.to_py()
    assert isinstance(data, dict)
    with room.index.transaction():
        del cells[i]
        cells.insert(index, Map(dict(data)))
    return True


def set_cell_type(room: NotebookRoom, cid: str, cell_type: Any) -> bool:
    """Change a cell's type; a cell that stops being code loses its outputs. False if it
    had that type."""
    _, entry = room.find_cell(cid)
    if cell_type not in CELL_TYPES:
        raise BadRequest(f"cell_type must be one of {', '.join(CELL_TYPES)}", code="invalid_command")
    if entry["cell_type"] == cell_type:
        return False
    entry["cell_type"] = cell_type
    if cell_type != "code":
        odoc = room.docs[out_doc(cid)]
        outputs, state = init_out(odoc)
        with odoc.transaction():
            if len(outputs):
                del outputs[0 : len(outputs)]
            state["execution_count"] = None
    return True


def mirror_permissions(room: NotebookRoom) -> None:
    """Mirror the permission summary of every cell into ``index`` (after a chmod)."""
    cells = room.permissions.cells(room.id)
    with room.index.transaction():
        for entry in room.cell_entries():
            perms = cells.get(str(entry["id"]))
            if perms is None:
                continue
            summary = perms.to_json()
            for key in ("owner", "group", "mode"):
                if entry.get(key) != summary[key]:
                    entry[key] = summary[key]
            if list(entry.get("acl") or []) != list(summary.get("acl", [])):
                entry["acl"] = list(summary.get("acl", []))


#: records an audit entry: (notebook, actor, action, target, detail); blocking (a thread runs it)
AuditFn = Callable[[str, str, str, str, dict[str, Any]], None]


def register_commands(registry: CommandRegistry, audit: AuditFn | None = None) -> None:
    """Register the structure commands and ``sync``; each structure change is recorded
    with ``audit`` (the store's audit log: the notebook's activity feed reads it)."""
    command = registry.command

    async def record(ctx: CommandContext, action: str, cell_id: str, **detail: Any) -> None:
        if audit is not None:
            await asyncio.get_running_loop().run_in_executor(
                None, audit, ctx.room.id, ctx.session.identity.name, action, f"cell:{cell_id}", detail
            )

    @command("insert_cell", action="insert_cell", home=True, denied="you may not insert cells in this notebook")
    async def _insert_cell(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        cell_type = msg.get("cell_type", "code")
        cid = insert_cell(ctx.room, ctx.session.identity.name, msg.get("index"), cell_type, msg.get("source"))
        await record(ctx, "insert_cell", cid, index=msg.get("index"), cell_type=cell_type)
        return {"cell_id": cid}

    @command("delete_cell", action="delete_cell", cell_arg="cell_id", home=True, denied="you may not delete this cell")
    async def _delete_cell(ctx: CommandContext, msg: JSONDict) -> None:
        delete_cell(ctx.room, msg["cell_id"])
        await record(ctx, "delete_cell", msg["cell_id"])

    @command("move_cell", action="move_cell", cell_arg="cell_id", home=True, denied="you may not move this cell")
    async def _move_cell(ctx: CommandContext, msg: JSONDict) -> None:
        if move_cell(ctx.room, msg["cell_id"], msg.get("index")):
            await record(ctx, "move_cell", msg["cell_id"], index=msg.get("index"))

    @command("set_cell_type", action="write_cell", cell_arg="cell_id", home=True, denied="you may not change this cell")
    async def _set_cell_type(ctx: CommandContext, msg: JSONDict) -> None:
        if set_cell_type(ctx.room, msg["cell_id"], msg.get("cell_type")):
            await record(ctx, "set_cell_type", msg["cell_id"], cell_type=msg.get("cell_type"))

    # Any connected client, whatever its rights now: its earlier edits may still be in flight.
    @command("sync", action=None)
    async def _sync(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        """Acknowledge once everything this client sent before is durable in the store."""
        await ctx.room.update_log.flush()
        return {"durable": True}
