"""REST v1 for the history: a cell's versions, restore, past runs, the activity feed and
the notebook at a time.

| method and path | what |
| --- | --- |
| ``GET api/notebooks/{id}/cells/{cell_id}/history?before=&limit=`` | the cell's versions, newest first |
| ``GET api/notebooks/{id}/cells/{cell_id}/history/{version}`` | a version: source, metadata, diff to now |
| ``POST api/notebooks/{id}/cells/{cell_id}/history/{version}/restore`` | write it back (a new edit) |
| ``GET api/notebooks/{id}/cells/{cell_id}/runs?before=&limit=`` | past runs, who ran them, their outputs |
| ``GET api/notebooks/{id}/activity?before=&limit=`` | the activity feed, newest first |
| ``GET api/notebooks/{id}/history?at=`` | the notebook at a time, nbformat v4 (``&download=1``: as a file) |

Every handler runs the history command of the same name (:mod:`hub_collab.history.service`)
through the application's dispatcher, which checks its action again: one path for
the WebSocket and REST.
"""

from __future__ import annotations

import datetime
import re

from ..errors import BadRequest
from ..types import JSONDict
from .base import RequestSession
from .notebooks import NotebookAPIHandler


class HistoryAPIHandler(NotebookAPIHandler):
    async def run(self, nb_id: str, msg: JSONDict, cell_id: str | None = None) -> JSONDict:
        """Run the history command ``msg`` as the caller, once ``room_for`` allowed it."""
        cid = self.path_id(cell_id, "cell") if cell_id is not None else None
        room, access = await self.room_for(nb_id, cid)
        if cid is not None:
            msg = {**msg, "cell_id": cid}
        return await self.collab.commands.run(room, RequestSession(self.me, access), msg)

    def query(self, *names: str) -> JSONDict:
        """The query arguments ``names`` (None when absent); 400 naming any other."""
        unknown = sorted(set(self.request.query_arguments) - {*names, "_xsrf"})
        if unknown:
            shown = ", ".join(n[:40] for n in unknown[:5])
            raise BadRequest(
                f"unknown query argument(s): {shown} (expected {', '.join(names) or 'none'})", code="invalid_query"
            )
        return {name: self.get_query_argument(name, None) for name in names}


class CellHistoryHandler(HistoryAPIHandler):
    actions = {"GET": "read_cell"}
    denied = {"GET": "you may not read this cell"}

    async def get(self, nb_id: str, cell_id: str) -> None:
        self.write_json(await self.run(nb_id, {"type": "cell_history", **self.query("before", "limit")}, cell_id))


class CellVersionHandler(HistoryAPIHandler):
    actions = {"GET": "read_cell"}
    denied = {"GET": "you may not read this cell"}

    async def get(self, nb_id: str, cell_id: str, version: str) -> None:
        self.query()
        self.write_json(await self.run(nb_id, {"type": "cell_version", "version": version}, cell_id))


class RestoreHandler(HistoryAPIHandler):
    actions = {"POST": "write_cell"}
    denied = {"POST": "you may not change this cell"}

    async def post(self, nb_id: str, cell_id: str, version: str) -> None:
        self.query()
        if self.request.body.strip():
            body = self.json_body(max_bytes=1024)
            self.reject_unknown_fields(body, set())
        self.write_json(await self.run(nb_id, {"type": "restore_version", "version": version}, cell_id))


class CellRunsHandler(HistoryAPIHandler):
    actions = {"GET": "read_cell"}
    denied = {"GET": "you may not read this cell"}

    async def get(self, nb_id: str, cell_id: str) -> None:
        self.write_json(await self.run(nb_id, {"type": "cell_runs", **self.query("before", "limit")}, cell_id))


class ActivityHandler(HistoryAPIHandler):
    # the feed leaves out every cell the caller may not read now
    actions = {"GET": "open"}

    async def get(self, nb_id: str) -> None:
        self.write_json(await self.run(nb_id, {"type": "activity", **self.query("before", "limit")}))


class NotebookAtHandler(HistoryAPIHandler):
    # the notebook at a time, with the cells the caller may read now
    actions = {"GET": "open"}

    async def get(self, nb_id: str) -> None:
        args = self.query("at", "download")
        reply = await self.run(nb_id, {"type": "notebook_at", "at": args["at"]})
        if args["download"] in ("1", "true"):
            room, _ = await self.room_for(nb_id)
            when = datetime.datetime.fromtimestamp(float(reply["at"]), datetime.UTC).strftime("%Y%m%d-%H%M%S")
            safe = re.sub(r"[^A-Za-z0-9._-]+", "_", room.record.name).strip("_") or "notebook"
            safe = safe.removesuffix(".ipynb")
            self.set_header("Content-Disposition", f'attachment; filename="{safe}-{when}.ipynb"')
        self.write_json(reply["notebook"])


_NB = r"api/notebooks/([^/]+)"
_CELL = _NB + r"/cells/([^/]+)"
default_handlers = [
    (_CELL + r"/history", CellHistoryHandler),
    (_CELL + r"/history/([^/]+)", CellVersionHandler),
    (_CELL + r"/history/([^/]+)/restore", RestoreHandler),
    (_CELL + r"/runs", CellRunsHandler),
    (_NB + r"/activity", ActivityHandler),
    (_NB + r"/history", NotebookAtHandler),
]
