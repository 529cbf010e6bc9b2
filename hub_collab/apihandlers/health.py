"""Probes for Kubernetes: readiness, liveness and start-up.

* ``GET api/health`` (readiness): 200 when the service has started and every
  configured dependency answers (the database; Redis if ``redis_url`` is set), else
  503. A replica that cannot reach Redis stops getting new clients but keeps serving
  the ones it has.
* ``GET api/health/live`` (liveness): 200 whenever the process's event loop runs,
  whatever the dependencies do. A Redis outage must not fail it: the service keeps
  working then, and a failing liveness probe would restart every pod at once.
* ``GET api/health/startup`` (start-up): 200 once start-up has finished (schema
  checked, stores open, bus connected or given up on for now: degraded), 503 before.

None needs a login (probes have none), and none says anything about users or
notebooks: counts, this replica's name and the state of its dependencies.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import sqlalchemy as sa

from ..handlers.base import BaseHandler


class ProbeHandler(BaseHandler):
    """No authentication, no start-up gate; JSON that is never cached."""

    quiet_access_log = True

    async def prepare(self) -> None:  # type: ignore[override]
        self.bind_request()

    def write_probe(self, ok: bool, body: dict[str, Any]) -> None:
        self.set_status(200 if ok else 503)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(body))


class HealthHandler(ProbeHandler):
    """Readiness."""

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
        started = self.collab.started
        ok = started and db_ok and redis_ok is not False
        self.write_probe(
            ok,
            {
                "ok": ok,
                "started": started,
                "database": db_ok,
                "redis": redis_ok,
                "replica": self.collab.replica_id,
                "rooms": len(self.collab.rooms.rooms),
                "sessions": sum(len(room.sessions) for room in self.collab.rooms.rooms.values()),
                "home_of": len(self.collab.replicator.fences),
                "bus": dict(bus.stats),
                "catchups": self.collab.replicator.catchups,
            },
        )


class LiveHandler(ProbeHandler):
    """Liveness: answering at all is the proof (a blocked event loop answers nothing)."""

    def get(self) -> None:
        self.write_probe(True, {"ok": True})


class StartupHandler(ProbeHandler):
    """Start-up: 200 once :meth:`HubCollab.start_service` has finished."""

    def get(self) -> None:
        started = self.collab.started
        self.write_probe(started, {"ok": started, "started": started})


default_handlers = [
    (r"api/health", HealthHandler),
    (r"api/health/live", LiveHandler),
    (r"api/health/startup", StartupHandler),
]
