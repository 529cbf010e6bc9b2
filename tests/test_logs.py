"""Logs for a log collector: ``--HubCollab.log_format=json`` (the session's service,
restarted with it for this module and restored after).

Every line the service writes is one JSON object with timestamp, level, logger and
message; a request's lines carry its request id and user (the id is the response's
``X-Request-Id``); audit entries are lines of ``hub_collab.audit`` with actor, action,
target and notebook; a local kernel's own output stays out of the log. The text format
logs audit lines too (the first test, before the restart).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import requests
from hubfixtures import CollabService, Hub, wait_until

from hub_collab.client import CollabClient

JSON_ARGS = ["--HubCollab.log_format=json", "--log-level=INFO"]


@pytest.fixture(scope="module")
def json_collab(collab: CollabService) -> Iterator[CollabService]:
    saved = list(collab.extra_args)
    collab.extra_args = [*saved, *JSON_ARGS]
    collab.restart()
    try:
        yield collab
    finally:
        collab.extra_args = saved
        collab.restart()


def run_lines(collab: CollabService) -> list[str]:
    """The lines the service wrote since its last start (the fixture marks each start
    with a ``--- start`` line of its own)."""
    text = collab.log_path.read_text(errors="replace")
    return text.rsplit("\n--- start ", 1)[1].split("\n", 1)[1].splitlines()


def records(collab: CollabService) -> list[dict[str, Any]]:
    out = []
    for n, line in enumerate(run_lines(collab), 1):
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"log line {n} is not JSON: {line!r}") from None
        assert isinstance(record, dict), line
        out.append(record)
    return out


def auth(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"token {token}", **extra}


def test_audit_lines_in_the_text_format(hub: Hub, collab: CollabService) -> None:
    """First in this module, before the JSON restart: text audit lines are one line each,
    whatever the log level (the session's service runs at the default, WARNING), with
    every value quoted as JSON (a value cannot forge a field or a line)."""
    resp = requests.post(collab.public_url + "api/notebooks", json={"name": 'text "audit"'}, headers=auth(hub.token("carol")), timeout=60)
    assert resp.status_code == 201, resp.text
    nb_id = resp.json()["id"]
    want = f'[hub_collab.audit] audit actor="carol" action="create" target="notebook" notebook="{nb_id}" detail={{"name":"text \\"audit\\"","cells":0}}'
    wait_until(lambda: want in run_lines(collab), what="the audit line", on_timeout=collab.tail)
    assert not any(line.startswith("audit") for line in run_lines(collab))


def rest_actions(hub: Hub, collab: CollabService) -> dict[str, Any]:
    """Create (audit), chmod a cell (audit), a refused request, an upstream request id
    and a hostile one; what the checks need to know."""
    alice_token = hub.token("alice")
    created = requests.post(
        collab.public_url + "api/notebooks",
        json={
            "name": 'logs "quoted"',
            "group": "students",
            "content": {
                "nbformat": 4,
                "nbformat_minor": 5,
                "metadata": {},
                "cells": [{"id": "c1", "cell_type": "code", "metadata": {}, "source": "print('hi')", "outputs": [], "execution_count": None}],
            },
        },
        headers=auth(alice_token),
        timeout=60,
    )
    assert created.status_code == 201, created.text
    nb_id = created.json()["id"]
    create_rid = created.headers["X-Request-Id"]
    chmod = requests.put(
        collab.public_url + f"api/notebooks/{nb_id}/cells/c1/permissions",
        json={"mode": "0700"},
        headers=auth(alice_token, **{"X-Request-Id": "ingress-0123456789"}),
        timeout=60,
    )
    assert chmod.status_code == 200, chmod.text
    assert chmod.headers["X-Request-Id"] == "ingress-0123456789"
    refused = requests.get(collab.public_url + f"api/notebooks/{nb_id}", headers=auth(hub.token("dave")), timeout=60)
    assert refused.status_code == 404
    assert refused.headers["X-Request-Id"]
    # a hostile request id is replaced, not logged
    odd = requests.get(collab.public_url + "api/me", headers=auth(alice_token, **{"X-Request-Id": '"forged" id with spaces'}), timeout=60)
    assert odd.status_code == 200 and "forged" not in odd.headers["X-Request-Id"]
    # a handler that is not the service's own (tornado's static files) gets an id in its line too
    assert requests.get(collab.public_url + "static/no-such-file.js", timeout=60).status_code == 404
    return {"nb": nb_id, "create_rid": create_rid, "refused_rid": refused.headers["X-Request-Id"]}


async def test_every_line_is_json_with_request_ids_users_and_audit(hub: Hub, json_collab: CollabService) -> None:
    collab = json_collab
    alice_token = hub.token("alice")
    done = await asyncio.to_thread(rest_actions, hub, collab)
    nb_id, create_rid = done["nb"], done["create_rid"]
    # WebSocket: an edit and an execution (audit), on a local kernel
    client = CollabClient(collab.public_url, alice_token)
    try:
        async with client.open(nb_id) as conn:
            await conn.synced()
            conn.edit("c1", 0, insert="# logged\n")
            await conn.execute("c1")
            assert (await conn.wait_executed("c1"))["status"] == "ok"
            await conn.shutdown_kernel()
    finally:
        client.close()

    def audited() -> list[dict[str, Any]]:
        lines = [r for r in records(collab) if r["logger"] == "hub_collab.audit" and r.get("notebook") == nb_id]
        assert {r["action"] for r in lines} >= {"create", "chmod", "execute", "shutdown"}, lines
        return lines

    audit = wait_until(audited, what="the audit lines", on_timeout=collab.tail)
    everything = records(collab)
    for r in everything:
        assert {"timestamp", "level", "logger", "message"} <= set(r), r
        datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00"))
        assert r["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), r
        assert "Traceback" not in r["message"] and "exc_info" not in r, r
    # audit lines: who did what to what, in which notebook
    for r in audit:
        assert r["actor"] == "alice" and r["level"] == "INFO", r
        assert isinstance(r["detail"], dict) and r["target"], r
    by_action = {r["action"]: r for r in audit}
    assert by_action["create"]["target"] == "notebook" and by_action["create"]["detail"] == {"name": 'logs "quoted"', "cells": 1}
    assert by_action["create"]["request_id"] == create_rid
    assert by_action["chmod"]["target"] == "cell:c1" and by_action["chmod"]["request_id"] == "ingress-0123456789"
    assert by_action["execute"]["target"] == "cell:c1" and by_action["execute"]["detail"]["status"] == "ok"
    # request lines: method, path, status, request id and user
    access = [r for r in everything if r["logger"] == "tornado.access"]
    assert access and all(r.get("request_id") and "status" in r and "path" in r for r in access), access
    post = next(r for r in access if r["method"] == "POST" and r["path"].endswith("/api/notebooks"))
    assert post["status"] == 201 and post["user"] == "alice" and post["request_id"] == create_rid
    put = next(r for r in access if r["method"] == "PUT")
    assert put["request_id"] == "ingress-0123456789" and put["user"] == "alice" and put["notebook"] == nb_id
    denied = next(r for r in access if r["status"] == 404 and r["path"].endswith(nb_id))
    assert denied["level"] == "WARNING" and denied["user"] == "dave" and denied["request_id"] == done["refused_rid"]
    assert any(r["path"].endswith("/static/no-such-file.js") for r in access)
    upgrade = next(r for r in access if r["status"] == 101)
    assert upgrade["user"] == "alice" and upgrade["notebook"] == nb_id
    assert not any("forged" in (r.get("request_id") or "") for r in everything)
    # the kernel's lines carry its notebook (and no request's id: it outlives the request)
    started = next(r for r in everything if r["logger"] == "hub_collab.kernels" and r["message"].startswith("started kernel"))
    assert started["notebook"] == nb_id and "request_id" not in started
    # the local kernel's own start-up notes went to a file, not into this log
    assert not any("Ctrl-C will not work" in r["message"] for r in everything)
