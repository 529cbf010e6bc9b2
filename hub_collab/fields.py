"""Checks of the JSON fields a request body carries, shared by the REST handlers and the
notebook importer (which reads a create request's body in a worker process, see
:mod:`hub_collab.documents.importer`).

Each function raises :class:`~hub_collab.errors.BadRequest` with the code that
docs/rest.md names (``invalid_json``, ``invalid_name``, ``invalid_group``,
``invalid_mode``) and a message that says what was expected.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import BadRequest
from .permissions.posix import PermissionSyntaxError, parse_mode

#: A notebook's name: 1-255 characters, no control characters or slashes.
NAME_RE = re.compile(r"^[^\x00-\x1f\x7f/\\]{1,255}$")
#: A Hub group (or user) name as a body may carry it ("" for no group).
GROUP_RE = re.compile(r"^[A-Za-z0-9._@+-]{0,128}$")


def parse_json_object(body: bytes) -> dict[str, Any]:
    """``body`` as a JSON object; 400 ``invalid_json`` otherwise."""
    if not body:
        raise BadRequest("request body must be a JSON object", code="invalid_json")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from exc
    except RecursionError as exc:
        raise BadRequest("request body is nested too deeply", code="invalid_json") from exc
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object", code="invalid_json")
    return data


def name_field(body: dict[str, Any], key: str = "name") -> str:
    value = body.get(key)
    if not isinstance(value, str) or not NAME_RE.match(value) or not _is_text(value):
        raise BadRequest(f"{key} must be 1-255 characters, without control characters or slashes", code="invalid_name")
    return value


def _is_text(value: str) -> bool:
    """False for a string UTF-8 cannot encode (a lone surrogate from a ``\\ud800`` escape)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def group_field(body: dict[str, Any], key: str = "group") -> str | None:
    """The group named by ``body[key]`` (None if absent; "" for no group)."""
    if key not in body:
        return None
    value = body[key]
    if not isinstance(value, str) or not GROUP_RE.match(value):
        raise BadRequest(f"{key} must be a Hub group name", code="invalid_group")
    return value


def mode_field(body: dict[str, Any], key: str, current: int) -> int | None:
    """The mode ``body[key]`` sets (octal or symbolic, relative to ``current``), or None if absent."""
    if key not in body:
        return None
    value = body[key]
    if isinstance(value, int) and not isinstance(value, bool):
        value = format(value, "o")
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be a string such as \"0750\" or \"u+w,g-w\"", code="invalid_mode")
    try:
        return parse_mode(value, current)
    except PermissionSyntaxError as exc:
        raise BadRequest(f"{key}: {exc}", code="invalid_mode") from exc
