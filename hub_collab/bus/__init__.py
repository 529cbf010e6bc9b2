"""The bus between replicas: :class:`~hub_collab.bus.base.Bus`.

Use :func:`make_bus`: :class:`~hub_collab.bus.local.LocalBus` when no Redis is
configured (one replica, the embedded default), else
:class:`~hub_collab.bus.redis.RedisBus` (Redis pub/sub plus leases).
"""

from __future__ import annotations

from .base import Bus, Handler
from .local import LocalBus


def make_bus(redis_url: str, replica_id: str, prefix: str = "collab:") -> Bus:
    if not redis_url:
        return LocalBus(replica_id)
    from .redis import RedisBus

    return RedisBus(redis_url, replica_id, prefix=prefix)


__all__ = ["Bus", "Handler", "LocalBus", "make_bus"]
