"""Readiness: ``GET api/health`` reports whether the database and Redis answer.

It needs no login (Kubernetes probes have none) and says nothing about users
or notebooks. 200 when every configured dependency answers, else 503.
"""

from __future__ import annotations

import asyncio
import json

import sqlalchemy as sa

from ..handlers.base import BaseHandler


class HealthHandler(BaseHandler):
    async def prepare(self) -> None:  # type: ignore[override]
        return None  # no authentication

    def _db_ok(self) -> bool:
        try:
            with self.collab.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:
            return False

    async def get(self) -> None:
        loop = asyncio.get_running_loop()
        db_ok = await loop.run_in_executor(None, self._db_ok)
        bus = self.collab.bus
        redis_ok: bool | None = await bus.ping() if bus.distributed else None
        ok = db_ok and redis_ok is not False
        self.set_status(200 if ok else 503)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(
            json.dumps(
                {
                    "ok": ok,
                    "database": db_ok,
                    "redis": redis_ok,
                    "replica": self.collab.replica_id,
                    "rooms": len(self.collab.rooms.rooms),
                    "sessions": sum(len(room.sessions) for room in self.collab.rooms.rooms.values()),
                    "home_of": len(self.collab.replicator.fences),
                    "bus": dict(bus.stats),
                    "catchups": self.collab.replicator.catchups,
                }
            )
        )


default_handlers = [(r"api/health", HealthHandler)]
