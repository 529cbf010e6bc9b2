"""REST v1 comments: threads on cells, their comments, read marks and notices.

| method and path | what | answer |
| --- | --- | --- |
| ``GET …/comments?cell_id=&before=&limit=`` | threads (newest first) with their comments | ``{threads, next_before}`` |
| ``POST …/comments {cell_id, text, anchor?}`` | open a thread | 201 ``{thread, comment, warnings}`` |
| ``GET …/comments/summary`` | per readable cell: threads, open, unread | ``{cells}`` |
| ``GET …/comments/notices?before=&limit=`` | your mentions and replies | ``{notices, next_before}`` |
| ``POST …/comments/read {cell_id}`` | you have read the cell's comments | ``{cell_id, seen_upto, unread}`` |
| ``GET …/comments/{thread_id}`` | one thread with its comments | ``{thread}`` |
| ``POST …/comments/{thread_id} {text}`` | reply | 201 ``{comment, warnings}`` |
| ``PUT …/comments/{thread_id} {resolved}`` | resolve or reopen | ``{thread}`` |
| ``PUT …/comments/{thread_id}/{comment_id} {text}`` | edit your own comment | ``{comment, warnings}`` |
| ``DELETE …/comments/{thread_id}/{comment_id}`` | delete (yours; owner/admin: any) | 204 |

Every handler runs the same command as the WebSocket (:mod:`hub_collab.comments.commands`)
through the application's dispatcher, which checks the command's action again (for a
new thread: ``comment_post`` on its cell); the handlers declare ``open`` and parse
requests only. Bodies with unknown fields are refused (``invalid_field``).
"""

from __future__ import annotations

from ..errors import BadRequest
from ..types import JSONDict
from .base import RequestSession
from .notebooks import NotebookAPIHandler

#: Bytes a comment body may take beyond its text (the text limit is in characters:
#: 4 bytes each, 12 as JSON escapes), for the other fields and an anchor.
_BODY_SLACK = 2048

_OPEN = {"GET": "open", "POST": "open", "PUT": "open", "DELETE": "open"}
_DENIED = "you may not read this notebook"


class CommentAPIHandler(NotebookAPIHandler):
    """Shared: the bounded body with known fields, and running a command as the caller."""

    denied = dict.fromkeys(_OPEN, _DENIED)

    def body(self, known: set[str], required: set[str]) -> JSONDict:
        body = self.json_body(max_bytes=self.collab.comments.max_length * 12 + _BODY_SLACK)
        self.reject_unknown_fields(body, known)
        missing = sorted(required - set(body))
        if missing:
            raise BadRequest(f"the request body needs the field(s) {', '.join(missing)}", code="invalid_comment")
        return body

    async def run(self, nb_id: str, msg: JSONDict) -> JSONDict:
        room, access = await self.room_for(nb_id)
        return await self.collab.commands.run(room, RequestSession(self.me, access), msg)

    def query(self, *names: str) -> JSONDict:
        out: JSONDict = {}
        for name in names:
            value = self.get_query_argument(name, None)
            if value is not None:
                out[name] = value
        return out


class CommentsHandler(CommentAPIHandler):
    actions = {"GET": "open", "POST": "open"}

    async def get(self, nb_id: str) -> None:
        self.write_json(await self.run(nb_id, {"type": "comment_list", **self.query("cell_id", "before", "limit")}))

    async def post(self, nb_id: str) -> None:
        body = self.body({"cell_id", "text", "anchor"}, {"cell_id", "text"})
        if not isinstance(body["cell_id"], str):
            raise BadRequest("cell_id must be a string", code="invalid_command")
        result = await self.run(nb_id, {"type": "comment_create", **body})
        self.set_header(
            "Location", f"{self.collab.base_url}api/notebooks/{nb_id}/comments/{result['thread']['id']}"
        )
        self.write_json(result, status=201)


class SummaryHandler(CommentAPIHandler):
    actions = {"GET": "open"}

    async def get(self, nb_id: str) -> None:
        self.write_json(await self.run(nb_id, {"type": "comment_summary"}))


class NoticesHandler(CommentAPIHandler):
    actions = {"GET": "open"}

    async def get(self, nb_id: str) -> None:
        self.write_json(await self.run(nb_id, {"type": "comment_notices", **self.query("before", "limit")}))


class ReadHandler(CommentAPIHandler):
    actions = {"POST": "open"}

    async def post(self, nb_id: str) -> None:
        body = self.body({"cell_id"}, {"cell_id"})
        self.write_json(await self.run(nb_id, {"type": "comment_read", "cell_id": body["cell_id"]}))


class ThreadHandler(CommentAPIHandler):
    actions = {"GET": "open", "POST": "open", "PUT": "open"}

    async def get(self, nb_id: str, thread_id: str) -> None:
        self.write_json(await self.run(nb_id, {"type": "comment_thread", "thread_id": thread_id}))

    async def post(self, nb_id: str, thread_id: str) -> None:
        body = self.body({"text"}, {"text"})
        result = await self.run(nb_id, {"type": "comment_reply", "thread_id": thread_id, "text": body["text"]})
        self.write_json(result, status=201)

    async def put(self, nb_id: str, thread_id: str) -> None:
        body = self.body({"resolved"}, {"resolved"})
        msg = {"type": "comment_resolve", "thread_id": thread_id, "resolved": body["resolved"]}
        self.write_json(await self.run(nb_id, msg))


class CommentHandler(CommentAPIHandler):
    actions = {"PUT": "open", "DELETE": "open"}

    async def put(self, nb_id: str, thread_id: str, comment_id: str) -> None:
        body = self.body({"text"}, {"text"})
        msg = {"type": "comment_edit", "thread_id": thread_id, "comment_id": comment_id, "text": body["text"]}
        self.write_json(await self.run(nb_id, msg))

    async def delete(self, nb_id: str, thread_id: str, comment_id: str) -> None:
        await self.run(nb_id, {"type": "comment_delete", "thread_id": thread_id, "comment_id": comment_id})
        self.set_status(204)
        self.finish()




_C = r"api/notebooks/([^/]+)/comments"
default_handlers = [
    (_C, CommentsHandler),
    (_C + r"/summary", SummaryHandler),
    (_C + r"/notices", NoticesHandler),
    (_C + r"/read", ReadHandler),
    (_C + r"/([^/]+)", ThreadHandler),
    (_C + r"/([^/]+)/([^/]+)", CommentHandler),
]
