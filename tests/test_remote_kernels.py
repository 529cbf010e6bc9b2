"""The ``remote`` kernel provider against real servers of jupyter_server's kernel API.

``server`` (module, parametrised) is a real ``jupyter server`` (the
``v1.kernel.websocket.jupyter.org`` protocol, IOPub message rate limit off, data
rate limit 2 MB/s) or a real ``jupyter kernelgateway`` (forced onto the JSON
protocol, the same limits), on a free 127.0.0.1 port with a random token. Every
test starts its own kernels and shuts them down.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from hubfixtures import Process, clean_env, free_port, wait_until

from hub_collab.kernels.provider import KernelRequest
from hub_collab.kernels.remote import (
    V1_PROTOCOL,
    RemoteKernelConnection,
    RemoteKernelError,
    RemoteProvider,
)
from hub_collab.kernels.remote_frames import BadFrame, decode_json, decode_v1, encode_v1

pytestmark = pytest.mark.asyncio(loop_scope="module")

USER = "alice"


@dataclass
class Server:
    kind: str
    process: Process
    base_url: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def provider(self, token: str | None = None, **kw: Any) -> RemoteProvider:
        headers = {"Authorization": f"token {token if token is not None else self.token}"}
        return RemoteProvider(self.kind, self.base_url, headers, **{"poll_interval": 1.0, **kw})

    def kernel_pid(self, kernel_id: str) -> int:
        for child in psutil.Process(self.process.pid).children(recursive=True):
            if any(kernel_id in arg for arg in child.cmdline()):
                pid: int = child.pid
                return pid
        raise AssertionError(f"no process for kernel {kernel_id}")


def _start_server(kind: str, root: Path) -> Server:
    port, token = free_port(), secrets.token_hex(16)
    if kind == "jupyter_server":
        argv = [
            sys.executable, "-m", "jupyter_server", "--no-browser", f"--port={port}",
            "--ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            "--ZMQChannelsWebsocketConnection.iopub_msg_rate_limit=0",
            "--ZMQChannelsWebsocketConnection.iopub_data_rate_limit=2000000",
        ]  # fmt: skip
        if os.geteuid() == 0:  # CI runs as root
            argv.append("--allow-root")
    else:
        argv = [
            sys.executable, "-m", "kernel_gateway", f"--KernelGatewayApp.port={port}",
            "--KernelGatewayApp.ip=127.0.0.1", f"--KernelGatewayApp.auth_token={token}",
            "--ZMQChannelsWebsocketConnection.kernel_ws_protocol=",
            "--ZMQChannelsWebsocketConnection.iopub_msg_rate_limit=0",
            "--ZMQChannelsWebsocketConnection.iopub_data_rate_limit=2000000",
        ]  # fmt: skip
    env = clean_env(
        JUPYTER_RUNTIME_DIR=str(root / "runtime"), JUPYTER_CONFIG_DIR=str(root / "config")
    )
    process = Process(kind, argv, env=env, cwd=root, log_path=root / f"{kind}.log")
    process.start()
    base_url = f"http://127.0.0.1:{port}/"

    def ready() -> bool:
        process.check_alive()
        try:
            r = requests.get(
                base_url + "api/kernelspecs", headers={"Authorization": f"token {token}"}, timeout=2
            )
        except requests.ConnectionError:
            return False
        return r.status_code == 200

    wait_until(ready, timeout=60, what=f"{kind} to answer", on_timeout=process.tail)
    return Server(kind, process, base_url, token)


@pytest.fixture(scope="module", params=["jupyter_server", "kernel_gateway"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    root = tmp_path_factory.mktemp(request.param)
    the_server = _start_server(request.param, root)
    try:
        yield the_server
    finally:
        the_server.process.stop()


class Sink:
    """Collects what a connection delivers."""

    def __init__(self) -> None:
        self.iopub: list[dict[str, Any]] = []
        self.shell: list[dict[str, Any]] = []
        self.stdin: list[dict[str, Any]] = []
        self.lost: list[str] = []

    def on_iopub(self, msg: dict[str, Any]) -> None:
        self.iopub.append(msg)

    def on_shell(self, msg: dict[str, Any]) -> None:
        self.shell.append(msg)

    def on_stdin(self, msg: dict[str, Any]) -> None:
        self.stdin.append(msg)

    def on_lost(self, reason: str) -> None:
        self.lost.append(reason)

    def of(self, msg_id: str, msg_type: str | None = None) -> list[dict[str, Any]]:
        return [
            m
            for m in self.iopub
            if m["parent_header"].get("msg_id") == msg_id and msg_type in (None, m["msg_type"])
        ]

    def text(self, msg_id: str, name: str = "stdout") -> str:
        return "".join(
            m["content"]["text"] for m in self.of(msg_id, "stream") if m["content"]["name"] == name
        )

    def reply(self, msg_id: str) -> dict[str, Any] | None:
        for m in self.shell:
            if m["parent_header"].get("msg_id") == msg_id:
                return m
        return None

    def idle(self, msg_id: str) -> bool:
        return any(m["content"].get("execution_state") == "idle" for m in self.of(msg_id, "status"))

    async def until(self, check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what or check}; lost={self.lost}")
            await asyncio.sleep(0.01)

    async def run(self, conn: RemoteKernelConnection, code: str, timeout: float = 30.0) -> str:
        msg_id = conn.execute(code)
        await self.until(
            lambda: self.idle(msg_id) and self.reply(msg_id), timeout, f"run of {code!r}"
        )
        return msg_id


def request() -> KernelRequest:
    return KernelRequest(
        kernel_name="python3", user=USER, env={"KERNEL_EXTRA": "1", "SECRET": "x"}, start_timeout=30
    )


@pytest.fixture
async def kernel(server: Server) -> AsyncIterator[tuple[RemoteKernelConnection, Sink]]:
    conn = await server.provider().start(request())
    sink = Sink()
    conn.listen(sink)
    try:
        yield conn, sink
    finally:
        await conn.shutdown(now=True)


# -- framing ------------------------------------------------------------------------------------


async def test_v1_frames_round_trip() -> None:
    frame = encode_v1(
        "iopub", [b'{"msg_type": "stream"}', b"{}", b"{}", b'{"text": "x"}', b"\x00buf"]
    )
    channel, msg = decode_v1(frame)
    assert channel == "iopub"
    assert (
        msg["msg_type"] == "stream"
        and msg["content"] == {"text": "x"}
        and msg["buffers"] == [b"\x00buf"]
    )


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x01",
        (2**40).to_bytes(8, "little"),
        (6).to_bytes(8, "little") + b"\x00" * 8,
        # offsets past the end of the frame
        (6).to_bytes(8, "little")
        + b"".join(x.to_bytes(8, "little") for x in (56, 61, 70, 80, 90, 9999)),
        # not JSON
        encode_v1("iopub", [b"{", b"{}", b"{}", b"{}"]),
        # a header that is not an object
        encode_v1("iopub", [b"[]", b"{}", b"{}", b"{}"]),
    ],
)
async def test_bad_v1_frames_are_refused(frame: bytes) -> None:
    with pytest.raises(BadFrame):
        decode_v1(frame)


@pytest.mark.parametrize(
    "frame",
    ["", "[]", '{"channel": "iopub", "header": 1, "content": {}}', b"\x00\x00\x00\x09", b"\x00"],
)
async def test_bad_json_frames_are_refused(frame: str | bytes) -> None:
    with pytest.raises(BadFrame):
        decode_json(frame)


# -- the basics ---------------------------------------------------------------------------------


async def test_start_speaks_the_expected_protocol(
    server: Server, kernel: tuple[RemoteKernelConnection, Sink]
) -> None:
    conn, sink = kernel
    assert conn.protocol == (V1_PROTOCOL if server.kind == "jupyter_server" else "")
    info = conn.info()
    assert info == {
        "provider": server.kind,
        "base_url": server.base_url,
        "kernel_id": conn.kernel_id,
        "session_id": conn.session_id,
    }
    msg_id = await sink.run(
        conn, "import os; print(os.environ.get('KERNEL_USERNAME'), os.environ.get('SECRET'))"
    )
    if server.kind == "kernel_gateway":  # a gateway passes KERNEL_* on, and nothing else
        assert sink.text(msg_id) == f"{USER} None\n"


async def test_execute_stream_display_error(kernel: tuple[RemoteKernelConnection, Sink]) -> None:
    conn, sink = kernel
    msg_id = await sink.run(
        conn,
        "import sys\nfrom IPython.display import display, HTML\nprint('out')\n"
        "print('err', file=sys.stderr)\ndisplay(HTML('<b>hi</b>'), display_id='d1')\n1/0",
    )
    assert sink.text(msg_id) == "out\n"
    assert sink.text(msg_id, "stderr") == "err\n"
    (display,) = sink.of(msg_id, "display_data")
    assert display["content"]["data"]["text/html"] == "<b>hi</b>"
    assert display["content"]["transient"] == {"display_id": "d1"}
    (error,) = sink.of(msg_id, "error")
    assert error["content"]["ename"] == "ZeroDivisionError"
    reply = sink.reply(msg_id)
    assert (
        reply is not None
        and reply["msg_type"] == "execute_reply"
        and reply["content"]["status"] == "error"
    )
    for msg in sink.iopub:  # the shape the local provider delivers
        assert {"header", "parent_header", "msg_type", "content", "metadata"} <= msg.keys()
        assert msg["header"]["msg_type"] == msg["msg_type"]


async def test_comm_buffers_both_ways(kernel: tuple[RemoteKernelConnection, Sink]) -> None:
    """Binary buffers of comm messages (a widget's bytes) cross in both protocols: the v1
    frame's extra parts, the JSON protocol's binary frame."""
    conn, sink = kernel
    msg_id = await sink.run(
        conn,
        "from comm import create_comm\ngot = []\nc = create_comm(target_name='t', data={})\n"
        "c.on_msg(lambda m: got.append([bytes(b) for b in m['buffers']]))\n"
        "c.send({'y': 2}, buffers=[b'\\x01\\x02', b'three'])\nprint(c.comm_id)",
    )
    comm_id = sink.text(msg_id).strip()
    (sent,) = sink.of(msg_id, "comm_msg")
    assert sent["content"]["data"] == {"y": 2} and [bytes(b) for b in sent["buffers"]] == [b"\x01\x02", b"three"]
    conn.comm_msg(comm_id, {"x": 1}, USER, [b"\x00abc", bytes(range(256))])
    # the kernel handles shell messages in order: the comm message before this run
    check = await sink.run(conn, "print(len(got), got[-1][0] if got else None, len(got[-1][1]) if got else None)")
    assert sink.text(check) == "1 b'\\x00abc' 256\n"


async def test_stdin(kernel: tuple[RemoteKernelConnection, Sink]) -> None:
    conn, sink = kernel
    msg_id = conn.execute("name = input('who? ')\nprint('hello', name)")
    await sink.until(lambda: sink.stdin, what="input_request")
    assert (
        sink.stdin[0]["msg_type"] == "input_request"
        and sink.stdin[0]["content"]["prompt"] == "who? "
    )
    conn.input_reply("bob")
    await sink.until(lambda: sink.idle(msg_id), what="the run")
    assert sink.text(msg_id) == "hello bob\n"


async def test_interrupt_a_sleep(kernel: tuple[RemoteKernelConnection, Sink]) -> None:
    conn, sink = kernel
    msg_id = conn.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(60)")
    await sink.until(lambda: sink.text(msg_id), what="the sleep to start")
    t0 = time.monotonic()
    await conn.interrupt()
    reply = await sink.until(lambda: sink.reply(msg_id), timeout=60, what="the reply")
    assert time.monotonic() - t0 < 50, "the sleep of 60 s ran on: the interrupt did not reach it"
    assert (
        reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
    )
    after = await sink.run(conn, "print('still here')")
    assert sink.text(after) == "still here\n"


async def test_restart_clears_state(kernel: tuple[RemoteKernelConnection, Sink]) -> None:
    conn, sink = kernel
    await sink.run(conn, "x = 42")
    await conn.restart()
    msg_id = await sink.run(conn, "print('x' in dir())")
    assert sink.text(msg_id) == "False\n"
    assert sink.lost == []


async def test_shutdown_stops_the_kernel(server: Server) -> None:
    provider = server.provider()
    conn = await provider.start(request())
    sink = Sink()
    conn.listen(sink)
    await conn.shutdown(now=False)
    with pytest.raises(RemoteKernelError) as err:
        await provider.client.get_kernel(conn.kernel_id)
    assert err.value.code == "not_found" and "no such kernel" in err.value.message
    assert sink.lost == []


# -- errors -------------------------------------------------------------------------------------


async def test_a_wrong_token_is_not_allowed(server: Server) -> None:
    wrong = secrets.token_hex(16)
    with pytest.raises(RemoteKernelError) as err:
        await server.provider(token=wrong).start(request())
    assert err.value.code == "not_allowed"
    assert err.value.message.startswith("not allowed:") and server.base_url in err.value.message
    assert wrong not in err.value.message and server.token not in err.value.message


async def test_an_unknown_kernelspec_lists_the_available_ones(server: Server) -> None:
    with pytest.raises(RemoteKernelError) as err:
        await server.provider().start(KernelRequest(kernel_name="cobol", user=USER))
    assert err.value.code == "unknown_kernelspec"
    assert "'cobol'" in err.value.message and "available: python3" in err.value.message


async def test_an_unreachable_server_is_said_so() -> None:
    provider = RemoteProvider(
        "gone", f"http://127.0.0.1:{free_port()}/", {"Authorization": "token x"}
    )
    with pytest.raises(RemoteKernelError) as err:
        await provider.start(request())
    assert err.value.code == "unreachable" and "cannot reach" in err.value.message


async def test_attach_refuses_info_from_elsewhere(server: Server) -> None:
    provider = server.provider()
    info = {
        "provider": server.kind,
        "base_url": "http://evil.example/",
        "kernel_id": "k",
        "session_id": "s",
    }
    with pytest.raises(RemoteKernelError) as err:
        await provider.attach(info, request())
    assert err.value.code == "bad_info"
    with pytest.raises(RemoteKernelError) as err:
        await provider.attach(
            {**info, "base_url": server.base_url, "kernel_id": "../../api"}, request()
        )
    assert err.value.code == "bad_info"


# -- faults -------------------------------------------------------------------------------------


async def test_a_kernel_shut_down_elsewhere_is_lost(
    server: Server, kernel: tuple[RemoteKernelConnection, Sink]
) -> None:
    conn, sink = kernel
    conn.execute("import time; time.sleep(30)")
    await server.provider().client.delete(conn.kernel_id)
    await sink.until(lambda: sink.lost, timeout=15, what="on_lost")
    await asyncio.sleep(0.3)
    assert len(sink.lost) == 1 and "gone" in sink.lost[0]


async def test_a_kernel_killed_from_outside_is_lost(
    server: Server, kernel: tuple[RemoteKernelConnection, Sink]
) -> None:
    conn, sink = kernel
    conn.execute("import time; time.sleep(30)")
    psutil.Process(server.kernel_pid(conn.kernel_id)).kill()
    await sink.until(lambda: sink.lost, timeout=15, what="on_lost")
    await asyncio.sleep(0.3)
    assert len(sink.lost) == 1 and "died" in sink.lost[0]


SLOW_LINES = "import time\nfor i in range({n}):\n    print(f'line {{i}}', flush=True)\n    time.sleep({pause})"


def lines_of(text: str) -> list[int]:
    return [int(line.split()[1]) for line in text.splitlines()]


async def test_a_dropped_websocket_reconnects_and_loses_nothing(
    kernel: tuple[RemoteKernelConnection, Sink],
) -> None:
    conn, sink = kernel
    msg_id = conn.execute(SLOW_LINES.format(n=150, pause=0.01))
    for drop in range(2):  # drop it twice, mid-run
        wanted = 40 * (drop + 1)

        def more(wanted: int = wanted) -> bool:
            return len(lines_of(sink.text(msg_id))) >= wanted

        await sink.until(more, what="more lines")
        assert conn._ws is not None
        conn._ws.close()
    await sink.until(lambda: sink.idle(msg_id), what="the run")
    assert conn.reconnects == 2
    assert lines_of(sink.text(msg_id)) == list(range(150))
    assert sink.lost == [] and sink.reply(msg_id) is not None
    after = await sink.run(conn, "print('after')")
    assert sink.text(after) == "after\n"


async def test_detach_then_attach_finds_the_kernel_and_what_it_said(server: Server) -> None:
    provider = server.provider()
    conn = await provider.start(request())
    sink = Sink()
    conn.listen(sink)
    await sink.run(conn, "secret = 'kept'")
    # a run in progress when the service stops: its output meanwhile is replayed
    msg_id = conn.execute(SLOW_LINES.format(n=60, pause=0.01))
    await sink.until(lambda: sink.text(msg_id), what="the first line")
    info = conn.info()
    await conn.detach()
    before = len(sink.iopub)
    await asyncio.sleep(0.5)
    assert len(sink.iopub) == before  # detached: nothing delivered
    second = Sink()
    again = await provider.attach(info, request())
    try:
        again.listen(second)
        await second.until(lambda: second.idle(msg_id), what="the rest of the run")
        assert lines_of(sink.text(msg_id) + second.text(msg_id)) == list(range(60))
        check = await second.run(again, "print(secret)")
        assert second.text(check) == "kept\n"
    finally:
        await again.shutdown(now=True)


# -- volume -------------------------------------------------------------------------------------


async def test_a_flood_of_100000_lines_arrives_complete(
    kernel: tuple[RemoteKernelConnection, Sink],
) -> None:
    conn, sink = kernel
    t0 = time.monotonic()
    msg_id = await sink.run(conn, "for i in range(100_000):\n    print(i)", timeout=300)
    elapsed = time.monotonic() - t0
    numbers = [int(n) for n in sink.text(msg_id).split()]
    assert numbers == list(range(100_000))
    print(f"100,000 printed lines in {elapsed:.2f} s ({len(sink.of(msg_id, 'stream'))} messages)")


async def test_a_flood_of_tiny_messages_arrives_complete(
    kernel: tuple[RemoteKernelConnection, Sink],
) -> None:
    conn, sink = kernel
    # one stream message a line, straight through the kernel's session, at about
    # 1,000 a second: what jupyter_server relays from the kernel's IOPub socket even
    # on a machine busy with other work (faster, the kernel's PUB socket drops at its
    # high-water mark before the server reads, whoever the client is)
    n = 10_000
    source = (
        "import sys, time\nout = sys.stdout\n"
        f"for i in range({n}):\n"
        "    out.session.send(out.pub_thread, 'stream', content={'name': 'stdout', 'text': f'{i}\\n'},"
        " parent=out.parent_header, ident=out.topic)\n"
        "    if i % 10 == 9:\n        time.sleep(0.01)"
    )
    t0 = time.monotonic()
    msg_id = await sink.run(conn, source, timeout=300)
    elapsed = time.monotonic() - t0
    numbers = [int(n) for n in sink.text(msg_id).split()]
    assert numbers == list(range(n)), len(numbers)
    print(f"{n} stream messages in {elapsed:.2f} s ({n / elapsed:.0f}/s)")


async def test_the_server_rate_limit_notice_passes_through(
    kernel: tuple[RemoteKernelConnection, Sink],
) -> None:
    conn, sink = kernel
    msg_id = await sink.run(conn, "print('x' * 8_000_000)")
    assert "IOPub data rate exceeded" in sink.text(msg_id, "stderr")


async def test_a_broken_connection_reconnects_and_says_output_may_be_missing(
    kernel: tuple[RemoteKernelConnection, Sink],
) -> None:
    conn, sink = kernel
    msg_id = conn.execute(SLOW_LINES.format(n=100, pause=0.01))
    await sink.until(lambda: len(lines_of(sink.text(msg_id))) >= 30, what="some lines")
    ws = conn._ws
    assert ws is not None and ws.protocol is not None and ws.protocol.stream is not None
    ws.protocol.stream.close()  # the TCP connection ends without a close handshake
    queued = conn.execute("print('queued while reconnecting')")
    await sink.until(lambda: sink.idle(msg_id) and sink.idle(queued), what="both runs")
    assert conn.reconnects == 1 and sink.lost == []
    numbers = lines_of(sink.text(msg_id))
    assert numbers == sorted(set(numbers)) and numbers[-1] == 99  # in order, never twice
    assert "output sent meanwhile may be missing" in sink.text(msg_id, "stderr")
    assert sink.text(queued) == "queued while reconnecting\n"


async def test_an_unreachable_server_ends_in_on_lost_after_the_bound(tmp_path: Path) -> None:
    own = _start_server("jupyter_server", tmp_path)
    try:
        conn = await own.provider(reconnect_timeout=2.0).start(request())
        sink = Sink()
        conn.listen(sink)
        await sink.run(conn, "x = 1")
        own.process.stop()
        t0 = time.monotonic()
        await sink.until(lambda: sink.lost, timeout=15, what="on_lost")
        assert time.monotonic() - t0 < 8
        await asyncio.sleep(0.3)
        assert len(sink.lost) == 1
        assert "could not reconnect within 2 s" in sink.lost[0] and own.base_url in sink.lost[0]
        with pytest.raises(RemoteKernelError) as err:
            conn.execute("print(1)")
        assert err.value.code == "lost"
        await conn.shutdown(now=True)  # logs, does not raise
    finally:
        own.process.stop()


async def test_requests_about_a_missing_kernel_say_so(server: Server) -> None:
    client = server.provider().client
    for call in (client.get_kernel, client.interrupt):
        with pytest.raises(RemoteKernelError) as err:
            await call("00000000-0000-0000-0000-000000000000")
        assert err.value.code == "not_found" and err.value.message.startswith("no such kernel")
    assert await client.delete("00000000-0000-0000-0000-000000000000") is False


async def test_first_output_does_not_wait_for_a_delayed_ack(
    kernel: tuple[RemoteKernelConnection, Sink],
) -> None:
    # jupyter_server leaves Nagle on: without quick ACKs every run's first output
    # waited about 40 ms behind its "busy" status
    conn, sink = kernel
    await sink.run(conn, "pass")
    latencies = []
    for _ in range(10):
        t0 = time.perf_counter()
        msg_id = conn.execute("print(1)")
        await sink.until(partial(sink.text, msg_id))
        latencies.append(time.perf_counter() - t0)
        await sink.until(partial(sink.idle, msg_id))
    latencies.sort()
    assert latencies[5] < 0.03, [f"{1000 * t:.1f} ms" for t in latencies]


async def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as listener:  # accepts connections (the backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        provider = RemoteProvider("mute", f"http://127.0.0.1:{port}/", {}, request_timeout=1.0)
        t0 = time.monotonic()
        with pytest.raises(RemoteKernelError) as err:
            await provider.start(request())
        assert time.monotonic() - t0 < 5
    assert err.value.code == "timeout" and "did not answer within 1 s" in err.value.message


async def test_a_base_url_may_not_carry_a_token() -> None:
    with pytest.raises(ValueError, match="must not carry") as err:
        RemoteProvider("x", "http://127.0.0.1:1/?token=s3cret", {})
    assert "s3cret" not in str(err.value)
