"""Comment threads on cells: storage, rules, live fan-out and the commands.

Use the application's one :class:`CommentService` (``app.comments``, made by
:meth:`HubCollab.init_comments <hub_collab.app.HubCollab.init_comments>`);
:func:`register_commands` adds the ``comment_*`` commands to the command registry.
The modules: :mod:`.store` (SQL, records), :mod:`.service` (who may do what, anchors,
fan-out, following the rooms), :mod:`.commands` (the commands and their fields).
Anchors in a cell's source are Yjs relative positions, resolved by
:mod:`hub_collab.documents.anchors`. See docs/comments.md.
"""

from __future__ import annotations

from .commands import register_commands
from .service import COMMENT_MODERATE, COMMENT_POST, COMMENT_READ, MAX_PAGE_SIZE, CommentService

__all__ = [
    "COMMENT_MODERATE",
    "COMMENT_POST",
    "COMMENT_READ",
    "MAX_PAGE_SIZE",
    "CommentService",
    "register_commands",
]
