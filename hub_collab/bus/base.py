"""What replicas share: channels of binary messages and leases.

A :class:`Bus` delivers bytes published on a channel to every *other*
replica subscribed to it, at most once, in order per publisher; messages
published while a connection is down are lost, which is why
:meth:`Bus.on_reconnect` exists (subscribers catch up from the store).
Leases (:meth:`Bus.acquire` / :meth:`Bus.renew`) elect one replica per key
with a fencing token that grows with every new holder.

Lifecycle: ``await bus.start()`` … ``await bus.stop()``, or ``async with``.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..metrics import Metrics

Handler = Callable[[str, bytes], None]
ReconnectHandler = Callable[[], Awaitable[None] | None]


class BusUnavailable(RuntimeError):
    """The bus cannot be reached right now (for example Redis is down)."""


class Bus(abc.ABC):
    def __init__(self, replica_id: str, *, metrics: Metrics | None = None) -> None:
        self.replica_id = replica_id
        self.reconnect_handlers: list[ReconnectHandler] = []
        #: called with the channels whose subscription has just become active
        self.subscribed_handlers: list[Callable[[list[str]], None]] = []
        #: messages and bytes published / received, for benchmarks and /health
        self.stats = {"published": 0, "published_bytes": 0, "received": 0, "received_bytes": 0, "publish_failures": 0}
        #: the same counts for Prometheus (None: metrics are off)
        self.metrics = metrics

    async def __aenter__(self) -> Bus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def distributed(self) -> bool:
        """False for the in-process bus: this replica is the only one."""
        return False

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    @abc.abstractmethod
    def publish(self, channel: str, data: bytes) -> None:
        """Queue ``data`` for the other replicas on ``channel``; never blocks, never raises."""

    @abc.abstractmethod
    def subscribe(self, channel: str, handler: Handler) -> None: ...

    @abc.abstractmethod
    def unsubscribe(self, channel: str) -> None: ...

    async def wait_active(self, channel: str, timeout: float) -> bool:
        """Wait until the subscription to ``channel`` is live; False after ``timeout``."""
        return True

    @abc.abstractmethod
    async def acquire(self, key: str, ttl_ms: int) -> int | None:
        """Take the lease ``key`` if free (or already ours); return the fencing token or None."""

    @abc.abstractmethod
    async def renew(self, key: str, ttl_ms: int) -> bool:
        """Extend our lease; False if it is no longer ours."""

    @abc.abstractmethod
    async def release(self, key: str) -> None: ...

    @abc.abstractmethod
    async def holder(self, key: str) -> str | None:
        """The replica id holding ``key``, or None."""

    @abc.abstractmethod
    async def ping(self) -> bool:
        """True if the bus is reachable now."""

    async def wait_started(self, timeout: float) -> bool:
        """Wait until the first connection attempt after :meth:`start` has ended (at most
        ``timeout`` seconds); True if it connected. False means the service runs degraded
        (local editing only) and the bus keeps retrying."""
        return True

    def on_reconnect(self, handler: ReconnectHandler) -> None:
        self.reconnect_handlers.append(handler)
