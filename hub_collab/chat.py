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
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from .commands import CommandContext, CommandRegistry
from .errors import Conflict, Forbidden, NotFound
from .messages import (
    MessageService,
    clean_text,
    parse_int,
    parse_mentions,
    positive_id,
)
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
#: At most this many distinct ``#cell`` references are kept per message.
MAX_REFS = 50

# ``#<cell id>``: ids are 1-64 characters of [A-Za-z0-9_-] (see hub_collab.ids).
CELL_REF_RE = re.compile(r"(?<![\w&#])#([A-Za-z0-9_-]{1,64})")


# -- input -----------------------------------------------------------------------------


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


def message_id(value: Any) -> int:
    """A message id from a path or a command; an id that cannot exist is 404 like an unknown one."""
    return positive_id(value, code="unknown_message", what="message")


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


# -- the service ---------------------------------------------------------------------------


class ChatService(MessageService):
    """Persistence, rules and live fan-out of every notebook's chat.

    Create one per process, :meth:`start` it, and :meth:`stop` it at shutdown.
    Writes run on one background thread, so on one replica messages are stored and
    published in id order.
    """

    event_kind = "chat"
    noun = "chat messages"

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
        super().__init__(rooms=rooms, permissions=permissions, groups_of=groups_of, rate=rate, burst=burst, relay=relay)
        self.engine = engine
        self.store = store
        self.max_length = max_length
        self.page_size = page_size

    def start(self) -> None:
        """Create the table if needed; start the writer thread."""
        ensure_schema(self.engine)
        super().start()

    # -- writing ------------------------------------------------------------------------

    async def post(
        self, room: NotebookRoom, identity: Identity, access: Access, text: Any
    ) -> tuple[JSONDict, list[JSONDict]]:
        """Store and publish a message; return it as the writer sees it, and warnings."""
        clean = clean_text(text, self.max_length, code="invalid_chat")
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
        clean = clean_text(text, self.max_length, code="invalid_chat")
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
        assert record is not None  # "ok"
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
        assert record is not None  # "deleted" or "already"
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
        return self.unreadable_mentions(
            nb_id, writer, mentions, lambda access: access.can(CHAT_READ),
            "{name} cannot read this notebook and will not see this message",
        )

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
