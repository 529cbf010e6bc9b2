"""A Hub user's servers, through the Hub's REST API, with a token the caller gives.

Use :class:`HubServers`: one per service (it holds the Hub's API URL and public
URL, never a token). Every call takes the token to act with: the user's own
OAuth token (the one HubOAuth keeps in the service's login cookie) or the
service's token when an admin granted it a role over users' servers; which one,
and why, is in docs/kernels.md ("Where kernels run: Hub servers and tokens").
The Hub stays the authority: whatever the token may not do, the Hub refuses,
and the refusal becomes a :class:`HubServerError` with a message for the user:

* :class:`TokenRejected` (401): the token expired or was revoked: reload the page;
* :class:`ScopeMissing` (403): the token may not do this; names the scope;
* :class:`ServerNotFound` (404): no such user or server, or none the token may see;
* :class:`ServerStartFailed` (502): the spawner's own message;
* :class:`HubTimeout` (504): a bounded wait ran out;
* :class:`HubUnreachable` (503): the Hub does not answer.
"""

from __future__ import annotations

import asyncio
import enum
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse

from .errors import CollabError

#: what the Hub answers to a token it does not know (expired, revoked, never issued)
_INVALID_CREDENTIALS = "Missing or invalid credentials"
_REQUIRES = re.compile(r"requires any of \[([^\]]*)\]")


class HubServerError(CollabError):
    """Something about a user's Hub server went wrong; ``message`` is for the user."""

    status = 502
    code = "hub_error"


class TokenRejected(HubServerError):
    """The Hub does not know the token any more (expired or revoked)."""

    status = 401
    code = "login_expired"


class ScopeMissing(HubServerError):
    """The token is valid but lacks a scope this needs (``scopes``: what the Hub asked for)."""

    status = 403
    code = "forbidden"

    def __init__(
        self, message: str, *, scopes: tuple[str, ...] = (), log_message: str | None = None
    ) -> None:
        super().__init__(message, log_message=log_message)
        self.scopes = scopes


class ServerNotFound(HubServerError):
    status = 404
    code = "not_found"


class ServerStartFailed(HubServerError):
    """The spawner could not start the server; ``message`` carries its reason."""

    status = 502
    code = "server_failed"


class HubTimeout(HubServerError):
    status = 504
    code = "timeout"


class HubUnreachable(HubServerError):
    status = 503
    code = "hub_unreachable"


class ServerState(enum.StrEnum):
    READY = "ready"
    PENDING = "pending"  # starting or stopping: see HubServer.pending
    STOPPED = "stopped"


@dataclass(frozen=True)
class HubServer:
    """One of a user's servers, as the Hub describes it."""

    user: str
    name: str  # "" for the default server
    state: ServerState
    #: "spawn" or "stop" while pending, else None
    pending: str | None
    #: the server's URL through the Hub's proxy (public URL + ``user/<name>/<server>/``)
    url: str

    @property
    def label(self) -> str:
        """``alice`` (default server) or ``alice/gpu`` (named): for messages."""
        return f"{self.user}/{self.name}" if self.name else self.user


@dataclass(frozen=True)
class Progress:
    """One event of a server's start (``GET .../progress``)."""

    progress: int | None
    message: str
    ready: bool = False
    failed: bool = False


ProgressCallback = Callable[[Progress], None]


def _server_path(user: str, name: str) -> str:
    u = quote(user, safe="")
    return f"users/{u}/servers/{quote(name, safe='')}" if name else f"users/{u}/server"


def _label(user: str, name: str) -> str:
    return f"{user}/{name}" if name else user


class HubServers:
    """Lists, starts (following progress), stops a user's servers; builds their URLs.

    ``api_url`` is the Hub's API as the service reaches it (``$JUPYTERHUB_API_URL``),
    ``public_url`` the Hub's public URL (the proxy), where users' servers are.
    Every wait is bounded; ``request_timeout`` bounds each plain request.
    ``service_token``: the tokens passed are the service's own (a role the admin
    granted), not a user's login, and a refusal says so (what the admin must fix).
    """

    def __init__(
        self,
        api_url: str,
        public_url: str,
        *,
        request_timeout: float = 10.0,
        client: AsyncHTTPClient | None = None,
        service_token: bool = False,
    ) -> None:
        self.service_token = service_token
        self.api_url = api_url.rstrip("/") + "/"
        self.public_url = public_url.rstrip("/") + "/"
        self.request_timeout = request_timeout
        self._client = client or AsyncHTTPClient()

    def server_url(self, user: str, name: str = "") -> str:
        """The server's URL through the Hub's proxy, with a trailing slash."""
        path = f"user/{quote(user, safe='')}/"
        if name:
            path += f"{quote(name, safe='')}/"
        return self.public_url + path

    # -- the API -----------------------------------------------------------------------------

    async def list_servers(self, user: str, token: str) -> list[HubServer]:
        """The user's servers, default (``""``) and named, stopped ones included.

        The default server is always listed (stopped if it never ran).
        """
        model = await self._json(
            "GET",
            f"users/{quote(user, safe='')}?include_stopped_servers=1",
            token,
            what=f"see the servers of {user}",
        )
        if "servers" not in model:
            raise ScopeMissing(
                f"This token may not see {user}'s servers (it needs the scope read:servers!user={user}).",
                scopes=(f"read:servers!user={user}",),
            )
        servers = {name: self._server(user, name, spec) for name, spec in model["servers"].items()}
        if "" not in servers:
            servers[""] = HubServer(user, "", ServerState.STOPPED, None, self.server_url(user))
        return sorted(servers.values(), key=lambda s: s.name)

    async def server(self, user: str, name: str, token: str) -> HubServer:
        """One server; a named server that does not exist is :class:`ServerNotFound`."""
        for server in await self.list_servers(user, token):
            if server.name == name:
                return server
        raise ServerNotFound(f"{user} has no server named {name!r}.")

    async def start(
        self,
        user: str,
        name: str,
        token: str,
        *,
        timeout: float = 120.0,
        on_progress: ProgressCallback | None = None,
    ) -> HubServer:
        """Start the server (a named one is created) and wait until it is ready.

        Already running is fine. ``on_progress`` hears every progress event. Raises
        :class:`ServerStartFailed` with the spawner's message, :class:`HubTimeout`
        after ``timeout`` seconds (the server may still come up later).
        """
        deadline = time.monotonic() + timeout
        label = _label(user, name)
        try:
            await self._json(
                "POST",
                _server_path(user, name),
                token,
                body={},
                what=f"start the server {label}",
                timeout=min(timeout, max(self.request_timeout, 30.0)),
            )
        except HubServerError as exc:
            if "already running" in exc.log_message:
                return await self.server(user, name, token)
            if exc.status == 400 and "pending stop" in exc.log_message:
                await self._wait_stopped(user, name, token, deadline)
                left = max(deadline - time.monotonic(), 1.0)
                return await self.start(user, name, token, timeout=left, on_progress=on_progress)
            if not (isinstance(exc, _HubHTTPError) and exc.hub_status >= 500):
                raise
            # the spawn failed while the Hub held the request: its progress says why
            final = await self._follow(user, name, token, deadline, on_progress)
            reason = final.message if final is not None and final.failed else exc.hub_message
            raise ServerStartFailed(
                f"The server {label} could not start: {reason}", log_message=exc.log_message
            ) from exc
        while True:
            # the progress stream ends at once with "ready" if the Hub answered 201
            final = await self._follow(user, name, token, deadline, on_progress)
            if final is not None and final.failed:
                raise ServerStartFailed(f"The server {label} could not start: {final.message}")
            server = await self.server(user, name, token)
            if server.state is ServerState.READY:
                return server
            if server.state is ServerState.STOPPED:
                raise ServerStartFailed(f"The server {label} stopped while it was starting.")
            if time.monotonic() >= deadline:
                raise HubTimeout(
                    f"The server {label} did not become ready within {timeout:.0f} s; try again later."
                )
            await asyncio.sleep(0.2)

    async def stop(self, user: str, name: str, token: str, *, timeout: float = 60.0) -> None:
        """Stop the server and wait until the Hub says it is stopped (not running is fine)."""
        deadline = time.monotonic() + timeout
        try:
            await self._json(
                "DELETE",
                _server_path(user, name),
                token,
                what=f"stop the server {_label(user, name)}",
                timeout=min(timeout, max(self.request_timeout, 30.0)),
            )
        except HubServerError as exc:
            if "not running" not in exc.log_message:
                raise
        await self._wait_stopped(user, name, token, deadline)

    async def check_token(self, token: str) -> dict[str, Any]:
        """The Hub's model of the token's owner (``GET /user``), with its ``scopes``."""
        model = await self._json("GET", "user", token, what="find whose token this is")
        return dict(model)

    # -- internals ---------------------------------------------------------------------------

    def _server(self, user: str, name: str, spec: dict[str, Any]) -> HubServer:
        pending = spec.get("pending") or None
        if spec.get("ready"):
            state = ServerState.READY
        elif pending:
            state = ServerState.PENDING
        else:
            state = ServerState.STOPPED
        return HubServer(user, name, state, pending, self.server_url(user, name))

    async def _wait_stopped(self, user: str, name: str, token: str, deadline: float) -> None:
        while True:
            try:
                server = await self.server(user, name, token)
            except ServerNotFound:
                return
            if server.state is ServerState.STOPPED:
                return
            if time.monotonic() >= deadline:
                raise HubTimeout(
                    f"The server {server.label} did not stop in time; try again later."
                )
            await asyncio.sleep(0.2)

    async def _follow(
        self,
        user: str,
        name: str,
        token: str,
        deadline: float,
        on_progress: ProgressCallback | None,
    ) -> Progress | None:
        """Read the progress stream until its last event or the deadline; that last event."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        buffer = b""
        final: list[Progress] = []

        def on_chunk(chunk: bytes) -> None:
            nonlocal buffer
            buffer += chunk
            while b"\n\n" in buffer:
                raw, buffer = buffer.split(b"\n\n", 1)
                data = b"".join(
                    line[5:].strip() for line in raw.split(b"\n") if line.startswith(b"data:")
                )
                if not data:
                    continue  # keepalive
                try:
                    event = json.loads(data)
                except ValueError:
                    continue
                if not isinstance(event, dict):
                    continue
                progress = Progress(
                    progress=event.get("progress")
                    if isinstance(event.get("progress"), int)
                    else None,
                    message=str(event.get("message", "")),
                    ready=bool(event.get("ready")),
                    failed=bool(event.get("failed")),
                )
                if on_progress is not None:
                    on_progress(progress)
                if progress.ready or progress.failed:
                    final.append(progress)

        path = _server_path(user, name) + "/progress"
        request = HTTPRequest(
            self.api_url + path,
            headers={"Authorization": f"token {token}", "Accept": "text/event-stream"},
            streaming_callback=on_chunk,
            connect_timeout=min(self.request_timeout, remaining),
            request_timeout=remaining,
        )
        try:
            await self._client.fetch(request)
        except HTTPClientError as exc:
            if exc.code == 599 and "Timeout" in str(exc):
                return final[-1] if final else None
            if exc.code == 400 and final == []:
                return None  # "not starting": the caller looks at the state again
            raise self._error(
                exc, "GET", path, f"follow the start of {_label(user, name)}"
            ) from exc
        except OSError as exc:
            raise HubUnreachable(
                "The Hub cannot be reached right now; try again in a moment.",
                log_message=f"GET {path}: {exc}",
            ) from exc
        return final[-1] if final else None

    async def _json(
        self,
        method: str,
        path: str,
        token: str,
        *,
        what: str,
        body: Any = None,
        timeout: float | None = None,
    ) -> Any:
        request = HTTPRequest(
            self.api_url + path,
            method=method,
            headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
            body=json.dumps(body)
            if body is not None
            else (b"" if method in ("POST", "PUT", "PATCH") else None),
            allow_nonstandard_methods=True,
            connect_timeout=self.request_timeout,
            request_timeout=timeout or self.request_timeout,
        )
        try:
            response: HTTPResponse = await self._client.fetch(request)
        except HTTPClientError as exc:
            if exc.code == 599:
                raise HubTimeout(
                    f"The Hub did not answer in time ({what}); try again.",
                    log_message=f"{method} {path}: {exc}",
                ) from exc
            raise self._error(exc, method, path, what) from exc
        except OSError as exc:
            raise HubUnreachable(
                "The Hub cannot be reached right now; try again in a moment.",
                log_message=f"{method} {path}: {exc}",
            ) from exc
        return json.loads(response.body) if response.body else None

    def _error(self, exc: HTTPClientError, method: str, path: str, what: str) -> HubServerError:
        """The Hub's refusal as a typed error with a message for the user."""
        hub_message = ""
        if exc.response is not None and exc.response.body:
            try:
                hub_message = str(json.loads(exc.response.body).get("message", ""))
            except (ValueError, AttributeError):
                hub_message = exc.response.body[:200].decode(errors="replace")
        log_message = f"{method} {path}: {exc.code} {hub_message}"
        if exc.code == 401 or (exc.code == 403 and _INVALID_CREDENTIALS in hub_message):
            if self.service_token:
                rejected = TokenRejected(
                    "The Hub rejected hub-collab's own API token (expired, revoked or not"
                    " configured): ask your Hub's admin to check the service's api_token"
                    " (docs/install.md).",
                    log_message=log_message,
                )
                rejected.status, rejected.code = 503, "service_token_rejected"
                return rejected
            return TokenRejected(
                "Your Hub login for this page has expired or was revoked: reload the page (or log in again).",
                log_message=log_message,
            )
        if exc.code == 403:
            found = _REQUIRES.search(hub_message)
            scopes = (
                tuple(s.strip().strip("'\"") for s in found.group(1).split(",")) if found else ()
            )
            needed = f" (it needs the scope {' or '.join(scopes)})" if scopes else ""
            if self.service_token:
                return ScopeMissing(
                    f"The Hub does not let hub-collab {what}{needed}: ask your Hub's admin to grant"
                    " the service the role in docs/install.md.",
                    scopes=scopes,
                    log_message=log_message,
                )
            return ScopeMissing(
                f"Not allowed to {what}{needed}.", scopes=scopes, log_message=log_message
            )
        if exc.code == 404:
            # the Hub answers 404 also when the token has no scope at all on that user,
            # so as not to reveal who exists
            return ServerNotFound(
                f"Cannot {what}: there is no such user or server, or your login may not use it.",
                log_message=log_message,
            )
        return _HubHTTPError(
            exc.code,
            hub_message,
            f"The Hub refused to {what}: {hub_message or exc.code}",
            log_message=log_message,
        )


class _HubHTTPError(HubServerError):
    """Another status from the Hub (``hub_status``, ``hub_message`` kept for the caller)."""

    def __init__(
        self, hub_status: int, hub_message: str, message: str, *, log_message: str
    ) -> None:
        super().__init__(message, log_message=log_message)
        self.hub_status = hub_status
        self.hub_message = hub_message
        if hub_status == 400:
            self.status = 400
            self.code = "bad_request"
