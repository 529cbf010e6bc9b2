"""Pages for browsers: the home page, the notebook page and the OAuth callback.

Pages need a logged-in Hub user; anyone else is redirected to the Hub's login
(``tornado.web.authenticated`` with HubOAuth's login URL).
"""

from __future__ import annotations

import json
import os
from typing import Any

from jupyterhub.services.auth import HubOAuthCallbackHandler
from tornado import web

from .base import BaseHandler

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATIC = os.path.join(HERE, "static")


class PageHandler(BaseHandler):
    def render_app(self, page: str, **extra: Any) -> None:
        ident = self.identity
        assert ident is not None
        config = {
            "page": page,
            "base_url": self.collab.base_url,
            "hub_prefix": self.hub_auth.hub_prefix,
            "xsrf": self.xsrf_token.decode() if isinstance(self.xsrf_token, bytes) else self.xsrf_token,
            "user": {"name": ident.name, "admin": ident.admin, "groups": sorted(ident.groups)},
            "kernels_isolated": self.collab.kernel_provider != "local",
            **extra,
        }
        self.render(
            "page.html",
            config_json=json.dumps(config),
            title=extra.get("title", "hub-collab"),
            kernels_isolated=config["kernels_isolated"],
        )


class HomeHandler(PageHandler):
    @web.authenticated
    def get(self) -> None:
        self.render_app("home")


class NotebookPageHandler(PageHandler):
    @web.authenticated
    def get(self, nb_id: str) -> None:
        self.render_app("notebook", notebook=nb_id)


class OAuthCallbackHandler(HubOAuthCallbackHandler):  # type: ignore[misc]
    @property
    def hub_auth(self) -> Any:  # type: ignore[override]
        return self.settings["hub_auth"]


default_handlers = [
    (r"", HomeHandler),
    (r"notebooks/([A-Za-z0-9_-]{1,64})", NotebookPageHandler),
    (r"oauth_callback", OAuthCallbackHandler),
]
