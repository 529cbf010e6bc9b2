"""What a Yjs update (v1 encoding) holds, read without applying it: :func:`read_update`.

A client's update is checked against the state vector of the doc it is meant for
*before* the doc sees it, in time proportional to the update's size (never the
doc's):

* :meth:`UpdateInfo.missing` names what the update depends on that the doc does not
  hold: structs that start past the doc's clock for their client (a gap), a range
  the update skips, an item whose left or right origin or parent is unknown, a
  deletion of items the doc does not have. A doc would keep such an update aside
  (pending) and integrate it later, when what it lacks arrives, so what the server
  holds would differ from what it acknowledged and sent to its subscribers. The
  room refuses such an update whole (``invalid_update`` + ``resync``).
* :meth:`UpdateInfo.changes_nothing` tells whether an update only repeats what the
  doc holds (the answer a read-only client may send), without building anything.
* :meth:`UpdateInfo.splits_pair` names a place where the update would cut a UTF-16
  surrogate pair (an emoji) in two: a deletion that starts or ends between its two
  units, an item inserted between them. yjs shows each half as U+FFFD, yrs deletes
  or moves other characters: the views would differ, so the room refuses it.
* :meth:`UpdateInfo.bad_parent` names an item whose parent is an item that is not a
  type (a character, a value): yrs refuses such an update only when it reaches that
  struct, after it integrated the ones before it, so the room refuses it first.

The last two look up what the doc holds in a :class:`DocIndex` (where its surrogate
pairs and its types are), kept up to date from every change of the doc in time
proportional to the change.

The encoding (lib0 and Yjs' ``UpdateEncoderV1``): a struct section (per client: the
number of structs, the client id, the first clock, then each struct: an info byte
whose low five bits say the content kind and whose high bits say which of origin,
right origin and parent follow) and a delete set (per client: ranges of clocks).
Content that a notebook cannot hold is refused as malformed: kinds we never write
(``Move``, subdocuments, binary content, XML types, and ``JSON``, which Yjs no longer
writes and which yrs does not read as Yjs wrote it: a doc refused such an update after
this reader had passed it, and yrs panicked on one) and values JSON has no form for
(``Uint8Array``, NaN and the infinities), which made the export fail; and so are ids
that yrs cannot hold: a client id of 2**53 or more, a clock past 2**32 - 1 (yrs
keeps client ids in 53 bits and clocks in 32: a larger one would stand for another id in
the doc than the one read here, and a struct that crosses 2**32 makes yrs panic).
"""

from __future__ import annotations

import bisect
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

#: content kinds (info & 0x1F)
GC, DELETED, JSON, BINARY, STRING, EMBED, FORMAT, TYPE, ANY, DOC, SKIP = range(11)
#: type refs a notebook's docs hold: Array, Map, Text (not the XML types)
_TYPES = (0, 1, 2)
#: nesting depth of an ``Any`` value we read at most
MAX_ANY_DEPTH = 64

#: (client, clock)
ID = tuple[int, int]

#: client ids are below this (yrs keeps 53 bits of them, as JavaScript numbers do)
CLIENT_LIMIT = 1 << 53
#: clocks, and the ends of ranges, are at most this (yrs keeps clocks in 32 bits)
MAX_CLOCK = (1 << 32) - 1


class MalformedUpdate(ValueError):
    """The bytes are not a Yjs v1 update (or use a kind of content this service never writes)."""


@dataclass
class UpdateInfo:
    """The clock ranges an update brings, what it refers to, and what it deletes."""

    #: client -> [(first clock, end clock)] of the structs it brings, in order
    ranges: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    #: client -> [(first clock, end clock)] the update skips (holes it does not bring)
    skips: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    #: the ids its items name as left origin, right origin or parent
    refs: list[ID] = field(default_factory=list)
    #: client -> [(first clock, end clock)] it deletes
    deletes: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    #: the ids its items name as left origin / right origin / parent (each also in refs)
    origins: list[ID] = field(default_factory=list)
    rights: list[ID] = field(default_factory=list)
    parents: list[ID] = field(default_factory=list)
    #: client -> the clocks of the first units of the surrogate pairs in its strings, in order
    pairs: dict[int, list[int]] = field(default_factory=dict)
    #: the ids of the types it brings
    types: list[ID] = field(default_factory=list)
    #: client -> [(first clock, end clock)] of its structs that may be a parent (types,
    #: deleted content, GC)
    parentable: dict[int, list[tuple[int, int]]] = field(default_factory=dict)

    def missing(self, state: dict[int, int]) -> str | None:
        """Why the update cannot be integrated whole into a doc at ``state``
        (client -> next clock), or None if it can."""
        have: dict[int, int] = {}  # what the doc holds once the update's structs are in
        for client, ranges in self.ranges.items():
            known = state.get(client, 0)
            for start, end in ranges:
                if start > known:
                    return f"structs of client {client} start at clock {start}, past {known}"
                known = max(known, end)
            have[client] = known
        for client, skips in self.skips.items():
            for start, end in skips:
                if end > state.get(client, 0):
                    return f"the update skips clocks {start}..{end} of client {client}"
        for client, clock in self.refs:
            if clock >= (have[client] if client in have else state.get(client, 0)):
                return f"an item refers to {client}:{clock}, which this doc does not hold"
        for client, ranges in self.deletes.items():
            held = have[client] if client in have else state.get(client, 0)
            for _start, end in ranges:
                if end > held:
                    return f"a deletion reaches {client}:{end - 1}, which this doc does not hold"
        return None

    def changes_nothing(self, state: dict[int, int], deleted: DeleteSet | None = None) -> bool:
        """True if the update brings no struct the doc lacks and deletes nothing the doc
        has not deleted already (``deleted``: the doc's deletions; None: deletes nothing)."""
        if not all(end <= state.get(client, 0) for client, ranges in self.ranges.items() for _, end in ranges):
            return False
        if not self.deletes:
            return True
        if deleted is None:
            return False
        return all(deleted.covers(client, start, end) for client, ranges in self.deletes.items() for start, end in ranges)


    def splits_pair(self, state: dict[int, int], index: DocIndex) -> str | None:
        """Where the update would cut a surrogate pair in two in a doc at ``state``
        (client -> next clock) that holds ``index``, or None."""
        own = {(client, clock) for client, highs in self.pairs.items() for clock in highs}

        def first_unit(client: int, clock: int) -> bool:
            return (client, clock) in own or index.is_first_unit(client, clock)

        # a struct that the doc holds in part is cut where the doc's clock is
        for client in self.ranges:
            known = state.get(client, 0)
            if (client, known - 1) in own:
                return f"the structs of client {client} are cut at clock {known}, inside a surrogate pair"
        for client, clock in self.origins:
            if first_unit(client, clock):
                return f"an item is inserted after {client}:{clock}, inside a surrogate pair"
        for client, clock in self.rights:
            if first_unit(client, clock - 1):
                return f"an item is inserted before {client}:{clock}, inside a surrogate pair"
        for client, ranges in self.deletes.items():
            for start, end in ranges:
                if first_unit(client, start - 1) or first_unit(client, end - 1):
                    return f"the deletion of {client}:{start}..{end - 1} splits a surrogate pair"
        return None

    def bad_parent(self, state: dict[int, int], index: DocIndex, deleted: Callable[[], DeleteSet]) -> str | None:
        """An item whose parent is neither a type nor deleted, in a doc at ``state`` that
        holds ``index`` (``deleted()``: its deletions, asked only if needed), or None."""
        for client, clock in self.parents:
            if clock < state.get(client, 0):
                if index.is_type(client, clock) or deleted().covers(client, clock, clock + 1):
                    continue
            elif any(start <= clock < end for start, end in self.parentable.get(client, ())):
                continue
            return f"an item's parent {client}:{clock} is not a type"
        return None


class DocIndex:
    """Where a doc's surrogate pairs and types are, by id: what :meth:`UpdateInfo.splits_pair`
    and :meth:`UpdateInfo.bad_parent` look up.

    Built from the doc's whole state once (:meth:`of`), then told every change of the
    doc (:meth:`add`, with the change's update as yrs encoded it), each in time
    proportional to what it reads. Pairs that are deleted are forgotten: yrs holds
    deleted text as a length, which splits anywhere.
    """

    __slots__ = ("_pairs", "_types")

    def __init__(self) -> None:
        self._pairs: dict[int, list[int]] = {}
        self._types: set[ID] = set()

    @classmethod
    def of(cls, update: bytes) -> DocIndex:
        """The index of a doc whose whole state is ``update`` (as yrs encodes it)."""
        index = cls()
        index.add(read_update(update, strict=False))
        return index

    def add(self, change: UpdateInfo) -> None:
        """The doc changed by ``change`` (read from the update yrs encoded for it)."""
        for client, firsts in change.pairs.items():
            held = self._pairs.setdefault(client, [])
            if not held or firsts[0] > held[-1]:
                held.extend(firsts)  # the common case: a client's new text comes after its old
            else:
                for clock in firsts:
                    i = bisect.bisect_left(held, clock)
                    if i == len(held) or held[i] != clock:
                        held.insert(i, clock)
        self._types.update(change.types)
        for client, ranges in change.deletes.items():
            pairs = self._pairs.get(client, [])
            for start, end in ranges if pairs else ():
                del pairs[bisect.bisect_left(pairs, start) : bisect.bisect_left(pairs, end)]

    def is_first_unit(self, client: int, clock: int) -> bool:
        """True if the unit at ``client:clock`` is the first of a surrogate pair (text not deleted)."""
        held = self._pairs.get(client)
        if not held:
            return False
        i = bisect.bisect_left(held, clock)
        return i < len(held) and held[i] == clock

    def is_type(self, client: int, clock: int) -> bool:
        return (client, clock) in self._types


class DeleteSet:
    """A doc's deletions, merged and sorted once: many updates are tested against it
    (a reader's repeats, see :meth:`UpdateInfo.changes_nothing`) each in time bounded by
    the update's size, not by the doc's."""

    __slots__ = ("_ends", "_starts")

    def __init__(self, deletes: dict[int, list[tuple[int, int]]]) -> None:
        self._starts: dict[int, list[int]] = {}
        self._ends: dict[int, list[int]] = {}
        for client, ranges in deletes.items():
            starts: list[int] = []
            ends: list[int] = []
            for start, end in sorted(ranges):
                if ends and start <= ends[-1]:
                    ends[-1] = max(ends[-1], end)
                else:
                    starts.append(start)
                    ends.append(end)
            self._starts[client] = starts
            self._ends[client] = ends

    def covers(self, client: int, start: int, end: int) -> bool:
        """True if every clock in [start, end) of ``client`` is deleted."""
        starts = self._starts.get(client)
        if not starts:
            return start >= end
        i = bisect.bisect_right(starts, start) - 1
        return i >= 0 and self._ends[client][i] >= end


#: a character outside the Basic Multilingual Plane: two UTF-16 units (a surrogate pair)
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


class _Reader:
    def __init__(self, data: bytes, strict: bool = True) -> None:
        self.data = data
        self.pos = 0
        #: False: content a client may not send is read, not refused (a doc's own state)
        self.strict = strict

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise MalformedUpdate("the update ends too early")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uint(self) -> int:
        value = shift = 0
        while True:
            b = self.byte()
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7
            if shift > 63:
                raise MalformedUpdate("a number in the update is too long")

    def skip_int(self) -> None:
        """A signed variable-length integer (lib0 ``writeVarInt``), skipped."""
        for _ in range(10):
            if self.byte() < 0x80:
                return
        raise MalformedUpdate("a number in the update is too long")

    def raw(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise MalformedUpdate("the update ends too early")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def string(self) -> str:
        try:
            return self.raw(self.uint()).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedUpdate("a string in the update is not UTF-8") from exc

    def client(self) -> int:
        client = self.uint()
        if client >= CLIENT_LIMIT:
            raise MalformedUpdate(f"client id {client} is not below 2**53")
        return client

    def clock(self) -> int:
        clock = self.uint()
        if clock > MAX_CLOCK:
            raise MalformedUpdate(f"clock {clock} is past 2**32 - 1")
        return clock

    def id(self) -> ID:
        return self.client(), self.clock()

    def any(self, depth: int = 0) -> None:
        """A lib0 ``Any`` value, skipped."""
        if depth > MAX_ANY_DEPTH:
            raise MalformedUpdate("a value in the update is nested too deeply")
        tag = self.byte()
        if tag in (127, 126, 121, 120):  # undefined, null, false, true
            return
        if tag == 125:
            self.skip_int()
        elif tag == 124:
            self.finite(self.raw(4), ">f")
        elif tag == 123:
            self.finite(self.raw(8), ">d")
        elif tag == 122:
            self.raw(8)
        elif tag == 119:
            self.string()
        elif tag == 118:
            for _ in range(self.count()):
                self.string()
                self.any(depth + 1)
        elif tag == 117:
            for _ in range(self.count()):
                self.any(depth + 1)
        elif tag == 116:
            if self.strict:
                raise MalformedUpdate("a binary value (Uint8Array) is not accepted here")
            self.raw(self.uint())
        else:
            raise MalformedUpdate(f"unknown value tag {tag} in the update")

    def finite(self, raw: bytes, fmt: str) -> None:
        if self.strict and not math.isfinite(struct.unpack(fmt, raw)[0]):
            raise MalformedUpdate("a number in the update is NaN or infinite")

    def count(self) -> int:
        """A count of things that follow; each takes at least a byte, so a count past
        the bytes left is malformed (and no loop runs longer than the update is long)."""
        n = self.uint()
        if n > len(self.data) - self.pos:
            raise MalformedUpdate("a count in the update exceeds its length")
        return n


def read_update(update: bytes, *, strict: bool = True) -> UpdateInfo:
    """Read a v1 update's structure; :class:`MalformedUpdate` if it is not one.

    ``strict=False`` reads content that clients may not send too (a doc's own state,
    which the server or an import may have written), not only what a notebook holds."""
    r = _Reader(update, strict)
    info = UpdateInfo()
    for _ in range(r.count()):
        n_structs = r.count()
        client = r.client()
        clock = r.clock()
        for _ in range(n_structs):
            start = clock
            length, skipped = _struct(r, info, client, clock)
            if length <= 0:
                raise MalformedUpdate("an empty struct in the update")
            clock += length
            if clock > MAX_CLOCK:
                raise MalformedUpdate(f"structs of client {client} reach past clock 2**32 - 1")
            target = info.skips if skipped else info.ranges
            spans = target.setdefault(client, [])
            if spans and spans[-1][1] == start:
                spans[-1] = (spans[-1][0], clock)
            else:
                spans.append((start, clock))
    for _ in range(r.count()):
        client = r.client()
        for _ in range(r.count()):
            start = r.clock()
            length = r.uint()
            if start + length > MAX_CLOCK:
                raise MalformedUpdate(f"a deletion of client {client} reaches past clock 2**32 - 1")
            if length:
                info.deletes.setdefault(client, []).append((start, start + length))
    if r.pos != len(update):
        raise MalformedUpdate(f"{len(update) - r.pos} bytes follow the update")
    return info


def _struct(r: _Reader, info: UpdateInfo, client: int, clock: int) -> tuple[int, bool]:
    """Read one struct (of ``client`` at ``clock``); return its length in clocks, and
    whether it is a skip (a hole)."""
    head = r.byte()
    kind = head & 0x1F
    if kind in (GC, SKIP):
        length = r.uint()
        if kind == GC:
            info.parentable.setdefault(client, []).append((clock, clock + length))
        return length, kind == SKIP
    if head & 0x80:
        origin = r.id()
        info.refs.append(origin)
        info.origins.append(origin)
    if head & 0x40:
        right = r.id()
        info.refs.append(right)
        info.rights.append(right)
    if not head & 0xC0:
        if r.uint() == 1:
            r.string()  # a root type, by name
        else:
            parent = r.id()
            info.refs.append(parent)
            info.parents.append(parent)
        if head & 0x20:
            r.string()  # the key in a map
    if kind == STRING:
        return _string(r, info, client, clock), False
    length = _content(r, kind)
    if kind == TYPE:
        info.types.append((client, clock))
    if kind in (TYPE, DELETED):
        info.parentable.setdefault(client, []).append((clock, clock + length))
    return length, False


def _string(r: _Reader, info: UpdateInfo, client: int, clock: int) -> int:
    """String content: its length in UTF-16 units; the clocks of the first units of
    its surrogate pairs go to ``info.pairs``."""
    text = r.string()
    if text.isascii():
        return len(text)
    pairs = 0
    for match in _ASTRAL.finditer(text):
        info.pairs.setdefault(client, []).append(clock + match.start() + pairs)  # each earlier pair is one unit more
        pairs += 1
    return len(text) + pairs


def _content(r: _Reader, kind: int) -> int:
    if kind == DELETED:
        return r.uint()
    if kind == EMBED:
        r.string()
        return 1
    if kind == FORMAT:
        r.string()
        r.string()
        return 1
    if kind == TYPE:
        ref = r.uint()
        if ref not in _TYPES:
            if r.strict:
                raise MalformedUpdate("XML types are not accepted here")
            if ref in (3, 5):  # an XML element or hook: its name
                r.string()
        return 1
    if kind == ANY:
        n = r.count()
        for _ in range(n):
            r.any()
        return n
    if not r.strict and kind == BINARY:
        r.raw(r.uint())
        return 1
    raise MalformedUpdate(f"content of kind {kind} is not accepted here")


def read_state_vector(vector: bytes) -> dict[int, int]:
    """client -> next clock, from an encoded state vector (``Doc.get_state()``);
    :class:`MalformedUpdate` if it is not one (read in time bounded by its size)."""
    r = _Reader(vector)
    state = {}
    for _ in range(r.count()):
        client = r.client()
        state[client] = r.clock()
    if r.pos != len(vector):
        raise MalformedUpdate("bytes follow the state vector")
    return state


@dataclass(frozen=True)
class Struct:
    """One struct of an update, as :func:`read_structs` reads it.

    ``item`` is False for a GC or skip struct (no content, no parent). An item's
    ``parent`` is ``("root", name)`` or ``("id", (client, clock))`` (a nested type) when
    the update names it, else None (it is its ``origin``'s or ``right``'s parent);
    ``key`` is not None for an entry of a map (its key, or ``""`` where the update does
    not repeat it) and None for an item of a sequence (text, array).
    """

    client: int
    clock: int
    length: int
    item: bool
    origin: ID | None = None
    right: ID | None = None
    parent: tuple[str, object] | None = None
    key: str | None = None
    #: the content kind (``STRING``, ``DELETED``, ``FORMAT``...; ``GC``/``SKIP`` for those)
    kind: int = GC
    #: the text of a ``STRING`` item
    text: str | None = None


def read_structs(update: bytes) -> tuple[list[Struct], dict[int, list[tuple[int, int]]]]:
    """Every struct of a v1 update with its origins, parent and text, and its delete set
    (client -> ``[(start, end)]``), for anchors (:mod:`hub_collab.documents.anchors`);
    :class:`MalformedUpdate` if it is not one. Time and memory are bounded by the
    update's size."""
    r = _Reader(update)
    out: list[Struct] = []
    for _ in range(r.count()):
        n_structs = r.count()
        client = r.client()
        clock = r.clock()
        for _ in range(n_structs):
            head = r.byte()
            kind = head & 0x1F
            if kind in (GC, SKIP):
                length = r.uint()
                struct_ = Struct(client, clock, length, False, kind=kind)
            else:
                origin = r.id() if head & 0x80 else None
                right = r.id() if head & 0x40 else None
                parent: tuple[str, object] | None = None
                # an entry of a map: its key is written only with its parent ("" otherwise)
                key = "" if head & 0x20 else None
                if not head & 0xC0:
                    parent = ("root", r.string()) if r.uint() == 1 else ("id", r.id())
                    if head & 0x20:
                        key = r.string()
                text = None
                if kind == STRING:
                    text = r.string()
                    length = len(text.encode("utf-16-le", "surrogatepass")) // 2
                else:
                    length = _content(r, kind)
                struct_ = Struct(client, clock, length, True, origin, right, parent, key, kind, text)
            if length <= 0 or clock + length > MAX_CLOCK:
                raise MalformedUpdate("an empty struct, or one past clock 2**32 - 1, in the update")
            out.append(struct_)
            clock += length
    deletes: dict[int, list[tuple[int, int]]] = {}
    for _ in range(r.count()):
        client = r.client()
        for _ in range(r.count()):
            start = r.clock()
            length = r.uint()
            if length:
                deletes.setdefault(client, []).append((start, start + length))
    if r.pos != len(update):
        raise MalformedUpdate(f"{len(update) - r.pos} bytes follow the update")
    return out, deletes
