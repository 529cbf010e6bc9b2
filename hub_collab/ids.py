"""Identifiers: generation and validation.

Notebook and cell ids are opaque, URL-safe and short; anything else (path-like,
empty, too long) is rejected before it reaches the store.
"""

from __future__ import annotations

import re
import secrets

from .errors import BadRequest, NotFound

ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def new_id(nbytes: int = 9) -> str:
    """A random URL-safe id (12 characters for the default 9 bytes)."""
    return secrets.token_urlsafe(nbytes)


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and ID_RE.match(value) is not None


def check_id(value: object, what: str = "id", *, not_found: bool = False) -> str:
    """Return ``value`` if it is a well-formed id.

    With ``not_found=True`` a malformed id is reported as 404 (ids in URL paths:
    a client cannot tell a malformed id from an unknown one).
    """
    if is_valid_id(value):
        assert isinstance(value, str)
        return value
    if not_found:
        raise NotFound(f"no such {what}")
    raise BadRequest(f"invalid {what} {str(value)[:80]!r}: expected 1-64 characters of [A-Za-z0-9_-]", code="invalid_id")
