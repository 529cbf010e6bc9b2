"""The history tables: :class:`HistoryStore`.

Every update the service accepts is written twice in one transaction: to the live log
(``collab_doc_updates``, checkpointed and compacted as before: what loading a notebook
reads) and here, to ``collab_doc_history``, with the time it was accepted and the
author and session of the connection it came through (never anything the client
claimed). Docs and (author, session) pairs are named by integer keys
(``collab_history_docs``, ``collab_history_authors``), created on first use in a
transaction of their own and cached, so a row costs little more than its update.

Rebuilding a doc at a version (a row id) or at a time applies the newest snapshot
(``collab_doc_snapshots``) at or before it and the rows after that snapshot. Snapshots
are *keyframes*, written at checkpoints once a doc has :data:`KEYFRAME_ROWS` rows past
its last one (so a rebuild applies at most about that many rows), and *baselines*: the
state a doc had when history began to be kept (revision 0005).

A keyframe covers only rows older than :data:`KEYFRAME_LAG` seconds: with several
replicas on PostgreSQL, a row may become visible after rows with higher ids (its
transaction commits later), and a keyframe must not be taken past a row still in flight.

Retention (:meth:`HistoryStore.compact`, ``hub-collab prune-history``) merges the rows of
each doc and UTC day older than the cut into one row, which keeps the day's authors
(``authors``): older history is then one version per doc and day.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from pycrdt import Doc, merge_updates
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from ..schema import (
    bulk_insert,
    doc_history,
    doc_snapshots,
    history_authors,
    history_docs,
    notebooks,
)

log = logging.getLogger("hub_collab.history")

#: a doc gets a keyframe once this many history rows follow its last snapshot
KEYFRAME_ROWS = 200
#: keyframes cover rows at least this old (seconds; see the module's docs)
KEYFRAME_LAG = 60.0
#: rows per IN (...) list
_CHUNK = 500
#: the columns of a history row that :meth:`HistoryStore.prepare` fills
_INSERTED = ("doc_key", "at", "author_key", "data")
DAY = 86400.0
#: the history of a notebook that has no record is dropped by :meth:`HistoryStore.compact`
#: only once its newest row is this old (seconds): a large import on SQLite writes its
#: docs' history in parts before the notebook's record (``Store.create_notebook``), and
#: a prune running meanwhile must not take it for a deleted notebook's
ORPHAN_GRACE = 3600.0

#: one update to record: (notebook, doc, update, accepted at, author, session)
HistoryRow = tuple[str, str, bytes, float, str, str]


@dataclass(frozen=True)
class RowInfo:
    """One history row without its update: who, when, how large."""

    id: int
    at: float
    author: str
    session: str
    size: int
    #: a compacted day: its authors (None for a single update)
    authors: tuple[str, ...] | None = None


@dataclass
class CompactReport:
    """What :meth:`HistoryStore.compact` did (or would do, in a dry run)."""

    docs: int = 0
    rows_before: int = 0
    rows_after: int = 0
    keyframes_dropped: int = 0
    orphans_dropped: int = 0
    notebooks: set[str] = field(default_factory=set)


def _insert_ignoring_conflicts(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING (SQLite and PostgreSQL)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(postgresql.insert(table).on_conflict_do_nothing(), rows)
    elif dialect == "sqlite":
        conn.execute(sqlite.insert(table).on_conflict_do_nothing(), rows)
    else:  # pragma: no cover - the service supports these two
        raise RuntimeError(f"history: unsupported database {dialect!r}")


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _settled(conn: sa.Connection, keys: list[int]) -> list[int]:
    """Of the doc keys ``keys`` (of notebooks without a record), those whose newest
    history row is older than :data:`ORPHAN_GRACE`: a doc with a newer row, or with none
    yet (an import makes its doc keys first), may be an import's, in progress."""
    newest: dict[int, float] = {}
    for chunk in _chunks(keys):
        query = (
            sa.select(doc_history.c.doc_key, sa.func.max(doc_history.c.at))
            .where(doc_history.c.doc_key.in_(chunk))
            .group_by(doc_history.c.doc_key)
        )
        newest.update((int(k), float(at)) for k, at in conn.execute(query).all())
    settled = time.time() - ORPHAN_GRACE
    return [k for k in keys if k in newest and newest[k] < settled]


def _newest_snapshot(conn: sa.Connection, key: int, upto: int) -> Any:
    """The newest snapshot (``upto``, ``data``) of a doc covering no row past ``upto``, or None."""
    return conn.execute(
        sa.select(doc_snapshots.c.upto, doc_snapshots.c.data)
        .where(doc_snapshots.c.doc_key == key, doc_snapshots.c.upto <= upto)
        .order_by(doc_snapshots.c.upto.desc())
        .limit(1)
    ).first()


def rebuild(parts: Iterable[bytes]) -> Doc[Any]:
    """A Doc with ``parts`` (snapshot and updates) applied."""
    doc: Doc[Any] = Doc()
    for part in parts:
        doc.apply_update(part)
    return doc


class HistoryStore:
    """Synchronous access to the history tables (call from threads, never the event loop)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._doc_keys: dict[tuple[str, str], int] = {}
        self._author_keys: dict[tuple[str, str], int] = {}
        self._authors: dict[int, tuple[str, str]] = {}

    # -- keys -------------------------------------------------------------------------------

    def _resolve(
        self,
        table: sa.Table,
        cols: tuple[str, str],
        wanted: set[tuple[str, str]],
        cache: dict[tuple[str, str], int],
        *,
        create: bool,
        conn: sa.Connection | None = None,
    ) -> dict[tuple[str, str], int]:
        """Keys of ``wanted`` pairs (made if ``create``). Without ``conn`` in a transaction
        of their own, so a key cached here exists whatever happens to the caller's; with
        ``conn`` in the caller's, and nothing is cached (it may roll back)."""
        with self._lock:
            found = {k: cache[k] for k in wanted if k in cache}
        missing = sorted(wanted - found.keys())
        if not missing:
            return found
        if conn is None:
            with self.engine.begin() as own:
                self._lookup(own, table, cols, missing, found, create)
            with self._lock:
                for k in missing:
                    if k in found:
                        cache[k] = found[k]
        else:
            self._lookup(conn, table, cols, missing, found, create)
        return found

    @staticmethod
    def _lookup(
        conn: sa.Connection,
        table: sa.Table,
        cols: tuple[str, str],
        missing: list[tuple[str, str]],
        found: dict[tuple[str, str], int],
        create: bool,
    ) -> None:
        a, b = table.c[cols[0]], table.c[cols[1]]
        if create:
            _insert_ignoring_conflicts(conn, table, [{cols[0]: x, cols[1]: y} for x, y in missing])
        for chunk in _chunks(missing):
            firsts = sorted({x for x, _ in chunk})
            seconds = sorted({y for _, y in chunk})
            want = set(chunk)
            # both columns: a notebook's every doc, once per chunk, made an import's
            # 10,000 docs read 200,000 rows in its transaction
            for key, x, y in conn.execute(sa.select(table.c.id, a, b).where(a.in_(firsts), b.in_(seconds))).all():
                if (x, y) in want:
                    found[(x, y)] = int(key)

    def doc_keys(
        self, nb_id: str, docs: Iterable[str] | None = None, *, create: bool = False, conn: sa.Connection | None = None
    ) -> dict[str, int]:
        """doc name -> key of ``nb_id``'s docs (``docs``: only these; unknown ones left out)."""
        if docs is None:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    sa.select(history_docs.c.doc, history_docs.c.id).where(history_docs.c.notebook_id == nb_id)
                ).all()
            return {str(doc): int(key) for doc, key in rows}
        wanted = {(nb_id, d) for d in docs}
        found = self._resolve(history_docs, ("notebook_id", "doc"), wanted, self._doc_keys, create=create, conn=conn)
        return {d: k for (_, d), k in found.items()}

    def _author_key(self, pairs: set[tuple[str, str]], conn: sa.Connection | None = None) -> dict[tuple[str, str], int]:
        return self._resolve(history_authors, ("author", "session"), pairs, self._author_keys, create=True, conn=conn)

    def authors_of(self, keys: Iterable[int]) -> dict[int, tuple[str, str]]:
        """author key -> (author, session)."""
        wanted = set(keys)
        with self._lock:
            out = {k: self._authors[k] for k in wanted if k in self._authors}
        missing = sorted(wanted - out.keys())
        if missing:
            with self.engine.connect() as conn:
                for chunk in _chunks(missing):
                    for key, author, session in conn.execute(
                        sa.select(history_authors.c.id, history_authors.c.author, history_authors.c.session).where(
                            history_authors.c.id.in_(chunk)
                        )
                    ):
                        out[int(key)] = (str(author), str(session))
            with self._lock:
                self._authors.update(out)
        return out

    # -- writing ----------------------------------------------------------------------------

    def prepare(self, rows: Sequence[HistoryRow], conn: sa.Connection | None = None) -> list[dict[str, Any]]:
        """The ``collab_doc_history`` rows of ``rows``, their keys resolved (made in a
        transaction of their own, or in ``conn``'s); insert them with :meth:`insert`."""
        doc_keys: dict[str, dict[str, int]] = {}
        by_nb: dict[str, set[str]] = {}
        for nb, doc, *_ in rows:
            by_nb.setdefault(nb, set()).add(doc)
        for nb, docs in by_nb.items():
            doc_keys[nb] = self.doc_keys(nb, docs, create=True, conn=conn)
        authors = self._author_key({(author, session) for *_, author, session in rows}, conn)
        return [
            {"doc_key": doc_keys[nb][doc], "at": at, "author_key": authors[(author, session)], "data": data}
            for nb, doc, data, at, author, session in rows
        ]

    @staticmethod
    def insert(conn: sa.Connection, prepared: list[dict[str, Any]]) -> None:
        """Insert :meth:`prepare` d rows in the caller's transaction, with the driver's
        executemany (an import's are thousands: see :func:`~hub_collab.schema.bulk_insert`)."""
        bulk_insert(conn, doc_history, _INSERTED, [tuple(row[c] for c in _INSERTED) for row in prepared])

    @staticmethod
    def notebooks_without_record(conn: sa.Connection) -> list[str]:
        """Ids of the notebooks that have history but no record (see
        :meth:`hub_collab.store.Store.remove_unfinished_notebooks`)."""
        query = sa.select(history_docs.c.notebook_id).where(history_docs.c.notebook_id.not_in(sa.select(notebooks.c.id))).distinct()
        return [str(nb) for nb in conn.execute(query).scalars()]

    def forget_notebook(self, conn: sa.Connection, nb_id: str) -> None:
        """Delete a notebook's history in the caller's transaction (it is being deleted)."""
        keys = [int(k) for k in conn.execute(sa.select(history_docs.c.id).where(history_docs.c.notebook_id == nb_id)).scalars()]
        for chunk in _chunks(keys):
            conn.execute(doc_history.delete().where(doc_history.c.doc_key.in_(chunk)))
            conn.execute(doc_snapshots.delete().where(doc_snapshots.c.doc_key.in_(chunk)))
        conn.execute(history_docs.delete().where(history_docs.c.notebook_id == nb_id))
        with self._lock:
            for k in [k for k in self._doc_keys if k[0] == nb_id]:
                del self._doc_keys[k]

    # -- reading ----------------------------------------------------------------------------

    def _infos(self, rows: Sequence[Any]) -> list[RowInfo]:
        names = self.authors_of({int(r.author_key) for r in rows})
        out = []
        for r in rows:
            author, session = names.get(int(r.author_key), ("", ""))
            authors = tuple(json.loads(r.authors)) if r.authors is not None else None
            out.append(RowInfo(int(r.id), float(r.at), author, session, int(r.size), authors))
        return out

    def rows(self, nb_id: str, doc: str, *, before: int | None = None, limit: int = 1000) -> list[RowInfo]:
        """Up to ``limit`` rows of a doc with ids below ``before``, newest first."""
        key = self.doc_keys(nb_id, [doc]).get(doc)
        if key is None:
            return []
        query = sa.select(
            doc_history.c.id, doc_history.c.at, doc_history.c.author_key, doc_history.c.authors,
            sa.func.length(doc_history.c.data).label("size"),
        ).where(doc_history.c.doc_key == key)  # fmt: skip
        if before is not None:
            query = query.where(doc_history.c.id < before)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(doc_history.c.id.desc()).limit(limit)).all()
        return self._infos(rows)

    def rows_of_docs(
        self, nb_id: str, docs: Iterable[str], *, before: float, limit: int, before_id: int | None = None
    ) -> list[tuple[str, RowInfo]]:
        """Up to ``limit`` rows of any of ``docs`` accepted before ``before`` (or at
        ``before`` with an id below ``before_id``), newest first."""
        keys = self.doc_keys(nb_id, docs)
        if not keys:
            return []
        names = {k: d for d, k in keys.items()}
        query = (
            sa.select(
                doc_history.c.id, doc_history.c.doc_key, doc_history.c.at, doc_history.c.author_key,
                doc_history.c.authors, sa.func.length(doc_history.c.data).label("size"),
            )
            .where(
                doc_history.c.doc_key.in_(sorted(names)),
                doc_history.c.at < before
                if before_id is None
                else sa.or_(doc_history.c.at < before, sa.and_(doc_history.c.at == before, doc_history.c.id < before_id)),
            )
            .order_by(doc_history.c.at.desc(), doc_history.c.id.desc())
            .limit(limit)
        )  # fmt: skip
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [(names[int(r.doc_key)], info) for r, info in zip(rows, self._infos(rows), strict=True)]

    def baseline(self, nb_id: str, doc: str) -> bool:
        """Whether the doc has a baseline (a state from before history was kept)."""
        key = self.doc_keys(nb_id, [doc]).get(doc)
        if key is None:
            return False
        with self.engine.connect() as conn:
            return bool(
                conn.execute(
                    sa.select(sa.func.count()).select_from(doc_snapshots).where(
                        doc_snapshots.c.doc_key == key, doc_snapshots.c.baseline.is_(True)
                    )
                ).scalar()
            )

    def has_row(self, nb_id: str, doc: str, row_id: int) -> bool:
        key = self.doc_keys(nb_id, [doc]).get(doc)
        if key is None:
            return False
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(doc_history.c.id).where(doc_history.c.doc_key == key, doc_history.c.id == row_id)
            ).first()
        return found is not None

    def state_at_version(self, nb_id: str, doc: str, upto: int) -> bytes | None:
        """The doc with every history row of it up to id ``upto`` (and its baseline), as one
        update; None if it has no history."""
        key = self.doc_keys(nb_id, [doc]).get(doc)
        if key is None:
            return None
        with self.engine.connect() as conn:
            snap = _newest_snapshot(conn, key, upto)
            start = int(snap.upto) if snap is not None else 0
            rows = conn.execute(
                sa.select(doc_history.c.data)
                .where(doc_history.c.doc_key == key, doc_history.c.id > start, doc_history.c.id <= upto)
                .order_by(doc_history.c.id)
            ).scalars().all()
        parts = ([bytes(snap.data)] if snap is not None else []) + [bytes(r) for r in rows]
        return rebuild(parts).get_update()

    def docs_at_time(self, nb_id: str, docs: Iterable[str], at: float) -> dict[str, Doc[Any]]:
        """Each of ``docs`` as it was at time ``at`` (its newest snapshot from then and the
        rows accepted up to then); docs without history then are left out."""
        keys = self.doc_keys(nb_id, docs)
        if not keys:
            return {}
        names = {k: d for d, k in keys.items()}
        parts: dict[int, list[bytes]] = {}
        since: dict[int, int] = dict.fromkeys(names, 0)
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(names)):
                newest = (
                    sa.select(doc_snapshots.c.doc_key, sa.func.max(doc_snapshots.c.upto).label("upto"))
                    .where(doc_snapshots.c.doc_key.in_(chunk), doc_snapshots.c.at <= at)
                    .group_by(doc_snapshots.c.doc_key)
                    .subquery()
                )
                for key, upto, data in conn.execute(
                    sa.select(doc_snapshots.c.doc_key, doc_snapshots.c.upto, doc_snapshots.c.data).join(
                        newest,
                        sa.and_(newest.c.doc_key == doc_snapshots.c.doc_key, newest.c.upto == doc_snapshots.c.upto),
                    )
                ):
                    parts[int(key)] = [bytes(data)]
                    since[int(key)] = int(upto)
            # the rows after each doc's snapshot: one index range per doc (docs without a
            # snapshot have few rows: the keyframes keep it so)
            plain = sorted(k for k, u in since.items() if u == 0)
            ranged = sorted((k, u) for k, u in since.items() if u)
            wheres = [doc_history.c.doc_key.in_(c) for c in _chunks(plain)] + [
                sa.or_(*(sa.and_(doc_history.c.doc_key == k, doc_history.c.id > u) for k, u in c)) for c in _chunks(ranged, 50)
            ]
            for where in wheres:
                for key, data in conn.execute(
                    sa.select(doc_history.c.doc_key, doc_history.c.data)
                    .where(where, doc_history.c.at <= at)
                    .order_by(doc_history.c.id)
                ):
                    parts.setdefault(int(key), []).append(bytes(data))
        return {names[key]: rebuild(blobs) for key, blobs in parts.items()}

    def states_at_time(self, nb_id: str, docs: Iterable[str], at: float) -> dict[str, bytes]:
        """:meth:`docs_at_time`, each doc as one update."""
        return {name: doc.get_update() for name, doc in self.docs_at_time(nb_id, docs, at).items()}

    # -- keyframes --------------------------------------------------------------------------

    def make_keyframes(self, nb_id: str, *, now: float | None = None, every: int = KEYFRAME_ROWS) -> int:
        """Write a keyframe for each doc of the notebook with at least ``every`` rows
        (older than :data:`KEYFRAME_LAG`) past its newest snapshot; return how many."""
        cut = (time.time() if now is None else now) - KEYFRAME_LAG
        keys = list(self.doc_keys(nb_id).values())
        made = 0
        for chunk in _chunks(keys):
            since = sa.func.coalesce(
                sa.select(sa.func.max(doc_snapshots.c.upto))
                .where(doc_snapshots.c.doc_key == doc_history.c.doc_key)
                .scalar_subquery(),
                0,
            )
            with self.engine.connect() as conn:
                due = conn.execute(
                    sa.select(doc_history.c.doc_key, sa.func.count(), sa.func.max(doc_history.c.id))
                    .where(doc_history.c.doc_key.in_(chunk), doc_history.c.id > since, doc_history.c.at < cut)
                    .group_by(doc_history.c.doc_key)
                    .having(sa.func.count() >= every)
                ).all()
            for key, _count, upto in due:
                made += self._keyframes(int(key), int(upto), every)
        return made

    def _keyframes(self, key: int, upto: int, every: int) -> int:
        """Keyframes of one doc every ``every`` rows past its newest snapshot, up to ``upto``."""
        with self.engine.begin() as conn:
            snap = _newest_snapshot(conn, key, upto)
            start = int(snap.upto) if snap is not None else 0
            rows = conn.execute(
                sa.select(doc_history.c.id, doc_history.c.at, doc_history.c.data)
                .where(doc_history.c.doc_key == key, doc_history.c.id > start, doc_history.c.id <= upto)
                .order_by(doc_history.c.id)
            ).all()
            doc = rebuild([bytes(snap.data)] if snap is not None else [])
            made: list[dict[str, Any]] = []
            latest = 0.0
            for n, row in enumerate(rows, 1):
                doc.apply_update(bytes(row.data))
                latest = max(latest, float(row.at))
                if n % every == 0:
                    made.append({"doc_key": key, "upto": int(row.id), "at": latest, "baseline": False, "data": doc.get_update()})
            if made:  # another replica may have made the same ones meanwhile
                _insert_ignoring_conflicts(conn, doc_snapshots, made)
        return len(made)

    # -- retention --------------------------------------------------------------------------

    def compact(self, cut: float, *, dry_run: bool = False) -> CompactReport:
        """Merge, for every doc, the rows of each UTC day that ends before ``cut`` into
        one row (its authors kept); drop the keyframes before ``cut`` but each doc's newest
        one, and the history of notebooks that no longer exist (settled for
        :data:`ORPHAN_GRACE`)."""
        cut = cut - cut % DAY  # whole days only
        report = CompactReport()
        with self.engine.connect() as conn:
            live = {str(n) for n in conn.execute(sa.select(notebooks.c.id)).scalars()}
            docs = conn.execute(sa.select(history_docs.c.id, history_docs.c.notebook_id)).all()
            orphans = _settled(conn, sorted({int(k) for k, nb in docs if nb not in live}))
        if orphans:
            report.orphans_dropped = len(orphans)
            if not dry_run:
                with self.engine.begin() as conn:
                    for chunk in _chunks(orphans):
                        conn.execute(doc_history.delete().where(doc_history.c.doc_key.in_(chunk)))
                        conn.execute(doc_snapshots.delete().where(doc_snapshots.c.doc_key.in_(chunk)))
                        conn.execute(history_docs.delete().where(history_docs.c.id.in_(chunk)))
        for key, nb in docs if cut > 0 else ():
            if nb not in live:
                continue
            before, after, dropped = self._compact_doc(int(key), cut, dry_run)
            if before != after or dropped:
                report.docs += 1
                report.notebooks.add(str(nb))
            report.rows_before += before
            report.rows_after += after
            report.keyframes_dropped += dropped
        return report

    def _compact_doc(self, key: int, cut: float, dry_run: bool) -> tuple[int, int, int]:
        """(rows before the cut, rows after compaction, keyframes dropped) of one doc."""
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(doc_history.c.id, doc_history.c.at, doc_history.c.author_key, doc_history.c.authors)
                .where(doc_history.c.doc_key == key, doc_history.c.at < cut)
                .order_by(doc_history.c.id)
            ).all()
            days: dict[int, list[Any]] = {}
            for r in rows:
                days.setdefault(int(float(r.at) // DAY), []).append(r)
            merge = [group for group in days.values() if len(group) > 1]
            olds = conn.execute(
                sa.select(doc_snapshots.c.upto)
                .where(doc_snapshots.c.doc_key == key, doc_snapshots.c.baseline.is_(False), doc_snapshots.c.at < cut)
                .order_by(doc_snapshots.c.upto)
            ).scalars().all()
            drop = [int(u) for u in olds[:-1]]
            if dry_run:
                return len(rows), len(days), len(drop)
            names = self.authors_of({int(r.author_key) for group in merge for r in group})
            for group in merge:
                self._merge_rows(conn, group, names)
            for chunk in _chunks(drop):
                conn.execute(doc_snapshots.delete().where(doc_snapshots.c.doc_key == key, doc_snapshots.c.upto.in_(chunk)))
        return len(rows), len(days), len(drop)

    @staticmethod
    def _merge_rows(conn: sa.Connection, group: list[Any], names: dict[int, tuple[str, str]]) -> None:
        ids = [int(r.id) for r in group]
        data = conn.execute(sa.select(doc_history.c.data).where(doc_history.c.id.in_(ids)).order_by(doc_history.c.id)).scalars().all()
        authors: list[str] = []
        for r in group:
            who = list(json.loads(r.authors)) if r.authors is not None else [names.get(int(r.author_key), ("", ""))[0]]
            authors.extend(a for a in who if a and a not in authors)
        last = group[-1]
        conn.execute(
            doc_history.update()
            .where(doc_history.c.id == int(last.id))
            .values(
                # merged, not rebuilt: the day's updates depend on earlier days' items
                data=merge_updates(*(bytes(d) for d in data)),
                at=max(float(r.at) for r in group),
                authors=json.dumps(authors),
            )
        )
        for chunk in _chunks(ids[:-1]):
            conn.execute(doc_history.delete().where(doc_history.c.id.in_(chunk)))
