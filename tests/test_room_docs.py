"""RoomDocs: stored docs answer sync like built ones, and are built only when used."""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Doc, Map, Text

from hub_collab.documents.docs import EMPTY_UPDATE, RoomDocs, merged


def history() -> tuple[list[bytes], Doc[Any]]:
    """Three updates from two writers, and the doc they make."""
    updates: list[bytes] = []
    a: Doc[Any] = Doc(client_id=11)
    sub = a.observe(lambda e: updates.append(e.update))
    src = a.get("source", type=Text)
    src += "héllo"
    b: Doc[Any] = Doc(client_id=22)
    b.observe(lambda e: updates.append(e.update))
    b.apply_update(a.get_update())
    b.get("source", type=Text).insert(0, ">> ")
    a.unobserve(sub)
    a.apply_update(b.get_update())
    with a.transaction():
        a.get("metadata", type=Map)["state"] = "running"
    updates.append(a.get_update(b.get_state()))
    return updates, a


def make(builds: list[str]) -> RoomDocs:
    def build(name: str, state: bytes) -> Doc[Any]:
        builds.append(name)
        doc: Doc[Any] = Doc()
        doc.apply_update(state)
        return doc

    return RoomDocs(build)


def text_of(update: bytes) -> str:
    doc: Doc[Any] = Doc()
    doc.apply_update(update)
    return str(doc.get("source", type=Text))


def test_a_stored_doc_answers_every_state_vector_like_the_built_doc() -> None:
    updates, reference = history()
    builds: list[str] = []
    docs = make(builds)
    docs.add_stored({"cell:x": merged(updates)})
    # peers that hold: nothing, the first update, everything, a foreign client's edit
    first: Doc[Any] = Doc()
    first.apply_update(updates[0])
    foreign: Doc[Any] = Doc(client_id=99)
    foreign.get("source", type=Text).insert(0, "zz")
    for peer_history in ([], [updates[0]], [reference.get_update()], [foreign.get_update()]):
        peer: Doc[Any] = Doc()
        for update in peer_history:
            peer.apply_update(update)
        via_stored: Doc[Any] = Doc()
        via_built: Doc[Any] = Doc()
        for doc, diff in ((via_stored, docs.diff("cell:x", peer.get_state())), (via_built, reference.get_update(peer.get_state()))):
            for update in peer_history:
                doc.apply_update(update)
            doc.apply_update(diff)
        assert via_stored.get_state() == via_built.get_state()
        assert str(via_stored.get("source", type=Text)) == str(via_built.get("source", type=Text))
    assert text_of(docs.state("cell:x")) == ">> héllo"
    assert docs.state_vector("cell:x") == reference.get_state()
    assert builds == [], "answering sync step 1 must not build the doc"


def test_invalid_state_vectors_are_value_errors_stored_or_built() -> None:
    updates, _ = history()
    docs = make([])
    docs.add_stored({"cell:x": merged(updates)})
    for bad in (b"", b"\xff", b"\x01", b"\x05\x01\x02"):
        with pytest.raises(ValueError):
            docs.diff("cell:x", bad)
    docs["cell:x"]  # built now
    for bad in (b"", b"\xff", b"\x01"):
        with pytest.raises(ValueError):
            docs.diff("cell:x", bad)


def test_first_use_builds_once_and_changes_invalidate_the_cached_encoding() -> None:
    updates, _ = history()
    builds: list[str] = []
    docs = make(builds)
    docs.add_stored({"cell:x": merged(updates)})
    docs.add_stored({"out:x": EMPTY_UPDATE})
    assert set(docs) == {"cell:x", "out:x"} and len(docs) == 2
    assert "cell:x" in docs and "cell:y" not in docs
    assert builds == [], "iterating and membership must not build"
    doc = docs["cell:x"]
    assert docs["cell:x"] is doc and builds == ["cell:x"]
    assert docs.is_built("cell:x") and not docs.is_built("out:x")
    before = docs.state("cell:x")
    doc.get("source", type=Text).insert(0, "!")
    # without changed() the cache is (deliberately) stale: the room calls it from its observer
    assert docs.state("cell:x") == before
    docs.changed("cell:x")
    assert text_of(docs.state("cell:x")) == "!>> héllo"
    assert docs.state_vector("cell:x") == doc.get_state()
    assert docs.discard("cell:x") is doc and "cell:x" not in docs
    assert docs.discard("out:x") is None and len(docs) == 0
    with pytest.raises(KeyError):
        docs["out:x"]


def test_may_hold_string_looks_for_map_values_in_stored_bytes_only() -> None:
    updates, _ = history()  # metadata["state"] = "running"
    docs = make([])
    docs.add_stored({"out:x": merged(updates)})
    idle: Doc[Any] = Doc()
    with idle.transaction():
        state = idle.get("state", type=Map)
        state["execution_state"] = "idle"
        state["queued_at"] = None  # a key that contains a needle is not a value
    idle.get("source", type=Text).insert(0, "queued running")  # nor is text
    docs.add_stored({"out:y": idle.get_update()})
    assert docs.may_hold_string("out:x", ["queued", "running"])
    assert not docs.may_hold_string("out:y", ["queued", "running"])
    assert not docs.may_hold_string("out:x", ["queued"])
    assert docs.may_hold_string("out:y", ["idle"])
    docs["out:y"]
    assert docs.may_hold_string("out:y", ["queued"]), "a built doc is not looked at: it may hold anything"


def test_merged_of_nothing_one_and_many() -> None:
    updates, reference = history()
    assert merged([]) == EMPTY_UPDATE
    assert merged(updates[:1]) == updates[0]
    doc: Doc[Any] = Doc()
    doc.apply_update(merged(updates))
    assert doc.get_state() == reference.get_state()
    assert str(doc.get("source", type=Text)) == ">> héllo"
