"""The binary codec of wire protocol v1 (lib0 / y-protocols framing)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text

from hub_collab.documents import protocol as p


def test_roundtrip_batched_frame():
    doc = Doc()
    doc.get("source", type=Text).insert(0, "hello")
    frame = p.sync_step1("index", b"\x00") + p.sync_update("cell:abc", doc.get_update()) + p.awareness_message(
        "index", p.encode_awareness([p.AwarenessState(7, 1, {"cell": "abc"})])
    )
    entries = p.decode_frame(frame)
    assert [(e.doc, e.kind, e.sub) for e in entries] == [
        ("index", p.MSG_SYNC, p.SYNC_STEP1),
        ("cell:abc", p.MSG_SYNC, p.SYNC_UPDATE),
        ("index", p.MSG_AWARENESS, -1),
    ]
    remote = Doc()
    remote.apply_update(entries[1].payload)
    assert str(remote.get("source", type=Text)) == "hello"
    [state] = p.decode_awareness(entries[2].payload)
    assert (state.client_id, state.clock, state.state) == (7, 1, {"cell": "abc"})


def test_var_uint_large_values():
    for n in (0, 1, 127, 128, 300, 2**21, 2**35):
        r = p.Reader(p.write_var_uint(n))
        assert r.var_uint() == n
        assert r.at_end()


@pytest.mark.parametrize(
    "frame, why",
    [
        (b"", "empty frame"),
        (b"\x05ind", "truncated payload"),
        (p.encode_var_string("index") + b"\x00", "truncated varUint"),
        (p.encode_var_string("index") + b"\x07\x00", "unknown message type 7"),
        (p.encode_var_string("index") + b"\x00\x05\x00", "unknown sync message type 5"),
        (p.encode_var_string("index") + b"\x00\x02\x10abc", "truncated payload"),
        (p.encode_var_string("") + b"\x00\x00\x00", "invalid doc name"),
        (b"\x02\xff\xfe\x00\x00\x00", "invalid UTF-8"),
        (b"\xff" * 12, "varUint too long"),
        (p.encode_var_string("x" * 200) + b"\x00\x00\x00", "invalid doc name"),
    ],
)
def test_malformed_frames_raise_clear_errors(frame, why):
    with pytest.raises(p.ProtocolError, match=why):
        p.decode_frame(frame)


def test_a_truncated_second_entry_rejects_the_whole_frame():
    good = p.sync_step1("index", b"\x00")
    with pytest.raises(p.ProtocolError):
        p.decode_frame(good + good[:-2])


@pytest.mark.parametrize(
    "payload, why",
    [
        (p.write_var_uint(100), "at most"),
        (b"\x01\x01\x01" + p.encode_var_string("{not json"), "not JSON"),
        (b"\x01\x01\x01" + p.encode_var_string("[1,2]"), "object or null"),
        (b"\x01\x01\x01" + p.encode_var_string("null") + b"x", "trailing bytes"),
    ],
)
def test_malformed_awareness(payload, why):
    with pytest.raises(p.ProtocolError, match=why):
        p.decode_awareness(payload)


def test_awareness_null_state_means_left():
    [st] = p.decode_awareness(p.encode_awareness([p.AwarenessState(3, 9, None)]))
    assert st.state is None and st.clock == 9


def _decode_slowly(data: bytes) -> list[p.Entry]:
    """The reference: every entry through the general decoder."""
    if not data:
        raise p.ProtocolError("empty frame")
    reader = p.Reader(data)
    entries = []
    while not reader.at_end():
        entries.append(p._decode_entry(reader))
    return entries


def _outcome(fn, data):
    try:
        return fn(data)
    except p.ProtocolError:
        return "error"


VALID = {(p.MSG_SYNC, p.SYNC_STEP1), (p.MSG_SYNC, p.SYNC_STEP2), (p.MSG_SYNC, p.SYNC_UPDATE), (p.MSG_AWARENESS, -1)}


entry_st = st.tuples(
    st.one_of(st.sampled_from(["index", "cell:abc", "out:abc", "é" * 40, "x" * 80, "x" * 81]), st.text(max_size=90)),
    st.sampled_from(sorted(VALID) + [(p.MSG_SYNC, 3), (p.MSG_SYNC, 200), (7, 0), (300, 0)]),
    st.one_of(st.binary(max_size=4), st.binary(min_size=120, max_size=300)),
)


def _encode(doc: str, kind_sub: tuple[int, int], payload: bytes) -> bytes:
    kind, sub = kind_sub
    head = p.encode_var_string(doc) + p.write_var_uint(kind)
    return head + (p.write_var_uint(sub) if kind == p.MSG_SYNC else b"") + p.encode_var_bytes(payload)


@given(st.lists(entry_st, max_size=6), st.integers(0, 2000), st.binary(max_size=3))
@settings(max_examples=400)
def test_the_inline_fast_path_decodes_exactly_like_the_general_decoder(entries, cut, junk):
    frame = b"".join(_encode(*e) for e in entries)
    for data in (frame, frame[:cut], frame + junk, junk + frame):
        assert _outcome(p.decode_frame, data) == _outcome(_decode_slowly, data)
    good = [e for e in entries if 0 < len(e[0]) <= p.MAX_DOC_NAME and e[1] in VALID]
    if good:
        frame = b"".join(_encode(*e) for e in good)
        assert [tuple(x) for x in p.decode_frame(frame)] == [(d, k, s, pl) for d, (k, s), pl in good]


def test_sync_answer_is_step_2_then_step_1():
    assert p.sync_answer("cell:a", b"\x00\x00", b"\x00") == p.sync_step2("cell:a", b"\x00\x00") + p.sync_step1("cell:a", b"\x00")
    assert p.sync_answer("cell:a", b"\x01" * 200, None) == p.sync_step2("cell:a", b"\x01" * 200)


@given(st.binary(max_size=64))
def test_random_bytes_decode_or_fail_like_the_general_decoder(data):
    assert _outcome(p.decode_frame, data) == _outcome(_decode_slowly, data)
