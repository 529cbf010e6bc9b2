"""Users' Hub servers, really spawned as real Unix users, and the tokens that may use them.

Each claim of docs/kernels.md ("Where kernels run: Hub servers and tokens") is
proved here against a real Hub (``spawning_hub``: LocalProcessSpawner, named
servers) and the real hub-collab service (``spawning_collab``):

- the OAuth token the Hub gives hub-collab for a logged-in user is the content
  of the service's login cookie, carries ``servers!user=<name>`` and
  ``access:servers!user=<name>``, lives as long as the Hub's cookie max age
  (14 days by default), starts the user's own servers and reaches their kernel
  API, and is refused for another user's server;
- a revoked or expired token gives :class:`TokenRejected` ("reload the page");
- the admin's alternative, a role for the service, reaches every user's server
  (so the service has to check who may use which);
- servers start with progress, named ones too, stop, and fail with the spawner's message.

**Needs root** (CI runs as root): the Unix accounts ``alice`` and ``bob`` are
created if missing, and their servers run as them. As another user these tests
fail, saying so.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import stat
import subprocess
from collections.abc import Callable, Iterator

import psutil
import pytest
import requests
from hubfixtures import (
    COLLAB_OAUTH_SCOPES,
    CONSENT_SERVICE,
    FAILING_SERVER_MESSAGE,
    SERVICE_NAME,
    BrowserSession,
    CollabService,
    NotRootError,
    SpawningHub,
    require_root,
    wait_until,
)
from tornado.web import decode_signed_value

from hub_collab.hubservers import (
    HubServers,
    HubTimeout,
    HubUnreachable,
    Progress,
    ScopeMissing,
    ServerNotFound,
    ServerStartFailed,
    ServerState,
    TokenRejected,
)

pytestmark = pytest.mark.timeout(240)


# -- helpers ---------------------------------------------------------------------------------


def oauth_token_from_cookie(session: BrowserSession, collab: CollabService) -> str:
    """The Hub OAuth token inside the service's login cookie, decoded as the service does."""
    secret = bytes.fromhex((collab.data_dir / "cookie_secret").read_text().strip())
    cookie_name = f"service-{SERVICE_NAME}"
    values = [c.value for c in session.cookies if c.name == cookie_name and c.value]
    assert values, f"no {cookie_name} cookie: {[c.name for c in session.cookies]}"
    token = decode_signed_value(secret, cookie_name, values[-1])
    assert token, "the service's login cookie does not verify with its cookie secret"
    return token.decode()


def whoami(hub: SpawningHub, token: str) -> requests.Response:
    return requests.get(
        f"{hub.api_url}/user", headers={"Authorization": f"token {token}"}, timeout=60
    )


def kernels(hub: SpawningHub, user: str, token: str, server: str = "") -> requests.Response:
    """``GET user/<user>/<server>/api/kernels`` through the Hub's proxy."""
    path = f"user/{user}/{server + '/' if server else ''}api/kernels"
    return requests.get(
        hub.url + path,
        headers={"Authorization": f"token {token}"},
        timeout=60,
        allow_redirects=False,  # a refusal must not look like the login page's 200
    )


def server_pid(hub: SpawningHub, user: str, server: str = "") -> int:
    """The pid of the server's process, from the Hub's server state (LocalProcessSpawner)."""
    model = hub.api("GET", f"users/{user}")
    state = model["servers"][server].get("state") or {}
    assert "pid" in state, f"no pid in the server state (admin:server_state?): {model}"
    return int(state["pid"])


def uid_of(pid: int) -> int:
    return int(psutil.Process(pid).uids().real)


@pytest.fixture(scope="module")
def logins(spawning_hub: SpawningHub, spawning_collab: CollabService) -> dict[str, BrowserSession]:
    """alice and bob logged in to hub-collab through the Hub (OAuth), as browsers."""
    from hubfixtures import browser_login

    return {user: browser_login(spawning_collab.public_url, user) for user in ("alice", "bob")}


@pytest.fixture(scope="module")
def tokens(logins: dict[str, BrowserSession], spawning_collab: CollabService) -> dict[str, str]:
    """alice's and bob's OAuth tokens for hub-collab, read from the service's login cookie."""
    return {user: oauth_token_from_cookie(s, spawning_collab) for user, s in logins.items()}


@pytest.fixture
def servers(spawning_hub: SpawningHub) -> HubServers:
    return HubServers(spawning_hub.api_url, spawning_hub.url)


@pytest.fixture
def stop_all(spawning_hub: SpawningHub) -> Iterator[None]:
    yield
    spawning_hub.stop_all_servers()


# -- the test infrastructure -------------------------------------------------------------------


def test_not_root_fails_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NotRootError, match="needs root.*CI runs the tests as root"):
        require_root("a Hub that spawns users' servers")


def test_the_service_and_hub_files_are_root_only(
    spawning_hub: SpawningHub, spawning_collab: CollabService
) -> None:
    for directory in (spawning_collab.data_dir, spawning_hub.root):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    secret = spawning_collab.data_dir / "cookie_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    # and alice, as herself, can read none of it
    for path in (
        secret,
        spawning_collab.data_dir / "hub-collab.sqlite",
        spawning_hub.root / "jupyterhub_cookie_secret",
    ):
        done = subprocess.run(
            ["runuser", "-u", "alice", "--", "cat", str(path)], capture_output=True, text=True
        )
        assert done.returncode != 0 and "Permission denied" in done.stderr, (path, done)


# -- (a) the user's OAuth token --------------------------------------------------------------


def test_the_oauth_token_is_in_the_login_cookie_with_the_server_scopes(
    spawning_hub: SpawningHub, tokens: dict[str, str]
) -> None:
    me = whoami(spawning_hub, tokens["alice"])
    assert me.status_code == 200, me.text
    model = me.json()
    assert model["name"] == "alice"
    scopes = set(model["scopes"])
    # `!user` in oauth_client_allowed_scopes became the logged-in user
    assert {"servers!user=alice", "access:servers!user=alice"} <= scopes, scopes
    assert f"access:services!service={SERVICE_NAME}" in scopes
    # and nothing about any other user, nor admin rights
    assert not [s for s in scopes if "!user=bob" in s or s in ("servers", "access:servers")]


def test_the_user_is_asked_to_consent_to_the_server_scopes(spawning_hub: SpawningHub) -> None:
    """Without ``oauth_no_confirm`` the Hub shows what the service may do on the user's behalf."""
    s = requests.Session()
    login = s.get(spawning_hub.url + "hub/login", timeout=60)
    xsrf = s.cookies.get("_xsrf", path="/hub/")
    assert login.status_code == 200 and xsrf
    done = s.post(
        spawning_hub.url + "hub/login",
        data={"username": "alice", "password": "demo", "_xsrf": xsrf},
        timeout=60,
        allow_redirects=False,
    )
    assert done.status_code == 302, done.status_code  # logged in to the Hub
    page = s.get(
        spawning_hub.url + "hub/api/oauth2/authorize",
        params={
            "client_id": f"service-{CONSENT_SERVICE}",
            "redirect_uri": f"{spawning_hub.url}services/{CONSENT_SERVICE}/oauth_callback",
            "response_type": "code",
            "state": "x",
        },
        timeout=60,
        allow_redirects=False,
    )
    assert page.status_code == 200, (page.status_code, page.headers.get("Location"))
    text = page.text
    words = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text))
    assert "Authorize access" in text or "would like permission" in text, text[:2000]
    # what alice is asked to agree to, each scope limited to her own servers
    assert "Start and stop user servers. Applies to only you." in words, words
    assert "Access user servers via API or browser. Applies to only you." in words, words


def test_oauth_token_lifetime_is_the_hub_cookie_max_age(
    spawning_hub: SpawningHub, tokens: dict[str, str]
) -> None:
    token_id = whoami(spawning_hub, tokens["alice"]).json()["token_id"]
    listed = spawning_hub.api("GET", "users/alice/tokens")["api_tokens"]
    (token,) = [t for t in listed if t["id"] == token_id]
    assert token["oauth_client"] == f"JupyterHub service {SERVICE_NAME}" or token["oauth_client"]
    created = _parse(token["created"])
    expires = _parse(token["expires_at"])
    # JupyterHub.oauth_token_expires_in defaults to cookie_max_age_days (14) in seconds
    assert abs((expires - created) - 14 * 24 * 3600) < 120, token


def _parse(timestamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


async def test_own_server_starts_as_the_unix_user_and_its_kernels_answer(
    spawning_hub: SpawningHub, servers: HubServers, tokens: dict[str, str], stop_all: None
) -> None:
    alice = tokens["alice"]
    events: list[Progress] = []
    server = await servers.start("alice", "", alice, timeout=90, on_progress=events.append)
    assert server.state is ServerState.READY
    assert server.url == f"{spawning_hub.url}user/alice/"
    assert events and events[-1].ready, events
    assert uid_of(server_pid(spawning_hub, "alice")) == pwd.getpwnam("alice").pw_uid

    assert kernels(spawning_hub, "alice", alice).status_code == 200
    started = await asyncio.to_thread(
        requests.post,
        server.url + "api/kernels",
        headers={"Authorization": f"token {alice}"},
        json={"name": "python3"},
        timeout=60,
    )
    assert started.status_code == 201, started.text
    kernel_id = started.json()["id"]

    # the kernel process runs as alice too
    def kernel_uid() -> int | None:
        for proc in psutil.Process(server_pid(spawning_hub, "alice")).children(recursive=True):
            if any(kernel_id in part for part in proc.cmdline()):
                return uid_of(proc.pid)
        return None

    assert (
        wait_until(kernel_uid, timeout=30, what="the kernel process")
        == pwd.getpwnam("alice").pw_uid
    )

    # bob's OAuth token may not touch alice's server: not through the proxy, not through the Hub
    bob = tokens["bob"]
    assert kernels(spawning_hub, "alice", bob).status_code == 403
    for method in ("get", "delete"):
        refused = await asyncio.to_thread(
            requests.request,
            method,
            f"{server.url}api/kernels/{kernel_id}",
            headers={"Authorization": f"token {bob}"},
            timeout=60,
        )
        assert refused.status_code == 403, (method, refused.status_code)
    # the Hub answers 404 (not 403) when a token has no scope at all on that user
    for attempt in (
        servers.list_servers("alice", bob),
        servers.start("alice", "", bob, timeout=60),
        servers.stop("alice", "", bob, timeout=60),
    ):
        with pytest.raises(ServerNotFound, match="or your login may not use it") as refused:
            await attempt
        assert refused.value.status == 404
    assert (await servers.server("alice", "", alice)).state is ServerState.READY


async def test_named_servers_start_with_progress_and_stop(
    spawning_hub: SpawningHub, servers: HubServers, tokens: dict[str, str], stop_all: None
) -> None:
    alice = tokens["alice"]
    events: list[Progress] = []
    gpu = await servers.start("alice", "gpu", alice, timeout=90, on_progress=events.append)
    assert gpu.state is ServerState.READY and gpu.name == "gpu"
    assert gpu.url == f"{spawning_hub.url}user/alice/gpu/"
    assert events[-1].ready and events[-1].progress == 100, events
    assert kernels(spawning_hub, "alice", alice, "gpu").status_code == 200
    assert kernels(spawning_hub, "alice", tokens["bob"], "gpu").status_code == 403
    assert uid_of(server_pid(spawning_hub, "alice", "gpu")) == pwd.getpwnam("alice").pw_uid

    listed = {s.name: s for s in await servers.list_servers("alice", alice)}
    assert listed["gpu"].state is ServerState.READY
    assert "" in listed  # the default server is always listed

    # already running: start is a no-op
    again = await servers.start("alice", "gpu", alice, timeout=30)
    assert again.state is ServerState.READY

    await servers.stop("alice", "gpu", alice, timeout=60)
    assert (await servers.server("alice", "gpu", alice)).state is ServerState.STOPPED
    gone = kernels(spawning_hub, "alice", alice, "gpu")
    assert gone.status_code != 200
    # stopping a stopped server is fine
    await servers.stop("alice", "gpu", alice, timeout=30)

    with pytest.raises(ServerNotFound, match="no server named 'nope'"):
        await servers.server("alice", "nope", alice)


async def test_a_server_that_fails_to_start_says_why(
    servers: HubServers, tokens: dict[str, str], stop_all: None
) -> None:
    alice = tokens["alice"]
    with pytest.raises(ServerStartFailed) as failed:
        await servers.start("alice", "broken", alice, timeout=60)
    assert FAILING_SERVER_MESSAGE in failed.value.message
    assert failed.value.status == 502 and failed.value.code == "server_failed"

    with pytest.raises(ServerStartFailed) as bad_cmd:
        await servers.start("alice", "badcmd", alice, timeout=60)
    assert "/nonexistent/jupyterhub-singleuser" in bad_cmd.value.message
    # a failed start leaves nothing running, and a good server of the same user still starts
    listed = {s.name: s.state for s in await servers.list_servers("alice", alice)}
    assert (
        listed.get("broken") is ServerState.STOPPED and listed.get("badcmd") is ServerState.STOPPED
    )


async def test_a_start_that_outlasts_its_timeout_is_a_timeout_not_a_hang(
    servers: HubServers, tokens: dict[str, str], stop_all: None
) -> None:
    alice = tokens["alice"]
    began = asyncio.get_running_loop().time()
    with pytest.raises(HubTimeout, match="in time") as late:
        await servers.start("alice", "slow", alice, timeout=0.3)
    assert asyncio.get_running_loop().time() - began < 5
    assert late.value.status == 504
    # the Hub goes on starting it; asking again finds it (or waits for it)
    server = await servers.start("alice", "slow", alice, timeout=90)
    assert server.state is ServerState.READY


# -- (b) expired and revoked tokens ------------------------------------------------------------


async def test_a_revoked_oauth_token_says_to_reload(
    spawning_hub: SpawningHub,
    spawning_collab: CollabService,
    servers: HubServers,
    stop_all: None,
) -> None:
    from hubfixtures import browser_login

    session = browser_login(spawning_collab.public_url, "bob")
    token = oauth_token_from_cookie(session, spawning_collab)
    await servers.start("bob", "", token, timeout=90)
    assert kernels(spawning_hub, "bob", token).status_code == 200
    token_id = whoami(spawning_hub, token).json()["token_id"]
    spawning_hub.api("DELETE", f"users/bob/tokens/{token_id}")

    with pytest.raises(TokenRejected, match="reload the page") as rejected:
        await servers.list_servers("bob", token)
    assert rejected.value.status == 401 and rejected.value.code == "login_expired"
    with pytest.raises(TokenRejected):
        await servers.start("bob", "", token, timeout=60)
    with pytest.raises(TokenRejected):
        await servers.stop("bob", "", token, timeout=60)
    # A server that already checked this token keeps accepting it until its HubAuth cache
    # entry ages out (HubAuth.cache_max_age, 5 minutes by default): revocation is not
    # instant at the server (docs/kernels.md). A server that never saw it refuses it.
    await servers.start("bob", "other", spawning_hub.collab_api_token, timeout=90)
    assert kernels(spawning_hub, "bob", token, "other").status_code == 403
    cached = kernels(spawning_hub, "bob", token).status_code
    assert cached == 200, cached
    # hub-collab's own HubOAuth caches the same way: bob's page session lasts until then too
    me = await asyncio.to_thread(session.get, spawning_collab.public_url + "api/me", timeout=60)
    assert me.status_code == 200


async def test_an_expired_token_says_to_reload(
    spawning_hub: SpawningHub, servers: HubServers
) -> None:
    # OAuth and API tokens are the same kind of token in the Hub (orm.APIToken, with
    # expires_at): a short-lived API token shows what an expired OAuth token does
    token = spawning_hub.api(
        "POST",
        "users/alice/tokens",
        json={"expires_in": 1, "scopes": list(COLLAB_OAUTH_SCOPES), "note": "expires"},
    )["token"]
    assert "" in [s.name for s in await servers.list_servers("alice", token)]
    await asyncio.sleep(2.5)
    with pytest.raises(TokenRejected, match="expired or was revoked"):
        await servers.list_servers("alice", token)


async def test_a_token_without_the_server_scopes_names_the_missing_scope(
    spawning_hub: SpawningHub, servers: HubServers
) -> None:
    token = spawning_hub.api(
        "POST", "users/alice/tokens", json={"scopes": ["read:users:name!user"], "note": "narrow"}
    )["token"]
    with pytest.raises(ScopeMissing, match="servers") as missing:
        await servers.start("alice", "", token, timeout=60)
    assert missing.value.status == 403
    assert any("servers" in scope for scope in missing.value.scopes), missing.value.log_message


async def test_a_refusal_of_the_services_own_token_says_what_the_admin_must_fix(
    spawning_hub: SpawningHub, servers: HubServers
) -> None:
    """With the service's role (c) a refusal is not the user's login: it names the admin's fix."""
    as_service = HubServers(servers.api_url, servers.public_url, service_token=True)
    with pytest.raises(TokenRejected) as rejected:
        await as_service.list_servers("alice", "not-a-token")
    assert (rejected.value.status, rejected.value.code) == (503, "service_token_rejected")
    assert "hub-collab's own API token" in rejected.value.message and "admin" in rejected.value.message
    narrow = spawning_hub.api(
        "POST", "users/alice/tokens", json={"scopes": ["read:users:name!user"], "note": "narrow service"}
    )["token"]
    with pytest.raises(ScopeMissing) as missing:
        await as_service.start("alice", "", narrow, timeout=60)
    assert "docs/install.md" in missing.value.message and missing.value.scopes


async def test_hub_unreachable(free_port: Callable[[], int]) -> None:
    port = free_port()
    client = HubServers(f"http://127.0.0.1:{port}/hub/api", f"http://127.0.0.1:{port}/")
    with pytest.raises(HubUnreachable, match="cannot be reached"):
        await client.list_servers("alice", "x")


# -- (c) a role for the service -----------------------------------------------------------------


async def test_the_service_role_reaches_every_users_server(
    spawning_hub: SpawningHub, servers: HubServers, stop_all: None
) -> None:
    service_token = spawning_hub.collab_api_token
    me = whoami(spawning_hub, service_token).json()
    assert me["kind"] == "service" and me["name"] == SERVICE_NAME
    assert {"servers", "access:servers"} <= set(me["scopes"]), me["scopes"]

    for user in ("alice", "bob"):
        server = await servers.start(user, "", service_token, timeout=90)
        assert server.state is ServerState.READY
        assert kernels(spawning_hub, user, service_token).status_code == 200
        assert uid_of(server_pid(spawning_hub, user)) == pwd.getpwnam(user).pw_uid
    # it can do this for any user: the Hub no longer says who may use which server,
    # so hub-collab must (docs/kernels.md); an unknown user is still a clear 404
    with pytest.raises(ServerNotFound):
        await servers.list_servers("nobody-such", service_token)
    await servers.stop("bob", "", service_token)
