"""The base of every HTTP handler: Hub authentication and shared settings.

Subclass :class:`BaseHandler` for pages and
:class:`hub_collab.apihandlers.base.APIHandler` for JSON. The user is resolved
asynchronously in :meth:`BaseHandler.prepare` (cookie via Hub OAuth, or a Hub
API token in ``Authorization: token …``); groups come from the Hub's group
directory, never from the request.
"""

from __future__ import annotations

from typing import Any

from jupyterhub.services.auth import HubOAuthenticated, UserNotAllowed
from tornado import web

from ..permissions.access import Identity
from ..services import Services

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; frame-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'self'"
)


class BaseHandler(HubOAuthenticated, web.RequestHandler):  # type: ignore[misc]
    """Authentication, the application object and security headers."""

    _not_allowed: bool = False

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

    async def resolve_user(self) -> dict[str, Any] | None:
        """Resolve the Hub user once per request, without blocking the event loop."""
        if "_hub_auth_user_cache" in self.__dict__:
            cached: dict[str, Any] | None = self.__dict__["_hub_auth_user_cache"]
            return cached
        model = await self.hub_auth.get_user(self, sync=False)
        user = None
        if model:
            try:
                user = self.check_hub_user(model)
            except UserNotAllowed:
                self._not_allowed = True
        self._hub_auth_user_cache = user
        return user

    async def prepare(self) -> None:  # type: ignore[override]
        await self.resolve_user()

    @property
    def identity(self) -> Identity | None:
        model = self.current_user
        if not model:
            return None
        return self.collab.identity_for(model)
