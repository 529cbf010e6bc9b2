"""Helpers behind the fixtures in ``conftest.py``: a real Hub, the service, a browser login.

- :class:`Process`: a subprocess in its own session with its output in a log file;
  :meth:`Process.stop` stops it and every process it started (no leaks).
- :class:`Hub`: a real JupyterHub with configurable-http-proxy; hub-collab is its
  *external* service ``collab``; a ``test-admin`` service token drives the Hub API.
- :class:`SpawningHub`: the same, but it spawns real single-user servers
  (``LocalProcessSpawner``, named servers allowed) as real Unix users, which
  :func:`ensure_unix_user` creates. Needs root.
- :class:`CollabService`: the hub-collab process, started by the tests with the
  environment a Hub gives a service; :class:`DirectService`: another one beside it, on
  its own port (other settings: its own Redis, metrics off...).
- :func:`browser_login`: the OAuth login exactly as a browser does it.
- :func:`wait_until`: poll with a deadline (never a fixed sleep).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import pwd
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin, urlparse

import psutil
import requests

from hub_collab import unixusers
from hub_collab.demo import (
    ACCESS_SCOPE,
    ADMIN_USERS,
    GROUPS,
    PASSWORD,
    SERVICE_NAME,
    USERS,
    config_source,
    free_port,
    roles,
    server_role,
)
from hub_collab.localspawn import SingleUserEnv, spawner_settings
from hub_collab.unixusers import NotRootError

REPO = Path(__file__).resolve().parent.parent

#: Users in no group, for tests.
EXTRA_USERS = ["dave", "eve"]
#: The test-only service that administers users, groups and tokens.
ADMIN_SERVICE = "test-admin"
#: A test-only service holding only ``read:metrics``, as a deployment grants its Prometheus.
METRICS_SERVICE = "test-prometheus"
ADMIN_SERVICE_SCOPES = [
    "admin:users",
    "admin:groups",
    "tokens",
    "list:users",
    "read:users",
    "list:groups",
    "read:groups",
]

T = TypeVar("T")

__all__ = [
    "ACCESS_SCOPE",
    "ADMIN_USERS",
    "EXTRA_USERS",
    "GROUPS",
    "PASSWORD",
    "SERVICE_NAME",
    "USERS",
    "BrowserSession",
    "CollabService",
    "DirectService",
    "METRICS_SERVICE",
    "Hub",
    "NotRootError",
    "Process",
    "SpawningHub",
    "browser_login",
    "clean_env",
    "ensure_unix_user",
    "free_port",
    "require_root",
    "wait_until",
]


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Call `check` until it returns something truthy; return that. Raise after `timeout` s.

    `check` may raise :class:`AssertionError` to say "not yet" with a reason, which is
    reported on timeout, together with `on_timeout()` (for example a log tail).
    """
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            result = check()
        except AssertionError as exc:
            result, last = None, str(exc)
        if result:
            return result
        if time.monotonic() > deadline:
            detail = f" (last: {last})" if last else ""
            extra = "\n" + on_timeout() if on_timeout else ""
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}{detail}{extra}")
        time.sleep(interval)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without Hub or hub-collab settings, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JUPYTERHUB_", "HUB_COLLAB_", "JPY_"))
    }
    parts = [str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    env.update(extra)
    return env


class Process:
    """A subprocess in its own session, its stdout and stderr in `log_path`.

    :meth:`stop` sends SIGTERM to its process group, waits, then SIGKILLs whatever is
    left of it *and* of every descendant seen while it ran (the Hub starts the proxy
    and managed services in sessions of their own).
    """

    def __init__(
        self, name: str, argv: list[str], *, env: dict[str, str], cwd: Path, log_path: Path
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._seen: dict[int, psutil.Process] = {}

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self._seen.clear()
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- start {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def note_descendants(self) -> list[psutil.Process]:
        """Remember (and return) the descendants alive now, to clean them up in :meth:`stop`."""
        if not self.running:
            return []
        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return []
        for child in children:
            self._seen.setdefault(child.pid, child)
        return list(children)

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"[no log: {exc}]"
        return f"--- last {lines} lines of {self.log_path}:\n" + "\n".join(
            text.splitlines()[-lines:]
        )

    def check_alive(self) -> None:
        """Raise with the log tail if the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with code {self.proc.returncode}\n{self.tail()}"
            )

    def stop(self, timeout: float = 20.0, sig: int = signal.SIGTERM) -> int | None:
        """Stop it (and everything it started); return its exit code."""
        if self.proc is None:
            return None
        self.note_descendants()
        code = self.proc.poll()
        if code is None:
            with contextlib.suppress(ProcessLookupError):  # it is gone already
                os.killpg(self.proc.pid, sig)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                    os.killpg(self.proc.pid, signal.SIGKILL)
                code = self.proc.wait(timeout)
        leftovers = [p for p in self._seen.values() if _alive(p)]
        if leftovers:
            _, leftovers = psutil.wait_procs(leftovers, timeout=timeout / 2)
            for p in leftovers:
                _kill(p, signal.SIGTERM)
            _, leftovers = psutil.wait_procs(leftovers, timeout=5)
            for p in leftovers:
                _kill(p, signal.SIGKILL)
            psutil.wait_procs(leftovers, timeout=5)
        self._seen.clear()
        return code


def _alive(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _kill(proc: psutil.Process, sig: int) -> None:
    with contextlib.suppress(psutil.Error):  # it ended meanwhile
        proc.send_signal(sig)


class Hub:
    """A real JupyterHub behind configurable-http-proxy, on free 127.0.0.1 ports.

    ``url`` is the public URL (the proxy), ``api_url`` the Hub's API seen from
    services. hub-collab is the external service ``collab`` at ``collab_port``
    with ``collab_api_token``; :meth:`api` calls the Hub API as ``test-admin``.
    """

    def __init__(self, root: Path, *, start_timeout: float = 90.0) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.hub_port = free_port()
        self.proxy_api_port = free_port()
        self.collab_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.api_url = f"http://127.0.0.1:{self.hub_port}/hub/api"
        self.collab_prefix = f"/services/{SERVICE_NAME}/"
        self.collab_api_token = secrets.token_hex(32)
        self.admin_token = secrets.token_hex(32)
        #: the API token of :data:`METRICS_SERVICE` (scopes: ``read:metrics`` only)
        self.metrics_token = secrets.token_hex(32)
        self.start_timeout = start_timeout
        self._tokens: dict[tuple[str, tuple[str, ...] | None], str] = {}
        self.config_path = self.root / "jupyterhub_config.py"
        self.process = Process(
            "jupyterhub",
            [sys.executable, "-m", "jupyterhub", "-f", str(self.config_path), "--debug"],
            env=clean_env(),
            cwd=self.root,
            log_path=self.root / "jupyterhub.log",
        )
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {self.admin_token}"

    @property
    def oauth_callback_url(self) -> str:
        return urljoin(self.url, self.collab_prefix + "oauth_callback")

    def settings(self) -> dict[str, Any]:
        service_roles = roles([SERVICE_NAME])
        service_roles.append(
            {
                "name": "test-admin",
                "description": "tests: manage users, groups and tokens",
                "scopes": list(ADMIN_SERVICE_SCOPES),
                "services": [ADMIN_SERVICE],
            }
        )
        service_roles.append(
            {
                "name": METRICS_SERVICE,
                "description": "tests: a Prometheus scraper",
                "scopes": ["read:metrics"],
                "services": [METRICS_SERVICE],
            }
        )
        return {
            "JupyterHub.bind_url": self.url.rstrip("/"),
            "JupyterHub.hub_bind_url": f"http://127.0.0.1:{self.hub_port}",
            "ConfigurableHTTPProxy.api_url": f"http://127.0.0.1:{self.proxy_api_port}",
            "ConfigurableHTTPProxy.pid_file": str(self.root / "jupyterhub-proxy.pid"),
            "JupyterHub.db_url": f"sqlite:///{self.root / 'jupyterhub.sqlite'}",
            "JupyterHub.cookie_secret_file": str(self.root / "jupyterhub_cookie_secret"),
            "JupyterHub.authenticator_class": "dummy",
            "DummyAuthenticator.password": PASSWORD,
            "Authenticator.allowed_users": set(USERS) | set(EXTRA_USERS),
            "Authenticator.admin_users": set(ADMIN_USERS),
            "JupyterHub.load_groups": {
                name: {"users": list(users)} for name, users in GROUPS.items()
            },
            "JupyterHub.load_roles": service_roles,
            "JupyterHub.services": [
                {
                    "name": SERVICE_NAME,
                    "url": f"http://127.0.0.1:{self.collab_port}",
                    "api_token": self.collab_api_token,
                    "oauth_client_id": f"service-{SERVICE_NAME}",
                    "oauth_redirect_uri": self.oauth_callback_url,
                    "oauth_no_confirm": True,
                    "display": True,
                    # the Hub waits this long for an external service at startup;
                    # ours is started later, by the `collab` fixture
                    "timeout": 1,
                },
                {"name": ADMIN_SERVICE, "api_token": self.admin_token},
                {"name": METRICS_SERVICE, "api_token": self.metrics_token},
            ],
            "JupyterHub.default_url": self.collab_prefix,
        }

    def extra_config(self) -> str:
        """Python source appended to the generated config (for what is not a plain value)."""
        return ""

    def start(self) -> None:
        self.root.chmod(0o700)  # the Hub's database and cookie secret: root only
        self.config_path.write_text(config_source(self.settings()) + self.extra_config())
        self.process.start()

        def healthy() -> bool:
            self.process.check_alive()
            self.process.note_descendants()
            try:
                health = requests.get(self.url + "hub/health", timeout=2)
                me = self.http.get(self.url + "hub/api/user", timeout=2)
            except requests.ConnectionError as exc:
                raise AssertionError(str(exc)) from None
            assert health.status_code == 200, f"hub/health: {health.status_code}"
            assert me.status_code == 200, (
                f"hub/api/user as {ADMIN_SERVICE}: {me.status_code} {me.text}"
            )
            return True

        wait_until(
            healthy,
            timeout=self.start_timeout,
            interval=0.2,
            what="the Hub",
            on_timeout=self.process.tail,
        )
        self.process.note_descendants()

    def stop(self) -> None:
        self.http.close()
        self.process.stop(timeout=30)

    # -- Hub API, as test-admin --------------------------------------------------------------

    def api(
        self, method: str, path: str, *, expect: Iterable[int] = (200, 201, 204), **kwargs: Any
    ) -> Any:
        """Call the Hub API (``path`` relative to ``/hub/api/``) as test-admin; the JSON reply."""
        resp = self.http.request(method, f"{self.api_url}/{path.lstrip('/')}", timeout=60, **kwargs)
        if resp.status_code not in set(expect):
            raise AssertionError(f"{method} hub/api/{path}: {resp.status_code} {resp.text}")
        return resp.json() if resp.content else None

    def token(self, user: str, scopes: list[str] | None = None) -> str:
        """A Hub API token for `user` (all its permissions, or only `scopes`); cached."""
        key = (user, tuple(scopes) if scopes is not None else None)
        if key not in self._tokens:
            body: dict[str, Any] = {"note": "hub-collab tests"}
            if scopes is not None:
                body["scopes"] = scopes
            self._tokens[key] = self.api("POST", f"users/{user}/tokens", json=body)["token"]
        return self._tokens[key]

    def create_user(self, name: str) -> dict[str, Any]:
        """Create `name` unless it exists; its model."""
        found = self.api("GET", f"users/{name}", expect=(200, 404))
        if found and found.get("name") == name:
            return dict(found)
        return dict(self.api("POST", f"users/{name}", json={}))

    def group(self, name: str) -> dict[str, Any] | None:
        """The Hub's model of group `name`, or None if there is no such group."""
        resp = self.http.get(f"{self.api_url}/groups/{name}", timeout=60)
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return dict(resp.json())

    def group_members(self, group: str) -> list[str]:
        model = self.group(group)
        return list(model["users"]) if model else []

    def set_groups(self, group: str, users: Iterable[str]) -> None:
        """Make `users` exactly the members of `group` (created if missing)."""
        wanted = set(users)
        model = self.group(group)
        if model is None:
            self.api("POST", f"groups/{group}", json={"users": sorted(wanted)})
            return
        current = set(model["users"])
        if current - wanted:
            self.api("DELETE", f"groups/{group}/users", json={"users": sorted(current - wanted)})
        if wanted - current:
            self.api("POST", f"groups/{group}/users", json={"users": sorted(wanted - current)})

    def add_to_group(self, group: str, user: str) -> None:
        """Add `user` to `group` (created if missing)."""
        if self.group(group) is None:
            self.api("POST", f"groups/{group}", json={"users": [user]})
        else:
            self.api("POST", f"groups/{group}/users", json={"users": [user]})

    def remove_from_group(self, group: str, user: str) -> None:
        self.api("DELETE", f"groups/{group}/users", json={"users": [user]})

    def reset_groups(self) -> None:
        """Put the standard groups back as they were at startup."""
        for group, users in GROUPS.items():
            self.set_groups(group, users)


# -- real single-user servers, as real Unix users ------------------------------------------------

#: Users of :class:`SpawningHub` that get a real Unix account (demo names, so the
#: isolation tests and ``hub-collab demo`` share them).
SPAWN_USERS = ["alice", "bob"]
#: Scopes of the OAuth token the Hub gives hub-collab for a logged-in user
#: (``oauth_client_allowed_scopes``); ``!user`` means "the logged-in user".
COLLAB_OAUTH_SCOPES = ["servers!user", "access:servers!user"]
#: The role an admin may grant hub-collab instead (docs/kernels.md): every user's servers
#: (the demo run as root grants the same).
COLLAB_SERVER_ROLE = server_role([SERVICE_NAME])
#: A second OAuth client with the same scopes that asks for consent (``oauth_no_confirm``
#: off): the tests read what a user is asked to agree to. It never runs.
CONSENT_SERVICE = "collab-consent"
#: Named servers whose names start with this fail to start (the spawner raises).
FAILING_SERVER_PREFIX = "broken"
#: Named servers whose names start with this have a command that does not exist.
BAD_CMD_SERVER_PREFIX = "badcmd"
#: Named servers whose names start with this never answer (the Hub gives up after
#: ``HANGING_SERVER_TIMEOUT`` seconds).
HANGING_SERVER_PREFIX = "hang"
HANGING_SERVER_TIMEOUT = 8
#: The message of the spawner's error for a ``broken*`` server.
FAILING_SERVER_MESSAGE = "this named server is configured to fail (hub-collab tests)"


def require_root(what: str) -> None:
    """Fail (never skip) with a clear message unless this process runs as root."""
    unixusers.require_root(
        what, "CI runs the tests as root; run them as root (for example in a container)."
    )


def ensure_unix_user(name: str) -> pwd.struct_passwd:
    """The Unix account `name` with a home directory, created (``useradd -m``) if missing."""
    require_root(f"creating the Unix account {name!r}")
    unixusers.ensure_unix_user(name, comment="hub-collab test user")
    return pwd.getpwnam(name)


class SpawningHub(Hub):
    """A :class:`Hub` that spawns real single-user servers as real Unix users.

    ``LocalProcessSpawner`` runs ``python -m jupyterhub.singleuser`` (jupyter_server)
    as the user's Unix account (created by :func:`ensure_unix_user`), in their home
    directory. Named servers are allowed; a named server called ``broken*`` fails in
    the spawner with :data:`FAILING_SERVER_MESSAGE`, one called ``badcmd*`` has a
    command that does not exist.

    The service ``collab`` gets OAuth tokens with :data:`COLLAB_OAUTH_SCOPES` for the
    users who log in to it, and its own token holds :data:`COLLAB_SERVER_ROLE` (both
    ways are tested). Needs root.
    """

    def __init__(
        self,
        root: Path,
        *,
        unix_users: Iterable[str] = SPAWN_USERS,
        start_timeout: float = 90.0,
        spawn_timeout: int = 60,
    ) -> None:
        require_root("a Hub that spawns users' servers as real Unix users")
        super().__init__(root, start_timeout=start_timeout)
        self.unix_users = list(unix_users)
        self.spawn_timeout = spawn_timeout
        self.singleuser = SingleUserEnv.find()

    def settings(self) -> dict[str, Any]:
        settings = super().settings()
        for role in settings["JupyterHub.load_roles"]:
            if role["name"] == ADMIN_SERVICE:
                role["scopes"] = [
                    *role["scopes"],
                    "servers",
                    "access:servers",
                    "admin:server_state",
                ]
            if role["name"] == "user":
                role["scopes"] = [*role["scopes"], f"access:services!service={CONSENT_SERVICE}"]
        settings["JupyterHub.load_roles"].append(dict(COLLAB_SERVER_ROLE))
        services = settings["JupyterHub.services"]
        for service in services:
            if service["name"] == SERVICE_NAME:
                service["oauth_client_allowed_scopes"] = list(COLLAB_OAUTH_SCOPES)
        services.append(
            {
                "name": CONSENT_SERVICE,
                "api_token": secrets.token_hex(32),
                "oauth_client_id": f"service-{CONSENT_SERVICE}",
                "oauth_redirect_uri": urljoin(
                    self.url, f"services/{CONSENT_SERVICE}/oauth_callback"
                ),
                "oauth_client_allowed_scopes": list(COLLAB_OAUTH_SCOPES),
            }
        )
        settings.update(
            spawner_settings(
                self.singleuser,
                default_url="/api/status",
                named_server_limit=5,
                timeout=self.spawn_timeout,
            )
        )
        return settings

    def extra_config(self) -> str:
        return f"""

def _hub_collab_test_pre_spawn(spawner):
    # tests: a named server whose spawner fails, and one with a command that does not exist
    if spawner.name.startswith({FAILING_SERVER_PREFIX!r}):
        raise RuntimeError({FAILING_SERVER_MESSAGE!r})
    if spawner.name.startswith({BAD_CMD_SERVER_PREFIX!r}):
        spawner.cmd = ["/nonexistent/jupyterhub-singleuser"]
    if spawner.name.startswith({HANGING_SERVER_PREFIX!r}):
        spawner.cmd = ["/bin/sh", "-c", "exec sleep 3600", "sh"]
        spawner.start_timeout = spawner.http_timeout = {HANGING_SERVER_TIMEOUT}


c.Spawner.pre_spawn_hook = _hub_collab_test_pre_spawn
"""

    def start(self) -> None:
        for name in self.unix_users:
            ensure_unix_user(name)
        super().start()

    def stop_all_servers(self, timeout: float = 60.0) -> None:
        """Stop every user's servers (named too) and wait until they are gone."""
        for name in self.unix_users:
            model = self.api("GET", f"users/{name}?include_stopped_servers=0", expect=(200, 404))
            for server_name in (model or {}).get("servers", {}):
                path = (
                    f"users/{name}/servers/{server_name}" if server_name else f"users/{name}/server"
                )
                self.api("DELETE", path, expect=(202, 204, 400, 404))

        def stopped() -> bool:
            for name in self.unix_users:
                model = self.api("GET", f"users/{name}")
                assert not model.get("servers"), f"{name} still has {list(model['servers'])}"
            return True

        wait_until(
            stopped,
            timeout=timeout,
            interval=0.2,
            what="servers to stop",
            on_timeout=self.process.tail,
        )

    def stop(self) -> None:
        # stopping the Hub stops what is left anyway: a failure here changes nothing
        with contextlib.suppress(Exception):
            if self.process.running:
                self.stop_all_servers()
        super().stop()


class CollabService:
    """The hub-collab service process, started with the environment a Hub gives a service.

    ``public_url`` goes through the proxy (``http://127.0.0.1:<hub port>/services/collab/``),
    ``direct_url`` straight to the service. ``extra_args`` (a list) are appended to the
    command line at the next :meth:`start` / :meth:`restart`.
    """

    def __init__(
        self,
        hub: Hub,
        data_dir: Path,
        *,
        extra_args: Iterable[str] = (),
        start_timeout: float = 60.0,
    ) -> None:
        self.hub = hub
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # database, cookie secret, runtime: readable by the service's account only
        self.data_dir.chmod(0o700)
        self.port = hub.collab_port
        self.public_url = urljoin(hub.url, hub.collab_prefix)
        self.direct_url = f"http://127.0.0.1:{self.port}{hub.collab_prefix}"
        self.db_url = f"sqlite:///{self.data_dir / 'hub-collab.sqlite'}"
        self.extra_args: list[str] = list(extra_args)
        #: environment variables added to the service's (e.g. JUPYTER_PATH for kernelspecs)
        self.extra_env: dict[str, str] = {}
        self.start_timeout = start_timeout
        self.log_path = self.data_dir / "hub-collab.log"
        self.process: Process | None = None

    def env(self) -> dict[str, str]:
        hub = self.hub
        public_origin = hub.url.rstrip("/")
        return clean_env(
            JUPYTERHUB_API_TOKEN=hub.collab_api_token,
            JUPYTERHUB_API_URL=hub.api_url,
            JUPYTERHUB_BASE_URL="/",
            JUPYTERHUB_SERVICE_NAME=SERVICE_NAME,
            JUPYTERHUB_SERVICE_PREFIX=hub.collab_prefix,
            JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{self.port}",
            JUPYTERHUB_CLIENT_ID=f"service-{SERVICE_NAME}",
            JUPYTERHUB_OAUTH_CALLBACK_URL=hub.oauth_callback_url,
            JUPYTERHUB_OAUTH_ACCESS_SCOPES=json.dumps([ACCESS_SCOPE]),
            JUPYTERHUB_OAUTH_SCOPES=json.dumps([ACCESS_SCOPE]),
            JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES=json.dumps([]),
            JUPYTERHUB_HOST="",
            JUPYTERHUB_PUBLIC_URL=self.public_url,
            JUPYTERHUB_PUBLIC_HUB_URL=public_origin + "/hub/",
            **self.extra_env,
        )

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "hub_collab",
            "--data-dir",
            str(self.data_dir),
            f"--db-url={self.db_url}",
            "--HubCollab.group_refresh_interval=1",
            # the tests' kernels run as the service's processes unless a test says otherwise
            *(
                []
                if any(a.startswith("--HubCollab.kernel_provider=") for a in self.extra_args)
                else ["--HubCollab.kernel_provider=local"]
            ),
            *self.extra_args,
        ]

    def start(self) -> None:
        self.process = Process(
            "hub-collab", self.argv(), env=self.env(), cwd=self.data_dir, log_path=self.log_path
        )
        self.process.start()
        token = self.hub.token(ADMIN_USERS[0])
        process = self.process

        def ready() -> bool:
            process.check_alive()
            try:
                resp = requests.get(
                    self.public_url + "api/me",
                    headers={"Authorization": f"token {token}"},
                    timeout=2,
                )
            except requests.ConnectionError as exc:
                raise AssertionError(str(exc)) from None
            assert resp.status_code == 200, f"api/me: {resp.status_code} {resp.text[:200]}"
            return True

        try:
            wait_until(
                ready,
                timeout=self.start_timeout,
                interval=0.05,
                what="hub-collab",
                on_timeout=process.tail,
            )
        except BaseException:
            process.stop()
            raise

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.process is None:
            return None
        code = self.process.stop(timeout=timeout)
        self.process = None
        return code

    def restart(self) -> None:
        """SIGTERM, wait for exit, start again on the same port and data."""
        self.stop()
        self.start()

    def tail(self, lines: int = 60) -> str:
        return self.process.tail(lines) if self.process else ""


class DirectService(CollabService):
    """Another hub-collab process of the same Hub, on a port of its own and reached only
    directly (``direct_url``: the Hub's proxy routes ``collab`` to the session's service),
    with a SQLite database of its own: for a test that starts the service with other
    settings (its own Redis, metrics off...) beside the session's one.

    :meth:`launch` starts the process and returns; :meth:`wait_started` waits until
    ``api/health/startup`` answers 200 (so it works with Redis down too).
    """

    def __init__(self, hub: Hub, data_dir: Path, *, extra_args: Iterable[str] = (), port: int | None = None) -> None:
        super().__init__(hub, data_dir, extra_args=extra_args)
        self.port = port or free_port()
        self.direct_url = f"http://127.0.0.1:{self.port}{hub.collab_prefix}"
        self.public_url = self.direct_url

    def env(self) -> dict[str, str]:
        env = super().env()
        env["JUPYTERHUB_SERVICE_URL"] = f"http://127.0.0.1:{self.port}"
        return env

    def start(self) -> None:
        self.launch()
        self.wait_started()

    def launch(self) -> None:
        self.process = Process(
            "hub-collab-direct", self.argv(), env=self.env(), cwd=self.data_dir, log_path=self.log_path
        )
        self.process.start()

    def wait_started(self) -> None:
        process = self.process
        assert process is not None, "launch() first"

        def started() -> bool:
            process.check_alive()
            try:
                resp = requests.get(self.direct_url + "api/health/startup", timeout=2)
            except requests.ConnectionError as exc:
                raise AssertionError(str(exc)) from None
            assert resp.status_code == 200, f"api/health/startup: {resp.status_code} {resp.text[:200]}"
            return True

        try:
            wait_until(started, timeout=self.start_timeout, what="hub-collab (direct)", on_timeout=process.tail)
        except BaseException:
            process.stop()
            raise


class BrowserSession(requests.Session):
    """A logged-in browser: cookies, and ``xsrf`` to send as ``X-XSRFToken``."""

    xsrf: str = ""
    service_url: str = ""

    def xsrf_headers(self) -> dict[str, str]:
        return {"X-XSRFToken": self.xsrf}


_FORM = re.compile(r"<form\b[^>]*\baction=\"([^\"]*)\"", re.I)
_XSRF_INPUT = re.compile(
    r"name=\"_xsrf\"[^>]*value=\"([^\"]*)\"|value=\"([^\"]*)\"[^>]*name=\"_xsrf\"", re.I
)


def browser_login(public_service_url: str, user: str, password: str = PASSWORD) -> BrowserSession:
    """Log in to the service as a browser does: page → Hub login form → OAuth → service.

    The returned session holds the service's login cookie and, in ``.xsrf``, the
    service's ``_xsrf`` cookie value.
    """
    s = BrowserSession()
    s.service_url = public_service_url
    page = s.get(public_service_url, timeout=60)
    page.raise_for_status()
    if "/hub/login" in urlparse(page.url).path:
        form = _FORM.search(page.text)
        xsrf = _XSRF_INPUT.search(page.text)
        assert form and xsrf, f"no login form at {page.url}:\n{page.text[:500]}"
        action = urljoin(page.url, html.unescape(form.group(1)))
        page = s.post(
            action,
            data={"username": user, "password": password, "_xsrf": xsrf.group(1) or xsrf.group(2)},
            timeout=60,
        )
        page.raise_for_status()
    assert page.url.startswith(public_service_url), (
        f"login ended at {page.url}, not under {public_service_url}"
    )
    service_cookies = [c for c in s.cookies if c.name.startswith(f"service-{SERVICE_NAME}")]
    assert service_cookies, (
        f"no service login cookie after login; cookies: {[c.name for c in s.cookies]}"
    )
    prefix = service_cookies[0].path or "/"

    def xsrf_cookies() -> list[str]:
        return [c.value or "" for c in s.cookies if c.name == "_xsrf" and (c.path or "/") == prefix]

    xsrf_values = xsrf_cookies()
    if not xsrf_values:
        s.get(urljoin(public_service_url, prefix), timeout=60).raise_for_status()
        xsrf_values = xsrf_cookies()
    assert xsrf_values, (
        f"no _xsrf cookie for {prefix}; cookies: {[(c.name, c.path) for c in s.cookies]}"
    )
    s.xsrf = xsrf_values[-1]
    return s
