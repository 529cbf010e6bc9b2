"""Importing notebooks (issue 13, "hostile clients", item 6), through the real Hub and proxy.

``POST api/notebooks`` with ``content`` (nbformat v4) is held to documented limits, the
service's defaults here: ``HubCollab.max_cells`` cells, ``max_doc_bytes`` for each cell's
source/metadata/attachments and for its outputs (the limit an edit is held to),
``max_import_bytes`` in all. A limit passed is a 413 ``too_large`` naming the limit and the
cell; malformed content is a 400 ``invalid_notebook`` saying where. None of these, and no
failure of the database half way, leaves anything behind: not in any user's list, not in
any of the service's tables (read from its SQLite file).

An import at the limits round-trips (the export has exactly the cells sent), and while it
runs another user's requests are answered: the import's work happens in an import worker
process, not on the service's event loop (no timing is asserted; bob's answers must
arrive while alice's import is still being worked on, which with the work on the event
loop they could not). ``benchmarks/bench_import.py`` measures the lag.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import psutil
import pytest
import sqlalchemy as sa
from pycrdt import Doc
from test_bad_input import error_body, rest

from hub_collab.app import HubCollab
from hub_collab.client import CollabClient
from hub_collab.documents.importer import held_bytes
from hub_collab.documents.notebook import seed_cell, seed_out, validate_ipynb
from hub_collab.documents.outputs import seed_outputs

pytestmark = pytest.mark.asyncio(loop_scope="module")

_TRAITS = HubCollab.class_traits()
MAX_CELLS: int = _TRAITS["max_cells"].default_value
MAX_DOC_BYTES: int = _TRAITS["max_doc_bytes"].default_value
MAX_IMPORT_BYTES: int = _TRAITS["max_import_bytes"].default_value
#: every table a notebook writes to
TABLES = (
    "collab_notebooks",
    "collab_doc_updates",
    "collab_doc_checkpoints",
    "collab_permission_rules",
    "collab_audit",
    "collab_chat",
    "collab_kernels",
    "collab_kernel_choices",
    "collab_history_docs",
    "collab_history_authors",
    "collab_doc_history",
    "collab_doc_snapshots",
)
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def code(cid: str, source: Any = "", outputs: list[Any] | None = None, count: int | None = None, **meta: Any) -> dict[str, Any]:
    return {"id": cid, "cell_type": "code", "metadata": dict(meta), "execution_count": count, "source": source, "outputs": outputs or []}


def markdown(cid: str, source: Any = "", **extra: Any) -> dict[str, Any]:
    return {"id": cid, "cell_type": "markdown", "metadata": {}, "source": source, **extra}


def notebook(cells: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": cells,
        **extra,
    }


def stream(text: str) -> dict[str, Any]:
    return {"output_type": "stream", "name": "stdout", "text": text}


def varied_cells(n: int) -> list[dict[str, Any]]:
    """``n`` cells of every kind: code with streams, results, images and errors; markdown
    with attachments; raw; unicode; tags."""
    cells: list[dict[str, Any]] = []
    for i in range(n):
        cid = f"c{i:05d}"
        kind = i % 6
        if kind == 0:
            cells.append(markdown(cid, f"## Part {i}\n\nSome *text* — ünïcödé ✓ {i}"))
        elif kind == 1:
            cells.append(code(cid, f"x{i} = {i}\nprint(x{i})", [stream(f"{i}\n")], i, tags=["t"]))
        elif kind == 2:
            result = {"output_type": "execute_result", "execution_count": i, "metadata": {}, "data": {"text/plain": f"[{i}, {i + 1}]"}}
            cells.append(code(cid, f"[{i}, {i + 1}]", [result], i))
        elif kind == 3:
            image = {"output_type": "display_data", "metadata": {"image/png": {"width": 1}}, "data": {"image/png": PNG, "text/plain": "<Figure>"}}
            cells.append(code(cid, "plot()", [image, stream("done\n")], i))
        elif kind == 4:
            error = {"output_type": "error", "ename": "ValueError", "evalue": f"bad {i}", "traceback": ["Traceback", f"ValueError: bad {i}"]}
            cells.append(code(cid, f"raise ValueError('bad {i}')", [error], i))
        else:
            att = {"a.png": {"image/png": PNG}}
            cells.append(markdown(cid, "![a](attachment:a.png)", attachments=att) if i % 12 == 5 else {"id": cid, "cell_type": "raw", "metadata": {}, "source": f"raw {i}"})
    return cells


@dataclass
class Env:
    alice: CollabClient
    bob: CollabClient
    admin: CollabClient
    db: str  # the service's SQLite file

    def counts(self) -> dict[str, int]:
        """Rows in each of the service's notebook tables, read from its database."""
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}  # noqa: S608

    async def state(self) -> tuple[dict[str, int], list[str], list[str]]:
        """What an import must not change when it fails: the tables, alice's and the admin's lists."""
        return (
            self.counts(),
            sorted(n["id"] for n in await self.alice.list_notebooks()),
            sorted(n["id"] for n in await self.admin.list_notebooks()),
        )


@pytest.fixture(scope="module")
async def env(hub: Any, collab: Any) -> AsyncIterator[Env]:
    assert collab.db_url.startswith("sqlite:///")
    e = Env(
        CollabClient(collab.public_url, hub.token("alice"), request_timeout=300),
        CollabClient(collab.public_url, hub.token("bob"), request_timeout=60),
        CollabClient(collab.public_url, hub.token("admin"), request_timeout=60),
        collab.db_url[len("sqlite:///") :],
    )
    try:
        yield e
    finally:
        for c in (e.alice, e.bob, e.admin):
            c.close()


async def refused(env: Env, body: bytes, status: int, code: str, *fragments: str) -> dict[str, Any]:
    """POST ``body`` as alice: assert the error and its message, and that nothing was left."""
    before = await env.state()
    err = error_body(await rest(env.alice, "POST", "api/notebooks", body), status, code)
    for fragment in fragments:
        assert fragment in err["message"], (fragment, err["message"])
    assert await env.state() == before, "a refused import left something behind"
    return err


def body_of(content: Any, name: str = "imported") -> bytes:
    return json.dumps({"name": name, "content": content}).encode()


# -- the limits ------------------------------------------------------------------------------


async def test_more_cells_than_max_cells_is_refused(env: Env) -> None:
    content = notebook([{"id": f"c{i}", "cell_type": "raw", "metadata": {}, "source": ""} for i in range(MAX_CELLS + 1)])
    await refused(
        env, body_of(content), 413, "too_large",
        f"has {MAX_CELLS + 1:,} cells", f"at most {MAX_CELLS:,}", "HubCollab.max_cells", f"content.cells[{MAX_CELLS}]",
    )  # fmt: skip


BIG = MAX_DOC_BYTES + 1
OVER_ONE_CELL = {
    # the finding: a 30 MB cell was accepted
    "30 MB source": code("big", "x" * 30_000_000),
    "source": code("big", "y" * BIG),
    "source as lines": code("big", ["z" * 1000 + "\n"] * (BIG // 1001 + 1)),
    "source in several bytes per character": markdown("big", "é" * (BIG // 2 + 1)),
    "metadata": code("big", "", tags=["t" * BIG]),
    "attachments": markdown("big", "", attachments={"a.png": {"image/png": "A" * BIG}}),
    "a stream": code("big", "print()", [stream("s" * BIG)]),
    "many outputs": code("big", "print()", [stream("o" * 1000) for _ in range(BIG // 1000 + 1)]),
    "an image": code("big", "plot()", [{"output_type": "display_data", "metadata": {}, "data": {"image/png": "B" * BIG}}]),
}


@pytest.mark.parametrize("cell", OVER_ONE_CELL.values(), ids=OVER_ONE_CELL.keys())
async def test_a_cell_over_max_doc_bytes_is_refused(env: Env, cell: dict[str, Any]) -> None:
    what = "its outputs hold" if cell.get("outputs") else "its source, metadata and attachments hold"
    content = notebook([code("small", "1"), cell, code("after", "2")])
    await refused(
        env, body_of(content), 413, "too_large",
        "content.cells[1] (id 'big') is too large", what, f"at most {MAX_DOC_BYTES:,}", "HubCollab.max_doc_bytes",
    )  # fmt: skip


async def test_a_cell_whose_document_is_over_max_doc_bytes_once_built_is_refused(env: Env) -> None:
    """Text under the limit, a document over it (a map entry costs more than its key):
    the check on the built document, as the room counts it, refuses it too."""
    keys = {f"k{i:06d}": 0 for i in range(MAX_DOC_BYTES // 12)}
    cell = {"id": "big", "cell_type": "raw", "metadata": {"many": keys}, "source": ""}
    assert held_bytes(cell) < MAX_DOC_BYTES
    await refused(
        env, body_of(notebook([cell])), 413, "too_large",
        "content.cells[0] (id 'big') is too large", "make a document of", "HubCollab.max_doc_bytes",
    )  # fmt: skip


async def test_notebook_metadata_over_max_doc_bytes_is_refused(env: Env) -> None:
    content = notebook([code("a")], metadata={"blob": "m" * BIG})
    await refused(env, body_of(content), 413, "too_large", "content.metadata holds", "HubCollab.max_doc_bytes")


async def test_more_than_max_import_bytes_in_all_is_refused(env: Env) -> None:
    per_cell = MAX_DOC_BYTES - 1000
    n = MAX_IMPORT_BYTES // per_cell + 1  # each cell fits, all of them do not
    content = notebook([markdown(f"m{i}", "q" * per_cell) for i in range(n)])
    await refused(
        env, body_of(content), 413, "too_large",
        f"at most {MAX_IMPORT_BYTES:,} may be imported", "HubCollab.max_import_bytes",
        f"the limit is passed at content.cells[{n - 1}] (id 'm{n - 1}')",
    )  # fmt: skip


# -- malformed content ---------------------------------------------------------------------------

RAW = "RAW:"  # a body written as JSON text (what json.dumps cannot produce)
MALFORMED = {
    "not an object": ([], "content must be an nbformat v4 notebook object"),
    "nbformat 3": ({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": []}, "content.nbformat must be 4"),
    "cells not a list": ({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": {}}, "content.cells must be a list"),
    "a cell not an object": (notebook([code("a"), 7]), "content.cells[1] must be an object"),
    "unknown cell_type": (notebook([{"id": "a", "cell_type": "python", "metadata": {}, "source": ""}]), "content.cells[0] is not valid nbformat v4"),
    "source a number": (notebook([code("a"), code("b", 5)]), "content.cells[1].source is not valid nbformat v4"),
    "cell without metadata": (notebook([{"id": "a", "cell_type": "raw", "source": ""}]), "'metadata' is a required property"),
    "unknown output_type": (notebook([code("a", "", [{"output_type": "bogus"}])]), "content.cells[0].outputs[0] is not valid nbformat v4"),
    "duplicate ids": (notebook([code("a"), code("a")]), "content.cells[1].id 'a' is invalid or duplicated"),
    "path-like id": (notebook([code("../../etc")]), "content.cells[0].id '../../etc' is invalid"),
    "nbformat_minor a string": (notebook([], nbformat_minor="five"), "content.nbformat_minor must be an integer"),
    "lone surrogate": (
        RAW + '{"name": "s", "content": {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": '
        '[{"id": "a", "cell_type": "raw", "metadata": {"k": "x\\ud800"}, "source": ""}]}}',
        "content.cells[0] (id 'a') holds a string that is not valid Unicode",
    ),
    "nested 900 deep": (
        RAW + '{"name": "d", "content": {"nbformat": 4, "nbformat_minor": 5, "metadata": {"k": '
        + "[" * 900 + "]" * 900 + '}, "cells": []}}',
        "content is nested too deeply",
    ),
}


@pytest.mark.parametrize("content, message", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_nbformat_is_a_clear_400(env: Env, content: Any, message: str) -> None:
    body = content[len(RAW) :].encode() if isinstance(content, str) else body_of(content)
    await refused(env, body, 400, "invalid_notebook", message)


async def test_a_name_that_is_not_text_is_a_400(env: Env) -> None:
    body = b'{"name": "x\\udc00", "content": {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}}'
    await refused(env, body, 400, "invalid_name", "name must be 1-255 characters")


async def test_a_database_failure_half_way_leaves_nothing(env: Env, collab: Any) -> None:
    """The notebook's record and docs are written, then its cells' permissions fail (a
    trigger in the service's database refuses one): the transaction leaves nothing."""
    content = notebook([code("first", "1"), code("poison", "2"), code("last", "3")])
    with sqlite3.connect(env.db) as conn:
        conn.execute(
            "CREATE TRIGGER test_import_poison BEFORE INSERT ON collab_permission_rules "
            "WHEN NEW.v2 = 'poison' BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
    try:
        await refused(env, body_of(content, "poisoned"), 500, "internal_error")
    finally:
        with sqlite3.connect(env.db) as conn:
            conn.execute("DROP TRIGGER test_import_poison")
    assert "injected failure" in collab.tail(200)
    nb = await env.alice.create_notebook("poisoned, then not", content=content)
    assert [c["id"] for c in nb["cells"]] == ["first", "poison", "last"]
    await env.alice.delete_notebook(nb["id"])


async def test_a_large_import_written_in_parts_that_fails_leaves_nothing(env: Env, collab: Any) -> None:
    """On SQLite a large import is written in parts, each its own transaction (so that
    others' commits go in between), and its record last: a failure in the last part
    deletes the parts already committed. The side table shows that parts did commit
    before the failure (in one transaction it would have been rolled back with them)."""
    cells = [code(f"c{i}", str(i)) for i in range(299)] + [code("poison", "2")]
    with sqlite3.connect(env.db) as conn:
        conn.execute("CREATE TABLE test_import_parts (n INTEGER)")
        conn.execute(
            "CREATE TRIGGER test_import_parts_seen AFTER INSERT ON collab_doc_updates "
            "BEGIN INSERT INTO test_import_parts VALUES (1); END"
        )
        conn.execute(
            "CREATE TRIGGER test_import_poison BEFORE INSERT ON collab_permission_rules "
            "WHEN NEW.v2 = 'poison' BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
    try:
        before = env.counts()
        error_body(await rest(env.alice, "POST", "api/notebooks", body_of(notebook(cells), "poisoned, large")), 500, "internal_error")
        after = env.counts()
        # the history's dictionary of authors may keep alice's entry (all notebooks share it)
        assert after["collab_history_authors"] <= before["collab_history_authors"] + 1
        assert {t: n for t, n in after.items() if t != "collab_history_authors"} == {
            t: n for t, n in before.items() if t != "collab_history_authors"
        }, "a failed import in parts left something behind"
        with sqlite3.connect(env.db) as conn:
            committed = conn.execute("SELECT count(*) FROM test_import_parts").fetchone()[0]
    finally:
        with sqlite3.connect(env.db) as conn:
            conn.execute("DROP TRIGGER test_import_poison")
            conn.execute("DROP TRIGGER test_import_parts_seen")
            conn.execute("DROP TABLE test_import_parts")
    assert committed == 601, "the docs' rows (300 cells, their outputs, index) were committed in parts before the failure"
    assert "injected failure" in collab.tail(200)


async def test_what_a_crash_left_of_an_import_in_parts_is_removed_at_start(tmp_path: Any) -> None:
    """A crash between the parts and the record leaves rows of a notebook that does not
    exist: the next start removes them (Store.remove_unfinished_notebooks) and nothing of a
    notebook that does."""
    from hub_collab.permissions.casbin_backend import rule_class
    from hub_collab.permissions.store import new_notebook_perms
    from hub_collab.schema import ensure_schema
    from hub_collab.store import PART_ROWS, Store, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'parts.sqlite'}")
    try:
        ensure_schema(engine)
        store = Store(engine)
        rules = rule_class("collab_permission_rules").__table__
        cells = [f"c{i}" for i in range(300)]
        updates = [(f"cell:{c}", b"\x00\x00") for c in cells]

        def rules_of(nb: str) -> tuple[Any, list[Any]]:
            return rules, new_notebook_perms(nb, "alice", cells).rows()

        assert len(updates) + len(rules_of("x")[1]) > PART_ROWS
        store.create_notebook("whole", "whole", "alice", "e", updates, rules=rules_of("whole"))
        # what a crash before the record leaves
        store._write_in_parts(  # noqa: SLF001
            [("cut", d, u) for d, u in updates], [("cut", d, u, 1.0, "alice", "") for d, u in updates], *rules_of("cut")
        )
        with engine.connect() as conn:
            left = conn.execute(sa.text("SELECT count(*) FROM collab_doc_updates WHERE notebook_id = 'cut'")).scalar()
        assert left == len(updates)
        assert store.remove_unfinished_notebooks(rules) == ["cut"]
        with engine.connect() as conn:
            for table, column in (("collab_doc_updates", "notebook_id"), ("collab_permission_rules", "v1"), ("collab_history_docs", "notebook_id")):
                by_nb = dict(conn.execute(sa.text(f"SELECT {column}, count(*) FROM {table} GROUP BY {column}")).all())  # noqa: S608
                assert "cut" not in by_nb and by_nb.get("whole", 0) > 0, (table, by_nb)
        assert store.remove_unfinished_notebooks(rules) == []
    finally:
        engine.dispose()


# -- a valid import at the limits ---------------------------------------------------------------


def worker_pids(collab: Any) -> list[int]:
    """The service's import workers (spawned multiprocessing children)."""
    out = []
    for child in psutil.Process(collab.process.pid).children():
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                out.append(child.pid)
        except psutil.NoSuchProcess:
            continue
    return out


def workers_cpu(collab: Any) -> float:
    total = 0.0
    for pid in worker_pids(collab):
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


async def idle_workers_cpu(collab: Any) -> float:
    """The import workers' CPU time once it stops growing (they have started and are idle)."""
    last, same = workers_cpu(collab), 0
    while same < 10:
        await asyncio.sleep(0.02)
        now = workers_cpu(collab)
        same = same + 1 if now == last else 0
        last = now
    return last


async def test_an_import_at_the_limits_round_trips_while_others_are_answered(env: Env, collab: Any) -> None:
    cells = varied_cells(MAX_CELLS)
    content = notebook(cells)
    bobs = await env.bob.create_notebook("bob's own")
    idle = await idle_workers_cpu(collab)
    task = asyncio.create_task(env.alice.create_notebook("at the limit", content=content))
    # the import's work is under way once an import worker has spent 0.1 s of CPU on it
    while workers_cpu(collab) < idle + 0.1:
        assert not task.done(), "the import ended, but no import worker process worked on it (was it done in the service itself?)"
        await asyncio.sleep(0.01)
    answered: list[str] = []
    posted = await env.bob.post_chat(bobs["id"], "while alice imports")
    if not task.done():
        answered.append("chat post")
    while not task.done():
        me = await env.bob.me()
        assert me["name"] == "bob"
        if not task.done():
            answered.append("api/me")
    assert posted["message"]["text"] == "while alice imports"
    assert len(answered) >= 3 and answered[0] == "chat post", f"bob's requests waited for alice's import: {answered}"
    nb = await task
    assert [c["id"] for c in nb["cells"]] == [c["id"] for c in cells]
    assert all(c["readable"] and c["owner"] == "alice" for c in nb["cells"])
    exported = await env.alice.export(nb["id"])
    assert exported["cells"] == cells
    assert exported["metadata"] == content["metadata"]
    audit = (await env.alice.request("GET", f"api/notebooks/{nb['id']}/audit"))["events"]
    assert [(e["action"], e["detail"]) for e in audit] == [("create", {"name": "at the limit", "cells": MAX_CELLS})]
    await env.alice.delete_notebook(nb["id"])
    await env.bob.delete_notebook(bobs["id"])


async def test_an_import_worker_that_died_is_replaced(env: Env, collab: Any) -> None:
    pids = worker_pids(collab)
    assert pids, "the service has no import workers"
    for pid in pids:
        psutil.Process(pid).send_signal(signal.SIGKILL)
    gone, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=30)
    assert not alive
    nb = await env.alice.create_notebook("after the workers died", content=notebook([code("a", "1")]))
    assert [c["id"] for c in nb["cells"]] == ["a"]
    assert "an import worker process died" in collab.tail(200)
    assert worker_pids(collab) and not set(worker_pids(collab)) & set(pids)
    await env.alice.delete_notebook(nb["id"])


async def test_no_import_worker_outlives_a_killed_service(env: Env, collab: Any) -> None:
    """``kill -9`` of the service (the OOM killer's way): its import workers exit too."""
    workers = [psutil.Process(pid) for pid in worker_pids(collab)]
    assert workers
    proc = collab.process
    os.kill(proc.pid, signal.SIGKILL)
    await asyncio.to_thread(proc.proc.wait, 60)
    collab.process = None
    try:
        gone, alive = await asyncio.to_thread(psutil.wait_procs, workers, 30)
        assert not alive, f"import workers left running: {[p.pid for p in alive]}"
    finally:
        await asyncio.to_thread(collab.start)
    nb = await env.alice.create_notebook("after a kill -9", content=notebook([code("a", "1")]))
    await env.alice.delete_notebook(nb["id"])


# -- the measure the early check uses (in process) ------------------------------------------------


def built_sizes(cell: dict[str, Any]) -> tuple[int, int]:
    nb = validate_ipynb(notebook([cell]))
    c = nb["cells"][0]
    docs: tuple[Doc[Any], Doc[Any]] = (seed_cell("nb", c), seed_out("nb", c, seed_outputs))
    return len(docs[0].get_update()), len(docs[1].get_update())


@pytest.fixture(scope="module")
def sample_cells() -> Iterator[list[dict[str, Any]]]:
    cells = varied_cells(24)
    cells.append(code("n", "1", [{"output_type": "execute_result", "execution_count": 3, "metadata": {"a": [1, 2.5, None, True]}, "data": {"application/json": {"k": [1, {"z": "ü"}]}}}], 3, nested={"a": {"b": [1, 2, {"c": "✓"}]}}))
    cells.append(markdown("e", ""))
    yield cells


async def test_the_early_measure_never_exceeds_the_built_documents(sample_cells: list[dict[str, Any]]) -> None:
    """So the early check refuses nothing the exact check on the built docs would accept."""
    for cell in sample_cells:
        doc_bytes, out_bytes = built_sizes(cell)
        assert held_bytes(cell.get("source")) + held_bytes(cell.get("metadata")) + held_bytes(cell.get("attachments")) <= doc_bytes, cell
        assert held_bytes(cell.get("outputs")) <= out_bytes, cell
    # UTF-8 bytes of strings and keys, one byte for any other value (lists and objects too)
    assert held_bytes(["é" * 10, {"k": [1, 2]}]) == 1 + 20 + 1 + 1 + 1 + 1 + 1
