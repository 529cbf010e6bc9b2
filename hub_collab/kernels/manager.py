"""Shared kernels and server-side execution: :class:`KernelService`.

One :class:`KernelService` per process (``HubCollab.kernels``), started with
:meth:`KernelService.start` and stopped with :meth:`KernelService.stop` (or
``async with``). Its commands (:mod:`hub_collab.kernels.commands`) call
:meth:`execute`, :meth:`interrupt`, :meth:`restart`, :meth:`shutdown` and
:meth:`input_reply` with the caller's identity, after the command dispatcher
(:mod:`hub_collab.commands`) has checked the action each command declares; the
WebSocket and REST reach them the same way. Only :meth:`execute_many` filters
by rights itself (it skips, and lists, the cells the caller may not execute).

Kernels come from jupyter_client (the ``local`` provider): one per notebook in
``shared`` mode (the default), one per notebook and user in ``per-user`` mode
(a notebook setting), each started on the first execution with the notebook's
kernelspec, in ``<data_dir>/notebooks/<id>/`` with an allowlisted environment
(:mod:`hub_collab.kernels.env`). Security note: whoever may execute a cell of a
shared kernel has the power of that kernel (its memory, files and history are
not split by cell); per-user mode is the answer when that matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import itertools
import logging
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from jupyter_client.kernelspec import KernelSpecManager
from pycrdt import Doc, Text

from ..documents.notebook import cell_doc, init_index, init_out, out_doc
from ..documents.observers import RoomObserverBase
from ..documents.room import NotebookRoom
from ..documents.rooms import RoomManager
from ..documents.session import Session
from ..errors import BadRequest, Conflict, Forbidden, NotFound
from ..permissions.access import Access, Identity, check_action
from ..store import KernelRecord, Store
from ..tasks import cancel_and_wait
from ..types import EventRelay
from . import peruser
from .env import kernel_environment
from .kernel import LOST_NOTICE, Execution, Kernel, KernelConfig, KernelStartFailed
from .outputs import OutputWriter
from .provider import KernelProvider, LocalProvider

log = logging.getLogger("hub_collab.kernels")

EXECUTE = check_action("execute")

KERNEL_MODES = ("shared", "per-user")
DEFAULT_KERNEL = "python3"
#: execution states of a cell whose run a lost kernel leaves unfinished
LIVE_STATES = ("queued", "running")
SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")

#: (notebook id, user name or "" for the shared kernel)
KernelKey = tuple[str, str]


def source_hash(source: str) -> str:
    """Hex SHA-256 of the UTF-8 source: what ``execute {source_hash}`` carries."""
    return hashlib.sha256(source.encode()).hexdigest()


class ReplicaLink(EventRelay, Protocol):
    """What the kernel service needs from the replicator: who is home, and telling the others."""

    def is_home(self, nb_id: str) -> bool:
        """True if this replica is the notebook's home (the one that runs its kernels)."""


class KernelService(RoomObserverBase):
    """Kernels of every loaded notebook, their queues, and who may drive them.

    It follows the rooms as a :class:`~hub_collab.documents.observers.RoomObserver`
    (kernel state for joining sessions, per-user output views, rooms with a live
    kernel stay loaded) and the home leases as a
    :class:`~hub_collab.replication.HomeObserver`.
    """

    def __init__(
        self,
        rooms: RoomManager,
        store: Store,
        *,
        data_dir: str,
        kernel_env: dict[str, str] | None = None,
        cull_idle_seconds: float = 3600.0,
        max_output_bytes: int = 10_000_000,
        flush_interval: float = 0.02,
        start_timeout: float = 60.0,
        replicas: ReplicaLink | None = None,
        provider: KernelProvider | None = None,
        survive_stop: bool = False,
    ) -> None:
        self.rooms = rooms
        #: where kernels run (``local``: child processes of the service)
        self.provider: KernelProvider = provider or LocalProvider()
        self.store = store
        #: the replicator (None: this process is the only replica, home of everything)
        self.replicas = replicas
        self.data_dir = data_dir
        self.kernel_env = dict(kernel_env or {})
        self.cull_idle_seconds = cull_idle_seconds
        self.max_output_bytes = max_output_bytes
        self.flush_interval = flush_interval
        self.start_timeout = start_timeout
        #: on stop, leave kernels running (recorded, found again at the next start)
        self.survive_stop = survive_stop
        self.kernels: dict[KernelKey, Kernel] = {}
        # one thread writes the kernel records, in the order they happen
        self._records = ThreadPoolExecutor(1, thread_name_prefix="collab-kernels")
        self._batches = itertools.count(1)
        self._cull_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.started = False

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> KernelService:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start(self) -> None:
        """Start culling. Call within the event loop, once the service is registered as
        an observer of the room manager (``rooms.observe(kernels)``)."""
        if self.started:
            raise RuntimeError("KernelService.start() called twice; create one service per app")
        self.started = True
        self._cull_task = asyncio.get_running_loop().create_task(self._cull_loop())

    async def stop(self) -> None:
        """Shut down every kernel (running cells end as interrupted, with a notice), or
        with ``survive_stop`` leave them running, recorded for the next start."""
        await cancel_and_wait(self._cull_task)
        self._cull_task = None
        kernels, self.kernels = list(self.kernels.values()), {}
        if self.survive_stop:
            stops = [
                k.detach("Not run: the service stopped before this cell's turn. Run it again.")
                if k.up or k.attaching
                else k.close("The service stopped; the kernel was shut down. Run the cell again.")
                for k in kernels
            ]
        else:
            stops = [k.close("The service stopped; the kernel was shut down. Run the cell again.") for k in kernels]
        await asyncio.gather(*stops, return_exceptions=True)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(None, self._records.shutdown)
        self.started = False

    def _check_started(self) -> None:
        if not self.started:
            raise RuntimeError(
                "KernelService is not started: call start() (or use `async with`) first"
            )

    # -- rooms ------------------------------------------------------------------------------

    def room_loaded(self, room: NotebookRoom) -> None:
        peruser.load_overlays(room)

    async def room_ready(self, room: NotebookRoom) -> None:
        """Before anyone gets the room: its kernels that outlived the service, found again."""
        if self._is_home(room) and not any(k.nb_id == room.id for k in self.kernels.values()):
            self._restore(room, await self._records_of(room.id))

    async def _records_of(self, nb_id: str) -> list[KernelRecord]:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._records, self.store.kernels_of, nb_id)
        except Exception:
            log.exception("could not read the kernel records of notebook %s", nb_id)
            return []

    async def _restore_later(self, room: NotebookRoom) -> None:
        records = await self._records_of(room.id)
        if not room.closed and not any(k.nb_id == room.id and k.live for k in self.kernels.values()):
            self._restore(room, records)

    def session_joined(self, room: NotebookRoom, session: Session) -> None:
        self._joined(room, session)

    def view(self, room: NotebookRoom, session: Session, name: str) -> str | None:
        return peruser.view(room, self.mode(room) == "per-user", session, name)

    def keeps_loaded(self, room: NotebookRoom) -> bool:
        return any(k.nb_id == room.id and k.live for k in self.kernels.values())

    def _is_home(self, room: NotebookRoom) -> bool:
        """Only the notebook's home replica runs its kernels and writes its outputs."""
        return self.replicas is None or self.replicas.is_home(room.id)

    def became_home(self, room: NotebookRoom) -> None:
        """This replica took over a notebook: whatever the old home was running is lost."""
        if not any(k.nb_id == room.id and k.live for k in self.kernels.values()):
            self._in_background(self._restore_later(room))
        msg = self.state_message(room, None)
        msg["message"] = "No kernel is running on the notebook's current home replica; a kernel that ran elsewhere was lost."
        room.broadcast_json(msg)

    def lost_home(self, room: NotebookRoom) -> None:
        """Another replica is the notebook's home now: stop this replica's kernels of it."""
        mine = [k for key, k in list(self.kernels.items()) if key[0] == room.id]
        for kernel in mine:
            self.kernels.pop((kernel.nb_id, kernel.user or ""), None)
            self._in_background(kernel.close("This replica is no longer the notebook's home; the kernel was stopped."))

    def record_changed(self, room: NotebookRoom) -> None:
        """Settings changed on the home: re-route per-user views, tell the sessions here."""
        peruser.reroute_all(room)
        for session in list(room.sessions):
            self._joined(room, session)

    # -- kernels that outlive the service -------------------------------------------------------

    def _restore(self, room: NotebookRoom, records: list[KernelRecord]) -> None:
        """Find again the kernels the notebook had (recorded by an earlier process), and
        follow the run each was in; every other cell left queued or running is lost.

        The kernels are registered at once (attaching), so an execution that comes
        meanwhile waits for them instead of starting another kernel.
        """
        followed: set[int] = set()
        for rec in records:
            if rec.provider != self.provider.name or (rec.user and self.mode(room) != "per-user") or (not rec.user and self.mode(room) == "per-user"):
                self._record(self.store.forget_kernel, room.id, rec.user)
                continue
            try:
                kernel = self.kernel_for(room, rec.user or self._owner(room))
                run = self._resumed_execution(room, kernel, rec.run)
                kernel.attach(rec.info, run)
            except Exception as exc:
                # e.g. the owner changed and the new one has not consented: the kernel is
                # not ours to use any more; its run is lost like a vanished kernel's
                log.info("not attaching a kernel of notebook %s again: %s", room.id, exc)
                stale = self.kernels.pop(self.key_for(room, rec.user or self._owner(room)), None)
                if stale is not None:
                    self._in_background(stale.close("The kernel could not be found again."))
                self._record(self.store.forget_kernel, room.id, rec.user)
                continue
            if run is not None:
                followed.add(id(run.doc))
        self._mark_lost(room, skip=followed)

    def _resumed_execution(self, room: NotebookRoom, kernel: Kernel, run: dict[str, Any] | None) -> Execution | None:
        if not run:
            return None
        cid, msg_id, user, name = run.get("cell"), run.get("msg_id"), run.get("user"), run.get("doc")
        if not (isinstance(cid, str) and isinstance(msg_id, str) and isinstance(user, str) and isinstance(name, str)):
            return None
        if name not in room.docs or cell_doc(cid) not in room.docs:
            return None  # the cell was deleted meanwhile
        doc = room.docs[name]
        _, state = init_out(doc)
        if state.get("execution_state") != "running":
            return None
        writer = OutputWriter(doc, max_output_bytes=self.max_output_bytes, display_registry=kernel.registry)
        ex = Execution(cid, user, "", doc, writer, msg_id=msg_id)
        started = run.get("started_at")
        ex.started_at = float(started) if isinstance(started, (int, float)) else None
        return ex

    def _owner(self, room: NotebookRoom) -> str:
        return self.rooms.permissions.notebook(room.id).owner

    def _record(self, fn: Any, *args: Any) -> None:
        """Write a kernel record on the records thread, in order; failures are logged."""

        def write() -> None:
            try:
                fn(*args)
            except Exception:
                log.exception("could not write a kernel record of notebook %s", args[0])

        with contextlib.suppress(RuntimeError):  # stopping: the executor is shut down
            self._records.submit(write)

    def on_started(self, kernel: Kernel) -> None:
        if kernel.conn is not None:
            self._record(
                self.store.save_kernel, kernel.nb_id, kernel.user or "", self.provider.name, kernel.kernel_name, kernel.conn.info()
            )

    def on_run(self, kernel: Kernel, ex: Execution) -> None:
        name = peruser.overlay_name(ex.user, ex.cell_id) if kernel.user else out_doc(ex.cell_id)
        run = {"cell": ex.cell_id, "msg_id": ex.msg_id, "user": ex.user, "doc": name, "started_at": ex.started_at}
        self._record(self.store.set_kernel_run, kernel.nb_id, kernel.user or "", run)

    def on_stopped(self, kernel: Kernel) -> None:
        self._record(self.store.forget_kernel, kernel.nb_id, kernel.user or "")

    def _mark_lost(self, room: NotebookRoom, skip: frozenset[int] | set[int] = frozenset()) -> None:
        """Cells left queued or running by a previous process: the kernel is gone."""
        # a stored doc whose bytes hold neither state was not running: it is not built
        names = [out_doc(cid) for cid in room.cell_ids()]
        docs: list[Doc[Any]] = [
            room.docs[name] for name in names if name in room.docs and room.docs.may_hold_string(name, LIVE_STATES)
        ]
        docs += peruser.overlays(room)
        for doc in docs:
            if id(doc) in skip:
                continue
            _, state = init_out(doc)
            if state.get("execution_state") in LIVE_STATES:
                writer = OutputWriter(doc, max_output_bytes=self.max_output_bytes)
                writer.notice(LOST_NOTICE, "warning")
                writer.finish("interrupted")

    def mode(self, room: NotebookRoom) -> str:
        mode = room.record.settings.get("kernel_mode")
        return mode if mode in KERNEL_MODES else "shared"

    def kernel_name(self, room: NotebookRoom) -> str:
        name = room.record.settings.get("kernel_name")
        if isinstance(name, str) and name:
            return name
        _, meta = init_index(room.index)
        metadata = meta.get("metadata")
        spec = metadata.get("kernelspec") if isinstance(metadata, dict) else None
        if isinstance(spec, dict) and isinstance(spec.get("name"), str) and spec["name"]:
            return str(spec["name"])
        return DEFAULT_KERNEL

    def key_for(self, room: NotebookRoom, user: str) -> KernelKey:
        return (room.id, user if self.mode(room) == "per-user" else "")

    def find_kernel(self, room: NotebookRoom, user: str) -> Kernel | None:
        return self.kernels.get(self.key_for(room, user))

    def kernel_for(self, room: NotebookRoom, user: str) -> Kernel:
        """The kernel the ``user`` executes in (created, not started, if missing)."""
        self._check_started()
        key = self.key_for(room, user)
        kernel = self.kernels.get(key)
        if kernel is not None and kernel.kernel_name != self.kernel_name(room) and not kernel.live:
            del self.kernels[key]
            kernel = None
        if kernel is None:
            cwd = os.path.join(self.data_dir, "notebooks", room.id)
            if key[1]:
                cwd = os.path.join(
                    cwd, "users", SAFE_NAME.sub("_", key[1]) + "-" + source_hash(key[1])[:8]
                )
            config = KernelConfig(
                env=kernel_environment(cwd, self.kernel_env),
                cwd=cwd,
                runtime_dir=os.path.join(self.data_dir, "runtime"),
                start_timeout=self.start_timeout,
                flush_interval=self.flush_interval,
                max_output_bytes=self.max_output_bytes,
            )
            runs_as, server = self._where(room, key[1])
            kernel = Kernel(self, room.id, key[1] or None, self.kernel_name(room), config, self.provider, runs_as, server)
            self.kernels[key] = kernel
        return kernel

    def _where(self, room: NotebookRoom, user: str) -> tuple[str, str]:
        """Whose resource a kernel runs on, and which server: in per-user mode the
        runner's own (default) server; in shared mode the notebook's owner's, on the
        server they chose, and only once they consented (``hub`` provider: everyone
        who may run the notebook's cells then runs code as the owner)."""
        if user:
            return user, ""
        owner = self._owner(room)
        if self.provider.name != "hub":
            return owner, ""
        server = self._consented_server(room, owner)
        if server is None:
            raise KernelStartFailed(
                f"The shared kernel of this notebook runs on a server of its owner, {owner}, and"
                " everyone who may run its cells then runs code as them: the owner must choose"
                " that server first (kernel settings: shared_server, with consent).",
                code="kernel_consent_required",
            )
        return owner, server

    @staticmethod
    def _consented_server(room: NotebookRoom, owner: str) -> str | None:
        """The server ``owner`` chose for the shared kernel, if the choice is theirs."""
        settings = room.record.settings
        server = settings.get("shared_server")
        return server if settings.get("shared_consent_by") == owner and isinstance(server, str) else None

    # -- messages to sessions ---------------------------------------------------------------

    def state_message(self, room: NotebookRoom, kernel: Kernel | None) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "type": "kernel",
            "state": kernel.state if kernel is not None else "shutdown",
            "kernel_name": kernel.kernel_name if kernel is not None else self.kernel_name(room),
            "kernel_mode": self.mode(room),
            "queue": kernel.queued_cells() if kernel is not None else [],
            "running": kernel.current.cell_id
            if kernel is not None and kernel.current is not None
            else None,
        }
        msg["where"] = self.where(room, kernel)
        if kernel is not None and kernel.message:
            msg["message"] = kernel.message
        return msg

    def where(self, room: NotebookRoom, kernel: Kernel | None, user: str = "") -> str:
        """Where the kernel runs (or would run), in words for the kernel status."""
        provider = self.provider.name
        if provider == "local":
            return "on the service (not isolated)"
        if provider == "gateway":
            return "on the kernel gateway"
        if kernel is not None:
            runs_as, server = kernel.runs_as, kernel.server
        elif self.mode(room) == "per-user":
            if not user:
                return "on each user's own server"
            runs_as, server = user, ""
        else:
            try:
                runs_as, server = self._where(room, "")
            except KernelStartFailed:
                return f"nowhere yet: {self._owner(room)} must choose a server for it"
        return f"on {runs_as}'s server" + (f" {server!r}" if server else "")

    def on_state(self, kernel: Kernel) -> None:
        room = self.rooms.rooms.get(kernel.nb_id)
        if room is None or self.kernels.get((kernel.nb_id, kernel.user or "")) is not kernel:
            return
        room.broadcast_json(self.state_message(room, kernel), user=kernel.user)

    def on_input(self, kernel: Kernel, ex: Execution, prompt: str, password: bool) -> None:
        room = self.rooms.rooms.get(kernel.nb_id)
        if room is None:
            return
        room.broadcast_json(self._input_request(ex, prompt, password), user=ex.user)
        if kernel.user is None:
            room.broadcast_json(self._input_waiting(ex), exclude_user=ex.user)

    @staticmethod
    def _input_request(ex: Execution, prompt: str, password: bool) -> dict[str, Any]:
        return {"type": "input_request", "cell_id": ex.cell_id, "prompt": prompt, "password": password}

    @staticmethod
    def _input_waiting(ex: Execution) -> dict[str, Any]:
        return {"type": "input_waiting", "cell_id": ex.cell_id, "user": ex.user}

    def _send_input(self, session: Session, ex: Execution, prompt: str, password: bool) -> None:
        if session.identity.name == ex.user:
            session.send_json(self._input_request(ex, prompt, password))
        else:
            session.send_json(self._input_waiting(ex))

    def on_input_done(self, kernel: Kernel, ex: Execution) -> None:
        room = self.rooms.rooms.get(kernel.nb_id)
        if room is None:
            return
        room.broadcast_json({"type": "input_done", "cell_id": ex.cell_id}, user=kernel.user)

    def on_finished(self, kernel: Kernel, ex: Execution) -> None:
        if ex.msg_id and kernel.up:
            self._record(self.store.set_kernel_run, kernel.nb_id, kernel.user or "", None)
        status = ex.done.result()
        detail = {"status": status, "duration": ex.duration, "execution_count": ex.execution_count}
        if kernel.user is not None:
            detail["kernel"] = "per-user"
        self._in_background(
            self._audit(kernel.nb_id, ex.user, "execute", f"cell:{ex.cell_id}", detail)
        )

    async def _audit(
        self, nb_id: str, user: str, action: str, target: str, detail: dict[str, Any]
    ) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, self.store.add_audit, nb_id, user, action, target, detail
            )
        except Exception:
            log.exception("could not write the audit entry %s %s of %s", action, target, nb_id)

    def _in_background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _joined(self, room: NotebookRoom, session: Session) -> None:
        kernel = self.find_kernel(room, session.identity.name)
        msg = self.state_message(room, kernel)
        if kernel is None:
            msg["where"] = self.where(room, None, session.identity.name)
        session.send_json(msg)
        if kernel is not None and kernel.pending_input is not None:
            ex, prompt, password = kernel.pending_input
            self._send_input(session, ex, prompt, password)

    # -- execution --------------------------------------------------------------------------

    def _code_cell(self, room: NotebookRoom, cell_id: Any) -> str:
        if not isinstance(cell_id, str):
            raise BadRequest("cell_id must be a string", code="invalid_command")
        _, entry = room.find_cell(cell_id)
        if entry["cell_type"] != "code":
            raise BadRequest(
                f"only code cells can be executed; this one is {entry['cell_type']}",
                code="not_code",
            )
        return cell_id

    def _new_execution(
        self,
        room: NotebookRoom,
        kernel: Kernel,
        user: str,
        cid: str,
        source: str,
        batch: int | None,
    ) -> Execution:
        if kernel.user is not None:
            doc = peruser.ensure_overlay(room, user, cid)
        else:
            doc = room.docs[out_doc(cid)]
        writer = OutputWriter(
            doc, max_output_bytes=self.max_output_bytes, display_registry=kernel.registry
        )
        writer.begin(executed_by=user, queued=True)
        return Execution(cid, user, source, doc, writer, batch)

    async def execute(
        self,
        room: NotebookRoom,
        identity: Identity,
        cell_id: Any,
        source_hash_: Any = None,
    ) -> tuple[Execution, int]:
        """Queue one cell; return the execution and its queue position (0 = runs next).

        The caller (the ``execute`` command) has checked the ``execute`` right on
        the cell. Runs the server's copy of the source; ``source_hash_`` (hex
        SHA-256), if given, must match it (else ``source_changed``).
        """
        cid = self._code_cell(room, cell_id)
        source = str(room.docs[cell_doc(cid)].get("source", type=Text))
        if source_hash_ is not None:
            if not isinstance(source_hash_, str) or source_hash_.lower() != source_hash(source):
                raise Conflict(
                    "the cell's source changed since you sent it; execute it again",
                    code="source_changed",
                )
        [(ex, position)] = await self._submit(room, identity, [(cid, source)], batch=None)
        return ex, position

    async def execute_many(
        self, room: NotebookRoom, identity: Identity, access: Access, start: str | None = None
    ) -> tuple[list[Execution], list[str]]:
        """Run all code cells (from ``start`` on, if given) that ``identity`` may execute.

        Returns the queued executions and the code cells skipped for lack of rights.
        An error or interrupt in one aborts the rest of this run.
        """
        ids = room.cell_ids()
        if start is not None:
            if not isinstance(start, str):
                raise BadRequest("cell_id must be a string", code="invalid_command")
            room.find_cell(start)
            ids = ids[ids.index(start) :]
        todo: list[tuple[str, str]] = []
        skipped: list[str] = []
        for cid in ids:
            if room.cell_type(cid) != "code":
                continue
            if not access.can(EXECUTE, cid):
                skipped.append(cid)
                continue
            todo.append((cid, str(room.docs[cell_doc(cid)].get("source", type=Text))))
        if not todo:
            return [], skipped
        queued = await self._submit(room, identity, todo, batch=next(self._batches))
        return [ex for ex, _ in queued], skipped

    async def _submit(
        self,
        room: NotebookRoom,
        identity: Identity,
        cells: list[tuple[str, str]],
        batch: int | None,
    ) -> list[tuple[Execution, int]]:
        kernel = self.kernel_for(room, identity.name)
        executions = [
            self._new_execution(room, kernel, identity.name, cid, src, batch) for cid, src in cells
        ]
        if not kernel.up:
            try:
                await kernel.ensure_started()
            except KernelStartFailed as exc:
                for ex in executions:
                    kernel.fail_start(ex, exc)
                raise
        return [(ex, kernel.submit(ex)) for ex in executions]

    async def interrupt(self, room: NotebookRoom, identity: Identity) -> dict[str, Any]:
        """Interrupt ``identity``'s kernel (the ``interrupt`` command checked the right)."""
        kernel = self.find_kernel(room, identity.name)
        if kernel is None or not kernel.live:
            return {"interrupted": None, "aborted": []}
        running = kernel.current.cell_id if kernel.current is not None else None
        aborted = await kernel.interrupt(identity.name)
        self._in_background(
            self._audit(room.id, identity.name, "interrupt", "kernel", {"running": running})
        )
        return {"interrupted": running, "aborted": [ex.cell_id for ex in aborted]}

    async def restart(self, room: NotebookRoom, identity: Identity) -> dict[str, Any]:
        """Restart ``identity``'s kernel (the ``restart`` command checked the right)."""
        kernel = self.kernel_for(room, identity.name)
        self._in_background(self._audit(room.id, identity.name, "restart", "kernel", {}))
        await kernel.restart(identity.name)
        return {"state": kernel.state}

    async def shutdown(self, room: NotebookRoom, identity: Identity) -> dict[str, Any]:
        """Shut ``identity``'s kernel down (the command checked the ``restart`` right)."""
        kernel = self.find_kernel(room, identity.name)
        if kernel is None:
            return {"state": "shutdown"}
        self._in_background(self._audit(room.id, identity.name, "shutdown", "kernel", {}))
        await kernel.shutdown(f"the kernel was shut down by {identity.name}")
        return {"state": kernel.state}

    def input_reply(self, room: NotebookRoom, identity: Identity, cell_id: Any, value: Any) -> None:
        if not isinstance(cell_id, str) or not isinstance(value, str):
            raise BadRequest(
                "input_reply needs cell_id and value (strings)", code="invalid_command"
            )
        kernel = self.find_kernel(room, identity.name)
        pending = kernel.pending_input if kernel is not None else None
        if kernel is None or pending is None or pending[0].cell_id != cell_id:
            raise NotFound("this cell is not waiting for input", code="no_input_request")
        if pending[0].user != identity.name:
            raise Forbidden(f"only {pending[0].user}, who ran this cell, may answer its input")
        kernel.reply_input(pending[0], value)

    def status(self, room: NotebookRoom, identity: Identity) -> dict[str, Any]:
        msg = self.state_message(room, self.find_kernel(room, identity.name))
        msg.pop("type")
        return msg

    # -- settings ---------------------------------------------------------------------------

    def settings(self, room: NotebookRoom) -> dict[str, Any]:
        out: dict[str, Any] = {"kernel_mode": self.mode(room), "kernel_name": self.kernel_name(room), "provider": self.provider.name}
        if self.provider.name == "hub":
            out["shared_server"] = self._consented_server(room, self._owner(room))
        return out

    async def set_settings(
        self, room: NotebookRoom, identity: Identity, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Change ``kernel_mode`` and/or ``kernel_name``; the notebook's kernels are shut down."""
        unknown = set(body) - {"kernel_mode", "kernel_name", "shared_server", "consent"}
        if unknown:
            raise BadRequest(
                f"unknown field(s): {', '.join(sorted(unknown))}", code="invalid_field"
            )
        new = dict(room.record.settings)
        if "kernel_mode" in body:
            if body["kernel_mode"] not in KERNEL_MODES:
                raise BadRequest(
                    f"kernel_mode must be 'shared' or 'per-user', got {str(body['kernel_mode'])[:40]!r}",
                    code="invalid_setting",
                )
            new["kernel_mode"] = body["kernel_mode"]
        if "shared_server" in body or "consent" in body:
            self._consent(room, identity, body, new)
        if "kernel_name" in body:
            name = body["kernel_name"]
            if not isinstance(name, str) or not name:
                raise BadRequest(
                    "kernel_name must be the name of a kernelspec", code="invalid_setting"
                )
            # kernelspecs elsewhere are checked where the kernel starts (a clear error there)
            specs = (
                await asyncio.get_running_loop().run_in_executor(None, KernelSpecManager().find_kernel_specs)
                if self.provider.name == "local"
                else {name: ""}
            )
            if name not in specs:
                raise BadRequest(
                    f"no kernelspec named {name[:80]!r}; available: {', '.join(sorted(specs))}",
                    code="unknown_kernel",
                )
            new["kernel_name"] = name
        old = dict(room.record.settings)
        if new == old:
            return self.settings(room)
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.store.update_notebook(room.id, settings=new)
        )
        mode_changed = self.mode(room) != (
            new.get("kernel_mode") if new.get("kernel_mode") in KERNEL_MODES else "shared"
        )
        room.record = dataclasses.replace(room.record, settings=new)
        mine = [k for key, k in list(self.kernels.items()) if key[0] == room.id]
        for kernel in mine:
            self.kernels.pop((kernel.nb_id, kernel.user or ""), None)
        await asyncio.gather(
            *(
                k.close(f"The notebook's kernel settings were changed by {identity.name}.")
                for k in mine
            )
        )
        if mode_changed:
            peruser.reroute_all(room)
        for session in list(room.sessions):
            self._joined(room, session)
        if self.replicas is not None:
            self.replicas.publish_event(room.id, "record", {})
        self._in_background(
            self._audit(room.id, identity.name, "settings", "kernel", {"old": old, "new": new})
        )
        return self.settings(room)

    def _consent(self, room: NotebookRoom, identity: Identity, body: dict[str, Any], new: dict[str, Any]) -> None:
        """The owner chooses the server the shared kernel runs on, and consents."""
        if self.provider.name != "hub":
            raise BadRequest(
                f"shared_server applies to kernels on Hub servers; this service runs them with the {self.provider.name!r} provider",
                code="invalid_setting",
            )
        owner = self._owner(room)
        if identity.name != owner:
            raise Forbidden(
                "only the notebook's owner may put its shared kernel on their server (everyone who"
                " may run its cells then runs code as the owner)"
            )
        server = body.get("shared_server", "")
        if not isinstance(server, str) or len(server) > 255 or "/" in server:
            raise BadRequest("shared_server must be the name of one of your servers (\"\" for the default one)", code="invalid_setting")
        if body.get("consent") is not True:
            raise BadRequest(
                "consent must be true: everyone who may run this notebook's cells will run code as you,"
                " with your files and rights on that server",
                code="consent_required",
            )
        new["shared_server"] = server
        new["shared_consent_by"] = owner

    # -- deletion ---------------------------------------------------------------------------

    async def forget_notebook(self, nb_id: str) -> None:
        """The notebook was deleted: shut its kernels down and remove their working
        directory (``<data_dir>/notebooks/<id>``, the files its kernels wrote)."""
        mine = [k for key, k in list(self.kernels.items()) if key[0] == nb_id]
        for kernel in mine:
            self.kernels.pop((kernel.nb_id, kernel.user or ""), None)
        await asyncio.gather(*(k.close("The notebook was deleted.") for k in mine), return_exceptions=True)
        path = os.path.join(self.data_dir, "notebooks", nb_id)
        await asyncio.get_running_loop().run_in_executor(None, lambda: shutil.rmtree(path, ignore_errors=True))

    # -- culling ----------------------------------------------------------------------------

    async def _cull_loop(self) -> None:
        while True:
            interval = self.cull_idle_seconds / 4 if self.cull_idle_seconds > 0 else 30.0
            await asyncio.sleep(max(0.5, min(30.0, interval)))
            try:
                await self.cull()
            except Exception:
                log.exception("culling kernels failed")

    async def cull(self) -> None:
        """Shut down idle kernels, and the kernels of notebooks that were deleted."""
        now = time.monotonic()
        for key, kernel in list(self.kernels.items()):
            room = self.rooms.rooms.get(kernel.nb_id)
            if room is None or room.closed:
                self.kernels.pop(key, None)
                await kernel.close("The notebook was closed or deleted.")
                continue
            idle = (
                kernel.up and kernel.state == "idle" and not kernel.queue and kernel.current is None
            )
            if (
                idle
                and self.cull_idle_seconds > 0
                and now - kernel.last_activity > self.cull_idle_seconds
            ):
                log.info("culling idle kernel %r", kernel)
                await kernel.shutdown(
                    f"the kernel was stopped after {self.cull_idle_seconds:g} s without activity"
                )
