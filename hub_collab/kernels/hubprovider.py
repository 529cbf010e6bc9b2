"""Kernels on the users' own Hub servers: the ``hub`` provider.

A kernel runs on a single-user server of the Hub user it belongs to (its
``KernelRequest.user``: the runner in per-user mode, the notebook's owner in
shared mode) — their default server, or the named one in ``KernelRequest.server``
— through the Hub's proxy, with jupyter_server's kernel API
(:class:`~hub_collab.kernels.remote.RemoteProvider`). A stopped server is started
first, and the start followed until the server is ready (or fails, with the
spawner's message).

Which token: the service's own Hub API token, to which the admin grants a role with
the scopes ``servers`` (start them), ``access:servers`` (reach them) and
``read:users`` (see them) — see docs/install.md. That token could reach every user's
server, so the service decides whose server a kernel may use, and only ever uses
the server of the user the kernel belongs to: in per-user mode the one who runs the
cell (never anyone else's), in shared mode the notebook's owner after they consented
(:mod:`hub_collab.kernels.manager`). docs/kernels.md weighs this against the users'
own OAuth tokens.
"""

from __future__ import annotations

from typing import Any

from ..hubservers import HubServers, Progress
from .provider import KernelRequest
from .remote import RemoteKernelConnection, RemoteProvider


class HubProvider:
    """Kernels on the kernel owner's own server, started through the Hub if stopped."""

    name = "hub"

    def __init__(self, servers: HubServers, token: str, *, start_timeout: float = 120.0) -> None:
        self.servers = servers
        self._token = token
        self.start_timeout = start_timeout
        self._remotes: dict[tuple[str, str], RemoteProvider] = {}

    def __repr__(self) -> str:
        return f"<HubProvider {self.servers.public_url}>"

    @property
    def token(self) -> str:
        """The service's Hub API token (what it reaches users' servers with)."""
        return self._token

    def remote(self, user: str, server: str) -> RemoteProvider:
        """The kernel API of ``user``'s ``server`` (through the proxy)."""
        key = (user, server)
        remote = self._remotes.get(key)
        if remote is None:
            remote = self._remotes[key] = RemoteProvider(
                "hub", self.servers.server_url(user, server), {"Authorization": f"token {self._token}"}
            )
        return remote

    async def start(self, request: KernelRequest) -> RemoteKernelConnection:
        if not request.user:
            raise ValueError("a kernel on a Hub server needs the user it belongs to")
        label = f"{request.user}'s server" + (f" {request.server!r}" if request.server else "")
        tell = request.progress

        def progress(event: Progress) -> None:
            if tell is not None and not event.ready:
                pct = f" {event.progress}%" if event.progress is not None else ""
                tell(f"Starting {label}:{pct} {event.message}".strip())

        await self.servers.start(request.user, request.server, self._token, timeout=self.start_timeout, on_progress=progress)
        if tell is not None:
            tell(f"Starting a {request.kernel_name} kernel on {label}")
        return await self.remote(request.user, request.server).start(request)

    async def attach(self, info: dict[str, Any], request: KernelRequest) -> RemoteKernelConnection:
        # the stored info names the server's URL: it must be this user's server, here
        return await self.remote(request.user, request.server).attach(info, request)
