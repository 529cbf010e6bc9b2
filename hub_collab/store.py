"""The store: notebooks, the CRDT update log with checkpoints, and the audit log.

:class:`Store` wraps one SQLAlchemy engine (SQLite by default, PostgreSQL for
several replicas). Methods are synchronous and short; the hot path (appending
CRDT updates) goes through :class:`UpdateLog`, which group-commits on a
dedicated thread so the event loop never waits on the disk.

Persistence model: the update log is the source of truth. Each applied update
is appended with an increasing id; a checkpoint stores the merged state of one
doc up to an id, after which older updates of that doc are deleted. Loading a
doc applies its checkpoint and then every later update. Applying an update
twice is a no-op for a CRDT, so a checkpoint that already contains an update
still in the log duplicates nothing.

History: every update appended is also written, in the same transaction, to the
history tables with its author, session and time (:mod:`hub_collab.history.store`,
``Store.history``); checkpoints do not touch it, only retention does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import logs
from .history.store import HistoryRow, HistoryStore
from .permissions.casbin_backend import RULE_COLUMNS
from .schema import (
    audit,
    bulk_insert,
    doc_checkpoints,
    doc_updates,
    ensure_schema,
    kernel_choices,
    kernels,
    notebooks,
)
from .tasks import cancel_and_wait

if TYPE_CHECKING:
    from .metrics import Metrics

log = logging.getLogger("hub_collab.store")

_UPDATE_COLUMNS = ("notebook_id", "doc", "data")
#: on SQLite, a new notebook of more rows than this is written in parts of as many (see
#: Store.create_notebook): each part holds the write lock for a few milliseconds
PART_ROWS = 2000


def _parts(rows: list[Any]) -> Iterator[list[Any]]:
    for i in range(0, len(rows), PART_ROWS):
        yield rows[i : i + PART_ROWS]


@dataclass(frozen=True)
class NotebookRecord:
    id: str
    name: str
    created_by: str
    created_at: float
    updated_at: float
    epoch: str
    settings: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "epoch": self.epoch,
        }


@dataclass(frozen=True)
class KernelRecord:
    """A kernel that ran when the service last saw it (``Store.kernels_of``)."""

    notebook_id: str
    user: str
    resource: str
    kernel_name: str
    provider: str
    info: dict[str, Any]
    run: dict[str, Any] | None


def make_engine(url: str) -> Engine:
    """An engine with the settings we rely on (WAL and a busy timeout for SQLite)."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_pre_ping=True
        )

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    from .permissions.store import engine_url

    return sa.create_engine(engine_url(url), pool_pre_ping=True, pool_size=10, max_overflow=10)


def _row_to_record(row: Any) -> NotebookRecord:
    return NotebookRecord(
        id=row.id,
        name=row.name,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        epoch=row.epoch,
        settings=json.loads(row.settings or "{}"),
    )


class Store:
    """Synchronous access to the service's tables. Create, then :meth:`start`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: every accepted update with its author and time
        self.history = HistoryStore(engine)

    def start(self) -> None:
        """Check the schema (created on an empty database; see :func:`~hub_collab.schema.ensure_schema`)."""
        ensure_schema(self.engine)

    def stop(self) -> None:
        self.engine.dispose()

    # -- notebooks ------------------------------------------------------------------

    def create_notebook(
        self,
        nb_id: str,
        name: str,
        created_by: str,
        epoch: str,
        initial_updates: Iterable[tuple[str, bytes]] = (),
        settings: dict[str, Any] | None = None,
        *,
        within: Callable[[sa.Connection], None] | None = None,
        rules: tuple[sa.Table, Sequence[Sequence[Any]]] | None = None,
    ) -> NotebookRecord:
        """Store a new notebook, its docs' first updates (and their history), ``rules``
        (its permission rule table and rows, see :func:`~hub_collab.permissions.casbin_backend.rule_rows`)
        and ``within(conn)`` (more writes, an audit entry) so that it exists whole or not
        at all: any failure leaves nothing behind.

        One transaction, except on SQLite for a notebook of more than
        :data:`PART_ROWS` rows (a large import): SQLite holds its one write lock from a
        transaction's first write to its commit, and everyone's edits wait for it to
        commit theirs (a 5,000-cell import held it for most of a second). There the rows
        go in parts of :data:`PART_ROWS`, each its own transaction, and the notebook's
        record comes last, with ``within``: until it commits, the notebook does not exist
        for anyone (everything is found through it), and a failure deletes the parts
        written. Parts a crash left behind are removed at the next start
        (:meth:`remove_unfinished_notebooks`)."""
        now = time.time()
        # made before any transaction: rows are tens of thousands for a large import
        initial = list(initial_updates)
        rows = [(nb_id, doc, data) for doc, data in initial]
        history_rows: list[HistoryRow] = [(nb_id, doc, data, now, created_by, "") for doc, data in initial]
        record = {
            "id": nb_id,
            "name": name,
            "created_by": created_by,
            "created_at": now,
            "updated_at": now,
            "epoch": epoch,
            "settings": json.dumps(settings or {}),
        }
        rule_table, rule_rows = rules if rules is not None else (None, ())
        if self.engine.dialect.name == "sqlite" and len(rows) + len(rule_rows) > PART_ROWS:
            try:
                self._write_in_parts(rows, history_rows, rule_table, rule_rows)
                with self.engine.begin() as conn:
                    conn.execute(notebooks.insert().values(**record))
                    if within is not None:
                        within(conn)
            except BaseException:
                self._remove_parts(nb_id, rule_table)
                raise
        else:
            with self.engine.begin() as conn:
                conn.execute(notebooks.insert().values(**record))
                bulk_insert(conn, doc_updates, _UPDATE_COLUMNS, rows)
                # its history's keys in this transaction too: a failed import leaves nothing
                self.history.insert(conn, self.history.prepare(history_rows, conn))
                if rule_table is not None:
                    bulk_insert(conn, rule_table, RULE_COLUMNS, rule_rows)
                if within is not None:
                    within(conn)
        return NotebookRecord(nb_id, name, created_by, now, now, epoch, settings or {})

    def _write_in_parts(
        self,
        rows: list[tuple[str, str, bytes]],
        history_rows: list[HistoryRow],
        rule_table: sa.Table | None,
        rule_rows: Sequence[Sequence[Any]],
    ) -> None:
        for part in _parts(rows):
            with self.engine.begin() as conn:
                bulk_insert(conn, doc_updates, _UPDATE_COLUMNS, part)
        # its doc keys are made in transactions of their own (see HistoryStore.prepare)
        for history_part in _parts(history_rows):
            prepared = self.history.prepare(history_part)
            with self.engine.begin() as conn:
                self.history.insert(conn, prepared)
        if rule_table is not None:
            for rule_part in _parts(list(rule_rows)):
                with self.engine.begin() as conn:
                    bulk_insert(conn, rule_table, RULE_COLUMNS, rule_part)

    def _remove_parts(self, nb_id: str, rule_table: sa.Table | None) -> None:
        """Delete what :meth:`_write_in_parts` wrote of ``nb_id`` (it has no record)."""
        with self.engine.begin() as conn:
            conn.execute(doc_updates.delete().where(doc_updates.c.notebook_id == nb_id))
            self.history.forget_notebook(conn, nb_id)
            if rule_table is not None:
                conn.execute(rule_table.delete().where(rule_table.c.ptype.in_(("p", "p2")), rule_table.c.v1 == nb_id))

    def remove_unfinished_notebooks(self, rule_table: sa.Table) -> list[str]:
        """Delete the rows of notebooks that have no record: parts of a large import on
        SQLite that a crash cut short (see :meth:`create_notebook`). Call it at start,
        before the permission store loads its rules, on SQLite only (one service writes
        it; with several replicas another may be importing). Returns their ids."""
        known = sa.select(notebooks.c.id)
        with self.engine.begin() as conn:
            left = set(conn.execute(sa.select(doc_updates.c.notebook_id).where(doc_updates.c.notebook_id.not_in(known)).distinct()).scalars())
            left |= set(
                conn.execute(
                    sa.select(rule_table.c.v1).where(rule_table.c.ptype.in_(("p", "p2")), rule_table.c.v1.not_in(known)).distinct()
                ).scalars()
            )
            left |= set(self.history.notebooks_without_record(conn))
            for nb_id in sorted(left):
                conn.execute(doc_updates.delete().where(doc_updates.c.notebook_id == nb_id))
                self.history.forget_notebook(conn, nb_id)
                conn.execute(rule_table.delete().where(rule_table.c.ptype.in_(("p", "p2")), rule_table.c.v1 == nb_id))
        return sorted(left)

    def get_notebook(self, nb_id: str) -> NotebookRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(notebooks.select().where(notebooks.c.id == nb_id)).first()
        return _row_to_record(row) if row else None

    def list_notebooks(self) -> list[NotebookRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(notebooks.select().order_by(notebooks.c.created_at)).all()
        return [_row_to_record(r) for r in rows]

    def update_notebook(self, nb_id: str, **values: Any) -> None:
        if "settings" in values:
            values["settings"] = json.dumps(values["settings"])
        values.setdefault("updated_at", time.time())
        with self.engine.begin() as conn:
            conn.execute(notebooks.update().where(notebooks.c.id == nb_id).values(**values))

    def delete_notebook(self, nb_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(doc_updates.delete().where(doc_updates.c.notebook_id == nb_id))
            conn.execute(doc_checkpoints.delete().where(doc_checkpoints.c.notebook_id == nb_id))
            conn.execute(kernels.delete().where(kernels.c.notebook_id == nb_id))
            conn.execute(kernel_choices.delete().where(kernel_choices.c.notebook_id == nb_id))
            self.history.forget_notebook(conn, nb_id)
            conn.execute(notebooks.delete().where(notebooks.c.id == nb_id))

    # -- running kernels (see hub_collab.kernels.manager) ----------------------------

    # A kernel is named by its key: (notebook, user or "" for the shared kernel, resource,
    # kernelspec) — hub_collab.kernels.kernel.Kernel.key.

    @staticmethod
    def _kernel_where(key: tuple[str, str, str, str]) -> Any:
        nb_id, user, resource, kernel_name = key
        return sa.and_(
            kernels.c.notebook_id == nb_id,
            kernels.c.user == user,
            kernels.c.resource == resource,
            kernels.c.kernel_name == kernel_name,
        )

    def save_kernel(self, key: tuple[str, str, str, str], provider: str, info: dict[str, Any]) -> None:
        """Remember a kernel that runs."""
        nb_id, user, resource, kernel_name = key
        with self.engine.begin() as conn:
            conn.execute(kernels.delete().where(self._kernel_where(key)))
            conn.execute(
                kernels.insert().values(
                    notebook_id=nb_id,
                    user=user,
                    resource=resource,
                    kernel_name=kernel_name,
                    provider=provider,
                    info=json.dumps(info),
                    run=None,
                    updated_at=time.time(),
                )
            )

    def set_kernel_run(self, key: tuple[str, str, str, str], run: dict[str, Any] | None) -> None:
        """Record the execution in progress in a remembered kernel (None: nothing runs)."""
        with self.engine.begin() as conn:
            conn.execute(
                kernels.update()
                .where(self._kernel_where(key))
                .values(run=None if run is None else json.dumps(run), updated_at=time.time())
            )

    def forget_kernel(self, key: tuple[str, str, str, str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(kernels.delete().where(self._kernel_where(key)))

    def set_kernel_choice(self, nb_id: str, user: str, resource: str, kernel_name: str) -> None:
        """Per-user mode: what ``user`` picked for the notebook (``kernel_name`` "": its own)."""
        with self.engine.begin() as conn:
            conn.execute(
                kernel_choices.delete().where(kernel_choices.c.notebook_id == nb_id, kernel_choices.c.user == user)
            )
            conn.execute(
                kernel_choices.insert().values(
                    notebook_id=nb_id, user=user, resource=resource, kernel_name=kernel_name, updated_at=time.time()
                )
            )

    def kernel_choices_of(self, nb_id: str) -> dict[str, tuple[str, str]]:
        """user -> (resource, kernel_name) picked for the notebook."""
        with self.engine.connect() as conn:
            rows = conn.execute(kernel_choices.select().where(kernel_choices.c.notebook_id == nb_id)).all()
        return {r.user: (r.resource, r.kernel_name) for r in rows}

    def kernels_of(self, nb_id: str) -> list[KernelRecord]:
        """The remembered kernels of a notebook."""
        with self.engine.connect() as conn:
            rows = conn.execute(kernels.select().where(kernels.c.notebook_id == nb_id)).all()
        return [
            KernelRecord(
                notebook_id=r.notebook_id,
                user=r.user,
                resource=r.resource,
                kernel_name=r.kernel_name,
                provider=r.provider,
                info=json.loads(r.info),
                run=json.loads(r.run) if r.run else None,
            )
            for r in rows
        ]

    # -- CRDT state -----------------------------------------------------------------

    def load_docs(self, nb_id: str) -> tuple[dict[str, list[bytes]], list[int]]:
        """All persisted state of a notebook: doc name → [checkpoint?, updates...], and the
        ids of the log rows read.

        Every log row is applied, also one older than the checkpoint (a row that
        committed late on another replica): a CRDT update applied twice changes nothing.
        """
        ids: list[int] = []
        with self.engine.connect() as conn:
            # (fetched whole and unpacked as tuples: a 1,000-cell notebook is 2,001 rows)
            checkpoints = conn.execute(
                sa.select(doc_checkpoints.c.doc, doc_checkpoints.c.data).where(doc_checkpoints.c.notebook_id == nb_id)
            ).all()
            updates = conn.execute(
                sa.select(doc_updates.c.id, doc_updates.c.doc, doc_updates.c.data)
                .where(doc_updates.c.notebook_id == nb_id)
                .order_by(doc_updates.c.id)
            ).all()
        out: dict[str, list[bytes]] = {doc: [data] for doc, data in checkpoints}
        for row_id, doc, data in updates:
            out.setdefault(doc, []).append(data)
            ids.append(row_id)
        return out, ids

    def load_docs_since(self, nb_id: str, after_id: int) -> tuple[dict[str, list[bytes]], list[int]]:
        """Like :meth:`load_docs`, but only log rows with ``id > after_id``, and the
        checkpoints only if one was written since (it may hold rows folded into it)."""
        out: dict[str, list[bytes]] = {}
        ids: list[int] = []
        with self.engine.connect() as conn:
            newest = conn.execute(
                sa.select(sa.func.max(doc_checkpoints.c.upto)).where(doc_checkpoints.c.notebook_id == nb_id)
            ).scalar()
            if newest is not None and newest > after_id:
                for row in conn.execute(
                    sa.select(doc_checkpoints.c.doc, doc_checkpoints.c.data).where(doc_checkpoints.c.notebook_id == nb_id)
                ):
                    out[row.doc] = [row.data]
            for update in conn.execute(
                sa.select(doc_updates.c.id, doc_updates.c.doc, doc_updates.c.data)
                .where(doc_updates.c.notebook_id == nb_id, doc_updates.c.id > after_id)
                .order_by(doc_updates.c.id)
            ):
                out.setdefault(update.doc, []).append(update.data)
                ids.append(update.id)
        return out, ids

    def append_updates(self, rows: Sequence[HistoryRow | tuple[str, str, bytes]]) -> None:
        """Append (notebook, doc, update, at, author, session) rows to the log and the
        history in one transaction (a row of three: the server's, accepted now)."""
        now = time.time()
        full: list[HistoryRow] = [row if len(row) == 6 else (row[0], row[1], row[2], now, "", "") for row in rows]
        history = self.history.prepare(full)
        with self.engine.begin() as conn:
            # the driver's executemany for both: SQLAlchemy's own took as long as the
            # history's insert (about 0.1 ms for a lone keystroke, on the writer thread)
            bulk_insert(conn, doc_updates, _UPDATE_COLUMNS, [(row[0], row[1], row[2]) for row in full])
            self.history.insert(conn, history)

    def updates_since(self, nb_id: str, after_id: int) -> list[tuple[int, str, bytes]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(doc_updates.c.id, doc_updates.c.doc, doc_updates.c.data)
                .where(doc_updates.c.notebook_id == nb_id, doc_updates.c.id > after_id)
                .order_by(doc_updates.c.id)
            ).all()
        return [(r.id, r.doc, r.data) for r in rows]

    def count_updates(self, nb_id: str) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(doc_updates).where(doc_updates.c.notebook_id == nb_id)
                ).scalar()
                or 0
            )

    def checkpoint(self, nb_id: str, states: dict[str, bytes], covered: list[int]) -> None:
        """Replace the notebook's checkpoints by ``states`` and delete the log rows ``covered``.

        ``states`` must contain every row in ``covered`` (the caller merged them first)
        and every live doc of the notebook: checkpoints of docs not in it (deleted
        cells) are dropped. Only the rows named are deleted, so a row that another
        replica commits meanwhile is kept.
        """
        upto = max(covered, default=0)
        with self.engine.begin() as conn:
            conn.execute(doc_checkpoints.delete().where(doc_checkpoints.c.notebook_id == nb_id))
            if states:
                conn.execute(
                    doc_checkpoints.insert(),
                    [{"notebook_id": nb_id, "doc": d, "upto": upto, "data": s} for d, s in states.items()],
                )
            for start in range(0, len(covered), 1000):
                chunk = covered[start : start + 1000]
                conn.execute(doc_updates.delete().where(doc_updates.c.notebook_id == nb_id, doc_updates.c.id.in_(chunk)))

    def drop_docs(self, nb_id: str, docs: Iterable[str]) -> None:
        names = list(docs)
        if not names:
            return
        with self.engine.begin() as conn:
            conn.execute(
                doc_updates.delete().where(doc_updates.c.notebook_id == nb_id, doc_updates.c.doc.in_(names))
            )
            conn.execute(
                doc_checkpoints.delete().where(
                    doc_checkpoints.c.notebook_id == nb_id, doc_checkpoints.c.doc.in_(names)
                )
            )

    # -- audit ------------------------------------------------------------------------

    def add_audit(self, nb_id: str, actor: str, action: str, target: str = "", detail: Any = None) -> None:
        """Record an audit entry; once stored, it is also logged (``hub_collab.audit``)."""
        with self.engine.begin() as conn:
            self.insert_audit(conn, nb_id, actor, action, target, detail)
        logs.audit(nb_id, actor, action, target, detail)

    @staticmethod
    def insert_audit(conn: sa.Connection, nb_id: str, actor: str, action: str, target: str = "", detail: Any = None) -> None:
        """:meth:`add_audit` through ``conn``, in the caller's transaction (which logs the
        entry once it is committed: :func:`hub_collab.logs.audit`)."""
        conn.execute(
            audit.insert().values(
                notebook_id=nb_id,
                at=time.time(),
                actor=actor,
                action=action,
                target=target,
                detail=json.dumps(detail if detail is not None else {}),
            )
        )

    def list_audit(
        self,
        nb_id: str,
        *,
        before: int | None = None,
        limit: int = 100,
        before_at: float | None = None,
        target: str | None = None,
        action: str | None = None,
    ) -> list[dict[str, Any]]:
        """Entries newest first: with ids below ``before``, times below ``before_at``, of
        one ``target`` and ``action`` when given."""
        query = sa.select(audit).where(audit.c.notebook_id == nb_id)
        if before is not None:
            query = query.where(audit.c.id < before)
        if before_at is not None:
            query = query.where(audit.c.at < before_at)
        if target is not None:
            query = query.where(audit.c.target == target)
        if action is not None:
            query = query.where(audit.c.action == action)
        order = (audit.c.at.desc(), audit.c.id.desc()) if before_at is not None else (audit.c.id.desc(),)
        query = query.order_by(*order).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            {
                "id": r.id,
                "at": r.at,
                "actor": r.actor,
                "action": r.action,
                "target": r.target,
                "detail": json.loads(r.detail),
            }
            for r in rows
        ]


class UpdateLog:
    """Group-commits CRDT updates on one background thread.

    :meth:`append` never blocks; :meth:`flush` waits until everything appended
    before the call is durable. Start with :meth:`start`, stop with :meth:`stop`
    (which flushes), or use ``async with``.
    """

    def __init__(self, store: Store, *, max_delay: float = 0.005, metrics: Metrics | None = None) -> None:
        self.store = store
        self.max_delay = max_delay
        #: commit times and failures (None: metrics are off)
        self.metrics = metrics
        self._pending: list[HistoryRow] = []
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._appended = 0
        self._committed = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._after: list[tuple[int, Callable[[], None]]] = []
        self._lock = threading.Lock()
        self.failures = 0

    async def __aenter__(self) -> UpdateLog:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("UpdateLog.start() called twice; create one UpdateLog per Store")
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="collab-store")
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is None:
            return
        await self.flush()
        await cancel_and_wait(self._task)
        self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def append(
        self,
        nb_id: str,
        doc: str,
        data: bytes,
        *,
        then: Callable[[], None] | None = None,
        author: str = "",
        session: str = "",
    ) -> None:
        """Queue an update for the next commit; ``then`` runs once it is committed.

        ``author`` and ``session`` are the authenticated user and connection it came
        through ("" for the server's own writes), recorded in the history with the time.
        """
        if self._wake is None:
            raise RuntimeError("UpdateLog.append() before start(): call start() in the event loop first")
        self._pending.append((nb_id, doc, data, time.time(), author, session))
        self._appended += 1
        if then is not None:
            self._after.append((self._appended, then))
        self._wake.set()

    def after_pending(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once everything appended so far is committed (now, if it is)."""
        if self._appended == self._committed:
            fn()
        else:
            self._after.append((self._appended, fn))

    async def flush(self) -> None:
        """Wait until every update appended so far is committed."""
        if self._appended == self._committed:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._appended, fut))
        assert self._wake is not None
        self._wake.set()
        await fut

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.max_delay:
                await asyncio.sleep(self.max_delay)
            if not self._pending:
                self._release()
                continue
            batch, self._pending = self._pending, []
            began = time.perf_counter()
            try:
                await loop.run_in_executor(self._executor, self.store.append_updates, batch)
            except Exception:
                # Keep the batch: it is retried with the next one; nothing acknowledged is lost.
                if self.metrics is not None:
                    self.metrics.commit_failures.inc()
                self.failures += 1
                log.exception("could not persist %d updates; retrying", len(batch))
                self._pending[:0] = batch
                await asyncio.sleep(min(5.0, 0.1 * self.failures))
                self._wake.set()
                continue
            if self.metrics is not None:
                self.metrics.commit_seconds.observe(time.perf_counter() - began)
            self.failures = 0
            self._committed += len(batch)
            self._release()

    def _release(self) -> None:
        if self._after and self._after[0][0] <= self._committed:
            ready = [fn for target, fn in self._after if target <= self._committed]
            self._after = [(t, fn) for t, fn in self._after if t > self._committed]
            for fn in ready:
                try:
                    fn()
                except Exception:
                    log.exception("a callback after a commit failed")
        keep = []
        for target, fut in self._waiters:
            if self._committed >= target:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((target, fut))
        self._waiters = keep

    def pending_for(self, nb_id: str) -> Iterator[tuple[str, bytes]]:
        for nb, doc, data, *_ in self._pending:
            if nb == nb_id:
                yield doc, data
