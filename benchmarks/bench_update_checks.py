"""Benchmark: what a writer's update costs to check before its doc sees it (issue 13).

Every check but one costs the update's size (``hub_collab/documents/updates.py``). The
order of an item's two origins (``UpdateInfo.crossing``) is read from yrs' sticky
indexes, a walk of the doc's items in Rust: its cost grows with the doc's items. This
measures, on cell docs of growing size and fragmentation (text typed one character at
a time at random places by three clients, so every character is an item of its own):

* **keystroke at the end**: an item with no right origin (the common case; no walk);
* **keystroke inside**: an item between two characters (two walks per origin);
* **offline batch**: one client's update of 50 scattered insertions (what a client
  sends after a reconnect); and **+other**, an offline client's update of 22
  insertions, one of them between another client's item typed meanwhile (which the
  server holds) and its own first one: conflict resolution orders those two, so the
  check makes a copy of the doc that holds the update;
* **100 inserts**: 100 updates of one item each between two neighbouring characters
  (a frame of about 3 KB; the doc's structs link such neighbours: no walk);
* **100 unlinked**: 100 one-item updates between two characters in order with one
  character between them (what a writer can send to force four walks each; the room
  bounds a user's walks to ``WALK_BYTES_PER_SECOND`` bytes of doc, measured here
  without that bound);
* **copy** and **walk**: that copy of the doc alone, and one walk to the doc's last
  character; the room charges a copy as ``COPY_WALKS`` walks, and their ratio says
  whether that is right;
* **order**: the doc's text ordered with its deleted characters, in Python
  (``SourceText``: what orders two deleted characters at one place, which positions
  cannot); the room charges it as ``ORDER_WALKS`` walks.

Printed: microseconds per check (median of repeats), the doc's items and bytes.

    .venv/bin/python benchmarks/bench_update_checks.py [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import functools
import random
import statistics
import time
from typing import Any

from pycrdt import Assoc, Doc, StickyIndex, Text

from hub_collab.documents import protocol as p
from hub_collab.documents.anchors import SourceText, deleted_order
from hub_collab.documents.room import _offset
from hub_collab.documents.updates import (
    COPY_WALKS,
    ORDER_WALKS,
    DocIndex,
    read_state_vector,
    read_update,
)


def fragmented(chars: int, seed: int) -> Doc[Any]:
    """A doc whose text was typed a character at a time at random places by three clients."""
    rng = random.Random(seed)
    writers = [Doc(client_id=c) for c in (11, 22, 33)]
    server: Doc[Any] = Doc(client_id=1)
    for i in range(chars):
        w = writers[i % 3]
        before = w.get_state()
        text = w.get("source", type=Text)
        text.insert(rng.randint(0, len(text)), "x")
        update = w.get_update(before)
        server.apply_update(update)
        for other in writers:
            if other is not w:
                other.apply_update(update)
    return server


def edit(server: Doc[Any], client: int, places: list[int | None]) -> bytes:
    """One update of ``client``: a character inserted at each place (None: the end)."""
    copy: Doc[Any] = Doc(client_id=client)
    copy.apply_update(server.get_update())
    before = copy.get_state()
    text = copy.get("source", type=Text)
    for at in places:
        text.insert(len(text) if at is None else at, "y")
    return copy.get_update(before)


def check_seconds(server: Doc[Any], index: DocIndex, update: bytes, repeats: int, copies: list[int] | None = None) -> float:
    """Seconds to check ``update`` against ``server`` (``copies``: counts the copies made)."""
    info = read_update(update)
    state = read_state_vector(server.get_state())
    held = server.get_update()

    def integrated() -> Any:
        if copies is not None:
            copies.append(1)
        scratch: Doc[Any] = Doc()
        scratch.apply_update(held)
        scratch.apply_update(update[: info.structs_end] + b"\x00")
        return functools.partial(_offset, scratch), functools.partial(deleted_order, scratch.get_update)

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        refused = info.crossing(state, index, functools.partial(_offset, server), integrated)
        times.append(time.perf_counter() - t0)
        assert refused is None, refused
    return statistics.median(times)


def frame_seconds(server: Doc[Any], index: DocIndex, rng: random.Random, n: int) -> float:
    """``n`` one-item updates between two characters, each checked as the room does."""
    state = read_state_vector(server.get_state())
    length = len(server.get("source", type=Text))
    infos = [read_update(edit(server, 900 + i, [rng.randrange(1, length)])) for i in range(n)]
    t0 = time.perf_counter()
    for info in infos:
        assert info.crossing(state, index, functools.partial(_offset, server)) is None
    return time.perf_counter() - t0


def copy_and_walk_seconds(server: Doc[Any], update: bytes, repeats: int) -> tuple[float, float]:
    """The copy ``crossing`` asks for (as the room's ``_integrated`` makes it), and one walk
    to the last character of the doc."""
    info = read_update(update)
    copies = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        scratch: Doc[Any] = Doc()
        scratch.apply_update(server.get_update())
        scratch.apply_update(update[: info.structs_end] + b"\x00")
        copies.append(time.perf_counter() - t0)
    text = server.get("source", type=Text)
    last = StickyIndex.new(text, len(text) - 1, Assoc.AFTER).to_json()["item"]
    unit = (last["client"], last["clock"])
    walks = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _offset(server, unit, False)
        walks.append(time.perf_counter() - t0)
    return statistics.median(copies), statistics.median(walks)


def order_seconds(server: Doc[Any], repeats: int) -> float:
    """The doc's text ordered with its deleted characters (``SourceText``, from its state)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        SourceText(server.get_update())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def unlinked_seconds(server: Doc[Any], index: DocIndex, rng: random.Random, n: int) -> float:
    """``n`` one-item updates between two characters in order that no struct links (a
    character lies between them): each needs four walks, the most a writer can force."""
    state = read_state_vector(server.get_state())
    text = server.get("source", type=Text)
    ids = []
    for _ in range(n):
        at = rng.randrange(0, len(text) - 2)
        left = StickyIndex.new(text, at, Assoc.AFTER).to_json()["item"]
        right = StickyIndex.new(text, at + 2, Assoc.AFTER).to_json()["item"]
        ids.append(((left["client"], left["clock"]), (right["client"], right["clock"])))
    infos = []
    for i, (o, r) in enumerate(ids):
        head = b"\xc4" + b"".join(p.write_var_uint(v) for v in (*o, *r))
        infos.append(read_update(b"\x01\x01" + p.write_var_uint(900 + i) + b"\x00" + head + p.encode_var_string("z") + b"\x00"))
    t0 = time.perf_counter()
    for info in infos:
        assert info.crossing(state, index, functools.partial(_offset, server)) is None
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(
        f"{'chars':>7} {'bytes':>8} | {'end us':>7} {'inside us':>9} {'batch50 us':>10} {'+other us':>9} | "
        f"{'100 inserts ms':>14} {'100 unlinked ms':>15} | {'copy ms':>7} {'walk ms':>7} {'copy/walk':>9} | "
        f"{'order ms':>8} {'order/walk':>10}"
    )
    for chars in (int(s) for s in args.sizes.split(",")):
        rng = random.Random(args.seed)
        server = fragmented(chars, args.seed)
        index = DocIndex.of(server.get_update())
        length = len(server.get("source", type=Text))
        repeats = 200 if chars <= 10_000 else 20
        end = check_seconds(server, index, edit(server, 44, [None]), repeats)
        inside = check_seconds(server, index, edit(server, 44, [rng.randrange(1, length)]), repeats)
        batch = check_seconds(server, index, edit(server, 44, sorted(rng.sample(range(1, length), 50), reverse=True)), max(3, repeats // 10))
        # an offline client typed x between the first two characters while client 55
        # typed c there; once back, it types z between c and x and sends all of it. The
        # server holds c: x and c are ordered by conflict resolution, z is checked in a
        # copy of the doc that holds the update
        other = edit(server, 55, [1])
        held: Doc[Any] = Doc()
        held.apply_update(server.get_update())
        held.apply_update(other)
        mine: Doc[Any] = Doc(client_id=44)
        mine.apply_update(server.get_update())
        text = mine.get("source", type=Text)
        text.insert(1, "x")
        mine.apply_update(other)
        text.insert(2, "z")  # between c and x, whichever is first
        for at in sorted(rng.sample(range(3, len(text)), 20), reverse=True):
            text.insert(at, "y")
        mixed = mine.get_update(held.get_state())
        assert set(read_update(mixed).ranges) == {44}
        copies: list[int] = []
        plus = check_seconds(held, DocIndex.of(held.get_update()), mixed, max(3, repeats // 10), copies)
        assert copies, "the check made no copy"
        frame = frame_seconds(server, index, rng, 100)
        unlinked = unlinked_seconds(server, index, rng, 100)
        copy, walk = copy_and_walk_seconds(held, mixed, max(3, repeats // 10))
        order = order_seconds(server, 3)
        print(
            f"{chars:>7} {len(server.get_update()):>8} | {end * 1e6:>7.1f} {inside * 1e6:>9.1f} {batch * 1e6:>10.1f} "
            f"{plus * 1e6:>9.1f} | {frame * 1e3:>14.1f} {unlinked * 1e3:>15.1f} | {copy * 1e3:>7.2f} {walk * 1e3:>7.2f} "
            f"{copy / walk:>9.1f} | {order * 1e3:>8.1f} {order / walk:>10.0f}"
        )
    print(f"the room charges a copy as {COPY_WALKS} walks, ordering a text with its deleted characters as {ORDER_WALKS}")


if __name__ == "__main__":
    main()
