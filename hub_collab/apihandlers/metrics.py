"""Prometheus metrics: ``GET {prefix}metrics``.

Authenticated like JupyterHub's own ``/metrics`` (``HubCollab.authenticate_prometheus``,
on by default): a Hub API token (``Authorization: token …``) or login whose scopes
include ``read:metrics``, or a Hub admin. The token need not be one the service admits
for anything else: a scraper only reads metrics. No credentials: 401; credentials
without the scope: 403, in the one error shape. With ``authenticate_prometheus`` off
it is open (for a scrape inside the cluster's network policy). With
``metrics_enabled`` off it answers 404.

The text format is Prometheus' (or OpenMetrics, if the scraper asks for it in
``Accept``). The metrics count, time and name no user and no notebook.
"""

from __future__ import annotations

from prometheus_client.exposition import choose_encoder

from ..errors import CollabError, Forbidden, NotFound
from .base import APIHandler

#: JupyterHub's scope for reading metrics
SCOPE = "read:metrics"


class MetricsHandler(APIHandler):
    #: the scope check below replaces the service's own login
    actions = {"GET": None}
    quiet_access_log = True

    async def prepare(self) -> None:  # type: ignore[override]
        # not APIHandler.prepare: a scraper's token needs read:metrics, not access to the service
        self.bind_request()
        if self.collab.metrics is None:
            raise NotFound("metrics are off (HubCollab.metrics_enabled)")
        if not self.collab.authenticate_prometheus:
            return
        model = await self.hub_auth.get_user(self, sync=False)
        if not model:
            raise CollabError(
                "authentication required: send a Hub API token with the scope read:metrics",
                status=401,
                code="unauthenticated",
            )
        if SCOPE not in (model.get("scopes") or ()) and not model.get("admin"):
            raise Forbidden(f"reading metrics needs the scope {SCOPE!r} (or a Hub admin)")

    def get(self) -> None:
        metrics = self.collab.metrics
        assert metrics is not None  # prepare() checked
        encoder, content_type = choose_encoder(self.request.headers.get("Accept", ""))
        self.set_header("Content-Type", content_type)
        self.finish(encoder(metrics.registry))


default_handlers = [(r"metrics", MetricsHandler)]
