"""JSON handlers: one error shape, authentication required, bounded bodies.

Every error is ``{"status": int, "code": str, "message": str}``, written by
:meth:`APIHandler.write_error`. Raise :class:`hub_collab.errors.CollabError`
subclasses (or ``tornado.web.HTTPError``) from handlers.

Authorization is declared: every handler says, in :attr:`APIHandler.actions`,
which permission action each of its HTTP methods needs (``None``: any Hub user
the service admits). An unknown action fails when the module is imported.
Per-notebook handlers get the room and the caller's rights from
:meth:`NotebookAPIHandler.room_for <hub_collab.apihandlers.notebooks.NotebookAPIHandler.room_for>`,
which checks the declared action; ``tests/test_docs.py`` checks that every
route's methods declare one and that docs/rest.md shows it.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import math
from collections.abc import Callable, Mapping
from http.client import responses
from typing import Any, ClassVar, TypeVar

from tornado import web

from .. import logs
from ..documents.session import Session
from ..errors import BadRequest, CollabError, NotFound
from ..fields import parse_json_object
from ..handlers.base import BaseHandler
from ..ids import check_id
from ..messages import RetryLater
from ..permissions import InvalidId, UnknownObject
from ..permissions.access import Access, Identity, check_action
from ..permissions.posix import PermissionSyntaxError

log = logging.getLogger("hub_collab.api")

T = TypeVar("T")

HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


#: HTTP methods a handler may declare an action for
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")


class APIHandler(BaseHandler):
    """Base of every ``api/`` handler."""

    #: The permission action each HTTP method needs (None: any Hub user the service admits).
    actions: ClassVar[Mapping[str, str | None]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for method, action in cls.actions.items():
            if method not in METHODS:
                raise ValueError(f"{cls.__name__}.actions: unknown HTTP method {method!r}")
            if action is not None:
                check_action(action)

    @property
    def action(self) -> str | None:
        """The action declared for this request's method."""
        try:
            return self.actions[self.request.method or ""]
        except KeyError:
            raise RuntimeError(
                f"{type(self).__name__} declares no action for {self.request.method}: add it to `actions`"
            ) from None

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        if self.current_user:
            return
        if self._not_allowed:
            raise CollabError("you may not use this service", status=403, code="forbidden")
        if self.request.method not in ("GET", "HEAD", "OPTIONS") and self.get_cookie(self.hub_auth.cookie_name):
            raise CollabError(
                "missing or invalid _xsrf token for a cookie-authenticated request",
                status=403,
                code="xsrf",
            )
        raise CollabError("authentication required: log in through the Hub or send a Hub API token", status=401, code="unauthenticated")

    @property
    def me(self) -> Identity:
        ident = self.identity
        assert ident is not None  # prepare() guarantees it
        return ident

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call (a database read or write) off the event loop, in this
        request's log context (an audit line written there carries its request id)."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(None, context.run, fn, *args)

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data, separators=(",", ":")))

    def json_body(self, *, max_bytes: int | None = None) -> dict[str, Any]:
        """The request body as a JSON object; 400/413/415 with a clear message otherwise."""
        return parse_json_object(self.checked_body(max_bytes=max_bytes))

    def checked_body(self, *, max_bytes: int | None = None) -> bytes:
        """The request body, once its size and type are checked (413, 415); not parsed."""
        limit = max_bytes or self.collab.max_request_bytes
        body = self.request.body
        if len(body) > limit:
            raise CollabError(f"request body of {len(body)} bytes exceeds {limit}", status=413, code="too_large")
        ctype = self.request.headers.get("Content-Type", "application/json").split(";")[0].strip()
        if ctype not in ("application/json", ""):
            raise CollabError(f"expected application/json, got {ctype!r}", status=415, code="unsupported_media_type")
        return body

    def path_id(self, value: str, what: str) -> str:
        checked = check_id(value, what, not_found=True)
        if what == "notebook":
            logs.bind(notebook=checked)
        return checked

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, UnknownObject):
            exc = NotFound("no such notebook or cell")
        elif isinstance(exc, (InvalidId, PermissionSyntaxError)):
            exc = BadRequest(str(exc), code="invalid_permissions")
        if isinstance(exc, RetryLater):
            # 429 with the wait in the body and in Retry-After (whole seconds, at least 1)
            self.set_status(exc.status)
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.set_header("Retry-After", str(max(1, math.ceil(exc.retry_after))))
            self.finish(json.dumps(exc.to_json()))
            return
        if isinstance(exc, CollabError):
            status, code, message = exc.status, exc.code, exc.message
        elif isinstance(exc, web.HTTPError):
            status = exc.status_code
            code = HTTP_CODES.get(status, "error")
            message = exc.log_message or exc.reason or responses.get(status, "error")
            if status == 403 and not message:
                message = "forbidden"
        else:
            status, code = status_code, HTTP_CODES.get(status_code, "error")
            message = responses.get(status_code, "error") if status_code < 500 else "internal server error"
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"status": status, "code": code, "message": message}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, (UnknownObject, InvalidId, PermissionSyntaxError)):
            log.info("%s %s: %s", self.request.method, self.request.path, value)
        elif isinstance(value, CollabError):
            log.info("%s %s: %s %s", self.request.method, self.request.path, value.status, value.log_message)
        else:
            super().log_exception(typ, value, tb)


class RequestSession(Session):
    """A REST request as the command layer sees it: who asks and their rights; it
    receives no frames (its answer is the HTTP response)."""

    def __init__(self, identity: Identity, access: Access) -> None:
        super().__init__(identity)
        self.access = access
        self.session_id = ""

    def send_bytes(self, data: bytes) -> None:
        return None

    def send_json(self, message: dict[str, Any]) -> None:
        return None

    def close(self, code: int = 1000, reason: str = "") -> None:
        return None


class NotFoundAPIHandler(APIHandler):
    """Unknown ``api/`` paths: a JSON 404 (after authentication)."""

    actions = dict.fromkeys(METHODS)

    def get(self, *args: Any) -> None:
        raise NotFound("no such API endpoint")

    post = put = delete = patch = get
