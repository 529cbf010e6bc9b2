"""REST v1 chat: ``api/notebooks/{id}/chat`` and ``api/notebooks/{id}/chat/{msg_id}``.

| method | what | answer |
| --- | --- | --- |
| ``GET …/chat?before=&limit=`` | a history page, oldest first | ``{messages, next_before}`` |
| ``POST …/chat {text}`` | post (bots: with a Hub API token) | 201 ``{message, warnings}`` |
| ``PUT …/chat/{msg_id} {text}`` | edit your own message | ``{message, warnings}`` |
| ``DELETE …/chat/{msg_id}`` | delete your own (owner/admin: any) | 204 |

Each handler declares its actions (``chat_read``/``chat_post``, as the chat
commands do); the rules on messages live in
:class:`hub_collab.chat.ChatService` and these handlers only parse requests. A rate-limited request gets 429 with ``retry_after`` in the
body and a ``Retry-After`` header (written by the base handler).
"""

from __future__ import annotations

from typing import Any

from ..chat import CHAT_POST, CHAT_READ
from ..errors import BadRequest
from .notebooks import NotebookAPIHandler

#: A chat request body never needs more than this (the text limit is in characters; 4 bytes each, JSON escapes).
_BODY_SLACK = 1024


class ChatAPIHandler(NotebookAPIHandler):
    """Shared by the chat handlers: the body's ``text``."""

    def chat_text(self) -> Any:
        limit = self.collab.chat.max_length * 12 + _BODY_SLACK
        body = self.json_body(max_bytes=limit)
        unknown = set(body) - {"text"}
        if unknown:
            raise BadRequest(
                f"unknown field(s): {', '.join(sorted(unknown))}", code="invalid_field"
            )
        if "text" not in body:
            raise BadRequest("the request body needs a field text", code="invalid_chat")
        return body["text"]


class ChatHandler(ChatAPIHandler):
    actions = {"GET": CHAT_READ, "POST": CHAT_POST}
    denied = {"GET": "you may not read this notebook's chat", "POST": "you may not post in this notebook's chat"}

    async def get(self, nb_id: str) -> None:
        room, access = await self.room_for(nb_id)
        before = self.get_query_argument("before", None)
        limit = self.get_query_argument("limit", None)
        self.write_json(await self.collab.chat.history(room.id, access, before, limit))

    async def post(self, nb_id: str) -> None:
        room, access = await self.room_for(nb_id)
        text = self.chat_text()
        message, warnings = await self.collab.chat.post(room, self.me, access, text)
        self.set_header(
            "Location", f"{self.collab.base_url}api/notebooks/{room.id}/chat/{message['id']}"
        )
        self.write_json({"message": message, "warnings": warnings}, status=201)


class ChatMessageHandler(ChatAPIHandler):
    # whose message it is (author; the notebook's owner and admins moderate) is the chat's rule
    actions = {"PUT": CHAT_POST, "DELETE": CHAT_READ}
    denied = {"PUT": "you may not post in this notebook's chat", "DELETE": "you may not read this notebook's chat"}

    async def put(self, nb_id: str, msg_id: str) -> None:
        room, access = await self.room_for(nb_id)
        text = self.chat_text()
        message, warnings = await self.collab.chat.edit(room, self.me, access, msg_id, text)
        self.write_json({"message": message, "warnings": warnings})

    async def delete(self, nb_id: str, msg_id: str) -> None:
        room, access = await self.room_for(nb_id)
        await self.collab.chat.delete(room, self.me, access, msg_id)
        self.set_status(204)
        self.finish()


default_handlers = [
    (r"api/notebooks/([^/]+)/chat", ChatHandler),
    (r"api/notebooks/([^/]+)/chat/([^/]+)", ChatMessageHandler),
]
