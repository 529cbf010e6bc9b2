"""The comment commands, registered with the application's command registry.

``comment_create`` declares ``comment_post`` on its ``cell_id`` (the dispatcher checks
that the cell exists and the caller may read it); the others name a thread or a
comment by id, declare ``open``, and leave the rest to
:class:`~hub_collab.comments.service.CommentService`, which answers 404 for a thread
the caller may not see. Every command refuses fields it does not know
(``invalid_field``): an ``author``, a ``user`` or a ``created_at`` is never taken
from a client. REST (:mod:`hub_collab.apihandlers.comments`) runs the same commands.
"""

from __future__ import annotations

from ..commands import CommandContext, CommandRegistry
from ..errors import BadRequest
from ..types import JSONDict
from .service import COMMENT_POST, COMMENT_READ, CommentService

#: The fields each command takes (besides ``type`` and ``ref``).
FIELDS: dict[str, frozenset[str]] = {
    "comment_create": frozenset({"cell_id", "text", "anchor"}),
    "comment_reply": frozenset({"thread_id", "text"}),
    "comment_edit": frozenset({"comment_id", "text", "thread_id"}),
    "comment_delete": frozenset({"comment_id", "thread_id"}),
    "comment_resolve": frozenset({"thread_id", "resolved"}),
    "comment_list": frozenset({"cell_id", "before", "limit"}),
    "comment_thread": frozenset({"thread_id"}),
    "comment_summary": frozenset(),
    "comment_read": frozenset({"cell_id"}),
    "comment_notices": frozenset({"before", "limit"}),
}


def _fields(msg: JSONDict) -> JSONDict:
    known = FIELDS[msg["type"]]
    unknown = sorted(set(msg) - known - {"type", "ref"})
    if unknown:
        names = ", ".join(name[:40] for name in unknown[:5])
        raise BadRequest(f"unknown field(s) of {msg['type']}: {names}", code="invalid_field")
    return msg


def register_commands(registry: CommandRegistry, comments: CommentService) -> None:
    """Register the comment commands, bound to ``comments``."""
    command = registry.command
    read = "you may not read this notebook"
    post = "you may not comment on this cell"

    @command("comment_create", action=COMMENT_POST, cell_arg="cell_id", denied=post)
    async def _create(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        m = _fields(msg)
        s = ctx.session
        thread, comment, warnings = await comments.create(
            ctx.room, s.identity, s.access, m["cell_id"], m.get("text"), m.get("anchor")
        )
        return {"thread": thread, "comment": comment, "warnings": warnings}

    @command("comment_reply", action="open", denied=read)
    async def _reply(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        m = _fields(msg)
        s = ctx.session
        comment, warnings = await comments.reply(ctx.room, s.identity, s.access, m.get("thread_id"), m.get("text"))
        return {"comment": comment, "warnings": warnings}

    @command("comment_edit", action="open", denied=read)
    async def _edit(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        m = _fields(msg)
        s = ctx.session
        comment, warnings = await comments.edit(
            ctx.room, s.identity, s.access, m.get("comment_id"), m.get("text"), m.get("thread_id")
        )
        return {"comment": comment, "warnings": warnings}

    @command("comment_delete", action="open", denied=read)
    async def _delete(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        m = _fields(msg)
        s = ctx.session
        return {"comment": await comments.delete(ctx.room, s.identity, s.access, m.get("comment_id"), m.get("thread_id"))}

    @command("comment_resolve", action="open", denied=read)
    async def _resolve(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        m = _fields(msg)
        s = ctx.session
        thread = await comments.set_resolved(ctx.room, s.identity, s.access, m.get("thread_id"), m.get("resolved", True))
        return {"thread": thread}

    @command("comment_list", action="open", denied=read)
    async def _list(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        m = _fields(msg)
        return await comments.list_threads(ctx.room, ctx.session.access, m.get("cell_id"), m.get("before"), m.get("limit"))

    @command("comment_thread", action="open", denied=read)
    async def _thread(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        m = _fields(msg)
        return {"thread": await comments.get_thread(ctx.room, ctx.session.access, m.get("thread_id"))}

    @command("comment_summary", action="open", denied=read)
    async def _summary(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        _fields(msg)
        return await comments.summary(ctx.room, ctx.session.access)

    @command("comment_read", action=COMMENT_READ, cell_arg="cell_id", denied="you may not read this cell's comments")
    async def _read(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        m = _fields(msg)
        return await comments.mark_read(ctx.room, ctx.session.identity, ctx.session.access, m["cell_id"])

    @command("comment_notices", action="open", denied=read)
    async def _notices(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        m = _fields(msg)
        return await comments.notices(ctx.room, ctx.session.access, m.get("before"), m.get("limit"))
