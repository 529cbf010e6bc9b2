"""Where kernels may run: the resources a user picks from, and their providers.

A **resource** is named by a string:

| resource | where a kernel runs | provider |
| --- | --- | --- |
| ``server:`` | the kernel user's default Hub server | ``hub`` |
| ``server:<name>`` | the kernel user's named Hub server ``<name>`` | ``hub`` |
| ``gateway`` | the Kernel/Enterprise Gateway the admin configured | ``gateway`` |
| ``local`` | a child process of the service (not isolated) | ``local`` |

A server resource always means a server *of the user the kernel belongs to* (the
runner in per-user mode, the notebook's owner in shared mode): nobody can name
another user's server, so nobody can run code on a server they could not use
themselves. Which resources a deployment offers follows ``HubCollab.kernel_provider``
(its default resource) and the gateway setting: see :class:`KernelResources`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager

from ..errors import BadRequest
from ..hubservers import HubServerError, ProgressCallback, ServerState
from .hubprovider import HubProvider
from .provider import KernelProvider
from .remote import RemoteProvider
from .remote_api import RemoteKernelError

log = logging.getLogger("hub_collab.kernels")

#: how long a listing of kernelspecs is reused (a flood of pickers asks once)
SPECS_TTL = 10.0
#: a resource string longer than this is refused
MAX_RESOURCE = 300
#: how long a user's listing is reused (a flood of pickers asks the Hub once)
LISTING_TTL = 2.0


@dataclass(frozen=True)
class Resource:
    """A parsed resource string."""

    id: str
    #: ``server``, ``gateway`` or ``local``
    kind: str
    #: the named server for ``server`` ("" the default one)
    server: str = ""

    @property
    def provider(self) -> str:
        return "hub" if self.kind == "server" else self.kind

    def describe(self, user: str) -> str:
        """Where a kernel of ``user`` on this resource runs, in words."""
        if self.kind == "server":
            return f"on {user}'s server" + (f" {self.server!r}" if self.server else "")
        if self.kind == "gateway":
            return "on the kernel gateway"
        return "on the service (not isolated)"


def parse_resource(value: Any) -> Resource:
    """A :class:`Resource` from its string; ``invalid_setting`` if malformed."""
    if not isinstance(value, str) or len(value) > MAX_RESOURCE:
        raise BadRequest(
            "resource must be a string: 'server:' (your default server), 'server:<name>',"
            " 'gateway' or 'local'",
            code="invalid_setting",
        )
    if value.startswith("server:"):
        name = value[len("server:") :]
        if "/" in name or any(ord(c) < 32 for c in name) or len(name) > 255:
            raise BadRequest(f"{name[:60]!r} is not a server name", code="invalid_setting")
        return Resource(value, "server", name)
    if value in ("gateway", "local"):
        return Resource(value, value)
    raise BadRequest(
        f"unknown resource {value[:60]!r}: expected 'server:', 'server:<name>', 'gateway' or 'local'",
        code="invalid_setting",
    )


class KernelResources:
    """The providers this deployment has, which resources it offers, and what each holds.

    ``default`` is the resource of ``HubCollab.kernel_provider`` (``server:`` for
    ``hub``). A ``hub`` deployment offers each user's servers, and the gateway too when
    one is configured; a ``gateway`` deployment offers the gateway; ``local`` only the
    service itself (it is never offered beside isolated resources).
    """

    def __init__(self, providers: dict[str, KernelProvider], default: str) -> None:
        if not providers:
            raise ValueError("KernelResources needs at least one provider")
        self.providers = dict(providers)
        self.default = parse_resource(default)
        if self.default.provider not in self.providers:
            raise ValueError(f"the default resource {default!r} has no provider")
        self._specs: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self._listings: dict[str, tuple[float, dict[str, Any]]] = {}
        self._starts: dict[tuple[str, str], asyncio.Task[None]] = {}

    @property
    def hub(self) -> HubProvider | None:
        hub = self.providers.get("hub")
        return hub if isinstance(hub, HubProvider) else None

    def offered(self, value: Any) -> Resource:
        """The resource, if this deployment offers it; ``unknown_resource`` otherwise."""
        res = parse_resource(value)
        if res.provider not in self.providers:
            have = ", ".join(sorted(self.kinds()))
            raise BadRequest(
                f"this service does not run kernels on {res.id!r}"
                f" ({'no gateway is configured' if res.kind == 'gateway' else 'not offered here'};"
                f" it offers: {have})",
                code="unknown_resource",
            )
        return res

    def kinds(self) -> list[str]:
        return [{"hub": "server:<name>", "gateway": "gateway", "local": "local"}[p] for p in self.providers]

    def provider(self, res: Resource) -> KernelProvider:
        return self.providers[res.provider]

    # -- what a user may pick --------------------------------------------------------------------

    async def listing(self, user: str) -> dict[str, Any]:
        """The resources ``user`` may run their kernels on, for the picker.

        ``{"default", "resources": [{resource, kind, label, state, pending?, kernelspecs,
        default_kernel, error?}]}``. Stopped servers have no kernelspecs (null) until
        started. A Hub that cannot answer gives an ``error`` entry, not a failure.
        """
        out: list[dict[str, Any]] = []
        hub = self.hub
        if hub is not None:
            try:
                servers = await hub.servers.list_servers(user, hub.token)
            except HubServerError as exc:
                out.append({"resource": "server:", "kind": "server", "label": "your server", "state": "unknown", "error": str(exc)})
            else:
                for server in servers:
                    entry: dict[str, Any] = {
                        "resource": f"server:{server.name}",
                        "kind": "server",
                        "server": server.name,
                        "label": f"server {server.name!r}" if server.name else "your default server",
                        "state": str(server.state),
                        "pending": server.pending,
                    }
                    if server.state is ServerState.READY:
                        entry.update(await self._specs_entry(f"server:{server.name}", user))
                    else:
                        entry.update(kernelspecs=None, default_kernel=None)
                    out.append(entry)
        for kind in ("gateway", "local"):
            if kind in self.providers:
                entry = {
                    "resource": kind,
                    "kind": kind,
                    "label": "the kernel gateway" if kind == "gateway" else "the service (not isolated)",
                    "state": "ready",
                }
                entry.update(await self._specs_entry(kind, user))
                out.append(entry)
        return {"default": self.default.id, "resources": out}

    async def _specs_entry(self, resource: str, user: str) -> dict[str, Any]:
        try:
            specs = await self.kernelspecs(parse_resource(resource), user)
        except (RemoteKernelError, HubServerError, OSError) as exc:
            return {"kernelspecs": None, "default_kernel": None, "error": str(exc)[:300]}
        return {"kernelspecs": specs["kernelspecs"], "default_kernel": specs["default"]}

    async def kernelspecs(self, res: Resource, user: str) -> dict[str, Any]:
        """``{"default": name, "kernelspecs": [{name, display_name, language}]}`` of a
        resource (a server of ``user``'s); cached for :data:`SPECS_TTL` seconds."""
        key = (res.id, user if res.kind == "server" else "")
        now = time.monotonic()
        hit = self._specs.get(key)
        if hit is not None and now - hit[0] < SPECS_TTL:
            return hit[1]
        if res.kind == "local":
            found = await asyncio.get_running_loop().run_in_executor(None, _local_specs)
        else:
            provider = self.provider(res)
            remote = provider.remote(user, res.server) if isinstance(provider, HubProvider) else provider
            assert isinstance(remote, RemoteProvider)
            raw = await remote.client.kernelspecs()
            found = {
                "default": str(raw.get("default") or ""),
                "kernelspecs": sorted(
                    (_spec_entry(name, (model or {}).get("spec") or {}) for name, model in (raw.get("kernelspecs") or {}).items()),
                    key=lambda s: s["name"],
                ),
            }
        if len(self._specs) > 10_000:  # many users: keep the cache bounded
            self._specs.clear()
        self._specs[key] = (now, found)
        return found

    async def known_kernelspecs(self, res: Resource, user: str) -> dict[str, Any] | None:
        """The kernelspecs of ``res`` if known without asking a remote server (the
        service's own, or a listing fetched lately); None otherwise."""
        if res.kind == "local":
            return await self.kernelspecs(res, user)
        hit = self._specs.get((res.id, user if res.kind == "server" else ""))
        return hit[1] if hit is not None and time.monotonic() - hit[0] < SPECS_TTL else None

    async def start_server(self, user: str, name: str, on_progress: ProgressCallback | None = None) -> None:
        """Start ``user``'s own server ``name`` (``""`` default) and wait until it is ready.

        Concurrent starts of the same server share one attempt (only the first
        caller's ``on_progress`` hears it)."""
        hub = self.hub
        if hub is None:
            raise BadRequest("this service does not run kernels on Hub servers", code="unknown_resource")
        key = (user, name)
        task = self._starts.get(key)
        if task is None:
            task = self._starts[key] = asyncio.get_running_loop().create_task(
                self._start(user, name, on_progress, hub.start_timeout)
            )
            task.add_done_callback(lambda _t: self._starts.pop(key, None))
        await asyncio.shield(task)

    async def _start(self, user: str, name: str, on_progress: ProgressCallback | None, timeout: float) -> None:
        hub = self.hub
        assert hub is not None
        try:
            await hub.servers.start(user, name, hub.token, timeout=timeout, on_progress=on_progress)
        finally:
            self._specs.pop((f"server:{name}", user), None)
            self._listings.pop(user, None)


def _local_specs() -> dict[str, Any]:
    ksm = KernelSpecManager()
    specs = ksm.get_all_specs()
    return {
        "default": "python3" if "python3" in specs else (sorted(specs)[0] if specs else ""),
        "kernelspecs": [_spec_entry(name, model.get("spec") or {}) for name, model in sorted(specs.items())],
    }


def _spec_entry(name: str, spec: dict[str, Any]) -> dict[str, str]:
    return {
        "name": str(name)[:255],
        "display_name": str(spec.get("display_name") or name)[:255],
        "language": str(spec.get("language") or "")[:64],
    }
