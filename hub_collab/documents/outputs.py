"""The output document's schema: ``out:<cell id>`` (and per-user overlays of it).

Every code cell has an ``out:<cell id>`` pycrdt document that only the server
writes (the kernel service, through
:class:`~hub_collab.kernels.outputs.OutputWriter`). Its root types are:

``outputs``
    an ``Array`` of ``Map`` s, one per output. ``output_type`` is one of ``stream``,
    ``display_data``, ``execute_result``, ``error`` (nbformat) or ``notice`` (ours, e.g. the
    output-cap notice or "kernel died"). A stream output keeps its text in a ``Text`` that is
    only ever edited at its tail, so that clients receive appends rather than replacements.
``state``
    a ``Map`` with ``execution_count``, ``execution_state`` ("idle"|"queued"|"running"),
    ``executed_by``, ``queued_at``, ``started_at``, ``ended_at``, ``status`` and ``truncated``.
``widgets``
    a ``Map`` from comm id to one ipywidgets model that an execution of this cell opened:
    a ``Map`` with ``target`` (``"jupyter.widget"``), ``model_name``, ``model_module`` and ``state`` (a ``Map`` of the model's
    state, key by key). Written by :mod:`hub_collab.kernels.widgets` (docs/widgets.md).

This module reads and seeds that schema (import and export, a cell's state);
it is what the documents layer needs and it knows nothing of kernels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pycrdt import Array, Doc, Map, Text

__all__ = [
    "STATE_DEFAULTS",
    "ensure_out_doc",
    "out_roots",
    "outputs_to_nbformat",
    "intify",
    "read_state",
    "seed_outputs",
    "widgets_root",
]

STATE_DEFAULTS: dict[str, Any] = {
    "execution_count": None,
    "execution_state": "idle",
    "executed_by": "",
    "queued_at": None,
    "started_at": None,
    "ended_at": None,
    "status": None,
    "truncated": False,
}


def out_roots(doc: Doc[Any]) -> tuple[Array[Any], Map[Any]]:
    """The ``outputs`` Array and the ``state`` Map of an out doc."""
    return doc.get("outputs", type=Array), doc.get("state", type=Map)


def widgets_root(doc: Doc[Any]) -> Map[Any]:
    """The ``widgets`` Map of an out doc: comm id -> widget model."""
    root: Map[Any] = doc.get("widgets", type=Map)
    return root


def ensure_out_doc(doc: Doc[Any]) -> None:
    """Create the ``outputs`` and ``state`` roots and fill missing state keys with defaults."""
    _, state = out_roots(doc)
    missing = {k: v for k, v in STATE_DEFAULTS.items() if k not in state}
    if missing:
        with doc.transaction():
            for key, value in missing.items():
                state[key] = value


def read_state(doc: Doc[Any]) -> dict[str, Any]:
    """The ``state`` map as a dict, defaults filled in.

    pycrdt hands JSON numbers back as floats; ``execution_count`` is returned as an int.
    """
    _, state = out_roots(doc)
    result = dict(STATE_DEFAULTS)
    result.update(state.to_py() or {})
    count = result.get("execution_count")
    if isinstance(count, float):
        result["execution_count"] = int(count)
    return result


# --------------------------------------------------------------------------------------------
# nbformat conversion


def intify(value: Any) -> Any:
    """pycrdt gives JSON numbers back as floats: turn integral ones back into ints."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: intify(v) for k, v in value.items()}
    if isinstance(value, list):
        return [intify(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    """A plain JSON value (NotebookNode and tuples turned into dict and list)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _is_json_mime(mime: str) -> bool:
    return mime == "application/json" or mime.endswith("+json")


def _mimebundle(data: Any) -> dict[str, Any]:
    """nbformat mime bundle → stored form: multiline string lists joined."""
    bundle: dict[str, Any] = {}
    for mime, value in dict(data or {}).items():
        value = _plain(value)
        if isinstance(value, list) and not _is_json_mime(mime):
            value = "".join(str(v) for v in value)
        bundle[str(mime)] = value
    return bundle


def _join(text: Any) -> str:
    if isinstance(text, list | tuple):
        return "".join(str(t) for t in text)
    return "" if text is None else str(text)


def _seed_map(output: Mapping[str, Any]) -> Map[Any] | None:
    output_type = output.get("output_type")
    if output_type == "stream":
        return Map(
            {
                "output_type": "stream",
                "name": str(output.get("name") or "stdout"),
                "text": Text(_join(output.get("text"))),
            }
        )
    if output_type in ("display_data", "execute_result"):
        fields: dict[str, Any] = {
            "output_type": output_type,
            "data": _mimebundle(output.get("data")),
            "metadata": _plain(dict(output.get("metadata") or {})),
        }
        if output_type == "execute_result":
            count = output.get("execution_count")
            fields["execution_count"] = count if isinstance(count, int) else None
        return Map(fields)
    if output_type == "error":
        return Map(
            {
                "output_type": "error",
                "ename": str(output.get("ename", "")),
                "evalue": str(output.get("evalue", "")),
                "traceback": [str(t) for t in output.get("traceback") or ()],
            }
        )
    return None


def seed_outputs(
    doc: Doc[Any], outputs: Iterable[Mapping[str, Any]], execution_count: int | None
) -> None:
    """Fill a fresh out doc from nbformat v4 outputs (notebook import), in one transaction.

    Raises ``ValueError`` if the doc already has outputs: an out doc with history is never
    re-seeded. Outputs of unknown type are skipped.
    """
    arr, state = out_roots(doc)
    if len(arr):
        raise ValueError("seed_outputs needs a fresh out doc; this one has outputs")
    with doc.transaction():
        for output in outputs:
            m = _seed_map(output)
            if m is not None:
                arr.append(m)
        for key, value in STATE_DEFAULTS.items():
            state[key] = value
        state["execution_count"] = execution_count


def outputs_to_nbformat(doc: Doc[Any]) -> list[dict[str, Any]]:
    """The outputs of an out doc as nbformat v4 outputs (notices left out)."""
    arr, _ = out_roots(doc)
    result: list[dict[str, Any]] = []
    for output in arr:
        if not isinstance(output, Map):
            continue
        output_type = output.get("output_type")
        if output_type == "stream":
            result.append(
                {
                    "output_type": "stream",
                    "name": str(output.get("name") or "stdout"),
                    "text": str(output.get("text") or ""),
                }
            )
        elif output_type in ("display_data", "execute_result"):
            out: dict[str, Any] = {
                "output_type": output_type,
                "data": intify(output.get("data") or {}),
                "metadata": intify(output.get("metadata") or {}),
            }
            if output_type == "execute_result":
                count = output.get("execution_count")
                out["execution_count"] = None if count is None else int(count)
            result.append(out)
        elif output_type == "error":
            result.append(
                {
                    "output_type": "error",
                    "ename": str(output.get("ename", "")),
                    "evalue": str(output.get("evalue", "")),
                    "traceback": [str(t) for t in output.get("traceback") or ()],
                }
            )
    return result
