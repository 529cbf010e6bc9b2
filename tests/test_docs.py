"""Docs are checked like code: every setting, route and permission action is documented."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

import pytest
from tornado import web

from hub_collab.apihandlers import chat, health, kernels, metrics, notebooks
from hub_collab.apihandlers.base import APIHandler
from hub_collab.chat import register_commands as register_chat
from hub_collab.commands import CommandRegistry, command_table
from hub_collab.configdocs import render
from hub_collab.documents import structure
from hub_collab.handlers import ws
from hub_collab.kernels.commands import register_commands as register_kernels
from hub_collab.permissions.access import ACTIONS

DOCS = Path(__file__).parent.parent / "docs"


def test_config_reference_is_current():
    assert (DOCS / "config.md").read_text() == render(), "run: python -m hub_collab.configdocs > docs/config.md"


def _route_text(pattern: str) -> str:
    # api/notebooks/([^/]+)/cells/([^/]+)/permissions -> api/notebooks/{}/cells/{}/permissions
    text = re.sub(r"\([^)]*\)", "{}", pattern)
    return text


def test_every_route_is_in_the_rest_reference():
    rest = re.sub(r"\{[a-z_]+\}", "{}", (DOCS / "rest.md").read_text())
    protocol = (DOCS / "protocol.md").read_text()
    for module in (notebooks, chat, kernels, health, metrics, ws):
        for route in module.default_handlers:
            path = _route_text(route[0]).replace("{}/kernel/{}", "{}/kernel/interrupt")
            where = protocol if module is ws else rest
            assert re.sub(r"\{[a-z_]+\}", "{}", path) in where.replace("{id}", "{}"), f"{route[0]} is not documented"


def test_every_permission_action_is_documented():
    text = (DOCS / "permissions.md").read_text()
    for action in ACTIONS:
        assert f"`{action}`" in text, f"action {action} is not in docs/permissions.md"


def registry() -> CommandRegistry:
    """The application's commands (registration binds the services; none is called)."""
    reg = CommandRegistry()
    structure.register_commands(reg)
    register_kernels(reg, cast(Any, None))
    register_chat(reg, cast(Any, None))
    return reg


def test_every_websocket_command_is_documented():
    text = "\n".join((DOCS / name).read_text() for name in ("protocol.md", "kernels.md", "chat.md"))
    commands = command_table(registry())
    assert len(commands) >= 18
    for name, _, _ in commands:
        assert f"`{name}`" in text, f"command {name} is not documented"


def test_every_command_is_listed_with_its_action():
    table = (DOCS / "protocol.md").read_text()
    for name, action, home in command_table(registry()):
        needs = f"`{action}`" if action is not None else "connected"
        row = f"| `{name}` | {needs} | {'home' if home else 'any'} |"
        assert row in table, f"docs/protocol.md lacks the row {row}"


def _methods(handler: type[web.RequestHandler]) -> list[str]:
    """The HTTP methods a handler implements (not tornado's 405 default)."""
    return [
        m.upper()
        for m in ("get", "post", "put", "delete", "patch")
        if getattr(handler, m) is not getattr(web.RequestHandler, m)
    ]


def test_every_route_declares_and_documents_its_action():
    rest = (DOCS / "rest.md").read_text().replace("{id}", "{}").replace("{cell_id}", "{}").replace("{msg_id}", "{}")
    checked = 0
    for module in (notebooks, chat, kernels):
        for route in module.default_handlers:
            handler = route[1]
            assert issubclass(handler, APIHandler)
            path = _route_text(route[0])
            for method in _methods(handler):
                assert method in handler.actions, f"{handler.__name__} declares no action for {method}"
                action = handler.actions[method]
                needs = f"`{action}`" if action is not None else "login"
                row = next((line for line in rest.splitlines() if line.startswith(f"| `{method} {path}`")), None)
                assert row is not None, f"{method} {path} has no row in docs/rest.md"
                assert row.rstrip().endswith(f"| {needs} |"), f"{method} {path}: docs/rest.md does not say {needs}"
                checked += 1
    assert checked >= 22


def test_an_unknown_action_fails_when_declared():
    with pytest.raises(ValueError, match="unknown permission action 'opne'"):

        class Typo(APIHandler):
            actions = {"GET": "opne"}

    reg = CommandRegistry()
    with pytest.raises(ValueError, match="unknown permission action"):
        reg.command("x", action="exec")(lambda ctx, msg: None)
    with pytest.raises(ValueError, match="is about a cell"):
        reg.command("x", action="execute")(lambda ctx, msg: None)
