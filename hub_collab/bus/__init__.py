"""The bus between replicas: :class:`~hub_collab.bus.base.Bus`.

Use :func:`make_bus`: :class:`~hub_collab.bus.local.LocalBus` when no Redis is
configured (one replica, the embedded default), else
:class:`~hub_collab.bus.redis.RedisBus` (Redis pub/sub plus leases).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Bus, Handler
from .local import LocalBus

if TYPE_CHECKING:
    from ..metrics import Metrics


def make_bus(redis_url: str, replica_id: str, prefix: str = "collab:", metrics: Metrics | None = None) -> Bus:
    if not redis_url:
        return LocalBus(replica_id, metrics=metrics)
    from .redis import RedisBus

    return RedisBus(redis_url, replica_id, prefix=prefix, metrics=metrics)


__all__ = ["Bus", "Handler", "LocalBus", "make_bus"]
