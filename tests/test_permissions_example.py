"""The shipped operator example ``policies/examples/ta-reads-hidden``, end to end.

The real service (the ``collab`` fixture, restarted with
``--HubCollab.policies_dir`` pointing at the example and restored afterwards) behind the
real Hub: a cell its owner hid (``0700``) in a notebook of group ``students`` is read by
``ta`` (Hub group ``staff``, hence ``role:ta``) through the REST API and the WebSocket,
while the student ``bob`` still cannot; with the shipped policies it stays hidden.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub_collab.client import CollabClient

pytestmark = pytest.mark.asyncio(loop_scope="module")

EXAMPLE = Path(__file__).resolve().parents[1] / "policies" / "examples" / "ta-reads-hidden"
ARG = f"--HubCollab.policies_dir={EXAMPLE}"
SECRET = "answer = 42  # alice-only-text"
CONTENT = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {},
    "cells": [
        {"id": "intro", "cell_type": "markdown", "metadata": {}, "source": "# Lab"},
        {
            "id": "secret",
            "cell_type": "code",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": SECRET,
        },
    ],
}


async def _sources(client: CollabClient, nb_id: str) -> list[str]:
    exported = await client.export(nb_id)
    return ["".join(c["source"]) for c in exported["cells"]]


async def _ws_caps(client: CollabClient, nb_id: str) -> dict[str, Any]:
    async with client.open(nb_id) as conn:
        await conn.synced()
        return dict(conn.caps.get("cells", {}))


async def test_ta_reads_a_hidden_cell_only_with_the_example(hub: Any, collab: Any) -> None:
    collab.extra_args.append(ARG)
    collab.restart()
    try:
        clients = {
            u: CollabClient(collab.public_url, hub.token(u)) for u in ("instructor", "ta", "bob")
        }
        nb = await clients["instructor"].create_notebook(
            "ta example", content=CONTENT, group="students", mode="0755", default_cell_mode="0755"
        )
        nb_id = nb["id"]
        await clients["instructor"].set_permissions(nb_id, "secret", owner="alice", mode="0700")
        assert SECRET in await _sources(clients["ta"], nb_id)
        assert SECRET not in await _sources(clients["bob"], nb_id)
        assert (await _ws_caps(clients["ta"], nb_id))["secret"] == "r--"
        assert (await _ws_caps(clients["bob"], nb_id))["secret"] == "---"
    finally:
        collab.extra_args.remove(ARG)
        collab.restart()
    # the shipped policies: the same cell is hidden from the TA again
    for c in clients.values():
        c.close()
    clients = {u: CollabClient(collab.public_url, hub.token(u)) for u in ("ta", "bob")}
    try:
        assert SECRET not in await _sources(clients["ta"], nb_id)
        assert (await _ws_caps(clients["ta"], nb_id))["secret"] == "---"
        assert "intro" in await _ws_caps(clients["ta"], nb_id)
    finally:
        for c in clients.values():
            c.close()


async def test_a_broken_policy_stops_the_service_with_a_clear_error(
    hub: Any, collab: Any, tmp_path: Path
) -> None:
    (tmp_path / "model.conf").write_text((EXAMPLE / "model.conf").read_text())
    (tmp_path / "policy.csv").write_text("p, 5, g:students, cell:*, role:ta, r\n")
    arg = f"--HubCollab.policies_dir={tmp_path}"
    collab.extra_args.append(arg)
    try:
        with pytest.raises(Exception):  # noqa: B017 - the start fails, the log says why
            collab.restart()
        assert "a p line has 6 fields" in collab.log_path.read_text()
    finally:
        collab.extra_args.remove(arg)
        collab.start()
