"""One kernel and its execution queue: :class:`Kernel`.

:class:`~hub_collab.kernels.manager.KernelService` creates one :class:`Kernel`
per shared notebook (or per notebook and user in per-user mode) and talks to it
through :meth:`Kernel.submit`, :meth:`Kernel.interrupt`, :meth:`Kernel.restart`
and :meth:`Kernel.shutdown`. Do not build one yourself.

The kernel runs one execution at a time: the queue is ours, not the kernel's,
so every client can see it, an interrupt can abort what is still waiting, and a
dying kernel takes down only what it was running. IOPub messages are routed by
``parent_header.msg_id`` to the execution's
:class:`~hub_collab.kernels.outputs.OutputWriter` and flushed into its
``out:`` doc every ``flush_interval`` seconds, so a flood of tiny messages
becomes a handful of document updates. An execution ends when both its
``execute_reply`` and its ``status: idle`` have arrived (so no output is
missed), or when the kernel dies, is restarted or is shut down.

Where the kernel runs is the business of its
:class:`~hub_collab.kernels.provider.KernelProvider`: the :class:`Kernel` starts
it through the provider and talks to it through the
:class:`~hub_collab.kernels.provider.KernelConnection` it gets back, and is the
connection's :class:`~hub_collab.kernels.provider.KernelSink`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from pycrdt import Doc

from .. import logs
from ..errors import CollabError, NotFound
from ..tasks import cancel_and_wait
from .outputs import DisplayRegistry, OutputWriter
from .provider import KernelConnection, KernelProvider, KernelRequest
from .widgets import WIDGET_TARGET, WidgetLimits, WidgetRegistry

log = logging.getLogger("hub_collab.kernels")

#: kernel states sent to clients (``{"type": "kernel", "state": ...}``)
STATES = ("starting", "idle", "busy", "dead", "restarting", "shutdown")
#: how an execution ends (``Execution.done``); ``unknown``: it ended while no service listened
END_STATUSES = ("ok", "error", "interrupted", "aborted", "kernel_died", "kernel_start_failed", "unknown")
#: finished executions whose late output (background threads) is still routed
RECENT_EXECUTIONS = 64
#: seconds to wait for the IOPub ``idle`` of an execution once its reply has arrived
IDLE_GRACE = 3.0
#: seconds between the kernel_info probes that wait for IOPub after an attach
IOPUB_PROBE_INTERVAL = 0.5
#: the notice of a run whose kernel was not found again after a service restart
LOST_NOTICE = "The service restarted; the kernel was lost. Run the cell again."
#: the notice of a run that ended while no service process listened to its kernel
RESUME_GAP_NOTICE = (
    "This cell finished while the service was restarting: how it ended, and what it"
    " printed in the meantime, is not known. Run it again to see all of its output."
)


class KernelStartFailed(CollabError):
    """The kernel could not be started (unknown or broken kernelspec, timeout)."""

    status = 503
    code = "kernel_start_failed"


def _new_future() -> asyncio.Future[str]:
    return asyncio.get_running_loop().create_future()


@dataclass(eq=False)
class Execution:
    """One request to run one cell, from being queued to its end."""

    cell_id: str
    user: str
    source: str
    doc: Doc[Any]
    writer: OutputWriter
    batch: int | None = None
    queued_at: float = field(default_factory=time.time)
    msg_id: str = ""
    started_at: float | None = None
    ended_at: float | None = None
    reply: dict[str, Any] | None = None
    idle_seen: bool = False
    interrupted: bool = False
    execution_count: int | None = None
    #: resolves with the final status, one of END_STATUSES
    done: asyncio.Future[str] = field(default_factory=_new_future)

    @property
    def duration(self) -> float:
        if self.started_at is None or self.ended_at is None:
            return 0.0
        return round(self.ended_at - self.started_at, 6)


class KernelOwner(Protocol):
    """What a :class:`Kernel` reports to (the :class:`KernelService`)."""

    def on_state(self, kernel: Kernel) -> None: ...

    def on_started(self, kernel: Kernel) -> None:
        """A kernel runs now (``kernel.conn.info()`` finds it again)."""

    def on_run(self, kernel: Kernel, ex: Execution) -> None:
        """``ex`` was sent to the kernel."""

    def on_stopped(self, kernel: Kernel) -> None:
        """The kernel is gone (shut down, died, restarting): nothing to find again."""

    def on_input(self, kernel: Kernel, ex: Execution, prompt: str, password: bool) -> None: ...

    def on_input_done(self, kernel: Kernel, ex: Execution) -> None: ...

    def on_finished(self, kernel: Kernel, ex: Execution) -> None: ...


@dataclass
class KernelConfig:
    """The settings a kernel needs from ``HubCollab``."""

    env: dict[str, str]
    cwd: str
    runtime_dir: str
    start_timeout: float = 60.0
    flush_interval: float = 0.02
    max_output_bytes: int = 10_000_000
    shutdown_wait: float = 3.0
    widgets: WidgetLimits = field(default_factory=WidgetLimits)


class Kernel:
    """A kernel for one notebook (and one user in per-user mode)."""

    def __init__(
        self,
        owner: KernelOwner,
        nb_id: str,
        user: str | None,
        kernel_name: str,
        config: KernelConfig,
        provider: KernelProvider,
        runs_as: str = "",
        server: str = "",
        resource: str = "local",
    ) -> None:
        self.owner = owner
        self.provider = provider
        #: the resource it runs on (``server:<name>``, ``gateway``, ``local``: kernels/resources.py)
        self.resource = resource
        #: the Hub user whose resource the kernel runs on (the runner, or the notebook's owner)
        self.runs_as = runs_as or (user or "")
        #: the named server of ``runs_as`` it runs on (``hub`` provider; "" the default one)
        self.server = server
        self.nb_id = nb_id
        #: None for the notebook's shared kernel, else the user of a per-user kernel
        self.user = user
        self.kernel_name = kernel_name
        self.config = config
        self.state = "shutdown"
        #: why the kernel is dead or shut down (shown to users), or ""
        self.message = ""
        self.queue: deque[Execution] = deque()
        self.current: Execution | None = None
        self.registry = DisplayRegistry()
        #: the ipywidgets models its executions opened (kernels/widgets.py)
        self.widgets = WidgetRegistry(config.widgets, on_dirty=self._widgets_dirty)
        self.last_activity = time.monotonic()
        self.pending_input: tuple[Execution, str, bool] | None = None
        self.conn: KernelConnection | None = None
        self.up = False
        self.closed = False
        self._recent: OrderedDict[str, Execution] = OrderedDict()
        self._starting: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._dirty: set[OutputWriter] = set()
        self._widgets_pending = False
        self._flush_handle: asyncio.TimerHandle | None = None
        self._wake = asyncio.Event()
        #: an execution sent by a previous service process, followed after an attach
        self._resumed: Execution | None = None
        self._attaching = False
        self._probe = ""
        self._comm_probe = ""
        #: IOPub is known to deliver (attach: once a message came; a started kernel: at once)
        self._iopub_ok = asyncio.Event()
        self._iopub_ok.set()
        self._runner = self._spawn(self._run())

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        """A task of the kernel's own: it outlives the request that made it start, so it
        logs with the notebook (and per-user kernel's user), not that request's id."""
        context = logs.detached(notebook=self.nb_id, user=self.user)
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, context=context)
        return task

    def __repr__(self) -> str:
        who = f" user={self.user!r}" if self.user else ""
        return f"<Kernel {self.nb_id}{who} {self.kernel_name} on {self.resource} {self.state}>"

    @property
    def key(self) -> tuple[str, str, str, str]:
        """(notebook, user or "" for the shared kernel, resource, kernelspec): unique per service."""
        return (self.nb_id, self.user or "", self.resource, self.kernel_name)

    @property
    def busy(self) -> bool:
        """A cell runs or waits in it."""
        return self.current is not None or bool(self.queue)

    # -- state ------------------------------------------------------------------------------

    @property
    def live(self) -> bool:
        """A process exists or is coming, or work is waiting: keep the room loaded."""
        return self.up or self._starting is not None or bool(self.queue) or self.current is not None

    def queued_cells(self) -> list[str]:
        return [ex.cell_id for ex in self.queue]

    def _set_state(self, state: str, message: str = "") -> None:
        assert state in STATES, state
        self.state = state
        self.message = message
        self.last_activity = time.monotonic()
        self.owner.on_state(self)

    def _changed(self) -> None:
        self.owner.on_state(self)

    # -- starting ----------------------------------------------------------------------------

    async def ensure_started(self) -> None:
        """Start the kernel unless it runs; concurrent callers share one attempt.

        Raises :class:`KernelStartFailed`; the next call makes a new attempt.
        """
        while not self.up:
            if self.closed:
                raise KernelStartFailed("the kernel service is stopping")
            task = self._starting
            if task is None:
                task = self._starting = self._spawn(self._start())
            try:
                await asyncio.shield(task)
            finally:
                if task.done() and self._starting is task:
                    self._starting = None

    async def _start(self) -> None:
        self._set_state("starting")
        cfg = self.config
        request = KernelRequest(
            kernel_name=self.kernel_name,
            user=self.runs_as,
            server=self.server,
            env=dict(cfg.env),
            cwd=cfg.cwd,
            runtime_dir=cfg.runtime_dir,
            start_timeout=cfg.start_timeout,
            shutdown_wait=cfg.shutdown_wait,
            progress=self._progress,
        )
        try:
            conn = await asyncio.wait_for(self.provider.start(request), cfg.start_timeout + 2)
        except Exception as exc:
            log.warning(
                "kernel %r for notebook %s failed to start: %s", self.kernel_name, self.nb_id, exc
            )
            reason = str(exc).strip() or type(exc).__name__
            if isinstance(exc, asyncio.TimeoutError):
                reason = f"no answer within {cfg.start_timeout:g} s"
            message = f"The kernel {self.kernel_name!r} could not start: {reason[:300]}"
            self._set_state("dead", message)
            raise KernelStartFailed(message, log_message=f"{message} ({exc!r})") from exc
        self.conn, self.up = conn, True
        conn.listen(self)
        self.owner.on_started(self)
        log.info(
            "started kernel %s (%s) for notebook %s%s",
            self.kernel_name,
            self.provider.name,
            self.nb_id,
            f" (user {self.user})" if self.user else "",
        )
        self._set_state("busy" if self.current or self.queue else "idle")

    def _progress(self, message: str) -> None:
        """What the provider is doing before the kernel runs (a server starting...)."""
        if self.state == "starting" and not self.closed:
            self.message = message[:300]
            self._changed()

    @property
    def attaching(self) -> bool:
        """Finding again a kernel that a previous service process started."""
        return self._attaching

    def attach(self, info: dict[str, Any], run: Execution | None) -> None:
        """Find the kernel a previous service process started (``info``) and follow
        ``run``, the execution it was running then; executions wait until this ends."""
        if self._starting is not None or self.up:
            raise RuntimeError("Kernel.attach() on a kernel that runs or is starting")
        self._attaching = True
        self._starting = self._spawn(self._attach(info, run))

    async def _attach(self, info: dict[str, Any], run: Execution | None) -> None:
        try:
            await self._attach_now(info, run)
        finally:
            self._attaching = False
            if self._starting is asyncio.current_task():
                self._starting = None  # found again (up) or not (nothing runs): done either way

    async def _attach_now(self, info: dict[str, Any], run: Execution | None) -> None:
        self._set_state("starting")
        cfg = self.config
        request = KernelRequest(
            kernel_name=self.kernel_name, user=self.runs_as, server=self.server, env=dict(cfg.env), cwd=cfg.cwd,
            runtime_dir=cfg.runtime_dir, start_timeout=cfg.start_timeout, shutdown_wait=cfg.shutdown_wait,
        )  # fmt: skip
        try:
            conn = await asyncio.wait_for(self.provider.attach(info, request), cfg.start_timeout)
        except Exception as exc:
            log.info("kernel of notebook %s not found again (%s): the next execution starts one", self.nb_id, exc)
            if run is not None:
                self._complete(run, "interrupted", notice=LOST_NOTICE)
            self.widgets.forget_all()
            self.owner.on_stopped(self)
            self._set_state("shutdown", "The kernel was lost when the service restarted; the next execution starts a new one.")
            return
        self.conn, self.up = conn, True
        if run is not None:
            self._recent[run.msg_id] = run
            self._resumed = self.current = run
        self._iopub_ok.clear()
        conn.listen(self)
        self._tasks.append(self._spawn(self._confirm_iopub(conn, cfg.start_timeout)))
        # answered once the kernel is done with what it runs: then the run's end is known
        self._probe = conn.kernel_info()
        if self.widgets.models:
            # the models adopted from the docs: keep those the kernel still has
            self._comm_probe = conn.comm_info(WIDGET_TARGET)
        log.info("attached to the kernel of notebook %s%s again", self.nb_id, f" (user {self.user})" if self.user else "")
        self._set_state("busy" if run is not None else "idle")

    async def _confirm_iopub(self, conn: KernelConnection, timeout: float) -> None:
        """Ask the kernel for its info until an IOPub message comes. A subscription made
        just now misses what the kernel publishes before it takes effect (ZeroMQ's "slow
        joiner"): an execution sent then would lose its idle status and never end (seen
        after a service restart on a busy machine). New executions wait for this."""
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            while not self._iopub_ok.is_set() and conn is self.conn:
                if asyncio.get_running_loop().time() > deadline:
                    log.warning("kernel of notebook %s: no IOPub message %g s after attaching; going on", self.nb_id, timeout)
                    break
                conn.kernel_info()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._iopub_ok.wait(), IOPUB_PROBE_INTERVAL)
        finally:
            self._iopub_ok.set()  # stopped, gone or confirmed: nothing waits on it any more

    def _probe_answered(self) -> None:
        ex = self._resumed
        if ex is not None and not ex.done.done():
            # its reply and idle were sent while nobody listened: give late ones a moment
            asyncio.get_running_loop().call_later(IDLE_GRACE, self._resumed_unseen, ex)

    def _resumed_unseen(self, ex: Execution) -> None:
        if not ex.done.done():
            self._flush()
            self._complete(ex, "unknown", notice=RESUME_GAP_NOTICE)

    async def detach(self, notice: str) -> None:
        """The service stops, the kernel goes on: stop listening, leave it running.

        The queue (ours, not the kernel's) ends with ``notice``; the running execution
        is left as it is, for the next service process to follow (:meth:`attach`).
        """
        self.closed = True
        self.abort_queue(notice)
        await self._stop_runner()
        self.up = False
        self._flush()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(*tasks)
        conn, self.conn = self.conn, None
        if conn is not None:
            await conn.detach()

    # -- the queue ---------------------------------------------------------------------------

    def submit(self, ex: Execution) -> int:
        """Queue ``ex`` (already marked queued in its doc); return its position (0 = next)."""
        if self.closed:
            raise KernelStartFailed("the kernel service is stopping")
        self.queue.append(ex)
        self._wake.set()
        self._changed()
        return len(self.queue) - 1 + (1 if self.current is not None else 0)

    async def _run(self) -> None:
        while True:
            resumed = self._resumed
            if resumed is not None:
                # the run a previous service process sent goes first
                await asyncio.shield(resumed.done)
                self._resumed = None
                if self.current is resumed:
                    self.current = None
                if self.up and self.state == "busy" and not self.queue:
                    self._set_state("idle")
            while not self.queue:
                self._wake.clear()
                await self._wake.wait()
            ex = self.queue.popleft()
            if ex.done.done():
                continue
            self.current = ex
            try:
                await self._execute(ex)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("execution of cell %s in notebook %s failed", ex.cell_id, self.nb_id)
                self._complete(
                    ex, "error", notice="The service failed to run this cell (internal error)."
                )
            finally:
                self.current = None
            self.last_activity = time.monotonic()
            if self.up and self.state == "busy" and not self.queue:
                self._set_state("idle")
            else:
                self._changed()

    async def _execute(self, ex: Execution) -> None:
        if not self.up:
            try:
                await self.ensure_started()
            except KernelStartFailed as exc:
                self.fail_start(ex, exc)
                for other in list(self.queue):
                    self.fail_start(other, exc)
                self.queue.clear()
                return
        await self._iopub_ok.wait()
        conn = self.conn
        assert conn is not None
        ex.writer.start()
        self.widgets.forget_doc(ex.doc)
        ex.started_at = time.time()
        ex.msg_id = conn.execute(ex.source)
        self.owner.on_run(self, ex)
        self._recent[ex.msg_id] = ex
        while len(self._recent) > RECENT_EXECUTIONS:
            self._recent.popitem(last=False)
        if self.state != "busy":
            self._set_state("busy")
        else:
            self._changed()
        await asyncio.shield(ex.done)

    def fail_start(self, ex: Execution, exc: KernelStartFailed) -> None:
        self._complete(ex, "kernel_start_failed", notice=exc.message)

    def _complete(
        self, ex: Execution, status: str, count: int | None = None, notice: str | None = None
    ) -> None:
        """End ``ex`` once: write the final state, tell the owner, wake whoever waits."""
        if ex.done.done():
            return
        ex.ended_at = time.time()
        self._dirty.discard(ex.writer)
        try:
            if notice:
                ex.writer.notice(
                    notice,
                    "error" if status in ("kernel_died", "kernel_start_failed") else "warning",
                )
            ex.writer.finish(status, count)
        except Exception:
            log.exception("could not record the end of cell %s", ex.cell_id)
        ex.execution_count = count
        ex.done.set_result(status)
        if self.pending_input is not None and self.pending_input[0] is ex:
            self.pending_input = None
            self.owner.on_input_done(self, ex)
        self.owner.on_finished(self, ex)

    def abort_queue(self, notice: str) -> list[Execution]:
        """Abort every queued (not running) execution with ``notice``."""
        aborted = list(self.queue)
        self.queue.clear()
        for ex in aborted:
            self._complete(ex, "aborted", notice=notice)
        if aborted:
            self._changed()
        return aborted

    def abort_batch(self, batch: int, notice: str) -> None:
        keep: deque[Execution] = deque()
        for ex in self.queue:
            if ex.batch == batch:
                self._complete(ex, "aborted", notice=notice)
            else:
                keep.append(ex)
        self.queue = keep

    # -- routing kernel messages ----------------------------------------------------------

    def _mark_dirty(self, writer: OutputWriter) -> None:
        self._dirty.add(writer)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(
                self.config.flush_interval, self._flush
            )

    def _widgets_dirty(self) -> None:
        self._widgets_pending = True
        self._schedule_flush()

    def _flush(self) -> None:
        self._flush_handle = None
        if self._widgets_pending:
            self._widgets_pending = False
            try:
                self.widgets.flush()
            except Exception:
                log.exception("writing widget state into %s failed", self.nb_id)
        dirty, self._dirty = self._dirty, set()
        for writer in dirty:
            try:
                writer.flush()
            except Exception:
                log.exception("flushing output into %s failed", self.nb_id)

    # KernelSink: the connection delivers here

    def on_iopub(self, msg: dict[str, Any]) -> None:
        self._iopub_ok.set()
        parent_id = (msg.get("parent_header") or {}).get("msg_id")
        ex = self._recent.get(parent_id) if parent_id else None
        msg_type = msg.get("msg_type") or msg["header"].get("msg_type")
        if self.widgets.wants(msg_type):
            origin = (ex.cell_id, ex.doc) if ex is not None else self.widgets.origin(parent_id or "")
            if self.widgets.handle_iopub(msg, origin):
                return
        if ex is None:
            return
        if msg_type == "status":
            if msg["content"].get("execution_state") == "idle" and not ex.done.done():
                ex.idle_seen = True
                self._maybe_complete(ex)
            return
        ex.writer.handle(msg)
        self._mark_dirty(ex.writer)

    def on_shell(self, msg: dict[str, Any]) -> None:
        if msg.get("msg_type") == "comm_info_reply":
            if self._comm_probe and (msg.get("parent_header") or {}).get("msg_id") == self._comm_probe:
                self._comm_probe = ""
                comms = (msg.get("content") or {}).get("comms")
                if isinstance(comms, dict):
                    self.widgets.keep_only(comms)
            return
        if msg.get("msg_type") == "kernel_info_reply":
            if self._probe and (msg.get("parent_header") or {}).get("msg_id") == self._probe:
                self._probe = ""
                self._probe_answered()
            return
        if msg.get("msg_type") != "execute_reply":
            return
        ex = self._recent.get((msg.get("parent_header") or {}).get("msg_id", ""))
        if ex is None or ex.done.done():
            return
        ex.reply = dict(msg.get("content") or {})
        self._maybe_complete(ex)
        if not ex.done.done():
            # IOPub drops messages at its high-water mark, the final ``idle`` too: do not
            # wait for it forever once the reply is in
            asyncio.get_running_loop().call_later(IDLE_GRACE, self._idle_missed, ex)

    def _idle_missed(self, ex: Execution) -> None:
        if not ex.done.done():
            log.warning(
                "no IOPub idle for cell %s of %s after its reply; ending it", ex.cell_id, self.nb_id
            )
            ex.idle_seen = True
            self._flush()
            self._maybe_complete(ex)

    def _maybe_complete(self, ex: Execution) -> None:
        reply = ex.reply
        if reply is None or not ex.idle_seen:
            return
        status = str(reply.get("status", "error"))
        if status == "error":
            interrupted = ex.interrupted or reply.get("ename") == "KeyboardInterrupt"
            status = "interrupted" if interrupted else "error"
        elif status not in ("ok", "aborted"):
            status = "error"
        count = reply.get("execution_count")
        self._complete(ex, status, count if isinstance(count, int) else None)
        if status in ("error", "interrupted") and ex.batch is not None:
            self.abort_batch(
                ex.batch, "Not run: an earlier cell of this run stopped with an error."
            )

    def on_stdin(self, msg: dict[str, Any]) -> None:
        if msg.get("msg_type") != "input_request":
            return
        ex = self._recent.get((msg.get("parent_header") or {}).get("msg_id", ""))
        if ex is None or ex.done.done():
            return
        content = msg.get("content") or {}
        prompt, password = str(content.get("prompt", "")), bool(content.get("password", False))
        self.pending_input = (ex, prompt, password)
        self.owner.on_input(self, ex, prompt, password)

    def on_lost(self, reason: str) -> None:
        if self.up:
            self._tasks.append(asyncio.get_running_loop().create_task(self._died(reason)))

    async def widget_message(
        self, user: str, cell_id: str, model_id: Any, payload: Any, *, custom: bool, buffer_paths: Any = None, buffers: Any = None
    ) -> None:
        """A client changed a widget (``custom``: sent it a custom message, a click):
        check it, apply it, and send it to the kernel as ``user``. Raises a
        :class:`~hub_collab.errors.CollabError` that says what was wrong."""
        attach = self._starting if self._attaching else None
        if attach is not None:
            # the service restarted: the models are the kernel's once it is found again
            with contextlib.suppress(Exception):
                await asyncio.shield(attach)
        # as a run does: what the kernel answers would be lost before IOPub is subscribed
        await self._iopub_ok.wait()
        conn = self.conn
        if conn is None or not self.up:
            raise NotFound("the widget's kernel is not running", code="unknown_widget")
        raw: list[bytes] = []
        if custom:
            comm_id, data = self.widgets.client_custom(user, cell_id, model_id, payload)
        else:
            comm_id, data, raw = self.widgets.client_update(user, cell_id, model_id, payload, buffer_paths, buffers)
        self.widgets.sent(conn.comm_msg(comm_id, data, user, raw), comm_id)
        self.last_activity = time.monotonic()

    def reply_input(self, ex: Execution, value: str) -> None:
        assert self.conn is not None
        self.pending_input = None
        self.conn.input_reply(value)
        self.owner.on_input_done(self, ex)

    async def _died(self, reason: str) -> None:
        why = f" ({reason})" if reason else ""
        log.warning("kernel of notebook %s died%s", self.nb_id, why)
        await self._teardown(now=True, keep_task=asyncio.current_task())
        ex = self.current
        if ex is not None:
            self._flush()
            self._complete(
                ex,
                "kernel_died",
                notice=f"The kernel died while running this cell{why}. Run it again to start a new kernel.",
            )
        self.abort_queue("Not run: the kernel died.")
        self._set_state("dead", f"The kernel died{why}; the next execution starts a new one.")

    # -- control ----------------------------------------------------------------------------

    async def interrupt(self, by: str) -> list[Execution]:
        """Interrupt the running cell and abort the queued ones."""
        aborted = self.abort_queue(f"Not run: the kernel was interrupted by {by}.")
        if self.current is not None:
            self.current.interrupted = True
        if self.up and self.conn is not None:
            await self.conn.interrupt()
        self._changed()
        return aborted

    def _end_all(self, notice_running: str, notice_queued: str) -> None:
        ex = self.current
        if ex is not None:
            self._flush()
            self._complete(ex, "interrupted", notice=notice_running)
        self.abort_queue(notice_queued)

    async def restart(self, by: str) -> None:
        """Stop the kernel (ending what runs and waits) and start a fresh one."""
        self._set_state("restarting")
        busy = self.current is not None
        self._end_all(
            f"The kernel was restarted by {by} while this cell ran.",
            f"Not run: the kernel was restarted by {by}.",
        )
        await self._teardown(now=busy)
        await self.ensure_started()

    async def shutdown(self, message: str, *, notice: str | None = None) -> None:
        """Stop the kernel; ``message`` says why (sent with state ``shutdown``)."""
        busy = self.current is not None
        self._end_all(notice or f"Stopped: {message}", f"Not run: {message}")
        await self._teardown(now=busy)
        self._set_state("shutdown", message)

    async def close(self, notice: str) -> None:
        """Final teardown (service stop): end everything, kill the process, stop the runner."""
        self.closed = True
        busy = self.current is not None  # a busy kernel would not answer a shutdown request
        self._end_all(notice, notice)
        await self._stop_runner()
        await self._teardown(now=busy)
        self.state = "shutdown"

    async def _stop_runner(self) -> None:
        """Stop the queue's runner and let a start or attach in progress finish."""
        self._runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._runner
        if self._starting is not None:
            with contextlib.suppress(BaseException):
                await self._starting

    async def _teardown(self, *, now: bool, keep_task: asyncio.Task[Any] | None = None) -> None:
        self.up = False
        self._flush()
        self.widgets.forget_all()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(*(t for t in tasks if t is not keep_task))
        conn, self.conn = self.conn, None
        if conn is not None:
            self.owner.on_stopped(self)
        if self.pending_input is not None:
            ex = self.pending_input[0]
            self.pending_input = None
            self.owner.on_input_done(self, ex)
        if conn is not None:
            try:
                await asyncio.wait_for(conn.shutdown(now=now), self.config.shutdown_wait + 10)
            except Exception as exc:
                log.warning("shutting down the kernel of %s: %s", self.nb_id, exc)
