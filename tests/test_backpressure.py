"""Memory per connection (issue 13, item 4): a client that asks for much and reads
nothing cannot grow the service's memory without bound, and others go on meanwhile.

The service runs here with small bounds (1 MB unread before backpressure, 4 MB before a
connection is closed, 3 s without reading). The hostile client is a raw TCP socket with
a tiny receive buffer that does the WebSocket handshake and then never reads.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
import requests
from hubfixtures import CollabService, Hub, wait_until
from pycrdt import Text
from test_kernels import Users, connect, notebook

from hub_collab.documents import protocol as p
from hub_collab.documents.notebook import cell_doc

pytestmark = pytest.mark.asyncio(loop_scope="module")

BIG = "x" * 1_500_000


@pytest.fixture(scope="module")
def bounded(collab: CollabService) -> Iterator[CollabService]:
    old = list(collab.extra_args)
    collab.extra_args = [
        *old,
        "--HubCollab.max_unread_bytes=1000000",
        "--HubCollab.max_queued_bytes=4000000",
        "--HubCollab.unread_timeout=3",
    ]
    try:
        collab.restart()
        yield collab
    finally:
        collab.extra_args = old
        collab.restart()


@pytest.fixture(scope="module")
async def users(hub: Hub, bounded: CollabService) -> AsyncIterator[Users]:
    u = Users(hub, bounded)
    yield u
    u.close()


class Deaf:
    """A WebSocket client on a raw socket that sends frames and never reads."""

    def __init__(self, url: str, token: str) -> None:
        parsed = urlparse(url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((parsed.hostname or "127.0.0.1", parsed.port or 80))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {parsed.path} HTTP/1.1\r\nHost: {parsed.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: token {token}\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            assert chunk, "closed during the handshake"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head[:200]

    def send(self, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        header = bytes([0x82]) + (
            bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else bytes([0x80 | 127]) + struct.pack(">Q", n)
        )
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.settimeout(5)
        try:
            self.sock.sendall(header + mask + masked)
        except (TimeoutError, OSError):
            pass  # the service stopped reading us: backpressure

    def close(self) -> None:
        self.sock.close()


def ws_url(collab: CollabService, nb_id: str) -> str:
    return collab.public_url.replace("http", "ws", 1) + f"api/notebooks/{nb_id}/ws"


async def test_a_repeated_subscription_is_answered_once(users: Users) -> None:
    nb = await users("instructor").create_notebook("big", notebook(BIG), group="students", mode="0775", default_cell_mode="0775")
    alice = await connect(users, "alice", str(nb["id"]))
    try:
        answers: list[int] = []
        name = cell_doc("c0")

        def count(kind: str, data: Any) -> None:
            if kind == "binary":
                answers.extend(1 for e in p.decode_frame(data) if e.doc == name and e.sub == p.SYNC_STEP2)

        alice.listeners.append(count)
        frame = p.sync_step1(name, b"\x00") * 150
        assert len(frame) < 4000
        alice.send_raw(frame)
        await alice.sync()
        assert answers == [1]
    finally:
        await alice.close()


async def test_a_client_that_stops_reading_is_held_back_then_let_go(users: Users, bounded: CollabService) -> None:
    nb = await users("instructor").create_notebook("big2", notebook(BIG, "y = 1"), group="students", mode="0775", default_cell_mode="0775")
    nb_id = str(nb["id"])
    deaf = Deaf(ws_url(bounded, nb_id), users.hub.token("bob"))
    bob_pid_rss = rss(bounded)
    alice = await connect(users, "alice", nb_id)
    try:
        name = cell_doc("c0")
        # each frame asks for the 1.5 MB cell once more (a new frame: answered again)
        for _ in range(40):
            await asyncio.to_thread(deaf.send, p.sync_step1(name, b"\x00") * 150)
        # meanwhile alice edits and is answered
        alice.docs[cell_doc("c1")].get("source", type=Text).insert(0, "# still here\n")
        await asyncio.wait_for(alice.sync(), 30)

        def only_alice() -> bool:
            health = requests.get(bounded.direct_url + "api/health", timeout=5).json()
            assert health["sessions"] == 1, f"{health['sessions']} sessions"
            return True

        await asyncio.to_thread(wait_until, only_alice, timeout=60, interval=0.2, what="the deaf client to be let go")
        grown = rss(bounded) - bob_pid_rss
        # 40 frames asked for 60 MB; what was held for the client stayed near the bound
        assert grown < 64_000_000, grown
    finally:
        deaf.close()
        await alice.close()


def rss(collab: CollabService) -> int:
    assert collab.process is not None
    with open(f"/proc/{collab.process.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")



async def test_a_user_past_their_loop_time_waits_before_their_next_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget of loop time a user's frames may take (``FRAME_CPU_RATE`` a second
    after a burst of ``FRAME_CPU_BURST``): within it, no wait; past it, the wait that pays
    the excess back; renewed with time, never beyond the burst."""
    from hub_collab import budgets

    now = [1000.0]
    monkeypatch.setattr(budgets.time, "monotonic", lambda: now[0])
    table = budgets.FrameBudgets()

    def charge(spent: float) -> float:
        return table.charge("alice", spent)

    rate, burst = budgets.FRAME_CPU_RATE, budgets.FRAME_CPU_BURST
    assert charge(burst * 0.6) == 0.0  # a join of a large notebook: within the burst
    assert charge(burst * 0.3) == 0.0
    assert charge(burst * 0.3) == pytest.approx(burst * 0.2 / rate)  # 0.2 burst over: paid back at the rate
    now[0] += burst * 0.2 / rate  # it waited that long
    assert charge(0.0) == pytest.approx(0.0, abs=1e-9)
    now[0] += 3600  # idle for an hour: back to the burst, not more
    assert charge(burst) == 0.0
    assert charge(0.001) == pytest.approx(0.001 / rate)


async def test_a_users_connections_share_one_loop_budget_and_the_table_stays_small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening more connections gives a flooding user no more of the loop: the budget is
    the user's (every connection's frames charge it), another user's is their own; users
    whose budget is full again are forgotten once the table grows."""
    from hub_collab import budgets

    now = [1000.0]
    monkeypatch.setattr(budgets.time, "monotonic", lambda: now[0])
    table = budgets.FrameBudgets()
    burst, rate = budgets.FRAME_CPU_BURST, budgets.FRAME_CPU_RATE
    # alice's four connections, each a quarter of the burst: the fourth one empties it
    assert [table.charge("alice", burst / 4) for _ in range(4)] == [0.0, 0.0, 0.0, 0.0]
    assert table.charge("alice", 0.01) == pytest.approx(0.01 / rate)  # a fifth pays, whatever connection
    assert table.charge("bob", burst / 2) == 0.0  # bob's is his own
    # 5,000 users send a frame each, then go quiet: the table does not keep them all
    for i in range(5000):
        table.charge(f"user{i}", 0.001)
        now[0] += 0.0001
    now[0] += 10 * burst / rate  # everyone's budget is full again
    table.charge("carol", 0.001)
    for i in range(budgets.SWEEP_AT + 1):
        table.charge(f"late{i}", 0.001)
    assert len(table) <= 2 * budgets.SWEEP_AT + 2, len(table)
    # a full budget is not kept at all
    now[0] += 10 * burst / rate
    before = len(table)
    assert table.charge("dave", 0.0) == 0.0
    assert len(table) == before
