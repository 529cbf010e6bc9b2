"""Notebooks as a whole: :class:`RoomManager` creates, loads, checkpoints,
exports and deletes them.

Handlers call :meth:`RoomManager.get` for a live room and the ``*_notebook``
methods for lifecycle changes. One RoomManager per process; start it with
:meth:`start` (or ``async with``) and stop it with :meth:`stop`, which
checkpoints every loaded room.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from ..errors import NotFound
from ..ids import new_id
from ..kernels.outputs import outputs_to_nbformat, seed_outputs
from ..permissions.access import Access, Identity
from ..permissions.store import PermissionStore
from ..store import NotebookRecord, Store, UpdateLog
from ..tasks import cancel_and_wait
from ..types import INDEX_DOC
from .notebook import (
    cell_doc,
    empty_notebook_json,
    export_cell,
    index_cells,
    init_index,
    out_doc,
    seed_notebook,
    validate_ipynb,
)
from .room import NotebookRoom

log = logging.getLogger("hub_collab.rooms")


class RoomManager:
    """Loads notebooks into rooms on demand and keeps their state persisted."""

    def __init__(
        self,
        store: Store,
        update_log: UpdateLog,
        permissions: PermissionStore,
        *,
        max_doc_bytes: int = 2_000_000,
        max_cells: int = 5000,
        checkpoint_every: int = 2000,
        idle_unload_seconds: float = 300.0,
        housekeeping_interval: float = 10.0,
    ) -> None:
        self.store = store
        self.update_log = update_log
        self.permissions = permissions
        self.max_doc_bytes = max_doc_bytes
        self.max_cells = max_cells
        self.checkpoint_every = checkpoint_every
        self.idle_unload_seconds = idle_unload_seconds
        self.housekeeping_interval = housekeeping_interval
        #: the application (commands reach it as ``ws.collab``)
        self.app: Any = None
        self.rooms: dict[str, NotebookRoom] = {}
        self._loading: dict[str, asyncio.Future[NotebookRoom]] = {}
        self._task: asyncio.Task[None] | None = None
        #: hooks called with every new room (kernels and the bus attach here)
        self.room_hooks: list[Any] = []
        #: coroutines awaited with every new room before anyone gets it (the bus
        #: subscription of the room must be live before its first client joins)
        self.ready_hooks: list[Any] = []
        #: hooks called with the id of a notebook being deleted here
        self.delete_hooks: list[Any] = []
        #: hooks called with every room before it is unloaded
        self.unload_hooks: list[Any] = []
        #: callables that say whether a room must stay loaded (e.g. a kernel is running)
        self.keep_loaded: list[Any] = []

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> RoomManager:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start(self) -> None:
        self.permissions.add_listener(self._permissions_changed)
        self._task = asyncio.get_running_loop().create_task(self._housekeeping())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        for room in list(self.rooms.values()):
            await self.unload(room)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.housekeeping_interval)
            now = time.monotonic()
            for room in list(self.rooms.values()):
                try:
                    if room.updates_since_checkpoint >= self.checkpoint_every:
                        await self.checkpoint(room)
                    if (
                        not room.sessions
                        and now - room.last_activity > self.idle_unload_seconds
                        and not any(keep(room) for keep in self.keep_loaded)
                    ):
                        await self.unload(room)
                except Exception:
                    log.exception("housekeeping of notebook %s failed", room.id)

    # -- rooms ------------------------------------------------------------------------------

    async def get(self, nb_id: str) -> NotebookRoom:
        """The live room of a notebook (loaded on first use); NotFound if it does not exist."""
        room = self.rooms.get(nb_id)
        if room is not None:
            return room
        pending = self._loading.get(nb_id)
        if pending is not None:
            return await pending
        fut: asyncio.Future[NotebookRoom] = asyncio.get_running_loop().create_future()
        self._loading[nb_id] = fut
        try:
            t0 = time.perf_counter()
            room = await self._load(nb_id)
            t1 = time.perf_counter()
            self.rooms[nb_id] = room
            for hook in self.room_hooks:
                hook(room)
            for ready in self.ready_hooks:
                await ready(room)
            fut.set_result(room)
            log.info(
                "loaded notebook %s: %d docs in %.1f ms (%.1f ms reading and holding them)",
                nb_id, len(room.docs), (time.perf_counter() - t0) * 1000, (t1 - t0) * 1000,
            )
            return room
        except BaseException as exc:
            self.rooms.pop(nb_id, None)
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: other waiters re-raise it themselves
            raise
        finally:
            self._loading.pop(nb_id, None)

    async def _load(self, nb_id: str) -> NotebookRoom:
        loop = asyncio.get_running_loop()
        record = await loop.run_in_executor(None, self.store.get_notebook, nb_id)
        if record is None:
            raise NotFound("no such notebook", code="unknown_notebook")
        await self.update_log.flush()
        persisted, ids = await loop.run_in_executor(None, self.store.load_docs, nb_id)
        room = NotebookRoom(record, self.permissions, self.update_log, max_doc_bytes=self.max_doc_bytes)
        room.load(persisted)
        room.merged_upto = max(ids, default=0)
        room.app = self.app
        return room

    async def checkpoint(self, room: NotebookRoom) -> None:
        """Compact the notebook's log: merge every committed row into the room (rows from
        other replicas too), snapshot, and replace exactly those rows by the snapshot."""
        loop = asyncio.get_running_loop()
        await self.update_log.flush()
        persisted, covered = await loop.run_in_executor(None, self.store.load_docs, room.id)
        if room.closed:
            return
        room.merge_persisted(persisted)
        room.merged_upto = max([room.merged_upto, *covered])
        states = room.snapshot()
        room.updates_since_checkpoint = 0
        await loop.run_in_executor(None, self.store.checkpoint, room.id, states, covered)

    async def unload(self, room: NotebookRoom) -> None:
        if room.closed:
            return
        try:
            await self.checkpoint(room)
        finally:
            self.rooms.pop(room.id, None)
            for hook in self.unload_hooks:
                hook(room)
            room.close()

    def _permissions_changed(self, nb_id: str) -> None:
        room = self.rooms.get(nb_id)
        if room is None or room.closed:
            return
        room.update_index_perms()
        room.refresh_all()

    # -- notebooks --------------------------------------------------------------------------

    async def create_notebook(
        self,
        identity: Identity,
        name: str,
        content: Any = None,
        *,
        group: str = "",
        mode: int = 0o750,
        default_cell_mode: int = 0o775,
    ) -> NotebookRecord:
        nb = validate_ipynb(content, max_cells=self.max_cells) if content is not None else empty_notebook_json()
        nb_id = new_id()
        epoch = secrets.token_hex(8)
        self.permissions.create_notebook(
            nb_id, identity.name, group=group, mode=mode, default_cell_mode=default_cell_mode
        )
        try:
            perms_json = {}
            for cell in nb["cells"]:
                perms_json[cell["id"]] = self.permissions.create_cell(nb_id, cell["id"], identity.name).to_json()
            docs = seed_notebook(nb_id, nb, perms_json.__getitem__, seed_outputs)
            updates = [(name_, doc.get_update()) for name_, doc in docs.items()]
            record = await asyncio.get_running_loop().run_in_executor(
                None, lambda: self.store.create_notebook(nb_id, name, identity.name, epoch, updates)
            )
        except BaseException:
            self.permissions.delete_notebook(nb_id)
            raise
        return record

    def close_deleted(self, nb_id: str) -> None:
        """Disconnect this replica's clients of a deleted notebook and forget its room."""
        room = self.rooms.pop(nb_id, None)
        if room is not None:
            for session in list(room.sessions):
                session.send_error("notebook_deleted", "this notebook was deleted")
                room.leave(session)
                session.close(4404, "notebook deleted")
            for hook in self.unload_hooks:
                hook(room)
            room.close()

    async def delete_notebook(self, nb_id: str) -> None:
        for hook in self.delete_hooks:
            hook(nb_id)
        self.close_deleted(nb_id)
        await self.update_log.flush()
        await asyncio.get_running_loop().run_in_executor(None, self.store.delete_notebook, nb_id)
        self.permissions.delete_notebook(nb_id)

    def export(self, room: NotebookRoom, access: Access) -> dict[str, Any]:
        """nbformat v4 of what ``access`` may read (hidden cells left out)."""
        _, meta = init_index(room.docs[INDEX_DOC])
        cells = []
        for entry in index_cells(room.docs[INDEX_DOC]):
            cid = entry["id"]
            if not access.can("read_cell", cid):
                continue
            cells.append(
                export_cell(
                    entry,
                    room.docs.read(cell_doc(cid)),
                    room.docs.read(out_doc(cid)) if out_doc(cid) in room.docs else None,
                    outputs_to_nbformat,
                )
            )
        return {
            "nbformat": 4,
            "nbformat_minor": int(meta.get("nbformat_minor", 5) or 5),
            "metadata": dict(meta.get("metadata") or {}),
            "cells": cells,
        }
