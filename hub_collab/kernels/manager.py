"""Shared kernels and server-side execution: :class:`KernelService`.

One :class:`KernelService` per process (``HubCollab.kernels``), started with
:meth:`KernelService.start` and stopped with :meth:`KernelService.stop` (or
``async with``). Its commands (:mod:`hub_collab.kernels.commands`) call
:meth:`execute`, :meth:`interrupt`, :meth:`restart`, :meth:`shutdown` and
:meth:`input_reply` with the caller's identity, after the command dispatcher
(:mod:`hub_collab.commands`) has checked the action each command declares; the
WebSocket and REST reach them the same way. Only :meth:`execute_many` filters
by rights itself (it skips, and lists, the cells the caller may not execute).

Kernels run on resources (:mod:`hub_collab.kernels.resources`: a Hub user's
server, the kernel gateway, or the service itself): one per notebook in
``shared`` mode (the default, on the resource its owner picks), one per notebook
and user in ``per-user`` mode (a notebook setting; each user picks their own),
each started on the first execution with the chosen kernelspec. Switching to
another resource or kernelspec keeps the previous kernel (until it is shut down,
culled, or pushed out by ``max_kernels_per_user``), so switching back finds its
state. Security note: whoever may execute a cell of a shared kernel has the power
of that kernel (its memory, files and history are not split by cell); per-user
mode is the answer when that matters.
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
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from pycrdt import Doc, Text

from ..documents.notebook import cell_doc, init_index, init_out, out_doc
from ..documents.observers import RoomObserverBase
from ..documents.outputs import widgets_root
from ..documents.room import NotebookRoom
from ..documents.rooms import RoomManager
from ..documents.session import Session
from ..errors import BadRequest, Conflict, Forbidden, NotFound, RateLimited
from ..hubservers import Progress
from ..metrics import KernelCensus, Metrics
from ..permissions.access import Access, Identity, check_action
from ..store import KernelRecord, Store
from ..tasks import cancel_and_wait
from ..types import EventRelay
from . import peruser
from .env import kernel_environment
from .hubprovider import HubProvider
from .kernel import (
    END_STATUSES,
    LOST_NOTICE,
    STATES,
    Execution,
    Kernel,
    KernelConfig,
    KernelStartFailed,
)
from .outputs import OutputWriter
from .provider import LocalProvider
from .resources import KernelResources, Resource, parse_resource
from .widgets import WIDGET_TARGET, WidgetLimits

log = logging.getLogger("hub_collab.kernels")

EXECUTE = check_action("execute")

KERNEL_MODES = ("shared", "per-user")
DEFAULT_KERNEL = "python3"
#: execution states of a cell whose run a lost kernel leaves unfinished
LIVE_STATES = ("queued", "running")
SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")
#: seconds between two messages that only change a kernel's queue
QUEUE_TELL_INTERVAL = 0.05

#: (notebook id, user name or "" for the shared kernel, resource, kernelspec): Kernel.key
KernelKey = tuple[str, str, str, str]
#: which kernels: (notebook id, user name or "" for the shared kernel)
Owner = tuple[str, str]


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
        resources: KernelResources | None = None,
        survive_stop: bool = False,
        max_kernels_per_user: int = 3,
        max_queued_per_user: int = 200,
        max_queued_per_notebook: int = 1000,
        metrics: Metrics | None = None,
        widget_limits: WidgetLimits | None = None,
    ) -> None:
        self.rooms = rooms
        #: bounds on widget models and clients' changes to them (kernels/widgets.py)
        self.widget_limits = widget_limits or WidgetLimits()
        #: executions by status (bound once per status), and the kernel census
        self.metrics = metrics
        self._executions = {status: metrics.executions.labels(status) for status in END_STATUSES} if metrics else {}
        #: where kernels may run (default: child processes of the service)
        self.resources = resources or KernelResources({"local": LocalProvider()}, "local")
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
        #: kernels kept per notebook and user (shared: per notebook); more push out the least used
        self.max_kernels_per_user = max(1, max_kernels_per_user)
        #: cells one user may have waiting in a notebook, and all users together
        self.max_queued_per_user = max_queued_per_user
        self.max_queued_per_notebook = max_queued_per_notebook
        # what each kernel's users were last told (state, message), and a pending
        # coalesced message: a burst of queue changes becomes one message
        self._told: weakref.WeakKeyDictionary[Kernel, tuple[str, str]] = weakref.WeakKeyDictionary()
        self._tell_later: weakref.WeakKeyDictionary[Kernel, asyncio.TimerHandle] = weakref.WeakKeyDictionary()
        self.kernels: dict[KernelKey, Kernel] = {}
        #: per-user mode: notebook id -> user -> (resource, kernelspec or "") they picked
        self._choices: dict[str, dict[str, tuple[str, str]]] = {}
        #: picks not yet written (the latest per user wins: a flood of switches writes little)
        self._unsaved: dict[Owner, tuple[str, str]] = {}
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
        """Before anyone gets the room: what its users picked, and its kernels that
        outlived the service, found again."""
        await self._load_choices(room)
        if self._is_home(room) and not any(k.nb_id == room.id for k in self.kernels.values()):
            self._restore(room, await self._records_of(room.id))

    def room_unloaded(self, room: NotebookRoom) -> None:
        self._choices.pop(room.id, None)

    async def _load_choices(self, room: NotebookRoom) -> None:
        try:
            choices = await asyncio.get_running_loop().run_in_executor(self._records, self.store.kernel_choices_of, room.id)
        except Exception:
            log.exception("could not read the kernel choices of notebook %s", room.id)
            choices = {}
        self._choices[room.id] = {**choices, **{u: c for (nb, u), c in self._unsaved.items() if nb == room.id}}

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
        notice = "No kernel is running on the notebook's current home replica; a kernel that ran elsewhere was lost."
        users = {s.identity.name for s in room.sessions} if self.mode(room) == "per-user" else {""}
        for user in users:
            msg = self.state_message(room, user)
            msg["message"] = notice
            room.broadcast_json(msg, user=user or None)

    def lost_home(self, room: NotebookRoom) -> None:
        """Another replica is the notebook's home now: stop this replica's kernels of it."""
        for kernel in self._pop_kernels(room.id):
            self._in_background(kernel.close("This replica is no longer the notebook's home; the kernel was stopped."))

    def record_changed(self, room: NotebookRoom) -> None:
        """Settings or picks changed on the home: re-route per-user views, tell the sessions here."""
        peruser.reroute_all(room)
        self._in_background(self._reload_choices(room))

    async def _reload_choices(self, room: NotebookRoom) -> None:
        await self._load_choices(room)
        for session in list(room.sessions):
            self._joined(room, session)

    def _pop_kernels(self, nb_id: str) -> list[Kernel]:
        """Take every kernel of the notebook out of the service (the caller stops them)."""
        mine = [k for key, k in self.kernels.items() if key[0] == nb_id]
        for kernel in mine:
            del self.kernels[kernel.key]
        return mine

    # -- kernels that outlive the service -------------------------------------------------------

    def _restore(self, room: NotebookRoom, records: list[KernelRecord]) -> None:
        """Find again the kernels the notebook had (recorded by an earlier process), and
        follow the run each was in; every other cell left queued or running is lost.

        The kernels are registered at once (attaching), so an execution that comes
        meanwhile waits for them instead of starting another kernel. Kernels a user
        switched away from are found again too (switching back finds their state).
        """
        followed: set[int] = set()
        per_user = self.mode(room) == "per-user"
        for rec in records:
            key: KernelKey = (room.id, rec.user, rec.resource, rec.kernel_name)
            if bool(rec.user) != per_user or rec.provider not in self.resources.providers:
                self._record(self.store.forget_kernel, key)
                continue
            try:
                kernel = self._make_kernel(room, key)
                run = self._resumed_execution(room, kernel, rec.run)
                kernel.attach(rec.info, run)
            except Exception as exc:
                # e.g. the owner changed and the new one has not consented: the kernel is
                # not ours to use any more; its run is lost like a vanished kernel's
                log.info("not attaching a kernel of notebook %s again: %s", room.id, exc)
                stale = self.kernels.pop(key, None)
                if stale is not None:
                    self._in_background(stale.close("The kernel could not be found again."))
                self._record(self.store.forget_kernel, key)
                continue
            if run is not None:
                followed.add(id(run.doc))
            # models written before kernels were named beside them: only an owner's one
            # kernel may take them
            alone = sum(1 for other in records if other.user == rec.user) == 1
            kernel.widgets.adopt(self._widget_docs(room, rec.user), untagged=alone)
        self._mark_lost(room, skip=followed)
        self._sweep_widgets(room)

    def _widget_docs(self, room: NotebookRoom, user: str) -> list[tuple[str, Doc[Any]]]:
        """(cell id, doc) of the docs that may hold widget models of ``user``'s kernel
        (the shared kernel's: ``user`` "")."""
        if user:
            docs = [(owner[1], doc) for doc in peruser.overlays(room) if (owner := peruser.overlay_owner(doc)) and owner[0] == user]
        else:
            names = [(cid, out_doc(cid)) for cid in room.cell_ids()]
            docs = [(cid, room.docs[n]) for cid, n in names if n in room.docs and room.docs.may_hold_string(n, (WIDGET_TARGET,))]
        return [(cid, doc) for cid, doc in docs if len(widgets_root(doc))]

    def _sweep_widgets(self, room: NotebookRoom) -> None:
        """Models left in the docs by kernels that are gone (not found again) are gone too."""
        kept = {id(m.doc) for k in self.kernels.values() if k.nb_id == room.id for m in k.widgets.models.values()}
        for user in {""} | {owner[0] for doc in peruser.overlays(room) if (owner := peruser.overlay_owner(doc))}:
            for _, doc in self._widget_docs(room, user):
                if id(doc) not in kept:
                    root = widgets_root(doc)
                    with doc.transaction():
                        root.clear()

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
                log.exception("could not write a kernel record (%s)", args[0])

        with contextlib.suppress(RuntimeError):  # stopping: the executor is shut down
            self._records.submit(write)

    def on_started(self, kernel: Kernel) -> None:
        if kernel.conn is not None:
            self._record(self.store.save_kernel, kernel.key, kernel.provider.name, kernel.conn.info())

    def on_run(self, kernel: Kernel, ex: Execution) -> None:
        # the cell's models of the owner's other kernels (kept after a switch) left its doc
        for other in self._beside(kernel, same_owner=True):
            other.widgets.let_go(ex.doc)
        name = peruser.overlay_name(ex.user, ex.cell_id) if kernel.user else out_doc(ex.cell_id)
        run = {"cell": ex.cell_id, "msg_id": ex.msg_id, "user": ex.user, "doc": name, "started_at": ex.started_at}
        self._record(self.store.set_kernel_run, kernel.key, run)

    def on_stopped(self, kernel: Kernel) -> None:
        self._record(self.store.forget_kernel, kernel.key)

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

    # -- which kernel, where ----------------------------------------------------------------------

    def mode(self, room: NotebookRoom) -> str:
        mode = room.record.settings.get("kernel_mode")
        return mode if mode in KERNEL_MODES else "shared"

    def kernel_name(self, room: NotebookRoom) -> str:
        """The notebook's kernelspec: its setting, else its metadata, else python3."""
        name = room.record.settings.get("kernel_name")
        if isinstance(name, str) and name:
            return name
        _, meta = init_index(room.index)
        metadata = meta.get("metadata")
        spec = metadata.get("kernelspec") if isinstance(metadata, dict) else None
        if isinstance(spec, dict) and isinstance(spec.get("name"), str) and spec["name"]:
            return str(spec["name"])
        return DEFAULT_KERNEL

    def _shared_resource(self, room: NotebookRoom) -> Resource:
        """The resource the owner picked for the shared kernel (else the default)."""
        settings = room.record.settings
        value = settings.get("resource")
        if value is None and isinstance(settings.get("shared_server"), str):
            value = f"server:{settings['shared_server']}"  # as the first release wrote it
        try:
            return self.resources.offered(value) if value is not None else self.resources.default
        except BadRequest:
            return self.resources.default  # no longer offered (the admin changed the config)

    def choice(self, room: NotebookRoom, user: str) -> tuple[Resource, str]:
        """The resource and kernelspec ``user``'s executions go to."""
        if self.mode(room) != "per-user":
            return self._shared_resource(room), self.kernel_name(room)
        picked = self._choices.get(room.id, {}).get(user)
        if picked is not None:
            with contextlib.suppress(BadRequest):
                return self.resources.offered(picked[0]), picked[1] or self.kernel_name(room)
        return self.resources.default, self.kernel_name(room)

    def owner_key(self, room: NotebookRoom, user: str) -> Owner:
        """Whose kernels ``user`` uses: their own (per-user mode) or the notebook's."""
        return (room.id, user if self.mode(room) == "per-user" else "")

    def key_for(self, room: NotebookRoom, user: str) -> KernelKey:
        res, name = self.choice(room, user)
        return (*self.owner_key(room, user), res.id, name)

    def find_kernel(self, room: NotebookRoom, user: str) -> Kernel | None:
        """The kernel ``user``'s executions go to, if it exists."""
        return self.kernels.get(self.key_for(room, user))

    def kept_kernels(self, room: NotebookRoom, user: str) -> list[Kernel]:
        """The other kernels ``user`` (per-user) or the notebook (shared) keeps running."""
        owner, current = self.owner_key(room, user), self.key_for(room, user)
        return [k for key, k in self.kernels.items() if key[:2] == owner and key != current and k.live]

    def kernel_for(self, room: NotebookRoom, user: str) -> Kernel:
        """The kernel the ``user`` executes in (created, not started, if missing)."""
        self._check_started()
        key = self.key_for(room, user)
        kernel = self.kernels.get(key)
        if kernel is None:
            self._make_space(key)
            kernel = self._make_kernel(room, key)
        return kernel

    def _make_space(self, key: KernelKey) -> None:
        """Before a new kernel of ``key``'s owner: drop the ones that hold nothing, and
        past ``max_kernels_per_user`` shut down the least recently used idle one."""
        owner = key[:2]
        theirs = [k for other, k in self.kernels.items() if other[:2] == owner]
        for kernel in theirs:
            if not kernel.live:
                del self.kernels[kernel.key]
                self._in_background(kernel.close("This kernel was not running."))
        running = [k for k in theirs if k.live]
        if len(running) < self.max_kernels_per_user:
            return
        idle = sorted((k for k in running if not k.busy and not k.attaching), key=lambda k: k.last_activity)
        if not idle:
            raise KernelStartFailed(
                f"{len(running)} kernels already run for you in this notebook and none is idle;"
                " wait for one, or shut one down, before starting another.",
                code="too_many_kernels",
            )
        oldest = idle[0]
        del self.kernels[oldest.key]
        log.info("shutting down %r to make room for a kernel on %s", oldest, key[2])
        self._in_background(oldest.close(f"shut down to make room for a kernel on {key[2]} (at most {self.max_kernels_per_user} are kept)"))

    def _beside(self, kernel: Kernel, same_owner: bool) -> Iterator[Kernel]:
        """The notebook's other kernels (``same_owner``: only its owner's, the user's
        per-user kernels or the shared ones, e.g. kept after a switch)."""
        n = 2 if same_owner else 1  # KernelKey: (notebook, user, resource, kernel name)
        for k in self.kernels.values():
            if k is not kernel and k.key[:n] == kernel.key[:n]:
                yield k

    def _make_kernel(self, room: NotebookRoom, key: KernelKey) -> Kernel:
        nb_id, user, resource, kernel_name = key
        res = parse_resource(resource)
        provider = self.resources.provider(res)
        runs_as, server = self._where(room, user, res)
        cwd = os.path.join(self.data_dir, "notebooks", nb_id)
        if user:
            cwd = os.path.join(cwd, "users", SAFE_NAME.sub("_", user) + "-" + source_hash(user)[:8])
        extra = provider.start_timeout if isinstance(provider, HubProvider) else 0.0
        config = KernelConfig(
            env=kernel_environment(cwd, self.kernel_env),
            cwd=cwd,
            runtime_dir=os.path.join(self.data_dir, "runtime"),
            start_timeout=self.start_timeout + extra,
            flush_interval=self.flush_interval,
            max_output_bytes=self.max_output_bytes,
            widgets=self.widget_limits,
        )
        kernel = Kernel(self, nb_id, user or None, kernel_name, config, provider, runs_as, server, resource=res.id)
        kernel.widgets.mine = lambda: sum(k.widgets.total for k in self._beside(kernel, same_owner=True))
        kernel.widgets.others = lambda: sum(k.widgets.total for k in self._beside(kernel, same_owner=False))
        kernel.widgets.owner = user or None
        kernel.widgets.kernel_id = f"{res.id} {kernel_name}"
        self.kernels[key] = kernel
        return kernel

    def _where(self, room: NotebookRoom, user: str, res: Resource) -> tuple[str, str]:
        """Whose resource a kernel runs on, and which server: in per-user mode the
        runner's own; in shared mode the notebook's owner's, and on a Hub server only
        once they consented there (everyone who may run the notebook's cells then runs
        code as the owner)."""
        if user:
            return user, res.server
        owner = self._owner(room)
        if res.kind == "server" and not self._consented(room, owner, res):
            raise KernelStartFailed(
                f"The shared kernel of this notebook runs on a server of its owner, {owner}, and"
                " everyone who may run its cells then runs code as them: the owner must choose"
                " that server first (the kernel picker, or the settings resource with consent).",
                code="kernel_consent_required",
            )
        return owner, res.server

    @staticmethod
    def _consented(room: NotebookRoom, owner: str, res: Resource) -> bool:
        """True if ``owner`` picked ``res`` for the shared kernel themselves."""
        return room.record.settings.get("shared_consent_by") == owner

    # -- messages to sessions ---------------------------------------------------------------

    def state_message(self, room: NotebookRoom, user: str) -> dict[str, Any]:
        """The ``kernel`` message for ``user``: the kernel their executions go to (or
        where it would run), and the other kernels they keep."""
        res, name = self.choice(room, user)
        kernel = self.kernels.get((*self.owner_key(room, user), res.id, name))
        msg: dict[str, Any] = {
            "type": "kernel",
            "state": kernel.state if kernel is not None else "shutdown",
            "kernel_name": name,
            "kernel_mode": self.mode(room),
            "resource": res.id,
            "queue": kernel.queued_cells() if kernel is not None else [],
            "running": kernel.current.cell_id if kernel is not None and kernel.current is not None else None,
            "where": self.where(room, user, res),
            "kept": [
                {"resource": k.resource, "kernel_name": k.kernel_name, "state": k.state, "busy": k.busy}
                for k in self.kept_kernels(room, user)
            ],
        }
        if kernel is not None and kernel.message:
            msg["message"] = kernel.message
        return msg

    def where(self, room: NotebookRoom, user: str, res: Resource | None = None) -> str:
        """Where ``user``'s kernel runs (or would run), in words for the kernel status."""
        if res is None:
            res = self.choice(room, user)[0]
        if self.mode(room) == "per-user":
            return res.describe(user)
        owner = self._owner(room)
        if res.kind == "server" and not self._consented(room, owner, res):
            return f"nowhere yet: {owner} must choose a server for it"
        return res.describe(owner)

    def on_state(self, kernel: Kernel) -> None:
        """A change of state is told at once; a change of the queue alone at most every
        :data:`QUEUE_TELL_INTERVAL` seconds (the latest queue)."""
        room = self.rooms.rooms.get(kernel.nb_id)
        if room is None or self.kernels.get(kernel.key) is not kernel:
            return
        told = (kernel.state, kernel.message)
        if self._told.get(kernel) != told:
            pending = self._tell_later.pop(kernel, None)
            if pending is not None:
                pending.cancel()
            self._told[kernel] = told
            self._tell(room, kernel)
        elif kernel not in self._tell_later:
            self._tell_later[kernel] = asyncio.get_running_loop().call_later(
                QUEUE_TELL_INTERVAL, self._tell_queue, kernel
            )

    def _tell_queue(self, kernel: Kernel) -> None:
        self._tell_later.pop(kernel, None)
        room = self.rooms.rooms.get(kernel.nb_id)
        if room is not None and self.kernels.get(kernel.key) is kernel:
            self._tell(room, kernel)

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
            self._record(self.store.set_kernel_run, kernel.key, None)
        status = ex.done.result()
        if self.metrics is not None:
            counter = self._executions.get(status)
            if counter is None:
                counter = self._executions[status] = self.metrics.executions.labels(status)
            counter.inc()
        detail = {"status": status, "duration": ex.duration, "execution_count": ex.execution_count}
        if kernel.user is not None:
            detail["kernel"] = "per-user"
        self._in_background(
            self._audit(kernel.nb_id, ex.user, "execute", f"cell:{ex.cell_id}", detail)
        )

    def kernel_census(self) -> KernelCensus:
        """Kernels by provider and state (every state of every provider, 0 included) and
        their queues, read at each metrics scrape."""
        counts = {(provider, state): 0 for provider in self.resources.providers for state in STATES}
        queued = longest = 0
        for kernel in self.kernels.values():
            key = (kernel.provider.name, kernel.state)
            counts[key] = counts.get(key, 0) + 1
            waiting = len(kernel.queue)
            queued += waiting
            longest = max(longest, waiting)
        return KernelCensus(counts, queued, longest)

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
        session.send_json(self.state_message(room, session.identity.name))
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
    ) -> tuple[list[Execution], list[str], list[str]]:
        """Run all code cells (from ``start`` on, if given) that ``identity`` may execute.

        Returns the queued executions, the code cells skipped for lack of rights, and
        those not queued because the queue is full (the first ones fit). An error or
        interrupt in one aborts the rest of this run.
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
            return [], skipped, []
        fits = self.queue_room(room, identity.name)
        not_queued = [cid for cid, _ in todo[fits:]] if fits else []
        todo = todo[:fits] if fits else todo  # none fits: _submit says why
        queued = await self._submit(room, identity, todo, batch=next(self._batches))
        return [ex for ex, _ in queued], skipped, not_queued

    async def _submit(
        self,
        room: NotebookRoom,
        identity: Identity,
        cells: list[tuple[str, str]],
        batch: int | None,
    ) -> list[tuple[Execution, int]]:
        self._check_queue(room, identity.name, len(cells))
        kernel = self.kernel_for(room, identity.name)
        for other in self.kept_kernels(room, identity.name):
            running = {ex.cell_id for ex in other.queue} | ({other.current.cell_id} if other.current else set())
            for cid, _ in cells:
                if cid in running:
                    raise Conflict(
                        f"this cell still runs in the {other.kernel_name} kernel on {other.resource};"
                        " interrupt it or wait until it is done",
                        code="cell_busy",
                    )
        executions = [
            self._new_execution(room, kernel, identity.name, cid, src, batch) for cid, src in cells
        ]
        # queued at once, in the order asked (an execute sent next cannot overtake these
        # while the kernel starts); a kernel that cannot start ends them (the runner does)
        queued: list[tuple[Execution, int]] = []
        try:
            for ex in executions:
                queued.append((ex, kernel.submit(ex)))
        except KernelStartFailed as exc:  # the service is stopping
            for ex in executions[len(queued) :]:
                kernel.fail_start(ex, exc)
            raise
        if not kernel.up:
            await kernel.ensure_started()
        return queued

    def queue_room(self, room: NotebookRoom, user: str) -> int:
        """How many more cells ``user`` may queue in the notebook now."""
        waiting = [ex for key, k in self.kernels.items() if key[0] == room.id for ex in k.queue]
        mine = sum(1 for ex in waiting if ex.user == user)
        return max(0, min(self.max_queued_per_user - mine, self.max_queued_per_notebook - len(waiting)))

    def _check_queue(self, room: NotebookRoom, user: str, adding: int) -> None:
        """Refuse (``queue_full``, 429) what would queue more than a user's or the
        notebook's share of waiting cells."""
        waiting = [ex for key, k in self.kernels.items() if key[0] == room.id for ex in k.queue]
        mine = sum(1 for ex in waiting if ex.user == user)
        if mine + adding > self.max_queued_per_user:
            raise RateLimited(
                f"you have {mine} cells waiting in this notebook (at most {self.max_queued_per_user});"
                " wait for them, or interrupt",
                code="queue_full",
            )
        if len(waiting) + adding > self.max_queued_per_notebook:
            raise RateLimited(
                f"{len(waiting)} cells are waiting in this notebook (at most {self.max_queued_per_notebook});"
                " wait for them, or interrupt",
                code="queue_full",
            )

    async def interrupt(self, room: NotebookRoom, identity: Identity) -> dict[str, Any]:
        """Interrupt ``identity``'s kernel (the ``interrupt`` command checked the right)."""
        kernel = self.find_kernel(room, identity.name)
        # a run left in a kernel switched away from is interrupted too
        others = [k for k in self.kept_kernels(room, identity.name) if k.busy]
        if (kernel is None or not kernel.live) and not others:
            return {"interrupted": None, "aborted": []}
        running: str | None = None
        aborted: list[Execution] = []
        for k in ([kernel] if kernel is not None and kernel.live else []) + others:
            running = running or (k.current.cell_id if k.current is not None else None)
            aborted += await k.interrupt(identity.name)
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

    async def shutdown(
        self, room: NotebookRoom, identity: Identity, resource: Any = None, kernel_name: Any = None
    ) -> dict[str, Any]:
        """Shut ``identity``'s kernel down (the command checked the ``restart`` right);
        with ``resource`` and ``kernel_name``, one they kept after switching away."""
        if resource is None and kernel_name is None:
            kernel = self.find_kernel(room, identity.name)
        else:
            if not isinstance(resource, str) or not isinstance(kernel_name, str):
                raise BadRequest("resource and kernel_name must both be strings", code="invalid_command")
            kernel = self.kernels.get((*self.owner_key(room, identity.name), resource, kernel_name))
            if kernel is None:
                raise NotFound(f"no {kernel_name[:80]} kernel runs for you on {resource[:80]}", code="unknown_kernel")
        if kernel is None:
            return {"state": "shutdown"}
        self._in_background(
            self._audit(room.id, identity.name, "shutdown", "kernel", {"resource": kernel.resource, "kernel_name": kernel.kernel_name})
        )
        await kernel.shutdown(f"the kernel was shut down by {identity.name}")
        if kernel is not self.find_kernel(room, identity.name):
            # a kept kernel: it holds nothing now, drop it (and say so to its users)
            self.kernels.pop(kernel.key, None)
            self._tell(room, kernel)
        return {"state": kernel.state}

    def _tell(self, room: NotebookRoom, kernel: Kernel) -> None:
        """Send the current ``kernel`` message to whoever uses ``kernel``'s owner's kernels."""
        if kernel.user is not None:
            room.broadcast_json(self.state_message(room, kernel.user), user=kernel.user)
        elif self.mode(room) != "per-user":
            room.broadcast_json(self.state_message(room, ""))

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

    async def widget_message(self, room: NotebookRoom, identity: Identity, msg: dict[str, Any], *, custom: bool) -> None:
        """A client's ``widget_update`` / ``widget_custom`` (the command checked ``execute``
        on ``msg["cell_id"]``): to the caller's kernel (per-user: their own)."""
        kernel = self.find_kernel(room, identity.name)
        if kernel is None:
            raise NotFound("no kernel runs for this notebook: its widgets are gone", code="unknown_widget")
        payload = msg.get("content") if custom else msg.get("state")
        await kernel.widget_message(
            identity.name, msg["cell_id"], msg.get("model_id"), payload, custom=custom,
            buffer_paths=msg.get("buffer_paths"), buffers=msg.get("buffers"),
        )

    def status(self, room: NotebookRoom, identity: Identity) -> dict[str, Any]:
        msg = self.state_message(room, identity.name)
        msg.pop("type")
        return msg

    # -- settings and switching -----------------------------------------------------------------

    def settings(self, room: NotebookRoom) -> dict[str, Any]:
        res = self._shared_resource(room)
        owner = self._owner(room)
        consented = res.kind != "server" or self._consented(room, owner, res)
        return {
            "kernel_mode": self.mode(room),
            "kernel_name": self.kernel_name(room),
            "provider": self.resources.default.provider,
            "default_resource": self.resources.default.id,
            "resource": res.id,
            # the owner's server the shared kernel runs on, once they consented ("" default)
            "shared_server": res.server if res.kind == "server" and consented else None,
        }

    async def set_settings(
        self, room: NotebookRoom, identity: Identity, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Change the notebook's kernel settings (the command checked ``change_settings``).

        ``kernel_mode``: every kernel of the notebook is shut down. ``kernel_name``,
        ``resource`` (or ``shared_server``, the same as ``resource: "server:<name>"``)
        with ``consent``: the shared kernel switches; the previous one is kept.
        """
        unknown = set(body) - {"kernel_mode", "kernel_name", "resource", "shared_server", "consent"}
        if unknown:
            raise BadRequest(
                f"unknown field(s): {', '.join(sorted(unknown))[:200]}", code="invalid_field"
            )
        new = dict(room.record.settings)
        if "kernel_mode" in body:
            if body["kernel_mode"] not in KERNEL_MODES:
                raise BadRequest(
                    f"kernel_mode must be 'shared' or 'per-user', got {str(body['kernel_mode'])[:40]!r}",
                    code="invalid_setting",
                )
            new["kernel_mode"] = body["kernel_mode"]
        if "resource" in body or "shared_server" in body or "consent" in body:
            self._shared_pick(room, identity, body, new)
        if "kernel_name" in body:
            new["kernel_name"] = await self._checked_kernel_name(body["kernel_name"], self._shared_resource(room), self._owner(room))
        old = dict(room.record.settings)
        if new == old:
            return self.settings(room)
        mode_changed = self.mode(room) != (new.get("kernel_mode") if new.get("kernel_mode") in KERNEL_MODES else "shared")
        if not mode_changed and self.mode(room) == "shared":
            current = self.find_kernel(room, "")
            if current is not None and current.busy and self._shared_key(room, new) != current.key:
                raise self._busy_error(current)
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.store.update_notebook(room.id, settings=new)
        )
        room.record = dataclasses.replace(room.record, settings=new)
        if mode_changed:
            mine = self._pop_kernels(room.id)
            await asyncio.gather(
                *(k.close(f"The notebook's kernel mode was changed by {identity.name}.") for k in mine)
            )
            peruser.reroute_all(room)
        for session in list(room.sessions):
            self._joined(room, session)
        if self.replicas is not None:
            self.replicas.publish_event(room.id, "record", {})
        self._in_background(
            self._audit(room.id, identity.name, "settings", "kernel", {"old": old, "new": new})
        )
        return self.settings(room)

    def _shared_key(self, room: NotebookRoom, settings: dict[str, Any]) -> KernelKey:
        """The shared kernel's key under ``settings``."""
        saved = room.record
        room.record = dataclasses.replace(saved, settings=settings)
        try:
            return self.key_for(room, "")
        finally:
            room.record = saved

    @staticmethod
    def _busy_error(kernel: Kernel) -> Conflict:
        return Conflict(
            f"the {kernel.kernel_name} kernel on {kernel.resource} is running a cell; interrupt it"
            " or wait until it is done, then switch",
            code="kernel_busy",
        )

    def _shared_pick(self, room: NotebookRoom, identity: Identity, body: dict[str, Any], new: dict[str, Any]) -> None:
        """The resource of the shared kernel. On a Hub server it runs as the notebook's
        owner: only they may pick one, and only with ``consent: true``."""
        if "resource" in body and "shared_server" in body:
            raise BadRequest("give resource or shared_server, not both", code="invalid_setting")
        if "shared_server" in body:
            server = body["shared_server"]
            if not isinstance(server, str):
                raise BadRequest('shared_server must be the name of one of your servers ("" for the default one)', code="invalid_setting")
            value: Any = f"server:{server}"
        else:
            value = body.get("resource", new.get("resource", self._shared_resource(room).id))
        res = self.resources.offered(value)
        owner = self._owner(room)
        if res.kind == "server":
            if identity.name != owner:
                raise Forbidden(
                    "only the notebook's owner may put its shared kernel on their server (everyone who"
                    " may run its cells then runs code as the owner)"
                )
            if body.get("consent") is not True:
                raise BadRequest(
                    "consent must be true: everyone who may run this notebook's cells will run code as you,"
                    " with your files and rights on that server",
                    code="consent_required",
                )
            new["shared_consent_by"] = owner
        new.pop("shared_server", None)
        new["resource"] = res.id

    async def _checked_kernel_name(self, name: Any, res: Resource, user: str) -> str:
        """``name`` if ``res`` has that kernelspec (or cannot say now: a stopped server)."""
        if not isinstance(name, str) or not name or len(name) > 255:
            raise BadRequest("kernel_name must be the name of a kernelspec", code="invalid_setting")
        # a remote resource is not asked here (a stopped server would keep the caller
        # waiting): a name it lacks fails where the kernel starts, with a clear error
        specs = await self.resources.known_kernelspecs(res, user)
        if specs is None:
            return name
        names = [s["name"] for s in specs["kernelspecs"]]
        if name not in names:
            raise BadRequest(
                f"{res.describe(user).removeprefix('on ')} has no kernelspec named {name[:80]!r}; available: {', '.join(names)[:300]}",
                code="unknown_kernel",
            )
        return name

    async def select(self, room: NotebookRoom, identity: Identity, body: dict[str, Any]) -> dict[str, Any]:
        """Switch the caller's kernel (per-user mode) or, for the owner, the notebook's
        shared kernel to another ``resource`` and/or ``kernel_name``.

        The previous kernel is kept (switching back finds its state); one that runs a
        cell is not switched away from (``kernel_busy``).
        """
        unknown = set(body) - {"resource", "kernel_name", "consent"}
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))[:200]}", code="invalid_field")
        if self.mode(room) != "per-user":
            if identity.name != self._owner(room) and not identity.admin:
                raise Forbidden(
                    "in shared mode the notebook's owner picks where its kernel runs; ask them, or"
                    " ask for per-user mode to pick your own"
                )
            await self.set_settings(room, identity, {k: v for k, v in body.items()})
            return self.status(room, identity)
        user = identity.name
        res, name = self.choice(room, user)
        if "resource" in body:
            res = self.resources.offered(body["resource"])
        picked_name = self._choices.get(room.id, {}).get(user, ("", ""))[1]
        if "kernel_name" in body:
            picked_name = await self._checked_kernel_name(body["kernel_name"], res, user)
        new_key: KernelKey = (room.id, user, res.id, picked_name or self.kernel_name(room))
        current = self.find_kernel(room, user)
        if new_key == self.key_for(room, user):
            return self.status(room, identity)
        if current is not None and current.busy:
            raise self._busy_error(current)
        self._choices.setdefault(room.id, {})[user] = (res.id, picked_name)
        self._save_choice(room, user, (res.id, picked_name))
        room.broadcast_json(self.state_message(room, user), user=user)
        self._in_background(
            self._audit(room.id, user, "select_kernel", "kernel", {"resource": res.id, "kernel_name": new_key[3]})
        )
        return self.status(room, identity)

    def _save_choice(self, room: NotebookRoom, user: str, choice: tuple[str, str]) -> None:
        """Write the pick (the latest one, once per burst); then tell the other replicas."""
        key = (room.id, user)
        pending = key in self._unsaved
        self._unsaved[key] = choice
        if pending:
            return
        loop = asyncio.get_running_loop()

        def write() -> None:
            latest = self._unsaved.get(key)
            if latest is None:
                return
            try:
                self.store.set_kernel_choice(room.id, user, *latest)
            except Exception:
                log.exception("could not save the kernel choice of %s in %s", user, room.id)
            finally:
                loop.call_soon_threadsafe(self._saved, key, latest)

        with contextlib.suppress(RuntimeError):
            self._records.submit(write)

    def _saved(self, key: Owner, choice: tuple[str, str]) -> None:
        if self._unsaved.get(key) == choice:
            del self._unsaved[key]
        elif key in self._unsaved:  # picked again while writing: write the newest
            room = self.rooms.rooms.get(key[0])
            latest = self._unsaved.pop(key)
            if room is not None:
                self._save_choice(room, key[1], latest)
            return
        if self.replicas is not None:
            self.replicas.publish_event(key[0], "record", {})

    async def resource_listing(self, room: NotebookRoom, identity: Identity) -> dict[str, Any]:
        """What the caller may pick from, and what they use now."""
        res, name = self.choice(room, identity.name)
        may = self.mode(room) == "per-user" or identity.name == self._owner(room) or identity.admin
        listing = await self.resources.listing(identity.name)
        return {
            **listing,
            "kernel_mode": self.mode(room),
            "resource": res.id,
            "kernel_name": name,
            "may_choose": may,
            "owner": self._owner(room),
        }

    async def start_server(self, room: NotebookRoom, identity: Identity, name: Any) -> dict[str, Any]:
        """Start the caller's own server ``name`` ("" default), telling their sessions
        how it goes (``server_progress``); return once it is ready."""
        if not isinstance(name, str):
            raise BadRequest('server must be the name of one of your servers ("" for the default one)', code="invalid_command")
        res = self.resources.offered(f"server:{name}")
        user = identity.name

        def progress(event: Progress) -> None:
            room.broadcast_json(
                {
                    "type": "server_progress",
                    "resource": res.id,
                    "progress": event.progress,
                    "message": event.message[:300],
                    "ready": event.ready,
                    "failed": event.failed,
                },
                user=user,
            )

        await self.resources.start_server(user, res.server, progress)
        self._in_background(self._audit(room.id, user, "start_server", res.id, {}))
        return {"resource": res.id, "state": "ready"}

    # -- deletion ---------------------------------------------------------------------------

    async def forget_notebook(self, nb_id: str) -> None:
        """The notebook was deleted: shut its kernels down and remove their working
        directory (``<data_dir>/notebooks/<id>``, the files its kernels wrote)."""
        mine = self._pop_kernels(nb_id)
        await asyncio.gather(*(k.close("The notebook was deleted.") for k in mine), return_exceptions=True)
        self._choices.pop(nb_id, None)
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
