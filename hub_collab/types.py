"""Shared shapes, named once.

``JSON`` is what the REST API and the text frames of the wire protocol carry.
"""

from __future__ import annotations

from typing import Any, TypeAlias

JSONDict: TypeAlias = dict[str, Any]
JSON: TypeAlias = "JSONDict | list[Any] | str | int | float | bool | None"

#: Names of the documents of a notebook (see docs/protocol.md).
INDEX_DOC = "index"
CELL_PREFIX = "cell:"
OUT_PREFIX = "out:"
