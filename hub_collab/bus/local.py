"""The in-process bus: one replica, nothing to share.

Publishing goes nowhere (every subscriber lives in this process and already
got the change); every lease belongs to this replica.
"""

from __future__ import annotations

from .base import Bus, Handler


class LocalBus(Bus):
    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def publish(self, channel: str, data: bytes) -> None:
        return None

    def subscribe(self, channel: str, handler: Handler) -> None:
        return None

    def unsubscribe(self, channel: str) -> None:
        return None

    async def acquire(self, key: str, ttl_ms: int) -> int | None:
        return 1

    async def renew(self, key: str, ttl_ms: int) -> bool:
        return True

    async def release(self, key: str) -> None:
        return None

    async def holder(self, key: str) -> str | None:
        return self.replica_id

    async def ping(self) -> bool:
        return True
