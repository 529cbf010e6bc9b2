"""Versions: a doc's history rows grouped into edits, and diffs between texts.

A *version* is a run of consecutive rows of one doc (in the order the service accepted
them) that one author made without pausing: two neighbouring rows belong to one version
unless

* their authors differ (the server's own writes, author "", count as an author), or
  their sessions (a user's two tabs, an import and the typing after it; a restore is
  recorded as a session of its own: it is always a version),
* more than ``gap`` seconds (``HubCollab.history_burst_seconds``) pass between them,
* they fall in different ten-minute periods of the clock (:data:`PERIOD`: an hour of
  steady typing is six versions, not one), or
* either is a day compacted by retention (each such day is a version of its own).

Every rule looks at two neighbouring rows only, so a version never changes once a
later row exists that does not belong to it: version ids are stable while the doc goes
on changing. A version's id is the id of its last row; its content is the doc with
every row up to that one. The version ``0`` is the doc's baseline, its state before
history was kept (only docs that existed then have one).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from ..types import JSONDict
from .store import RowInfo

#: rows of two different periods of this many seconds are two versions
PERIOD = 600.0
#: a diff is computed when both texts have at most this many lines ...
MAX_DIFF_LINES = 5000
#: ... and at most this many characters together (else ``diff_too_large``)
MAX_DIFF_CHARS = 1_000_000


def boundary(older: RowInfo, newer: RowInfo, gap: float) -> bool:
    """Whether a version ends between two neighbouring rows."""
    return (
        older.author != newer.author
        or older.session != newer.session
        or older.authors is not None
        or newer.authors is not None
        or newer.at - older.at > gap
        or int(older.at // PERIOD) != int(newer.at // PERIOD)
    )


@dataclass
class Version:
    """One version: its last row's id, its first row's id, who, when, how much."""

    id: int
    first: int
    start: float
    end: float
    authors: list[str]
    updates: int
    bytes: int
    compacted: bool = False

    def to_json(self) -> JSONDict:
        return {
            "id": self.id,
            "start": self.start,
            "end": self.end,
            "author": self.authors[0] if self.authors else "",
            "authors": list(self.authors),
            "updates": self.updates,
            "bytes": self.bytes,
            "compacted": self.compacted,
        }


def group(rows: Iterable[RowInfo], gap: float) -> list[Version]:
    """``rows`` (of one doc, newest first) as versions, newest first. The oldest one may
    be incomplete: its older rows were not among ``rows``."""
    out: list[Version] = []
    newer: RowInfo | None = None
    for row in rows:
        if newer is None or boundary(row, newer, gap):
            authors = list(row.authors) if row.authors is not None else [row.author]
            out.append(Version(row.id, row.id, row.at, row.at, authors, 1, row.size, row.authors is not None))
        else:
            version = out[-1]
            version.first = row.id
            version.start = row.at
            version.updates += 1
            version.bytes += row.size
        newer = row
    return out


def baseline_version() -> Version:
    """The version ``0``: the doc as it was when history began to be kept."""
    return Version(0, 0, 0.0, 0.0, [], 0, 0, compacted=True)


def diff(old: str, new: str) -> JSONDict:
    """A unified diff from ``old`` (a version) to ``new`` (the current text), in bounded
    time: ``{"diff": text, "too_large": False}``, or ``{"diff": None, "too_large": True}``
    when the texts are past :data:`MAX_DIFF_LINES` or :data:`MAX_DIFF_CHARS`."""
    a = old.splitlines(keepends=True)
    b = new.splitlines(keepends=True)
    if len(a) > MAX_DIFF_LINES or len(b) > MAX_DIFF_LINES or len(old) + len(new) > MAX_DIFF_CHARS:
        return {"diff": None, "too_large": True}
    lines = difflib.unified_diff(a, b, fromfile="version", tofile="current", n=3)
    return {"diff": "".join(line if line.endswith("\n") else line + "\n" for line in lines), "too_large": False}
