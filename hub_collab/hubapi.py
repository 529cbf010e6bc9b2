"""Talking to the Hub's REST API with the service's own token.

:class:`GroupDirectory` keeps the Hub's group memberships in memory and
refreshes them on a timer, so identities always carry the Hub's groups (never
the client's claims) and a change of membership reaches connected clients
without a restart. It needs the service to hold the ``list:groups`` and
``read:groups`` scopes: a Hub role grants them (the demo's ``hub-collab-service``; on
Kubernetes, the zero-to-jupyterhub values the Helm chart's NOTES.txt prints).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from .tasks import cancel_and_wait

log = logging.getLogger("hub_collab.hubapi")


class GroupDirectory:
    """Hub group memberships: ``groups_of(user)``; listeners hear of changed users."""

    def __init__(self, api_url: str, api_token: str, *, interval: float = 15.0) -> None:
        self.api_url = api_url.rstrip("/") + "/"
        self.api_token = api_token
        self.interval = interval
        self.members: dict[str, frozenset[str]] = {}
        self.loaded = False
        self.listeners: list[Callable[[set[str]], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._client = AsyncHTTPClient()

    def groups_of(self, user: str, fallback: Any = None) -> frozenset[str]:
        if self.loaded:
            return self.members.get(user, frozenset())
        if isinstance(fallback, list):
            return frozenset(str(g) for g in fallback)
        return frozenset()

    async def fetch(self) -> dict[str, frozenset[str]]:
        """All groups and their members, following the Hub's pagination."""
        by_user: dict[str, set[str]] = {}
        offset = 0
        while True:
            req = HTTPRequest(
                f"{self.api_url}groups?offset={offset}&limit=200",
                headers={"Authorization": f"token {self.api_token}", "Accept": "application/jupyterhub-pagination+json"},
                request_timeout=10,
            )
            resp = await self._client.fetch(req)
            body = json.loads(resp.body)
            items = body["items"] if isinstance(body, dict) else body
            for group in items:
                for user in group.get("users", []):
                    by_user.setdefault(user, set()).add(group["name"])
            nxt = body.get("_pagination", {}).get("next") if isinstance(body, dict) else None
            if not nxt:
                break
            offset = int(nxt["offset"])
        return {u: frozenset(g) for u, g in by_user.items()}

    async def refresh(self) -> set[str]:
        """Fetch now; return the users whose groups changed and tell the listeners."""
        new = await self.fetch()
        changed = {u for u in set(new) | set(self.members) if new.get(u, frozenset()) != self.members.get(u, frozenset())}
        self.members = new
        first = not self.loaded
        self.loaded = True
        if changed and not first:
            for listener in self.listeners:
                listener(changed)
        return changed

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("could not refresh Hub groups: %s", exc)
            await asyncio.sleep(self.interval)
