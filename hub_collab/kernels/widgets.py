"""Shared widget models: the service is every kernel's ipywidgets front end.

ipywidgets keeps each widget as a *model* on both ends of a comm (target
``jupyter.widget``, protocol 2.x): the kernel opens the comm with the model's
state, and either end sends ``update`` messages with the keys that changed.
In a browser-side Jupyter every page holds its own copy, so a late joiner sees
nothing and one person's slider does not move for the others. Here the
service holds the one copy, in the notebook's documents:

* a :class:`WidgetRegistry` per :class:`~hub_collab.kernels.kernel.Kernel`
  hears the kernel's ``comm_open``, ``comm_msg`` and ``comm_close`` (on IOPub)
  and writes each model into the ``widgets`` Map of the ``out:`` doc of the cell
  whose execution opened it (:func:`~hub_collab.documents.outputs.widgets_root`;
  in per-user mode the user's overlay of it, so widget state is per user like
  outputs). Every client renders from that Map;
* an Output widget captures what the kernel prints while it is the context
  (its ``msg_id`` state names the request): the registry routes those IOPub
  messages into the model's ``outputs`` instead of the cell's;
* a client's change (:meth:`WidgetRegistry.client_update`,
  :meth:`WidgetRegistry.client_custom`, reached through the ``widget_update``
  and ``widget_custom`` commands) is checked (a model of this kernel in the
  named cell, known keys, size, rate, the kernel's and the notebook's total state), applied to the
  doc at once, and sent to the kernel as a ``comm_msg`` whose header names the
  user who made it.

Models live as long as their comm, their kernel, and the execution of their
cell that made them: a re-run of the cell, a restart, a dead kernel or a
``comm_close`` removes them from the docs. After a service restart a kernel
found again adopts the models its docs hold (:meth:`WidgetRegistry.adopt`) and
keeps those the kernel still knows (``comm_info_reply``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc, Map

from ..documents.outputs import intify, widgets_root
from ..errors import BadRequest, NotFound, RateLimited, TooLarge

log = logging.getLogger("hub_collab.kernels")

#: the comm target of ipywidgets models
WIDGET_TARGET = "jupyter.widget"
#: comm messages a kernel sends us that change a model's state
UPDATE_METHODS = ("update", "echo_update")
#: IOPub messages an Output widget captures while it is the kernel's output context
CAPTURED = ("stream", "display_data", "execute_result", "error", "clear_output")
#: longest model id a client may name (ipywidgets' are 32 hex digits)
MAX_MODEL_ID = 64
#: messages sent to the kernel whose consequences (new models, captured output) are remembered
RECENT_SENT = 256


@dataclass(frozen=True)
class WidgetLimits:
    """Bounds on what clients and kernels put into widget models (``HubCollab`` traits)."""

    #: largest client message (its ``state`` or ``content`` as JSON), bytes
    max_message_bytes: int = 65_536
    #: all models of one owner's kernels of a notebook together (their state as JSON),
    #: bytes: a user's per-user kernels, or the notebook's shared ones (kept after a switch too)
    max_state_bytes: int = 10_000_000
    #: all models of all of one notebook's kernels together, bytes: what its docs hold at most
    max_notebook_state_bytes: int = 50_000_000
    #: client messages per second per widget and user (and as many at once)
    rate: float = 30.0


@dataclass(eq=False)
class WidgetModel:
    """One model: where it lives (cell, doc) and its current state."""

    comm_id: str
    cell_id: str
    doc: Doc[Any]
    model_name: str
    state: dict[str, Any]
    size: int = 0
    #: an Output widget's ``clear_output(wait=True)`` waits for the next output
    clear_pending: bool = False
    #: an Output widget's outputs while it captures, stream text as a list of chunks
    captured: list[dict[str, Any]] | None = None
    #: what the kernel changed since the last flush into the doc
    pending: dict[str, Any] = field(default_factory=dict)
    #: per user: (tokens, when last refilled) of the rate limit
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)


#: binary buffers one message may carry (paths in ``buffer_paths``), and how deep a path goes
MAX_BUFFERS = 16
MAX_PATH = 8


def _size(value: Any) -> int:
    """The size of a state as JSON, binary buffers counted by their length."""
    binary = 0

    def other(obj: Any) -> Any:
        nonlocal binary
        if isinstance(obj, (bytes, bytearray, memoryview)):
            binary += len(obj)
            return ""
        return str(obj)

    return len(json.dumps(value, separators=(",", ":"), default=other)) + binary


def put_buffers(state: dict[str, Any], paths: Any, buffers: list[bytes]) -> dict[str, Any]:
    """``state`` with each of ``buffers`` put where its path in ``paths`` says (ipywidgets'
    ``buffer_paths``: lists of keys and indexes, the first a key of the state); a path that
    does not lead into the state raises ``ValueError``. The containers on a path are copied."""
    if not isinstance(paths, list) or len(paths) != len(buffers) or len(paths) > MAX_BUFFERS:
        raise ValueError(f"buffer_paths must list one path per buffer, at most {MAX_BUFFERS}")
    out = dict(state)
    for path, buf in zip(paths, buffers, strict=True):
        if not isinstance(path, list) or not 1 <= len(path) <= MAX_PATH or not isinstance(path[0], str):
            raise ValueError(f"a buffer path is a list of 1 to {MAX_PATH} keys and indexes, starting with a key")
        node: Any = out
        for i, step in enumerate(path):
            last = i == len(path) - 1
            if isinstance(node, dict) and isinstance(step, str):
                if last:
                    node[step] = bytes(buf)
                else:
                    node[step] = node = _copy_container(node.get(step))
            elif isinstance(node, list) and isinstance(step, int) and not isinstance(step, bool) and 0 <= step < len(node):
                if last:
                    node[step] = bytes(buf)
                else:
                    node[step] = node = _copy_container(node[step])
            else:
                raise ValueError(f"buffer path {str(path)[:80]} does not lead into the state")
    return out


def _copy_container(value: Any) -> Any:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    raise ValueError("a buffer path goes through a value that is neither an object nor a list")


def _working_copy(outputs: Any) -> list[dict[str, Any]]:
    """An Output widget's outputs to append to: stream text as a list of chunks."""
    copy: list[dict[str, Any]] = []
    for out in outputs if isinstance(outputs, list) else []:
        if not isinstance(out, dict):
            continue
        if out.get("output_type") == "stream":
            copy.append({"output_type": "stream", "name": out.get("name"), "chunks": [str(out.get("text", ""))]})
        else:
            copy.append(dict(out))
    return copy


def _materialize(captured: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The working copy as nbformat outputs (stream chunks joined into one text)."""
    result: list[dict[str, Any]] = []
    for out in captured:
        if out.get("output_type") == "stream":
            text = "".join(out["chunks"])
            out["chunks"] = [text]  # joined once: the next flush starts from here
            result.append({"output_type": "stream", "name": out["name"], "text": text})
        else:
            result.append(out)
    return result


class WidgetRegistry:
    """The widget models of one kernel (see the module's docs)."""

    def __init__(self, limits: WidgetLimits, on_dirty: Callable[[], None] = lambda: None) -> None:
        self.limits = limits
        #: called when the kernel changed a model: the owner calls :meth:`flush` soon
        self.on_dirty = on_dirty
        self._dirty: dict[str, WidgetModel] = {}
        self.models: dict[str, WidgetModel] = {}
        #: the total size of every model's state
        self.total = 0
        #: the totals of the same owner's other kernels of the notebook, and of all its
        #: other kernels (KernelService sets them)
        self.mine: Callable[[], int] = lambda: 0
        self.others: Callable[[], int] = lambda: 0
        #: the user of a per-user kernel (None: the notebook's shared kernel)
        self.owner: str | None = None
        #: which of its owner's kernels this is (its resource and kernel name), written
        #: beside each model so that after a service restart each kernel adopts its own
        self.kernel_id = ""
        #: request msg_id -> the Output widget capturing its output
        self._capturing: dict[str, WidgetModel] = {}
        #: msg_ids of comm messages we sent -> the model they went to (their replies' origin)
        self._sent: OrderedDict[str, WidgetModel] = OrderedDict()

    # -- kernel -> service -------------------------------------------------------------------

    def origin(self, parent_id: str) -> tuple[str, Doc[Any]] | None:
        """Where a message caused by our comm message ``parent_id`` belongs: its model's cell."""
        model = self._sent.get(parent_id)
        return (model.cell_id, model.doc) if model is not None else None

    def wants(self, msg_type: str) -> bool:
        """Whether :meth:`handle_iopub` may take a message of this type (cheap: an output
        flood passes by with one look while no Output widget captures)."""
        return msg_type.startswith("comm_") or (bool(self._capturing) and msg_type in CAPTURED)

    def handle_iopub(self, msg: dict[str, Any], origin: tuple[str, Doc[Any]] | None) -> bool:
        """Take a comm message or an output an Output widget captures; False for others.

        ``origin`` is the (cell, doc) of the request the message answers, if known:
        a new model lives there.
        """
        msg_type = msg.get("msg_type") or ""
        content = msg.get("content")
        if not isinstance(content, dict):
            return msg_type.startswith("comm_")
        buffers = msg.get("buffers") or []
        if msg_type == "comm_open":
            self._open(content, origin, buffers)
            return True
        if msg_type == "comm_msg":
            self._message(content, buffers)
            return True
        if msg_type == "comm_close":
            model = self.models.get(str(content.get("comm_id", "")))
            if model is not None:
                self._remove(model)
            return True
        if msg_type in CAPTURED:
            parent_id = (msg.get("parent_header") or {}).get("msg_id", "")
            model = self._capturing.get(parent_id) if parent_id else None
            if model is not None:
                self._capture(model, msg_type, content)
                return True
        return False

    def _open(self, content: dict[str, Any], origin: tuple[str, Doc[Any]] | None, buffers: list[bytes]) -> None:
        comm_id = content.get("comm_id")
        data = content.get("data")
        if content.get("target_name") != WIDGET_TARGET or not isinstance(comm_id, str) or not isinstance(data, dict):
            return
        state = self._with_buffers(data, buffers)
        if state is None:
            return
        if origin is None:
            log.info("a widget model opened outside any execution we know of; not shown")
            return
        size = _size(state)
        over = self._over(size)
        if over:
            log.warning("widget model %s not kept: %s", comm_id, over)
            return
        old = self.models.get(comm_id)
        if old is not None:
            self._remove(old)
        cell_id, doc = origin
        model = WidgetModel(comm_id, cell_id, doc, str(state.get("_model_name", "")), dict(state), size)
        self.models[comm_id] = model
        self.total += size
        with doc.transaction():
            widgets_root(doc)[comm_id] = Map(
                {
                    "target": WIDGET_TARGET,
                    "kernel": self.kernel_id,
                    "model_name": model.model_name,
                    "model_module": str(state.get("_model_module", "")),
                    "state": Map(state),
                }
            )
        self._follow_capture(model, state)

    @staticmethod
    def _with_buffers(data: dict[str, Any], buffers: list[bytes]) -> dict[str, Any] | None:
        """A kernel message's ``state`` with its binary buffers in place (an Image's
        ``value``); None if it has no state or its buffers do not fit it."""
        state = data.get("state")
        if not isinstance(state, dict):
            return None
        paths = data.get("buffer_paths") or []
        if not paths and not buffers:
            return state
        try:
            return put_buffers(state, paths, buffers)
        except ValueError as exc:
            log.warning("widget state from the kernel not kept: %s", exc)
            return None

    def _message(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        model = self.models.get(str(content.get("comm_id", "")))
        data = content.get("data")
        if model is None or not isinstance(data, dict):
            return
        state = self._with_buffers(data, buffers) if data.get("method") in UPDATE_METHODS else None
        if state is not None:
            if "outputs" in state:
                model.captured = None  # set by the kernel itself
            self._pending(model, state)
            self._follow_capture(model, state)

    def _pending(self, model: WidgetModel, state: dict[str, Any]) -> None:
        """A change from the kernel: written into the doc at the next :meth:`flush`, so a
        flood of updates (a loop moving a slider, prints into an Output) is batched."""
        model.pending.update(state)
        if not self._dirty:
            self.on_dirty()
        self._dirty[model.comm_id] = model

    def flush(self) -> None:
        """Write the kernel's changes since the last flush into the docs."""
        dirty, self._dirty = self._dirty, {}
        for model in dirty.values():
            if self.models.get(model.comm_id) is not model:
                continue
            if model.captured is not None:
                model.pending["outputs"] = _materialize(model.captured)
            state, model.pending = model.pending, {}
            merged = {**model.state, **state}
            size = _size(merged)
            over = self._over(size - model.size)
            if over:
                log.warning("widget update of %s dropped: %s", model.comm_id, over)
                model.captured = None
                continue
            self._write(model, state, merged, size)

    def _over(self, more: int, to_owner: bool = False) -> str:
        """Why ``more`` bytes of state (fewer if negative) are not kept, or "" if they are
        (``to_owner``: said to the kernel's user)."""
        if more <= 0:
            return ""
        if self.mine() + self.total + more > self.limits.max_state_bytes:
            if self.owner is None:
                whose = "the notebook's shared kernels"
            elif to_owner:
                whose = "your kernels in this notebook"
            else:
                whose = f"{self.owner}'s kernels in this notebook"
            return f"the widgets of {whose} would exceed {self.limits.max_state_bytes} bytes"
        if self.others() + self.total + more > self.limits.max_notebook_state_bytes:
            return f"the widgets of the notebook's kernels would exceed {self.limits.max_notebook_state_bytes} bytes"
        return ""

    def _write(self, model: WidgetModel, state: dict[str, Any], merged: dict[str, Any], size: int) -> None:
        """Merge ``state`` into the model and its doc (the caller checked the bounds)."""
        self.total += size - model.size
        model.state, model.size = merged, size
        entry = widgets_root(model.doc).get(model.comm_id)
        if isinstance(entry, Map):
            target = entry.get("state")
            if isinstance(target, Map):
                with model.doc.transaction():
                    for key, value in state.items():
                        target[str(key)] = value

    def _follow_capture(self, model: WidgetModel, state: dict[str, Any]) -> None:
        """An Output widget's ``msg_id`` names the request whose output it captures."""
        if model.model_name != "OutputModel" or "msg_id" not in state:
            return
        for key in [k for k, m in self._capturing.items() if m is model]:
            del self._capturing[key]
        msg_id = state.get("msg_id")
        if isinstance(msg_id, str) and msg_id:
            self._capturing[msg_id] = model

    def _capture(self, model: WidgetModel, msg_type: str, content: dict[str, Any]) -> None:
        if model.captured is None:
            model.captured = _working_copy(model.pending.get("outputs", model.state.get("outputs")))
        outputs = model.captured
        if msg_type == "clear_output":
            if content.get("wait"):
                model.clear_pending = True
                return
            outputs.clear()
        else:
            if model.clear_pending:
                outputs.clear()
                model.clear_pending = False
            if msg_type == "stream":
                name, text = str(content.get("name", "stdout")), str(content.get("text", ""))
                last = outputs[-1] if outputs else None
                if last is not None and last.get("output_type") == "stream" and last.get("name") == name:
                    last["chunks"].append(text)
                else:
                    outputs.append({"output_type": "stream", "name": name, "chunks": [text]})
            elif msg_type == "error":
                outputs.append({"output_type": "error", **{k: content.get(k) for k in ("ename", "evalue", "traceback")}})
            else:
                outputs.append({"output_type": msg_type, "data": content.get("data") or {}, "metadata": content.get("metadata") or {}})
        self._pending(model, {})

    def _remove(self, model: WidgetModel, from_doc: bool = True) -> None:
        if self.models.get(model.comm_id) is not model:
            return
        del self.models[model.comm_id]
        self._dirty.pop(model.comm_id, None)
        self.total -= model.size
        for key in [k for k, m in self._capturing.items() if m is model]:
            del self._capturing[key]
        if not from_doc:
            return
        root = widgets_root(model.doc)
        if model.comm_id in root:
            with model.doc.transaction():
                del root[model.comm_id]

    def forget_doc(self, doc: Doc[Any]) -> None:
        """The cell of ``doc`` runs again: the models its earlier runs made are gone."""
        for model in [m for m in self.models.values() if m.doc is doc]:
            self._remove(model)
        root = widgets_root(doc)
        if len(root):
            with doc.transaction():
                root.clear()

    def let_go(self, doc: Doc[Any]) -> None:
        """Another kernel of the same owner runs the cell of ``doc`` (its models there
        are gone from the doc): forget them here too, without touching the doc."""
        for model in [m for m in self.models.values() if m.doc is doc]:
            self._remove(model, from_doc=False)

    def forget_all(self) -> None:
        """The kernel is gone (restart, shutdown, died): so are its models."""
        for doc in {id(m.doc): m.doc for m in self.models.values()}.values():
            self.forget_doc(doc)
        self._sent.clear()

    # -- a service restart ------------------------------------------------------------------

    def adopt(self, docs: Iterable[tuple[str, Doc[Any]]], untagged: bool = True) -> int:
        """Take over the models that ``docs`` (cell id, doc) hold, written by an earlier
        service process for this kernel (those of its owner's other kernels stay theirs;
        ``untagged``: also those that name no kernel); return how many."""
        n = 0
        for cell_id, doc in docs:
            for comm_id, entry in widgets_root(doc).items():
                state = entry.get("state") if isinstance(entry, Map) else None
                if not isinstance(state, Map):
                    continue
                tag = entry.get("kernel")
                if tag != self.kernel_id and (tag is not None or not untagged):
                    continue
                values = intify(state.to_py() or {})
                model = WidgetModel(comm_id, cell_id, doc, str(entry.get("model_name", "")), values, _size(values))
                self.models[comm_id] = model
                self.total += model.size
                self._follow_capture(model, values)
                n += 1
        return n

    def keep_only(self, alive: Iterable[str]) -> None:
        """The kernel's ``comm_info_reply``: drop the models it no longer has."""
        keep = set(alive)
        for model in [m for m in self.models.values() if m.comm_id not in keep]:
            self._remove(model)

    # -- client -> kernel -------------------------------------------------------------------

    def _model_for(self, user: str, cell_id: str, model_id: Any, payload: Any, what: str, binary: int = 0) -> WidgetModel:
        if not isinstance(model_id, str) or not model_id or len(model_id) > MAX_MODEL_ID:
            raise BadRequest(f"model_id must be a string of 1 to {MAX_MODEL_ID} characters", code="invalid_command")
        if not isinstance(payload, dict):
            raise BadRequest(f"{what} must be an object", code="invalid_command")
        size = _size(payload) + binary
        if size > self.limits.max_message_bytes:
            raise TooLarge(f"the widget message has {size} bytes; at most {self.limits.max_message_bytes} are allowed")
        model = self.models.get(model_id)
        if model is None or model.cell_id != cell_id:
            raise NotFound(f"no widget {model_id[:40]!r} in this cell (closed, or its kernel restarted)", code="unknown_widget")
        self._take_token(model, user)
        return model

    def _take_token(self, model: WidgetModel, user: str) -> None:
        rate = self.limits.rate
        now = time.monotonic()
        tokens, then = model.buckets.get(user, (rate, now))
        tokens = min(rate, tokens + (now - then) * rate)
        if tokens < 1:
            raise RateLimited(f"too many changes to this widget (at most {rate:g} per second)")
        model.buckets[user] = (tokens - 1, now)

    def client_update(
        self, user: str, cell_id: str, model_id: Any, state: Any, buffer_paths: Any = None, buffers: Any = None
    ) -> tuple[str, dict[str, Any], list[bytes]]:
        """Check a client's ``state`` change (with its binary ``buffers``, base64, where
        ``buffer_paths`` say: a FileUpload's files) and apply it; return (comm id, comm
        data, buffers) to send."""
        raw = self._decode_buffers(buffer_paths, buffers)
        model = self._model_for(user, cell_id, model_id, state, "state", sum(len(b) for b in raw))
        # ipywidgets takes a key whose whole value is a buffer out of the state: its path names it
        keys = [*state, *(p[0] for p in buffer_paths or [] if isinstance(p, list) and p and isinstance(p[0], str))]
        if not keys:
            raise BadRequest("state must name at least one key", code="invalid_command")
        bad = [k for k in keys if k.startswith("_") or k not in model.state]
        if bad:
            raise BadRequest(f"{model.model_name or 'this widget'} has no key {bad[0][:40]!r} a client may set", code="invalid_widget_state")
        full = state
        if raw:
            try:
                full = put_buffers(state, buffer_paths, raw)
            except ValueError as exc:
                raise BadRequest(str(exc), code="invalid_command") from None
        size = _size({**model.state, **full})
        over = self._over(size - model.size, to_owner=True)
        if over:
            raise TooLarge(over)
        self._write(model, full, {**model.state, **full}, size)
        return model.comm_id, {"method": "update", "state": state, "buffer_paths": buffer_paths if raw else []}, raw

    @staticmethod
    def _decode_buffers(paths: Any, buffers: Any) -> list[bytes]:
        """A client's base64 ``buffers`` (one per path of ``buffer_paths``) as bytes."""
        if buffers is None and paths in (None, []):
            return []
        if not isinstance(buffers, list) or not isinstance(paths, list) or len(buffers) != len(paths) or not 1 <= len(buffers) <= MAX_BUFFERS:
            raise BadRequest(f"buffers and buffer_paths must be lists of 1 to {MAX_BUFFERS} entries, one path per buffer", code="invalid_command")
        out = []
        for b in buffers:
            if not isinstance(b, str):
                raise BadRequest("each buffer must be a base64 string", code="invalid_command")
            try:
                out.append(base64.b64decode(b, validate=True))
            except (binascii.Error, ValueError):
                raise BadRequest("a buffer is not valid base64", code="invalid_command") from None
        return out

    def client_custom(self, user: str, cell_id: str, model_id: Any, content: Any) -> tuple[str, dict[str, Any]]:
        """Check a client's custom message (a button's click); return (comm id, comm data)."""
        model = self._model_for(user, cell_id, model_id, content, "content")
        return model.comm_id, {"method": "custom", "content": content}

    def sent(self, msg_id: str, comm_id: str) -> None:
        """Remember that ``msg_id`` went to ``comm_id``: what it causes belongs to that model."""
        model = self.models.get(comm_id)
        if model is None:
            return
        self._sent[msg_id] = model
        while len(self._sent) > RECENT_SENT:
            self._sent.popitem(last=False)
