"""Creating a notebook from a request: :class:`Importer` turns ``POST api/notebooks``
(``{name, content?: nbformat v4, group?, mode?, default_cell_mode?}``) into the
encoded docs of the new notebook, off the event loop.

The :class:`~.rooms.RoomManager` owns one Importer; ``await importer.run(job)`` (an
:class:`ImportJob`) creates the notebook and returns a :class:`StoredNotebook`: its
record, its cells and the fields it was created with.

**Where the work runs.** Everything runs in a worker process
(``concurrent.futures.ProcessPoolExecutor``, spawned), never in the service's own:
parsing the body, checking the limits, validating nbformat, building the pycrdt docs
and encoding them (:func:`prepare`), then writing the notebook's record, its docs, its
cells' permissions and the audit entry in **one transaction** (:func:`store`, on the
service's database; on SQLite a large one in parts, its record last: see
:meth:`~hub_collab.store.Store.create_notebook`): a failure anywhere leaves nothing behind. A 5,000-cell import is
seconds of CPU, much of it in calls that hold the GIL for their whole length
(``json.loads`` of the body, garbage collections of the parsed objects, the ORM's
parameters for tens of thousands of policy lines): on a thread of the service every
other user's request waited for the GIL (``benchmarks/bench_import.py``). Docs never
leave the process that built them: the worker writes bytes, and the room loads them
from the store as it loads any notebook (stored bytes, a Doc built on first use:
:mod:`.docs`). The service then takes in the new notebook's permissions (computed
again from the same fields, on a thread) and tells its listeners.

A program that runs the service in its own process must guard its main module
(``if __name__ == "__main__":``), as ``multiprocessing``'s spawn requires.

**Limits** (:class:`ImportLimits`: ``HubCollab.max_cells``, ``max_doc_bytes``,
``max_import_bytes``) are checked before any of that work except parsing, on
:func:`held_bytes`, a measure that is never more than what the built docs hold (every
string's UTF-8 bytes, keys included, and one byte for any other value), so the early
check refuses nothing the docs would fit:

* at most ``max_cells`` cells;
* per cell, its source, metadata and attachments (its ``cell:`` doc) and its outputs
  (its ``out:`` doc) each at most ``max_doc_bytes``, the limit an edit of a cell is held
  to; the notebook's metadata (in ``index``) too. Once built, each doc's encoded size
  is checked against the same limit, as the room counts it;
* everything together at most ``max_import_bytes``.

A limit passed is a 413 ``too_large`` naming the limit and the cell; malformed content
a 400 ``invalid_notebook`` saying where.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine

from ..errors import BadRequest, CollabError, TooLarge
from ..fields import group_field, mode_field, name_field, parse_json_object
from ..permissions.casbin_backend import rule_class
from ..permissions.store import new_cell_perms, new_notebook_perms, notebook_state
from ..store import NotebookRecord, Store, make_engine
from ..types import INDEX_DOC
from ..workerproc import init_worker
from .notebook import (
    cell_doc,
    check_ipynb_shape,
    empty_notebook_json,
    index_entry_json,
    out_doc,
    seed_cell,
    seed_index,
    seed_out,
    validate_ipynb,
)
from .outputs import seed_outputs

log = logging.getLogger("hub_collab.importer")

#: the fields of a create request
CREATE_FIELDS = frozenset({"name", "content", "group", "mode", "default_cell_mode"})


@dataclass(frozen=True)
class ImportLimits:
    """What one import may hold (the traits of the same names on ``HubCollab``)."""

    max_cells: int = 5000
    max_doc_bytes: int = 2 * 1024 * 1024
    max_import_bytes: int = 20 * 1024 * 1024


@dataclass(frozen=True)
class NewNotebook:
    """A create request's fields, checked (``content`` is checked by the import)."""

    name: str
    content: Any = None
    group: str = ""
    mode: int = 0o750
    default_cell_mode: int = 0o775


@dataclass(frozen=True)
class PreparedNotebook:
    """A new notebook, ready to be stored: its fields and one encoded update per doc."""

    name: str
    group: str
    mode: int
    default_cell_mode: int
    #: (cell id, cell type) in order
    cells: list[tuple[str, str]]
    #: the JSON of the permissions every imported cell gets (its index entry's)
    cell_perms: dict[str, Any]
    #: (doc name, its whole state as one update): index first, then each cell's two docs
    updates: list[tuple[str, bytes]] = field(repr=False)
    #: :func:`held_bytes` of the content
    content_bytes: int = 0
    #: the worker's time, seconds
    seconds: float = 0.0


# -- the request and the limits (pure; run in the worker) -------------------------------


def parse_new_notebook(body: bytes) -> NewNotebook:
    """A create request's body → its fields; 400 with the field's code otherwise."""
    data = parse_json_object(body)
    name = name_field(data)
    unknown = set(data) - CREATE_FIELDS
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}", code="invalid_field")
    group = group_field(data) or ""
    mode = mode_field(data, "mode", 0o750)
    default_cell_mode = mode_field(data, "default_cell_mode", 0o775)
    return NewNotebook(
        name,
        data.get("content"),
        group,
        0o750 if mode is None else mode,
        0o775 if default_cell_mode is None else default_cell_mode,
    )


class _NotText(ValueError):
    """A string that is not valid Unicode (a lone surrogate, from a ``\\ud800`` escape)."""


def held_bytes(value: Any) -> int:
    """A lower bound of the bytes ``value`` takes in a doc: the UTF-8 bytes of every
    string (keys too) and one byte for every other value (a number, a list, ...).

    Raises :class:`_NotText` for a string UTF-8 cannot encode (pycrdt cannot hold it).
    Iterative: content nested as deeply as a JSON parser allows is measured too.
    """
    total = 0
    stack = [value]
    pop, push, extend = stack.pop, stack.append, stack.extend
    while stack:
        v = pop()
        if isinstance(v, str):
            total += _utf8_len(v)
        elif isinstance(v, dict):
            total += 1
            for k, x in v.items():
                total += _utf8_len(k) if isinstance(k, str) else 1
                push(x)
        elif isinstance(v, list):
            total += 1
            extend(v)
        else:
            total += 1
    return total


def _utf8_len(s: str) -> int:
    if s.isascii():
        return len(s)
    try:
        return len(s.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise _NotText(str(exc)) from exc


def _cell_name(i: int, cell: dict[str, Any]) -> str:
    cid = cell.get("id")
    return f"content.cells[{i}]" + (f" (id {str(cid)[:80]!r})" if cid is not None else "")


def check_limits(content: dict[str, Any], cells: list[dict[str, Any]], limits: ImportLimits) -> int:
    """Check ``content`` (shaped as nbformat v4) against ``limits``; return its
    :func:`held_bytes`. 413 ``too_large`` naming the limit and the cell, else 400
    ``invalid_notebook`` for text that is not valid Unicode."""
    if len(cells) > limits.max_cells:
        raise TooLarge(
            f"the notebook has {len(cells):,} cells; at most {limits.max_cells:,} may be imported "
            f"(HubCollab.max_cells): content.cells[{limits.max_cells}] and later are too many"
        )
    where = "content.metadata"
    try:
        total = held_bytes(content.get("metadata"))
        if total > limits.max_doc_bytes:
            raise TooLarge(
                f"content.metadata holds at least {total:,} bytes; at most {limits.max_doc_bytes:,} are allowed "
                "(HubCollab.max_doc_bytes)"
            )
        crossed = ""
        for i, cell in enumerate(cells):
            where = _cell_name(i, cell)
            doc = held_bytes(cell.get("source")) + held_bytes(cell.get("metadata")) + held_bytes(cell.get("attachments"))
            outputs = held_bytes(cell.get("outputs"))
            for size, what in ((doc, "its source, metadata and attachments hold"), (outputs, "its outputs hold")):
                if size > limits.max_doc_bytes:
                    raise TooLarge(
                        f"{where} is too large: {what} at least {size:,} bytes; a cell may hold at most "
                        f"{limits.max_doc_bytes:,} in each (HubCollab.max_doc_bytes)"
                    )
            # the rest of a cell (id, type, execution count, other keys)
            rest = held_bytes({k: v for k, v in cell.items() if k not in ("source", "metadata", "attachments", "outputs")})
            total += doc + outputs + rest
            if total > limits.max_import_bytes and not crossed:
                crossed = where
    except _NotText as exc:
        raise BadRequest(f"{where} holds a string that is not valid Unicode text: {exc}", code="invalid_notebook") from exc
    if total > limits.max_import_bytes:
        raise TooLarge(
            f"the notebook holds at least {total:,} bytes; at most {limits.max_import_bytes:,} may be imported "
            f"(HubCollab.max_import_bytes); the limit is passed at {crossed}"
        )
    return total


def prepare(nb_id: str, owner: str, request: bytes | NewNotebook, limits: ImportLimits) -> PreparedNotebook:
    """The whole import, in order: the request's fields, the limits, nbformat, then the
    docs, each encoded and its size checked. Runs in a worker process (pure: no I/O)."""
    t0 = time.perf_counter()
    new = parse_new_notebook(request) if isinstance(request, bytes) else request
    # the permissions are checked now, before the work (PermissionSyntaxError: 400)
    cell_perms = new_cell_perms(
        owner, notebook_state(owner, new.group, new.mode, default_cell_mode=new.default_cell_mode)
    ).to_json()
    content = new.content if new.content is not None else empty_notebook_json()
    cells = check_ipynb_shape(content)
    size = check_limits(content, cells, limits)
    nb = validate_ipynb(content)
    entries = [index_entry_json(cell["id"], cell["cell_type"], cell_perms) for cell in nb["cells"]]
    updates = [(INDEX_DOC, seed_index(nb_id, nb, entries).get_update())]
    for i, cell in enumerate(nb["cells"]):
        for name, doc, what in (
            (cell_doc(cell["id"]), seed_cell(nb_id, cell), "its source, metadata and attachments"),
            (out_doc(cell["id"]), seed_out(nb_id, cell, seed_outputs), "its outputs"),
        ):
            update = doc.get_update()
            if len(update) > limits.max_doc_bytes:
                raise TooLarge(
                    f"{_cell_name(i, cell)} is too large: {what} make a document of {len(update):,} bytes; "
                    f"a cell may hold at most {limits.max_doc_bytes:,} in each (HubCollab.max_doc_bytes)"
                )
            updates.append((name, update))
    return PreparedNotebook(
        name=new.name,
        group=new.group,
        mode=new.mode,
        default_cell_mode=new.default_cell_mode,
        cells=[(cell["id"], cell["cell_type"]) for cell in nb["cells"]],
        cell_perms=cell_perms,
        updates=updates,
        content_bytes=size,
        seconds=time.perf_counter() - t0,
    )


#: how much lower the workers' CPU priority is than the service's (``nice``)
WORKER_NICENESS = 10


def _warm() -> int:
    """Run once in each new worker: its imports are done before the first import."""
    return os.getpid()


@dataclass(frozen=True)
class ImportJob:
    """One notebook to create: what the worker needs (picklable)."""

    nb_id: str
    epoch: str
    owner: str
    #: a create request's body (parsed in the worker), or its fields
    request: bytes | NewNotebook
    limits: ImportLimits
    #: the service's database (its URL, password included) and permission rule table
    db_url: str
    rules_table: str


@dataclass(frozen=True)
class StoredNotebook:
    """A notebook the worker created: what the service needs to take it in."""

    record: NotebookRecord
    group: str
    mode: int
    default_cell_mode: int
    cells: list[tuple[str, str]]
    cell_perms: dict[str, Any]
    content_bytes: int
    #: seconds the worker spent preparing the docs, then storing
    prepare_seconds: float
    store_seconds: float

    def index_entries(self) -> list[dict[str, Any]]:
        """The cells as ``index`` holds them (``GET api/notebooks/{id}``'s ``cells``)."""
        return [index_entry_json(cid, ctype, self.cell_perms) for cid, ctype in self.cells]


#: the worker's engines, by database URL (one per process, made at its first import)
_engines: dict[str, Engine] = {}


def store(job: ImportJob, prepared: PreparedNotebook) -> StoredNotebook:
    """Write the prepared notebook whole or not at all (runs in the worker; see
    :meth:`Store.create_notebook`)."""
    t0 = time.perf_counter()
    engine = _engines.get(job.db_url)
    if engine is None:
        engine = _engines[job.db_url] = make_engine(job.db_url)
    perms = new_notebook_perms(
        job.nb_id,
        job.owner,
        [cid for cid, _ in prepared.cells],
        group=prepared.group,
        mode=prepared.mode,
        default_cell_mode=prepared.default_cell_mode,
    )

    def within(conn: Connection) -> None:
        Store.insert_audit(conn, job.nb_id, job.owner, "create", "notebook", {"name": prepared.name, "cells": len(prepared.cells)})

    rules = (rule_class(job.rules_table).__table__, perms.rows())
    record = Store(engine).create_notebook(job.nb_id, prepared.name, job.owner, job.epoch, prepared.updates, within=within, rules=rules)
    return StoredNotebook(
        record=record,
        group=prepared.group,
        mode=prepared.mode,
        default_cell_mode=prepared.default_cell_mode,
        cells=prepared.cells,
        cell_perms=prepared.cell_perms,
        content_bytes=prepared.content_bytes,
        prepare_seconds=prepared.seconds,
        store_seconds=time.perf_counter() - t0,
    )


def run(job: ImportJob) -> StoredNotebook:
    """The worker's task: :func:`prepare`, then :func:`store`."""
    return store(job, prepare(job.nb_id, job.owner, job.request, job.limits))


# -- the pool (in the service) ----------------------------------------------------------


class Importer:
    """Runs :func:`run` in ``processes`` worker processes.

    :meth:`start` spawns them (in the background: the service does not wait), :meth:`stop`
    ends them; a worker that died (killed, out of memory) is replaced at the next import.
    At most ``processes`` imports run at once; later ones wait in line.
    """

    def __init__(self, limits: ImportLimits, *, processes: int = 2) -> None:
        if processes < 1:
            raise ValueError(f"Importer needs at least one process, got {processes}")
        self.limits = limits
        self.processes = processes
        self._executor: ProcessPoolExecutor | None = None
        self._stopping = False

    def start(self) -> None:
        if self._executor is not None:
            raise RuntimeError("Importer.start() called twice")
        self._stopping = False
        self._executor = self._new_executor()

    async def stop(self) -> None:
        executor, self._executor = self._executor, None
        self._stopping = True
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, True, cancel_futures=True)

    def _new_executor(self) -> ProcessPoolExecutor:
        executor = ProcessPoolExecutor(
            self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
            initargs=(WORKER_NICENESS,),
        )
        for _ in range(self.processes):
            executor.submit(_warm).add_done_callback(self._warmed)
        return executor

    def _warmed(self, fut: Future[int]) -> None:
        if not self._stopping and not fut.cancelled() and fut.exception() is not None:
            log.warning("an import worker did not start: %s", fut.exception())

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        if self._executor is broken and not self._stopping:
            log.warning("an import worker process died; starting new ones")
            broken.shutdown(wait=False, cancel_futures=True)
            self._executor = self._new_executor()

    def _submit(self, job: ImportJob) -> tuple[ProcessPoolExecutor, Future[StoredNotebook]]:
        for _ in range(2):
            executor = self._executor
            if executor is None:
                raise CollabError("the service is not accepting imports (it is stopping)", status=503, code="unavailable")
            try:
                return executor, executor.submit(run, job)
            except BrokenProcessPool:
                self._replace(executor)  # died while idle: the job has not started, try the new pool
        raise CollabError("the import workers cannot be started; see the service's log", status=503, code="unavailable")

    async def run(self, job: ImportJob) -> StoredNotebook:
        """:func:`run` in a worker; its CollabError (a 4xx) is raised here."""
        executor, fut = self._submit(job)
        try:
            return await asyncio.wrap_future(fut)
        except BrokenProcessPool as exc:
            self._replace(executor)
            raise CollabError(
                "the import stopped: its worker process died (out of memory?). The notebook was most "
                "likely not created: look at your notebooks before importing it again",
                status=503,
                code="unavailable",
            ) from exc
