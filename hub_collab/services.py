"""What the HTTP handlers may use of the application: the :class:`Services` protocol.

:class:`hub_collab.app.HubCollab` builds the services and the handlers; the
handlers (``handlers/``, ``apihandlers/``) reach the services through this
protocol only (``self.collab``), so they depend on the services and never on
``app.py``: the import graph has no cycle, type-only imports included
(``tests/test_architecture.py``). ``HubCollab`` is checked against it by mypy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from .budgets import FrameBudgets
    from .bus.base import Bus
    from .chat import ChatService
    from .commands import Dispatcher
    from .comments import CommentService
    from .documents.rooms import RoomManager
    from .history.service import HistoryService
    from .kernels.manager import KernelService
    from .lifecycle import NotebookLifecycle
    from .metrics import Metrics
    from .permissions.access import Identity
    from .permissions.store import PermissionStore
    from .replication import Replicator
    from .store import Store


class Services(Protocol):
    """The application's services and the settings the handlers read."""

    base_url: str
    max_message_size: int
    max_request_bytes: int
    #: backpressure and the cap on what a connection leaves unread (handlers/ws.py)
    max_unread_bytes: int
    max_queued_bytes: int
    unread_timeout: float
    allowed_origins: list[str]
    replica_id: str
    #: where kernels run: ``hub``, ``gateway`` or ``local`` (not isolated from the service)
    kernel_provider: str
    #: WebSocket sessions opened since start (tests and benchmarks read it)
    sessions_opened: int
    #: start-up has finished (the probes and the start-up gate read it)
    started: bool
    #: ``GET metrics`` needs ``read:metrics`` (or an admin)
    authenticate_prometheus: bool
    #: the metrics registry and objects (None: ``metrics_enabled`` is off)
    metrics: Metrics | None
    #: the loop time each user's binary frames may take (handlers/ws.py)
    frame_budgets: FrameBudgets

    engine: Engine
    store: Store
    permissions: PermissionStore
    rooms: RoomManager
    kernels: KernelService
    chat: ChatService
    comments: CommentService
    history: HistoryService
    commands: Dispatcher
    lifecycle: NotebookLifecycle
    replicator: Replicator
    bus: Bus

    def identity_for(self, model: dict[str, Any]) -> Identity:
        """The identity of a Hub user model (groups from the Hub's group directory)."""
