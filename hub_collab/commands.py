"""The command layer: every JSON command goes through one :class:`Dispatcher`.

A *command* is a JSON object ``{"type": name, ...}`` that asks the service to do
something to a notebook: insert a cell, run one, post in the chat. Commands
arrive on three paths, and all three take the same way:

* a WebSocket text frame (:mod:`hub_collab.handlers.ws` calls :meth:`Dispatcher.handle`,
  which answers ``ack`` or ``error``);
* a REST request (the handlers in :mod:`hub_collab.apihandlers` call
  :meth:`Dispatcher.run` and render the result or the :class:`~hub_collab.errors.CollabError`);
* a command another replica forwarded to this one, the notebook's home
  (:class:`~hub_collab.replication.Replicator` calls :meth:`Dispatcher.run_here`).

The services own their commands. Each registers them with the one
:class:`CommandRegistry` of the application (``register_commands(registry)`` in
:mod:`hub_collab.documents.structure`, :mod:`hub_collab.kernels.commands` and
:mod:`hub_collab.chat`), declaring for each the permission action it needs, the
message field naming the cell that action is about, and whether it must run on the
notebook's home replica. The registry checks the action when the command is
registered, so a misspelt action fails at start-up, not at the first request.

:meth:`Dispatcher.run` then, for every command and on every path:

1. finds the command (``unknown_type``);
2. checks its declared action against the session's current rights (and, for a
   cell action, that the cell exists: ``invalid_command`` / ``unknown_cell`` /
   ``forbidden``);
3. runs it here, or on the notebook's home replica if it is a home command and
   this replica is not the home (through the :class:`HomeRouter`);
4. returns its result, which the WebSocket path merges into ``ack``.

A WebSocket connection's commands run one after the other, in the order they came
(tornado delivers the next frame when the last command is done), except **slow**
commands (``slow=True``: they may wait for a server to start): those are checked in
order, then run beside the connection's later frames, at most
:data:`MAX_SLOW_PER_SESSION` at a time per session (``too_many_requests`` beyond),
and forwarded to the home replica with :data:`SLOW_TIMEOUT`. A slow command that
must keep an order with later commands does its ordered part before it first waits
(``execute`` queues its cells at once, then waits for the kernel to start).

Adding a command is one function registered in its service's
``register_commands`` and one line in the docs (``tests/test_docs.py`` checks
that every command is documented with its action).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .documents.session import acting
from .errors import BadRequest, CollabError, Forbidden, NotFound
from .permissions.access import CELL_ACTIONS, check_action
from .types import CELL_PREFIX, JSONDict

if TYPE_CHECKING:
    from .documents.room import NotebookRoom
    from .documents.session import Session

log = logging.getLogger("hub_collab.commands")

#: Longest ``ref`` a client may attach to a command (echoed in its ``ack``/``error``).
MAX_REF_LENGTH = 64
#: Slow commands one session may have running at once.
MAX_SLOW_PER_SESSION = 8
#: How long a slow command forwarded to the home replica may take (a server start).
SLOW_TIMEOUT = 300.0


@dataclass(frozen=True)
class CommandContext:
    """What a command function gets besides the message: the room and the session.

    ``session.identity`` is who asks (from the Hub, never from the message) and
    ``session.access`` their current rights, already checked against the
    command's declared action. Services are bound when the command is
    registered (the functions are the services' own closures or methods).
    """

    room: NotebookRoom
    session: Session


CommandFn = Callable[[CommandContext, JSONDict], "Awaitable[JSONDict | None] | JSONDict | None"]


@dataclass(frozen=True)
class Command:
    """A registered command.

    ``action`` is a permission action (:data:`hub_collab.permissions.access.ACTIONS`)
    checked before ``fn`` runs, or None for a command any connected client may
    send whatever its rights now (``sync``); ``cell_arg`` names the message field holding the
    cell id for a cell action; ``home`` commands change ``index`` or drive a
    kernel, so they run on the notebook's home replica; ``denied`` is the
    message of the ``forbidden`` error; ``slow`` commands may wait long (a server
    start) and run beside the connection's later frames (see the module's docs).
    """

    name: str
    fn: CommandFn
    action: str | None
    cell_arg: str | None = None
    home: bool = False
    denied: str = ""
    slow: bool = False


class CommandRegistry:
    """Every command of one application, by name."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def command(
        self,
        name: str,
        *,
        action: str | None,
        cell_arg: str | None = None,
        home: bool = False,
        denied: str = "",
        slow: bool = False,
    ) -> Callable[[CommandFn], CommandFn]:
        """Register the decorated function as command ``name`` (see :class:`Command`)."""

        def register(fn: CommandFn) -> CommandFn:
            self.add(Command(name, fn, action, cell_arg, home, denied, slow))
            return fn

        return register

    def add(self, command: Command) -> None:
        if command.action is not None:
            check_action(command.action)
        if command.name in self._commands:
            raise ValueError(f"command {command.name!r} registered twice")
        if (command.action in CELL_ACTIONS) != (command.cell_arg is not None):
            raise ValueError(
                f"command {command.name!r}: action {command.action!r} "
                + ("is about a cell: give cell_arg" if command.cell_arg is None else "is not about a cell: drop cell_arg")
            )
        self._commands[command.name] = command

    def get(self, name: str) -> Command | None:
        return self._commands.get(name)

    def __iter__(self) -> Iterator[Command]:
        return iter(sorted(self._commands.values(), key=lambda c: c.name))

    def __contains__(self, name: object) -> bool:
        return name in self._commands

    def __len__(self) -> int:
        return len(self._commands)


class HomeRouter(Protocol):
    """Where a notebook's home commands run (the replicator; absent with one replica)."""

    def is_home(self, nb_id: str) -> bool:
        """True if this replica is the notebook's home."""

    async def forward(
        self, room: NotebookRoom, session: Session, msg: JSONDict, *, timeout: float | None = None
    ) -> JSONDict:
        """Run ``msg`` on the home replica; return its result or raise its error
        (``home_unavailable`` after ``timeout`` seconds, or the router's default)."""


class Dispatcher:
    """Validates, authorizes, routes and runs commands; shapes ``ack`` and ``error``."""

    def __init__(self, registry: CommandRegistry, router: HomeRouter | None = None) -> None:
        self.registry = registry
        self.router = router
        #: slow commands running, per session (id)
        self._slow: dict[int, set[asyncio.Task[None]]] = {}

    def lookup(self, msg: JSONDict) -> Command:
        kind = msg.get("type")
        command = self.registry.get(kind) if isinstance(kind, str) else None
        if command is None:
            raise CollabError(f"unknown message type {str(kind)[:40]!r}", code="unknown_type")
        return command

    def authorize(self, command: Command, room: NotebookRoom, session: Session, msg: JSONDict) -> None:
        """Raise unless ``session`` may do ``command``'s action now."""
        cell_id: str | None = None
        if command.cell_arg is not None:
            value = msg.get(command.cell_arg)
            if not isinstance(value, str):
                raise BadRequest(f"{command.cell_arg} must be a string", code="invalid_command")
            if CELL_PREFIX + value not in room.docs:
                raise NotFound("no such cell", code="unknown_cell")
            cell_id = value
        if command.action is not None and not session.access.can(command.action, cell_id):
            raise Forbidden(command.denied or f"you may not {command.name.replace('_', ' ')} here")

    async def run(self, room: NotebookRoom, session: Session, msg: JSONDict) -> JSONDict:
        """Run one command for ``session``, on the home replica if it must; its result."""
        command = self.lookup(msg)
        self.authorize(command, room, session, msg)
        router = self.router
        if command.home and router is not None and not router.is_home(room.id):
            return await router.forward(room, session, msg, timeout=SLOW_TIMEOUT if command.slow else None)
        return await self._invoke(command, room, session, msg)

    async def run_here(self, room: NotebookRoom, session: Session, msg: JSONDict) -> JSONDict:
        """Run one command on this replica (the home, for a forwarded command)."""
        command = self.lookup(msg)
        self.authorize(command, room, session, msg)
        return await self._invoke(command, room, session, msg)

    @staticmethod
    async def _invoke(command: Command, room: NotebookRoom, session: Session, msg: JSONDict) -> JSONDict:
        # what the command writes through the server is recorded as this session's
        token = acting.set(session)
        try:
            result = command.fn(CommandContext(room, session), msg)
            if result is not None and not isinstance(result, dict):
                result = await result
        finally:
            acting.reset(token)
        return result or {}

    async def handle(self, room: NotebookRoom, session: Session, text: str) -> None:
        """A WebSocket text frame: parse it, run the command, answer ``ack`` or ``error``."""
        try:
            msg = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply
            msg = None
        if not isinstance(msg, dict):
            session.send_error("invalid_json", "text frames must be JSON objects")
            return
        ref = msg.get("ref")
        if ref is not None and not (isinstance(ref, (int, str)) and len(str(ref)) <= MAX_REF_LENGTH):
            session.send_error(
                "invalid_command", f"ref must be a string or integer of at most {MAX_REF_LENGTH} characters"
            )
            return
        try:
            command = self.lookup(msg)
        except CollabError as exc:
            session.send_error(exc.code, exc.message, ref)
            return
        if not command.slow:
            await self._answer(room, session, msg, ref)
            return
        running = self._slow.setdefault(id(session), set())
        if len(running) >= MAX_SLOW_PER_SESSION:
            session.send_error(
                "too_many_requests",
                f"{len(running)} slow commands of yours are still running here; wait for their answers",
                ref,
            )
            return
        task = asyncio.get_running_loop().create_task(self._answer(room, session, msg, ref))
        running.add(task)

        def done(t: asyncio.Task[None]) -> None:
            running.discard(t)
            if not running and self._slow.get(id(session)) is running:
                del self._slow[id(session)]

        task.add_done_callback(done)
        # Let the task run up to its first wait before the connection's next frame: what
        # it does at once (``execute`` reads the cell's source and queues it) then
        # happens in the order the frames came.
        await asyncio.sleep(0)

    async def _answer(self, room: NotebookRoom, session: Session, msg: JSONDict, ref: object) -> None:
        """Run the command and answer ``ack`` or ``error``."""
        try:
            result = await self.run(room, session, msg)
        except CollabError as exc:
            retry_after = exc.__dict__.get("retry_after")
            extra = {"retry_after": retry_after} if isinstance(retry_after, (int, float)) else {}
            session.send_error(exc.code, exc.message, ref, **extra)
            return
        except Exception:
            log.exception("command %s failed", msg.get("type"))
            session.send_error("internal_error", "the server could not handle this command", ref)
            return
        ack: JSONDict = {"type": "ack", "ref": ref, "command": msg["type"]}
        ack.update(result)
        session.send_json(ack)


def command_table(registry: CommandRegistry) -> list[tuple[str, str | None, bool]]:
    """``(name, action, home)`` of every command, for the docs and their test."""
    return [(c.name, c.action, c.home) for c in registry]

