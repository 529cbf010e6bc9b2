"""Pure permission logic: modes, ACL parsing, POSIX.1e evaluation, the action table.

``evaluate`` is checked against ``reference_access`` below, a separate
transcription of the POSIX.1e access check (IEEE 1003.1e draft 17, 23.1.5):
it builds the full ACL with its base entries and answers one requested
permission at a time, the way the standard states the algorithm.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub_collab.permissions import (
    ACTIONS,
    Access,
    AclEntry,
    Identity,
    PermissionSyntaxError,
    Perms,
    check_action,
    compute_access,
    evaluate,
    format_bits,
    format_mode,
    parse_acl,
    parse_mode,
)

USERS = ["alice", "bob", "carol", "dave"]
GROUPS = ["ta", "students", "staff"]


# -- the reference ------------------------------------------------------------


def reference_access(perms: Perms, user: str, groups: frozenset[str], requested: int) -> bool:
    """POSIX.1e: may ``user`` (in ``groups``) have every bit of ``requested``?"""
    entries: list[tuple[str, str | None, int]] = [
        ("USER_OBJ", perms.owner, (perms.mode >> 6) & 7),
        ("GROUP_OBJ", perms.group or None, (perms.mode >> 3) & 7),
        ("OTHER", None, perms.mode & 7),
    ]
    for e in perms.acl:
        tag = {"user": "USER", "group": "GROUP", "mask": "MASK"}[e.kind]
        entries.append((tag, e.name or None, e.perms))
    masks = [p for tag, _, p in entries if tag == "MASK"]

    def masked(p: int) -> int:
        return p & masks[0] if masks else p

    # 1. the owner
    for tag, q, p in entries:
        if tag == "USER_OBJ" and q == user:
            return p & requested == requested
    # 2. a named user
    for tag, q, p in entries:
        if tag == "USER" and q == user:
            return masked(p) & requested == requested
    # 3. the group class: granted if one matching entry grants (after the mask),
    #    denied if entries matched but none did
    matched = [
        p
        for tag, q, p in entries
        if tag in ("GROUP_OBJ", "GROUP") and q is not None and q in groups
    ]
    if matched:
        return any(masked(p) & requested == requested for p in matched)
    # 4. other
    for tag, _, p in entries:
        if tag == "OTHER":
            return p & requested == requested
    return False


def reference_bits(perms: Perms, user: str, groups: frozenset[str]) -> int:
    return sum(b for b in (4, 2, 1) if reference_access(perms, user, groups, b))


acl_entry = st.one_of(
    st.builds(AclEntry, st.just("user"), st.sampled_from(USERS), st.integers(0, 7)),
    st.builds(AclEntry, st.just("group"), st.sampled_from(GROUPS), st.integers(0, 7)),
    st.builds(AclEntry, st.just("mask"), st.just(""), st.integers(0, 7)),
)


@st.composite
def perms_st(draw: st.DrawFn) -> Perms:
    entries = draw(st.lists(acl_entry, max_size=6, unique_by=lambda e: (e.kind, e.name)))
    return Perms(
        owner=draw(st.sampled_from(USERS)),
        group=draw(st.sampled_from(["", *GROUPS])),
        mode=draw(st.integers(0, 0o1777)),
        acl=tuple(entries),
    )


groups_st = st.frozensets(st.sampled_from([*GROUPS, "other-group"]), max_size=3)


@settings(max_examples=500, deadline=None)
@given(perms_st(), st.sampled_from([*USERS, "eve"]), groups_st)
def test_evaluate_matches_reference(perms: Perms, user: str, groups: frozenset[str]) -> None:
    assert evaluate(perms, user, groups) == reference_bits(perms, user, groups)


def test_evaluate_examples() -> None:
    p = Perms("alice", "ta", 0o750, parse_acl(["user:bob:rwx", "group:students:r--", "mask::r-x"]))
    assert evaluate(p, "alice", frozenset()) == 7
    assert evaluate(p, "bob", frozenset({"ta"})) == 5  # named user, masked; group not consulted
    assert evaluate(p, "carol", frozenset({"ta"})) == 5
    assert evaluate(p, "carol", frozenset({"ta", "students"})) == 5  # union
    assert evaluate(p, "carol", frozenset({"students"})) == 4
    assert evaluate(p, "carol", frozenset()) == 0
    # matched but not granted is a denial: other would have given r
    q = Perms("alice", "ta", 0o704)
    assert evaluate(q, "carol", frozenset({"ta"})) == 0
    assert evaluate(q, "carol", frozenset()) == 4
    # no mask: no masking
    r = Perms("alice", "", 0o700, parse_acl(["g:staff:rwx"]))
    assert evaluate(r, "dave", frozenset({"staff"})) == 7
    # the owner's own entry wins over a named entry for the owner
    s = Perms("alice", "", 0o000, parse_acl(["u:alice:rwx"]))
    assert evaluate(s, "alice", frozenset()) == 0


# -- modes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "current", "expected"),
    [
        ("1775", 0, 0o1775),
        ("0640", 0o777, 0o640),
        ("640", 0o1777, 0o640),
        ("755", 0, 0o755),
        ("0", 0o777, 0),
        ("7", 0, 0o007),
        ("u+w,g-w,o=", 0o775, 0o750),
        ("a+rx", 0, 0o555),
        ("+rx", 0, 0o555),
        ("+t", 0o775, 0o1775),
        ("o+t", 0o775, 0o1775),
        ("-t", 0o1775, 0o775),
        ("u+t", 0o775, 0o775),  # t only means something for o/a, as in chmod(1)
        ("u=rwx,go=rx", 0o1000, 0o755),  # = on o clears sticky, as in chmod(1)
        ("u=rwx,g=rx", 0o1000, 0o1750),
        ("o=rxt", 0, 0o1005),
        ("g=u", 0o640, 0o660),
        ("go=u", 0o700, 0o777),
        ("u-x+w", 0o500, 0o600),
        ("ug+rw-x", 0o711, 0o661),
        ("=", 0o1777, 0),
        ("a=", 0o777, 0),
        ("a+X", 0o644, 0o644),
        ("a+X", 0o744, 0o755),
        ("u=", 0o755, 0o055),
        (" 0644 ", 0, 0o644),
        ("uu+r", 0, 0o400),
    ],
)
def test_parse_mode(text: str, current: int, expected: int) -> None:
    assert parse_mode(text, current) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("u+q", "invalid mode 'u+q': unknown permission 'q'"),
        ("", "empty"),
        ("   ", "empty"),
        ("8", "octal"),
        ("01775", "octal"),
        ("4755", "setuid/setgid"),
        ("2775", "setuid/setgid"),
        ("u+s", "setuid/setgid"),
        ("u", "missing operator"),
        ("z+r", "'z'"),
        ("u+w,", "empty clause"),
        (",u+w", "empty clause"),
        ("u+gw", "cannot be combined"),
        ("u r", "' '"),
    ],
)
def test_parse_mode_errors(text: str, message: str) -> None:
    with pytest.raises(PermissionSyntaxError) as info:
        parse_mode(text)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


@given(st.integers(0, 0o1777))
def test_octal_round_trip(mode: int) -> None:
    assert parse_mode(format_mode(mode), 0o777) == mode


@given(st.integers(0, 0o1777), st.integers(0, 0o1777))
def test_symbolic_equals_assign(current: int, target: int) -> None:
    text = ",".join(
        f"{w}={format_bits((target >> s) & 7).replace('-', '')}"
        for w, s in (("u", 6), ("g", 3), ("o", 0))
    )
    if target & 0o1000:
        text += ",+t"
    assert parse_mode(text, current) == target


def test_format() -> None:
    assert format_mode(0o1775) == "1775"
    assert format_mode(0o640) == "0640"
    assert format_bits(5) == "r-x"
    assert format_bits(0) == "---"
    assert format_bits(7) == "rwx"


# -- ACLs -------------------------------------------------------------------------


def test_parse_acl_forms() -> None:
    acl = parse_acl(
        ["user:bob:rw-", "u:carol:rw", "group:ta:r-x", "g:staff:xr", "m::r", "u:d.e@x+y-z:6"]
    )
    assert [str(e) for e in acl] == [
        "user:bob:rw-",
        "user:carol:rw-",
        "user:d.e@x+y-z:rw-",
        "group:staff:r-x",
        "group:ta:r-x",
        "mask::r--",
    ]
    assert parse_acl(["mask::rwx"]) == (AclEntry("mask", "", 7),)
    assert parse_acl([]) == ()


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["user:bob:rw-", "u:bob:r"], "duplicate ACL entry user:bob"),
        (["mask::r", "m::rw"], "duplicate"),
        (["user::rwx"], "set with the mode"),
        (["group::r-x"], "set with the mode"),
        (["other::r--"], "set with the mode"),
        (["o::r"], "set with the mode"),
        (["user:bob:rwq"], "invalid permissions"),
        (["user:bob:"], "invalid permissions"),
        (["user:bob:rrw"], "invalid permissions"),
        (["user:bob:8"], "invalid permissions"),
        (["user:bo b:rw"], "invalid user name"),
        (["user:" + "a" * 129 + ":rw"], "invalid user name"),
        (["group:t/a:rw"], "invalid group name"),
        (["mask:bob:rw"], "takes no name"),
        (["bogus:bob:rw"], "unknown tag 'bogus'"),
        (["user:bob"], "expected 'user:NAME:rwx'"),
        (["default:user:bob:rw"], "default ACL"),
        ([""], "empty"),
        ([f"user:u{i}:r" for i in range(257)], "too many ACL entries"),
    ],
)
def test_parse_acl_errors(entries: list[str], message: str) -> None:
    with pytest.raises(PermissionSyntaxError) as info:
        parse_acl(entries)
    assert message in str(info.value)


def test_parse_acl_rejects_a_string() -> None:
    with pytest.raises(PermissionSyntaxError, match="list of entries"):
        parse_acl("user:bob:rw")  # type: ignore[arg-type]


def test_256_entries_allowed() -> None:
    assert len(parse_acl([f"user:u{i}:r" for i in range(256)])) == 256


def test_long_modes_and_entries_are_refused_unparsed_and_unquoted() -> None:
    longest_name = "n" * 128
    assert parse_acl([f"group:{longest_name}:rwx"])[0].name == longest_name
    assert parse_mode("u=rwx,g=rx,o=,+t," + "u+r," * 27 + "u+r", 0) == 0o1750  # 128 characters
    for bad, parse in (
        ("u+r," * 250_000 + "u+r", lambda t: parse_mode(t, 0)),
        ("u+q" + "," * 200, lambda t: parse_mode(t, 0)),
        ("user:" + "b" * 1_000_000 + ":rwx", lambda t: parse_acl([t])),
        ("user:bob:" + "r" * 200, lambda t: parse_acl([t])),
    ):
        with pytest.raises(PermissionSyntaxError, match=r"characters, at most 1[26]\d$") as err:
            parse(bad)
        assert len(str(err.value)) < 120 and bad[:40] in str(err.value)


def test_perms_validation_and_json() -> None:
    p = Perms("alice", "ta", 0o1750, ("mask::rwx", "user:bob:rw-", "group:ta:rwx"))  # type: ignore[arg-type]
    assert p.to_json() == {
        "owner": "alice",
        "group": "ta",
        "mode": "1750",
        "acl": ["user:bob:rw-", "group:ta:rwx", "mask::rwx"],
    }
    assert Perms.from_json(p.to_json()) == p
    assert p.sticky and p.mask == 7
    assert Perms("a", "", 0o640, parse_acl(["u:b:r", "g:c:r"])) == Perms(
        "a", "", 0o640, parse_acl(["g:c:r", "u:b:r"])
    )
    with pytest.raises(PermissionSyntaxError, match="invalid mode"):
        Perms("alice", "", 0o4755)
    with pytest.raises(PermissionSyntaxError, match="invalid owner"):
        Perms("", "", 0o755)
    with pytest.raises(PermissionSyntaxError, match="invalid group"):
        Perms("alice", "a b", 0o755)
    with pytest.raises(PermissionSyntaxError, match="invalid ACL permissions"):
        AclEntry("user", "bob", 8)
    with pytest.raises(PermissionSyntaxError, match="missing key 'mode'"):
        Perms.from_json({"owner": "alice"})


# -- the action table -----------------------------------------------------------------

ALICE = Identity("alice", frozenset())  # notebook owner
BOB = Identity("bob", frozenset({"students"}))
CAROL = Identity("carol", frozenset({"ta"}))
ROOT = Identity("root", frozenset(), admin=True)


def _access(
    identity: Identity, nb_mode: int, cell_mode: int = 0o664, cell_owner: str = "bob"
) -> Access:
    nb = Perms("alice", "students", nb_mode)
    cells = {
        "c1": Perms(cell_owner, "students", cell_mode),
        "c2": Perms("alice", "students", 0o600),
    }
    return compute_access(identity, nb, cells)


def test_actions_are_exactly_the_table() -> None:
    assert ACTIONS == {
        "open", "chat_read", "chat_post", "read_cell", "write_cell", "insert_cell",
        "delete_cell", "move_cell", "execute", "interrupt", "choose_kernel", "restart", "chmod",
        "chown", "chgrp_any", "delete_notebook", "read_audit", "change_settings",
        "comment_read", "comment_post", "comment_moderate",
    }  # fmt: skip


def test_unknown_action_raises() -> None:
    with pytest.raises(ValueError, match="unknown permission action 'raed_cell'"):
        check_action("raed_cell")
    assert check_action("read_cell") == "read_cell"
    with pytest.raises(ValueError, match="unknown permission action"):
        _access(BOB, 0o775).can("edit")
    with pytest.raises(ValueError, match="pass cell_id"):
        _access(BOB, 0o775).can("read_cell")


@pytest.mark.parametrize(
    ("nb_mode", "cell_mode", "expected"),
    [
        # group class (bob is in "students") of the notebook, bob owns c1
        (0o770, 0o600, {"open", "chat_read", "chat_post", "read_cell", "comment_read", "comment_post", "write_cell", "insert_cell",
                        "delete_cell", "move_cell", "interrupt", "choose_kernel", "restart", "chmod"}),
        (0o750, 0o600, {"open", "chat_read", "chat_post", "read_cell", "comment_read", "comment_post", "write_cell", "interrupt",
                        "choose_kernel", "chmod"}),
        (0o740, 0o700, {"open", "chat_read", "chat_post", "read_cell", "comment_read", "comment_post", "write_cell", "chmod"}),
        (0o710, 0o700, {"interrupt", "choose_kernel", "execute", "chmod"}),
        (0o730, 0o700, {"interrupt", "choose_kernel", "restart", "execute", "delete_cell",
                        "move_cell", "chmod"}),
        (0o760, 0o400, {"open", "chat_read", "chat_post", "read_cell", "comment_read", "comment_post", "insert_cell", "delete_cell",
                        "move_cell", "chmod"}),
        (0o700, 0o777, {"chmod"}),
        (0o707, 0o777, {"chmod"}),  # matched group without rights: no fall-through to other
    ],
)  # fmt: skip
def test_can_by_mode(nb_mode: int, cell_mode: int, expected: set[str]) -> None:
    a = _access(BOB, nb_mode, cell_mode)
    got = {act for act in ACTIONS if a.can(act, "c1")}
    assert got == expected


def test_cell_rights_need_the_cell() -> None:
    a = _access(BOB, 0o775, 0o664)
    assert a.can("read_cell", "c1") and a.can("write_cell", "c1")
    assert not a.can("read_cell", "c2") and not a.can("write_cell", "c2")  # 0600, owned by alice
    assert not a.can("read_cell", "nope")
    assert not a.can("execute", "c1")  # cell has no x
    assert a.readable_cells() == {"c1"} and a.writable_cells() == {"c1"}
    assert a.caps_json() == {
        "notebook": "rwx",
        "cells": {"c1": "rw-", "c2": "---"},
        "owner": False,
        "admin": False,
    }
    # write without r is not enough to edit
    b = _access(BOB, 0o775, 0o224)
    assert not b.can("write_cell", "c1") and b.writable_cells() == frozenset()


def test_no_notebook_read_hides_cells() -> None:
    a = _access(CAROL, 0o771, 0o777)  # carol falls to other: --x on the notebook
    assert a.readable_cells() == frozenset()
    assert a.caps_json()["cells"] == {}
    assert not a.can("read_cell", "c1")
    assert a.can("execute", "c1")  # notebook x and cell r+x
    assert a.can("interrupt") and not a.can("restart")


def test_sticky_bit() -> None:
    # group may write the notebook; with sticky, bob may only remove his own cell
    a = _access(BOB, 0o1770, 0o664, cell_owner="bob")
    assert a.can("delete_cell", "c1") and a.can("move_cell", "c1")
    assert not a.can("delete_cell", "c2") and not a.can("move_cell", "c2")
    b = _access(BOB, 0o770, 0o664, cell_owner="bob")
    assert b.can("delete_cell", "c2")
    c = _access(BOB, 0o1770, 0o664, cell_owner="dave")
    assert not c.can("delete_cell", "c1")
    # the notebook owner and admins are not bound by sticky
    assert _access(ALICE, 0o1770, cell_owner="dave").can("delete_cell", "c1")
    assert _access(ROOT, 0o1000, cell_owner="dave").can("delete_cell", "c1")
    # sticky does not grant: without notebook w nobody but admin removes
    assert not _access(BOB, 0o1750, cell_owner="bob").can("delete_cell", "c1")
    assert not _access(ALICE, 0o1570, cell_owner="bob").can("delete_cell", "c1")
    assert not _access(BOB, 0o1770).can("delete_cell", "nope")


def test_owner_and_admin_overrides() -> None:
    a = _access(ALICE, 0o700, 0o000, cell_owner="bob")
    assert a.is_notebook_owner
    assert a.can("read_cell", "c1")  # owner reads every cell
    assert not a.can("write_cell", "c1") and not a.can("execute", "c1")
    assert a.can("chmod", "c1") and a.can("chmod") and a.can("chown") and a.can("chgrp_any")
    assert a.can("delete_notebook") and a.can("read_audit") and a.can("change_settings")
    assert a.caps_json()["owner"] is True
    r = _access(ROOT, 0o000, 0o000)
    assert r.notebook_bits == 7 and set(r.cell_bits.values()) == {7}
    assert all(r.can(act, "c1") for act in ACTIONS)
    assert r.caps_json()["admin"] is True
    # a cell owner may chmod their cell but not chown nor the notebook
    b = _access(BOB, 0o000, 0o000)
    assert b.can("chmod", "c1") and not b.can("chmod", "c2") and not b.can("chmod")
    assert not b.can("chown", "c1") and not b.can("delete_notebook") and not b.can("read_audit")
    assert not b.can("change_settings") and not b.can("chgrp_any", "c1")
    # the owner loses rights on the notebook itself like anyone (chmod u=)
    assert not _access(ALICE, 0o070).can("open")


def test_with_cell_patches_one_cell() -> None:
    a = _access(BOB, 0o775, 0o664)
    b = a.with_cell("c2", Perms("bob", "", 0o700))
    assert b.cell_bits == {"c1": 6, "c2": 7} and b.can("chmod", "c2")
    c = b.with_cell("c1", None)
    assert c.cell_bits == {"c2": 7} and not c.can("chmod", "c1")
    assert a.cell_bits == {"c1": 6, "c2": 0}  # unchanged


def test_identity_groups_normalised() -> None:
    assert Identity("x", {"a"}).groups == frozenset({"a"})  # type: ignore[arg-type]
    assert hash(Identity("x", frozenset({"a"}))) == hash(Identity("x", frozenset({"a"})))


@given(st.integers(0, 0o1777), st.integers(0, 0o777), st.sampled_from(["alice", "bob", "carol"]))
def test_cell_rights_is_read_cell_and_write_cell_in_one(nb_mode: int, cell_mode: int, cell_owner: str) -> None:
    for identity in (ALICE, BOB, CAROL, ROOT):
        a = _access(identity, nb_mode, cell_mode, cell_owner)
        for cell in ("c1", "c2", "unknown"):
            assert a.cell_rights(cell) == (a.can("read_cell", cell), a.can("write_cell", cell))
