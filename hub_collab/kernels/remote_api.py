"""The kernel REST API of jupyter_server and Kernel/Enterprise Gateway: :class:`RemoteKernelClient`.

Used by :mod:`hub_collab.kernels.remote` (use :class:`~hub_collab.kernels.remote.RemoteProvider`
rather than this module). Every failure is a :class:`RemoteKernelError` whose
``message`` can be shown to the user; the token in ``headers`` is never logged nor
put into a message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse
from tornado.websocket import WebSocketClientConnection, websocket_connect

#: The kernel WebSocket subprotocol of jupyter_server 2 (binary framing).
V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_MAX_WS_MESSAGE = 256 * 1024 * 1024


class RemoteKernelError(Exception):
    """A kernel server refused or failed a request; ``message`` is for the user.

    ``code`` names the failure: ``unreachable``, ``timeout``, ``not_allowed``
    (401/403: wrong, expired or under-scoped token), ``not_found`` (no such
    kernel), ``server_stopped`` (the Hub says the server is not running),
    ``unknown_kernelspec``, ``server_error``, ``protocol``, ``lost`` (the
    connection gave up), ``bad_info`` (attach with info from elsewhere).
    """

    def __init__(self, code: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _display_url(url: str) -> str:
    """``url`` without user info or query (what may be shown and logged)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _server_message(response: HTTPResponse) -> str:
    try:
        body = json.loads(response.body or b"{}")
    except ValueError:
        return ""
    if isinstance(body, dict):
        text = body.get("message") or body.get("reason") or ""
        return str(text)[:300]
    return ""


def check_id(what: str, value: Any) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise RemoteKernelError("bad_info", f"{what} {value!r} is not a valid id")
    return value


class RemoteKernelClient:
    """The kernel REST API of one jupyter_server or gateway at ``base_url``.

    ``headers`` go with every request (``Authorization: token ...``); they are
    never logged nor put into an error message.
    """

    def __init__(
        self, base_url: str, headers: Mapping[str, str], *, request_timeout: float = 20.0
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL, not {_display_url(base_url)!r}")
        if parts.query or parts.fragment or parts.username or parts.password:
            # a token belongs in headers, where it is never shown
            raise ValueError(
                f"base_url {_display_url(base_url)!r} must not carry a query, fragment or credentials"
            )
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.where = _display_url(self.base_url)
        self._headers = dict(headers)
        self.request_timeout = request_timeout

    def __repr__(self) -> str:
        return f"<RemoteKernelClient {self.where}>"

    async def _call(
        self, method: str, path: str, what: str, body: Any = None, *, timeout: float | None = None
    ) -> Any:
        timeout = self.request_timeout if timeout is None else timeout
        headers = dict(self._headers)
        data: bytes | None = None
        if body is not None or method == "POST":
            data = json.dumps(body if body is not None else {}).encode()
            headers["Content-Type"] = "application/json"
        request = HTTPRequest(
            self.base_url + path,
            method=method,
            headers=headers,
            body=data,
            connect_timeout=min(timeout, 10.0),
            request_timeout=timeout,
            follow_redirects=False,
        )
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except (HTTPClientError, OSError) as exc:  # 599: timeout or connection closed
            raise self._transport_error(exc, what, timeout) from exc
        return self._result(response, what)

    def _transport_error(self, exc: Exception, what: str, timeout: float) -> RemoteKernelError:
        """The error for a request that got no HTTP answer (timeout, connection failed)."""
        if isinstance(exc, OSError):
            return RemoteKernelError("unreachable", f"cannot reach {self.where} ({what}): {exc.strerror or exc}")
        if "timeout" in str(exc).lower():
            return RemoteKernelError("timeout", f"{self.where} did not answer within {timeout:g} s ({what})")
        return RemoteKernelError("unreachable", f"cannot reach {self.where} ({what}): {exc}")

    def _result(self, response: HTTPResponse, what: str) -> Any:
        status = response.code
        if 200 <= status < 300:
            return json.loads(response.body) if response.body else None
        detail = _server_message(response)
        suffix = f": {detail}" if detail else ""
        if status in (401, 403):
            raise RemoteKernelError(
                "not_allowed",
                f"not allowed: {self.where} refused to {what} (HTTP {status}); the token is wrong, "
                f"expired or lacks access to this server{suffix}",
                status=status,
            )
        if status == 404:
            raise RemoteKernelError(
                "not_found", f"no such kernel on {self.where} ({what}){suffix}", status=status
            )
        if status == 424 or (300 <= status < 400):
            # the Hub answers for a server that is not running (424, or a redirect to its spawn page)
            raise RemoteKernelError(
                "server_stopped",
                f"the server at {self.where} is not running (HTTP {status})",
                status=status,
            )
        raise RemoteKernelError(
            "server_error", f"{self.where} failed to {what} (HTTP {status}){suffix}", status=status
        )

    async def kernelspecs(self) -> dict[str, Any]:
        """``{"default": name, "kernelspecs": {name: {...}}}``."""
        specs: dict[str, Any] = await self._call("GET", "api/kernelspecs", "list kernelspecs")
        return specs

    async def start_kernel(
        self, name: str, env: Mapping[str, str], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Start a kernel of kernelspec ``name``; return its model (``id``...).

        ``env``: a gateway passes entries starting with ``KERNEL_`` to the kernel;
        jupyter_server ignores them.
        """
        specs = await self.kernelspecs()
        available = sorted((specs or {}).get("kernelspecs") or {})
        if name not in available:
            raise RemoteKernelError(
                "unknown_kernelspec",
                f"there is no kernelspec {name!r} on {self.where}; available: {', '.join(available) or 'none'}",
            )
        model: dict[str, Any] = await self._call(
            "POST",
            "api/kernels",
            f"start a {name!r} kernel",
            {"name": name, "env": dict(env)},
            timeout=timeout,
        )
        if not isinstance(model, dict) or not isinstance(model.get("id"), str):
            raise RemoteKernelError(
                "protocol", f"{self.where} answered a kernel start without a kernel id"
            )
        check_id("kernel id", model["id"])
        return model

    def _kernel_path(self, kernel_id: str) -> str:
        return "api/kernels/" + quote(check_id("kernel id", kernel_id), safe="")

    async def get_kernel(self, kernel_id: str) -> dict[str, Any]:
        """The kernel's model (``execution_state``, ``connections``...)."""
        model: dict[str, Any] = await self._call(
            "GET", self._kernel_path(kernel_id), "look up the kernel"
        )
        return model

    async def interrupt(self, kernel_id: str) -> None:
        await self._call(
            "POST", self._kernel_path(kernel_id) + "/interrupt", "interrupt the kernel"
        )

    async def restart(self, kernel_id: str, *, timeout: float | None = None) -> None:
        await self._call(
            "POST", self._kernel_path(kernel_id) + "/restart", "restart the kernel", timeout=timeout
        )

    async def delete(self, kernel_id: str, *, timeout: float | None = None) -> bool:
        """Shut the kernel down; False if it was already gone."""
        try:
            await self._call(
                "DELETE", self._kernel_path(kernel_id), "shut down the kernel", timeout=timeout
            )
        except RemoteKernelError as exc:
            if exc.code == "not_found":
                return False
            raise
        return True

    async def websocket(
        self, kernel_id: str, session_id: str, *, timeout: float | None = None
    ) -> WebSocketClientConnection:
        """Open the kernel's channels WebSocket, offering :data:`V1_PROTOCOL`."""
        timeout = self.request_timeout if timeout is None else timeout
        parts = urlsplit(self.base_url + self._kernel_path(kernel_id) + "/channels")
        scheme = "wss" if parts.scheme == "https" else "ws"
        url = urlunsplit(
            (scheme, parts.netloc, parts.path, "session_id=" + quote(session_id, safe=""), "")
        )
        request = HTTPRequest(
            url,
            headers=dict(self._headers),
            connect_timeout=min(timeout, 10.0),
            request_timeout=timeout,
        )
        what = "open the kernel's WebSocket"
        try:
            ws = await websocket_connect(
                request,
                subprotocols=[V1_PROTOCOL],
                ping_interval=15.0,
                ping_timeout=15.0,
                max_message_size=_MAX_WS_MESSAGE,
            )
        except HTTPClientError as exc:
            if exc.response is not None and exc.code != 599:
                self._result(exc.response, what)
            if exc.code != 599:
                raise RemoteKernelError(
                    "not_found" if exc.code == 404 else "server_error",
                    f"{self.where} refused to {what} (HTTP {exc.code})",
                    status=exc.code,
                ) from exc
            raise self._transport_error(exc, what, timeout) from exc
        except OSError as exc:
            raise self._transport_error(exc, what, timeout) from exc
        if ws.protocol is not None:
            # tornado turns Nagle back on once the upgrade request is sent: small
            # kernel messages (an execute_request) would wait for a delayed ACK
            ws.protocol.set_nodelay(True)
        return ws
