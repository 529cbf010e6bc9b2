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

from hub_collab.permissions import AclEntry, Identity, PermissionStore, Perms, evaluate, parse_acl
from hub_collab.permissions.casbin_backend import MODEL_TEXT, RuleAdapter, load_model
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


def _bits(store: PermissionStore, identity: Identity, cell: str | None) -> int:
    return sum(
        b for b, ch in ((4, "r"), (2, "w"), (1, "x")) if store.enforce(identity, "nb", cell, ch)
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
