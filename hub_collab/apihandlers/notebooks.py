"""REST v1: ``api/me``, notebooks, export, permissions and the audit log.

Each handler declares the action each of its methods needs (``actions``);
:meth:`NotebookAPIHandler.room_for` checks it. Deleting a notebook is one
explicit step, :func:`hub_collab.lifecycle.delete_notebook`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from tornado import web

from ..documents.notebook import index_cells
from ..documents.room import NotebookRoom
from ..errors import BadRequest, Forbidden, NotFound
from ..fields import GROUP_RE, group_field, mode_field
from ..permissions.access import CELL_ACTIONS, Access, check_action
from ..permissions.posix import PermissionSyntaxError, Perms, format_mode, parse_acl
from ..store import NotebookRecord
from .base import APIHandler


class MeHandler(APIHandler):
    actions = {"GET": None}

    def get(self) -> None:
        me = self.me
        self.write_json({"name": me.name, "groups": sorted(me.groups), "admin": me.admin})


class NotebookAPIHandler(APIHandler):
    """Helpers shared by the per-notebook handlers."""

    #: the message of the 403 when the declared action is refused, per method
    denied: ClassVar[Mapping[str, str]] = {}

    async def room_for(self, nb_id: str, cell_id: str | None = None) -> tuple[NotebookRoom, Access]:
        """The notebook's room and the caller's rights, once the action declared for this
        method is allowed (on ``cell_id`` for a cell action). Unknown and unreadable
        notebooks are the same 404; an unknown cell is 404 ``unknown_cell``."""
        nb_id = self.path_id(nb_id, "notebook")
        room = await self.collab.rooms.get(nb_id)
        access = room.compute_access_for(self.me)
        if not access.can("open"):
            raise NotFound("no such notebook", code="unknown_notebook")
        if cell_id is not None and f"cell:{cell_id}" not in room.docs:
            raise NotFound("no such cell", code="unknown_cell")
        action = self.action
        if action is not None and action != "open":
            method = self.request.method or ""
            self.require(access, action, cell_id if action in CELL_ACTIONS or action == "chmod" else None, self.denied.get(method, ""))
        return room, access

    def require(self, access: Access, action: str, cell_id: str | None = None, message: str = "") -> None:
        """403 unless ``access`` allows ``action`` (for a right that depends on the request,
        such as ``chown`` when the body changes the owner)."""
        if not access.can(check_action(action), cell_id):
            what = "this cell" if cell_id is not None else "this notebook"
            raise Forbidden(message or f"you may not {action.replace('_', ' ')} {what}")

    def reject_unknown_fields(self, body: dict[str, Any], known: set[str]) -> None:
        unknown = sorted(set(body) - known)
        if unknown:
            names = ", ".join(name[:40] for name in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
            raise BadRequest(f"unknown field(s): {names} (expected {', '.join(sorted(known))})", code="invalid_field")

    def parse_mode_field(self, body: dict[str, Any], key: str, current: int) -> int | None:
        return mode_field(body, key, current)

    def parse_acl_field(self, body: dict[str, Any], key: str) -> Any:
        if key not in body:
            return None
        value = body[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadRequest(f"{key} must be a list of strings such as \"user:bob:rw-\"", code="invalid_acl")
        try:
            return parse_acl(value)
        except PermissionSyntaxError as exc:
            raise BadRequest(f"{key}: {exc}", code="invalid_acl") from exc

    def parse_group_field(self, body: dict[str, Any], key: str = "group") -> str | None:
        return group_field(body, key)

    def require_chgrp(self, access: Access, old: str, new: str, what: str) -> None:
        """chgrp as in POSIX: whoever may chmod an object may give it to a group they are a
        member of (or to no group); any other group needs ``chgrp_any``."""
        if new == old or not new or new in access.identity.groups:
            return
        self.require(
            access,
            "chgrp_any",
            message=f"you may give {what} only to a group you are a member of, and you are not in "
            f"{new!r} (the notebook's owner or an admin may give it to any group)",
        )


class NotebooksHandler(NotebookAPIHandler):
    # the list holds only the notebooks the caller may open
    actions = {"GET": None, "POST": None}

    async def get(self) -> None:
        me = self.me
        out = []
        for record in await self.in_thread(self.collab.store.list_notebooks):
            access = self.collab.permissions.access(me, record.id)
            if access.can("open"):
                perms = self.collab.permissions.notebook(record.id)
                out.append({**record.to_json(), "owner": perms.owner, "group": perms.group, "mode": format_mode(perms.mode), "caps": access.caps_json()["notebook"]})
        self.write_json({"notebooks": out})

    async def post(self) -> None:
        # The body is parsed, checked against the import limits and turned into docs in an
        # import worker process (hub_collab.documents.importer), not here.
        created = await self.collab.rooms.import_notebook(self.me, self.checked_body())
        record = created.record
        self.set_header("Location", f"{self.collab.base_url}api/notebooks/{record.id}")
        # the creator's rights on every cell: decided on a thread (thousands of cells)
        access = await self.in_thread(self.collab.permissions.access, self.me, record.id)
        self.write_json(self.notebook_model(record, created.cells, access, []), status=201)

    def notebook_model(
        self, record: NotebookRecord, cells: list[dict[str, Any]], access: Access, presence: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """``GET api/notebooks/{id}``: metadata, ``cells`` (index entries), caps, presence."""
        perms = self.collab.permissions.notebook(record.id)
        return {
            **record.to_json(),
            "owner": perms.owner,
            "group": perms.group,
            "mode": format_mode(perms.mode),
            "cells": [{**entry, "readable": access.can("read_cell", entry["id"])} for entry in cells],
            "caps": access.caps_json(),
            "presence": presence,
        }

    def room_model(self, room: NotebookRoom, access: Access) -> dict[str, Any]:
        return self.notebook_model(room.record, index_cells(room.index), access, room.awareness.presence())


class NotebookHandler(NotebooksHandler):
    actions = {"GET": "open", "DELETE": "delete_notebook"}
    denied = {"DELETE": "only the notebook's owner or an admin may delete it"}
    post = web.RequestHandler.post  # type: ignore[assignment]  # 405: the collection's POST is not this one

    async def get(self, nb_id: str) -> None:  # type: ignore[override]
        room, access = await self.room_for(nb_id)
        self.write_json(self.room_model(room, access))

    async def delete(self, nb_id: str) -> None:
        room, _ = await self.room_for(nb_id)
        await self.collab.lifecycle.delete_notebook(room.id, self.me)
        self.set_status(204)
        self.finish()


class ExportHandler(NotebookAPIHandler):
    # hidden cells are left out (read_cell per cell); ?comments=1: their threads too;
    # ?widgets=0: without the widget state
    actions = {"GET": "open"}

    async def get(self, nb_id: str) -> None:
        room, access = await self.room_for(nb_id)
        flag = self.get_argument("comments", "")
        widgets = self.get_argument("widgets", "")
        for name, value in (("comments", flag), ("widgets", widgets)):
            if value not in ("", "0", "1", "false", "true"):
                raise BadRequest(f"{name} must be 1 or 0", code="invalid_query")
        nb = self.collab.rooms.export(room, access, widgets=widgets not in ("0", "false"))
        if flag in ("1", "true"):
            threads = await self.collab.comments.export_threads(room, access)
            for cell in nb["cells"]:
                found = threads.get(cell.get("id", ""))
                if found:
                    meta = dict(cell.get("metadata") or {})
                    ours = meta.get("hub_collab")
                    meta["hub_collab"] = {**(ours if isinstance(ours, dict) else {}), "comments": found}
                    cell["metadata"] = meta
        if self.get_argument("download", "") in ("1", "true"):
            safe = re.sub(r"[^A-Za-z0-9._-]+", "_", room.record.name).strip("_") or "notebook"
            if not safe.endswith(".ipynb"):
                safe += ".ipynb"
            self.set_header("Content-Disposition", f'attachment; filename="{safe}"')
        self.write_json(nb)


class NotebookPermissionsHandler(NotebookAPIHandler):
    # a body that changes the owner also needs chown
    actions = {"GET": "open", "PUT": "chmod"}
    denied = {"PUT": "only the notebook's owner or an admin may change its permissions"}

    def model(self, nb: str) -> dict[str, Any]:
        perms = self.collab.permissions.notebook(nb)
        default_mode, default_acl = self.collab.permissions.default_cell(nb)
        return {
            **perms.to_json(),
            "default_cell_mode": format_mode(default_mode),
            "default_acl": Perms(perms.owner, perms.group, default_mode, default_acl).to_json()["acl"],
        }

    async def get(self, nb_id: str) -> None:
        room, _ = await self.room_for(nb_id)
        self.write_json(self.model(room.id))

    async def put(self, nb_id: str) -> None:
        # who may not chmod the notebook gets 403 here, before the body is looked at
        room, access = await self.room_for(nb_id)
        body = self.json_body()
        self.reject_unknown_fields(body, {"owner", "group", "mode", "acl", "default_cell_mode", "default_acl"})
        perms = self.collab.permissions.notebook(room.id)
        default_mode, default_acl = self.collab.permissions.default_cell(room.id)
        owner = body.get("owner", perms.owner)
        if owner != perms.owner:
            self.require(access, "chown", message="only the notebook's owner or an admin may change its owner")
            if not isinstance(owner, str) or not GROUP_RE.match(owner) or not owner:
                raise BadRequest("owner must be a Hub user name", code="invalid_owner")
        group = self.parse_group_field(body)
        mode = self.parse_mode_field(body, "mode", perms.mode)
        acl = self.parse_acl_field(body, "acl")
        new_default_mode = self.parse_mode_field(body, "default_cell_mode", default_mode)
        new_default_acl = self.parse_acl_field(body, "default_acl")
        new = Perms(
            owner=owner,
            group=perms.group if group is None else group,
            mode=perms.mode if mode is None else mode,
            acl=perms.acl if acl is None else acl,
        )
        self.require_chgrp(access, perms.group, new.group, "the notebook")
        old_json, new_json = self.collab.permissions.set_notebook(
            room.id, new, default_cell_mode=new_default_mode, default_acl=new_default_acl
        )
        if new_json != old_json:  # a change that changes nothing was not written: nothing to record
            await self.in_thread(self.collab.store.add_audit, room.id, self.me.name, "chmod", "notebook", {"old": old_json, "new": new_json})
        self.write_json(self.model(room.id))


class CellPermissionsHandler(NotebookAPIHandler):
    # GET: anyone who may open the notebook sees who may do what with its cells;
    # a body that changes the owner also needs chown
    actions = {"GET": "open", "PUT": "chmod"}
    denied = {"PUT": "only the cell's owner, the notebook's owner or an admin may change its permissions"}

    async def cell_of(self, nb_id: str, cell_id: str) -> tuple[NotebookRoom, Access, str]:
        cid = self.path_id(cell_id, "cell")
        room, access = await self.room_for(nb_id, cid)
        return room, access, cid

    async def get(self, nb_id: str, cell_id: str) -> None:
        room, access, cid = await self.cell_of(nb_id, cell_id)
        self.write_json(self.collab.permissions.cell(room.id, cid).to_json())

    async def put(self, nb_id: str, cell_id: str) -> None:
        # who may not chmod the cell gets 403 here, before the body is looked at
        room, access, cid = await self.cell_of(nb_id, cell_id)
        body = self.json_body()
        self.reject_unknown_fields(body, {"owner", "group", "mode", "acl"})
        perms = self.collab.permissions.cell(room.id, cid)
        owner = body.get("owner", perms.owner)
        if owner != perms.owner:
            self.require(access, "chown", message="only the notebook's owner or an admin may change a cell's owner")
            if not isinstance(owner, str) or not owner or not GROUP_RE.match(owner):
                raise BadRequest("owner must be a Hub user name", code="invalid_owner")
        group = self.parse_group_field(body)
        mode = self.parse_mode_field(body, "mode", perms.mode)
        acl = self.parse_acl_field(body, "acl")
        new = Perms(
            owner=owner,
            group=perms.group if group is None else group,
            mode=perms.mode if mode is None else mode,
            acl=perms.acl if acl is None else acl,
        )
        self.require_chgrp(access, perms.group, new.group, "this cell")
        old_json, new_json = self.collab.permissions.set_cell(room.id, cid, new)
        if new_json != old_json:  # a change that changes nothing was not written: nothing to record
            await self.in_thread(self.collab.store.add_audit, room.id, self.me.name, "chmod", f"cell:{cid}", {"old": old_json, "new": new_json})
        self.write_json(self.collab.permissions.cell(room.id, cid).to_json())


class AuditHandler(NotebookAPIHandler):
    actions = {"GET": "read_audit"}
    denied = {"GET": "only the notebook's owner or an admin may read its audit log"}

    async def get(self, nb_id: str) -> None:
        room, _ = await self.room_for(nb_id)
        try:
            limit = min(500, max(1, int(self.get_argument("limit", "100"))))
            before_arg = self.get_argument("before", "")
            before = int(before_arg) if before_arg else None
        except ValueError as exc:
            raise BadRequest("limit and before must be integers", code="invalid_query") from exc
        events = await self.in_thread(lambda: self.collab.store.list_audit(room.id, before=before, limit=limit))
        self.write_json({"events": events})


_NB = r"api/notebooks/([^/]+)"
default_handlers = [
    (r"api/me", MeHandler),
    (r"api/notebooks", NotebooksHandler),
    (_NB, NotebookHandler),
    (_NB + r"/ipynb", ExportHandler),
    (_NB + r"/permissions", NotebookPermissionsHandler),
    (_NB + r"/cells/([^/]+)/permissions", CellPermissionsHandler),
    (_NB + r"/audit", AuditHandler),
]
