"""Several hub-collab replicas for the scale-out tests.

:class:`RedisServer` is a private ``redis-server`` on a free port (so a test can
stop and restart it); :class:`Replica` is a hub-collab process joined to the
others through that Redis and a PostgreSQL database of its own.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg2
import requests
from hubfixtures import CollabService, Hub, free_port, wait_until

PG_ADMIN = "dbname=test user=postgres host=127.0.0.1 port=5432"


class PostgresDatabase:
    """A database of its own on the shared PostgreSQL server, dropped at the end."""

    def __init__(self) -> None:
        self.name = f"hubcollab_rep_{uuid.uuid4().hex[:10]}"
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{self.name}"

    def _admin(self, sql: str) -> None:
        conn = psycopg2.connect(PG_ADMIN)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def create(self) -> None:
        self._admin(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class RedisServer:
    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.dir = root / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def up() -> bool:
            import redis

            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5).ping())

        wait_until(up, timeout=20, interval=0.05, what="redis-server")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
            self.proc = None


class Replica(CollabService):
    """One replica: own port (unless it takes the Hub's service port), shared DB and Redis."""

    def __init__(self, hub: Hub, data_dir: Path, name: str, *, db_url: str, redis_url: str, prefix: str, cookie_secret: str, port: int | None = None) -> None:
        super().__init__(hub, data_dir)
        self.name = name
        self.port = port or free_port()
        self.direct_url = f"http://127.0.0.1:{self.port}{hub.collab_prefix}"
        self.db_url = db_url
        self.cookie_secret = cookie_secret
        self.extra_args = [
            f"--HubCollab.port={self.port}",
            f"--HubCollab.redis_url={redis_url}",
            f"--HubCollab.redis_prefix={prefix}",
            f"--HubCollab.replica_id={name}",
            "--HubCollab.lease_ttl=2.0",
            "--HubCollab.catchup_interval=5",
        ]

    def env(self) -> dict[str, str]:
        env = super().env()
        env["HUB_COLLAB_COOKIE_SECRET"] = self.cookie_secret
        env["JUPYTERHUB_SERVICE_URL"] = f"http://127.0.0.1:{self.port}"
        return env

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the process and return at once (several replicas start at the same moment)."""
        from hubfixtures import Process

        self.process = Process("hub-collab-" + self.name, self.argv(), env=self.env(), cwd=self.data_dir, log_path=self.log_path)
        self.process.start()

    def wait_ready(self) -> None:
        """Wait until ``api/health`` answers 200; stop the process if it never does."""
        process = self.process
        assert process is not None, "launch() first"

        def ready() -> bool:
            process.check_alive()
            try:
                resp = requests.get(self.direct_url + "api/health", timeout=2)
            except requests.ConnectionError as exc:
                raise AssertionError(str(exc)) from None
            assert resp.status_code == 200, resp.text[:200]
            return True

        try:
            wait_until(ready, timeout=self.start_timeout, interval=0.05, what=f"replica {self.name}", on_timeout=process.tail)
        except BaseException:
            process.stop()
            raise

    def kill9(self) -> None:
        assert self.process is not None
        self.process.stop(timeout=5, sig=9)
        self.process = None

    def health(self) -> dict[str, object]:
        result: dict[str, object] = requests.get(self.direct_url + "api/health", timeout=5).json()
        return result


def new_prefix() -> str:
    return f"test-{secrets.token_hex(4)}:"
