"""Anchors in a cell's source that follow edits: Yjs relative positions, read and resolved.

A comment may be anchored to a range of a cell's ``source`` (the ``Y.Text`` of its
``cell:<id>`` doc). The front end makes the two ends with yjs
(``Y.createRelativePositionFromTypeIndex(ytext, index, assoc)``, then
``Y.encodeRelativePosition``) and sends them base64-encoded; the service keeps those
bytes and resolves them against its own copy of the doc whenever it answers, so the
range moves with every edit made since, by anyone, exactly as yjs moves it
(``Y.createAbsolutePositionFromRelativePosition``).

* :func:`decode_position` reads the bytes with bounds (lib0: ``varUint`` kind, then an
  item id ``(client, clock)`` or a root type's name, then the ``varInt`` assoc). Only
  positions in the root type ``source`` are accepted (kind 1 naming ``source``, or an
  item of it); a nested type's id (kind 2) is refused.
* :class:`SourceText` orders the doc's ``source`` items the way Yjs integrates them
  (YATA: left and right origin, then the client ids of concurrent inserts), from the
  doc's encoded state, read with :func:`~.updates.read_structs`. It resolves a position
  to an index in UTF-16 code units (as yjs and CodeMirror count), says whether an item
  id belongs to the text (a forged id of another cell's doc, of the cell's metadata or
  of nothing resolves to nothing), and slices the text (the quote). Its text is
  checked against pycrdt's: should they ever differ, nothing is resolved.
* :func:`encode_position` and :func:`position_at` make positions (the Python client
  and the tests; the server never needs to).

Why not pycrdt's ``StickyIndex``: in pycrdt 0.14 it panics (a ``BaseException``) on an
unknown or collected id and on the end of the text, and counts text before a
position in UTF-8 bytes but within an item in UTF-16 units, so its indexes are wrong
as soon as a cell holds a non-ASCII character.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc

from .updates import (
    DELETED,
    FORMAT,
    ID,
    STRING,
    Key,
    KeyAt,
    MalformedUpdate,
    Struct,
    UnitOrder,
    read_structs,
)

#: The root type a cell's source lives in.
SOURCE = "source"
#: Longest encoded position accepted (an item id takes at most 1 + 8 + 5 bytes, the assoc 5).
MAX_POSITION_BYTES = 32

_CLIENT_LIMIT = 1 << 53


class InvalidPosition(ValueError):
    """The bytes are not a Yjs relative position in a cell's ``source``."""


class MalformedSource(ValueError):
    """A doc's state whose ``source`` items cannot be read or ordered here."""


@dataclass(frozen=True)
class Position:
    """A decoded relative position: an item ``(client, clock)``, or the root type
    (``item`` None: its start with ``assoc < 0``, else its end)."""

    item: tuple[int, int] | None
    assoc: int


# -- encoding ------------------------------------------------------------------------------


def _uint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise InvalidPosition("the position ends too early")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift > 56:
            raise InvalidPosition("a number in the position is too long")


def _int(data: bytes, pos: int) -> tuple[int, int]:
    """lib0 ``readVarInt``: the first byte holds a sign bit and six bits."""
    if pos >= len(data):
        raise InvalidPosition("the position ends too early")
    b = data[pos]
    pos += 1
    value = b & 0x3F
    negative = bool(b & 0x40)
    shift = 6
    while b & 0x80:
        if pos >= len(data) or shift > 35:
            raise InvalidPosition("the assoc of the position is malformed")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
    return (-value if negative else value), pos


def decode_position(data: bytes) -> Position:
    """A position in ``source`` from yjs' ``encodeRelativePosition`` bytes;
    :class:`InvalidPosition` otherwise."""
    if not isinstance(data, bytes) or not 0 < len(data) <= MAX_POSITION_BYTES:
        raise InvalidPosition(f"a position is 1 to {MAX_POSITION_BYTES} bytes")
    kind, pos = _uint(data, 0)
    item: tuple[int, int] | None = None
    if kind == 0:
        client, pos = _uint(data, pos)
        clock, pos = _uint(data, pos)
        if client >= _CLIENT_LIMIT or clock >= 1 << 32:
            raise InvalidPosition("the item id of the position is out of range")
        item = (client, clock)
    elif kind == 1:
        n, pos = _uint(data, pos)
        name = data[pos : pos + n]
        pos += n
        if name != SOURCE.encode():
            raise InvalidPosition(f"the position is not in the cell's {SOURCE!r}")
    else:
        raise InvalidPosition("the position must be in the cell's source text (kind 0 or 1)")
    assoc = 0
    if pos < len(data):
        assoc, pos = _int(data, pos)
    if pos != len(data):
        raise InvalidPosition("bytes follow the position")
    return Position(item, -1 if assoc < 0 else 0)


def encode_position(position: Position) -> bytes:
    """yjs' ``encodeRelativePosition`` of ``position``."""
    out = bytearray()

    def uint(n: int) -> None:
        while n > 0x7F:
            out.append(0x80 | (n & 0x7F))
            n >>= 7
        out.append(n)

    if position.item is None:
        uint(1)
        uint(len(SOURCE))
        out += SOURCE.encode()
    else:
        uint(0)
        uint(position.item[0])
        uint(position.item[1])
    out.append(0x41 if position.assoc < 0 else 0x00)  # varInt -1 / 0
    return bytes(out)


def b64decode_position(value: Any) -> Position:
    """A position sent as base64 text (the wire form); :class:`InvalidPosition` otherwise."""
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise InvalidPosition("a position is base64 text of at most 64 characters")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidPosition("a position must be base64") from exc
    return decode_position(data)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- the text as Yjs orders it ------------------------------------------------------------------


class _Run:
    """A run of consecutive clocks of one client in the text (split when an origin points inside)."""

    __slots__ = ("buf", "client", "clock", "countable", "deleted", "left", "length", "off", "origin", "right", "right_origin")

    def __init__(self, s: Struct) -> None:
        self.client = s.client
        self.clock = s.clock
        self.length = s.length
        self.origin = s.origin
        self.right_origin = s.right
        self.countable = s.kind not in (DELETED, FORMAT)
        # the struct's text as UTF-16 units, shared by the runs split from it (a split
        # copies nothing); this run is units off..off+length of it
        self.buf = s.text.encode("utf-16-le", "surrogatepass") if s.kind == STRING and s.text is not None else None
        self.off = 0
        self.left: _Run | None = None
        self.right: _Run | None = None
        self.deleted = s.kind == DELETED


class SourceText:
    """The items of a cell doc's ``source`` in document order (see the module's docs),
    deleted ones included; or those of another sequence of the doc (``sequence``: a
    struct's parent, ``("root", name)`` or ``("id", (client, clock))`` for a nested
    type), for :meth:`before`.

    Build it from the doc's encoded state (:class:`MalformedSource` if it cannot be
    read or ordered; ``strict=False`` reads content a client may not send too, which a
    doc the server wrote may hold); compare :attr:`text` with pycrdt's before trusting
    it. Work and memory are linear in the size of the doc's state (plus the concurrent
    inserts each item is ordered against): about 1 to 1.9 ms per KB of a doc typed a
    character at a time (benchmarks/bench_update_checks.py).
    """

    def __init__(self, state: bytes, sequence: tuple[str, object] = ("root", SOURCE), *, strict: bool = True) -> None:
        try:
            structs, deletes = read_structs(state, strict=strict)
        except MalformedUpdate as exc:
            raise MalformedSource(str(exc)) from exc
        self._runs: dict[int, list[_Run]] = {}  # client -> runs sorted by clock
        self._starts: dict[int, list[int]] = {}
        self._start: _Run | None = None
        items = _source_items(structs, sequence)
        self._integrate(items)
        for client, ranges in deletes.items():
            for start, end in ranges:
                self._delete(client, start, end)
        order: list[_Run] = []
        run = self._start
        while run is not None:
            order.append(run)
            run = run.right
        self._order = order
        self._places = {id(run): i for i, run in enumerate(order)}
        self._prefix: list[int] = []  # UTF-16 units of live text before each run
        total = 0
        pieces: list[bytes] = []
        for run in order:
            self._prefix.append(total)
            if not run.deleted and run.countable:
                total += run.length
                if run.buf is not None:
                    pieces.append(run.buf[2 * run.off : 2 * (run.off + run.length)])
        self.length = total
        self._units = b"".join(pieces)
        self.text = self._units.decode("utf-16-le", "replace")

    # -- building ---------------------------------------------------------------------

    def _find(self, client: int, clock: int) -> _Run | None:
        starts = self._starts.get(client)
        if not starts:
            return None
        i = bisect.bisect_right(starts, clock) - 1
        if i < 0:
            return None
        run = self._runs[client][i]
        return run if clock < run.clock + run.length else None

    def _split(self, run: _Run, offset: int) -> _Run:
        """Split ``run`` so that a new run starts ``offset`` clocks in; return the new run."""
        new = _Run.__new__(_Run)
        new.client = run.client
        new.clock = run.clock + offset
        new.length = run.length - offset
        new.origin = (run.client, run.clock + offset - 1)
        new.right_origin = run.right_origin
        new.countable = run.countable
        new.deleted = run.deleted
        new.buf = run.buf
        new.off = run.off + offset
        run.length = offset
        new.left, new.right = run, run.right
        if run.right is not None:
            run.right.left = new
        run.right = new
        i = bisect.bisect_right(self._starts[run.client], run.clock)
        self._starts[run.client].insert(i, new.clock)
        self._runs[run.client].insert(i, new)
        return new

    def _clean_end(self, id_: tuple[int, int]) -> _Run | None:
        run = self._find(*id_)
        if run is None:
            return None
        if id_[1] < run.clock + run.length - 1:
            self._split(run, id_[1] - run.clock + 1)
        return run

    def _clean_start(self, id_: tuple[int, int]) -> _Run | None:
        run = self._find(*id_)
        if run is None:
            return None
        if id_[1] > run.clock:
            return self._split(run, id_[1] - run.clock)
        return run

    def _add(self, run: _Run) -> None:
        starts = self._starts.setdefault(run.client, [])
        i = bisect.bisect_right(starts, run.clock)
        starts.insert(i, run.clock)
        self._runs.setdefault(run.client, []).insert(i, run)

    def _integrate(self, items: list[Struct]) -> None:
        """Integrate ``items`` in an order where every origin comes before what names it."""
        by_client: dict[int, list[Struct]] = {}
        for s in items:
            by_client.setdefault(s.client, []).append(s)
        done: dict[int, int] = {}  # client -> clocks integrated so far
        nexts = dict.fromkeys(by_client, 0)
        limit = 2 * len(items) + 2
        for client in sorted(by_client):
            while nexts[client] < len(by_client[client]):
                stack = [by_client[client][nexts[client]]]
                while stack:
                    if len(stack) > limit:
                        raise _Unordered("the items' origins form a cycle")
                    top = stack[-1]
                    waiting = None
                    for dep in (top.origin, top.right):
                        if dep is not None and dep[1] >= done.get(dep[0], 0) and dep[0] != top.client:
                            waiting = dep[0]
                            break
                    if waiting is not None:
                        queue = by_client.get(waiting)
                        if queue is None or nexts[waiting] >= len(queue):
                            raise _Unordered("an item's origin is not in the text")
                        stack.append(queue[nexts[waiting]])
                        continue
                    stack.pop()
                    if nexts[top.client] < len(by_client[top.client]) and by_client[top.client][nexts[top.client]] is top:
                        self._place(_Run(top))
                        nexts[top.client] += 1
                        done[top.client] = top.clock + top.length

    def _place(self, run: _Run) -> None:
        """Yjs' ``Item.integrate`` for a sequence: find the run's place between its origins."""
        left = self._clean_end(run.origin) if run.origin is not None else None
        right = self._clean_start(run.right_origin) if run.right_origin is not None else None
        if (run.origin is not None and left is None) or (run.right_origin is not None and right is None):
            raise _Unordered("an item's origin is not in the text")
        if (left is None and (right is None or right.left is not None)) or (left is not None and left.right is not right):
            o = left.right if left is not None else self._start
            conflicting: set[int] = set()
            before_origin: set[int] = set()
            while o is not None and o is not right:
                before_origin.add(id(o))
                conflicting.add(id(o))
                if run.origin == o.origin:
                    if o.client < run.client:
                        left = o
                        conflicting.clear()
                    elif run.right_origin == o.right_origin:
                        break
                elif o.origin is not None and (origin_run := self._find(*o.origin)) is not None and id(origin_run) in before_origin:
                    if id(origin_run) not in conflicting:
                        left = o
                        conflicting.clear()
                else:
                    break
                o = o.right
        run.left = left
        if left is not None:
            run.right = left.right
            left.right = run
        else:
            run.right = self._start
            self._start = run
        if run.right is not None:
            run.right.left = run
        self._add(run)

    def _delete(self, client: int, start: int, end: int) -> None:
        clock = start
        while clock < end:
            run = self._find(client, clock)
            if run is None:
                starts = self._starts.get(client, [])
                i = bisect.bisect_right(starts, clock)
                if i >= len(starts):
                    return
                clock = starts[i]
                continue
            if run.clock < clock:
                run = self._split(run, clock - run.clock)
            if run.clock + run.length > end:
                self._split(run, end - run.clock)
            run.deleted = True
            clock = run.clock + run.length

    # -- reading ------------------------------------------------------------------------

    def has(self, item: tuple[int, int]) -> bool:
        """Whether ``item`` is an item (live or deleted) of the text."""
        return self._find(*item) is not None

    def before(self, a: tuple[int, int], b: tuple[int, int]) -> bool | None:
        """Whether the unit ``a`` is before ``b`` in the sequence, deleted or not (None:
        one of them is not in it). What yrs' positions cannot tell: they count only
        what is not deleted."""
        run_a, run_b = self._find(*a), self._find(*b)
        if run_a is None or run_b is None:
            return None
        if run_a is run_b:
            return a[1] < b[1]
        return self._places[id(run_a)] < self._places[id(run_b)]

    def index(self, position: Position) -> int | None:
        """Where ``position`` is now, in UTF-16 code units (yjs'
        ``createAbsolutePositionFromRelativePosition``); None if its item is not in the text."""
        if position.item is None:
            return 0 if position.assoc < 0 else self.length
        run = self._find(*position.item)
        if run is None:
            return None
        base = self._prefix[self._places[id(run)]]
        if run.deleted or not run.countable:
            return base
        return base + position.item[1] - run.clock + (1 if position.assoc < 0 else 0)

    def slice(self, start: int, end: int) -> str:
        """The text between two UTF-16 indexes."""
        return self._units[2 * start : 2 * end].decode("utf-16-le", "replace")

    def position_at(self, index: int, assoc: int = 0) -> Position:
        """yjs' ``createRelativePositionFromTypeIndex(source, index, assoc)``."""
        if assoc < 0:
            if index <= 0:
                return Position(None, -1)
            index -= 1
        last: _Run | None = None
        for run in self._order:
            if not run.deleted and run.countable:
                if run.length > index:
                    return Position((run.client, run.clock + index), assoc)
                index -= run.length
                last = run
        if assoc < 0 and last is not None:
            return Position((last.client, last.clock + last.length - 1), assoc)
        return Position(None, assoc)


class _Unordered(MalformedSource):
    """The items cannot be ordered (not a doc this service holds)."""


def _source_items(structs: list[Struct], sequence: tuple[str, object]) -> list[Struct]:
    """The items of the sequence ``sequence`` (a struct's parent): an item names its
    parent, or has the parent of its origin (or right origin); map entries are not in
    a sequence."""
    ranges: dict[int, list[tuple[int, int, int]]] = {}  # client -> (start, end, index)
    for i, s in enumerate(structs):
        ranges.setdefault(s.client, []).append((s.clock, s.clock + s.length, i))
    starts = {c: [r[0] for r in rs] for c, rs in ranges.items()}
    verdict: list[bool | None] = [None] * len(structs)

    def containing(id_: tuple[int, int]) -> int | None:
        rs = ranges.get(id_[0])
        if not rs:
            return None
        j = bisect.bisect_right(starts[id_[0]], id_[1]) - 1
        if j < 0 or id_[1] >= rs[j][1]:
            return None
        return rs[j][2]

    for i in range(len(structs)):
        path: list[int] = []
        j: int | None = i
        result = False
        while j is not None:
            known = verdict[j]
            if known is not None:
                result = known
                break
            s = structs[j]
            path.append(j)
            if not s.item or s.key is not None:
                result = False
                break
            if s.parent is not None:
                result = s.parent == sequence
                break
            dep = s.origin if s.origin is not None else s.right
            j = containing(dep) if dep is not None else None
            if j is not None and j in path:
                result = False
                break
        for k in path:
            verdict[k] = result
    return [s for s, ok in zip(structs, verdict, strict=True) if ok]


def deleted_order(state: Callable[[], bytes], key_at: KeyAt) -> UnitOrder:
    """``before(a, b)``: whether unit ``a`` is before ``b`` in their sequence of the doc
    whose encoded state ``state()`` gives, deleted units included (None: not known, or
    not one sequence); each sequence is ordered once (:class:`SourceText`), when first
    asked about. ``key_at`` says which sequence a unit is in
    (:meth:`~.updates.DocIndex.key_at`). For :meth:`~.updates.UpdateInfo.crossing`."""
    held = functools.cache(state)  # encoded once, for every sequence asked about
    ordered: dict[Key, SourceText | None] = {}

    def before(a: ID, b: ID) -> bool | None:
        key = key_at(*a)
        if key is None or key[1] is not None or key_at(*b) != key:
            return None
        if key not in ordered:
            parent = key[0]
            try:
                ordered[key] = SourceText(held(), ("root", parent) if isinstance(parent, str) else ("id", parent), strict=False)
            except MalformedSource:
                ordered[key] = None
        sequence = ordered[key]
        return None if sequence is None else sequence.before(a, b)

    return before


def position_at(doc: Doc[Any], index: int, assoc: int = 0) -> bytes:
    """The encoded relative position of UTF-16 ``index`` in ``doc``'s source (the Python
    client's ``Y.createRelativePositionFromTypeIndex``)."""
    source = SourceText(doc.get_update())
    return encode_position(source.position_at(index, assoc))
