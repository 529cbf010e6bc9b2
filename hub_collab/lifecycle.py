"""Deleting a notebook: one explicit step, :class:`NotebookLifecycle`.

A notebook's state is spread over the services: its docs and record (the
store), its permissions (the permission store), its chat, its comments, its kernels and
their working directory, its live rooms on every replica. Deleting it touches
each of them here, in this order, and nowhere else:

1. the other replicas are told (``deleted`` event): they close their rooms and
   stop their kernels of it (:meth:`NotebookLifecycle.deleted_elsewhere`);
2. this replica's room is closed (its clients get ``notebook_deleted`` and close
   code 4404);
3. its kernels are shut down and their working directory is removed;
4. once the update log holds nothing of it in flight, its docs (update log and
   checkpoints), its record, its chat messages and its comments are deleted;
5. its permissions are deleted (every replica drops its cached rights);
6. an audit entry ``delete`` is written.

What is kept: the notebook's audit log (who changed permissions, who ran what,
who deleted it), for the operator.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from .permissions.access import Identity
from .tasks import cancel_and_wait
from .types import EventRelay

if TYPE_CHECKING:
    from .chat import ChatService
    from .comments import CommentService
    from .documents.room import NotebookRoom
    from .documents.rooms import RoomManager
    from .kernels.manager import KernelService
    from .permissions.store import PermissionStore
    from .store import Store

log = logging.getLogger("hub_collab.lifecycle")


class NotebookLifecycle:
    """Deletes notebooks across the services (one per application)."""

    def __init__(
        self,
        *,
        store: Store,
        rooms: RoomManager,
        permissions: PermissionStore,
        kernels: KernelService,
        chat: ChatService,
        comments: CommentService,
        relay: EventRelay,
    ) -> None:
        self.store = store
        self.rooms = rooms
        self.permissions = permissions
        self.kernels = kernels
        self.chat = chat
        self.comments = comments
        self.relay = relay
        self._background: set[asyncio.Task[None]] = set()

    async def delete_notebook(self, nb_id: str, actor: Identity) -> None:
        """Delete ``nb_id`` everywhere (the caller checked ``delete_notebook``)."""
        self.relay.publish_event(nb_id, "deleted", {})
        self.rooms.close_deleted(nb_id)
        await self.kernels.forget_notebook(nb_id)
        await self.rooms.update_log.flush()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._delete_rows, nb_id)
        self.permissions.delete_notebook(nb_id)
        await loop.run_in_executor(None, self.store.add_audit, nb_id, actor.name, "delete", "notebook", {})

    def _delete_rows(self, nb_id: str) -> None:
        self.store.delete_notebook(nb_id)
        self.chat.purge_notebook(nb_id)
        self.comments.purge_notebook(nb_id)

    def deleted_elsewhere(self, room: NotebookRoom | None, event: dict[str, Any], sender: str) -> None:
        """The ``deleted`` event from the replica that deleted the notebook."""
        if room is None:
            return
        nb_id = room.id
        self.rooms.close_deleted(nb_id)
        task = asyncio.get_running_loop().create_task(self.kernels.forget_notebook(nb_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def stop(self) -> None:
        await cancel_and_wait(*self._background)
