"""The base of every HTTP handler: Hub authentication and shared settings.

Subclass :class:`BaseHandler` for pages and
:class:`hub_collab.apihandlers.base.APIHandler` for JSON. The user is resolved
asynchronously in :meth:`BaseHandler.prepare` (cookie via Hub OAuth, or a Hub
API token in ``Authorization: token …``); groups come from the Hub's group
directory, never from the request.

Every request (and every WebSocket connection) gets a request id, sent back in
``X-Request-Id`` and carried by every log line logged while handling it
(:mod:`hub_collab.logs`); an upstream ``X-Request-Id`` that is a plain token is
kept. Until the service has started, every request but the probes is answered 503.
"""

from __future__ import annotations

import logging
from typing import Any

from jupyterhub.services.auth import HubOAuthenticated, UserNotAllowed
from tornado import web

from .. import logs
from ..permissions.access import Identity
from ..services import Services

access_log = logging.getLogger("tornado.access")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; frame-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'self'"
)


class BaseHandler(HubOAuthenticated, web.RequestHandler):  # type: ignore[misc]
    """Authentication, the application object and security headers."""

    _not_allowed: bool = False
    #: this request's id (``X-Request-Id``), set by :meth:`bind_request`
    request_id: str = ""
    #: log successful requests at debug level, others at info (probes and scrapes come
    #: every few seconds; their answer says what is wrong)
    quiet_access_log: bool = False
    #: answered 503 because the service has not started yet
    refused_while_starting: bool = False

    @property
    def hub_auth(self) -> Any:  # type: ignore[override]
        return self.settings["hub_auth"]

    @property
    def collab(self) -> Services:
        """The application's services (:class:`~hub_collab.services.Services`)."""
        app: Services = self.settings["collab"]
        return app

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
        # (also after an error cleared the headers)
        if self.request_id:
            self.set_header("X-Request-Id", self.request_id)
        if self.refused_while_starting:
            self.set_header("Retry-After", "1")

    def bind_request(self) -> None:
        """Give this request its id and start its log context (user and notebook unknown yet)."""
        self.request_id = logs.new_request_id(self.request.headers.get("X-Request-Id"))
        logs.bind(request_id=self.request_id, user=None, notebook=None)
        self.set_header("X-Request-Id", self.request_id)

    async def resolve_user(self) -> dict[str, Any] | None:
        """Resolve the Hub user once per request, without blocking the event loop."""
        if "_hub_auth_user_cache" in self.__dict__:
            cached: dict[str, Any] | None = self.__dict__["_hub_auth_user_cache"]
            return cached
        model = await self.hub_auth.get_user(self, sync=False)
        user = None
        if model:
            logs.bind(user=str(model.get("name", "")))
            try:
                user = self.check_hub_user(model)
            except UserNotAllowed:
                self._not_allowed = True
        self._hub_auth_user_cache = user
        return user

    async def prepare(self) -> None:  # type: ignore[override]
        self.bind_request()
        if not self.collab.started:
            self.refused_while_starting = True
            raise web.HTTPError(503, "the service is starting")
        await self.resolve_user()

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if self.refused_while_starting:
            return  # expected; the access line says it
        super().log_exception(typ, value, tb)

    @property
    def identity(self) -> Identity | None:
        model = self.current_user
        if not model:
            return None
        return self.collab.identity_for(model)


def log_request(handler: web.RequestHandler) -> None:
    """The access log line of a request (tornado's ``log_function``).

    Its path is logged without the query string, which may hold a token; its status,
    method, path and duration are fields of the JSON line too. A handler with
    ``quiet_access_log`` (probes, scrapes) logs success at debug level and anything else
    at info; a request refused while the service starts is logged at info.
    """
    status = handler.get_status()
    request = handler.request
    ms = 1000.0 * request.request_time()
    if getattr(handler, "quiet_access_log", False):
        level = logging.DEBUG if status < 400 else logging.INFO
    elif getattr(handler, "refused_while_starting", False):
        level = logging.INFO
    elif status >= 500:
        level = logging.ERROR
    elif status >= 400:
        level = logging.WARNING
    else:
        level = logging.INFO
    if not access_log.isEnabledFor(level):
        return
    fields: dict[str, Any] = {"status": status, "method": request.method, "path": request.path, "remote_ip": request.remote_ip, "duration_ms": round(ms, 2)}
    if logs.request_id.get() is None:  # a handler of tornado's or HubOAuth's: an id for its line
        fields["request_id"] = logs.new_request_id(request.headers.get("X-Request-Id"))
    access_log.log(level, "%d %s %s (%s) %.2fms", status, request.method, request.path, request.remote_ip, ms, extra=fields)
