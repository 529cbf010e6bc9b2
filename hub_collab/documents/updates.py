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

* :meth:`UpdateInfo.crossing` names an item whose left origin is not before its right
  origin in their sequence (or whose two origins are in different sequences). An
  honest client inserts between two neighbours; such an item has no place, and
  where Yjs and yrs put it depends on what the doc held when it arrived: the doc
  rebuilt from its own encoding (a checkpoint, a late joiner) held the text in
  another order than the doc that took it (found by the frame fuzzer). It looks up
  the two origins' positions in the doc (``offset``: yrs' sticky index, in time
  proportional to the doc's items, in Rust) only for items that name both. Two
  deleted characters at one place have the same position: those are ordered in the
  doc's sequence ordered here with its deleted items (``deleted_order``).

The last three look up what the doc holds in a :class:`DocIndex` (where its surrogate
pairs and its types are, and which sequence or map each item is in), kept up to
date from every change of the doc in time proportional to the change.

The encoding (lib0 and Yjs' ``UpdateEncoderV1``): a struct section (per client: the
number of structs, the client id, the first clock, then each struct: an info byte
whose low five bits say the content kind and whose high bits say which of origin,
right origin and parent follow) and a delete set (per client: ranges of clocks).
Content that a notebook cannot hold is refused as malformed: kinds we never write
(``Move``, subdocuments, binary content, XML types, formatting marks, and ``JSON``,
which Yjs no longer writes and which yrs does not read as Yjs wrote it: a doc refused
such an update after this reader had passed it, and yrs panicked on one) and values
JSON has no form for (``Uint8Array``, NaN and the infinities), which made the export
fail; and so are ids
that yrs cannot hold: a client id of 2**53 or more, a clock past 2**32 - 1 (yrs
keeps client ids in 53 bits and clocks in 32: a larger one would stand for another id in
the doc than the one read here, and a struct that crosses 2**32 makes yrs panic).
"""

from __future__ import annotations

import bisect
import math
import re
import struct
from array import array
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
#: where an item is: its parent (a root type by name, or the id of a type item) and its
#: key if the parent is a map (None: the parent is a sequence)
Key = tuple[str | tuple[int, int], str | None]


@dataclass(frozen=True, slots=True)
class Placement:
    """An item struct of an update: its clocks, its two origins, and its parent and map
    key if it names them (an item with an origin is where that origin is)."""

    client: int
    clock: int
    end: int
    origin: ID | None
    right: ID | None
    key: Key | None


#: client ids are below this (yrs keeps 53 bits of them, as JavaScript numbers do)
CLIENT_LIMIT = 1 << 53
#: clocks, and the ends of ranges, are at most this (yrs keeps clocks in 32 bits)
MAX_CLOCK = (1 << 32) - 1

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
    #: its items (not GC, not skips), in order
    placements: list[Placement] = field(default_factory=list)
    #: where its delete set starts (the update's structs are the bytes before)
    structs_end: int = 0

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

    def crossing(
        self,
        state: dict[int, int],
        index: DocIndex,
        offset: Offset,
        integrated: Callable[[], Copy | None] = lambda: None,
        walks: Walks | None = None,
        deleted_order: UnitOrder | None = None,
    ) -> str | None:
        """An item the doc at ``state`` (holding ``index``) lacks whose left origin is not
        before its right origin in one sequence, or None.

        ``offset(id, after)`` is the position in its sequence of the unit ``id`` (before it;
        ``after``: after it), counting only what is not deleted, or None if it cannot be
        found. Two positions order two units unless both are deleted and equal (yrs
        names two deleted neighbours when one types where text was deleted): those are
        ordered by ``deleted_order(a, b)`` (the doc's sequence ordered here with its
        deleted items, :func:`~.anchors.deleted_order`; None: it cannot tell, and the
        update is refused). The order
        of the update's own items follows from their origins, except where yrs'
        conflict resolution decides it (an offline client's item next to one typed
        meanwhile): for those, ``integrated()`` gives the same two in a copy of the doc
        that holds the update's structs (None: yrs would not take them); the order of a
        unit that yrs does not hold as an item (its position is None) is taken as right.

        Most pairs need no position: the doc's structs link them (:meth:`DocIndex.linked`:
        typing between two characters typed one after the other). ``walks`` bounds the
        positions asked for, in the doc and in the copy, the copy (:data:`COPY_WALKS`)
        and the ordering of deleted items (:data:`ORDER_WALKS` a sequence; None: no
        bound; it is spent); an update that needs more is refused.
        """
        new: list[Placement] = []
        for p in self.placements:
            known = state.get(p.client, 0)
            if p.end <= known:
                continue  # the doc holds it: yrs skips it
            if p.clock < known:  # yrs integrates the rest, after the last unit it holds
                p = Placement(p.client, known, p.end, (p.client, known - 1), p.right, p.key)
            new.append(p)
        if not any(p.origin is not None and p.right is not None for p in new):
            return None  # the common case: typing at the end, or an item with one neighbour
        keys = placement_keys(new, index.key_at)
        lookup = _PlacementLookup(new)

        def key_of(unit: ID) -> Key | None:
            i = lookup.find(unit)
            return index.key_at(*unit) if i is None else keys[i]

        order = _Order(new, lookup, offset, index.key_at, index, walks, deleted_order)
        unknown: list[Placement] = []
        for p in new:
            if p.origin is None or p.right is None:
                continue
            where = key_of(p.origin)
            if where is None or where != key_of(p.right):
                return f"the origins of item {p.client}:{p.clock} are not in one sequence"
            if where[1] is not None:
                return f"item {p.client}:{p.clock} in a map names a right origin"
            try:
                found = order.before(p.origin, p.right)
            except _Refused as exc:
                return str(exc)
            if found is False:
                return _crossed(p)
            if found is None and (
                lookup.find(p.origin) is not None or lookup.find(p.right) is not None
            ):
                unknown.append(p)
        if not unknown:
            return None
        try:
            if walks is not None:
                walks.spend(COPY_WALKS, TOO_COSTLY)
            copy = integrated()
            if copy is None:
                return None
            copy_offset, copy_order = copy

            def copy_key_at(client: int, clock: int) -> Key | None:  # the update's own items too
                return key_of((client, clock))

            order = _Order([], _PlacementLookup([]), copy_offset, copy_key_at, None, walks, copy_order(copy_key_at))
            for p in unknown:
                assert p.origin is not None and p.right is not None
                if order.before(p.origin, p.right) is False:
                    return _crossed(p)
        except _Refused as exc:
            return str(exc)
        return None


def _crossed(p: Placement) -> str:
    return f"item {p.client}:{p.clock} goes between {p.origin} and {p.right}, which are not in this order"


#: what a copy of the doc (for ``integrated``) costs, in walks of the doc: about 100 ms per
#: MB of a doc typed a character at a time, 30-36 times a walk of it
#: (benchmarks/bench_update_checks.py); with the room's default budget, docs of up to
#: about 450 KB can be copied, and in a larger one such an update is refused
COPY_WALKS = 36
TOO_COSTLY = "it inserts between too many characters of this large doc to be checked at once: send it in parts"
#: what ordering one sequence of a doc with its deleted items (``deleted_order``, in
#: Python) costs, in walks of the doc: about 1 to 1.9 ms per KB of a doc typed a
#: character at a time, 99-724 times a walk of it, the most for small docs
#: (benchmarks/bench_update_checks.py); with the room's default budget, a doc of up to
#: about 22 KB can be ordered so, and in a larger one such an update is refused
ORDER_WALKS = 750
ORDER_TOO_COSTLY = (
    "it goes between deleted characters that the server cannot order at once in this large doc: type it again"
)
UNTOLD = "the server cannot tell where it goes between the deleted characters it names"

#: a unit's position in its sequence (``after``: just after it), counting what is not deleted
Offset = Callable[[ID, bool], int | None]
#: whether one unit is before another in their sequence (None: not known)
UnitOrder = Callable[[ID, ID], bool | None]
#: the sequence (parent, map key) of the unit ``client:clock``
KeyAt = Callable[[int, int], Key | None]
#: positions in a copy of a doc that holds an update's structs, and the order of two
#: units with the copy's deleted ones (given where units are)
Copy = tuple[Offset, Callable[[KeyAt], UnitOrder]]


class _Refused(Exception):
    """An update that cannot be checked; the message says why."""


@dataclass
class Walks:
    """How many positions (sticky-index walks of the doc) checks may still ask for."""

    left: int

    def spend(self, n: int, why: str) -> None:
        """Take ``n`` walks; :class:`_Refused` with ``why`` if fewer are left."""
        if self.left < n:
            raise _Refused(why)
        self.left -= n


class _PlacementLookup:
    """Which of an update's placements holds a unit."""

    __slots__ = ("_at", "_starts", "placements")

    def __init__(self, placements: list[Placement]) -> None:
        self.placements = placements
        self._starts: dict[int, list[int]] = {}
        self._at: dict[int, list[int]] = {}
        # an update's structs of one client are in clock order
        for i, p in enumerate(placements):
            self._starts.setdefault(p.client, []).append(p.clock)
            self._at.setdefault(p.client, []).append(i)

    def find(self, unit: ID) -> int | None:
        starts = self._starts.get(unit[0])
        if not starts:
            return None
        j = bisect.bisect_right(starts, unit[1]) - 1
        if j < 0:
            return None
        i = self._at[unit[0]][j]
        return i if unit[1] < self.placements[i].end else None


_UNSET: Key = ("", "")


def placement_keys(
    placements: list[Placement], outside: Callable[[int, int], Key | None]
) -> list[Key | None]:
    """The parent and map key of each placement (None: unknown), as Yjs sets them: its
    own, else its left origin's, else its right origin's. ``outside(client, clock)``
    answers for units that are not in ``placements``."""
    lookup = _PlacementLookup(placements)
    keys: list[Key | None] = [_UNSET] * len(placements)
    for first in range(len(placements)):
        if keys[first] is not _UNSET:
            continue
        stack, on_stack = [first], {first}
        while stack:
            i = stack[-1]
            p = placements[i]
            ref = p.origin if p.origin is not None else p.right
            if p.key is not None or ref is None:
                keys[i] = p.key
            else:
                j = lookup.find(ref)
                if j is None:
                    keys[i] = outside(*ref)
                elif keys[j] is _UNSET:
                    if j not in on_stack:  # (an item cannot be its own origin: a cycle is unknown)
                        stack.append(j)
                        on_stack.add(j)
                        continue
                    keys[i] = None
                else:
                    keys[i] = keys[j]
            stack.pop()
            on_stack.discard(i)
    return keys


class _Order:
    """Whether one unit is before another in their sequence, for units the doc holds
    (by position) and units of an update's placements (each is after its left origin
    and before its right origin, its own units in clock order): True, False (they are
    the other way round), or None (not known before the doc integrates the update)."""

    def __init__(
        self,
        new: list[Placement],
        lookup: _PlacementLookup,
        offset: Offset,
        key_at: KeyAt,
        index: DocIndex | None = None,
        walks: Walks | None = None,
        deleted_order: UnitOrder | None = None,
    ) -> None:
        self.new = new
        self.lookup = lookup
        self.offset = offset
        self.key_at = key_at
        self.index = index
        #: offsets it may still ask for (None: any number)
        self.walks = walks
        self.deleted_order = deleted_order
        #: the sequences deleted_order was paid for
        self._ordered: set[Key | None] = set()
        self._known: dict[tuple[ID, ID], bool | None] = {}
        self._asking: set[tuple[ID, ID]] = set()

    def before(self, a: ID, b: ID) -> bool | None:
        pair = (a, b)
        if pair in self._known:
            return self._known[pair]
        if pair in self._asking:
            return None
        self._asking.add(pair)
        try:
            found = self._before(a, b)
        finally:
            self._asking.discard(pair)
        self._known[pair] = found
        return found

    def _before(self, a: ID, b: ID) -> bool | None:
        if a == b:
            return False
        ia, ib = self.lookup.find(a), self.lookup.find(b)
        if ia is not None and ia == ib:
            return a[1] < b[1]
        if ia is not None:  # a < its placement's right origin <= b
            right = self.new[ia].right
            if right is not None and (right == b or self.before(right, b)):
                return True
        if ib is not None:  # a <= b's placement's left origin < b
            left = self.new[ib].origin
            if left is not None and (left == a or self.before(a, left)):
                return True
        if ia is not None or ib is not None:
            return None
        return self._held_before(a, b)

    def _held_before(self, a: ID, b: ID) -> bool | None:
        if self.index is not None and self.index.linked(a, b):
            return True
        if self.walks is not None:
            self.walks.spend(4, TOO_COSTLY)
        a_at, a_after = self.offset(a, False), self.offset(a, True)
        b_at, b_after = self.offset(b, False), self.offset(b, True)
        if a_at is None or a_after is None or b_at is None or b_after is None:
            return None
        if a_after > a_at:  # a is not deleted: b is after it if it is at or past its end
            return b_at >= a_after
        if b_after > b_at:  # b is not deleted
            return a_at <= b_at
        if a_at != b_at:
            return a_at < b_at
        # Both deleted at one place (yrs names deleted neighbours when text is typed
        # where text was deleted): positions say nothing, the sequence ordered with its
        # deleted items does.
        if self.deleted_order is None:
            return None
        key = self.key_at(*a)
        if key not in self._ordered:
            if self.walks is not None:
                self.walks.spend(ORDER_WALKS, ORDER_TOO_COSTLY)
            self._ordered.add(key)
        found = self.deleted_order(a, b)
        if found is None:
            raise _Refused(UNTOLD)
        return found


class DocIndex:
    """Where a doc's surrogate pairs and types are, which sequence or map each item is in,
    and each struct's origins, by id: what :meth:`UpdateInfo.splits_pair`,
    :meth:`UpdateInfo.bad_parent` and :meth:`UpdateInfo.crossing` look up.

    Built from the doc's whole state once (:meth:`of`), then told every change of the
    doc (:meth:`add`, with the change's update as yrs encoded it), each in time
    proportional to what it reads. Pairs that are deleted are forgotten: yrs holds
    deleted text as a length, which splits anywhere.
    """

    __slots__ = ("_keys", "_links", "_pairs", "_types")

    def __init__(self) -> None:
        self._pairs: dict[int, list[int]] = {}
        self._types: set[ID] = set()
        #: client -> ([first clock], [end clock], [key]) of its items, in clock order
        #: (one range per client and parent in the common case: one client types into
        #: one text)
        self._keys: dict[int, tuple[list[int], list[int], list[Key]]] = {}
        #: client -> its item structs as the doc took them: first clocks, end clocks, and
        #: the left and right origins of each (client, clock; -1 for none), in arrays
        #: of 48 bytes a struct (a text typed at random places is a struct a character)
        self._links: dict[int, tuple[array[int], ...]] = {}

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
        placements = change.placements
        for p, key in zip(placements, placement_keys(placements, self.key_at), strict=True):
            if key is not None:
                self._add_key(p.client, p.clock, p.end, key)
            self._add_link(p)
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

    def key_at(self, client: int, clock: int) -> Key | None:
        """The parent and map key of the item holding ``client:clock`` (None: not known,
        such as a unit garbage-collected with its parent)."""
        held = self._keys.get(client)
        if held is None:
            return None
        starts, ends, keys = held
        i = bisect.bisect_right(starts, clock) - 1
        return keys[i] if i >= 0 and clock < ends[i] else None

    def linked(self, a: ID, b: ID) -> bool:
        """True if the doc's structs say ``a`` is before ``b`` in their sequence without
        a walk: two units in clock order of one struct, ``b`` the first unit of a struct
        whose left origin is ``a``, or ``a`` the last unit of one whose right origin is
        ``b`` (an item is between its origins: the room takes no other)."""
        held = self._links.get(b[0])
        if held is not None:
            starts, ends, oc, ok, _rc, _rk = held
            i = bisect.bisect_right(starts, b[1]) - 1
            if i >= 0 and b[1] < ends[i]:
                if a[0] == b[0] and starts[i] <= a[1] < b[1]:
                    return True
                if b[1] == starts[i] and oc[i] == a[0] and ok[i] == a[1]:
                    return True
        held = self._links.get(a[0])
        if held is not None:
            starts, ends, _oc, _ok, rc, rk = held
            i = bisect.bisect_right(starts, a[1]) - 1
            if i >= 0 and a[1] == ends[i] - 1 and rc[i] == b[0] and rk[i] == b[1]:
                return True
        return False

    def _add_link(self, p: Placement) -> None:
        held = self._links.get(p.client)
        if held is None:
            held = self._links[p.client] = tuple(array("q") for _ in range(6))
        starts = held[0]
        origin = p.origin if p.origin is not None else (-1, -1)
        right = p.right if p.right is not None else (-1, -1)
        row = (p.clock, p.end, origin[0], origin[1], right[0], right[1])
        if not starts or p.clock >= held[1][-1]:  # the common case: after the client's others
            for column, value in zip(held, row, strict=True):
                column.append(value)
            return
        i = bisect.bisect_left(starts, p.clock)
        if i < len(starts) and starts[i] == p.clock:
            return  # known
        for column, value in zip(held, row, strict=True):
            column.insert(i, value)

    def _add_key(self, client: int, start: int, end: int, key: Key) -> None:
        held = self._keys.get(client)
        if held is None:
            self._keys[client] = ([start], [end], [key])
            return
        starts, ends, keys = held
        if start >= ends[-1]:  # the common case: a client's new items come after its old
            if start == ends[-1] and keys[-1] == key:
                ends[-1] = end
            else:
                starts.append(start)
                ends.append(end)
                keys.append(key)
            return
        i = bisect.bisect_left(starts, start)
        if i < len(starts) and starts[i] == start:
            return  # known
        starts.insert(i, start)
        ends.insert(i, end)
        keys.insert(i, key)


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
    def __init__(self, data: bytes, strict: bool = True, placements: bool = True) -> None:
        self.data = data
        self.pos = 0
        #: False: content a client may not send is read, not refused (a doc's own state)
        self.strict = strict
        #: False: the items' places are not kept (an object per struct)
        self.placements = placements

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


def read_update(update: bytes, *, strict: bool = True, placements: bool = True) -> UpdateInfo:
    """Read a v1 update's structure; :class:`MalformedUpdate` if it is not one.

    ``strict=False`` reads content that clients may not send too (a doc's own state,
    which the server or an import may have written), not only what a notebook holds.
    ``placements=False`` leaves :attr:`UpdateInfo.placements` empty (what
    :meth:`UpdateInfo.crossing` needs costs an object per struct: a 4 MB update that is
    refused for a gap should not make them)."""
    r = _Reader(update, strict, placements)
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
    info.structs_end = r.pos
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
    origin = right = None
    key: Key | None = None
    if head & 0x80:
        origin = r.id()
        info.refs.append(origin)
        info.origins.append(origin)
    if head & 0x40:
        right = r.id()
        info.refs.append(right)
        info.rights.append(right)
    if not head & 0xC0:
        parent: str | ID
        if r.uint() == 1:
            parent = r.string()  # a root type, by name
        else:
            parent = r.id()
            info.refs.append(parent)
            info.parents.append(parent)
        key = (parent, r.string() if head & 0x20 else None)  # (and the key in a map)
    if kind == STRING:
        length = _string(r, info, client, clock)
        if r.placements:
            info.placements.append(Placement(client, clock, clock + length, origin, right, key))
        return length, False
    length = _content(r, kind)
    if r.placements:
        info.placements.append(Placement(client, clock, clock + length, origin, right, key))
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
        if r.strict:
            # a rich-text mark: notebooks hold plain text; in a map it is an entry that
            # yrs lists but cannot read (the export failed on it; the frame fuzzer found it)
            raise MalformedUpdate("formatting marks (rich text) are not accepted here")
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


def read_structs(update: bytes, *, strict: bool = True) -> tuple[list[Struct], dict[int, list[tuple[int, int]]]]:
    """Every struct of a v1 update with its origins, parent and text, and its delete set
    (client -> ``[(start, end)]``), for anchors (:mod:`hub_collab.documents.anchors`);
    :class:`MalformedUpdate` if it is not one (``strict=False``: content clients may not
    send is read too, as in a doc's own state). Time and memory are bounded by the
    update's size."""
    r = _Reader(update, strict)
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
