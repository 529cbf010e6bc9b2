"""One schema, migrated by Alembic: the start-up check, ``hub-collab upgrade-db``, and
replicas starting together.

Real SQLite files and real PostgreSQL databases (each test makes its own), real
``hub-collab`` processes where the behaviour is the process's (refusing to start,
the upgrade command, replicas racing on an empty database).

- ``release-0.sqlite`` (``tests/fixtures/make_release_db.py`` says how it was made) was
  written by the last release without migrations; upgraded, every notebook, update,
  checkpoint, chat message, permission and audit entry reads back as that release read
  it (``release-0.json``). On PostgreSQL the same rows are loaded into the release's
  own schema first (``tests/fixtures/release_schema.py``).
- after the migrations, Alembic's autogenerate comparison finds nothing between the
  database and :data:`hub_collab.schema.metadata`: a model change without a revision
  fails here.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fixtures.make_release_db import EXPECTED, read_back, services
from fixtures.release_schema import RELEASE_DB, load_release_db
from hubfixtures import clean_env, free_port
from replicas import PostgresDatabase, Replica, new_prefix

from hub_collab import schema
from hub_collab.store import make_engine

UPGRADE = "`hub-collab upgrade-db`"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of this test's own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub-collab.sqlite'}"
        return
    db = PostgresDatabase()
    db.create()
    try:
        yield db.url
    finally:
        db.drop()


def service_env() -> dict[str, str]:
    # enough to get past the Hub settings: these tests stop before anything talks to a Hub
    return clean_env(JUPYTERHUB_API_TOKEN="unused", JUPYTERHUB_API_URL="http://127.0.0.1:9/hub/api")


def hub_collab(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub_collab", *args],
        env=service_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def refused(url: str, tmp_path: Path) -> str:
    """Start the real service on ``url``; it must exit 1 at once. Returns its stderr."""
    run = hub_collab("--data-dir", str(tmp_path), f"--db-url={url}", f"--port={free_port()}", cwd=tmp_path)
    assert run.returncode == 1, (run.returncode, run.stderr[-2000:])
    assert "Traceback" not in run.stderr, run.stderr
    return run.stderr


def where(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


def differences(url: str) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "version_table": schema.VERSION_TABLE}
            )
            return list(compare_metadata(context, schema.metadata))
    finally:
        engine.dispose()


def revision(url: str) -> object:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return schema.database_revision(conn)
    finally:
        engine.dispose()


# -- the migrations are the models ------------------------------------------------------


def test_migrations_match_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert schema.ensure_schema(engine) == "created"
        assert schema.ensure_schema(engine) == "current"
    finally:
        engine.dispose()
    assert revision(db_url) == schema.head_revision()
    assert differences(db_url) == [], "the models changed without a migration (see hub_collab/schema.py)"
    # the release before migrations made these tables; revisions since added the others
    assert set(sa.inspect(make_engine(db_url)).get_table_names()) == schema.FIRST_TABLES | {
        schema.VERSION_TABLE,
        "collab_kernels",  # 0002
        "collab_kernel_choices",  # 0003
        "collab_comment_threads",  # 0004_comments
        "collab_comments",
        "collab_comment_reads",
        "collab_comment_notices",
        "collab_history_docs",  # 0005
        "collab_history_authors",
        "collab_doc_history",
        "collab_doc_snapshots",
    }


# -- a database made by the release before migrations -------------------------------------


async def read_release_data(url: str) -> dict[str, Any]:
    """What the service's classes read from ``url``; then check they can write to it too."""
    async with services(url) as (store, rooms, permissions, chat):
        data = await read_back(store, rooms, permissions, chat)
        nb = next(iter(data["notebooks"]))
        last_audit = max(a["id"] for n in data["notebooks"].values() for a in n["audit"])
        store.add_audit(nb, "admin", "check", "notebook")
        assert store.list_audit(nb, limit=1)[0]["id"] > last_audit, "ids continue after the old ones"
        last_chat = max(m["id"] for n in data["notebooks"].values() for m in n["chat"]["messages"])
        new_id = chat.insert({"notebook": nb, "author": "admin", "text": "after the upgrade", "created_at": 1.0})
        assert new_id > last_chat
        permissions.create_notebook("afterupgrade", "admin")
        assert permissions.notebook("afterupgrade").owner == "admin"
        return data


def release_db(db_url: str, tmp_path: Path) -> None:
    if db_url.startswith("sqlite"):
        shutil.copy(RELEASE_DB, sa.make_url(db_url).database or "")
    else:
        load_release_db(db_url)


def test_a_release_database_is_refused_then_upgraded_and_keeps_everything(db_url: str, tmp_path: Path) -> None:
    release_db(db_url, tmp_path)
    assert revision(db_url) is schema.UNVERSIONED
    stderr = refused(db_url, tmp_path)
    assert (
        f"CRITICAL | the database {where(db_url)} was made by a hub-collab release before schema"
        f" migrations; back it up, then run {UPGRADE}\n"
    ) in stderr

    run = hub_collab("upgrade-db", f"--db-url={db_url}", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    if db_url.startswith("sqlite"):
        assert lines[0].startswith(f"backed up {where(db_url)} to {sa.make_url(db_url).database}.")
        assert len(list(tmp_path.glob("hub-collab.sqlite.*.bak"))) == 1
        lines = lines[1:]
    assert lines == [
        f"{where(db_url)} was made before schema migrations: stamped it as revision {schema.FIRST_REVISION}"
        + ("" if schema.head_revision() == schema.FIRST_REVISION else f", then upgraded it to {schema.head_revision()}")
    ]
    assert revision(db_url) == schema.head_revision()
    assert differences(db_url) == []

    assert asyncio.run(read_release_data(db_url)) == json.loads(EXPECTED.read_text())

    again = hub_collab("upgrade-db", f"--db-url={db_url}", cwd=tmp_path)
    assert again.returncode == 0 and again.stdout == (
        f"{where(db_url)} is at schema revision {schema.head_revision()}: nothing to do\n"
    )


def test_upgrade_db_reads_the_services_settings(tmp_path: Path) -> None:
    """``--data-dir``/``$HUB_COLLAB_DB_URL``/a config file choose the database, as for the service."""
    data = tmp_path / "data"
    data.mkdir()
    run = hub_collab("upgrade-db", "--data-dir", str(data), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("created the schema (revision ") and (data / "hub-collab.sqlite").exists()
    config = tmp_path / "hub_collab_config.py"
    other = tmp_path / "other.sqlite"
    config.write_text(f"c.HubCollab.db_url = 'sqlite:///{other}'\n")
    run = hub_collab("upgrade-db", "-f", str(config), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"created the schema (revision {schema.head_revision()}) in the empty database sqlite:///{other}\n"


# -- older and newer revisions ------------------------------------------------------------

NEXT = '''"""A test's next release: one more column."""

import sqlalchemy as sa
from alembic import op

revision = "next"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("collab_notebooks") as batch:
        batch.add_column(sa.Column("archived", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    with op.batch_alter_table("collab_notebooks") as batch:
        batch.drop_column("archived")
'''


@pytest.fixture
def next_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This code as the next release would be: the migrations plus a revision ``next``."""
    head = schema.head_revision()
    migrations = tmp_path / "next-migrations"
    shutil.copytree(schema.MIGRATIONS_DIR, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    (migrations / "versions" / "next_archived.py").write_text(NEXT.replace("{head}", head))
    monkeypatch.setattr(schema, "MIGRATIONS_DIR", migrations)
    schema._scripts.cache_clear()
    yield
    schema._scripts.cache_clear()


def test_a_schema_made_between_the_two_reads_of_a_start_is_current(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A replica's first read of the revision (unlocked: the version table, then the table
    names) may see no version table and then the tables another replica has just
    committed: read as a database made before migrations. The answer is read again
    under the schema lock, where it is the current schema."""
    engine = make_engine(db_url)
    try:
        assert schema.ensure_schema(engine) == "created"
        real = schema.database_revision
        reads: list[object] = []

        def torn_first_read(conn: sa.Connection) -> object:
            reads.append(None)
            return schema.UNVERSIONED if len(reads) == 1 else real(conn)

        monkeypatch.setattr(schema, "database_revision", torn_first_read)
        assert schema.ensure_schema(engine) == "current"
        assert len(reads) == 2
    finally:
        engine.dispose()


def test_an_older_revision_is_refused_and_upgraded(db_url: str, tmp_path: Path, next_release: None) -> None:
    engine = make_engine(db_url)
    try:
        with schema.migration_lock(engine) as conn:
            command.upgrade(schema.alembic_config(connection=conn), "0001")
        with pytest.raises(schema.SchemaTooOld) as info:
            schema.ensure_schema(engine)
        assert str(info.value) == (
            f"the database {where(db_url)} is at schema revision 0001, older than this hub-collab's"
            f" next; back it up, then run {UPGRADE}"
        )
        assert schema.upgrade_schema(engine) == ("0001", "next")
        assert schema.ensure_schema(engine) == "current"
        assert "archived" in {c["name"] for c in sa.inspect(engine).get_columns("collab_notebooks")}
    finally:
        engine.dispose()


def test_an_unknown_revision_is_refused(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    try:
        schema.ensure_schema(engine)
        with engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE {schema.VERSION_TABLE} SET version_num = 'f00d'"))
    finally:
        engine.dispose()
    message = (
        f"the database {where(db_url)} is at schema revision f00d, which this hub-collab"
        f" (schema {schema.head_revision()}) does not know: a newer release upgraded it;"
        " run that release or restore a backup"
    )
    assert f"CRITICAL | {message}\n" in refused(db_url, tmp_path)
    run = hub_collab("upgrade-db", f"--db-url={db_url}", cwd=tmp_path)
    assert run.returncode == 1 and f"CRITICAL | {message}\n" in run.stderr, run.stderr
    assert not list(tmp_path.glob("*.bak")), "nothing to back up: nothing was changed"
    assert revision(db_url) == "f00d"


# -- replicas starting together ---------------------------------------------------------------


class NoHub:
    """What :class:`replicas.Replica` reads from a Hub; nothing listens there.

    A replica comes up (``api/health`` answers 200, the database and Redis with it)
    without a Hub: only logins need one.
    """

    def __init__(self) -> None:
        self.collab_port = free_port()
        self.url = "http://127.0.0.1:9/"
        self.api_url = "http://127.0.0.1:9/hub/api"
        self.collab_prefix = "/services/collab/"
        self.collab_api_token = "unused"
        self.oauth_callback_url = "http://127.0.0.1:9/services/collab/oauth_callback"


def start_together(db_url: str, root: Path, round_: int) -> None:
    hub: Any = NoHub()
    prefix = new_prefix()
    replicas = [
        Replica(hub, root / f"round{round_}-{name}", name, db_url=db_url, redis_url="redis://127.0.0.1:6379/0",
                prefix=prefix, cookie_secret="00" * 32)
        for name in ("r1", "r2", "r3")
    ]  # fmt: skip
    try:
        for r in replicas:
            r.launch()
        for r in replicas:
            r.wait_ready()
        for r in replicas:
            health = r.health()
            assert health["ok"] and health["database"] and health["replica"] == r.name, health
    finally:
        for r in replicas:
            r.stop()
    for r in replicas:
        log = r.log_path.read_text()
        assert "Traceback" not in log and "CRITICAL" not in log, log


@pytest.mark.timeout(600)
@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_replicas_started_together_all_come_up(backend: str, tmp_path: Path) -> None:
    """Three replicas at the same moment on an empty database, four times; then on the current one."""
    rounds = 4 if backend == "postgresql" else 2
    for round_ in range(rounds):
        if backend == "postgresql":
            db = PostgresDatabase()
            db.create()
            url = db.url
        else:
            url = f"sqlite:///{tmp_path / f'round{round_}.sqlite'}"
        try:
            start_together(url, tmp_path, round_)
            assert revision(url) == schema.head_revision()
            if round_ == rounds - 1:
                start_together(url, tmp_path, rounds)  # and once more, on the current database
        finally:
            if backend == "postgresql":
                db.drop()


# -- 0003: kernels keyed by resource and kernelspec ------------------------------------------------


def test_running_kernels_are_carried_into_0003_and_back(db_url: str) -> None:
    """The kernels 0002 recorded are found again after 0003 (on the resource each ran on:
    a shared ``hub`` kernel on the server its owner chose), and a downgrade keeps one
    kernel per notebook and user (the most recent)."""
    engine = make_engine(db_url)
    kernels = sa.table(
        "collab_kernels", *(sa.column(c) for c in ("notebook_id", "user", "provider", "kernel_name", "info", "run", "updated_at"))
    )
    notebooks = sa.table(
        "collab_notebooks", *(sa.column(c) for c in ("id", "name", "created_by", "created_at", "updated_at", "epoch", "settings"))
    )
    nb = {"name": "n", "created_by": "alice", "created_at": 0.0, "updated_at": 0.0, "epoch": "e"}
    rows = [
        {"notebook_id": "nb1", "user": "", "provider": "hub", "kernel_name": "python3", "info": "{}", "run": None, "updated_at": 1.0},
        {"notebook_id": "nb2", "user": "", "provider": "hub", "kernel_name": "python3", "info": "{}", "run": None, "updated_at": 2.0},
        {"notebook_id": "nb2", "user": "bob", "provider": "hub", "kernel_name": "python3", "info": '{"id": "k"}', "run": '{"cell": "c"}', "updated_at": 3.0},
        {"notebook_id": "nb3", "user": "alice", "provider": "local", "kernel_name": "alt", "info": "{}", "run": None, "updated_at": 4.0},
    ]
    try:
        with schema.migration_lock(engine) as conn:
            command.upgrade(schema.alembic_config(connection=conn), "0002")
        with engine.begin() as conn:
            conn.execute(
                notebooks.insert(),
                [
                    {**nb, "id": "nb1", "settings": '{"shared_server": "gpu", "shared_consent_by": "alice"}'},
                    {**nb, "id": "nb2", "settings": "{}"},
                    {**nb, "id": "nb3", "settings": "not json"},
                ],
            )
            conn.execute(kernels.insert(), rows)
        assert schema.upgrade_schema(engine) == ("0002", schema.head_revision())
        with engine.connect() as conn:
            got = conn.execute(sa.text('SELECT notebook_id, "user", resource, kernel_name, info, run FROM collab_kernels')).all()
        assert sorted(tuple(r) for r in got) == [
            ("nb1", "", "server:gpu", "python3", "{}", None),
            ("nb2", "", "server:", "python3", "{}", None),
            ("nb2", "bob", "server:", "python3", '{"id": "k"}', '{"cell": "c"}'),
            ("nb3", "alice", "local", "alt", "{}", None),
        ]
        with schema.migration_lock(engine) as conn:
            conn.execute(
                sa.text(
                    'INSERT INTO collab_kernels (notebook_id, "user", resource, kernel_name, provider, info, run, updated_at)'
                    " VALUES ('nb3', 'alice', 'local', 'python3', 'local', '{}', NULL, 9.0)"
                )
            )
            command.downgrade(schema.alembic_config(connection=conn), "0002")
        with engine.connect() as conn:
            back = conn.execute(sa.text('SELECT notebook_id, "user", kernel_name FROM collab_kernels')).all()
            tables = set(sa.inspect(conn).get_table_names())
        assert sorted(tuple(r) for r in back) == [("nb1", "", "python3"), ("nb2", "", "python3"), ("nb2", "bob", "python3"), ("nb3", "alice", "python3")]
        assert "collab_kernel_choices" not in tables
    finally:
        engine.dispose()


# -- 0004_comments: comment threads, comments, read marks, notices ------------------------------------

COMMENT_TABLES = {"collab_comment_threads", "collab_comments", "collab_comment_reads", "collab_comment_notices"}


def test_0004_comments_upgrades_and_downgrades_alone(db_url: str) -> None:
    """From 0003 up to 0004_comments: the four tables, written and read through the service's
    comment store; down again: they are gone and everything of 0003 is as it was."""
    from hub_collab.comments.store import CommentStore

    engine = make_engine(db_url)
    try:
        with schema.migration_lock(engine) as conn:
            command.upgrade(schema.alembic_config(connection=conn), "0003")
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO collab_notebooks (id, name, created_by, created_at, updated_at, epoch, settings)"
                    " VALUES ('nb1', 'n', 'alice', 0, 0, 'e', '{}')"
                )
            )
        with schema.migration_lock(engine) as conn:
            command.upgrade(schema.alembic_config(connection=conn), "0004_comments")
            assert COMMENT_TABLES <= set(sa.inspect(conn).get_table_names())
        store = CommentStore(engine)
        created = store.create_thread("nb1", "c1", "alice", "hi @bob", ["bob"], (b"\x01\x06source\x00", b"\x01\x06source\x00", "q"), 5)
        assert created is not None
        thread, comment, notices = created
        assert store.reply("nb1", thread["id"], "bob", "re", [], 5)[0] == "ok"
        assert [n["user"] for n in notices] == ["bob"] and store.mark_read("nb1", "bob", "c1") > comment["id"]
        assert store.counts("nb1", "alice") == {"c1": {"threads": 1, "open": 1, "unread": 1}}
        with schema.migration_lock(engine) as conn:
            command.downgrade(schema.alembic_config(connection=conn), "0003")
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            assert not COMMENT_TABLES & tables
            assert conn.execute(sa.text("SELECT name FROM collab_notebooks")).scalars().all() == ["n"]
            assert schema.database_revision(conn) == "0003"
    finally:
        engine.dispose()


def test_the_comment_store_keeps_its_limits(tmp_path: Path) -> None:
    """At most ``max_threads`` per cell and ``max_comments`` per thread (the service answers 413)."""
    from hub_collab.comments.store import CommentStore

    engine = make_engine(f"sqlite:///{tmp_path / 'limits.sqlite'}")
    try:
        schema.ensure_schema(engine)
        store = CommentStore(engine)
        made = [store.create_thread("nb", "c", "alice", f"t{i}", [], None, 3) for i in range(4)]
        assert [m is not None for m in made] == [True, True, True, False]
        assert store.create_thread("nb", "other", "alice", "x", [], None, 3) is not None
        first = made[0]
        assert first is not None
        tid = first[0]["id"]
        assert [store.reply("nb", tid, "bob", "r", [], 3)[0] for _ in range(3)] == ["ok", "ok", "full"]
    finally:
        engine.dispose()


# -- 0005: the history ----------------------------------------------------------------------------


def test_the_state_before_0005_becomes_each_docs_baseline_and_a_downgrade_keeps_the_live_log(db_url: str) -> None:
    """A notebook's docs at 0003 (a checkpoint, and log rows after it) are, after 0005, each
    doc's baseline: version 0 of its history, and what the notebook at any earlier time
    shows; new updates are recorded on top. A downgrade drops the history tables only."""
    from pycrdt import Doc, Text

    from hub_collab.history.store import HistoryStore, rebuild
    from hub_collab.store import Store

    engine = make_engine(db_url)
    doc: Doc[Any] = Doc()
    text = doc.get("source", type=Text)
    text += "checkpointed"
    checkpoint = doc.get_update()
    sv = doc.get_state()
    text += " + logged"
    logged = doc.get_update(sv)
    try:
        with schema.migration_lock(engine) as conn:
            command.upgrade(schema.alembic_config(connection=conn), "0003")
        with engine.begin() as conn:
            conn.execute(schema.notebooks.insert().values(id="nb1", name="n", created_by="alice", created_at=10.0, updated_at=10.0, epoch="e", settings="{}"))
            conn.execute(schema.doc_checkpoints.insert().values(notebook_id="nb1", doc="cell:a", upto=5, data=checkpoint))
            conn.execute(schema.doc_updates.insert(), [{"notebook_id": "nb1", "doc": "cell:a", "data": logged},
                                                       {"notebook_id": "nb1", "doc": "cell:b", "data": checkpoint}])
        assert schema.upgrade_schema(engine) == ("0003", schema.head_revision())
        history = HistoryStore(engine)
        assert set(history.doc_keys("nb1")) == {"cell:a", "cell:b"}
        assert history.baseline("nb1", "cell:a") and history.rows("nb1", "cell:a") == []
        base = history.state_at_version("nb1", "cell:a", 0)
        assert base is not None and str(rebuild([base]).get("source", type=Text)) == "checkpointed + logged"
        # later updates go on top of it, with their author
        sv = doc.get_state()
        text += "!"
        Store(engine).append_updates([("nb1", "cell:a", doc.get_update(sv), 20.0, "bob", "s1")])
        [row] = history.rows("nb1", "cell:a")
        assert (row.author, row.at) == ("bob", 20.0)
        at = history.states_at_time("nb1", ["cell:a", "cell:b"], 15.0)
        assert {k: str(rebuild([v]).get("source", type=Text)) for k, v in at.items()} == {
            "cell:a": "checkpointed + logged", "cell:b": "checkpointed"}  # fmt: skip
        assert str(rebuild([history.states_at_time("nb1", ["cell:a"], 20.0)["cell:a"]]).get("source", type=Text)) == "checkpointed + logged!"
        with schema.migration_lock(engine) as conn:
            command.downgrade(schema.alembic_config(connection=conn), "0003")
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            live = conn.execute(sa.select(sa.func.count()).select_from(schema.doc_updates)).scalar()
            kept = conn.execute(sa.select(schema.doc_checkpoints.c.data)).scalars().all()
        assert not tables & {"collab_history_docs", "collab_history_authors", "collab_doc_history", "collab_doc_snapshots"}
        assert live == 3 and kept == [checkpoint], "the live log and the checkpoints are untouched"
        assert schema.upgrade_schema(engine) == ("0003", schema.head_revision()), "and it upgrades again"
        assert differences(db_url) == []
    finally:
        engine.dispose()
