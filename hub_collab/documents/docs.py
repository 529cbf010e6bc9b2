"""The docs of one room by name: :class:`RoomDocs`.

A notebook of 1,000 cells has 2,001 docs, and a client that opens it subscribes
to all of them. Building a pycrdt ``Doc`` costs tens of microseconds (more in a
process with a large heap), so building every doc when a notebook is loaded
used to be most of a cold join. A doc loaded from the store is therefore kept
as its encoded state (one update, the merge of its checkpoint and log rows)
until something needs it as a ``Doc``: a write, a kernel output, an export.
Until then sync step 1 is answered from those bytes (``pycrdt.get_update`` and
``pycrdt.get_state`` work on an encoded update without building a doc).

Built docs keep the encoding of their whole state once it was asked for, until
their next change (the room calls :meth:`RoomDocs.changed` from its observer),
so later joins do not encode unchanged docs again. Their state vector and deletions are
kept read as well (:meth:`RoomDocs.clocks`, :meth:`RoomDocs.deletions`): a client's
update is checked against them in time bounded by the update's size, however large
the doc and however many updates a frame holds. A doc written to has a
:class:`~.updates.DocIndex` too (where its surrogate pairs and types are): read from its
whole state once, then kept up to date from each change (:meth:`RoomDocs.changed`
with the change's update), never read again in whole. Reading it costs about a
millisecond per KB of a doc typed a character at a time, so the room reads a large
doc's index on a worker thread (:meth:`RoomDocs.build_index`); the changes the doc takes
meanwhile are added to it before it is kept.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor
from typing import Any

from pycrdt import Doc, get_state, get_update, merge_updates

from .protocol import write_var_uint
from .updates import DeleteSet, DocIndex, MalformedUpdate, read_state_vector, read_update

#: the update that changes nothing (no structs, empty delete set)
EMPTY_UPDATE = b"\x00\x00"
#: the state vector of an empty doc
EMPTY_STATE = b"\x00"


@functools.lru_cache(maxsize=64)
def any_string(value: str) -> bytes:
    """lib0's encoding of a string held as a Map or Array value."""
    raw = value.encode("utf-8")
    return b"\x77" + write_var_uint(len(raw)) + raw


def yrs_refused(exc: BaseException) -> bool:
    """True if ``exc`` is yrs failing on what it was given: an exception, or a Rust panic
    (pyo3 raises it as ``PanicException``, a BaseException, which ``except Exception``
    does not catch); False for KeyboardInterrupt, SystemExit, cancellation."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


def _learned(index: DocIndex, update: bytes) -> bool:
    """Tell ``index`` the change ``update`` (as yrs encoded it); False if it cannot be read."""
    try:
        index.add(read_update(update, strict=False))
    except MalformedUpdate:
        return False
    return True


def merged(updates: Iterable[bytes]) -> bytes:
    """One update equivalent to applying ``updates`` in order."""
    updates = list(updates)
    if not updates:
        return EMPTY_UPDATE
    if len(updates) == 1:
        return updates[0]
    return merge_updates(*updates)


class RoomDocs(Mapping[str, Doc[Any]]):
    """Docs by name; ``docs[name]`` builds a stored doc on first use.

    ``build(name, state)`` makes the ``Doc`` of a stored one (the room applies
    ``state`` and starts observing it); it must not touch this mapping.
    """

    def __init__(self, build: Callable[[str, bytes], Doc[Any]]) -> None:
        self._build = build
        self._built: dict[str, Doc[Any]] = {}
        self._stored: dict[str, bytes] = {}
        # whole-state encodings and state vectors, valid until the doc's next change
        self._encoded: dict[str, bytes] = {}
        self._vectors: dict[str, bytes] = {}
        self._deleted: dict[str, bytes] = {}
        # the same, read: a client's update is checked against them once per entry
        self._clocks: dict[str, dict[int, int]] = {}
        self._deletions: dict[str, DeleteSet] = {}
        # kept across changes (each change is added to it)
        self._indexes: dict[str, DocIndex] = {}
        # indexes being read on a worker thread: the changes made meanwhile (None: one
        # whose update is unknown, or the doc was replaced or dropped; nothing is kept)
        self._index_changes: dict[str, list[bytes] | None] = {}
        self._index_reads: dict[str, asyncio.Future[None]] = {}

    # -- Mapping ----------------------------------------------------------------------------

    def __getitem__(self, name: str) -> Doc[Any]:
        doc = self._built.get(name)
        if doc is not None:
            return doc
        state = self._stored[name]  # KeyError: no such doc
        doc = self._build(name, state)
        del self._stored[name]
        self._built[name] = doc
        self._encoded[name] = state
        return doc

    def __contains__(self, name: object) -> bool:
        return name in self._built or name in self._stored

    def __iter__(self) -> Iterator[str]:
        return iter([*self._built, *self._stored])

    def __len__(self) -> int:
        return len(self._built) + len(self._stored)

    # -- adding and dropping ----------------------------------------------------------------

    def add(self, name: str, doc: Doc[Any]) -> None:
        """Hold a built doc."""
        self.discard(name)
        self._built[name] = doc

    def add_stored(self, states: Mapping[str, bytes]) -> None:
        """Hold docs as their encoded states (name → one update), built when first used."""
        for name in states.keys() & (self._built.keys() | self._encoded.keys() | self._vectors.keys() | self._deleted.keys() | self._clocks.keys() | self._deletions.keys() | self._indexes.keys() | self._index_changes.keys()):
            self.discard(name)  # replaced: the Doc and the cached encodings go
        self._stored.update(states)

    def discard(self, name: str) -> Doc[Any] | None:
        """Forget ``name``; return its Doc if it was built."""
        self._stored.pop(name, None)
        self.changed(name)
        return self._built.pop(name, None)

    def changed(self, name: str, update: bytes | None = None) -> None:
        """``name`` changed (by ``update``, as yrs encoded the change; None: unknown):
        its cached encodings are stale, its index learns the change."""
        self._encoded.pop(name, None)
        self._vectors.pop(name, None)
        self._deleted.pop(name, None)
        self._clocks.pop(name, None)
        self._deletions.pop(name, None)
        if name in self._index_changes:
            pending = self._index_changes[name]
            if pending is not None and update is not None:
                pending.append(update)
            else:
                self._index_changes[name] = None
        index = self._indexes.get(name)
        if index is None:
            return
        if update is None or not _learned(index, update):
            del self._indexes[name]  # read again from the whole state when next asked

    def is_built(self, name: str) -> bool:
        return name in self._built

    # -- reading without building -----------------------------------------------------------

    def read(self, name: str) -> Doc[Any]:
        """``name`` to read once: the held Doc if built, else a throwaway Doc of its stored
        state (not kept, not observed; do not write to it)."""
        doc = self._built.get(name)
        if doc is not None:
            return doc
        doc = Doc()
        doc.apply_update(self._stored[name])
        return doc

    def state(self, name: str) -> bytes:
        """The whole state of ``name`` as one update."""
        stored = self._stored.get(name)
        if stored is not None:
            return stored
        encoded = self._encoded.get(name)
        if encoded is None:
            encoded = self._encoded[name] = self[name].get_update()
        return encoded

    def state_vector(self, name: str) -> bytes:
        vector = self._vectors.get(name)
        if vector is None:
            stored = self._stored.get(name)
            vector = get_state(stored) if stored is not None else self[name].get_state()
            self._vectors[name] = vector
        return vector

    def deleted(self, name: str) -> bytes:
        """The delete set of ``name``, as an update that brings no struct (cached until
        the doc changes: a reader repeating it costs the doc's size once per change)."""
        found = self._deleted.get(name)
        if found is None:
            found = self._deleted[name] = self.diff(name, self.state_vector(name))
        return found

    def clocks(self, name: str) -> dict[int, int]:
        """The state vector of ``name`` read (client → next clock; cached until the doc
        changes: do not modify it)."""
        found = self._clocks.get(name)
        if found is None:
            found = self._clocks[name] = read_state_vector(self.state_vector(name))
        return found

    def deletions(self, name: str) -> DeleteSet:
        """The deletions of ``name``, read once per change of the doc."""
        found = self._deletions.get(name)
        if found is None:
            found = self._deletions[name] = DeleteSet(read_update(self.deleted(name)).deletes)
        return found

    def index(self, name: str) -> DocIndex:
        """Where the surrogate pairs and types of ``name`` are (read from its whole state
        once, then kept up to date by :meth:`changed`); MalformedUpdate if its state
        cannot be read."""
        found = self._indexes.get(name)
        if found is None:
            found = self._indexes[name] = DocIndex.of(self.state(name))
        return found

    def has_index(self, name: str) -> bool:
        return name in self._indexes

    async def build_index(self, name: str, executor: Executor) -> None:
        """Read the index of ``name`` on ``executor`` (the event loop goes on meanwhile)
        and keep it, with the changes the doc took meanwhile added; nothing is kept if
        the doc was replaced or dropped meanwhile, or could not be read (then
        :meth:`index` reads it again, or raises, when asked). Callers asking while it is
        read wait for the same read."""
        running = self._index_reads.get(name)
        if running is not None:
            await asyncio.shield(running)
            return
        if name in self._indexes or name not in self:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._index_reads[name] = done
        self._index_changes[name] = []
        try:
            try:
                index = await asyncio.get_running_loop().run_in_executor(executor, DocIndex.of, self.state(name))
            except MalformedUpdate:
                return
            changes = self._index_changes.get(name)
            if changes is None or name in self._indexes or not all(_learned(index, change) for change in changes):
                return
            self._indexes[name] = index
        finally:
            del self._index_changes[name]
            del self._index_reads[name]
            done.set_result(None)

    def diff(self, name: str, state_vector: bytes) -> bytes:
        """What a peer at ``state_vector`` lacks of ``name`` (ValueError-like errors from
        pycrdt if the state vector does not decode)."""
        if state_vector == EMPTY_STATE:
            return self.state(name)
        stored = self._stored.get(name)
        if stored is not None:
            return get_update(stored, state_vector)
        return self[name].get_update(state_vector)

    def may_hold_string(self, name: str, values: Iterable[str]) -> bool:
        """False only if no Map or Array value of the doc ``name`` is one of ``values``.

        Update encoding v1 writes such a value as lib0 does (0x77, the length, the
        UTF-8 bytes), so stored bytes without any of these encodings cannot hold
        it. Built docs are not looked at (True).
        """
        stored = self._stored.get(name)
        if stored is None:
            return True
        return any(any_string(value) in stored for value in values)
