"""Identity and access through a real Hub: tokens, browser OAuth, xsrf, WebSocket refusal."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import pytest
import requests
from hubfixtures import ACCESS_SCOPE, BrowserSession, CollabService, Hub, wait_until
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

Login = Callable[..., BrowserSession]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


def assert_error(resp: requests.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """`resp` is the service's one error shape with `status` (and `code`)."""
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json"), resp.headers["Content-Type"]
    body: dict[str, Any] = resp.json()
    assert set(body) == {"status", "code", "message"}, body
    assert body["status"] == status
    assert isinstance(body["message"], str) and body["message"]
    if code is not None:
        assert body["code"] == code, body
    return body


def ws_url(collab: CollabService, nb_id: str) -> str:
    return collab.public_url.replace("http://", "ws://", 1) + f"api/notebooks/{nb_id}/ws"


def cookie_header(session: requests.Session) -> str:
    return "; ".join(
        f"{c.name}={c.value}" for c in session.cookies if c.name.startswith("service-")
    )


@pytest.fixture(scope="module")
def notebook(hub: Hub, collab: CollabService) -> str:
    """A notebook alice owns (mode 0750, group students)."""
    resp = requests.post(
        collab.public_url + "api/notebooks",
        json={"name": "auth tests", "group": "students"},
        headers=auth(hub.token("alice")),
        timeout=60,
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


# -- who am I -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "user, groups, admin",
    [
        ("alice", ["students"], False),
        ("instructor", ["staff"], False),
        ("admin", [], True),
        ("dave", [], False),
    ],
)
def test_me_with_token(
    hub: Hub, collab: CollabService, user: str, groups: list[str], admin: bool
) -> None:
    resp = requests.get(collab.public_url + "api/me", headers=auth(hub.token(user)), timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"name": user, "groups": groups, "admin": admin}


def test_me_direct_with_token(hub: Hub, collab: CollabService) -> None:
    resp = requests.get(collab.direct_url + "api/me", headers=auth(hub.token("bob")), timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == "bob"


def test_me_with_browser_login(collab: CollabService, browser_login: Login) -> None:
    s = browser_login(collab.public_url, "carol")
    assert s.xsrf
    resp = s.get(collab.public_url + "api/me", timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"name": "carol", "groups": ["students"], "admin": False}


def test_wrong_password_does_not_log_in(collab: CollabService, browser_login: Login) -> None:
    with pytest.raises(requests.HTTPError) as info:
        browser_login(collab.public_url, "carol", password="not-demo")
    assert info.value.response is not None
    assert info.value.response.status_code == 403


# -- refusals -------------------------------------------------------------------------------


def test_unauthenticated_api_is_401_json(collab: CollabService) -> None:
    resp = requests.get(collab.public_url + "api/me", timeout=60)
    assert_error(resp, 401, "unauthenticated")
    resp = requests.get(collab.public_url + "api/notebooks", timeout=60)
    assert_error(resp, 401, "unauthenticated")


def test_garbage_token_is_401_json(collab: CollabService) -> None:
    resp = requests.get(collab.public_url + "api/me", headers=auth("not-a-real-token"), timeout=60)
    assert_error(resp, 401, "unauthenticated")


def test_revoked_token_is_401(hub: Hub, collab: CollabService) -> None:
    token = hub.api("POST", "users/eve/tokens", json={"note": "to revoke"})
    hub.api("DELETE", f"users/eve/tokens/{token['id']}")
    resp = requests.get(collab.public_url + "api/me", headers=auth(token["token"]), timeout=60)
    assert_error(resp, 401, "unauthenticated")


def test_user_without_service_access_is_403_json(hub: Hub, collab: CollabService) -> None:
    """A Hub user whose token lacks access:services!service=collab may not use the service."""
    hub.create_user("mallory")
    token = hub.token("mallory", scopes=["read:users:name!user=mallory"])
    resp = requests.get(collab.public_url + "api/me", headers=auth(token), timeout=60)
    assert_error(resp, 403, "forbidden")
    # the same user with the access scope is fine
    ok = requests.get(
        collab.public_url + "api/me",
        headers=auth(hub.token("mallory", scopes=[ACCESS_SCOPE])),
        timeout=60,
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["name"] == "mallory"


def test_unknown_api_path_is_404_json(hub: Hub, collab: CollabService) -> None:
    resp = requests.get(
        collab.public_url + "api/nonexistent", headers=auth(hub.token("alice")), timeout=60
    )
    assert_error(resp, 404, "not_found")


def test_page_without_login_redirects_to_hub(hub: Hub, collab: CollabService) -> None:
    resp = requests.get(collab.public_url, allow_redirects=False, timeout=60)
    assert resp.status_code == 302
    location = resp.headers["Location"]
    path = urlparse(location).path
    assert path.startswith("/hub/") and (path.endswith("/login") or "oauth2/authorize" in path), (
        location
    )
    # and following it ends at the Hub's login form
    final = requests.get(collab.public_url, timeout=60)
    assert urlparse(final.url).path == "/hub/login"
    assert 'name="_xsrf"' in final.text


def test_bare_prefix_redirects_to_slash(collab: CollabService) -> None:
    resp = requests.get(collab.public_url.rstrip("/"), allow_redirects=False, timeout=60)
    assert resp.status_code in (301, 302)
    assert resp.headers["Location"].endswith(urlparse(collab.public_url).path)


# -- xsrf on state changes ----------------------------------------------------------------


def test_cookie_post_without_xsrf_is_403(collab: CollabService, browser_login: Login) -> None:
    s = browser_login(collab.public_url, "alice")
    resp = s.post(collab.public_url + "api/notebooks", json={"name": "no xsrf"}, timeout=60)
    assert_error(resp, 403, "xsrf")


def test_cookie_post_with_wrong_xsrf_is_403(collab: CollabService, browser_login: Login) -> None:
    s = browser_login(collab.public_url, "alice")
    resp = s.post(
        collab.public_url + "api/notebooks",
        json={"name": "bad xsrf"},
        headers={"X-XSRFToken": "nope"},
        timeout=60,
    )
    assert_error(resp, 403, "xsrf")


def test_cookie_post_with_xsrf_header_is_201(collab: CollabService, browser_login: Login) -> None:
    s = browser_login(collab.public_url, "alice")
    resp = s.post(
        collab.public_url + "api/notebooks",
        json={"name": "with xsrf"},
        headers=s.xsrf_headers(),
        timeout=60,
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["id"]
    assert resp.json()["owner"] == "alice"


def test_token_post_needs_no_xsrf(hub: Hub, collab: CollabService) -> None:
    resp = requests.post(
        collab.public_url + "api/notebooks",
        json={"name": "by token"},
        headers=auth(hub.token("bob")),
        timeout=60,
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["owner"] == "bob"


# -- WebSocket: refused before the upgrade ------------------------------------------------


async def test_ws_without_credentials_is_403(collab: CollabService, notebook: str) -> None:
    with pytest.raises(HTTPClientError) as info:
        await websocket_connect(HTTPRequest(ws_url(collab, notebook), request_timeout=60))
    assert info.value.code == 403


async def test_ws_with_garbage_token_is_403(collab: CollabService, notebook: str) -> None:
    req = HTTPRequest(ws_url(collab, notebook), headers=auth("garbage"), request_timeout=60)
    with pytest.raises(HTTPClientError) as info:
        await websocket_connect(req)
    assert info.value.code == 403


async def test_ws_cookie_with_foreign_origin_is_403(
    collab: CollabService, notebook: str, browser_login: Login
) -> None:
    s = browser_login(collab.public_url, "alice")
    req = HTTPRequest(
        ws_url(collab, notebook),
        headers={"Cookie": cookie_header(s), "Origin": "http://evil.example"},
        request_timeout=60,
    )
    with pytest.raises(HTTPClientError) as info:
        await websocket_connect(req)
    assert info.value.code == 403


async def test_ws_cookie_same_origin_is_welcome(
    collab: CollabService, notebook: str, browser_login: Login
) -> None:
    s = browser_login(collab.public_url, "alice")
    origin = collab.public_url.split("/services/")[0]
    req = HTTPRequest(
        ws_url(collab, notebook),
        headers={"Cookie": cookie_header(s), "Origin": origin},
        request_timeout=60,
    )
    conn = await websocket_connect(req)
    try:
        first = await conn.read_message()
        assert isinstance(first, str)
        welcome = json.loads(first)
        assert welcome["type"] == "welcome"
        assert welcome["user"]["name"] == "alice"
    finally:
        conn.close()


async def test_ws_with_token_is_welcome(hub: Hub, collab: CollabService, notebook: str) -> None:
    req = HTTPRequest(
        ws_url(collab, notebook), headers=auth(hub.token("alice")), request_timeout=60
    )
    conn = await websocket_connect(req)
    try:
        first = await conn.read_message()
        assert isinstance(first, str)
        welcome = json.loads(first)
        assert welcome["type"] == "welcome"
        assert welcome["user"] == {"name": "alice", "admin": False, "groups": ["students"]}
        assert welcome["notebook"] == notebook
    finally:
        conn.close()


async def test_ws_unreadable_notebook_is_404(
    hub: Hub, collab: CollabService, notebook: str
) -> None:
    """dave is in no group and the notebook is 0750: the same answer as for an unknown id."""
    for nb_id in (notebook, "doesnotexist"):
        req = HTTPRequest(
            ws_url(collab, nb_id), headers=auth(hub.token("dave")), request_timeout=60
        )
        with pytest.raises(HTTPClientError) as info:
            await websocket_connect(req)
        assert info.value.code == 404, nb_id


# -- the fixtures themselves: group changes and restarts --------------------------------


def test_hub_group_change_reaches_the_service(hub: Hub, collab: CollabService) -> None:
    def groups_of_dave() -> list[str]:
        resp = requests.get(
            collab.public_url + "api/me", headers=auth(hub.token("dave")), timeout=60
        )
        assert resp.status_code == 200, resp.text
        return list(resp.json()["groups"])

    try:
        hub.add_to_group("staff", "dave")
        wait_until(lambda: groups_of_dave() == ["staff"], timeout=15, what="dave in staff")
        hub.remove_from_group("staff", "dave")
        wait_until(lambda: groups_of_dave() == [], timeout=15, what="dave in no group")
        hub.set_groups("students", ["alice", "bob", "carol", "dave"])
        wait_until(lambda: groups_of_dave() == ["students"], timeout=15, what="dave in students")
    finally:
        hub.reset_groups()
    assert sorted(hub.group_members("students")) == ["alice", "bob", "carol"]
    wait_until(lambda: groups_of_dave() == [], timeout=15, what="dave back in no group")


def test_restart_keeps_data_and_logins(
    hub: Hub, collab: CollabService, notebook: str, browser_login: Login
) -> None:
    s = browser_login(collab.public_url, "alice")
    collab.restart()
    for headers, session in ((auth(hub.token("alice")), requests.Session()), ({}, s)):
        resp = session.get(
            collab.public_url + f"api/notebooks/{notebook}", headers=headers, timeout=60
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["owner"] == "alice"
