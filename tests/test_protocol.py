"""The binary codec of wire protocol v1 (lib0 / y-protocols framing)."""

import pytest
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
