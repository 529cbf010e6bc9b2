"""Issue 3's classroom scenario, end to end through the real Hub, the proxy and Hub OAuth.

The recipe (what the instructor sets, as REST permission values):

* notebook: owner ``instructor``, group ``students``, mode ``1770`` — students may open
  it, insert cells and run them; the sticky bit (``1000``) means a student may delete or
  move only the cells they own; nobody else (``o=``) gets in.
* notebook ACL ``user:ta:rwx``: the teaching assistant works on the notebook as a whole.
* default cell mode ``0700`` with default ACL ``user:ta:rwx``: a new cell belongs to its
  creator (owner ``rwx``), its group entry (``students``) grants nothing — and a group
  entry that matches but does not grant *denies*, so the other students cannot even read
  it — the TA gets ``rwx`` through the named-user entry, and the instructor reads it
  because the notebook's owner reads every cell. So "each student adds an answer cell the
  other students cannot see and the instructor can" needs no per-cell work at all. The
  imported cells start with the same default, i.e. hidden until opened up.
* instruction cells: ``0750`` + ``user:ta:rwx`` (students ``r-x``: read and run, not edit).
* the solution cell keeps ``0700`` + ``user:ta:rwx``: hidden from students.
* handing a cell out to one student: add ``user:alice:rw-`` to its ACL; taking it back:
  remove the entry again.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hubfixtures import browser_login

from hub_collab.client import CollabAPIError, CollabClient, CommandError, NotebookConnection
from hub_collab.documents import protocol as p

pytestmark = pytest.mark.asyncio(loop_scope="module")

SOLUTION = "def mean(xs):\n    return sum(xs) / len(xs)  # solution-only-text"

CONTENT = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    },
    "cells": [
        {
            "id": "intro",
            "cell_type": "markdown",
            "metadata": {},
            "source": "# Lab 1\nWrite `mean`.",
        },
        {
            "id": "task",
            "cell_type": "code",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": "data = [1, 2, 3]",
        },
        {
            "id": "solution",
            "cell_type": "code",
            "metadata": {},
            "execution_count": 1,
            "outputs": [
                {"output_type": "stream", "name": "stdout", "text": "solution-only-output\n"}
            ],
            "source": SOLUTION,
        },
        {
            "id": "handout",
            "cell_type": "code",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": "# fill in",
        },
    ],
}
INSTRUCTION_CELLS = ["intro", "task", "handout"]
STUDENTS = ["alice", "bob", "carol"]


class Class:
    """Clients of everyone in the class, and their open connections."""

    def __init__(self, hub: Any, collab: Any) -> None:
        self.hub, self.collab = hub, collab
        self.clients: dict[str, CollabClient] = {}
        self.conns: dict[str, NotebookConnection] = {}
        self.nb_id = ""
        #: student -> the id of their answer cell
        self.answers: dict[str, str] = {}

    def client(self, user: str) -> CollabClient:
        if user not in self.clients:
            self.clients[user] = CollabClient(
                self.collab.public_url, self.hub.token(user), request_timeout=120
            )
        return self.clients[user]

    async def connect(self, user: str) -> NotebookConnection:
        conn = self.client(user).open(self.nb_id)
        await conn.connect()
        await conn.synced()
        self.conns[user] = conn
        return conn

    async def close(self) -> None:
        for conn in self.conns.values():
            await conn.close()
        for client in self.clients.values():
            client.close()


@pytest.fixture(scope="module")
async def klass(hub: Any, collab: Any) -> AsyncIterator[Class]:
    k = Class(hub, collab)
    teacher = k.client("instructor")
    nb = await teacher.create_notebook(
        "Lab 1",
        content=copy.deepcopy(CONTENT),
        group="students",
        mode="1770",
        default_cell_mode="0700",
    )
    k.nb_id = nb["id"]
    # the same steps through a browser session (Hub OAuth cookie + _xsrf), as the UI does them
    browser = browser_login(collab.public_url, "instructor")
    try:
        resp = browser.put(
            f"{collab.public_url}api/notebooks/{k.nb_id}/permissions",
            json={"acl": ["user:ta:rwx"], "default_acl": ["user:ta:rwx"]},
            headers=browser.xsrf_headers(),
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["default_cell_mode"] == "0700"
    finally:
        browser.close()
    for cid in INSTRUCTION_CELLS:
        await teacher.set_permissions(k.nb_id, cid, mode="0750", acl=["user:ta:rwx"])
    await teacher.set_permissions(k.nb_id, "solution", acl=["user:ta:rwx"])
    try:
        yield k
    finally:
        hub.reset_groups()
        await k.close()


async def test_setup_gives_each_role_its_rights(klass: Class) -> None:
    perms = await klass.client("instructor").get_permissions(klass.nb_id)
    assert perms["mode"] == "1770" and perms["group"] == "students"
    assert perms["acl"] == ["user:ta:rwx"] and perms["default_acl"] == ["user:ta:rwx"]
    for user in [*STUDENTS, "ta", "instructor"]:
        await klass.connect(user)
    for student in STUDENTS:
        caps = klass.conns[student].caps
        assert caps["notebook"] == "rwx"
        assert {c: caps["cells"][c] for c in INSTRUCTION_CELLS} == dict.fromkeys(
            INSTRUCTION_CELLS, "r-x"
        )
        assert caps["cells"]["solution"] == "---"
    assert klass.conns["ta"].caps["cells"] == dict.fromkeys(
        [*INSTRUCTION_CELLS[:2], "solution", "handout"], "rwx"
    )
    assert klass.conns["ta"].caps["notebook"] == "rwx"
    teacher = klass.conns["instructor"].caps
    assert teacher["owner"] is True and teacher["cells"]["solution"] == "rwx"


async def test_students_read_instructions_but_never_the_solution(klass: Class) -> None:
    alice = klass.conns["alice"]
    assert alice.source("intro") == CONTENT["cells"][0]["source"]
    assert alice.cell_ids() == ["intro", "task", "solution", "handout"]  # the index lists it ...
    assert "cell:solution" not in alice.docs and "out:solution" not in alice.docs  # ... no content
    # asking for it anyway: refused
    start = len(alice.messages)
    alice.send_raw(p.sync_step1("cell:solution", b"\x00") + p.sync_step1("out:solution", b"\x00"))
    await alice.sync()
    assert [(m["code"], m["doc"]) for m in alice.messages[start:] if m["type"] == "error"] == [
        ("forbidden", "cell:solution"),
        ("forbidden", "out:solution"),
    ]
    exported = await klass.client("alice").export(klass.nb_id)
    assert [c["id"] for c in exported["cells"]] == INSTRUCTION_CELLS
    assert "solution-only" not in json.dumps(exported)
    model = await klass.client("alice").get_notebook(klass.nb_id)
    assert {c["id"]: c["readable"] for c in model["cells"]} == {
        "intro": True,
        "task": True,
        "solution": False,
        "handout": True,
    }
    # the instructor and the TA read it, source and outputs
    for user in ("instructor", "ta"):
        conn = klass.conns[user]
        assert conn.source("solution") == SOLUTION
        assert conn.outputs("solution")[0]["text"] == "solution-only-output\n"


async def test_instruction_cells_are_read_only_for_students(klass: Class) -> None:
    alice, teacher = klass.conns["alice"], klass.conns["instructor"]
    start = len(alice.messages)
    alice.edit("intro", 0, insert="HACKED ")
    await alice.wait_for(
        lambda: any(
            m.get("type") == "resync" and m.get("doc") == "cell:intro"
            for m in alice.messages[start:]
        )
    )
    [err] = [m for m in alice.messages[start:] if m["type"] == "error"]
    assert err["code"] == "forbidden" and err["doc"] == "cell:intro"
    # she drops her copy and gets the server's back, without her edit
    await alice.wait_for(
        lambda: (
            "cell:intro" in alice.synced_docs
            and alice.source("intro") == CONTENT["cells"][0]["source"]
        )
    )
    await teacher.sync()
    assert teacher.source("intro") == CONTENT["cells"][0]["source"]
    for cmd in (
        lambda: alice.set_cell_type("intro", "raw"),
        lambda: alice.delete_cell("intro"),
        lambda: alice.move_cell("intro", 3),
    ):
        with pytest.raises(CommandError) as exc:
            await cmd()
        assert exc.value.code == "forbidden"
    assert teacher.cell_ids() == ["intro", "task", "solution", "handout"]
    assert [c["cell_type"] for c in teacher.cells()][0] == "markdown"


async def test_each_student_adds_an_answer_cell_only_they_and_the_staff_see(klass: Class) -> None:
    answers: dict[str, str] = {}
    for student in STUDENTS:
        conn = klass.conns[student]
        answers[student] = await conn.insert_cell(
            len(conn.cell_ids()), "code", f"# answer of {student}"
        )
    teacher, ta = klass.conns["instructor"], klass.conns["ta"]
    for staff in (teacher, ta):
        await staff.wait_for(
            lambda staff=staff: all(f"cell:{c}" in staff.synced_docs for c in answers.values()),
            timeout=30,
        )
        assert {s: staff.source(c) for s, c in answers.items()} == {
            s: f"# answer of {s}" for s in STUDENTS
        }
    perms = await klass.client("instructor").get_permissions(klass.nb_id, answers["bob"])
    assert perms == {"owner": "bob", "group": "students", "mode": "0700", "acl": ["user:ta:rwx"]}
    for student in STUDENTS:
        conn = klass.conns[student]
        await conn.wait_for(lambda conn=conn: all(c in conn.cell_ids() for c in answers.values()))
        for other, cid in answers.items():
            if other == student:
                assert (
                    conn.caps["cells"][cid] == "rwx"
                    and conn.source(cid) == f"# answer of {student}"
                )
            else:
                assert conn.caps["cells"][cid] == "---"
                assert f"cell:{cid}" not in conn.docs
        exported = await klass.client(student).export(klass.nb_id)
        assert [c["id"] for c in exported["cells"]] == [*INSTRUCTION_CELLS, answers[student]]
    # the TA comments in bob's answer; bob sees it, alice still does not
    ta.edit(answers["bob"], 0, insert="# TA: good start\n")
    bob = klass.conns["bob"]
    await bob.wait_for(lambda: bob.source(answers["bob"]).startswith("# TA: good start\n"))
    assert f"cell:{answers['bob']}" not in klass.conns["alice"].docs
    klass.answers = answers


async def test_students_cannot_delete_or_move_others_cells(klass: Class) -> None:
    answers = klass.answers
    bob, teacher = klass.conns["bob"], klass.conns["instructor"]
    before = teacher.cell_ids()
    for target in (answers["alice"], "task", "solution"):
        for cmd in (lambda t=target: bob.delete_cell(t), lambda t=target: bob.move_cell(t, 0)):
            with pytest.raises(CommandError) as exc:
                await cmd()
            assert exc.value.code == "forbidden"
    assert teacher.cell_ids() == before
    # his own: he may (sticky bit: owning the cell is enough)
    scratch = await bob.insert_cell(0, "markdown", "scratch")
    await bob.move_cell(scratch, 1)
    await bob.delete_cell(scratch)
    await teacher.wait_for(lambda: teacher.cell_ids() == before)
    # the TA (notebook rwx, but not the owner of the cell) is held to the sticky bit too
    with pytest.raises(CommandError) as exc:
        await klass.conns["ta"].delete_cell(answers["alice"])
    assert exc.value.code == "forbidden"
    # the notebook's owner may remove anything
    extra = await bob.insert_cell(len(before), "code", "to be removed by the instructor")
    await teacher.wait_for(lambda: extra in teacher.cell_ids())
    await teacher.delete_cell(extra)
    await bob.wait_for(lambda: extra not in bob.cell_ids())


async def test_ta_has_rwx_through_the_acl(klass: Class) -> None:
    ta, alice = klass.conns["ta"], klass.conns["alice"]
    assert (
        "staff" in ta.welcome["user"]["groups"] and "students" not in ta.welcome["user"]["groups"]
    )
    ta.edit("task", len(ta.source("task")), insert="\nlabels = ['a', 'b', 'c']")
    await alice.wait_for(lambda: alice.source("task").endswith("labels = ['a', 'b', 'c']"))
    ta.edit("solution", 0, insert="# reviewed\n")
    teacher = klass.conns["instructor"]
    await teacher.wait_for(lambda: teacher.source("solution").startswith("# reviewed\n"))
    assert "cell:solution" not in alice.docs
    cid = await ta.insert_cell(0, "markdown", "TA note")
    perms = await klass.client("ta").get_permissions(klass.nb_id, cid)
    assert perms["owner"] == "ta" and perms["mode"] == "0700"
    await ta.delete_cell(cid)  # its own cell
    await teacher.wait_for(lambda: cid not in teacher.cell_ids())
    # but the TA is not the owner: no chmod on the notebook or on the instructor's cells
    ta_api = klass.client("ta")
    for call in (
        lambda: ta_api.set_permissions(klass.nb_id, mode="0777"),
        lambda: ta_api.set_permissions(klass.nb_id, "solution", mode="0777"),
    ):
        with pytest.raises(CollabAPIError) as err:
            await call()
        assert err.value.status == 403 and err.value.code == "forbidden"


async def test_hand_out_a_cell_and_take_it_back_while_connected(klass: Class) -> None:
    teacher_api = klass.client("instructor")
    alice, bob, teacher = klass.conns["alice"], klass.conns["bob"], klass.conns["instructor"]
    # hand it out
    caps_seen = len(alice.messages)
    await teacher_api.set_permissions(klass.nb_id, "handout", acl=["user:ta:rwx", "user:alice:rw-"])
    await alice.wait_for(lambda: alice.caps["cells"]["handout"] == "rw-")
    assert any(m["type"] == "caps" for m in alice.messages[caps_seen:])
    alice.edit("handout", len(alice.source("handout")), insert="\nresult = mean(data)")
    await teacher.wait_for(lambda: teacher.source("handout").endswith("result = mean(data)"))
    await bob.wait_for(lambda: bob.source("handout").endswith("result = mean(data)"))
    assert bob.caps["cells"]["handout"] == "r-x"
    start = len(bob.messages)
    bob.edit("handout", 0, insert="bob was here ")
    await bob.wait_for(lambda: any(m["type"] == "resync" for m in bob.messages[start:]))
    assert [m["code"] for m in bob.messages[start:] if m["type"] == "error"] == ["forbidden"]

    # take it back while she is connected: she is told (caps) ...
    start = len(alice.messages)
    await teacher_api.set_permissions(klass.nb_id, "handout", acl=["user:ta:rwx"])
    await alice.wait_for(lambda: alice.caps["cells"]["handout"] == "r-x")
    [caps] = [m for m in alice.messages[start:] if m["type"] == "caps"]
    assert caps["cells"]["handout"] == "r-x" and caps["notebook"] == "rwx"
    # ... she still reads it, and her next edit is refused: forbidden, then resync
    assert "cell:handout" in alice.docs
    server_copy = teacher.source("handout")
    start = len(alice.messages)
    alice.edit("handout", len(alice.source("handout")), insert="\nprint('too late')")
    await alice.wait_for(
        lambda: any(
            m["type"] == "resync" and m["doc"] == "cell:handout" for m in alice.messages[start:]
        )
    )
    errors = [m for m in alice.messages[start:] if m["type"] == "error"]
    assert [(e["code"], e["doc"]) for e in errors] == [("forbidden", "cell:handout")]
    await alice.wait_for(
        lambda: "cell:handout" in alice.synced_docs and alice.source("handout") == server_copy
    )
    await teacher.sync()
    await bob.sync()
    assert teacher.source("handout") == server_copy == bob.source("handout")
    assert "too late" not in (await teacher_api.export(klass.nb_id))["cells"][3]["source"]
    audit = await teacher_api.request("GET", f"api/notebooks/{klass.nb_id}/audit")
    changes = [e for e in audit["events"] if e["target"] == "cell:handout"]
    assert any("user:alice:rw-" in e["detail"]["new"]["acl"] for e in changes)
    assert any(
        "user:alice:rw-" in e["detail"]["old"]["acl"]
        and e["detail"]["new"]["acl"] == ["user:ta:rwx"]
        for e in changes
    )


async def test_chown_hands_out_a_cell_too(klass: Class) -> None:
    """The other way to hand out: chown to the student, and back."""
    teacher_api = klass.client("instructor")
    alice, teacher = klass.conns["alice"], klass.conns["instructor"]
    await teacher_api.set_permissions(klass.nb_id, "task", owner="alice")
    await alice.wait_for(lambda: alice.caps["cells"]["task"] == "rwx")
    alice.edit("task", 0, insert="# mine now\n")
    await teacher.wait_for(lambda: teacher.source("task").startswith("# mine now\n"))
    # as the cell's owner she may chmod it, but never chown it away
    with pytest.raises(CollabAPIError) as err:
        await klass.client("alice").set_permissions(klass.nb_id, "task", owner="bob")
    assert err.value.status == 403
    await teacher_api.set_permissions(klass.nb_id, "task", owner="instructor")
    await alice.wait_for(lambda: alice.caps["cells"]["task"] == "r-x")
    start = len(alice.messages)
    alice.edit("task", 0, insert="# still mine?\n")
    await alice.wait_for(
        lambda: any(
            m["type"] == "resync" and m["doc"] == "cell:task" for m in alice.messages[start:]
        )
    )
    assert [m["code"] for m in alice.messages[start:] if m["type"] == "error"] == ["forbidden"]
    await teacher.sync()
    assert not teacher.source("task").startswith("# still mine?")


async def test_hub_group_change_reaches_an_open_connection(klass: Class, hub: Any) -> None:
    answers = klass.answers
    carol, ta = klass.conns["carol"], klass.conns["ta"]
    assert "cell:intro" in carol.docs
    start = len(carol.messages)
    hub.remove_from_group("students", "carol")
    try:
        # the service refreshes groups every second in the tests
        await carol.wait_for(lambda: carol.caps.get("notebook") == "---", timeout=60)
        caps = [m for m in carol.messages[start:] if m["type"] == "caps"]
        assert caps and caps[-1]["cells"] == {}
        assert not any(name.startswith(("cell:", "out:")) for name in carol.docs)
        # nothing flows to her any more: an edit by the TA reaches alice, not carol
        frames = carol.frames_received
        ta.edit("intro", len(ta.source("intro")), insert="\nDeadline: Friday")
        alice = klass.conns["alice"]
        await alice.wait_for(lambda: alice.source("intro").endswith("Deadline: Friday"))
        await carol.sync()
        assert carol.frames_received == frames + 1  # the ack of her own sync only
        # her own writes are refused, REST is a 404, a new connection is refused
        with pytest.raises(CommandError) as exc:
            await carol.insert_cell(0, "code", "x")
        assert exc.value.code == "forbidden"
        with pytest.raises(CollabAPIError) as err:
            await klass.client("carol").get_notebook(klass.nb_id)
        assert err.value.status == 404
        conn = klass.client("carol").open(klass.nb_id)
        with pytest.raises(Exception, match="404"):
            await conn.connect()
        me = await klass.client("carol").me()
        assert "students" not in me["groups"]
    finally:
        hub.add_to_group("students", "carol")
    # back in the group: caps again, and she can subscribe to what she may read
    await carol.wait_for(lambda: carol.caps.get("notebook") == "rwx", timeout=30)
    carol.subscribe("cell:intro")
    await carol.wait_for(lambda: "cell:intro" in carol.synced_docs)
    assert carol.source("intro").endswith("Deadline: Friday")
    assert carol.caps["cells"][answers["carol"]] == "rwx"
    # the index was revoked with the notebook: subscribing to it again brings it up to date
    carol.send_raw(p.sync_step1("index", carol.docs["index"].get_state()))
    cid = await ta.insert_cell(0, "markdown", "welcome back")
    await carol.wait_for(lambda: cid in carol.cell_ids(), timeout=30)
    await ta.delete_cell(cid)
    await carol.wait_for(lambda: cid not in carol.cell_ids(), timeout=30)


async def test_client_library_follows_losing_and_regaining_the_notebook(
    klass: Class, hub: Any
) -> None:
    """hub_collab.client drops ``index`` when notebook r goes and subscribes again when it
    comes back (``caps`` is the signal; the server stops sending ``index`` meanwhile)."""
    carol, ta = klass.conns["carol"], klass.conns["ta"]
    hub.remove_from_group("students", "carol")
    try:
        await carol.wait_for(lambda: carol.caps.get("notebook") == "---", timeout=30)
        assert "index" not in carol.docs, "the client kept a copy of the revoked index"
    finally:
        hub.add_to_group("students", "carol")
    await carol.wait_for(lambda: carol.caps.get("notebook") == "rwx", timeout=30)
    cid = await ta.insert_cell(0, "markdown", "welcome back again")
    await carol.wait_for(lambda: cid in carol.cell_ids(), timeout=30)
    await ta.delete_cell(cid)
