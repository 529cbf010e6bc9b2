"""Redis pub/sub between replicas, and leases in Redis keys.

Messages are published from an outbox on one task (a pipeline per batch), so
:meth:`RedisBus.publish` never blocks the caller. The subscriber task
reconnects with backoff when Redis goes away, subscribes again, and then calls
the reconnect handlers (the replicator catches up from the store, because
pub/sub dropped whatever was published meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..tasks import cancel_and_wait
from .base import Bus, BusUnavailable, Handler

if TYPE_CHECKING:
    from ..metrics import Metrics

log = logging.getLogger("hub_collab.bus")

_ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('GET', KEYS[2]) or '0')
end
if cur then return nil end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('INCR', KEYS[2])
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisBus(Bus):
    def __init__(
        self, url: str, replica_id: str, *, prefix: str = "collab:", max_outbox: int = 100_000, metrics: Metrics | None = None
    ) -> None:
        super().__init__(replica_id, metrics=metrics)
        self.url = url
        self.prefix = prefix
        self.max_outbox = max_outbox
        self.client: Any = None
        self.handlers: dict[str, Handler] = {}
        self._outbox: list[tuple[str, bytes]] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._pubsub: Any = None
        self._resubscribe = asyncio.Event()
        self.connected = False
        self._active: set[str] = set()
        self._active_changed = asyncio.Event()
        self._attempted = asyncio.Event()

    @property
    def distributed(self) -> bool:
        return True

    def key(self, name: str) -> str:
        return self.prefix + name

    async def start(self) -> None:
        self.client = aioredis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=5)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._publisher()), loop.create_task(self._subscriber())]

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        if self._pubsub is not None:
            await self._close_pubsub()
        if self.client is not None:
            await self.client.aclose()

    async def _close_pubsub(self) -> None:
        # Its connection may already be broken (that is often why we close it).
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()

    # -- publishing ---------------------------------------------------------------------

    def publish(self, channel: str, data: bytes) -> None:
        if len(self._outbox) >= self.max_outbox:
            # Redis has been away long enough; drop (subscribers catch up from the store).
            self.stats["publish_failures"] += 1
            if self.metrics is not None:
                self.metrics.bus_publish_failures.inc()
            return
        self._outbox.append((channel, data))
        self._wake.set()

    async def _publisher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                batch, self._outbox = self._outbox, []
                try:
                    pipe = self.client.pipeline(transaction=False)
                    for channel, data in batch:
                        pipe.publish(self.key(channel), data)
                    await pipe.execute()
                    size = sum(len(d) for _, d in batch)
                    self.stats["published"] += len(batch)
                    self.stats["published_bytes"] += size
                    if self.metrics is not None:
                        self.metrics.bus_messages_out.inc(len(batch))
                        self.metrics.bus_bytes_out.inc(size)
                except (RedisError, OSError) as exc:
                    # Lost: pub/sub has no memory anyway. Receivers see a sequence gap
                    # and catch up from the store.
                    self.stats["publish_failures"] += len(batch)
                    if self.metrics is not None:
                        self.metrics.bus_publish_failures.inc(len(batch))
                    log.warning("could not publish %d messages to Redis: %s", len(batch), exc)
                    await asyncio.sleep(0.2)

    # -- subscribing ----------------------------------------------------------------------

    def subscribe(self, channel: str, handler: Handler) -> None:
        self.handlers[channel] = handler
        self._resubscribe.set()

    def unsubscribe(self, channel: str) -> None:
        if self.handlers.pop(channel, None) is not None:
            self._resubscribe.set()

    async def wait_active(self, channel: str, timeout: float) -> bool:
        deadline = asyncio.get_running_loop().time() + timeout
        while channel not in self._active:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            self._active_changed.clear()
            try:
                await asyncio.wait_for(self._active_changed.wait(), remaining)
            except TimeoutError:
                return False
        return True

    async def _subscriber(self) -> None:
        delay = 0.1
        first = True
        while True:
            try:
                self._pubsub = self.client.pubsub(ignore_subscribe_messages=False)
                subscribed: set[str] = set()
                await self._pubsub.subscribe(self.key("__replicas__"))
                self.connected = True
                self._attempted.set()
                if not first:
                    log.info("reconnected to Redis; catching up")
                    for handler in list(self.reconnect_handlers):
                        result = handler()
                        if asyncio.iscoroutine(result):
                            await result
                first = False
                delay = 0.1
                while True:
                    wanted = set(self.handlers)
                    if wanted != subscribed:
                        add, drop = wanted - subscribed, subscribed - wanted
                        if add:
                            # live once Redis confirms (a "subscribe" message, below)
                            await self._pubsub.subscribe(*[self.key(c) for c in add])
                        if drop:
                            await self._pubsub.unsubscribe(*[self.key(c) for c in drop])
                            self._active -= drop
                        subscribed = wanted
                        self._active_changed.set()
                    self._resubscribe.clear()
                    msg = await self._pubsub.get_message(timeout=0.05)
                    if msg is None:
                        continue
                    channel = msg["channel"].decode()[len(self.prefix) :]
                    if msg["type"] == "subscribe":
                        self._active.add(channel)
                        self._active_changed.set()
                        for on_subscribed in list(self.subscribed_handlers):
                            on_subscribed([channel])
                        continue
                    if msg["type"] != "message":
                        continue
                    on_message = self.handlers.get(channel)
                    if on_message is None:
                        continue
                    data = msg["data"]
                    self.stats["received"] += 1
                    self.stats["received_bytes"] += len(data)
                    if self.metrics is not None:
                        self.metrics.bus_messages_in.inc()
                        self.metrics.bus_bytes_in.inc(len(data))
                    try:
                        on_message(channel, data)
                    except Exception:
                        log.exception("bus handler for %s failed", channel)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self.connected:
                    log.warning("lost Redis (%s); local editing goes on, retrying", exc)
                elif not self._attempted.is_set():
                    log.warning("cannot reach Redis (%s); starting degraded (local editing only), retrying", exc)
                self.connected = False
                self._attempted.set()
                self._active.clear()
                await self._close_pubsub()
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)

    async def wait_started(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._attempted.wait(), timeout)
        except TimeoutError:
            log.warning("no answer from Redis within %g s; starting degraded, retrying", timeout)
        return self.connected

    # -- leases ----------------------------------------------------------------------------

    async def acquire(self, key: str, ttl_ms: int) -> int | None:
        try:
            token = await self.client.eval(_ACQUIRE, 2, self.key(key), self.key(key + ":fence"), self.replica_id, ttl_ms)
        except (RedisError, OSError) as exc:
            raise BusUnavailable(str(exc)) from exc
        return int(token) if token is not None else None

    async def renew(self, key: str, ttl_ms: int) -> bool:
        try:
            return bool(await self.client.eval(_RENEW, 1, self.key(key), self.replica_id, ttl_ms))
        except (RedisError, OSError) as exc:
            raise BusUnavailable(str(exc)) from exc

    async def release(self, key: str) -> None:
        try:
            await self.client.eval(_RELEASE, 1, self.key(key), self.replica_id)
        except (RedisError, OSError):
            pass  # unreachable Redis: the lease expires by itself after its TTL

    async def holder(self, key: str) -> str | None:
        try:
            value = await self.client.get(self.key(key))
        except (RedisError, OSError) as exc:
            raise BusUnavailable(str(exc)) from exc
        return value.decode() if value is not None else None

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.client.ping(), 2))
        except (TimeoutError, RedisError, OSError):
            return False
