"""Several replicas, one notebook: :class:`Replicator`.

Each replica holds a room for every notebook its clients have open. The
replicator joins those rooms through the :mod:`bus <hub_collab.bus>`:

* **Doc updates** applied on one replica (already appended to the shared
  update log in the database) are published on ``nb:<id>`` and applied by the
  others as *remote* changes (fanned out to their clients, not persisted again).
* **Awareness** states (sanitised by the replica that owns the client) travel
  the same way; each receiving replica filters them per receiver.
* **Events** (JSON): chat, kernel state, messages for one user's sessions,
  permission changes (``perms`` channel: every replica reloads that notebook's
  policies before the next check), catch-up hints.
* **Catch-up.** Pub/sub forgets what it could not deliver. Every message
  carries the sender's sequence number per channel; a gap, a reconnect to
  Redis, a hint from a replica that was cut off, or the periodic safety timer
  makes a replica re-read the notebook's checkpoint and update log from the
  database and merge them into its docs. CRDT merges are idempotent, so
  catch-up never duplicates anything, and all replicas converge on the log.
* **Home replica.** One replica per notebook holds the lease ``home:<id>``
  (renewed; a fencing token grows with each new holder). Only the home writes
  ``index`` and ``out:*`` and owns the kernel; other replicas forward
  structure and kernel commands to it (:meth:`Replicator.forward`) and relay
  its answers. When the home stops renewing, another replica with the room
  loaded takes the lease within ``lease_ttl`` + ``watch_interval`` and its
  :class:`HomeObserver` s hear of it (the kernel service marks running cells as lost).

The replicator follows the rooms as a
:class:`~hub_collab.documents.observers.RoomObserver`, runs forwarded commands
through the :class:`CommandRunner` it serves (the application's command
dispatcher), and is the :class:`~hub_collab.commands.HomeRouter` of that
dispatcher; :meth:`hub_collab.app.HubCollab.init_wiring` connects all of it.

With the in-process bus (no Redis) this replica is home for everything and
nothing is published.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .bus.base import Bus, BusUnavailable
from .documents import protocol as p
from .documents.clientids import CLIENTS_DOC
from .documents.observers import RoomObserverBase
from .documents.session import Session
from .errors import CollabError
from .permissions.access import Identity
from .types import JSONDict

if TYPE_CHECKING:
    from .documents.room import NotebookRoom
    from .documents.rooms import RoomManager
    from .metrics import Metrics
    from .permissions.store import PermissionStore

from .tasks import cancel_and_wait

log = logging.getLogger("hub_collab.replication")

#: how far below the newest merged log row a catch-up re-reads (rows are idempotent)
CATCHUP_MARGIN = 500

REC_DOC = 1
REC_AWARENESS = 2
REC_EVENT = 3

EventHandler = Callable[["NotebookRoom | None", dict[str, Any], str], None]


class HomeObserver(Protocol):
    """What a service learns about the notebooks this replica is home of."""

    def became_home(self, room: NotebookRoom) -> None:
        """This replica took over the notebook (the old home may have been running cells)."""

    def lost_home(self, room: NotebookRoom) -> None:
        """Another replica is the notebook's home now."""

    def record_changed(self, room: NotebookRoom) -> None:
        """The notebook's record (name, settings) was re-read after a change elsewhere."""


class CommandRunner(Protocol):
    """Runs a command forwarded to this replica (the application's dispatcher)."""

    async def run_here(self, room: NotebookRoom, session: Session, msg: JSONDict) -> JSONDict:
        """Authorize and run ``msg`` here; raise its CollabError."""


def encode_message(sender: str, seq: int, fence: int, records: list[bytes]) -> bytes:
    return p.encode_var_string(sender) + p.write_var_uint(seq) + p.write_var_uint(fence) + b"".join(records)


def doc_record(doc: str, update: bytes) -> bytes:
    return bytes((REC_DOC,)) + p.encode_var_string(doc) + p.encode_var_bytes(update)


def awareness_record(payload: bytes) -> bytes:
    return bytes((REC_AWARENESS,)) + p.encode_var_bytes(payload)


def event_record(kind: str, data: dict[str, Any]) -> bytes:
    return bytes((REC_EVENT,)) + p.encode_var_string(kind) + p.encode_var_bytes(json.dumps(data, separators=(",", ":")).encode())


def decode_message(data: bytes) -> tuple[str, int, int, list[tuple[int, Any]]]:
    r = p.Reader(data)
    sender = r.var_string()
    seq = r.var_uint()
    fence = r.var_uint()
    records: list[tuple[int, Any]] = []
    while not r.at_end():
        kind = r.data[r.pos]
        r.pos += 1
        if kind == REC_DOC:
            records.append((kind, (r.var_string(), r.var_bytes())))
        elif kind == REC_AWARENESS:
            records.append((kind, r.var_bytes()))
        elif kind == REC_EVENT:
            records.append((kind, (r.var_string(), json.loads(r.var_bytes()))))
        else:
            raise p.ProtocolError(f"unknown bus record {kind}")
    return sender, seq, fence, records


class RemoteOwner:
    """Owner of awareness states of clients connected to another replica."""

    def __init__(self, replica: str) -> None:
        self.replica = replica
        self.seen = time.monotonic()


class Replicator(RoomObserverBase):
    """Joins this replica's rooms to the others through the bus. One per process."""

    def __init__(
        self,
        bus: Bus,
        rooms: RoomManager,
        permissions: PermissionStore,
        *,
        lease_ttl: float = 5.0,
        watch_interval: float = 1.0,
        catchup_interval: float = 30.0,
        command_timeout: float = 15.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.bus = bus
        #: counts catch-ups (None: metrics are off)
        self.metrics = metrics
        self.rooms = rooms
        self.permissions = permissions
        self.replica_id = bus.replica_id
        self.lease_ttl = lease_ttl
        self.watch_interval = watch_interval
        self.catchup_interval = catchup_interval
        self.command_timeout = command_timeout
        self._seq: dict[str, int] = {}
        self._last_seen: dict[tuple[str, str], int] = {}
        self._outbox: dict[str, list[bytes]] = {}
        self._flush_scheduled = False
        self.fences: dict[str, int] = {}  # notebook -> our fencing token while home
        self.max_fence: dict[str, int] = {}  # notebook -> highest fence seen
        self.event_handlers: dict[str, EventHandler] = {}
        self.home_observers: list[HomeObserver] = []
        self.commands: CommandRunner | None = None
        # notebook -> sender replica -> the owner token of its clients' awareness states
        self._remote_owners: dict[str, dict[str, RemoteOwner]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._req = itertools.count(1)
        self._reloading = False
        self._catching_up: set[str] = set()
        self.catchups = 0
        self.remote_sessions: dict[str, RemoteSession] = {}

    # -- lifecycle ---------------------------------------------------------------------

    def observe_home(self, observer: HomeObserver) -> None:
        """Tell ``observer`` when this replica becomes or stops being a notebook's home."""
        self.home_observers.append(observer)

    def serve_commands(self, runner: CommandRunner) -> None:
        """Run the commands other replicas forward here with ``runner``."""
        self.commands = runner

    async def start(self) -> None:
        """Subscribe to the bus and start the lease and safety loops (after the wiring)."""
        if not self.bus.distributed:
            return
        self.bus.subscribe("perms", self._on_message)
        self.bus.subscribe(f"replica:{self.replica_id}", self._on_message)
        self.bus.on_reconnect(self._on_reconnect)
        self.bus.subscribed_handlers.append(self._on_subscribed)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._lease_loop()), loop.create_task(self._safety_loop())]
        self.event_handlers.setdefault("perms", self._on_perms)
        self.event_handlers.setdefault("hint", self._on_hint)
        self.event_handlers.setdefault("cmd", self._on_command)
        self.event_handlers.setdefault("reply", self._on_reply)
        self.event_handlers.setdefault("to_user", self._on_to_user)
        self.event_handlers.setdefault("room_json", self._on_room_json)
        self.event_handlers.setdefault("record", self._on_record)

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        self._flush()
        for nb in list(self.fences):
            await self.bus.release(f"home:{nb}")
        self.fences.clear()

    # -- rooms -----------------------------------------------------------------------------

    def room_loaded(self, room: NotebookRoom) -> None:
        if not self.bus.distributed:
            self.fences[room.id] = 1
            return
        self.bus.subscribe(f"nb:{room.id}", self._on_message)
        # the room may have missed updates committed between its load and the subscription
        asyncio.get_running_loop().create_task(self._claim_then_catch_up(room))

    async def _claim_then_catch_up(self, room: NotebookRoom) -> None:
        await self._try_claim(room)
        await self.catch_up(room)

    async def room_ready(self, room: NotebookRoom) -> None:
        """Wait (briefly) until the room's channel is live, so no event of it is missed."""
        if self.bus.distributed:
            await self.bus.wait_active(f"nb:{room.id}", timeout=2.0)

    def _on_subscribed(self, channels: list[str]) -> None:
        """A room's channel is live now: catch up what was committed before it was."""
        for channel in channels:
            room = self.rooms.rooms.get(channel[3:]) if channel.startswith("nb:") else None
            if room is not None:
                asyncio.get_running_loop().create_task(self.catch_up(room))

    def room_unloaded(self, room: NotebookRoom) -> None:
        self._remote_owners.pop(room.id, None)
        if self.bus.distributed:
            self.bus.unsubscribe(f"nb:{room.id}")
            if room.id in self.fences:
                self.fences.pop(room.id, None)
                asyncio.get_running_loop().create_task(self.bus.release(f"home:{room.id}"))

    def is_home(self, nb_id: str) -> bool:
        return nb_id in self.fences

    # -- publishing ------------------------------------------------------------------------

    def _queue(self, channel: str, record: bytes) -> None:
        if not self.bus.distributed:
            return
        self._outbox.setdefault(channel, []).append(record)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, {}
        for channel, records in outbox.items():
            seq = self._seq.get(channel, 0) + 1
            self._seq[channel] = seq
            nb = channel[3:] if channel.startswith("nb:") else ""
            self.bus.publish(channel, encode_message(self.replica_id, seq, self.fences.get(nb, 0), records))

    def doc_changed(self, room: NotebookRoom, name: str, update: bytes) -> None:
        if room.applying_remote or not self.bus.distributed:
            return
        self._queue(f"nb:{room.id}", doc_record(name, update))

    def awareness_changed(self, room: NotebookRoom, payload: bytes) -> None:
        self._queue(f"nb:{room.id}", awareness_record(payload))

    def json_broadcast(self, room: NotebookRoom, message: dict[str, Any], user: str | None, exclude_user: str | None) -> None:
        self._queue(f"nb:{room.id}", event_record("room_json", {"msg": message, "user": user, "exclude": exclude_user}))

    def publish_event(self, nb_id: str, kind: str, data: dict[str, Any]) -> None:
        """Send an event to the other replicas that have this notebook loaded."""
        self._queue(f"nb:{nb_id}", event_record(kind, data))

    def permissions_changed(self, nb_id: str) -> None:
        """A permission listener: tell the other replicas to reload the notebook's policies."""
        if self._reloading or not self.bus.distributed:
            return
        self._queue("perms", event_record("perms", {"nb": nb_id}))
        self._flush()  # before the API call returns

    # -- receiving ---------------------------------------------------------------------------

    def _on_message(self, channel: str, data: bytes) -> None:
        try:
            sender, seq, fence, records = decode_message(data)
        except (p.ProtocolError, ValueError) as exc:
            log.warning("dropping a malformed bus message on %s: %s", channel, exc)
            return
        if sender == self.replica_id:
            return
        nb = channel[3:] if channel.startswith("nb:") else None
        room = self.rooms.rooms.get(nb) if nb else None
        key = (sender, channel)
        last = self._last_seen.get(key)
        self._last_seen[key] = seq
        if room is not None and last is not None and seq != last + 1:
            log.info("gap from %s on %s (%s -> %s): catching up", sender, channel, last, seq)
            asyncio.get_running_loop().create_task(self.catch_up(room))
        if nb is not None and fence:
            self.max_fence[nb] = max(self.max_fence.get(nb, 0), fence)
        for kind, payload in records:
            if kind == REC_DOC and room is not None:
                name, update = payload
                if not name.startswith("cell:") and name != CLIENTS_DOC and fence < self.max_fence.get(room.id, 0):
                    continue  # a deposed home: its index/out writes are fenced off (every replica writes cells and their client ids)
                room.apply_remote(name, update)
            elif kind == REC_AWARENESS and room is not None:
                room.awareness.apply_remote(payload, self._owner(room, sender))
            elif kind == REC_EVENT:
                ev_kind, ev = payload
                handler = self.event_handlers.get(ev_kind)
                if handler is not None:
                    handler(room, ev, sender)

    def _owner(self, room: NotebookRoom, sender: str) -> RemoteOwner:
        owners = self._remote_owners.setdefault(room.id, {})
        owner = owners.get(sender)
        if owner is None:
            owner = owners[sender] = RemoteOwner(sender)
        owner.seen = time.monotonic()
        return owner

    def on_event(self, kind: str, handler: EventHandler) -> None:
        self.event_handlers[kind] = handler

    def _on_perms(self, room: NotebookRoom | None, ev: dict[str, Any], sender: str) -> None:
        nb = ev.get("nb")
        if not isinstance(nb, str):
            return
        self._reloading = True
        try:
            self.permissions.reload(nb)
        finally:
            self._reloading = False

    def _on_record(self, room: NotebookRoom | None, ev: dict[str, Any], sender: str) -> None:
        """The notebook's record (name, settings) changed on another replica: re-read it."""
        if room is not None:
            asyncio.get_running_loop().create_task(self._reload_record(room))

    async def _reload_record(self, room: NotebookRoom) -> None:
        record = await asyncio.get_running_loop().run_in_executor(None, self.rooms.store.get_notebook, room.id)
        if record is not None and not room.closed:
            room.record = record
            for observer in self.home_observers:
                observer.record_changed(room)

    def _on_hint(self, room: NotebookRoom | None, ev: dict[str, Any], sender: str) -> None:
        if room is not None:
            asyncio.get_running_loop().create_task(self.catch_up(room))

    def _on_room_json(self, room: NotebookRoom | None, ev: dict[str, Any], sender: str) -> None:
        if room is not None:
            room.deliver_json(ev["msg"], ev.get("user"), ev.get("exclude"))

    def _on_to_user(self, room: NotebookRoom | None, ev: dict[str, Any], sender: str) -> None:
        sid = ev.get("session")
        for r in self.rooms.rooms.values():
            for session in r.sessions:
                if getattr(session, "session_id", None) == sid:
                    session.send_json(ev["msg"])
                    return

    # -- catch-up ------------------------------------------------------------------------------

    async def catch_up(self, room: NotebookRoom) -> None:
        """Merge the store's view of the notebook into the room."""
        if room.id in self._catching_up or room.closed:
            return
        self._catching_up.add(room.id)
        try:
            loop = asyncio.get_running_loop()
            await self.rooms.update_log.flush()
            # Rows below the watermark were merged before. The margin covers rows that
            # got a lower id but committed later (concurrent transactions on PostgreSQL).
            after = max(0, room.merged_upto - CATCHUP_MARGIN)
            persisted, ids = await loop.run_in_executor(None, self.rooms.store.load_docs_since, room.id, after)
            if room.closed:
                return
            room.merge_persisted(persisted)
            if ids:
                room.merged_upto = max(room.merged_upto, ids[-1])
            self.catchups += 1
            if self.metrics is not None:
                self.metrics.catchups.inc()
        except Exception:
            log.exception("catch-up of notebook %s failed", room.id)
        finally:
            self._catching_up.discard(room.id)

    async def _on_reconnect(self) -> None:
        for room in list(self.rooms.rooms.values()):
            self.publish_event(room.id, "hint", {})
            await self.catch_up(room)
        self._reloading = True
        try:
            self.permissions.reload()
        finally:
            self._reloading = False

    async def _safety_loop(self) -> None:
        while True:
            await asyncio.sleep(self.catchup_interval)
            for room in list(self.rooms.rooms.values()):
                await self.catch_up(room)
            self._reloading = True
            try:
                self.permissions.reload()
            except Exception:
                log.exception("periodic permission reload failed")
            finally:
                self._reloading = False

    # -- home lease ------------------------------------------------------------------------

    async def _try_claim(self, room: NotebookRoom) -> bool:
        try:
            fence = await self.bus.acquire(f"home:{room.id}", int(self.lease_ttl * 1000))
        except BusUnavailable:
            return False
        if fence is None:
            return False
        was_home = room.id in self.fences
        self.fences[room.id] = fence
        self.max_fence[room.id] = max(self.max_fence.get(room.id, 0), fence)
        if not was_home:
            log.info("replica %s is now home of notebook %s (fence %s)", self.replica_id, room.id, fence)
            await self.catch_up(room)
            for observer in self.home_observers:
                observer.became_home(room)
        return True

    async def _lease_loop(self) -> None:
        renew_every = self.lease_ttl / 3
        last_renew = 0.0
        while True:
            await asyncio.sleep(self.watch_interval if self.watch_interval < renew_every else renew_every)
            now = time.monotonic()
            if now - last_renew >= renew_every:
                last_renew = now
                for nb in list(self.fences):
                    room = self.rooms.rooms.get(nb)
                    try:
                        ok = await self.bus.renew(f"home:{nb}", int(self.lease_ttl * 1000))
                    except BusUnavailable:
                        continue  # nobody can take it while Redis is away
                    if not ok:
                        self.fences.pop(nb, None)
                        log.warning("replica %s lost the home lease of %s", self.replica_id, nb)
                        if room is not None:
                            for observer in self.home_observers:
                                observer.lost_home(room)
            for room in list(self.rooms.rooms.values()):
                if room.id not in self.fences:
                    await self._try_claim(room)

    # -- forwarding commands to the home -------------------------------------------------

    async def home_of(self, nb_id: str) -> str | None:
        if self.is_home(nb_id):
            return self.replica_id
        try:
            return await self.bus.holder(f"home:{nb_id}")
        except BusUnavailable:
            return None

    async def forward(
        self, room: NotebookRoom, session: Session, msg: dict[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Run a home-only command on the home replica; return its ack fields (the home
        must answer within ``timeout`` seconds, by default ``command_timeout``)."""
        home = await self.home_of(room.id)
        if home is None or home == self.replica_id:
            # No home, or the lease is ours and the claim is still completing: run it here.
            if await self._try_claim(room):
                return await self._runner().run_here(room, session, msg)
            home = await self.home_of(room.id)
        if home is None or home == self.replica_id:
            raise CollabError("the notebook's home replica cannot be reached; try again", status=503, code="home_unavailable")
        req = f"{self.replica_id}:{next(self._req)}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req] = fut
        ident = session.identity
        self._queue(
            f"replica:{home}",
            event_record(
                "cmd",
                {
                    "req": req,
                    "nb": room.id,
                    "session": getattr(session, "session_id", ""),
                    "identity": {"name": ident.name, "groups": sorted(ident.groups), "admin": ident.admin},
                    "msg": msg,
                },
            ),
        )
        try:
            reply = await asyncio.wait_for(fut, timeout or self.command_timeout)
        except TimeoutError:
            raise CollabError("the notebook's home replica did not answer in time", status=503, code="home_unavailable") from None
        finally:
            self._pending.pop(req, None)
        if "error" in reply:
            err = reply["error"]
            raise CollabError(err["message"], status=err.get("status", 400), code=err["code"])
        result: dict[str, Any] = reply.get("result") or {}
        return result

    def _on_reply(self, room: NotebookRoom | None, ev: dict[str, Any], sender: str) -> None:
        fut = self._pending.get(ev.get("req", ""))
        if fut is not None and not fut.done():
            fut.set_result(ev)

    def _on_command(self, room: NotebookRoom | None, ev: dict[str, Any], sender: str) -> None:
        asyncio.get_running_loop().create_task(self._run_command(ev, sender))

    def _runner(self) -> CommandRunner:
        if self.commands is None:
            raise RuntimeError("Replicator.serve_commands() was not called: nothing runs forwarded commands")
        return self.commands

    async def _run_command(self, ev: dict[str, Any], sender: str) -> None:
        reply: dict[str, Any] = {"req": ev.get("req")}
        try:
            nb = ev["nb"]
            room = await self.rooms.get(nb)
            if not self.is_home(nb):
                raise CollabError("this replica is not the notebook's home any more; try again", status=503, code="home_unavailable")
            i = ev["identity"]
            identity = Identity(name=i["name"], groups=frozenset(i["groups"]), admin=bool(i["admin"]))
            session = self.remote_session(sender, ev.get("session", ""), identity)
            session.access = room.compute_access_for(identity)
            reply["result"] = await self._runner().run_here(room, session, ev["msg"])
        except CollabError as exc:
            reply["error"] = exc.to_json()
        except Exception:
            log.exception("forwarded command failed")
            reply["error"] = {"status": 500, "code": "internal_error", "message": "the home replica could not run this command"}
        self._queue(f"replica:{sender}", event_record("reply", reply))

    def remote_session(self, replica: str, session_id: str, identity: Identity) -> RemoteSession:
        key = f"{replica}/{session_id}"
        session = self.remote_sessions.get(key)
        if session is None or session.identity != identity:
            session = self.remote_sessions[key] = RemoteSession(self, replica, session_id, identity)
        return session


class RemoteSession(Session):
    """A client connected to another replica, as seen by the home running its command."""

    def __init__(self, replicator: Replicator, replica: str, session_id: str, identity: Identity) -> None:
        super().__init__(identity)
        self.replicator = replicator
        self.replica = replica
        self.session_id = session_id

    def send_bytes(self, data: bytes) -> None:
        return None  # doc changes reach it through its own replica

    def send_json(self, message: dict[str, Any]) -> None:
        self.replicator._queue(f"replica:{self.replica}", event_record("to_user", {"session": self.session_id, "msg": message}))

    def close(self, code: int = 1000, reason: str = "") -> None:
        return None

