"""One user's effective rights on one notebook, and the action table.

Use :meth:`PermissionStore.access
<hub_collab.permissions.store.PermissionStore.access>` (Casbin decides, the
result is cached) to get an :class:`Access`, then ask
``access.can("write_cell", cell_id)``. :func:`compute_access` is the POSIX.1e
reference the tests hold Casbin's answers to (and what the shipped model encodes).
Handlers name the action they need once, at import time, through
:func:`check_action`, so a typo fails when the module loads rather than
silently denying (or allowing) at run time.

| action | needs |
| --- | --- |
| ``open``, ``chat_read``, ``chat_post`` | notebook r |
| ``read_cell``, ``comment_read``, ``comment_post`` | notebook r and cell r |
| ``write_cell`` | notebook r, cell r and w |
| ``insert_cell`` | notebook r and w |
| ``delete_cell``, ``move_cell`` | notebook w; with sticky also owning the cell or the notebook |
| ``execute`` | notebook x, cell r and x |
| ``interrupt``, ``choose_kernel`` | notebook x |
| ``restart`` | notebook w and x |
| ``chmod`` | owner of the object, the notebook's owner, or admin |
| ``chown``, ``chgrp_any``, ``delete_notebook``, ``read_audit``, ``change_settings``, ``comment_moderate`` | the notebook's owner or admin |

``chgrp_any`` is giving an object to a group one is not a member of: with ``chmod``
alone the group may change only to one of the user's own groups (or to none), as in
POSIX, where the owner of a file may change its group only to a group they are in.

Hub admins get rwx on everything; the notebook's owner may read every cell.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .posix import Perms, R, W, X, evaluate, format_bits

__all__ = [
    "ACTIONS",
    "CELL_ACTIONS",
    "Access",
    "Identity",
    "check_action",
    "compute_access",
]


@dataclass(frozen=True)
class Identity:
    """Who is asking: a Hub user name, the Hub groups they belong to, admin flag."""

    name: str
    groups: frozenset[str] = frozenset()
    admin: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.groups, frozenset):
            object.__setattr__(self, "groups", frozenset(self.groups))


_Rule = Callable[["Access", "str | None"], bool]


def _nb(need: int) -> _Rule:
    def rule(a: Access, cell_id: str | None) -> bool:
        return a.notebook_bits & need == need

    return rule


def _nb_cell(nb_need: int, cell_need: int) -> _Rule:
    def rule(a: Access, cell_id: str | None) -> bool:
        if a.notebook_bits & nb_need != nb_need:
            return False
        return a.cell_bits.get(_need_cell(cell_id), 0) & cell_need == cell_need

    return rule


def _remove_cell(a: Access, cell_id: str | None) -> bool:
    cid = _need_cell(cell_id)
    if cid not in a.cell_bits or not a.notebook_bits & W:
        return False
    if not a.sticky or a.identity.admin or a.is_notebook_owner:
        return True
    return cid in a.owned_cells


def _chmod(a: Access, cell_id: str | None) -> bool:
    if a.identity.admin or a.is_notebook_owner:
        return cell_id is None or cell_id in a.cell_bits
    return cell_id is not None and cell_id in a.owned_cells


def _owner_only(a: Access, cell_id: str | None) -> bool:
    return a.identity.admin or a.is_notebook_owner


def _need_cell(cell_id: str | None) -> str:
    if cell_id is None:
        raise ValueError("this action applies to a cell: pass cell_id")
    return cell_id


_RULES: dict[str, _Rule] = {
    "open": _nb(R),
    "chat_read": _nb(R),
    "chat_post": _nb(R),
    "read_cell": _nb_cell(R, R),
    "comment_read": _nb_cell(R, R),
    "comment_post": _nb_cell(R, R),
    "write_cell": _nb_cell(R, R | W),
    "insert_cell": _nb(R | W),
    "delete_cell": _remove_cell,
    "move_cell": _remove_cell,
    "execute": _nb_cell(X, R | X),
    "interrupt": _nb(X),
    "choose_kernel": _nb(X),
    "restart": _nb(W | X),
    "chmod": _chmod,
    "chown": _owner_only,
    "chgrp_any": _owner_only,
    "delete_notebook": _owner_only,
    "read_audit": _owner_only,
    "change_settings": _owner_only,
    "comment_moderate": _owner_only,
}

#: Every action name :meth:`Access.can` understands.
ACTIONS: frozenset[str] = frozenset(_RULES)
#: Actions that need a ``cell_id`` (``chmod`` takes one optionally).
CELL_ACTIONS: frozenset[str] = frozenset(
    {"read_cell", "write_cell", "delete_cell", "move_cell", "execute", "comment_read", "comment_post"}
)


def check_action(action: str) -> str:
    """Return ``action`` if it is known; raise :class:`ValueError` otherwise.

    Call it where the action is declared (a decorator, a module constant) so
    that a misspelt action fails at import time.
    """
    if action not in _RULES:
        raise ValueError(
            f"unknown permission action {action!r}: expected one of {', '.join(sorted(ACTIONS))}"
        )
    return action


class Access:
    """One identity's effective rights on one notebook, computed once.

    ``notebook_bits`` and ``cell_bits`` are rwx bits with the overrides
    applied (admins: 7 everywhere; the notebook's owner: r on every cell).
    ``cell_bits`` lists every cell; 0 means the cell is hidden from this
    identity. ``can`` is a dictionary lookup and a few bit tests.
    Instances are treated as immutable: :meth:`with_cell` returns a new one.
    """

    __slots__ = (
        "identity",
        "notebook_bits",
        "cell_bits",
        "is_notebook_owner",
        "sticky",
        "owned_cells",
        "notebook_owner",
    )

    def __init__(
        self,
        identity: Identity,
        notebook_bits: int,
        cell_bits: dict[str, int],
        is_notebook_owner: bool,
        sticky: bool,
        owned_cells: frozenset[str] = frozenset(),
        notebook_owner: str = "",
    ) -> None:
        self.identity = identity
        self.notebook_bits = notebook_bits
        self.cell_bits = cell_bits
        self.is_notebook_owner = is_notebook_owner
        self.sticky = sticky
        #: Cells this identity owns (sticky-bit deletion and chmod rights).
        self.owned_cells = owned_cells
        self.notebook_owner = notebook_owner

    def can(self, action: str, cell_id: str | None = None) -> bool:
        """May this identity do ``action`` (on ``cell_id``, for cell actions)?

        Raises :class:`ValueError` for an unknown action, or for a cell action
        without a ``cell_id``. An unknown cell id is simply denied. ``chmod``
        with ``cell_id=None`` is about the notebook itself.
        """
        rule = _RULES.get(action)
        if rule is None:
            check_action(action)
        assert rule is not None
        return rule(self, cell_id)

    def cell_rights(self, cell_id: str) -> tuple[bool, bool]:
        """``(can("read_cell", cell_id), can("write_cell", cell_id))`` in one lookup
        (a join asks both for ~1,000 cells)."""
        if not self.notebook_bits & R:
            return False, False
        bits = self.cell_bits.get(cell_id, 0)
        return bits & R == R, bits & (R | W) == R | W

    def readable_cells(self) -> frozenset[str]:
        """Cells whose source and outputs this identity may receive."""
        if not self.notebook_bits & R:
            return frozenset()
        return frozenset(c for c, b in self.cell_bits.items() if b & R)

    def writable_cells(self) -> frozenset[str]:
        """Cells this identity may edit."""
        if not self.notebook_bits & R:
            return frozenset()
        return frozenset(c for c, b in self.cell_bits.items() if b & (R | W) == R | W)

    def caps_json(self) -> dict[str, Any]:
        """What the client is told: ``{"notebook", "cells", "owner", "admin"}``.

        Without notebook ``r`` the cell list is not visible, so ``cells`` is empty.
        """
        cells = (
            {c: format_bits(b) for c, b in self.cell_bits.items()} if self.notebook_bits & R else {}
        )
        return {
            "notebook": format_bits(self.notebook_bits),
            "cells": cells,
            "owner": self.is_notebook_owner,
            "admin": self.identity.admin,
        }

    def with_cell(self, cell_id: str, perms: Perms | None, bits: int | None = None) -> Access:
        """A copy with one cell's rights recomputed (``perms=None``: cell removed).

        ``bits`` are the cell's rights as decided elsewhere (the store passes
        Casbin's); without them they are evaluated here with the overrides.
        """
        cell_bits = dict(self.cell_bits)
        owned = self.owned_cells
        if perms is None:
            cell_bits.pop(cell_id, None)
            owned = owned - {cell_id}
        else:
            cell_bits[cell_id] = (
                _cell_bits(self.identity, self.is_notebook_owner, perms) if bits is None else bits
            )
            if perms.owner == self.identity.name:
                owned = owned | {cell_id}
            else:
                owned = owned - {cell_id}
        return Access(
            self.identity,
            self.notebook_bits,
            cell_bits,
            self.is_notebook_owner,
            self.sticky,
            owned,
            self.notebook_owner,
        )

    def with_notebook(self, notebook: Perms, bits: int | None = None) -> Access | None:
        """A copy for new notebook permissions, or None if it must be recomputed.

        Cell rights depend on the notebook only through its owner (who reads
        every cell), so while the owner stays the cell bits are shared. ``bits``
        are the notebook's rights as decided elsewhere (the store passes Casbin's).
        """
        if notebook.owner != self.notebook_owner:
            return None
        ident = self.identity
        if bits is None:
            bits = 7 if ident.admin else evaluate(notebook, ident.name, ident.groups)
        return Access(
            ident,
            bits,
            self.cell_bits,
            self.is_notebook_owner,
            notebook.sticky,
            self.owned_cells,
            self.notebook_owner,
        )

    def __repr__(self) -> str:
        return (
            f"<Access {self.identity.name!r} notebook={format_bits(self.notebook_bits)} "
            f"cells={len(self.cell_bits)} owner={self.is_notebook_owner} admin={self.identity.admin}>"
        )


def _cell_bits(identity: Identity, is_nb_owner: bool, perms: Perms) -> int:
    if identity.admin:
        return 7
    bits = evaluate(perms, identity.name, identity.groups)
    if is_nb_owner:
        bits |= R
    return bits


def compute_access(identity: Identity, notebook: Perms, cells: Mapping[str, Perms]) -> Access:
    """Evaluate ``identity``'s rights on a notebook and all its cells."""
    name = identity.name
    is_owner = name == notebook.owner
    if identity.admin:
        nb_bits = 7
        cell_bits = dict.fromkeys(cells, 7)
    else:
        nb_bits = evaluate(notebook, name, identity.groups)
        groups = identity.groups
        cell_bits = {cid: evaluate(p, name, groups) for cid, p in cells.items()}
        if is_owner:
            cell_bits = {cid: b | R for cid, b in cell_bits.items()}
    owned = frozenset(cid for cid, p in cells.items() if p.owner == name)
    return Access(identity, nb_bits, cell_bits, is_owner, notebook.sticky, owned, notebook.owner)
