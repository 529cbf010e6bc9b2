"""PermissionStore against real databases: SQLite in tmp_path and PostgreSQL.

Fixtures:

* ``db_url`` -- parametrized: a SQLite file in ``tmp_path``, and a freshly
  created PostgreSQL database (uniquely named, dropped afterwards) on the
  shared server at ``postgresql://postgres@127.0.0.1:5432``. PostgreSQL
  tests are skipped when that server is not reachable.
* ``store`` -- a started :class:`PermissionStore` on ``db_url``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from hub_collab import schema
from hub_collab.permissions import (
    Identity,
    InvalidId,
    ObjectExists,
    PermissionStore,
    PermissionSyntaxError,
    Perms,
    UnknownObject,
    parse_acl,
)
from hub_collab.permissions.store import engine_url, new_notebook_perms

PG_SERVER = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    """A uniquely named database on the shared server, dropped at the end."""
    name = f"hubcollab_perm_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(engine_url(PG_SERVER), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:  # pragma: no cover - depends on the host
        admin.dispose()
        pytest.fail(f"PostgreSQL not reachable at 127.0.0.1:5432 (the tests need it): {exc}")
    try:
        yield PG_SERVER.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('perm')}/collab.db"
        return
    url: str = request.getfixturevalue("pg_server")
    yield url
    # each test starts from an empty database (the tables and their schema revision)
    eng = sa.create_engine(engine_url(url))
    with eng.begin() as conn:
        schema.metadata.drop_all(conn)
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {schema.VERSION_TABLE}"))
    eng.dispose()


@pytest.fixture
def store(db_url: str) -> Iterator[PermissionStore]:
    s = PermissionStore(db_url)
    s.start()
    yield s
    s.stop()


BOB = Identity("bob", frozenset({"students"}))
ALICE = Identity("alice", frozenset())


def test_must_start_first(db_url: str) -> None:
    s = PermissionStore(db_url)
    with pytest.raises(RuntimeError, match=r"call start\(\)"):
        s.notebook("nb")
    with pytest.raises(RuntimeError, match=r"call start\(\)"):
        s.create_notebook("nb", "alice")
    with s:
        s.create_notebook("nb", "alice")
    with pytest.raises(RuntimeError, match=r"call start\(\)"):
        s.cells("nb")


def test_notebook_round_trip(store: PermissionStore, db_url: str) -> None:
    store.create_notebook(
        "nb1",
        "alice",
        "students",
        0o1770,
        ["user:bob:rwx", "g:ta:r-x", "mask::rwx"],
        0o640,
        ["g:ta:rw"],
    )
    expected = Perms(
        "alice", "students", 0o1770, parse_acl(["user:bob:rwx", "group:ta:r-x", "mask::rwx"])
    )
    assert store.notebook("nb1") == expected
    assert store.default_cell("nb1") == (0o640, parse_acl(["group:ta:rw-"]))
    assert store.cells("nb1") == {}
    with PermissionStore(db_url) as other:  # a fresh process sees the same
        assert other.notebook("nb1") == expected
        assert other.default_cell("nb1") == (0o640, parse_acl(["group:ta:rw-"]))


def test_default_cell_mode_applied(store: PermissionStore) -> None:
    store.create_notebook(
        "nb", "alice", "students", 0o775, default_cell_mode=0o640, default_acl=["u:carol:rw"]
    )
    p = store.create_cell("nb", "c1", "bob")
    assert p == Perms("bob", "students", 0o640, parse_acl(["user:carol:rw-"]))
    assert store.cell("nb", "c1") == p
    explicit = Perms("bob", "", 0o600)
    assert store.create_cell("nb", "c2", "bob", explicit) == explicit
    assert store.cells("nb") == {"c1": p, "c2": explicit}
    with pytest.raises(ObjectExists):
        store.create_cell("nb", "c1", "bob")


def test_set_cell_and_notebook(store: PermissionStore, db_url: str) -> None:
    store.create_notebook("nb", "alice", "students", 0o750)
    store.create_cell("nb", "c1", "bob")
    old, new = store.set_cell("nb", "c1", Perms("bob", "students", 0o600, parse_acl(["u:carol:r"])))
    assert old == {"owner": "bob", "group": "students", "mode": "0775", "acl": []}
    assert new == {"owner": "bob", "group": "students", "mode": "0600", "acl": ["user:carol:r--"]}
    old, new = store.set_notebook("nb", Perms("dave", "ta", 0o1770), default_cell_mode=0o600)
    assert old["owner"] == "alice" and old["default_mode"] == "0775" and old["default_acl"] == []
    assert new == {
        "owner": "dave",
        "group": "ta",
        "mode": "1770",
        "acl": [],
        "default_mode": "0600",
        "default_acl": [],
    }
    # set_notebook keeps the cells, and defaults unless given
    assert set(store.cells("nb")) == {"c1"}
    store.set_notebook("nb", Perms("dave", "ta", 0o770))
    assert store.default_cell("nb") == (0o600, ())
    with PermissionStore(db_url) as other:
        assert other.notebook("nb") == Perms("dave", "ta", 0o770)
        assert other.cell("nb", "c1") == Perms("bob", "students", 0o600, parse_acl(["u:carol:r"]))


def test_deletes(store: PermissionStore, db_url: str) -> None:
    store.create_notebook("nb", "alice")
    store.create_cell("nb", "c1", "bob")
    store.create_cell("nb", "c2", "bob")
    store.delete_cell("nb", "c1")
    assert set(store.cells("nb")) == {"c2"}
    with pytest.raises(UnknownObject):
        store.cell("nb", "c1")
    with pytest.raises(UnknownObject):
        store.delete_cell("nb", "c1")
    store.delete_notebook("nb")
    with pytest.raises(UnknownObject):
        store.notebook("nb")
    with PermissionStore(db_url) as other:
        assert not other.has_notebook("nb")
    store.create_notebook("nb", "carol")  # the id is free again, with no old cells
    assert store.cells("nb") == {}


def test_errors(store: PermissionStore) -> None:
    store.create_notebook("nb", "alice")
    with pytest.raises(ObjectExists):
        store.create_notebook("nb", "bob")
    with pytest.raises(UnknownObject):
        store.create_cell("nope", "c1", "bob")
    with pytest.raises(UnknownObject):
        store.set_cell("nb", "c9", Perms("bob", "", 0o600))
    with pytest.raises(InvalidId, match="invalid notebook id '../etc'"):
        store.notebook("../etc")
    with pytest.raises(InvalidId, match="invalid cell id"):
        store.create_cell("nb", "a" * 65, "bob")
    with pytest.raises(PermissionSyntaxError):
        store.create_notebook("nb2", "alice", acl=["user::rwx"])
    with pytest.raises(PermissionSyntaxError, match="default cell mode"):
        store.create_notebook("nb2", "alice", default_cell_mode=0o1777)
    with pytest.raises(PermissionSyntaxError, match="invalid owner"):
        store.create_cell("nb", "c1", "not valid")
    assert not store.has_notebook("nb2")
    with pytest.raises(ValueError, match="bit"):
        store.enforce(BOB, "nb", None, "rw")


def test_access_cached_and_updated(store: PermissionStore) -> None:
    store.create_notebook("nb", "alice", "students", 0o775, default_cell_mode=0o664)
    store.create_cell("nb", "c1", "alice")
    a = store.access(BOB, "nb")
    assert store.access(BOB, "nb") is a
    assert a.can("write_cell", "c1")
    store.set_cell("nb", "c1", Perms("alice", "students", 0o640))
    b = store.access(BOB, "nb")
    assert b is not a and not b.can("write_cell", "c1") and b.can("read_cell", "c1")
    store.create_cell("nb", "c2", "bob")
    assert store.access(BOB, "nb").can("chmod", "c2")
    store.delete_cell("nb", "c2")
    assert "c2" not in store.access(BOB, "nb").cell_bits
    store.set_notebook("nb", Perms("alice", "students", 0o700))
    assert not store.access(BOB, "nb").can("open")
    # groups are part of the identity: different groups, different rights
    assert store.access(Identity("bob", frozenset()), "nb").notebook_bits == 0
    assert store.access(Identity("x", frozenset(), admin=True), "nb").notebook_bits == 7
    # chown of the notebook moves the owner's right to read every cell
    store.set_cell("nb", "c1", Perms("bob", "", 0o000))
    assert store.access(ALICE, "nb").can("read_cell", "c1")
    store.set_notebook("nb", Perms("dave", "students", 0o777))
    assert not store.access(ALICE, "nb").can("read_cell", "c1")
    assert store.access(Identity("dave", frozenset()), "nb").can("read_cell", "c1")
    assert store.access(BOB, "nb").can("open")
    with pytest.raises(UnknownObject):
        store.access(BOB, "nope")


def test_listener_and_generation(store: PermissionStore) -> None:
    calls: list[str] = []
    store.add_listener(calls.append)

    def broken(nb: str) -> None:
        raise RuntimeError("listener bug")

    store.add_listener(broken)  # a failing listener does not break writes
    g0 = store.generation("nb")
    store.create_notebook("nb", "alice")
    g1 = store.generation("nb")
    store.create_cell("nb", "c1", "alice")
    g2 = store.generation("nb")
    store.set_cell("nb", "c1", Perms("alice", "", 0o600))
    g3 = store.generation("nb")
    store.set_notebook("nb", Perms("alice", "", 0o700))
    g4 = store.generation("nb")
    store.delete_cell("nb", "c1")
    g5 = store.generation("nb")
    store.delete_notebook("nb")
    g6 = store.generation("nb")
    assert g0 < g1 < g2 < g3 < g4 < g5 < g6
    assert calls == ["nb"] * 6
    store.reload("nb")  # nothing changed: no call, no bump
    assert calls == ["nb"] * 6 and store.generation("nb") == g6


def _rule_rows(db_url: str, nb: str) -> list[tuple[object, ...]]:
    """The stored lines of ``nb`` with their row ids (a rewrite gives new ids)."""
    eng = sa.create_engine(engine_url(db_url))
    try:
        with eng.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT id, ptype, v0, v2, v3, v4, v5 FROM collab_permission_rules"
                    " WHERE v1 = :nb ORDER BY id"
                ),
                {"nb": nb},
            )
            return [tuple(r) for r in rows]
    finally:
        eng.dispose()


def test_a_change_that_changes_nothing_writes_nothing(store: PermissionStore, db_url: str) -> None:
    calls: list[str] = []
    store.add_listener(calls.append)
    store.create_notebook(
        "nb", "alice", "students", 0o1770, ["u:bob:rw", "g:ta:rx"], 0o640, ["g:ta:rw"]
    )
    store.create_cell("nb", "c1", "bob", Perms("bob", "students", 0o640, parse_acl(["u:carol:r"])))
    cached = store.access(BOB, "nb")
    rows, gen, calls_before = _rule_rows(db_url, "nb"), store.generation("nb"), list(calls)
    # the same permissions, spelt differently: ACL order, entry syntax, defaults repeated
    same_nb = Perms("alice", "students", 0o1770, parse_acl(["group:ta:r-x", "user:bob:rw-"]))
    old, new = store.set_notebook("nb", same_nb, default_cell_mode=0o640, default_acl=["g:ta:6"])
    assert old == new and new["mode"] == "1770" and new["default_acl"] == ["group:ta:rw-"]
    assert store.set_notebook("nb", same_nb) == (old, old)
    same_cell = Perms("bob", "students", 0o640, parse_acl(["user:carol:r--"]))
    old, new = store.set_cell("nb", "c1", same_cell)
    assert old == new == {
        "owner": "bob",
        "group": "students",
        "mode": "0640",
        "acl": ["user:carol:r--"],
    }
    assert _rule_rows(db_url, "nb") == rows  # not rewritten: the same rows, the same ids
    assert calls == calls_before and store.generation("nb") == gen
    assert store.access(BOB, "nb") is cached
    # a real change (the control) is written and heard
    old, new = store.set_cell("nb", "c1", Perms("bob", "students", 0o600))
    assert old != new and calls == [*calls_before, "nb"] and store.generation("nb") > gen
    assert _rule_rows(db_url, "nb") != rows
    rows = _rule_rows(db_url, "nb")
    old, new = store.set_notebook("nb", same_nb, default_cell_mode=0o600)
    assert old["default_mode"] == "0640" and new["default_mode"] == "0600"
    assert calls == [*calls_before, "nb", "nb"] and _rule_rows(db_url, "nb") != rows
    with PermissionStore(db_url) as other:
        assert other.default_cell("nb") == (0o600, parse_acl(["g:ta:rw"]))
        assert other.cell("nb", "c1") == Perms("bob", "students", 0o600)


def test_reload_sees_another_store(store: PermissionStore, db_url: str) -> None:
    store.create_notebook("nb", "alice", "students", 0o775)
    store.create_cell("nb", "c1", "bob")
    store.create_notebook("nb2", "alice")
    before = store.access(BOB, "nb")
    assert before.can("insert_cell")
    calls: list[str] = []
    store.add_listener(calls.append)
    with PermissionStore(db_url) as other:
        other.set_notebook("nb", Perms("alice", "students", 0o750))
        other.set_cell("nb", "c1", Perms("bob", "", 0o700))
        other.create_cell("nb", "c2", "carol")
        other.create_notebook("nb3", "carol")
        other.delete_notebook("nb2")
    assert store.notebook("nb") == Perms("alice", "students", 0o775)  # not yet
    gen = store.generation("nb")
    store.reload("nb")
    assert calls == ["nb"] and store.generation("nb") > gen
    assert store.notebook("nb") == Perms("alice", "students", 0o750)
    assert store.cells("nb") == {
        "c1": Perms("bob", "", 0o700),
        "c2": Perms("carol", "students", 0o775),  # the default cell mode
    }
    after = store.access(BOB, "nb")
    assert not after.can("insert_cell") and after.can("write_cell", "c1")
    assert store.enforce(BOB, "nb", None, "r") and not store.enforce(BOB, "nb", None, "w")
    assert store.has_notebook("nb2") and not store.has_notebook("nb3")
    store.reload()
    assert sorted(calls) == ["nb", "nb2", "nb3"]
    assert not store.has_notebook("nb2") and store.notebook("nb3") == Perms("carol", "", 0o750)
    assert store.enforce(Identity("carol", frozenset()), "nb3", None, "w")
    assert not store.enforce(BOB, "nb2", None, "r")


def test_own_table_and_engine(db_url: str) -> None:
    eng = sa.create_engine(engine_url(db_url))
    try:
        with PermissionStore("ignored://", engine=eng, table="perm_rules_alt") as s:
            s.create_notebook("nb", "alice")
        assert "perm_rules_alt" in sa.inspect(eng).get_table_names()
        with PermissionStore("ignored://", engine=eng, table="perm_rules_alt") as s:
            assert s.notebook("nb") == Perms("alice", "", 0o750)
        with PermissionStore("ignored://", engine=eng) as s:
            assert not s.has_notebook("nb")
    finally:
        with eng.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS perm_rules_alt"))
        eng.dispose()
    with pytest.raises(ValueError, match="invalid table name"):
        PermissionStore("sqlite://", table="bad name").start()


def test_concurrent_writers(store: PermissionStore, db_url: str) -> None:
    """Two replicas rewriting the same cells never leave duplicate lines behind."""
    store.create_notebook("nb", "alice", "students", 0o775)
    for i in range(4):
        store.create_cell("nb", f"c{i}", "bob")
    errors: list[BaseException] = []

    with PermissionStore(db_url) as other:

        def writer(s: PermissionStore, mode_base: int) -> None:
            try:
                for n in range(15):
                    cid = f"c{n % 4}"
                    s.set_cell("nb", cid, Perms("bob", "students", mode_base | (n % 8)))
                    s.access(BOB, "nb").caps_json()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [
            threading.Thread(target=writer, args=(store, 0o600)),
            threading.Thread(target=writer, args=(other, 0o640)),
            threading.Thread(target=writer, args=(store, 0o660)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    with PermissionStore(db_url) as fresh:
        cells = fresh.cells("nb")
        assert set(cells) == {"c0", "c1", "c2", "c3"}
        for cid, p in cells.items():  # exactly one write won per cell, whole
            assert p.owner == "bob" and p.mode & 0o770 in (0o600, 0o640, 0o660)
            want = sum(
                b for b, ch in ((4, "r"), (2, "w"), (1, "x")) if fresh.enforce(BOB, "nb", cid, ch)
            )
            assert fresh.access(BOB, "nb").cell_bits[cid] == want
    store.reload()
    assert store.cells("nb") == cells


def test_a_notebook_created_with_its_cells_equals_one_made_cell_by_cell(db_url: str, store: PermissionStore) -> None:
    """An import's permissions (all lines in the caller's one transaction, then taken in)
    decide and read back exactly as a notebook whose cells were created one by one."""
    cells = [f"c{i}" for i in range(5)]
    store.create_notebook("one", "alice", "students", 0o1750, default_cell_mode=0o640)
    for cid in cells:
        store.create_cell("one", cid, "alice")
    new = new_notebook_perms("two", "alice", cells, group="students", mode=0o1750, default_cell_mode=0o640)
    assert store.engine is not None
    with store.engine.begin() as conn:
        new.insert(conn, new.rows(), store.table)
    heard: list[str] = []
    store.add_listener(heard.append)
    store.add_new_notebook(new)
    assert heard == []  # the listeners hear of it when it is announced
    store.announce("two")
    assert heard == ["two"]
    assert store.notebook("two") == store.notebook("one")
    assert store.default_cell("two") == store.default_cell("one")
    assert store.cells("two") == store.cells("one")
    people = [ALICE, BOB, Identity("carol", frozenset()), Identity("root", frozenset(), admin=True)]
    for who in people:
        assert store.access(who, "two").caps_json() == store.access(who, "one").caps_json()
        for obj in [None, *cells]:
            for bit in "rwx":
                assert store.enforce(who, "two", obj, bit) == store.enforce(who, "one", obj, bit)
    with PermissionStore(db_url) as fresh:  # another replica, from the database
        assert fresh.cells("two") == store.cells("two")
        assert fresh.notebook("two") == store.notebook("two")
        for who in people:
            assert fresh.access(who, "two").caps_json() == store.access(who, "one").caps_json()
    with pytest.raises(ObjectExists):
        store.add_new_notebook(new)
