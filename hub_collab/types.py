"""Shared shapes, named once.

``JSON`` is what the REST API and the text frames of the wire protocol carry.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeAlias

JSONDict: TypeAlias = dict[str, Any]
JSON: TypeAlias = "JSONDict | list[Any] | str | int | float | bool | None"

#: Names of the documents of a notebook (see docs/protocol.md).
INDEX_DOC = "index"
CELL_PREFIX = "cell:"
OUT_PREFIX = "out:"


class EventRelay(Protocol):
    """Carries a JSON event to the other replicas that have a notebook loaded (the
    replicator; each receiving replica hands it to the handler registered for ``kind``)."""

    def publish_event(self, nb_id: str, kind: str, data: JSONDict) -> None:
        """Send ``data`` as an event of ``kind`` about notebook ``nb_id``."""
