"""Casbin is the engine: its decisions equal ``evaluate`` (plus the overrides).

Fixtures: ``store`` (module-scoped, SQLite in a temporary directory) with one
notebook ``nb`` whose permissions each example rewrites; ``pg_url`` (a
uniquely named PostgreSQL database, dropped at the end).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import casbin
import pytest
import sqlalchemy as sa
from casbin.model import Model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub_collab.permissions import (
    AclEntry,
    Identity,
    PermissionStore,
    Perms,
    compute_access,
    evaluate,
    parse_acl,
)
from hub_collab.permissions.casbin_backend import MODEL_TEXT, POLICY_TEXT, RuleAdapter, load_model
from hub_collab.permissions.store import engine_url

REPO = Path(__file__).resolve().parents[1]
USERS = ["alice", "bob", "carol", "dave"]
GROUPS = ["ta", "students", "staff"]

acl_entry = st.one_of(
    st.builds(AclEntry, st.just("user"), st.sampled_from(USERS), st.integers(0, 7)),
    st.builds(AclEntry, st.just("group"), st.sampled_from(GROUPS), st.integers(0, 7)),
    st.builds(AclEntry, st.just("mask"), st.just(""), st.integers(0, 7)),
)


@st.composite
def perms_st(draw: st.DrawFn) -> Perms:
    return Perms(
        owner=draw(st.sampled_from(USERS)),
        group=draw(st.sampled_from(["", *GROUPS])),
        mode=draw(st.integers(0, 0o1777)),
        acl=tuple(draw(st.lists(acl_entry, max_size=6, unique_by=lambda e: (e.kind, e.name)))),
    )


identity_st = st.builds(
    Identity,
    st.sampled_from([*USERS, "eve"]),
    st.frozensets(st.sampled_from([*GROUPS, "nobody"]), max_size=3),
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PermissionStore]:
    s = PermissionStore(f"sqlite:///{tmp_path_factory.mktemp('casbin')}/p.db")
    s.start()
    s.create_notebook("nb", "alice")
    s.create_cell("nb", "c", "alice")
    s.create_notebook("other", "bob", "ta", 0o777, ["u:carol:rwx"])  # lines that must not leak
    s.create_cell("other", "c", "bob", Perms("bob", "ta", 0o777, parse_acl(["g:staff:rwx"])))
    yield s
    s.stop()


def _bits(store: PermissionStore, identity: Identity, cell: str | None, nb: str = "nb") -> int:
    return sum(
        b for b, ch in ((4, "r"), (2, "w"), (1, "x")) if store.enforce(identity, nb, cell, ch)
    )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(nb=perms_st(), cell=perms_st(), identities=st.lists(identity_st, min_size=1, max_size=4))
def test_enforce_matches_evaluate(
    store: PermissionStore, nb: Perms, cell: Perms, identities: list[Identity]
) -> None:
    store.set_notebook("nb", nb)
    store.set_cell("nb", "c", cell)
    for ident in identities:
        expected_nb = evaluate(nb, ident.name, ident.groups)
        expected_cell = evaluate(cell, ident.name, ident.groups) | (
            4 if ident.name == nb.owner else 0
        )
        assert _bits(store, ident, None) == expected_nb
        assert _bits(store, ident, "c") == expected_cell
        acc = store.access(ident, "nb")
        assert acc.notebook_bits == expected_nb and acc.cell_bits["c"] == expected_cell


def test_admin_override(store: PermissionStore) -> None:
    store.set_notebook("nb", Perms("alice", "", 0o000))
    store.set_cell("nb", "c", Perms("alice", "", 0o000))
    root = Identity("root", frozenset(), admin=True)
    assert _bits(store, root, None) == 7 and _bits(store, root, "c") == 7
    assert _bits(store, Identity("root", frozenset()), "c") == 0


def test_group_lines_follow_the_identity(store: PermissionStore) -> None:
    store.set_notebook("nb", Perms("alice", "ta", 0o070))
    assert _bits(store, Identity("bob", frozenset({"ta"})), None) == 7
    assert _bits(store, Identity("bob", frozenset()), None) == 0  # g lines replaced, not added
    assert _bits(store, Identity("bob", frozenset({"ta", "x"})), None) == 7


def test_model_file_matches_builtin_text() -> None:
    file_model, text_model = Model(), Model()
    file_model.load_model(str(REPO / "policies" / "model.conf"))
    text_model.load_model_from_text(MODEL_TEXT)
    for sec in ("r", "p", "g", "e", "m"):
        assert {k: v.value for k, v in file_model.model[sec].items()} == {
            k: v.value for k, v in text_model.model[sec].items()
        }


def test_incompatible_model_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.conf"
    bad.write_text(MODEL_TEXT.replace("p = priority, nb, obj, sub, act, eft", "p = sub, obj, act"))
    with pytest.raises(ValueError, match=r"\[p\] p must be priority, nb, obj, sub, act, eft"):
        load_model(bad)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.conf")


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    name = f"hubcollab_casbin_{uuid.uuid4().hex[:12]}"
    server = "postgresql://postgres@127.0.0.1:5432/test"
    admin = sa.create_engine(engine_url(server), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:  # pragma: no cover
        admin.dispose()
        pytest.fail(f"PostgreSQL not reachable at 127.0.0.1:5432 (the tests need it): {exc}")
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_plain_enforcer_on_the_stored_table(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A bare casbin.Enforcer over the stored lines decides like evaluate."""
    url = f"sqlite:///{tmp_path}/p.db" if backend == "sqlite" else request.getfixturevalue("pg_url")
    nb = Perms("alice", "students", 0o1750, parse_acl(["u:bob:rwx", "g:ta:rw", "m::r-x"]))
    cell = Perms("bob", "students", 0o604, parse_acl(["g:staff:rwx"]))
    with PermissionStore(url) as s:
        s.create_notebook("nb", nb.owner, nb.group, nb.mode, nb.acl)
        s.create_cell("nb", "c1", "bob", cell)
    engine = sa.create_engine(engine_url(url))
    try:
        with engine.connect() as conn:
            kinds = conn.execute(
                sa.text("SELECT ptype, count(*) FROM collab_permission_rules GROUP BY ptype")
            ).all()
        assert {k for k, _ in kinds} == {"p", "p2"}
        enforcer = casbin.Enforcer(
            str(REPO / "policies" / "model.conf"), RuleAdapter(engine, "collab_permission_rules")
        )
        enforcer.enable_auto_save(False)
        for user, groups in [("alice", []), ("bob", ["ta"]), ("carol", ["ta"]), ("carol", ["staff"]),
                             ("dave", []), ("erin", ["students", "ta"])]:  # fmt: skip
            enforcer.delete_roles_for_user("u:" + user)
            for g in groups:
                enforcer.add_role_for_user("u:" + user, "g:" + g)
            for obj, perms in ((".", nb), ("c1", cell)):
                want = evaluate(perms, user, frozenset(groups))
                got = sum(
                    b
                    for b, ch in ((4, "r"), (2, "w"), (1, "x"))
                    if enforcer.enforce("u:" + user, "nb", obj, ch)
                )
                assert got == want, (user, groups, obj)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS collab_permission_rules"))
        engine.dispose()


# -- Casbin decides: store.access against the POSIX.1e reference ---------------

EXAMPLE = REPO / "policies" / "examples" / "ta-reads-hidden"

full_identity_st = st.builds(
    Identity,
    st.sampled_from([*USERS, "eve"]),
    st.frozensets(st.sampled_from([*GROUPS, "nobody"]), max_size=3),
    st.booleans(),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    nb=perms_st(),
    cells=st.lists(perms_st(), min_size=1, max_size=5),
    identities=st.lists(full_identity_st, min_size=1, max_size=4),
)
def test_access_is_casbins_and_matches_the_reference(
    store: PermissionStore, nb: Perms, cells: list[Perms], identities: list[Identity]
) -> None:
    """Random modes (sticky too), ACLs with users/groups/mask, owners, groups, admins."""
    if not store.has_notebook("multi"):
        store.create_notebook("multi", "alice")
    store.set_notebook("multi", nb)
    for cid in list(store.cells("multi")):
        store.delete_cell("multi", cid)
    for i, p in enumerate(cells):
        store.create_cell("multi", f"c{i}", p.owner, p)
    want_cells = {f"c{i}": p for i, p in enumerate(cells)}
    for ident in identities:
        got = store.access(ident, "multi")
        ref = compute_access(ident, nb, want_cells)
        assert (got.notebook_bits, got.cell_bits) == (ref.notebook_bits, ref.cell_bits)
        assert (got.is_notebook_owner, got.sticky, got.owned_cells) == (
            ref.is_notebook_owner,
            ref.sticky,
            ref.owned_cells,
        )
        # the plain enforcer over every line agrees with the indexed decision
        assert _bits(store, ident, None, "multi") == got.notebook_bits
        assert _bits(store, ident, "c0", "multi") == got.cell_bits["c0"]


def test_patched_cache_is_recomputed_through_casbin(store: PermissionStore) -> None:
    store.set_notebook("nb", Perms("alice", "ta", 0o750))
    store.set_cell("nb", "c", Perms("alice", "ta", 0o640))
    bob = Identity("bob", frozenset({"ta"}))
    before = store.access(bob, "nb")
    assert before.cell_bits["c"] == 4
    store.set_cell("nb", "c", Perms("alice", "ta", 0o600, parse_acl(["u:bob:rw"])))
    after = store.access(bob, "nb")
    assert after is not before and after.cell_bits["c"] == 6
    store.set_notebook("nb", Perms("alice", "ta", 0o700))
    assert store.access(bob, "nb").notebook_bits == 0


def _example_store(tmp_path: Path, policies: Path | None) -> PermissionStore:
    s = PermissionStore(f"sqlite:///{tmp_path}/ex.db", policies_dir=policies)
    s.start()
    s.create_notebook("lab", "instructor", "students", 0o755)
    s.create_cell("lab", "hidden", "alice", Perms("alice", "students", 0o700))
    s.create_notebook("other", "instructor", "others", 0o755)
    s.create_cell("other", "hidden", "alice", Perms("alice", "others", 0o700))
    return s


def test_example_ta_reads_hidden_cells(tmp_path: Path) -> None:
    ta = Identity("ta", frozenset({"staff"}))
    bob = Identity("bob", frozenset({"students"}))
    with _example_store(tmp_path, EXAMPLE) as s:
        assert s.access(ta, "lab").cell_rights("hidden") == (True, False)
        assert s.enforce(ta, "lab", "hidden", "r")  # the plain enforcer agrees
        assert s.access(bob, "lab").cell_rights("hidden") == (False, False)
        assert s.access(ta, "other").cell_rights("hidden") == (False, False)
        assert s.access(Identity("ta"), "lab").cell_rights("hidden") == (False, False)
        # the notebook's group is a fed fact: changing it re-decides cached rights
        s.set_notebook("lab", Perms("instructor", "others", 0o755))
        assert s.access(ta, "lab").cell_rights("hidden") == (False, False)
        s.set_notebook("other", Perms("instructor", "students", 0o755))
        assert s.access(ta, "other").cell_rights("hidden") == (True, False)


def test_without_the_example_the_cell_stays_hidden(tmp_path: Path) -> None:
    with _example_store(tmp_path, None) as s:
        assert s.access(Identity("ta", frozenset({"staff"})), "lab").cell_rights("hidden") == (
            False,
            False,
        )


def test_example_model_differs_from_the_shipped_one_by_one_clause() -> None:
    shipped = (REPO / "policies" / "model.conf").read_text().splitlines()
    example = (EXAMPLE / "model.conf").read_text().splitlines()
    code = [ln for ln in shipped if ln and not ln.startswith("#")]
    ex_code = [ln for ln in example if ln and not ln.startswith("#")]
    assert [a for a, b in zip(code, ex_code, strict=True) if a != b] == [code[-1]]


def test_policy_file_matches_builtin_text() -> None:
    lines = [
        ln
        for ln in (REPO / "policies" / "policy.csv").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines == [ln for ln in POLICY_TEXT.splitlines() if ln.strip()]


@pytest.mark.parametrize(
    ("model_edit", "policy", "message"),
    [
        (None, "p, 1, *, *, role:admin, r\n", r"policy.csv, line 1: a p line has 6 fields"),
        (None, "p, 30, *, *, role:admin, r, allow\n", r"line 1: invalid priority '30'"),
        (None, "p, 1, *, *, role:admin, r, maybe\n", r"invalid effect 'maybe'"),
        (None, "p3, a, b\n", r"unknown line type 'p3'"),
        (("g(r.sub, p.sub)", "h(r.sub, p.sub)"), "", r"the matcher cannot be evaluated: NameError"),
        (
            ("r.act == p.act &&", "r.act == p.act && &&"),
            "",
            r"the matcher cannot be evaluated: SyntaxError",
        ),
        (("r = sub, nb, obj, act", "r = sub, obj, act"), "", r"\[r\] r must be sub, nb, obj, act"),
    ],
)
def test_broken_policies_fail_at_start(
    tmp_path: Path, model_edit: tuple[str, str] | None, policy: str, message: str
) -> None:
    model = (REPO / "policies" / "model.conf").read_text()
    if model_edit is not None:
        model = model.replace(*model_edit)
    (tmp_path / "model.conf").write_text(model)
    (tmp_path / "policy.csv").write_text(policy)
    s = PermissionStore(f"sqlite:///{tmp_path}/b.db", policies_dir=tmp_path)
    with pytest.raises(ValueError, match=message):
        s.start()
    with pytest.raises(FileNotFoundError):
        PermissionStore(f"sqlite:///{tmp_path}/b.db", policies_dir=tmp_path / "nope").start()


def test_an_operator_edit_changes_decisions(tmp_path: Path) -> None:
    """A policy line added to policy.csv takes effect: Casbin decides, not posix.evaluate."""
    (tmp_path / "model.conf").write_text((REPO / "policies" / "model.conf").read_text())
    (tmp_path / "policy.csv").write_text(
        (REPO / "policies" / "policy.csv").read_text() + "p, 60, *, *, *, r, allow\n"
    )
    with PermissionStore(f"sqlite:///{tmp_path}/e.db", policies_dir=tmp_path) as s:
        s.create_notebook("nb", "alice", "", 0o700)
        # priority 60 comes after the store's lines: only who matched none gets r
        assert s.access(Identity("bob"), "nb").notebook_bits == 4
        assert s.access(Identity("alice"), "nb").notebook_bits == 7
