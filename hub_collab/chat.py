"""Chat beside every notebook: :class:`ChatService` and the chat commands.

Use the application's one service, ``app.chat`` (created by
:meth:`HubCollab.init_chat <hub_collab.app.HubCollab.init_chat>`).
:func:`register_commands` adds ``chat``, ``chat_edit``, ``chat_delete`` and
``chat_history`` to the command registry, each declaring its action
(``chat_post`` or ``chat_read``: notebook ``r``); the REST handlers declare the
same actions. :meth:`ChatService.post`, :meth:`~ChatService.edit`,
:meth:`~ChatService.delete` and :meth:`~ChatService.history` take the caller's
identity and *current* :class:`~hub_collab.permissions.access.Access`, which
they use for what only they can decide (whose message this is, how a message
renders for each receiver).

Messages live in the table ``collab_chat`` of the service's database (the
application's engine). Deleted messages stay as tombstones (text removed) so
that history and ids stay stable. Every live event goes through one method,
:meth:`ChatService.publish`: it delivers to the sessions of the local room and
hands the event to the :class:`~hub_collab.types.EventRelay` (the replicator),
whose other replicas deliver it to theirs (:meth:`ChatService.remote_event`).

Security: what a receiver gets is rendered *for that receiver*
(:func:`render`): a ``#<cell id>`` reference to a cell they cannot read is
``{"cell_id", "readable": false}`` and nothing else, and no message ever
carries cell content. Text is stored verbatim and is never HTML: clients must
render it as text.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from .commands import CommandContext, CommandRegistry
from .errors import BadRequest, Conflict, Forbidden, NotFound, RateLimited, TooLarge
from .permissions.access import Access, Identity, check_action
from .schema import chat_messages, ensure_schema
from .types import EventRelay, JSONDict

if TYPE_CHECKING:
    from .documents.room import NotebookRoom
    from .documents.rooms import RoomManager
    from .permissions.store import PermissionStore
    from .store import Store

log = logging.getLogger("hub_collab.chat")

CHAT_READ = check_action("chat_read")
CHAT_POST = check_action("chat_post")

#: Largest history page a client may ask for.
MAX_PAGE_SIZE = 500
#: At most this many distinct ``@mentions`` and ``#cell`` references are kept per message.
MAX_MENTIONS = 20
MAX_REFS = 50

# ``@name``: Hub user names (also e-mail-like ones); not inside a word or an address.
MENTION_RE = re.compile(r"(?<![\w@])@([A-Za-z0-9_][A-Za-z0-9._@+-]{0,127})")
# ``#<cell id>``: ids are 1-64 characters of [A-Za-z0-9_-] (see hub_collab.ids).
CELL_REF_RE = re.compile(r"(?<![\w&#])#([A-Za-z0-9_-]{1,64})")
# C0 and C1 control characters except tab and newline.
CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class ChatRateLimited(RateLimited):
    """Too many chat messages; ``retry_after`` seconds until the next one is accepted."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = round(max(retry_after, 0.001), 3)
        super().__init__(
            f"too many chat messages: retry after {self.retry_after:.3g} s",
            code="rate_limited",
        )

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "retry_after": self.retry_after}


# -- input -----------------------------------------------------------------------------


def clean_text(value: Any, max_length: int) -> str:
    """The message text if it is acceptable; :class:`BadRequest`/:class:`TooLarge` otherwise.

    ``\\r\\n`` becomes ``\\n``; any other control character (besides tab and
    newline) is refused rather than silently dropped, so what is stored is
    exactly what the writer sees. HTML is ordinary text.
    """
    if not isinstance(value, str):
        raise BadRequest(f"text must be a string, got {type(value).__name__}", code="invalid_chat")
    text = value.replace("\r\n", "\n")
    if not text.strip():
        raise BadRequest("the message is empty", code="invalid_chat")
    if len(text) > max_length:
        raise TooLarge(
            f"the message has {len(text)} characters; the limit is {max_length}", code="too_large"
        )
    bad = CONTROL_RE.search(text)
    if bad is not None:
        raise BadRequest(
            f"the message contains the control character U+{ord(bad.group()):04X} at position {bad.start()};"
            " only tab and newline are allowed",
            code="invalid_chat",
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest(
            f"the message is not valid Unicode at position {exc.start}", code="invalid_chat"
        ) from exc
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


def parse_refs(text: str, cell_ids: Iterable[str]) -> list[str]:
    """Distinct ``#<cell id>`` references to cells of the notebook, in order of appearance."""
    known = set(cell_ids)
    out: list[str] = []
    for match in CELL_REF_RE.finditer(text):
        cid = match.group(1)
        if cid in known and cid not in out:
            out.append(cid)
            if len(out) >= MAX_REFS:
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


def message_id(value: Any) -> int:
    """A message id from a path or a command; an id that cannot exist is 404 like an unknown one."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise NotFound("no such message", code="unknown_message")
    return value


# -- rendering ---------------------------------------------------------------------------


def _record(row: Any) -> JSONDict:
    """A stored message as the JSON record that :meth:`ChatService.publish` carries."""
    return {
        "id": int(row.id),
        "notebook": row.notebook_id,
        "author": row.author,
        "text": row.text,
        "created_at": row.created_at,
        "edited_at": row.edited_at,
        "deleted": bool(row.deleted),
        "mentions": json.loads(row.mentions or "[]"),
        "refs": json.loads(row.refs or "[]"),
    }


def render(record: JSONDict, access: Access) -> JSONDict:
    """The message as ``access``'s identity may see it.

    ``refs`` become ``{"cell_id", "readable"}``; ``mentioned`` says whether the
    receiver is among ``mentions``. Tombstones carry no text, mentions or refs.
    """
    if record["deleted"]:
        return {**record, "text": "", "mentions": [], "refs": [], "mentioned": False}
    return {
        **record,
        "refs": [
            {"cell_id": cid, "readable": access.can("read_cell", cid)} for cid in record["refs"]
        ],
        "mentioned": access.identity.name in record["mentions"],
    }


# -- rate limit ----------------------------------------------------------------------------


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
        full = [
            k
            for k, (t, last) in self._buckets.items()
            if t + (now - last) * self.rate >= self.burst
        ]
        for k in full:
            del self._buckets[k]


# -- the service ---------------------------------------------------------------------------


class ChatService:
    """Persistence, rules and live fan-out of every notebook's chat.

    Create one per process, :meth:`start` it (creates the table), and
    :meth:`stop` it at shutdown. Writes run on one background thread, so on
    one replica messages are stored and published in id order.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        rooms: RoomManager | None = None,
        permissions: PermissionStore | None = None,
        groups_of: Callable[[str], frozenset[str]] = lambda name: frozenset(),
        store: Store | None = None,
        max_length: int = 4000,
        rate: float = 1.0,
        burst: int = 10,
        page_size: int = 50,
        relay: EventRelay | None = None,
    ) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be at least 1, got {max_length!r}")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be from 1 to {MAX_PAGE_SIZE}, got {page_size!r}")
        self.engine = engine
        self.rooms = rooms
        self.permissions = permissions
        self.groups_of = groups_of
        self.store = store
        self.max_length = max_length
        self.page_size = page_size
        self.limiter = RateLimiter(rate, burst)
        self._executor: ThreadPoolExecutor | None = None
        #: where published events go besides the local sessions (the other replicas)
        self.relay = relay

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Create the table if needed; start the writer thread."""
        if self._executor is not None:
            raise RuntimeError(
                "ChatService.start() called twice; create one ChatService per application"
            )
        ensure_schema(self.engine)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="collab-chat")

    def stop(self) -> None:
        """Wait for pending writes and stop the writer thread."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def _write(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._executor is None:
            raise RuntimeError("ChatService used before start(): call start() first")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- writing ------------------------------------------------------------------------

    def _rate(self, nb_id: str, identity: Identity) -> None:
        wait = self.limiter.take((nb_id, identity.name))
        if wait:
            raise ChatRateLimited(wait)

    async def post(
        self, room: NotebookRoom, identity: Identity, access: Access, text: Any
    ) -> tuple[JSONDict, list[JSONDict]]:
        """Store and publish a message; return it as the writer sees it, and warnings."""
        clean = clean_text(text, self.max_length)
        self._rate(room.id, identity)
        mentions = parse_mentions(clean)
        refs = parse_refs(clean, room.cell_ids())
        record: JSONDict = {
            "id": 0,
            "notebook": room.id,
            "author": identity.name,
            "text": clean,
            "created_at": time.time(),
            "edited_at": None,
            "deleted": False,
            "mentions": mentions,
            "refs": refs,
        }
        record["id"] = await self._write(self.insert, record)
        self.publish(room.id, {"type": "chat", "message": record})
        return render(record, access), self.mention_warnings(room.id, identity, mentions)

    async def edit(
        self, room: NotebookRoom, identity: Identity, access: Access, msg_id: Any, text: Any
    ) -> tuple[JSONDict, list[JSONDict]]:
        """Replace the text of one's own message; publish ``chat_edit``."""
        mid = message_id(msg_id)
        clean = clean_text(text, self.max_length)
        self._rate(room.id, identity)
        mentions = parse_mentions(clean)
        refs = parse_refs(clean, room.cell_ids())
        outcome, record = await self._write(
            self._edit_sync, room.id, mid, identity.name, clean, mentions, refs
        )
        if outcome == "missing":
            raise NotFound("no such message", code="unknown_message")
        if outcome == "forbidden":
            raise Forbidden("you may only edit your own messages")
        if outcome == "deleted":
            raise Conflict("this message was deleted", code="chat_deleted")
        self.publish(room.id, {"type": "chat_edit", "message": record})
        return render(record, access), self.mention_warnings(room.id, identity, mentions)

    async def delete(
        self, room: NotebookRoom, identity: Identity, access: Access, msg_id: Any
    ) -> JSONDict:
        """Delete one's own message, or any as the notebook's owner or an admin; publish ``chat_delete``.

        Deleting a tombstone again is a no-op. Returns the tombstone.
        """
        mid = message_id(msg_id)
        moderator = identity.admin or access.is_notebook_owner
        may_post = access.can(CHAT_POST)
        outcome, record = await self._write(
            self._delete_sync, room.id, mid, identity.name, moderator, may_post
        )
        if outcome == "missing":
            raise NotFound("no such message", code="unknown_message")
        if outcome == "forbidden":
            raise Forbidden(
                "you may only delete your own messages (the notebook's owner and admins moderate)"
            )
        if outcome == "deleted":
            self.publish(room.id, {"type": "chat_delete", "id": mid})
            if record["author"] != identity.name and self.store is not None:
                await self._write(
                    self.store.add_audit,
                    room.id,
                    identity.name,
                    "chat_moderate",
                    str(mid),
                    {"author": record["author"]},
                )
        return render(record, access)

    def mention_warnings(self, nb_id: str, writer: Identity, mentions: list[str]) -> list[JSONDict]:
        """A warning for every mentioned user who cannot read the notebook (so will not see it)."""
        if self.permissions is None:
            return []
        out = []
        for name in mentions:
            if name == writer.name:
                continue
            who = Identity(name, self.groups_of(name), admin=False)
            try:
                readable = self.permissions.access(who, nb_id).can(CHAT_READ)
            except LookupError:
                readable = False
            if not readable:
                out.append(
                    {
                        "code": "mention_no_access",
                        "user": name,
                        "message": f"{name} cannot read this notebook and will not see this message",
                    }
                )
        return out

    # -- reading ------------------------------------------------------------------------

    async def history(
        self, nb_id: str, access: Access, before: Any = None, limit: Any = None
    ) -> JSONDict:
        """A page of messages, oldest first, ending before message id ``before`` (the newest page without it).

        ``next_before`` is the value of ``before`` for the previous (older)
        page, or ``None`` when there is none.
        """
        n = self.page_size if limit is None else parse_int(limit, "limit", 1, MAX_PAGE_SIZE)
        upto = None if before is None or before == "" else parse_int(before, "before", 1, 2**63 - 1)
        records, more = await asyncio.get_running_loop().run_in_executor(
            None, self.page, nb_id, upto, n
        )
        return {
            "messages": [render(r, access) for r in records],
            "next_before": records[0]["id"] if more and records else None,
        }

    # -- fan-out ------------------------------------------------------------------------

    def publish(self, nb_id: str, event: JSONDict) -> None:
        """The one way an event leaves the service: to the local room's sessions and
        through the relay to the other replicas'.

        ``event`` is JSON (``{"type": "chat"|"chat_edit", "message": record}``
        or ``{"type": "chat_delete", "id": n}``) with the *stored* record, not
        a rendering; each replica renders it for each of its receivers
        (:meth:`deliver`).
        """
        self.deliver(nb_id, event)
        if self.relay is not None:
            self.relay.publish_event(nb_id, "chat", event)

    def remote_event(self, room: NotebookRoom | None, event: JSONDict, sender: str) -> None:
        """A chat event published on another replica (the relay's ``chat`` handler)."""
        if room is not None:
            self.deliver(room.id, event)

    def deliver(self, nb_id: str, event: JSONDict) -> None:
        """Send ``event`` to every local session that may read the chat *now*, rendered for it."""
        if self.rooms is None:
            return
        room = self.rooms.rooms.get(nb_id)
        if room is None:
            return
        record = event.get("message")
        for session in list(room.sessions):
            access = session.access
            if not access.can(CHAT_READ):
                continue
            if record is None:
                session.send_json(event)
            else:
                session.send_json({"type": event["type"], "message": render(record, access)})

    # -- storage (synchronous; run on the writer thread or in an executor) ------------------

    def insert(self, record: JSONDict) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(chat_messages.insert().values(**_row(record)))
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def insert_many(self, records: list[JSONDict]) -> None:
        """Bulk insert (imports, benchmarks): nothing is published."""
        with self.engine.begin() as conn:
            conn.execute(chat_messages.insert(), [_row(r) for r in records])

    def get(self, nb_id: str, msg_id: int) -> JSONDict | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                chat_messages.select().where(
                    chat_messages.c.id == msg_id, chat_messages.c.notebook_id == nb_id
                )
            ).first()
        return _record(row) if row is not None else None

    def page(self, nb_id: str, before: int | None, limit: int) -> tuple[list[JSONDict], bool]:
        query = chat_messages.select().where(chat_messages.c.notebook_id == nb_id)
        if before is not None:
            query = query.where(chat_messages.c.id < before)
        query = query.order_by(chat_messages.c.id.desc()).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        more = len(rows) > limit
        return [_record(r) for r in reversed(rows[:limit])], more

    def before_time(self, nb_id: str, before: float, limit: int) -> list[JSONDict]:
        """Up to ``limit`` messages posted before ``before`` (a time), newest first."""
        query = (
            chat_messages.select()
            .where(chat_messages.c.notebook_id == nb_id, chat_messages.c.created_at < before)
            .order_by(chat_messages.c.created_at.desc(), chat_messages.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(query).all()]

    def purge_notebook(self, nb_id: str) -> None:
        """Delete every message of a notebook (it is being deleted)."""
        with self.engine.begin() as conn:
            conn.execute(chat_messages.delete().where(chat_messages.c.notebook_id == nb_id))

    def _edit_sync(
        self, nb_id: str, mid: int, author: str, text: str, mentions: list[str], refs: list[str]
    ) -> tuple[str, JSONDict | None]:
        with self.engine.begin() as conn:
            where = (chat_messages.c.id == mid, chat_messages.c.notebook_id == nb_id)
            row = conn.execute(chat_messages.select().where(*where)).first()
            if row is None:
                return "missing", None
            if row.author != author:
                return "forbidden", None
            if row.deleted:
                return "deleted", None
            conn.execute(
                chat_messages.update()
                .where(*where, chat_messages.c.deleted.is_(False))
                .values(
                    text=text,
                    edited_at=time.time(),
                    mentions=json.dumps(mentions),
                    refs=json.dumps(refs),
                )
            )
            row = conn.execute(chat_messages.select().where(*where)).first()
        return "ok", _record(row)

    def _delete_sync(
        self, nb_id: str, mid: int, actor: str, moderator: bool, may_post: bool
    ) -> tuple[str, JSONDict | None]:
        with self.engine.begin() as conn:
            where = (chat_messages.c.id == mid, chat_messages.c.notebook_id == nb_id)
            row = conn.execute(chat_messages.select().where(*where)).first()
            if row is None:
                return "missing", None
            if not moderator and not (row.author == actor and may_post):
                return "forbidden", None
            if row.deleted:
                return "already", _record(row)
            conn.execute(
                chat_messages.update()
                .where(*where)
                .values(deleted=True, deleted_by=actor, text="", mentions="[]", refs="[]")
            )
            row = conn.execute(chat_messages.select().where(*where)).first()
        return "deleted", _record(row)


def _row(record: JSONDict) -> JSONDict:
    return {
        "notebook_id": record["notebook"],
        "author": record["author"],
        "text": record["text"],
        "created_at": record["created_at"],
        "edited_at": record.get("edited_at"),
        "deleted": bool(record.get("deleted", False)),
        "mentions": json.dumps(record.get("mentions", [])),
        "refs": json.dumps(record.get("refs", [])),
    }


# -- commands ------------------------------------------------------------------------------


def register_commands(registry: CommandRegistry, chat: ChatService) -> None:
    """Register the chat commands, bound to ``chat``."""
    command = registry.command
    read = "you may not read this notebook's chat"
    post = "you may not post in this notebook's chat"

    @command("chat", action=CHAT_POST, denied=post)
    async def _chat(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        message, warnings = await chat.post(ctx.room, ctx.session.identity, ctx.session.access, msg.get("text"))
        return {"message": message, "warnings": warnings}

    @command("chat_edit", action=CHAT_POST, denied=post)
    async def _chat_edit(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        message, warnings = await chat.edit(
            ctx.room, ctx.session.identity, ctx.session.access, msg.get("id"), msg.get("text")
        )
        return {"message": message, "warnings": warnings}

    @command("chat_delete", action=CHAT_READ, denied=read)
    async def _chat_delete(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        message = await chat.delete(ctx.room, ctx.session.identity, ctx.session.access, msg.get("id"))
        return {"message": message}

    @command("chat_history", action=CHAT_READ, denied=read)
    async def _chat_history(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        return await chat.history(ctx.room.id, ctx.session.access, msg.get("before"), msg.get("limit"))
