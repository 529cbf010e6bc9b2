"""The documents of one notebook and their conversion from and to nbformat.

A notebook is a set of pycrdt docs (see docs/protocol.md):

* ``index``: ``cells`` (Array of Maps ``{id, cell_type, owner, group, mode, acl}``)
  and ``meta`` (Map: ``metadata``, ``nbformat``, ``nbformat_minor``); server-written.
* ``cell:<id>``: ``source`` (Text), ``metadata`` (Map), ``attachments`` (Map).
* ``out:<id>``: ``outputs`` (Array) and ``state`` (Map); server-written
  (schema in :mod:`hub_collab.kernels.outputs`).

:func:`seed_notebook` builds the docs of an imported notebook
deterministically; :func:`export_notebook` writes nbformat v4 from them.
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import nbformat
from pycrdt import Array, Doc, Map, Text

from ..errors import BadRequest
from ..ids import is_valid_id, new_id
from ..types import CELL_PREFIX, INDEX_DOC, OUT_PREFIX

CELL_TYPES = ("code", "markdown", "raw")


def cell_doc(cell_id: str) -> str:
    return CELL_PREFIX + cell_id


def out_doc(cell_id: str) -> str:
    return OUT_PREFIX + cell_id


def split_doc_name(name: str) -> tuple[str, str | None]:
    """``"cell:abc"`` → ``("cell", "abc")``; ``"index"`` → ``("index", None)``; else ValueError."""
    if name == INDEX_DOC:
        return "index", None
    for kind, prefix in (("cell", CELL_PREFIX), ("out", OUT_PREFIX)):
        if name.startswith(prefix):
            cell_id = name[len(prefix) :]
            if is_valid_id(cell_id):
                return kind, cell_id
    raise ValueError(f"unknown doc name {name[:80]!r}")


def seeded_doc(nb_id: str, name: str) -> Doc[Any]:
    """A doc whose client id is derived from its name, so a seed is reproducible."""
    return Doc(client_id=zlib.crc32(f"{nb_id}/{name}".encode()) or 1)


def init_index(doc: Doc[Any]) -> tuple[Array[Any], Map[Any]]:
    return doc.get("cells", type=Array), doc.get("meta", type=Map)


def init_cell(doc: Doc[Any]) -> tuple[Text, Map[Any], Map[Any]]:
    return doc.get("source", type=Text), doc.get("metadata", type=Map), doc.get("attachments", type=Map)


def init_out(doc: Doc[Any]) -> tuple[Array[Any], Map[Any]]:
    return doc.get("outputs", type=Array), doc.get("state", type=Map)


def index_entry(cell_id: str, cell_type: str, perms_json: Mapping[str, Any]) -> Map[Any]:
    return Map(
        {
            "id": cell_id,
            "cell_type": cell_type,
            "owner": perms_json["owner"],
            "group": perms_json["group"],
            "mode": perms_json["mode"],
            "acl": list(perms_json.get("acl", [])),
        }
    )


def validate_ipynb(content: Any, *, max_cells: int) -> dict[str, Any]:
    """Validate nbformat v4 JSON; return a normalised copy (cell ids filled in).

    Raises :class:`BadRequest` naming what is wrong.
    """
    if not isinstance(content, dict):
        raise BadRequest("content must be an nbformat v4 notebook object", code="invalid_notebook")
    if content.get("nbformat") != 4:
        raise BadRequest(
            f"content.nbformat must be 4, got {content.get('nbformat')!r}", code="invalid_notebook"
        )
    nb = copy.deepcopy(content)
    nb.setdefault("nbformat_minor", 5)
    nb.setdefault("metadata", {})
    cells = nb.get("cells")
    if not isinstance(cells, list):
        raise BadRequest("content.cells must be a list", code="invalid_notebook")
    if len(cells) > max_cells:
        raise BadRequest(f"content has {len(cells)} cells; at most {max_cells} are allowed", code="too_large")
    # nbformat < 4.5 has no cell ids: upgrade to 4.5 and assign them.
    if nb["nbformat_minor"] < 5:
        nb["nbformat_minor"] = 5
    seen: set[str] = set()
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict):
            raise BadRequest(f"content.cells[{i}] must be an object", code="invalid_notebook")
        cid = cell.get("id")
        if cid is None:
            cid = new_id()
            cell["id"] = cid
        if not is_valid_id(cid) or cid in seen:
            raise BadRequest(
                f"content.cells[{i}].id {str(cid)[:80]!r} is invalid or duplicated (1-64 of [A-Za-z0-9_-])",
                code="invalid_notebook",
            )
        seen.add(cid)
    try:
        node = nbformat.from_dict(nb)  # type: ignore[no-untyped-call]
        nbformat.validate(node, version=4)
    except nbformat.ValidationError as exc:
        where = "/".join(str(p) for p in getattr(exc, "absolute_path", []) or [])
        raise BadRequest(
            f"content is not valid nbformat v4{' at ' + where if where else ''}: {exc.message}",
            code="invalid_notebook",
        ) from exc
    return nb


def source_text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def seed_notebook(
    nb_id: str,
    nb: Mapping[str, Any],
    cell_perms: Callable[[str], Mapping[str, Any]],
    seed_outputs: Callable[[Doc[Any], list[dict[str, Any]], int | None], None],
) -> dict[str, Doc[Any]]:
    """Build every doc of a validated notebook; ``cell_perms(cell_id)`` gives index perms."""
    docs: dict[str, Doc[Any]] = {}
    index = seeded_doc(nb_id, INDEX_DOC)
    cells, meta = init_index(index)
    with index.transaction():
        meta["metadata"] = dict(nb.get("metadata", {}))
        meta["nbformat"] = 4
        meta["nbformat_minor"] = int(nb.get("nbformat_minor", 5))
        for cell in nb.get("cells", []):
            cells.append(index_entry(cell["id"], cell["cell_type"], cell_perms(cell["id"])))
    docs[INDEX_DOC] = index
    for cell in nb.get("cells", []):
        cid = cell["id"]
        cdoc = seeded_doc(nb_id, cell_doc(cid))
        source, metadata, attachments = init_cell(cdoc)
        with cdoc.transaction():
            source += source_text(cell.get("source"))
            for k, v in (cell.get("metadata") or {}).items():
                metadata[k] = v
            for k, v in (cell.get("attachments") or {}).items():
                attachments[k] = v
        docs[cell_doc(cid)] = cdoc
        odoc = seeded_doc(nb_id, out_doc(cid))
        init_out(odoc)
        seed_outputs(odoc, list(cell.get("outputs") or []), cell.get("execution_count"))
        docs[out_doc(cid)] = odoc
    return docs


def empty_notebook_json() -> dict[str, Any]:
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
        "cells": [],
    }


def index_cells(index: Doc[Any]) -> list[dict[str, Any]]:
    cells, _ = init_index(index)
    return [dict(entry.to_py()) for entry in cells]


def export_cell(
    entry: Mapping[str, Any],
    cdoc: Doc[Any],
    odoc: Doc[Any] | None,
    outputs_to_nbformat: Callable[[Doc[Any]], list[dict[str, Any]]],
) -> dict[str, Any]:
    source, metadata, attachments = init_cell(cdoc)
    cell: dict[str, Any] = {
        "id": entry["id"],
        "cell_type": entry["cell_type"],
        "metadata": dict(metadata.to_py() or {}),
        "source": str(source),
    }
    if entry["cell_type"] != "code":
        att = attachments.to_py() or {}
        if att and entry["cell_type"] in ("markdown", "raw"):
            cell["attachments"] = dict(att)
    else:
        if odoc is not None:
            _, state = init_out(odoc)
            cell["outputs"] = outputs_to_nbformat(odoc)
            count = state.get("execution_count")
            cell["execution_count"] = int(count) if isinstance(count, (int, float)) else None
        else:
            cell["outputs"] = []
            cell["execution_count"] = None
    return cell
