"""What people write to each other: checks and parts shared by chat and comments.

:class:`MessageService` is the base of both services (a writer thread, the rate
limit, publishing events here and to the other replicas, mention warnings).
:func:`clean_text` accepts or refuses a message body (the same rules for a chat
message and a comment, with the caller's error code), :func:`parse_mentions`
finds ``@name`` mentions, :class:`RateLimiter` is the per-user token bucket and
:class:`RetryLater` the 429 it raises, :func:`parse_int` and :func:`positive_id`
read numbers from queries, commands and paths. :mod:`hub_collab.chat` and
:mod:`hub_collab.comments` use them; nothing here knows either.

Security: text is stored verbatim and is never HTML; clients render it as text.
Control characters other than tab and newline are refused (not dropped), so what
is stored is exactly what the writer sees.
"""

from __future__ import annotations

import abc
import asyncio
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .errors import BadRequest, NotFound, RateLimited, TooLarge
from .permissions.access import Access, Identity
from .types import EventRelay, JSONDict

if TYPE_CHECKING:
    from .documents.room import NotebookRoom
    from .documents.rooms import RoomManager
    from .permissions.store import PermissionStore

T = TypeVar("T")

#: At most this many distinct ``@mentions`` are kept per message.
MAX_MENTIONS = 20

# ``@name``: Hub user names (also e-mail-like ones); not inside a word or an address.
MENTION_RE = re.compile(r"(?<![\w@])@([A-Za-z0-9_][A-Za-z0-9._@+-]{0,127})")
# C0 and C1 control characters except tab and newline.
CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class RetryLater(RateLimited):
    """Too many messages; ``retry_after`` seconds until the next one is accepted.

    REST answers 429 with ``retry_after`` in the body and a ``Retry-After`` header
    (:meth:`hub_collab.apihandlers.base.APIHandler.write_error`); the WebSocket's
    error frame carries ``retry_after`` too.
    """

    def __init__(self, retry_after: float, what: str = "messages") -> None:
        self.retry_after = round(max(retry_after, 0.001), 3)
        super().__init__(f"too many {what}: retry after {self.retry_after:.3g} s", code="rate_limited")

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "retry_after": self.retry_after}


def clean_text(value: Any, max_length: int, *, code: str = "invalid_chat", what: str = "message") -> str:
    """The text if it is acceptable; :class:`BadRequest` (``code``) or :class:`TooLarge` otherwise.

    ``\\r\\n`` becomes ``\\n``; any other control character (besides tab and
    newline) is refused rather than silently dropped. HTML is ordinary text.
    """
    if not isinstance(value, str):
        raise BadRequest(f"text must be a string, got {type(value).__name__}", code=code)
    text = value.replace("\r\n", "\n")
    if not text.strip():
        raise BadRequest(f"the {what} is empty", code=code)
    if len(text) > max_length:
        raise TooLarge(f"the {what} has {len(text)} characters; the limit is {max_length}", code="too_large")
    bad = CONTROL_RE.search(text)
    if bad is not None:
        raise BadRequest(
            f"the {what} contains the control character U+{ord(bad.group()):04X} at position {bad.start()};"
            " only tab and newline are allowed",
            code=code,
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest(f"the {what} is not valid Unicode at position {exc.start}", code=code) from exc
    return text


def parse_mentions(text: str) -> list[str]:
    """Distinct ``@name`` mentions in order of appearance (trailing dots dropped)."""
    out: list[str] = []
    for match in MENTION_RE.finditer(text):
        name = match.group(1).rstrip(".")
        if name and name not in out:
            out.append(name)
            if len(out) >= MAX_MENTIONS:
                break
    return out


def parse_int(value: Any, name: str, lo: int, hi: int) -> int:
    """An integer from JSON or a query string, within ``lo..hi``; 400 ``invalid_query`` otherwise."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise BadRequest(
            f"{name} must be an integer from {lo} to {hi}, got {str(value)[:40]!r}",
            code="invalid_query",
        )
    return value


def positive_id(value: Any, *, code: str, what: str) -> int:
    """An id from a path or a command; an id that cannot exist is 404 ``code`` like an unknown one."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**63:
        raise NotFound(f"no such {what}", code=code)
    return value


class RateLimiter:
    """Token buckets: ``rate`` per second on average, bursts of ``burst``, per key.

    ``rate <= 0`` disables the limit. Memory is bounded: full buckets are
    forgotten when more than ``max_keys`` are held.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: dict[Any, tuple[float, float]] = {}

    def take(self, key: Any) -> float:
        """Take one token: 0.0 if allowed, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > self.max_keys:
            self._prune(now)
        return 0.0

    def _prune(self, now: float) -> None:
        full = [k for k, (t, last) in self._buckets.items() if t + (now - last) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]


class MessageService(abc.ABC):
    """What chat and comments share: one writer thread, the per-user rate limit, live
    events published here and through the relay to the other replicas, and warnings
    for mentioned users who will not see a message.

    Subclasses set :attr:`event_kind` (the relay's event kind) and implement
    :meth:`deliver` (render an event for each local session allowed to see it).
    :meth:`start` before use, :meth:`stop` at shutdown.
    """

    #: the kind of the events this service sends to the other replicas
    event_kind: ClassVar[str]
    #: what its messages are called in errors ("chat messages", "comments")
    noun: ClassVar[str] = "messages"

    def __init__(
        self,
        *,
        rooms: RoomManager | None,
        permissions: PermissionStore | None,
        groups_of: Callable[[str], frozenset[str]],
        rate: float,
        burst: int,
        relay: EventRelay | None,
    ) -> None:
        self.rooms = rooms
        self.permissions = permissions
        self.groups_of = groups_of
        self.limiter = RateLimiter(rate, burst)
        #: where published events go besides the local sessions (the other replicas)
        self.relay = relay
        self._executor: ThreadPoolExecutor | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread."""
        if self._executor is not None:
            raise RuntimeError(f"{type(self).__name__}.start() called twice; create one per application")
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"collab-{self.event_kind}")

    def stop(self) -> None:
        """Wait for pending writes and stop the writer thread."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the writer thread (writes are stored in order)."""
        if self._executor is None:
            raise RuntimeError(f"{type(self).__name__} used before start(): call start() first")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _rate(self, nb_id: str, identity: Identity) -> None:
        wait = self.limiter.take((nb_id, identity.name))
        if wait:
            raise RetryLater(wait, self.noun)

    # -- fan-out --------------------------------------------------------------------------

    def publish(self, nb_id: str, event: JSONDict) -> None:
        """The one way an event leaves the service: to the local room's sessions and
        through the relay to the other replicas'. ``event`` holds *stored* records, not
        a rendering; each replica renders it for each of its receivers (:meth:`deliver`)."""
        self.deliver(nb_id, event)
        if self.relay is not None:
            self.relay.publish_event(nb_id, self.event_kind, event)

    def remote_event(self, room: NotebookRoom | None, event: JSONDict, sender: str) -> None:
        """An event published on another replica (the relay's handler of :attr:`event_kind`)."""
        if room is not None:
            self.deliver(room.id, event)

    @abc.abstractmethod
    def deliver(self, nb_id: str, event: JSONDict) -> None:
        """Send ``event`` to every local session that may see it *now*, rendered for it."""

    def unreadable_mentions(
        self, nb_id: str, writer: Identity, mentions: list[str], readable: Callable[[Access], bool], message: str
    ) -> list[JSONDict]:
        """A ``mention_no_access`` warning for every mentioned user (other than the writer)
        whose rights, evaluated with their Hub groups as a non-admin, fail ``readable``;
        ``message`` is formatted with ``{name}``."""
        if self.permissions is None:
            return []
        out = []
        for name in mentions:
            if name == writer.name:
                continue
            who = Identity(name, self.groups_of(name), admin=False)
            try:
                ok = readable(self.permissions.access(who, nb_id))
            except LookupError:
                ok = False
            if not ok:
                out.append({"code": "mention_no_access", "user": name, "message": message.format(name=name)})
        return out
