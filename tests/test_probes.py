"""Kubernetes probes: readiness ``api/health``, liveness ``api/health/live``, start-up
``api/health/startup`` (no login, nothing about users or notebooks).

A Redis outage (a private ``redis-server``, stopped and started again): liveness stays
200 and the service keeps serving while readiness turns 503, then 200 again. Start-up
against a Redis that accepts connections and never answers (a socket the test holds):
the process answers liveness at once, start-up and readiness 503 (every other request
503 ``unavailable``) until it gives up on Redis and goes on degraded.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from hubfixtures import CollabService, DirectService, Hub, wait_until
from replicas import RedisServer
from test_auth import assert_error, auth

PROBES = ("api/health", "api/health/live", "api/health/startup")


def get(service: CollabService, path: str, **kwargs: object) -> requests.Response:
    return requests.get(service.direct_url + path, timeout=60, **kwargs)  # type: ignore[arg-type]


def test_probes_need_no_login_and_say_nothing_about_users(hub: Hub, collab: CollabService) -> None:
    token = hub.token("alice")
    requests.post(collab.public_url + "api/notebooks", json={"name": "probed"}, headers=auth(token), timeout=60).raise_for_status()
    bodies = {}
    for path in PROBES:
        resp = requests.get(collab.public_url + path, timeout=60)
        assert resp.status_code == 200, (path, resp.text)
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["X-Request-Id"]
        bodies[path] = resp.json()
    assert bodies["api/health/live"] == {"ok": True}
    assert bodies["api/health/startup"] == {"ok": True, "started": True}
    health = bodies["api/health"]
    assert health["ok"] is True and health["started"] is True and health["database"] is True and health["redis"] is None
    assert set(health) == {"ok", "started", "database", "redis", "replica", "rooms", "sessions", "home_of", "bus", "catchups"}
    assert "alice" not in str(bodies) and "probed" not in str(bodies)


@pytest.mark.parametrize("path", PROBES)
def test_probes_refuse_other_methods(collab: CollabService, path: str) -> None:
    assert requests.post(collab.public_url + path, data=b"{}", timeout=60).status_code == 405


@pytest.fixture(scope="module")
def redis_service(hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DirectService, RedisServer]]:
    root = Path(tmp_path_factory.mktemp("probes"))
    redis_server = RedisServer(root)
    redis_server.start()
    service = DirectService(hub, root / "collab", extra_args=[f"--HubCollab.redis_url={redis_server.url}"])
    try:
        service.start()
        yield service, redis_server
    finally:
        service.stop()
        redis_server.stop()


def test_a_redis_outage_fails_readiness_not_liveness(hub: Hub, redis_service: tuple[DirectService, RedisServer]) -> None:
    service, redis_server = redis_service
    wait_until(lambda: get(service, "api/health").status_code == 200, what="ready with Redis", on_timeout=service.tail)
    assert get(service, "api/health").json()["redis"] is True

    redis_server.stop()

    def not_ready() -> bool:
        live = get(service, "api/health/live")
        assert live.status_code == 200, f"liveness failed during the outage: {live.status_code} {live.text}"
        health = get(service, "api/health")
        assert health.status_code == 503, health.text
        return True

    wait_until(not_ready, what="readiness to fail", on_timeout=service.tail)
    body = get(service, "api/health").json()
    assert body["ok"] is False and body["redis"] is False and body["database"] is True
    # the service keeps working: a login, a notebook, liveness and start-up
    token = hub.token("bob")
    assert get(service, "api/me", headers=auth(token)).status_code == 200
    created = requests.post(service.direct_url + "api/notebooks", json={"name": "during the outage"}, headers=auth(token), timeout=60)
    assert created.status_code == 201, created.text
    assert get(service, "api/health/live").status_code == 200
    assert get(service, "api/health/startup").status_code == 200

    redis_server.start()  # the same port
    wait_until(lambda: get(service, "api/health").status_code == 200, what="readiness to return", on_timeout=service.tail)
    assert get(service, "api/health").json()["redis"] is True


class SilentRedis:
    """A TCP port that accepts connections and never answers, until :meth:`release`
    closes them all (a Redis that hangs)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.connections: list[socket.socket] = []
        self.accepted = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections.append(conn)
            self.accepted.set()

    def release(self) -> None:
        self.server.close()
        for conn in self.connections:
            conn.close()
        self._thread.join(5)


def test_startup_waits_for_redis_and_liveness_answers_meanwhile(hub: Hub, tmp_path: Path) -> None:
    silent = SilentRedis()
    service = DirectService(hub, tmp_path / "collab", extra_args=[f"--HubCollab.redis_url={silent.url}"])
    service.launch()
    try:

        def alive() -> bool:
            assert service.process is not None
            service.process.check_alive()
            try:
                return get(service, "api/health/live").status_code == 200
            except requests.ConnectionError as exc:
                raise AssertionError(str(exc)) from None

        wait_until(alive, what="liveness", on_timeout=service.tail)
        assert silent.accepted.wait(10), "the service never connected to Redis"
        # Redis holds the start-up: live, not started, not ready, nothing else served
        startup = get(service, "api/health/startup")
        assert startup.status_code == 503 and startup.json() == {"ok": False, "started": False}
        health = get(service, "api/health")
        assert health.status_code == 503 and health.json()["started"] is False
        me = get(service, "api/me", headers=auth(hub.token("alice")))
        assert_error(me, 503, "unavailable")
        assert me.headers["Retry-After"] == "1"
        assert get(service, "api/health/live").status_code == 200

        silent.release()  # Redis goes away: start-up goes on, degraded
        wait_until(lambda: get(service, "api/health/startup").status_code == 200, what="start-up to finish", on_timeout=service.tail)
        assert get(service, "api/me", headers=auth(hub.token("alice"))).status_code == 200
        assert get(service, "api/health").status_code == 503  # no Redis: not ready
        assert get(service, "api/health/live").status_code == 200
    finally:
        service.stop()
        silent.release()
