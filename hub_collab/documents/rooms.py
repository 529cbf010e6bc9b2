"""Notebooks as a whole: :class:`RoomManager` creates, loads, checkpoints,
exports and deletes them.

Handlers call :meth:`RoomManager.get` for a live room and the ``*_notebook``
methods for lifecycle changes (a new notebook is built and stored by its
:class:`~.importer.Importer`, in worker processes). One RoomManager per process;
register the services that follow the rooms with :meth:`observe` (see
:mod:`hub_collab.documents.observers`), start it with :meth:`start` (or
``async with``) and stop it with :meth:`stop`, which checkpoints every loaded
room. Deleting a notebook as a whole (its chat and kernels too) is
:func:`hub_collab.lifecycle.delete_notebook`; this class does the documents' part.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from .. import logs
from ..errors import NotFound
from ..ids import new_id
from ..metrics import Metrics, RoomCensus
from ..permissions.access import Access, Identity
from ..permissions.store import PermissionStore, new_notebook_perms
from ..store import NotebookRecord, Store, UpdateLog
from ..tasks import cancel_and_wait
from ..types import INDEX_DOC
from .importer import Importer, ImportJob, ImportLimits, NewNotebook
from .notebook import cell_doc, export_cell, export_notebook, index_cells, init_index, out_doc
from .observers import RoomObserver
from .outputs import outputs_to_nbformat
from .room import NotebookRoom
from .structure import mirror_permissions

log = logging.getLogger("hub_collab.rooms")


@dataclass(frozen=True)
class ImportedNotebook:
    """A notebook just created: its record and its cells as ``index`` holds them."""

    record: NotebookRecord
    cells: list[dict[str, Any]]


class RoomManager:
    """Loads notebooks into rooms on demand and keeps their state persisted."""

    def __init__(
        self,
        store: Store,
        update_log: UpdateLog,
        permissions: PermissionStore,
        *,
        max_doc_bytes: int = 2 * 1024 * 1024,
        max_cells: int = 5000,
        max_import_bytes: int = 20 * 1024 * 1024,
        import_processes: int = 2,
        checkpoint_every: int = 2000,
        idle_unload_seconds: float = 300.0,
        housekeeping_interval: float = 10.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.update_log = update_log
        self.permissions = permissions
        self.max_doc_bytes = max_doc_bytes
        if store.engine is not permissions.engine:
            raise ValueError(
                "RoomManager: the permission store must use the store's engine "
                "(a new notebook's docs and permissions are written in one transaction)"
            )
        url = store.engine.url
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            raise ValueError(
                "RoomManager: an in-memory SQLite database cannot be reached by the import "
                "workers (other processes); use a file (sqlite:///path)"
            )
        #: builds new notebooks' docs in worker processes (started and stopped with this)
        self.importer = Importer(
            ImportLimits(max_cells=max_cells, max_doc_bytes=max_doc_bytes, max_import_bytes=max_import_bytes),
            processes=import_processes,
        )
        self.checkpoint_every = checkpoint_every
        self.idle_unload_seconds = idle_unload_seconds
        self.housekeeping_interval = housekeeping_interval
        #: handed to every room (None: metrics are off)
        self.metrics = metrics
        self.rooms: dict[str, NotebookRoom] = {}
        self._loading: dict[str, asyncio.Future[NotebookRoom]] = {}
        self._task: asyncio.Task[None] | None = None
        #: the services following every room, in the order they were registered
        self.observers: list[RoomObserver] = []

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> RoomManager:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def observe(self, observer: RoomObserver) -> None:
        """Add ``observer`` to every room, loaded or to come (call before :meth:`start`)."""
        if self._task is not None or self.rooms:
            raise RuntimeError("RoomManager.observe() must be called before start(), while no room is loaded")
        self.observers.append(observer)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._housekeeping())
        self.importer.start()

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await self.importer.stop()
        for room in list(self.rooms.values()):
            await self.unload(room)

    def census(self) -> RoomCensus:
        """Rooms loaded, docs they hold, sessions connected (read at each metrics scrape)."""
        rooms = list(self.rooms.values())
        return RoomCensus(
            rooms=len(rooms),
            docs=sum(len(room.docs) for room in rooms),
            connections=sum(len(room.sessions) for room in rooms),
        )

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
                        and not any(o.keeps_loaded(room) for o in self.observers)
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
            for observer in self.observers:
                observer.room_loaded(room)
            for observer in self.observers:
                await observer.room_ready(room)
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
        room = NotebookRoom(
            record,
            self.permissions,
            self.update_log,
            max_doc_bytes=self.max_doc_bytes,
            observers=self.observers,
            metrics=self.metrics,
        )
        room.load(persisted)
        room.merged_upto = max(ids, default=0)
        return room

    async def checkpoint(self, room: NotebookRoom) -> None:
        """Compact the notebook's log: merge every committed row into the room (rows from
        other replicas too), snapshot, and replace exactly those rows by the snapshot.
        The history keeps every row; its docs get keyframes where they are due."""
        async with room.compacting:  # not in the middle of a large frame (NotebookRoom.handle_frame)
            await self._checkpoint(room)

    async def _checkpoint(self, room: NotebookRoom) -> None:
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
        try:
            await loop.run_in_executor(None, self.store.history.make_keyframes, room.id)
        except Exception:
            # a speed aid for history reads: the next checkpoint tries again
            log.exception("could not write the history keyframes of notebook %s", room.id)

    async def unload(self, room: NotebookRoom) -> None:
        if room.closed:
            return
        try:
            await self.checkpoint(room)
        finally:
            self.rooms.pop(room.id, None)
            for observer in self.observers:
                observer.room_unloaded(room)
            room.close()

    def permissions_changed(self, nb_id: str) -> None:
        """A :class:`~hub_collab.permissions.store.PermissionStore` listener: mirror the
        new permissions into ``index`` and send every session its new rights."""
        room = self.rooms.get(nb_id)
        if room is None or room.closed:
            return
        mirror_permissions(room)
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
        """Create a notebook (empty, or from nbformat v4 ``content``) as ``identity``."""
        request = NewNotebook(name, content, group, mode, default_cell_mode)
        return (await self._create(identity, request)).record

    async def import_notebook(self, identity: Identity, body: bytes) -> ImportedNotebook:
        """Create a notebook from a ``POST api/notebooks`` body, parsed (and everything
        else done) in an import worker: the request's limits, nbformat, the docs."""
        return await self._create(identity, body)

    async def _create(self, identity: Identity, request: bytes | NewNotebook) -> ImportedNotebook:
        """An import worker (:mod:`.importer`) builds the docs and writes the notebook's
        record, docs, permissions and audit entry in one transaction; then the
        permission store takes it in (on a thread: thousands of cells' lines) and tells
        its listeners (here)."""
        t0 = time.perf_counter()
        job = ImportJob(
            nb_id=new_id(),
            epoch=secrets.token_hex(8),
            owner=identity.name,
            request=request,
            limits=self.importer.limits,
            db_url=self.store.engine.url.render_as_string(hide_password=False),
            rules_table=self.permissions.table,
        )
        stored = await self.importer.run(job)
        t1 = time.perf_counter()
        # the worker stored the audit entry in its transaction; its log line is ours
        logs.audit(job.nb_id, job.owner, "create", "notebook", {"name": stored.record.name, "cells": len(stored.cells)})

        def take_in() -> None:  # the same permissions the worker stored, from the same fields
            self.permissions.add_new_notebook(
                new_notebook_perms(
                    job.nb_id,
                    identity.name,
                    [cid for cid, _ in stored.cells],
                    group=stored.group,
                    mode=stored.mode,
                    default_cell_mode=stored.default_cell_mode,
                )
            )

        await asyncio.to_thread(take_in)
        self.permissions.announce(job.nb_id)
        log.info(
            "created notebook %s: %d cells, %d bytes in %.1f ms (%.1f ms preparing, %.1f ms storing in the "
            "worker; %.1f ms taking in its permissions)",
            job.nb_id, len(stored.cells), stored.content_bytes, (time.perf_counter() - t0) * 1000,
            stored.prepare_seconds * 1000, stored.store_seconds * 1000, (time.perf_counter() - t1) * 1000,
        )  # fmt: skip
        return ImportedNotebook(stored.record, stored.index_entries())

    def close_deleted(self, nb_id: str) -> None:
        """Disconnect this replica's clients of a deleted notebook and forget its room."""
        room = self.rooms.pop(nb_id, None)
        if room is not None:
            for session in list(room.sessions):
                session.send_error("notebook_deleted", "this notebook was deleted")
                room.leave(session)
                session.close(4404, "notebook deleted")
            for observer in self.observers:
                observer.room_unloaded(room)
            room.close()

    def export(self, room: NotebookRoom, access: Access, *, widgets: bool = True) -> dict[str, Any]:
        """nbformat v4 of what ``access`` may read (hidden cells left out); ``widgets``: with
        the widget models of those cells saved in the metadata (docs/widgets.md)."""
        _, meta = init_index(room.docs[INDEX_DOC])
        cells = []
        odocs = []
        for entry in index_cells(room.docs[INDEX_DOC]):
            cid = entry["id"]
            if not access.can("read_cell", cid):
                continue
            odoc = room.docs.read(out_doc(cid)) if out_doc(cid) in room.docs else None
            if odoc is not None:
                odocs.append(odoc)
            cells.append(export_cell(entry, room.docs.read(cell_doc(cid)), odoc, outputs_to_nbformat))
        return export_notebook(meta, cells, odocs, widgets=widgets)
