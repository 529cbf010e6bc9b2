"""Writing Jupyter IOPub output into the ``out:<cell id>`` documents.

The documents' schema (``outputs`` and ``state``, import and export) lives in
:mod:`hub_collab.documents.outputs`; its names are re-exported here.

:class:`OutputWriter` applies the IOPub messages of one execution to one such document.
:meth:`OutputWriter.handle` only buffers (and coalesces) messages; the document is changed on
:meth:`OutputWriter.flush`, in a single transaction, so that a flood of tiny messages becomes a
handful of document updates.

Control characters in stream text follow a terminal, with one exception for backspace:

* ``\\n`` ends the current line.
* ``\\r`` moves the cursor to the start of the current line; the characters that follow
  overwrite the line from there, and what they do not reach stays (``"abc\\rX"`` shows
  ``"Xbc"``, a progress bar ``"10%\\r20%\\r30%"`` shows ``"30%"``). ``\\r\\n`` is therefore a
  plain newline. (JupyterLab instead drops the whole line at ``\\r``; we follow the terminal.)
* ``\\b`` deletes the character before the cursor on the current line (like JupyterLab; a
  terminal would only move the cursor). At the start of a line it does nothing.

The cursor position is writer state: it is not stored in the document.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc, Map, Text

from ..documents.outputs import (
    ensure_out_doc,
    out_roots,
    outputs_to_nbformat,
    read_state,
    seed_outputs,
)

__all__ = [
    "DisplayRegistry",
    "OutputWriter",
    "ensure_out_doc",
    "outputs_to_nbformat",
    "process_stream_text",
    "read_state",
    "seed_outputs",
]

#: Output types written as new entries of ``outputs`` (they trigger a pending clear_output).
_NEW_OUTPUT_TYPES = ("display_data", "execute_result", "error")
_CTRL = re.compile(r"([\r\b])")


def _blen(s: str) -> int:
    """Length of ``s`` in UTF-8 bytes (pycrdt ``Text`` offsets are UTF-8 byte offsets)."""
    return len(s) if s.isascii() else len(s.encode())


def _json_size(value: Any) -> int:
    if isinstance(value, str):
        return _blen(value)
    try:
        return len(json.dumps(value, separators=(",", ":")))
    except (TypeError, ValueError):
        return len(repr(value))


# --------------------------------------------------------------------------------------------
# Terminal-like stream text processing


def _overwrite(line: str, cursor: int, piece: str) -> tuple[str, int]:
    end = cursor + len(piece)
    return line[:cursor] + piece + line[end:], end


def _apply_line(line: str, cursor: int, seg: str) -> tuple[str, int]:
    """Apply ``seg`` (no ``\\n`` in it) to the current line at ``cursor``."""
    if "\r" not in seg and "\b" not in seg:
        return _overwrite(line, cursor, seg) if seg else (line, cursor)
    for piece in _CTRL.split(seg):
        if piece == "\r":
            cursor = 0
        elif piece == "\b":
            if cursor > 0:
                line = line[: cursor - 1] + line[cursor:]
                cursor -= 1
        elif piece:
            line, cursor = _overwrite(line, cursor, piece)
    return line, cursor


def process_stream_text(line: str, cursor: int, data: str) -> tuple[str, str, int]:
    """Feed ``data`` to a terminal whose current (last) line is ``line`` with ``cursor``.

    Returns ``(completed, line, cursor)``: ``completed`` is the text of the lines finished by
    ``data`` (each ending with ``\\n``, the first one being the old current line), followed by
    the new current line and cursor. ``completed + line`` replaces the old ``line``.
    """
    if cursor == len(line) and "\r" not in data and "\b" not in data:
        s = line + data
        i = s.rfind("\n")
        if i < 0:
            return "", s, len(s)
        return s[: i + 1], s[i + 1 :], len(s) - i - 1
    done: list[str] = []
    for k, seg in enumerate(data.split("\n")):
        if k:
            done.append(line)
            done.append("\n")
            line, cursor = "", 0
        line, cursor = _apply_line(line, cursor, seg)
    return "".join(done), line, cursor


def _common_prefix(a: str, b: str) -> int:
    if b.startswith(a):
        return len(a)
    if a.startswith(b):
        return len(b)
    lo, hi = 0, min(len(a), len(b))  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _common_suffix(a: str, b: str, limit: int) -> int:
    n = 0
    while n < limit and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


# --------------------------------------------------------------------------------------------
# Display registry


class DisplayRegistry:
    """Outputs by ``display_id`` for one notebook (all its ``out:`` docs).

    ``update_display_data`` updates every registered output with that id, in whatever cell it
    is. Whoever deletes outputs from a document must call :meth:`forget` for that document
    (:class:`OutputWriter` does so when it clears outputs).
    """

    def __init__(self) -> None:
        self._by_id: dict[str, list[tuple[Doc[Any], Map[Any]]]] = {}
        self._ids_by_doc: dict[int, set[str]] = {}

    def register(self, display_id: str, doc: Doc[Any], output: Map[Any]) -> None:
        self._by_id.setdefault(display_id, []).append((doc, output))
        self._ids_by_doc.setdefault(id(doc), set()).add(display_id)

    def forget(self, doc: Doc[Any]) -> None:
        """Drop all entries that belong to ``doc``."""
        for display_id in self._ids_by_doc.pop(id(doc), ()):
            kept = [(d, m) for d, m in self._by_id.get(display_id, ()) if d is not doc]
            if kept:
                self._by_id[display_id] = kept
            else:
                self._by_id.pop(display_id, None)

    def __contains__(self, display_id: object) -> bool:
        return display_id in self._by_id

    def count(self, display_id: str) -> int:
        return len(self._by_id.get(display_id, ()))

    def update(self, display_id: str, data: Any, metadata: Any) -> int:
        """Set ``data`` and ``metadata`` of every output with ``display_id``; return how many."""
        entries = self._by_id.get(display_id, ())
        for doc, output in entries:
            with doc.transaction():
                output["data"] = data
                output["metadata"] = metadata
        return len(entries)


# --------------------------------------------------------------------------------------------
# Buffered operations


@dataclass(slots=True)
class _StreamOp:
    name: str
    chunks: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _OutputOp:
    fields: dict[str, Any]
    display_id: str | None = None


@dataclass(slots=True)
class _UpdateOp:
    display_id: str
    data: Any
    metadata: Any


@dataclass(slots=True)
class _ClearOp:
    """A buffered ``clear_output``: applied, it clears the outputs already in the doc
    (what was buffered before it was dropped when it was queued)."""


_Op = _StreamOp | _OutputOp | _UpdateOp | _ClearOp


@dataclass(slots=True)
class _StreamState:
    """Where the last stream output of the document stands (valid while it is the last)."""

    name: str
    index: int  # position of the output in ``outputs``
    line_start: int  # UTF-8 byte offset in the Text where the current line starts
    line: str  # the current (last) line, as stored
    cursor: int  # terminal cursor, in characters within ``line``

    @property
    def size(self) -> int:
        return self.line_start + _blen(self.line)


def _msg_type(msg: Mapping[str, Any]) -> str:
    msg_type = msg.get("msg_type")
    if not msg_type:
        msg_type = (msg.get("header") or {}).get("msg_type", "")
    return str(msg_type)


def _format_mb(n: int) -> str:
    return f"{n / 1_000_000:g}"


class OutputWriter:
    """Applies Jupyter IOPub messages for one execution to one ``out:<id>`` Doc.

    ``handle`` only buffers; ``flush`` (called by the owner on a short timer) applies the buffer
    in one transaction. ``begin``, ``start``, ``finish`` and ``notice`` apply at once (after
    the buffer, in the same transaction).
    """

    def __init__(
        self,
        doc: Doc[Any],
        *,
        max_output_bytes: int = 10_000_000,
        display_registry: DisplayRegistry | None = None,
    ) -> None:
        self.doc = doc
        self.max_output_bytes = max_output_bytes
        self.registry = display_registry if display_registry is not None else DisplayRegistry()
        self._outputs, self._state = out_roots(doc)
        self._ops: list[_Op] = []
        self._pending_state: dict[str, Any] = {}
        self._stream: _StreamState | None = None
        self._bytes = 0
        self._truncated = False
        self._clear_pending = False

    # -- public API ---------------------------------------------------------------------------

    @property
    def output_bytes(self) -> int:
        """Bytes of output counted against the cap for this execution."""
        return self._bytes

    @property
    def truncated(self) -> bool:
        return self._truncated

    @property
    def pending(self) -> bool:
        """Whether ``flush`` has something to apply."""
        return bool(self._ops or self._pending_state)

    def begin(self, *, executed_by: str, queued: bool) -> None:
        """Record who executes; ``queued`` marks the cell as waiting for the kernel."""
        with self.doc.transaction():
            self._apply_buffer()
            st = self._state
            st["executed_by"] = executed_by
            st["status"] = None
            st["started_at"] = None
            st["ended_at"] = None
            st["queued_at"] = time.time() if queued else None
            if queued:
                st["execution_state"] = "queued"

    def start(self) -> None:
        """The kernel started this execution: clear previous outputs, mark running."""
        self._enqueue_clear()
        self._bytes = 0
        self._truncated = False
        self._clear_pending = False
        self._pending_state.pop("truncated", None)
        with self.doc.transaction():
            self._apply_buffer()
            st = self._state
            st["execution_state"] = "running"
            st["started_at"] = time.time()
            st["ended_at"] = None
            st["status"] = None
            st["execution_count"] = None
            st["truncated"] = False

    def handle(self, msg: Mapping[str, Any]) -> None:
        """Buffer one IOPub message (as jupyter_client delivers it). Cheap; see ``flush``."""
        msg_type = _msg_type(msg)
        content = msg.get("content") or {}
        if msg_type == "stream":
            self._on_stream(content)
        elif msg_type in _NEW_OUTPUT_TYPES:
            self._on_output(msg_type, content)
        elif msg_type == "update_display_data":
            self._on_update(content)
        elif msg_type == "clear_output":
            if self._truncated:
                return
            if content.get("wait"):
                self._clear_pending = True
            else:
                self._enqueue_clear()
        elif msg_type == "execute_input":
            count = content.get("execution_count")
            if isinstance(count, int):
                self._pending_state["execution_count"] = count
        # status, comm_*, debug_event, ...: nothing to write

    def flush(self) -> None:
        """Apply everything buffered in ONE transaction (nothing happens if nothing is)."""
        if self._ops or self._pending_state:
            with self.doc.transaction():
                self._apply_buffer()

    def finish(self, status: str, execution_count: int | None = None) -> None:
        """The execution ended (``status``: ok, error, aborted, interrupted, kernel_died)."""
        self._clear_pending = False  # a clear_output(wait=True) with nothing after it: no-op
        with self.doc.transaction():
            self._apply_buffer()
            st = self._state
            st["execution_state"] = "idle"
            st["ended_at"] = time.time()
            st["status"] = status
            if execution_count is not None:
                st["execution_count"] = execution_count

    def notice(self, text: str, level: str = "warning") -> None:
        """Append one of our own notices (applied at once, after anything buffered)."""
        with self.doc.transaction():
            self._apply_buffer()
            self._append({"output_type": "notice", "text": text, "level": level})

    # -- buffering (handle side) ----------------------------------------------------------------

    def _count(self, n: int) -> bool:
        """Count ``n`` bytes; False (and truncate) if they do not fit under the cap."""
        if self._bytes + n > self.max_output_bytes:
            self._truncate()
            return False
        self._bytes += n
        return True

    def _truncate(self) -> None:
        if self._truncated:
            return
        self._truncated = True
        self._clear_pending = False
        self._ops.append(
            _OutputOp(
                {
                    "output_type": "notice",
                    "text": (
                        f"Output truncated: more than {_format_mb(self.max_output_bytes)} MB "
                        "of output; further output of this execution was dropped."
                    ),
                    "level": "warning",
                }
            )
        )
        self._pending_state["truncated"] = True

    def _on_stream(self, content: Mapping[str, Any]) -> None:
        text = content.get("text")
        if not text or self._truncated or not isinstance(text, str):
            return
        if self._clear_pending:
            self._enqueue_clear()
        name = str(content.get("name") or "stdout")
        n = _blen(text)
        over = self._bytes + n > self.max_output_bytes
        if over:
            room = self.max_output_bytes - self._bytes
            text = text.encode()[: max(room, 0)].decode("utf-8", "ignore")
            n = _blen(text)
        self._bytes += n
        if text:
            ops = self._ops
            last = ops[-1] if ops else None
            if type(last) is _StreamOp and last.name == name:
                last.chunks.append(text)
            else:
                ops.append(_StreamOp(name, [text]))
        if over:
            self._truncate()

    def _on_output(self, msg_type: str, content: Mapping[str, Any]) -> None:
        if msg_type == "error":
            traceback = [str(line) for line in content.get("traceback") or ()]
            fields: dict[str, Any] = {
                "output_type": "error",
                "ename": str(content.get("ename", "")),
                "evalue": str(content.get("evalue", "")),
                "traceback": traceback,
            }
            # An error is always recorded, even past the cap: it is small and it is what the
            # user needs to see. It still counts against the cap.
            if self._clear_pending:
                self._enqueue_clear()
            self._bytes += sum(_blen(line) for line in traceback)
            self._ops.append(_OutputOp(fields))
            return
        if msg_type == "execute_result":
            count = content.get("execution_count")
            if isinstance(count, int):
                self._pending_state["execution_count"] = count
        if self._truncated:
            return
        if self._clear_pending:
            self._enqueue_clear()
        data = dict(content.get("data") or {})
        metadata = dict(content.get("metadata") or {})
        if not self._count(_json_size(data) + _json_size(metadata)):
            return
        fields = {"output_type": msg_type, "data": data, "metadata": metadata}
        if msg_type == "execute_result":
            count = content.get("execution_count")
            fields["execution_count"] = count if isinstance(count, int) else None
        transient = content.get("transient") or {}
        display_id = transient.get("display_id") if isinstance(transient, Mapping) else None
        if display_id is not None:
            display_id = str(display_id)
            fields["display_id"] = display_id
        self._ops.append(_OutputOp(fields, display_id))

    def _on_update(self, content: Mapping[str, Any]) -> None:
        if self._truncated:
            return
        transient = content.get("transient") or {}
        display_id = transient.get("display_id") if isinstance(transient, Mapping) else None
        if display_id is None:
            return
        data = dict(content.get("data") or {})
        metadata = dict(content.get("metadata") or {})
        if not self._count(_json_size(data) + _json_size(metadata)):
            return
        op = _UpdateOp(str(display_id), data, metadata)
        ops = self._ops
        if ops and type(ops[-1]) is _UpdateOp and ops[-1].display_id == op.display_id:
            ops[-1] = op  # an update replaces data and metadata: only the last one matters
        else:
            ops.append(op)

    def _enqueue_clear(self) -> None:
        """Clear the outputs: buffered outputs before the clear are dropped unapplied."""
        self._clear_pending = False
        self._bytes = 0
        # display updates may target other cells: keep them, in order
        ops: list[_Op] = [op for op in self._ops if type(op) is _UpdateOp]
        ops.append(_ClearOp())
        self._ops = ops

    # -- applying (flush side) ----------------------------------------------------------------

    def _apply_buffer(self) -> None:
        """Apply the buffer; the caller holds a transaction on the doc."""
        ops, self._ops = self._ops, []
        for op in ops:
            if type(op) is _StreamOp:
                data = op.chunks[0] if len(op.chunks) == 1 else "".join(op.chunks)
                self._write_stream(op.name, data)
            elif type(op) is _OutputOp:
                output = self._append(op.fields)
                if op.display_id is not None:
                    self.registry.register(op.display_id, self.doc, output)
            elif type(op) is _UpdateOp:
                self.registry.update(op.display_id, op.data, op.metadata)
            elif type(op) is _ClearOp:
                self._clear()
        if self._pending_state:
            pending, self._pending_state = self._pending_state, {}
            for key, value in pending.items():
                self._state[key] = value

    def _clear(self) -> None:
        self._stream = None
        self.registry.forget(self.doc)
        if len(self._outputs):
            self._outputs.clear()

    def _append(self, fields: dict[str, Any]) -> Map[Any]:
        self._stream = None
        output: Map[Any] = Map(fields)
        self._outputs.append(output)
        return output

    def _last_stream_text(self, name: str) -> tuple[Text, _StreamState] | None:
        """The Text of the last output if it is a stream ``name``, with its state."""
        outputs = self._outputs
        n = len(outputs)
        if not n:
            self._stream = None
            return None
        last = outputs[n - 1]
        if not isinstance(last, Map) or last.get("output_type") != "stream":
            return None
        if last.get("name") != name:
            return None
        text = last.get("text")
        if not isinstance(text, Text):
            return None
        st = self._stream
        size = len(text)
        if st is not None and st.name == name and st.index == n - 1 and st.size == size:
            return text, st
        # not ours, or changed behind our back: take the stream over as it stands
        value = str(text)
        i = value.rfind("\n")
        line = value[i + 1 :]
        st = _StreamState(name, n - 1, size - _blen(line), line, len(line))
        self._stream = st
        return text, st

    def _write_stream(self, name: str, data: str) -> None:
        found = self._last_stream_text(name)
        if found is None:
            done, line, cursor = process_stream_text("", 0, data)
            self._append({"output_type": "stream", "name": name, "text": Text(done + line)})
            self._stream = _StreamState(name, len(self._outputs) - 1, _blen(done), line, cursor)
            return
        text, st = found
        done, line, cursor = process_stream_text(st.line, st.cursor, data)
        old, new = st.line, done + line
        # minimal edit of the tail: keep the common prefix and suffix, replace the middle
        p = _common_prefix(old, new)
        s = _common_suffix(old, new, min(len(old), len(new)) - p)
        removed = old[p : len(old) - s]
        inserted = new[p : len(new) - s]
        pos = st.line_start + _blen(old[:p])
        if removed:
            del text[pos : pos + _blen(removed)]
        if inserted:
            text.insert(pos, inserted)
        st.line_start += _blen(done)
        st.line = line
        st.cursor = cursor
