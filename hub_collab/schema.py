"""The service's database schema: every table on one :data:`metadata`, and its migrations.

Tables are defined here and only here; :mod:`hub_collab.store`, :mod:`hub_collab.chat`, :mod:`hub_collab.comments` and
:mod:`hub_collab.permissions.casbin_backend` import theirs. The schema changes only
through Alembic revisions in ``hub_collab/migrations/versions/`` (configured in code
by :func:`alembic_config`; no ``alembic.ini``). The revision a database is at is kept in
the table ``collab_alembic_version`` (not Alembic's default ``alembic_version``, which
JupyterHub uses, so both may share one database).

Use:

* :func:`ensure_schema` when the service (or a test) opens a database: it creates the
  schema on an empty database by running the migrations, accepts a current one, and
  raises :class:`SchemaTooOld` / :class:`SchemaTooNew` otherwise. Replicas starting at
  the same moment are serialised by :func:`migration_lock`.
* :func:`upgrade_schema` for ``hub-collab upgrade-db``: stamps a database made before
  migrations existed as :data:`FIRST_REVISION`, then upgrades to the head.

To change the schema: edit the tables here, then write a revision (autogenerate drafts
one against a database at the current head; read and fix it)::

    python -c 'from alembic import command; from hub_collab.schema import alembic_config;
    command.revision(alembic_config("sqlite:////tmp/head.sqlite"), "what changed", autogenerate=True)'

``tests/test_migrations.py`` fails while the migrations and these tables disagree.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError

log = logging.getLogger("hub_collab.schema")

__all__ = [
    "FIRST_REVISION",
    "MIGRATIONS_DIR",
    "VERSION_TABLE",
    "SchemaError",
    "SchemaTooNew",
    "SchemaTooOld",
    "alembic_config",
    "bulk_insert",
    "database_revision",
    "ensure_schema",
    "head_revision",
    "known_revision",
    "metadata",
    "migration_lock",
    "permission_rules_table",
    "upgrade_schema",
]

#: Every table of the service.
metadata = sa.MetaData()

#: the DB-API parameter markers :func:`bulk_insert` writes, by paramstyle
_MARKERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def bulk_insert(conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows`` (tuples in the order of ``columns``) into ``table`` in one
    ``executemany`` of the driver, in ``conn``'s transaction.

    For tens of thousands of rows (an import): SQLAlchemy's own executemany builds and
    checks each row's parameters in Python, which took most of a 5,000-cell import's
    transaction, and SQLite holds its write lock (everyone's commits wait) for as long.
    The values must already be what the driver takes (str, int, float, bytes, None)."""
    if not rows:
        return
    marker = _MARKERS.get(conn.dialect.paramstyle)
    if marker is None:  # a driver we do not know: SQLAlchemy's own way
        conn.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    quote = conn.dialect.identifier_preparer
    names = ", ".join(quote.quote(c) for c in columns)
    markers = ", ".join([marker] * len(columns))
    conn.exec_driver_sql(f"INSERT INTO {quote.format_table(table)} ({names}) VALUES ({markers})", list(rows))

#: Where Alembic keeps the revision a database is at.
VERSION_TABLE = "collab_alembic_version"
#: The schema of the last release without migrations (``tests/fixtures/release-0.sqlite``).
FIRST_REVISION = "0001"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: The tables of that release: it created all of them at every start.
FIRST_TABLES = frozenset(
    {"collab_notebooks", "collab_doc_updates", "collab_doc_checkpoints", "collab_audit",
     "collab_chat", "collab_permission_rules"}
)  # fmt: skip

#: The command that upgrades a database; named in every refusal to start.
UPGRADE_COMMAND = "hub-collab upgrade-db"

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")

# -- tables ------------------------------------------------------------------------

notebooks = sa.Table(
    "collab_notebooks",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("epoch", sa.String(64), nullable=False),
    sa.Column("settings", sa.Text, nullable=False, default="{}"),
)

doc_updates = sa.Table(
    "collab_doc_updates",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("notebook_id", sa.String(64), nullable=False, index=True),
    sa.Column("doc", sa.String(80), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sqlite_autoincrement=True,  # never reuse the id of a row a checkpoint deleted
)

doc_checkpoints = sa.Table(
    "collab_doc_checkpoints",
    metadata,
    sa.Column("notebook_id", sa.String(64), primary_key=True),
    sa.Column("doc", sa.String(80), primary_key=True),
    sa.Column("upto", sa.BigInteger, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

audit = sa.Table(
    "collab_audit",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("notebook_id", sa.String(64), nullable=False, index=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(128), nullable=False, default=""),
    sa.Column("detail", sa.Text, nullable=False, default="{}"),
    sqlite_autoincrement=True,
)

chat_messages = sa.Table(
    "collab_chat",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("notebook_id", sa.String(64), nullable=False),
    sa.Column("author", sa.String(255), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("edited_at", sa.Float, nullable=True),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("deleted_by", sa.String(255), nullable=True),
    sa.Column("mentions", sa.Text, nullable=False, default="[]"),
    sa.Column("refs", sa.Text, nullable=False, default="[]"),
    sa.Index("ix_collab_chat_notebook_id_id", "notebook_id", "id"),
    # ids are never reused, even after the newest row of a deleted notebook is purged
    sqlite_autoincrement=True,
)


comment_threads = sa.Table(
    "collab_comment_threads",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("notebook_id", sa.String(64), nullable=False),
    sa.Column("cell_id", sa.String(64), nullable=False),
    sa.Column("author", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    # Yjs relative positions (encoded) of the range's ends in the cell's source, or NULL
    sa.Column("anchor_start", sa.LargeBinary, nullable=True),
    sa.Column("anchor_end", sa.LargeBinary, nullable=True),
    # the anchored text when the thread was opened (bounded)
    sa.Column("quote", sa.Text, nullable=True),
    sa.Column("resolved", sa.Boolean, nullable=False, default=False),
    sa.Column("resolved_by", sa.String(255), nullable=True),
    sa.Column("resolved_at", sa.Float, nullable=True),
    # the cell was deleted: the thread is kept, marked, for the notebook's owner and admins
    sa.Column("cell_deleted", sa.Boolean, nullable=False, default=False),
    sa.Index("ix_collab_comment_threads_nb_cell", "notebook_id", "cell_id", "id"),
    sqlite_autoincrement=True,
)

comments = sa.Table(
    "collab_comments",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("thread_id", sa.BigInteger, nullable=False),
    sa.Column("notebook_id", sa.String(64), nullable=False),
    sa.Column("cell_id", sa.String(64), nullable=False),
    sa.Column("author", sa.String(255), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("edited_at", sa.Float, nullable=True),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("deleted_by", sa.String(255), nullable=True),
    sa.Column("mentions", sa.Text, nullable=False, default="[]"),
    sa.Index("ix_collab_comments_thread", "thread_id", "id"),
    sa.Index("ix_collab_comments_nb_cell", "notebook_id", "cell_id", "id"),
    sqlite_autoincrement=True,
)

comment_reads = sa.Table(
    "collab_comment_reads",
    metadata,
    # a user has read a cell's comments up to (and with) this comment id
    sa.Column("notebook_id", sa.String(64), primary_key=True),
    sa.Column("user", sa.String(255), primary_key=True),
    sa.Column("cell_id", sa.String(64), primary_key=True),
    sa.Column("seen_upto", sa.BigInteger, nullable=False),
)

comment_notices = sa.Table(
    "collab_comment_notices",
    metadata,
    # someone was mentioned in a comment, or got a reply in a thread they opened
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("notebook_id", sa.String(64), nullable=False),
    sa.Column("user", sa.String(255), nullable=False),
    sa.Column("cell_id", sa.String(64), nullable=False),
    sa.Column("thread_id", sa.BigInteger, nullable=False),
    sa.Column("comment_id", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_collab_comment_notices_user", "notebook_id", "user", "id"),
    sqlite_autoincrement=True,
)


kernels = sa.Table(
    "collab_kernels",
    metadata,
    # the notebook, and "" for its shared kernel or the user of a per-user kernel
    sa.Column("notebook_id", sa.String(64), primary_key=True),
    sa.Column("user", sa.String(255), primary_key=True),
    # where it runs ("server:<name>", "gateway", "local": hub_collab/kernels/resources.py)
    # and its kernelspec: a user may keep kernels on several resources (switching back)
    sa.Column("resource", sa.String(300), primary_key=True),
    sa.Column("kernel_name", sa.String(255), primary_key=True),
    sa.Column("provider", sa.String(32), nullable=False),
    # JSON the provider takes to find the kernel again (KernelConnection.info)
    sa.Column("info", sa.Text, nullable=False),
    # JSON of the execution in progress when last seen (cell, msg_id, who, doc), or NULL
    sa.Column("run", sa.Text, nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
)

kernel_choices = sa.Table(
    "collab_kernel_choices",
    metadata,
    # per-user mode: the resource and kernelspec a user picked for a notebook
    sa.Column("notebook_id", sa.String(64), primary_key=True),
    sa.Column("user", sa.String(255), primary_key=True),
    sa.Column("resource", sa.String(300), nullable=False),
    # "" for the notebook's own kernelspec
    sa.Column("kernel_name", sa.String(255), nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)


# -- history (hub_collab/history; revision 0005) --------------------------------------
# Every accepted update is kept with who sent it and when (the live log above is
# checkpointed and compacted; these rows are not, but for the retention of
# `hub-collab prune-history`). Docs and authors are named by small integer keys so that
# a row costs little more than the update it holds.

history_docs = sa.Table(
    "collab_history_docs",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("notebook_id", sa.String(64), nullable=False),
    sa.Column("doc", sa.String(80), nullable=False),
    sa.UniqueConstraint("notebook_id", "doc", name="uq_collab_history_docs_notebook_doc"),
    sqlite_autoincrement=True,
)

history_authors = sa.Table(
    "collab_history_authors",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    # the Hub user, from the authenticated session ("" for the server's own writes)
    sa.Column("author", sa.String(255), nullable=False),
    # the connection it came through ("" for REST requests and the server)
    sa.Column("session", sa.String(64), nullable=False),
    sa.UniqueConstraint("author", "session", name="uq_collab_history_authors_author_session"),
    sqlite_autoincrement=True,
)

doc_history = sa.Table(
    "collab_doc_history",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("doc_key", sa.BigInteger, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("author_key", sa.BigInteger, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    # a day's updates compacted into one row: the JSON list of its authors (else NULL)
    sa.Column("authors", sa.Text, nullable=True),
    sa.Index("ix_collab_doc_history_doc_key_id", "doc_key", "id"),
    # the activity feed reads a notebook's rows newest first
    sa.Index("ix_collab_doc_history_at", "at"),
    sqlite_autoincrement=True,
)

doc_snapshots = sa.Table(
    "collab_doc_snapshots",
    metadata,
    sa.Column("doc_key", sa.BigInteger, primary_key=True),
    # the doc's state with every history row of it up to this id
    sa.Column("upto", sa.BigInteger, primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
    # the state the doc had when history began to be kept (revision 0005), not a keyframe
    sa.Column("baseline", sa.Boolean, nullable=False, default=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
)


def permission_rules_table(meta: sa.MetaData, name: str) -> sa.Table:
    """A casbin_rule-shaped table (``ptype``, ``v0``..``v5``) named ``name`` on ``meta``.

    The service's is :data:`permission_rules`; tests and benchmarks may build others on
    a MetaData of their own (outside the migrations).
    """
    return sa.Table(
        name,
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ptype", sa.String(255)),
        *(sa.Column(f"v{i}", sa.String(255)) for i in range(6)),
        sa.Index(f"ix_{name}_nb_obj", "v1", "v2"),
    )


permission_rules = permission_rules_table(metadata, "collab_permission_rules")


# -- revisions ---------------------------------------------------------------------


class SchemaError(RuntimeError):
    """The database's schema is not the one this code needs; the message is one line."""


class SchemaTooOld(SchemaError):
    """Older than the code (or made before migrations): run ``hub-collab upgrade-db``."""


class SchemaTooNew(SchemaError):
    """At a revision this code does not know: a newer release upgraded it."""


class _Empty:
    def __repr__(self) -> str:
        return "EMPTY"


class _Unversioned:
    def __repr__(self) -> str:
        return "UNVERSIONED"


#: :func:`database_revision` of a database without any of the service's tables.
EMPTY = _Empty()
#: :func:`database_revision` of one with tables but no revision (made before migrations).
UNVERSIONED = _Unversioned()

Revision = str | _Empty | _Unversioned


def alembic_config(url: str | None = None, connection: sa.Connection | None = None) -> Config:
    """Alembic's configuration for our migrations, on ``connection`` (or a new engine on ``url``)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The revision this code's tables are at."""
    head = _scripts().get_current_head()
    assert head is not None, "hub_collab/migrations/versions has no revision"
    return head


def known_revision(revision: str) -> bool:
    """Whether ``revision`` is one of this code's migrations."""
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False


def database_revision(conn: sa.Connection) -> Revision:
    """The revision ``conn``'s database is at, :data:`EMPTY` or :data:`UNVERSIONED`."""
    heads = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_heads()
    if heads:
        return ",".join(sorted(heads))
    ours = set(metadata.tables)
    return UNVERSIONED if ours & set(sa.inspect(conn).get_table_names()) else EMPTY


def _where(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _mismatch(engine: sa.Engine, revision: Revision) -> SchemaError:
    head = head_revision()
    if revision is UNVERSIONED:
        return SchemaTooOld(
            f"the database {_where(engine)} was made by a hub-collab release before schema"
            f" migrations; back it up, then run `{UPGRADE_COMMAND}`"
        )
    assert isinstance(revision, str)
    if known_revision(revision):
        return SchemaTooOld(
            f"the database {_where(engine)} is at schema revision {revision}, older than this"
            f" hub-collab's {head}; back it up, then run `{UPGRADE_COMMAND}`"
        )
    return SchemaTooNew(
        f"the database {_where(engine)} is at schema revision {revision}, which this hub-collab"
        f" (schema {head}) does not know: a newer release upgraded it; run that release"
        " or restore a backup"
    )


#: The PostgreSQL advisory lock key of schema changes (a fixed 64-bit number).
LOCK_KEY = int.from_bytes(hashlib.blake2b(b"hub-collab schema", digest_size=8).digest(), "big", signed=True)


@contextmanager
def migration_lock(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection in a transaction that holds the database's schema lock; committed on exit.

    PostgreSQL: ``pg_advisory_xact_lock`` on :data:`LOCK_KEY`, and the DDL in the same
    transaction. SQLite: ``BEGIN IMMEDIATE`` (the database's write lock, across
    processes; waits up to the engine's busy timeout), DDL included. Whoever gets the
    lock second must read the revision again: the first may have migrated meanwhile.
    """
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            # The driver would otherwise commit before each DDL statement: take over.
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")
            return
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        yield conn
        conn.commit()


def _upgrade(conn: sa.Connection, target: str = "head") -> None:
    command.upgrade(alembic_config(connection=conn), target)


def ensure_schema(engine: sa.Engine) -> str:
    """Make sure ``engine``'s database is at this code's schema; return what was done.

    ``"created"``: it was empty and the migrations ran (under :func:`migration_lock`);
    ``"current"``: it already was. Raises :class:`SchemaTooOld` or :class:`SchemaTooNew`
    (with a one-line message naming ``hub-collab upgrade-db`` where it helps) otherwise:
    the service never upgrades a database by itself, an operator does, after a backup.
    """
    head = head_revision()
    with engine.connect() as conn:
        revision = database_revision(conn)
    if revision == head:
        return "current"
    # Anything else is read again under the lock: the read above is two queries (the
    # version table, then the table names), and a replica starting at the same moment
    # may commit the whole schema between them, which read as a database made before
    # migrations (seen in CI with four replicas started together).
    with migration_lock(engine) as conn:
        revision = database_revision(conn)
        if revision is EMPTY:
            _upgrade(conn)
            log.info("created the schema (revision %s) in %s", head, _where(engine))
            return "created"
    if revision == head:
        return "current"  # another process created it while we waited for the lock
    raise _mismatch(engine, revision)


def upgrade_schema(engine: sa.Engine) -> tuple[Revision, str]:
    """Upgrade ``engine``'s database to this code's schema; return (revision before, after).

    A database made before migrations is stamped as :data:`FIRST_REVISION` first (its
    tables must all be there); an empty one gets the whole schema. Raises
    :class:`SchemaTooNew` for a revision this code does not know.
    """
    head = head_revision()
    with migration_lock(engine) as conn:
        before = database_revision(conn)
        if before == head:
            return before, head
        if isinstance(before, str) and not known_revision(before):
            raise _mismatch(engine, before)
        if before is UNVERSIONED:
            missing = sorted(FIRST_TABLES - set(sa.inspect(conn).get_table_names()))
            if missing:
                raise SchemaError(
                    f"the database {_where(engine)} has some of hub-collab's tables but not"
                    f" {', '.join(missing)}; it was not made by a hub-collab release: not touching it"
                )
            command.stamp(alembic_config(connection=conn), FIRST_REVISION)
        _upgrade(conn)
    return before, head
