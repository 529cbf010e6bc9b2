"""Docs are checked like code: every setting, route and permission action is documented."""

from __future__ import annotations

import re
from pathlib import Path

from hub_collab.apihandlers import chat, health, kernels, notebooks
from hub_collab.configdocs import render
from hub_collab.handlers import ws
from hub_collab.handlers.ws import COMMANDS
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
    for module in (notebooks, chat, kernels, health, ws):
        for route in module.default_handlers:
            path = _route_text(route[0]).replace("{}/kernel/{}", "{}/kernel/interrupt")
            where = protocol if module is ws else rest
            assert re.sub(r"\{[a-z_]+\}", "{}", path) in where.replace("{id}", "{}"), f"{route[0]} is not documented"


def test_every_permission_action_is_documented():
    text = (DOCS / "permissions.md").read_text()
    for action in ACTIONS:
        assert f"`{action}`" in text, f"action {action} is not in docs/permissions.md"


def test_every_websocket_command_is_documented():
    text = "\n".join((DOCS / name).read_text() for name in ("protocol.md", "kernels.md", "chat.md"))
    for name in COMMANDS:
        assert f"`{name}`" in text, f"command {name} is not documented"
