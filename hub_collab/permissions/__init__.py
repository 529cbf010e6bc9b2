"""Permissions: POSIX.1e modes and ACLs on notebooks (directories) and cells (files).

* :mod:`.posix` -- values and parsing: :class:`Perms`, :class:`AclEntry`,
  :func:`parse_mode`, :func:`parse_acl`, :func:`evaluate`.
* :mod:`.access` -- one user's rights on one notebook: :class:`Identity`,
  :class:`Access`, the action table :data:`ACTIONS`, and :func:`compute_access`,
  the POSIX.1e reference the tests hold Casbin to.
* :mod:`.store` -- :class:`PermissionStore`, persisted through Casbin and
  decided by it (:mod:`.decide`), the class the application uses.

See docs/permissions.md.
"""

from .access import ACTIONS, CELL_ACTIONS, Access, Identity, check_action, compute_access
from .posix import (
    AclEntry,
    PermissionSyntaxError,
    Perms,
    evaluate,
    format_bits,
    format_mode,
    parse_acl,
    parse_mode,
)
from .store import InvalidId, ObjectExists, PermissionStore, UnknownObject

__all__ = [
    "ACTIONS",
    "CELL_ACTIONS",
    "Access",
    "AclEntry",
    "Identity",
    "InvalidId",
    "ObjectExists",
    "PermissionStore",
    "PermissionSyntaxError",
    "Perms",
    "UnknownObject",
    "check_action",
    "compute_access",
    "evaluate",
    "format_bits",
    "format_mode",
    "parse_acl",
    "parse_mode",
]
