"""What users may ask of the history: :class:`HistoryService` and its commands.

| command | action | answer |
| --- | --- | --- |
| ``cell_history {cell_id, before?, limit?}`` | ``read_cell`` | the cell's versions, newest first |
| ``cell_version {cell_id, version}`` | ``read_cell`` | a version's source and metadata, and a diff to now |
| ``restore_version {cell_id, version}`` | ``write_cell`` | the version's source and metadata written back, as a new edit |
| ``cell_runs {cell_id, before?, limit?}`` | ``read_cell`` | past runs: who, when, how, their outputs |
| ``activity {before?, limit?}`` | ``open`` | the notebook's activity feed |
| ``notebook_at {at}`` | ``open`` | the notebook as it was at a time (nbformat) |

The REST handlers (:mod:`hub_collab.apihandlers.history`) run the same commands
through the dispatcher.

**Rights apply to the past.** Everything is filtered by what the asker may read
*now*: the cell commands need ``read_cell`` (``write_cell`` to restore) on a cell that
exists now; the feed and the notebook at a time leave out, whole, every cell the asker
may not read now (:func:`readable_past`): no version, text, size, author or run of it.
A deleted cell has no rights any more: its past is shown to the notebook's owner and
admins only (who may read every cell).

Every request's work is bounded: pages of at most :data:`MAX_LIMIT` entries, scans of at
most :data:`SCAN_ROWS` rows, run outputs up to :data:`MAX_RUN_OUTPUT_BYTES`.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pycrdt import Doc, Map, Text

from ..commands import CommandContext, CommandRegistry
from ..documents.notebook import (
    cell_doc,
    export_cell,
    export_notebook,
    index_cells,
    init_cell,
    init_index,
    out_doc,
    readable_entries,
    split_doc_name,
)
from ..documents.outputs import outputs_to_nbformat
from ..documents.session import Session, acting
from ..errors import BadRequest, Forbidden, NotFound, TooLarge
from ..permissions.access import Access
from ..permissions.posix import R
from ..types import INDEX_DOC, JSONDict
from .store import RowInfo, rebuild
from .versions import baseline_version, boundary, diff, group

if TYPE_CHECKING:
    from ..chat import ChatService
    from ..documents.room import NotebookRoom
    from ..store import Store

T = TypeVar("T")

#: most entries in one page (versions, runs, activity)
MAX_LIMIT = 200
#: the page size when the asker does not say
DEFAULT_LIMIT = 50
#: most history rows one request reads (a timeline page, the feed's edits)
SCAN_ROWS = 20_000
#: runs in one page of ``cell_runs``, at most
MAX_RUNS = 20
#: outputs of the runs of one page, at most (JSON bytes); later runs come without them
MAX_RUN_OUTPUT_BYTES = 4 * 1024 * 1024
#: a time must be a finite number of seconds in this range
_TIME_RANGE = (0.0, 1e11)
#: audit actions of the feed, by kind
_STRUCTURE = frozenset({"insert_cell", "delete_cell", "move_cell", "set_cell_type"})
_KERNEL = frozenset({"interrupt", "restart", "shutdown", "settings", "select_kernel", "start_server"})


# -- request fields ---------------------------------------------------------------------------


def int_field(value: Any, name: str, lo: int, hi: int, *, code: str = "invalid_query") -> int:
    """An integer from JSON or a query string within ``lo..hi``; 400 otherwise."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise BadRequest(f"{name} must be an integer from {lo} to {hi}, got {str(value)[:40]!r}", code=code)
    return value


def version_id(value: Any) -> int:
    """A version id (a history row id, or 0 for the baseline); one that cannot exist is a
    404 like an unknown one."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise NotFound("no such version of this cell", code="unknown_version")
    return value


def time_field(value: Any, name: str) -> float:
    """A time (seconds since the epoch) from JSON or a query string; 400 otherwise."""
    if isinstance(value, str) and len(value) <= 32:
        try:
            value = float(value)
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest(f"{name} must be a time in seconds since 1970, got {str(value)[:40]!r}", code="invalid_query")
    if not _TIME_RANGE[0] <= value <= _TIME_RANGE[1]:
        raise BadRequest(f"{name} must be from {_TIME_RANGE[0]:g} to {_TIME_RANGE[1]:g}", code="invalid_query")
    return float(value)


def optional(value: Any) -> Any:
    return None if value is None or value == "" else value


# -- rights -----------------------------------------------------------------------------------


def readable_past(access: Access, cell_id: str) -> bool:
    """May ``access`` see anything of the cell's past? A cell that exists: if it may read
    it now. A deleted one: if it is the notebook's owner or an admin."""
    if cell_id in access.cell_bits:
        return access.can("read_cell", cell_id)
    return bool(access.notebook_bits & R) and (access.identity.admin or access.is_notebook_owner)


# -- writing a version back -------------------------------------------------------------------


def replace_text(text: Text, old: str, new: str) -> bool:
    """Edit ``text`` (holding ``old``) into ``new`` by one replacement of the part that
    differs (what others type at the unchanged ends stays where it is)."""
    if old == new:
        return False
    prefix = 0
    limit = min(len(old), len(new))
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old[len(old) - 1 - suffix] == new[len(new) - 1 - suffix]:
        suffix += 1
    # pycrdt's Text counts UTF-8 bytes
    start = len(old[:prefix].encode())
    end = len(old[: len(old) - suffix].encode())
    if end > start:
        del text[start:end]
    middle = new[prefix : len(new) - suffix]
    if middle:
        text.insert(start, middle)
    return True


def replace_map(target: Map[Any], new: dict[str, Any]) -> bool:
    current = readable_entries(target)
    changed = False
    for key in [k for k in current if k not in new]:
        del target[key]
        changed = True
    for key, value in new.items():
        if current.get(key) != value:
            target[key] = value
            changed = True
    return changed


class RestoreSession(Session):
    """Who a restore is recorded as: the restoring session's user, and its session id
    with ``:restore`` (so that a restore is a version of its own). Receives nothing."""

    def __init__(self, of: Session) -> None:
        super().__init__(of.identity)
        self.access = of.access
        self.session_id = f"{of.session_id}:restore"[:64]

    def send_bytes(self, data: bytes) -> None:
        return None

    def send_json(self, message: dict[str, Any]) -> None:
        return None

    def close(self, code: int = 1000, reason: str = "") -> None:
        return None


class HistoryService:
    """Timelines, versions, restores, past runs, the activity feed and the notebook at a
    time, for one application (its store, its chat)."""

    def __init__(self, store: Store, chat: ChatService, *, burst_seconds: float = 30.0) -> None:
        self.store = store
        self.history = store.history
        self.chat = chat
        self.burst_seconds = burst_seconds

    @staticmethod
    async def _thread(fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    # -- a cell's versions --------------------------------------------------------------------

    async def timeline(self, room: NotebookRoom, cell_id: str, before: Any = None, limit: Any = None) -> JSONDict:
        """A page of the cell's versions, newest first, older than version ``before``."""
        n = DEFAULT_LIMIT if optional(limit) is None else int_field(limit, "limit", 1, MAX_LIMIT)
        upto = None if optional(before) is None else int_field(before, "before", 0, 2**63 - 1)
        await room.update_log.flush()
        return await self._thread(self._timeline, room.id, cell_id, upto, n)

    def _timeline(self, nb_id: str, cell_id: str, before: int | None, limit: int) -> JSONDict:
        doc = cell_doc(cell_id)
        rows: list[RowInfo] = []
        cursor, exhausted = before, False
        while len(rows) < SCAN_ROWS:
            want = min(2000, SCAN_ROWS - len(rows))
            chunk = self.history.rows(nb_id, doc, before=cursor, limit=want)
            rows.extend(chunk)
            if len(chunk) < want:
                exhausted = True
                break
            cursor = chunk[-1].id
            if len(group(rows, self.burst_seconds)) > limit:
                break  # the newest `limit` versions are whole
        versions = group(rows, self.burst_seconds)
        # past SCAN_ROWS rows the oldest version of the page may be cut: the next page goes on with it
        more = not exhausted or len(versions) > limit
        page = versions[:limit]
        if not more and before != 0 and self.history.baseline(nb_id, doc):
            if len(page) < limit:
                page.append(baseline_version())
            else:
                more = True  # the baseline comes on the next page
        return {
            "cell_id": cell_id,
            "versions": [v.to_json() for v in page],
            "next_before": page[-1].first if more and page else None,
        }

    async def _version_state(self, room: NotebookRoom, cell_id: str, vid: int) -> bytes:
        await room.update_log.flush()
        doc = cell_doc(cell_id)

        def read() -> bytes | None:
            known = self.history.baseline(room.id, doc) if vid == 0 else self.history.has_row(room.id, doc, vid)
            return self.history.state_at_version(room.id, doc, vid) if known else None

        state = await self._thread(read)
        if state is None:
            raise NotFound("no such version of this cell", code="unknown_version")
        return state

    async def version(self, room: NotebookRoom, cell_id: str, vid: Any) -> JSONDict:
        """A version's source and metadata, and the diff from it to the current source."""
        number = version_id(vid)
        state = await self._version_state(room, cell_id, number)
        source, metadata, _ = init_cell(rebuild([state]))
        text = str(source)
        current = str(init_cell(room.docs.read(cell_doc(cell_id)))[0]) if cell_doc(cell_id) in room.docs else ""
        return {
            "cell_id": cell_id,
            "version": number,
            "source": text,
            "metadata": readable_entries(metadata),
            "current": current,
            **diff(text, current),
        }

    async def restore(self, room: NotebookRoom, session: Session, cell_id: str, vid: Any) -> JSONDict:
        """Write a version's source and metadata back into the live cell, as an edit of
        ``session``'s (it goes through the room like any change: every subscriber gets it,
        and the history records it)."""
        number = version_id(vid)
        state = await self._version_state(room, cell_id, number)
        # the rights and the cell may have changed while the version was read
        name = cell_doc(cell_id)
        if name not in room.docs:
            raise NotFound("no such cell: it was deleted", code="unknown_cell")
        if not session.access.can("write_cell", cell_id):
            raise Forbidden("you may not change this cell")
        source, metadata, _ = init_cell(rebuild([state]))
        text, meta = str(source), readable_entries(metadata)
        doc = room.docs[name]
        live_source, live_meta, _ = init_cell(doc)
        current = str(live_source)
        grow = len(text.encode()) - len(current.encode())
        if grow > 0 and room.doc_bytes.get(name, 0) + grow > room.max_doc_bytes:
            raise TooLarge(f"restoring this version would grow the cell past {room.max_doc_bytes} bytes")
        token = acting.set(RestoreSession(session))
        try:
            with doc.transaction():
                changed = replace_text(live_source, current, text)
                changed = replace_map(live_meta, meta) or changed
        finally:
            acting.reset(token)
        return {"cell_id": cell_id, "version": number, "changed": changed}

    # -- past runs ------------------------------------------------------------------------

    async def runs(self, room: NotebookRoom, access: Access, cell_id: str, before: Any = None, limit: Any = None) -> JSONDict:
        """A page of the cell's runs, newest first (from the audit log): who ran it, when,
        how it ended, and its outputs as they were at its end."""
        n = 10 if optional(limit) is None else int_field(limit, "limit", 1, MAX_RUNS)
        upto = None if optional(before) is None else int_field(before, "before", 1, 2**63 - 1)
        await room.update_log.flush()
        return await self._thread(self._runs, room.id, access, cell_id, upto, n)

    def _runs(self, nb_id: str, access: Access, cell_id: str, before: int | None, limit: int) -> JSONDict:
        from ..kernels.peruser import overlay_name

        entries = self.store.list_audit(nb_id, before=before, limit=limit + 1, target=f"cell:{cell_id}", action="execute")
        more = len(entries) > limit
        budget = MAX_RUN_OUTPUT_BYTES
        runs = []
        for entry in entries[:limit]:
            detail = entry["detail"] if isinstance(entry["detail"], dict) else {}
            per_user = detail.get("kernel") == "per-user"
            run: JSONDict = {
                "id": entry["id"],
                "user": entry["actor"],
                "at": entry["at"],
                "status": detail.get("status"),
                "execution_count": detail.get("execution_count"),
                "duration": detail.get("duration"),
                "per_user": per_user,
                "outputs": None,
            }
            if per_user and entry["actor"] != access.identity.name:
                run["outputs_private"] = True  # another user's own kernel: theirs only
            elif budget > 0:
                name = overlay_name(entry["actor"], cell_id) if per_user else out_doc(cell_id)
                odoc = self.history.docs_at_time(nb_id, [name], float(entry["at"])).get(name)
                outputs = outputs_to_nbformat(odoc) if odoc is not None else []
                size = len(json.dumps(outputs))
                if size <= budget:
                    run["outputs"] = outputs
                    budget -= size
                else:
                    run["outputs_omitted"] = True
                    budget = 0
            else:
                run["outputs_omitted"] = True
            runs.append(run)
        return {"cell_id": cell_id, "runs": runs, "next_before": runs[-1]["id"] if more and runs else None}

    # -- the notebook ---------------------------------------------------------------------

    async def activity(self, room: NotebookRoom, access: Access, before: Any = None, limit: Any = None) -> JSONDict:
        """A page of the notebook's activity, newest first, before the time ``before``."""
        n = DEFAULT_LIMIT if optional(limit) is None else int_field(limit, "limit", 1, MAX_LIMIT)
        until = time.time() + 1 if optional(before) is None else time_field(before, "before")
        await room.update_log.flush()
        return await self._thread(self._activity, room.id, access, until, n)

    def _activity(self, nb_id: str, access: Access, before: float, limit: int) -> JSONDict:
        items: list[JSONDict] = []
        horizons: list[float] = []
        # edits of the cells the asker may read now (hidden ones are never read)
        docs = [
            name for name in self.history.doc_keys(nb_id)
            if name.startswith("cell:") and readable_past(access, split_doc_name(name)[1] or "")
        ]  # fmt: skip
        edits, horizon = self._scan_edits(nb_id, docs, before, limit)
        if horizon is not None:
            horizons.append(horizon)
        items.extend(edits)
        audit = self.store.list_audit(nb_id, before_at=before, limit=4 * limit)
        if len(audit) >= 4 * limit:
            horizons.append(float(audit[-1]["at"]))
        items.extend(item for entry in audit if (item := self._audit_item(entry, access)) is not None)
        from ..chat import render

        messages = self.chat.before_time(nb_id, before, limit)
        if len(messages) >= limit:
            horizons.append(float(messages[-1]["created_at"]))
        items.extend(
            {"kind": "chat", "user": m["author"], "at": m["created_at"], "message": render(m, access)} for m in messages
        )
        horizon = max(horizons, default=None)
        items = [i for i in items if horizon is None or i["at"] >= horizon]
        items.sort(key=lambda i: i["at"], reverse=True)
        # the next page goes on below the last time of this one: items at that same time
        # (an import writes all its docs at once) all come on this page
        cut = limit
        while cut < len(items) and items[cut]["at"] == items[cut - 1]["at"]:
            cut += 1
        page = items[:cut]
        if len(items) > cut:
            next_before: float | None = page[-1]["at"]
        else:
            next_before = horizon
        return {"items": page, "next_before": next_before}

    def _scan_edits(self, nb_id: str, docs: list[str], before: float, limit: int) -> tuple[list[JSONDict], float | None]:
        """Bursts of edits that end before ``before``, newest first, read in chunks until
        ``limit`` of them are whole (or :data:`SCAN_ROWS` rows were read); and the time
        down to which the list is complete (None: all of it)."""
        if not docs:
            return [], None
        gap = self.burst_seconds
        # A burst that goes on at `before` or later was on the page before: rows up to one
        # gap past it are read, so that its older rows are known as part of it and left out.
        cursor, cursor_id = before + gap, None
        scanned: list[tuple[str, RowInfo]] = []
        while len(scanned) < SCAN_ROWS:
            want = min(2000, SCAN_ROWS - len(scanned))
            chunk = self.history.rows_of_docs(nb_id, docs, before=cursor, before_id=cursor_id, limit=want)
            scanned.extend(chunk)
            edits = [e for e in self._edits(scanned) if e["at"] < before]
            if len(chunk) < want:
                return edits, None
            cursor, cursor_id = chunk[-1][1].at, chunk[-1][1].id
            # whole: a burst that starts more than a gap after the oldest row read
            if sum(1 for e in edits if e["start"] - gap > cursor) >= limit:
                break
        # every row from `cursor` on was read: the list is whole down to the end of its
        # last burst that may go on below it
        horizon = max([cursor + gap] + [e["at"] + 1e-6 for e in edits if e["start"] - gap <= cursor])
        return edits, horizon

    def _edits(self, scanned: list[tuple[str, RowInfo]]) -> list[JSONDict]:
        """Bursts of edits per cell and author (the rows newest first)."""
        out: list[JSONDict] = []
        open_: dict[str, tuple[RowInfo, JSONDict]] = {}
        for doc, row in scanned:
            found = open_.get(doc)
            if found is not None and not boundary(row, found[0], self.burst_seconds):
                found[1]["start"] = row.at
                found[1]["updates"] += 1
                open_[doc] = (row, found[1])
                continue
            authors = list(row.authors) if row.authors is not None else [row.author]
            item = {
                "kind": "edit",
                "cell_id": doc[len("cell:") :],
                "user": authors[0] if authors else "",
                "authors": authors,
                "at": row.at,
                "start": row.at,
                "updates": 1,
                "version": row.id,
            }
            out.append(item)
            open_[doc] = (row, item)
        return out

    @staticmethod
    def _audit_item(entry: JSONDict, access: Access) -> JSONDict | None:
        action, target = str(entry["action"]), str(entry["target"])
        cell_id = target[len("cell:") :] if target.startswith("cell:") else None
        if cell_id is not None and not readable_past(access, cell_id):
            return None  # nothing of a cell the asker may not read
        detail = entry["detail"] if isinstance(entry["detail"], dict) else {}
        base: JSONDict = {"user": entry["actor"], "at": entry["at"]}
        if action == "execute" and cell_id is not None:
            return {**base, "kind": "run", "cell_id": cell_id, "status": detail.get("status"),
                    "execution_count": detail.get("execution_count")}  # fmt: skip
        if action == "chmod":
            return {**base, "kind": "permissions", "target": target, "old": detail.get("old"), "new": detail.get("new")}
        if action in _STRUCTURE and cell_id is not None:
            keep = {k: detail[k] for k in ("index", "cell_type") if k in detail}
            return {**base, "kind": "structure", "action": action, "cell_id": cell_id, **keep}
        if action == "create":
            return {**base, "kind": "created"}
        if action in _KERNEL:
            return {**base, "kind": "kernel", "action": action}
        return None

    async def notebook_at(self, room: NotebookRoom, access: Access, at: Any) -> JSONDict:
        """The notebook as it was at time ``at``, as nbformat v4, with only the cells the
        asker may read now (deleted ones: owner and admins only)."""
        when = time_field(at, "at")
        if when < room.record.created_at and not await self._thread(self.history.baseline, room.id, INDEX_DOC):
            raise NotFound("the notebook did not exist at that time", code="no_history")
        await room.update_log.flush()
        return await self._thread(self._notebook_at, room.id, access, when)

    def _notebook_at(self, nb_id: str, access: Access, at: float) -> JSONDict:
        index = self.history.docs_at_time(nb_id, [INDEX_DOC], at).get(INDEX_DOC)
        if index is None:
            raise NotFound("the notebook has no history at that time", code="no_history")
        _, meta = init_index(index)
        # only the cells the asker may read now are read at all
        entries = [e for e in index_cells(index) if isinstance(e.get("id"), str) and readable_past(access, e["id"])]
        names = [name for e in entries for name in (cell_doc(e["id"]), out_doc(e["id"]))]
        docs = self.history.docs_at_time(nb_id, names, at)
        cells = []
        odocs = []
        for entry in entries:
            cdoc = docs.get(cell_doc(entry["id"])) or Doc()
            odoc = docs.get(out_doc(entry["id"]))
            if odoc is not None:
                odocs.append(odoc)
            cells.append(export_cell(entry, cdoc, odoc, outputs_to_nbformat))
        return export_notebook(meta, cells, odocs)


def register_commands(registry: CommandRegistry, history: HistoryService) -> None:
    """Register the history commands, bound to ``history``."""
    command = registry.command

    @command("cell_history", action="read_cell", cell_arg="cell_id", denied="you may not read this cell")
    async def _cell_history(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        return await history.timeline(ctx.room, msg["cell_id"], msg.get("before"), msg.get("limit"))

    @command("cell_version", action="read_cell", cell_arg="cell_id", denied="you may not read this cell")
    async def _cell_version(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        return await history.version(ctx.room, msg["cell_id"], msg.get("version"))

    @command("restore_version", action="write_cell", cell_arg="cell_id", denied="you may not change this cell")
    async def _restore_version(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        return await history.restore(ctx.room, ctx.session, msg["cell_id"], msg.get("version"))

    @command("cell_runs", action="read_cell", cell_arg="cell_id", denied="you may not read this cell")
    async def _cell_runs(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        return await history.runs(ctx.room, ctx.session.access, msg["cell_id"], msg.get("before"), msg.get("limit"))

    @command("activity", action="open")
    async def _activity(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        return await history.activity(ctx.room, ctx.session.access, msg.get("before"), msg.get("limit"))

    @command("notebook_at", action="open")
    async def _notebook_at(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        return {"at": time_field(msg.get("at"), "at"), "notebook": await history.notebook_at(ctx.room, ctx.session.access, msg.get("at"))}
