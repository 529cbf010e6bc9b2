"""Anchors: Yjs relative positions in a cell's source, read with bounds and resolved by
the service's own YATA ordering (hub_collab.documents.anchors), without a service.

The ordering is held to pycrdt's (the same text, for random concurrent edits by three
clients with non-ASCII text, deletions and map writes beside the text); positions made
here resolve back to where they were made; hostile bytes are refused, never a panic.
The agreement with yjs itself is in tests/test_interop.py.
"""

from __future__ import annotations

import base64
import random

import pytest
from pycrdt import Doc, Map, Text

from hub_collab.documents.anchors import (
    InvalidPosition,
    MalformedSource,
    Position,
    SourceText,
    b64decode_position,
    decode_position,
    encode_position,
)

ALPHABET = "abcé🎉日 \n"


def edit_randomly(rng: random.Random, docs: list[Doc], steps: int) -> None:
    for _ in range(steps):
        doc = rng.choice(docs)
        text = doc.get("source", type=Text)
        current = str(text)
        if current and rng.random() < 0.3:
            i = rng.randint(0, len(current) - 1)
            j = rng.randint(i + 1, min(len(current), i + 4))
            del text[len(current[:i].encode()) : len(current[:j].encode())]  # pycrdt counts UTF-8 bytes
        else:
            i = rng.randint(0, len(current))
            text.insert(len(current[:i].encode()), "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 5))))
        if rng.random() < 0.2:
            doc.get("metadata", type=Map)["k"] = Map({"nested": rng.random()})
        if rng.random() < 0.4:
            a, b = rng.sample(docs, 2)
            b.apply_update(a.get_update(b.get_state()))
    for a in docs:
        for b in docs:
            b.apply_update(a.get_update(b.get_state()))


def utf16(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


@pytest.mark.parametrize("seed", range(4))
def test_the_order_is_pycrdts_and_positions_resolve_where_they_were_made(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(60):
        docs = [Doc(client_id=rng.randint(1, 2**50)) for _ in range(3)]
        edit_randomly(rng, docs, rng.randint(1, 30))
        source = SourceText(docs[0].get_update())
        assert source.text == str(docs[0].get("source", type=Text))
        assert source.length == utf16(source.text)
        for i in range(source.length + 1):
            for assoc in (0, -1):
                position = source.position_at(i, assoc)
                assert source.index(position) == i
                assert source.index(decode_position(encode_position(position))) == i


def test_a_range_follows_concurrent_edits() -> None:
    alice, bob = Doc(client_id=1), Doc(client_id=2)
    alice.get("source", type=Text).insert(0, "total = price * quantity")
    bob.apply_update(alice.get_update())
    source = SourceText(alice.get_update())
    start, end = source.position_at(16, 0), source.position_at(24, -1)  # "quantity"
    bob_text = bob.get("source", type=Text)
    bob_text.insert(0, "# ünïcode 🎉\n")  # before the range
    bob_text.insert(len("# ünïcode 🎉\ntotal = price * quant".encode()), "XX")  # inside it
    bob_text.insert(len(str(bob_text).encode()), " + 1")  # after it, at its edge
    alice.apply_update(bob.get_update(alice.get_state()))
    now = SourceText(alice.get_update())
    i, j = now.index(start), now.index(end)
    assert i is not None and j is not None and now.slice(i, j) == "quantXXity"
    text = alice.get("source", type=Text)
    del text[0 : len(str(text).encode())]  # everything goes: the range collapses where it was
    gone = SourceText(alice.get_update())
    assert (gone.index(start), gone.index(end), gone.text) == (0, 0, "")


def test_items_of_other_types_and_unknown_ids_are_not_in_the_text() -> None:
    doc = Doc(client_id=7)
    doc.get("source", type=Text).insert(0, "abc")
    doc.get("metadata", type=Map)["k"] = Map({"x": "y"})  # clocks after the text's
    doc.get("metadata", type=Map)["k"] = "replaced"  # the nested map's items are collected
    source = SourceText(doc.get_update())
    assert [source.has((7, c)) for c in range(8)] == [True, True, True, False, False, False, False, False]
    assert source.index(Position((7, 5), 0)) is None and source.index(Position((99, 0), 0)) is None
    assert source.index(Position(None, 0)) == 3 and source.index(Position(None, -1)) == 0


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\x00\x07",
        b"\x02\x07\x00\x00",  # a nested type's id
        b"\x03",
        b"\x01\x08metadata\x00",  # another root type
        b"\x01\x06sourc",
        b"\x00" + b"\xff" * 10 + b"\x01\x00",  # a client id past 2**53
        b"\x00\x07\x00\x00\x00",  # bytes after the assoc
        b"\x00\x07\x00\xc1",  # an assoc that does not end
        b"\x00" * 40,
    ],
)
def test_hostile_positions_are_refused(data: bytes) -> None:
    with pytest.raises(InvalidPosition):
        decode_position(data)


def test_yjs_encodings_are_read() -> None:
    # as yjs 13 writes them (tests/test_interop.py makes real ones)
    assert decode_position(b"\x00\x07\x03\x00") == Position((7, 3), 0)
    assert decode_position(b"\x00\x07\x03\x41") == Position((7, 3), -1)
    assert decode_position(b"\x00\x07\x03") == Position((7, 3), 0)  # yjs before 13.5: no assoc
    assert decode_position(b"\x01\x06source\x41") == Position(None, -1)
    for value in ("", "!!", "a" * 65, 12, None, base64.b64encode(b"\x02\x01\x01\x00").decode()):
        with pytest.raises(InvalidPosition):
            b64decode_position(value)


def test_a_state_that_is_not_an_update_is_refused() -> None:
    for state in (b"\x05", b"\x01\x01\x01\x00\x28", b"garbage"):
        with pytest.raises(MalformedSource):
            SourceText(state)
