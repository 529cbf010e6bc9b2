"""The documents of one notebook and their conversion from and to nbformat.

A notebook is a set of pycrdt docs (see docs/protocol.md):

* ``index``: ``cells`` (Array of Maps ``{id, cell_type, owner, group, mode, acl}``)
  and ``meta`` (Map: ``metadata``, ``nbformat``, ``nbformat_minor``); server-written.
* ``cell:<id>``: ``source`` (Text), ``metadata`` (Map), ``attachments`` (Map).
* ``out:<id>``: ``outputs`` (Array) and ``state`` (Map); server-written
  (schema in :mod:`hub_collab.kernels.outputs`).

:func:`seed_index`, :func:`seed_cell` and :func:`seed_out` build the docs of an
imported notebook deterministically (the importer, :mod:`.importer`, calls them in a
worker process); :func:`export_cell` writes nbformat v4 from them.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import nbformat
from pycrdt import Array, Doc, Map, Text

from ..errors import BadRequest
from ..ids import is_valid_id, new_id
from ..types import CELL_PREFIX, INDEX_DOC, OUT_PREFIX
from .clientids import seed_client_id
from .outputs import intify, widgets_root

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
    return Doc(client_id=seed_client_id(nb_id, name))


def init_index(doc: Doc[Any]) -> tuple[Array[Any], Map[Any]]:
    return doc.get("cells", type=Array), doc.get("meta", type=Map)


def init_cell(doc: Doc[Any]) -> tuple[Text, Map[Any], Map[Any]]:
    return doc.get("source", type=Text), doc.get("metadata", type=Map), doc.get("attachments", type=Map)


def init_out(doc: Doc[Any]) -> tuple[Array[Any], Map[Any]]:
    return doc.get("outputs", type=Array), doc.get("state", type=Map)


def index_entry(cell_id: str, cell_type: str, perms_json: Mapping[str, Any]) -> Map[Any]:
    return Map(index_entry_json(cell_id, cell_type, perms_json))


def check_ipynb_shape(content: Any) -> list[Any]:
    """The cells of ``content`` if it has the shape of nbformat v4 (an object with
    ``nbformat: 4`` and a ``cells`` list); BadRequest ``invalid_notebook`` otherwise.

    Only the shape: :func:`validate_ipynb` checks the rest.
    """
    if not isinstance(content, dict):
        raise BadRequest("content must be an nbformat v4 notebook object", code="invalid_notebook")
    if content.get("nbformat") != 4:
        raise BadRequest(
            f"content.nbformat must be 4, got {str(content.get('nbformat'))[:40]!r}", code="invalid_notebook"
        )
    cells = content.get("cells")
    if not isinstance(cells, list):
        raise BadRequest("content.cells must be a list", code="invalid_notebook")
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict):
            raise BadRequest(f"content.cells[{i}] must be an object", code="invalid_notebook")
    return cells


def validate_ipynb(content: Any) -> dict[str, Any]:
    """Validate nbformat v4 JSON; return a normalised copy (cell ids filled in).

    Raises :class:`BadRequest` naming what is wrong. Size limits are the importer's
    (:mod:`hub_collab.documents.importer`), checked before this.
    """
    # a copy of what this changes (the top level and the cells); the rest is shared
    cells = [dict(cell) for cell in check_ipynb_shape(content)]
    nb = {**content, "cells": cells}
    nb.setdefault("nbformat_minor", 5)
    nb.setdefault("metadata", {})
    minor = nb["nbformat_minor"]
    if not isinstance(minor, int) or isinstance(minor, bool) or minor < 0:
        raise BadRequest(f"content.nbformat_minor must be an integer, got {str(minor)[:40]!r}", code="invalid_notebook")
    # nbformat < 4.5 has no cell ids: upgrade to 4.5 and assign them.
    if minor < 5:
        nb["nbformat_minor"] = 5
    seen: set[str] = set()
    for i, cell in enumerate(cells):
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
        where = "content" + "".join(
            f"[{p}]" if isinstance(p, int) else f".{p}" for p in getattr(exc, "absolute_path", None) or []
        )
        message = str(exc.message)
        if len(message) > 300:  # it may quote the whole offending value
            message = message[:300] + "…"
        raise BadRequest(f"{where} is not valid nbformat v4: {message}", code="invalid_notebook") from exc
    except RecursionError as exc:
        raise BadRequest("content is nested too deeply", code="invalid_notebook") from exc
    return nb


def source_text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def index_entry_json(cell_id: str, cell_type: str, perms_json: Mapping[str, Any]) -> dict[str, Any]:
    """A cell's entry in ``index`` as JSON (what :func:`index_cells` reads back)."""
    return {
        "id": cell_id,
        "cell_type": cell_type,
        "owner": perms_json["owner"],
        "group": perms_json["group"],
        "mode": perms_json["mode"],
        "acl": list(perms_json.get("acl", [])),
    }


def seed_index(nb_id: str, nb: Mapping[str, Any], entries: Iterable[Mapping[str, Any]]) -> Doc[Any]:
    """The ``index`` doc of a validated notebook, its cells given as index entries."""
    index = seeded_doc(nb_id, INDEX_DOC)
    cells, meta = init_index(index)
    with index.transaction():
        meta["metadata"] = dict(nb.get("metadata", {}))
        meta["nbformat"] = 4
        meta["nbformat_minor"] = int(nb.get("nbformat_minor", 5))
        for entry in entries:
            cells.append(Map(dict(entry)))
    return index


def seed_cell(nb_id: str, cell: Mapping[str, Any]) -> Doc[Any]:
    """The ``cell:<id>`` doc of a validated cell."""
    cdoc = seeded_doc(nb_id, cell_doc(cell["id"]))
    source, metadata, attachments = init_cell(cdoc)
    with cdoc.transaction():
        source += source_text(cell.get("source"))
        for k, v in (cell.get("metadata") or {}).items():
            metadata[k] = v
        for k, v in (cell.get("attachments") or {}).items():
            attachments[k] = v
    return cdoc


def seed_out(
    nb_id: str,
    cell: Mapping[str, Any],
    seed_outputs: Callable[[Doc[Any], list[dict[str, Any]], int | None], None],
) -> Doc[Any]:
    """The ``out:<id>`` doc of a validated cell (every cell has one)."""
    odoc = seeded_doc(nb_id, out_doc(cell["id"]))
    init_out(odoc)
    seed_outputs(odoc, list(cell.get("outputs") or []), cell.get("execution_count"))
    return odoc


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


def readable_entries(values: Map[Any]) -> dict[str, Any]:
    """A map's entries as Python values, leaving out entries yrs lists but cannot read
    (a formatting mark as a value, which a doc stored before such marks were refused
    may hold): ``Map.to_py`` raised KeyError on them."""
    out: dict[str, Any] = {}
    for key in list(values.keys()):
        if key in values:
            value = values[key]
            out[key] = value.to_py() if hasattr(value, "to_py") else value
    return out


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
        "metadata": readable_entries(metadata),
        "source": str(source),
    }
    if entry["cell_type"] != "code":
        att = readable_entries(attachments)
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


#: nbformat's notebook metadata key for saved widget state, and the output that shows a widget
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"


def export_notebook(
    meta: Map[Any], cells: list[dict[str, Any]], out_docs: Iterable[Doc[Any]], *, widgets: bool = True
) -> dict[str, Any]:
    """nbformat v4 of exported ``cells`` (:func:`export_cell`) under the index's ``meta``;
    ``widgets``: with the widget state of ``out_docs`` (those cells' out docs) in the
    metadata (:func:`export_widget_state`). The saved widget state the notebook was
    imported with never goes out as such."""
    metadata = dict(meta.get("metadata") or {})
    saved = metadata.pop("widgets", None)
    if widgets:
        state = export_widget_state(out_docs, cells, saved.get(WIDGET_STATE_MIME) if isinstance(saved, dict) else None)
        if state is not None:
            metadata["widgets"] = {WIDGET_STATE_MIME: state}
    return {
        "nbformat": 4,
        "nbformat_minor": int(meta.get("nbformat_minor", 5) or 5),
        "metadata": metadata,
        "cells": cells,
    }


def export_widget_state(
    out_docs: Iterable[Doc[Any]], cells: list[dict[str, Any]], saved: Any
) -> dict[str, Any] | None:
    """The widget state to save in an export's metadata (``widgets`` → ``WIDGET_STATE_MIME``,
    ipywidgets' saved-state format, version 2): every model in ``out_docs`` (the out docs of
    the exported cells), binary values as base64 ``buffers``; None if there is none.

    ``saved`` is that state as the imported notebook held it: its models are kept only where
    an exported output shows them (or a kept model holds them), so nothing saved for a cell
    that is left out (hidden now) is exported.
    """
    state: dict[str, Any] = {}
    for doc in out_docs:
        for comm_id, entry in widgets_root(doc).items():
            if not isinstance(entry, Map):
                continue
            raw = entry.get("state")
            values = intify(readable_entries(raw)) if isinstance(raw, Map) else {}
            plain, buffers = _split_buffers(values)
            model: dict[str, Any] = {
                "model_name": str(entry.get("model_name") or values.get("_model_name") or ""),
                "model_module": str(entry.get("model_module") or values.get("_model_module") or ""),
                "model_module_version": str(values.get("_model_module_version") or ""),
                "state": plain,
            }
            if buffers:
                model["buffers"] = buffers
            state[comm_id] = model
    old = saved.get("state") if isinstance(saved, dict) else None
    if isinstance(old, dict):
        todo = [
            ref.get("model_id")
            for cell in cells
            for out in cell.get("outputs") or []
            if isinstance(ref := (out.get("data") or {}).get(WIDGET_VIEW_MIME), dict)
        ]
        while todo:
            mid = todo.pop()
            if isinstance(mid, str) and mid not in state and isinstance(old.get(mid), dict):
                state[mid] = old[mid]
                todo.extend(_model_refs(old[mid].get("state")))
    if not state:
        return None
    return {"version_major": 2, "version_minor": 0, "state": state}


def _split_buffers(values: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A model's state without its binary values, and those as saved-state buffers."""
    buffers: list[dict[str, Any]] = []

    def walk(value: Any, path: list[Any]) -> Any:
        if isinstance(value, (bytes, bytearray, memoryview)):
            buffers.append({"path": path, "data": base64.b64encode(bytes(value)).decode(), "encoding": "base64"})
            return None
        if isinstance(value, dict):
            return {k: walk(v, [*path, k]) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, [*path, i]) for i, v in enumerate(value)]
        return value

    plain = {k: walk(v, [k]) for k, v in values.items()}
    # ipywidgets leaves a top-level binary key out of the state (its buffer names it)
    for buf in buffers:
        if len(buf["path"]) == 1:
            plain.pop(buf["path"][0], None)
    return plain, buffers


def _model_refs(value: Any) -> list[str]:
    """The model ids a state refers to (``"IPY_MODEL_<id>"`` strings, at any depth)."""
    if isinstance(value, str):
        return [value[10:]] if value.startswith("IPY_MODEL_") else []
    if isinstance(value, dict):
        return [r for v in value.values() for r in _model_refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _model_refs(v)]
    return []
