"""Wire protocol v1: the binary frames (lib0 encoding, as y-websocket).

A binary frame holds one or more entries, each ``varString(docName) ‖ message``
where ``message`` is a y-protocols message:

* sync: ``varUint(0) varUint(0|1|2) varUint8Array(payload)`` (step 1, step 2, update)
* awareness: ``varUint(1) varUint8Array(payload)`` (only on the ``index`` doc)

More than one entry per frame is our batching extension (a join subscribes to
~2,000 docs of a 1,000-cell notebook in one frame); a frame with one entry is
exactly y-websocket's message prefixed with the doc name.

Use :func:`decode_frame` on what a client sends (it raises
:class:`ProtocolError` on anything malformed or truncated) and
:func:`encode_entry` / :func:`sync_step1` ... to build replies.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

MSG_SYNC = 0
MSG_AWARENESS = 1
SYNC_STEP1 = 0
SYNC_STEP2 = 1
SYNC_UPDATE = 2

MAX_DOC_NAME = 80


class ProtocolError(ValueError):
    """A frame that does not decode; the message says where and why."""


class Entry(NamedTuple):
    """One decoded message: ``kind`` is MSG_SYNC or MSG_AWARENESS.

    (A named tuple: a join decodes ~2,000 of them, and a tuple is the cheapest to build.)
    """

    doc: str
    kind: int
    sub: int  # sync step (0, 1, 2); -1 for awareness
    payload: bytes


#: varUint of 0..127, the common case (doc names, small payload lengths)
_SMALL = [bytes((i,)) for i in range(0x80)]


def write_var_uint(num: int) -> bytes:
    if 0 <= num < 0x80:
        return _SMALL[num]
    out = bytearray()
    while num > 0x7F:
        out.append(0x80 | (num & 0x7F))
        num >>= 7
    out.append(num)
    return bytes(out)


def encode_var_bytes(data: bytes) -> bytes:
    return write_var_uint(len(data)) + data


def encode_var_string(text: str) -> bytes:
    return encode_var_bytes(text.encode("utf-8"))


class Reader:
    """A bounds-checked lib0 decoder over ``data``."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def var_uint(self) -> int:
        pos = self.pos
        data = self.data
        if pos < len(data) and data[pos] < 0x80:  # one byte: the common case
            self.pos = pos + 1
            return data[pos]
        num = 0
        shift = 0
        data = self.data
        while True:
            if self.pos >= len(data):
                raise ProtocolError(f"truncated varUint at byte {self.pos}")
            byte = data[self.pos]
            self.pos += 1
            num |= (byte & 0x7F) << shift
            if byte < 0x80:
                return num
            shift += 7
            if shift > 53:
                raise ProtocolError(f"varUint too long at byte {self.pos}")

    def var_bytes(self) -> bytes:
        length = self.var_uint()
        end = self.pos + length
        if end > len(self.data):
            raise ProtocolError(
                f"truncated payload at byte {self.pos}: {length} bytes announced, "
                f"{len(self.data) - self.pos} present"
            )
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def var_string(self) -> str:
        raw = self.var_bytes()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"invalid UTF-8 in string ending at byte {self.pos}") from exc


def decode_frame(data: bytes, *, unique_step1: bool = False) -> list[Entry]:
    """Decode a whole binary frame; raise :class:`ProtocolError` if any part is bad.

    Nothing is applied by the caller unless the whole frame decodes, so a
    truncated frame changes nothing. ``unique_step1``: leave out every sync step 1 for
    a doc after the first in the frame (the server answers one per doc and frame; a
    frame of 150,000 repeats would otherwise become as many entries in memory).
    """
    if not data:
        raise ProtocolError("empty frame")
    reader = Reader(data)
    entries: list[Entry] = []
    append = entries.append
    asked: set[str] | None = set() if unique_step1 else None
    size = len(data)
    pos = 0
    while pos < size:
        # The common entry, inline: a sync message with a short name (its length one byte)
        # and a payload of less than 16 KiB (its length one or two bytes). Anything else,
        # including every error, takes _decode_entry.
        name_len = data[pos]
        name_end = pos + 1 + name_len
        if 0 < name_len <= MAX_DOC_NAME and name_end + 2 < size and data[name_end] == MSG_SYNC and data[name_end + 1] <= SYNC_UPDATE:
            body = name_end + 3
            payload_len = data[body - 1]
            if payload_len >= 0x80 and body < size and data[body] < 0x80:
                payload_len = (payload_len & 0x7F) | (data[body] << 7)
                body += 1
            end = body + payload_len
            if payload_len < 0x4000 and data[body - 1] < 0x80 and end <= size:
                try:
                    doc = data[pos + 1 : name_end].decode("utf-8")
                except UnicodeDecodeError:
                    doc = None  # the general decoder below reports it
                if doc is not None:
                    pos = end
                    sub = data[name_end + 1]
                    if sub == SYNC_STEP1 and asked is not None:
                        if doc in asked:
                            continue
                        asked.add(doc)
                    append(Entry(doc, MSG_SYNC, sub, data[body:end]))
                    continue
        reader.pos = pos
        entry = _decode_entry(reader)
        pos = reader.pos
        if entry.sub == SYNC_STEP1 and entry.kind == MSG_SYNC and asked is not None:
            if entry.doc in asked:
                continue
            asked.add(entry.doc)
        append(entry)
    return entries


def _decode_entry(reader: Reader) -> Entry:
    doc = reader.var_string()
    if not doc or len(doc) > MAX_DOC_NAME:
        raise ProtocolError(f"invalid doc name {doc[:MAX_DOC_NAME]!r}")
    kind = reader.var_uint()
    if kind == MSG_SYNC:
        sub = reader.var_uint()
        if sub not in (SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE):
            raise ProtocolError(f"unknown sync message type {sub} for doc {doc!r}")
        payload = reader.var_bytes()
    elif kind == MSG_AWARENESS:
        sub = -1
        payload = reader.var_bytes()
    else:
        raise ProtocolError(f"unknown message type {kind} for doc {doc!r}")
    return Entry(doc, kind, sub, payload)


def encode_sync(doc: str, sub: int, payload: bytes) -> bytes:
    name = doc.encode("utf-8")
    return b"".join((write_var_uint(len(name)), name, _SYNC_HEAD[sub], write_var_uint(len(payload)), payload))


_SYNC_HEAD = {sub: bytes((MSG_SYNC, sub)) for sub in (SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE)}


def sync_answer(doc: str, update: bytes, state_vector: bytes | None) -> bytes:
    """The answer to a peer's sync step 1: step 2 with ``update`` and, unless
    ``state_vector`` is None, our own step 1 (the name encoded once for both)."""
    name = doc.encode("utf-8")
    head = write_var_uint(len(name)) + name
    parts = [head, _SYNC_HEAD[SYNC_STEP2], write_var_uint(len(update)), update]
    if state_vector is not None:
        parts += (head, _SYNC_HEAD[SYNC_STEP1], write_var_uint(len(state_vector)), state_vector)
    return b"".join(parts)


def sync_step1(doc: str, state_vector: bytes) -> bytes:
    return encode_sync(doc, SYNC_STEP1, state_vector)


def sync_step2(doc: str, update: bytes) -> bytes:
    return encode_sync(doc, SYNC_STEP2, update)


def sync_update(doc: str, update: bytes) -> bytes:
    return encode_sync(doc, SYNC_UPDATE, update)


def awareness_message(doc: str, payload: bytes) -> bytes:
    return encode_var_string(doc) + bytes((MSG_AWARENESS,)) + encode_var_bytes(payload)


# --- awareness payloads -------------------------------------------------------------


@dataclass(slots=True)
class AwarenessState:
    client_id: int
    clock: int
    state: dict[str, Any] | None  # None: the client left


def decode_awareness(payload: bytes, *, max_states: int = 64) -> list[AwarenessState]:
    """Decode an awareness update; JSON states must be objects or ``null``."""
    reader = Reader(payload)
    count = reader.var_uint()
    if count > max_states:
        raise ProtocolError(f"awareness update with {count} states (at most {max_states})")
    out: list[AwarenessState] = []
    for _ in range(count):
        client_id = reader.var_uint()
        clock = reader.var_uint()
        raw = reader.var_string()
        try:
            state = json.loads(raw)
        except ValueError as exc:
            raise ProtocolError("awareness state is not JSON") from exc
        if state is not None and not isinstance(state, dict):
            raise ProtocolError("awareness state must be a JSON object or null")
        out.append(AwarenessState(client_id, clock, state))
    if not reader.at_end():
        raise ProtocolError("trailing bytes after awareness update")
    return out


def encode_awareness(states: Iterable[AwarenessState]) -> bytes:
    items = list(states)
    parts = [write_var_uint(len(items))]
    for item in items:
        parts.append(write_var_uint(item.client_id))
        parts.append(write_var_uint(item.clock))
        parts.append(encode_var_string(json.dumps(item.state, separators=(",", ":"))))
    return b"".join(parts)
