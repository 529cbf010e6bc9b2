"""The kernel commands: ``execute``, ``execute_all``, ``execute_below``, ``interrupt``,
``restart``, ``shutdown_kernel``, ``input_reply``, ``widget_update``, ``widget_custom``, ``kernel_status``,
``kernel_settings``, and picking where kernels run: ``kernel_resources``,
``select_kernel``, ``start_server``.

:func:`register_commands` adds them to the application's
:class:`~hub_collab.commands.CommandRegistry`, bound to its
:class:`~hub_collab.kernels.manager.KernelService`. Each declares the permission
action the dispatcher checks first and runs on the notebook's home replica
(the one that owns its kernels). The WebSocket and the REST handlers of
:mod:`hub_collab.apihandlers.kernels` both reach them through the dispatcher;
see docs/kernels.md for the messages.
"""

from __future__ import annotations

from ..commands import CommandContext, CommandRegistry
from ..errors import BadRequest
from ..types import JSONDict
from .manager import KernelService


def register_commands(registry: CommandRegistry, kernels: KernelService) -> None:
    """Register the kernel commands, bound to ``kernels``."""
    command = registry.command

    @command(
        "execute",
        action="execute",
        cell_arg="cell_id",
        home=True,
        slow=True,
        denied="you may not execute this cell (it needs notebook x and cell r and x)",
    )
    async def execute(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        ex, position = await kernels.execute(ctx.room, ctx.session.identity, msg["cell_id"], msg.get("source_hash"))
        return {"cell_id": ex.cell_id, "queue_position": position}

    # Running many cells needs only the notebook: cells the user may not execute are skipped
    # (and listed), so the declared action is ``open`` and the service filters per cell.
    @command("execute_all", action="open", home=True, slow=True)
    async def execute_all(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        queued, skipped, not_queued = await kernels.execute_many(ctx.room, ctx.session.identity, ctx.session.access)
        return {"cell_ids": [ex.cell_id for ex in queued], "skipped": skipped, "not_queued": not_queued}

    @command("execute_below", action="open", home=True, slow=True)
    async def execute_below(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        queued, skipped, not_queued = await kernels.execute_many(
            ctx.room, ctx.session.identity, ctx.session.access, start=msg.get("cell_id")
        )
        return {"cell_ids": [ex.cell_id for ex in queued], "skipped": skipped, "not_queued": not_queued}

    @command(
        "interrupt",
        action="interrupt",
        home=True,
        denied="you may not interrupt this notebook's kernel (it needs notebook x)",
    )
    async def interrupt(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        return await kernels.interrupt(ctx.room, ctx.session.identity)

    @command(
        "restart",
        action="restart",
        home=True,
        denied="you may not restart this notebook's kernel (it needs notebook w and x)",
    )
    async def restart(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        return await kernels.restart(ctx.room, ctx.session.identity)

    @command(
        "shutdown_kernel",
        action="restart",
        home=True,
        denied="you may not shut down this notebook's kernel (it needs notebook w and x)",
    )
    async def shutdown_kernel(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        return await kernels.shutdown(ctx.room, ctx.session.identity, msg.get("resource"), msg.get("kernel_name"))

    # Only the user who ran the cell may answer it: the service checks who that was.
    @command("input_reply", action="open", home=True)
    def input_reply(ctx: CommandContext, msg: JSONDict) -> None:
        kernels.input_reply(ctx.room, ctx.session.identity, msg.get("cell_id"), msg.get("value"))

    # Widgets: the cell named is the one whose out doc holds the model (docs/widgets.md)
    def widget_command(name: str, custom: bool) -> None:
        @command(
            name,
            action="execute",
            cell_arg="cell_id",
            home=True,
            denied="you may not use this widget (it needs notebook x and cell r and x)",
        )
        async def run(ctx: CommandContext, msg: JSONDict) -> None:
            await kernels.widget_message(ctx.room, ctx.session.identity, msg, custom=custom)

    widget_command("widget_update", False)
    widget_command("widget_custom", True)

    @command("kernel_status", action="open", home=True)
    def kernel_status(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        return {"status": kernels.status(ctx.room, ctx.session.identity)}

    @command(
        "kernel_settings",
        action="change_settings",
        home=True,
        denied="only the notebook's owner or an admin may change its settings",
    )
    async def kernel_settings(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        settings = msg.get("settings")
        if not isinstance(settings, dict):
            raise BadRequest("settings must be an object", code="invalid_command")
        return {"settings": await kernels.set_settings(ctx.room, ctx.session.identity, settings)}

    # Where kernels run. Per-user mode: each user picks their own resource; shared mode:
    # the notebook's owner does (the service checks that). A server is always one of the
    # caller's own (kernels/resources.py).
    @command(
        "kernel_resources",
        action="choose_kernel",
        home=True,
        slow=True,
        denied="you may not pick where this notebook's kernel runs (it needs notebook x)",
    )
    async def kernel_resources(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        return {"resources": await kernels.resource_listing(ctx.room, ctx.session.identity)}

    @command(
        "select_kernel",
        action="choose_kernel",
        home=True,
        denied="you may not pick where this notebook's kernel runs (it needs notebook x)",
    )
    async def select_kernel(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        body: JSONDict = {k: msg[k] for k in ("resource", "kernel_name", "consent") if k in msg}
        return {"status": await kernels.select(ctx.room, ctx.session.identity, body)}

    @command(
        "start_server",
        action="choose_kernel",
        home=True,
        slow=True,
        denied="you may not start servers from this notebook (it needs notebook x)",
    )
    async def start_server(ctx: CommandContext, msg: JSONDict) -> JSONDict:
        return await kernels.start_server(ctx.room, ctx.session.identity, msg.get("server", ""))
