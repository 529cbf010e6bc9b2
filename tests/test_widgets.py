"""Shared ipywidgets, against a real Hub, the real service and real ipykernels with ipywidgets.

The service is the widgets' front end: the models live in the cells' ``out:`` docs
(docs/widgets.md). One notebook, owned by ``instructor``, group ``students`` (alice,
bob, carol) with rwx; its kernel is shared inside the module.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
from test_kernel_faults import stop_only_the_service
from test_kernels import Users, connect, make_notebook, notebook, text_of

from hub_collab.client import CommandError, NotebookConnection

pytestmark = pytest.mark.asyncio(loop_scope="module")

INTERACT = """\
import ipywidgets as w
from ipywidgets import interact

@interact(x=w.IntSlider(value=3, min=0, max=100, description='x'))
def square(x):
    print('square', x * x)
"""
BUTTON = """\
clicks = []
b = w.Button(description='go')
b.on_click(lambda _: clicks.append(get_ipython().kernel.get_parent()["header"]["username"]))
b
"""
COUNT = "print('clicks', clicks)"
VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
LOCKED = "locked = w.IntSlider(value=7)\nlocked"


@pytest.fixture(scope="module")
async def users(hub: Any, collab: Any) -> AsyncIterator[Users]:
    u = Users(hub, collab)
    yield u
    u.close()


@pytest.fixture(scope="module")
async def nb(users: Users) -> AsyncIterator[str]:
    nb_id = await make_notebook(users, INTERACT, BUTTON, COUNT, LOCKED, name="widgets")
    await users("instructor").set_permissions(nb_id, "c3", mode="0764")  # group rw-: no x
    yield nb_id
    await users("instructor").request("DELETE", f"api/notebooks/{nb_id}/kernel")


def model(conn: NotebookConnection, cid: str, name: str) -> tuple[str, dict[str, Any]]:
    """The (model id, state) of the only model named ``name`` in cell ``cid``."""
    found = [(k, m["state"]) for k, m in conn.widgets(cid).items() if m["model_name"] == name]
    assert len(found) == 1, conn.widgets(cid)
    return found[0]


def has_model(conn: NotebookConnection, cid: str, name: str) -> bool:
    return any(m["model_name"] == name for m in conn.widgets(cid).values())


def views_of(conn: NotebookConnection, cid: str) -> list[dict[str, Any]]:
    return [o["data"][VIEW] for o in conn.outputs(cid) if VIEW in o.get("data", {})]


def output_text(state: dict[str, Any]) -> str:
    return "".join(o.get("text", "") for o in state.get("outputs") or [] if o.get("output_type") == "stream")


@contextlib.asynccontextmanager
async def opened(users: Users, user: str, nb_id: str) -> AsyncIterator[NotebookConnection]:
    conn = await connect(users, user, nb_id)
    try:
        yield conn
    finally:
        await conn.close()


async def run(conn: NotebookConnection, cid: str) -> None:
    await conn.execute(cid)
    state = await conn.wait_executed(cid, timeout=90)
    assert state["status"] == "ok", conn.outputs(cid)


async def test_interact_shared_live_and_for_late_joiners(users: Users, nb: str) -> None:
    alice, bob = await connect(users, "alice", nb), await connect(users, "bob", nb)
    try:
        await run(alice, "c0")
        await bob.wait_for(lambda: has_model(bob, "c0", "IntSliderModel") and has_model(bob, "c0", "OutputModel"), timeout=30)
        slider_id, slider = model(bob, "c0", "IntSliderModel")
        assert slider["value"] == 3 and slider["max"] == 100
        # the view output names the interact box; its children are models of the same cell
        await bob.wait_for(lambda: bool(views_of(bob, "c0")), timeout=30)
        views = views_of(bob, "c0")
        box_id = views[0]["model_id"]
        assert bob.widgets("c0")[box_id]["model_name"] == "VBoxModel"
        await bob.wait_for(lambda: f"IPY_MODEL_{slider_id}" in bob.widgets("c0")[box_id]["state"]["children"], timeout=30)
        # the initial call's print went into the Output widget, not the cell
        await bob.wait_for(lambda: output_text(model(bob, "c0", "OutputModel")[1]) == "square 9\n", timeout=30)
        assert text_of(bob.outputs("c0")) == ""
        # bob moves the slider: the kernel runs the function again, alice sees both
        await bob.widget_update("c0", slider_id, {"value": 12})
        await alice.wait_for(lambda: model(alice, "c0", "IntSliderModel")[1]["value"] == 12, timeout=30)
        await alice.wait_for(lambda: output_text(model(alice, "c0", "OutputModel")[1]) == "square 144\n", timeout=30)
    finally:
        await alice.close()
        await bob.close()
    carol = await connect(users, "carol", nb)  # joins later: the current value and output
    try:
        assert model(carol, "c0", "IntSliderModel")[1]["value"] == 12
        assert output_text(model(carol, "c0", "OutputModel")[1]) == "square 144\n"
    finally:
        await carol.close()


async def test_a_button_click_reaches_the_kernel(users: Users, nb: str) -> None:
    alice = await connect(users, "alice", nb)
    try:
        await run(alice, "c1")
        await alice.wait_for(lambda: has_model(alice, "c1", "ButtonModel"), timeout=30)
        button_id, _ = model(alice, "c1", "ButtonModel")
        for _ in range(2):
            await alice.command("widget_custom", cell_id="c1", model_id=button_id, content={"event": "click"})
        # the kernel knows who clicked: the comm_msg's header names the user
        await run(alice, "c2")
        assert text_of(alice.outputs("c2")) == "clicks ['alice', 'alice']\n"
    finally:
        await alice.close()


async def test_the_kernels_answer_wins(users: Users, nb: str) -> None:
    """The kernel clamps a value past ``max``; its update is what everyone sees."""
    async with opened(users, "bob", nb) as bob:
        slider_id, _ = model(bob, "c0", "IntSliderModel")
        await bob.widget_update("c0", slider_id, {"value": 1000})
        await bob.wait_for(lambda: model(bob, "c0", "IntSliderModel")[1]["value"] == 100, timeout=30)
        await bob.wait_for(lambda: output_text(model(bob, "c0", "OutputModel")[1]) == "square 10000\n", timeout=30)


async def test_bad_widget_messages_reach_no_kernel(users: Users, nb: str) -> None:
    alice = await connect(users, "alice", nb)
    try:
        slider_id, before = model(alice, "c0", "IntSliderModel")
        button_id, _ = model(alice, "c1", "ButtonModel")
        cases: list[tuple[dict[str, Any], str]] = [
            ({"cell_id": "c0", "model_id": slider_id, "state": "12"}, "invalid_command"),
            ({"cell_id": "c0", "model_id": 5, "state": {"value": 1}}, "invalid_command"),
            ({"cell_id": "c0", "model_id": "x" * 65, "state": {"value": 1}}, "invalid_command"),
            ({"cell_id": "c0", "model_id": slider_id, "state": {}}, "invalid_command"),
            ({"model_id": slider_id, "state": {"value": 1}}, "invalid_command"),
            ({"cell_id": "nope", "model_id": slider_id, "state": {"value": 1}}, "unknown_cell"),
            # forged: an unknown comm id, a model of another cell, keys the model has not
            ({"cell_id": "c0", "model_id": "0" * 32, "state": {"value": 1}}, "unknown_widget"),
            ({"cell_id": "c1", "model_id": slider_id, "state": {"value": 1}}, "unknown_widget"),
            ({"cell_id": "c0", "model_id": slider_id, "state": {"_model_name": "Evil"}}, "invalid_widget_state"),
            ({"cell_id": "c0", "model_id": slider_id, "state": {"exec": "import os"}}, "invalid_widget_state"),
            # oversized
            ({"cell_id": "c0", "model_id": slider_id, "state": {"description": "x" * 70_000}}, "too_large"),
        ]
        for fields, code in cases:
            with pytest.raises(CommandError) as err:
                await alice.command("widget_update", **fields)
            assert err.value.code == code, (fields if len(json.dumps(fields)) < 200 else code, err.value)
        with pytest.raises(CommandError) as err:
            await alice.command("widget_custom", cell_id="c1", model_id=button_id, content={"x": "y" * 70_000})
        assert err.value.code == "too_large"
        with pytest.raises(CommandError) as err:
            await alice.command("widget_custom", cell_id="c1", model_id=button_id, content=[1])
        assert err.value.code == "invalid_command"
        # nothing reached the kernel: the value and the output are what they were
        await run(alice, "c2")
        assert text_of(alice.outputs("c2")) == "clicks ['alice', 'alice']\n"
        _, after = model(alice, "c0", "IntSliderModel")
        assert after["value"] == before["value"] and after["description"] == before["description"]
    finally:
        await alice.close()


COUNTED = """\
got = []
n = w.IntText(value=-1)
n.observe(lambda ch: got.append(ch['new']), 'value')
n
"""


async def test_a_flood_is_rate_limited_and_what_is_refused_reaches_no_kernel(users: Users) -> None:
    nb_id = await make_notebook(users, f"import ipywidgets as w\n{COUNTED}", "print(got)", "from comm import create_comm\ncreate_comm(target_name='not.a.widget', data={'state': {'_model_name': 'IntSliderModel', 'value': 1}})\nprint('opened')", name="widgets-flood")
    try:
        async with opened(users, "alice", nb_id) as alice:
            await run(alice, "c0")
            await alice.wait_for(lambda: has_model(alice, "c0", "IntTextModel"), timeout=30)
            text_id, _ = model(alice, "c0", "IntTextModel")
            # 80 changes at once, one after the other on the socket: more than the burst of
            # 30 (and the 30 a second that refill it) however slow the machine
            answers = await asyncio.gather(*(alice.widget_update("c0", text_id, {"value": i}) for i in range(80)), return_exceptions=True)
            codes = [a.code for a in answers if isinstance(a, CommandError)]
            assert all(isinstance(a, (dict, CommandError)) for a in answers), answers
            taken = [i for i, a in enumerate(answers) if not isinstance(a, BaseException)]
            assert codes and set(codes) == {"rate_limited"}, codes
            assert taken
            # the kernel heard exactly the changes that were taken, in order
            await run(alice, "c1")
            assert text_of(alice.outputs("c1")) == f"{taken}\n"
            # a comm the kernel opens for another target is no widget: nothing is kept of it
            await run(alice, "c2")
            assert text_of(alice.outputs("c2")) == "opened\n"
            assert alice.widgets("c2") == {}
    finally:
        await users("instructor").request("DELETE", f"api/notebooks/{nb_id}/kernel")


async def test_who_may_not_execute_the_cell_may_not_change_its_widget(users: Users, nb: str) -> None:
    instructor = await connect(users, "instructor", nb)
    bob = await connect(users, "bob", nb)
    try:
        await run(instructor, "c3")
        await bob.wait_for(lambda: has_model(bob, "c3", "IntSliderModel"), timeout=30)
        locked_id, _ = model(bob, "c3", "IntSliderModel")  # bob may read it...
        with pytest.raises(CommandError) as err:
            await bob.widget_update("c3", locked_id, {"value": 50})
        assert err.value.code == "forbidden"  # ...not change it
        assert model(bob, "c3", "IntSliderModel")[1]["value"] == 7
        await instructor.widget_update("c3", locked_id, {"value": 50})
        await bob.wait_for(lambda: model(bob, "c3", "IntSliderModel")[1]["value"] == 50, timeout=30)
    finally:
        await instructor.close()
        await bob.close()


async def test_rerun_and_restart_drop_the_old_models(users: Users, nb: str) -> None:
    alice = await connect(users, "alice", nb)
    try:
        old_id, _ = model(alice, "c0", "IntSliderModel")
        await run(alice, "c0")
        await alice.wait_for(lambda: has_model(alice, "c0", "IntSliderModel") and old_id not in alice.widgets("c0"), timeout=30)
        new_id, state = model(alice, "c0", "IntSliderModel")
        assert new_id != old_id and state["value"] == 3
        with pytest.raises(CommandError) as err:
            await alice.widget_update("c0", old_id, {"value": 5})
        assert err.value.code == "unknown_widget"
        await alice.command("restart", timeout=120)
        await alice.wait_for(lambda: not alice.widgets("c0") and not alice.widgets("c1"), timeout=30)
        with pytest.raises(CommandError) as err:
            await alice.widget_update("c0", new_id, {"value": 5})
        assert err.value.code == "unknown_widget"
    finally:
        await alice.close()


async def test_an_output_widget_keeps_a_flood_whole(users: Users) -> None:
    """20,000 prints into an Output widget arrive whole, as one stream output, batched."""
    nb_id = await make_notebook(
        users, "import ipywidgets as w\nout = w.Output()\ndisplay(out)\nwith out:\n    for i in range(20000):\n        print(i)", name="widgets-flood"
    )
    try:
        async with opened(users, "alice", nb_id) as alice:
            await run(alice, "c0")
            expected = "".join(f"{i}\n" for i in range(20000))
            await alice.wait_for(lambda: has_model(alice, "c0", "OutputModel") and output_text(model(alice, "c0", "OutputModel")[1]) == expected, timeout=60)
            assert len(model(alice, "c0", "OutputModel")[1]["outputs"]) == 1
            assert text_of(alice.outputs("c0")) == ""
    finally:
        await users("instructor").request("DELETE", f"api/notebooks/{nb_id}/kernel")


async def test_per_user_kernels_keep_widgets_per_user(users: Users) -> None:
    nb_id = await make_notebook(users, INTERACT, name="widgets-per-user")
    await users("instructor").request("PUT", f"api/notebooks/{nb_id}/settings", {"kernel_mode": "per-user"})
    try:
        async with opened(users, "alice", nb_id) as alice, opened(users, "bob", nb_id) as bob:
            await run(alice, "c0")
            await alice.wait_for(lambda: has_model(alice, "c0", "IntSliderModel"), timeout=30)
            slider_id, _ = model(alice, "c0", "IntSliderModel")
            assert bob.widgets("c0") == {}  # alice's kernel, alice's widgets
            with pytest.raises(CommandError) as err:
                await bob.widget_update("c0", slider_id, {"value": 50})
            assert err.value.code == "unknown_widget"
            await run(bob, "c0")
            await bob.wait_for(lambda: has_model(bob, "c0", "IntSliderModel"), timeout=30)
            bob_slider, _ = model(bob, "c0", "IntSliderModel")
            await bob.widget_update("c0", bob_slider, {"value": 4})
            await bob.wait_for(lambda: output_text(model(bob, "c0", "OutputModel")[1]) == "square 16\n", timeout=30)
            await alice.widget_update("c0", slider_id, {"value": 5})
            await alice.wait_for(lambda: output_text(model(alice, "c0", "OutputModel")[1]) == "square 25\n", timeout=30)
            assert model(bob, "c0", "IntSliderModel")[1]["value"] == 4
            assert output_text(model(bob, "c0", "OutputModel")[1]) == "square 16\n"
    finally:
        for user in ("alice", "bob"):
            await users(user).request("DELETE", f"api/notebooks/{nb_id}/kernel")


TEXT = "t = w.Textarea(value='a')\nt2 = w.Text(value='')\nw.VBox([t, t2])"


async def test_a_kernel_and_a_notebook_hold_at_most_their_bounds_of_widget_state(users: Users, collab: Any) -> None:
    """Per-user kernels: each user's kernels have their bound (one user cannot take the
    others' share), all the notebook's kernels together have theirs. A client's change
    past either is refused with ``too_large`` and says which; a kernel's update or new
    model past either is not kept. A kernel that goes gives its share back."""
    # A model's state is a few KB (its layout and style are models too): the bounds
    # leave room for one 20,000-character value per kernel, and for one in the notebook
    # beside another kernel's models
    flags = ["--HubCollab.widget_max_state_bytes=30000", "--HubCollab.widget_max_notebook_state_bytes=35000"]
    collab.extra_args.extend(flags)
    collab.restart()
    try:
        nb_id = await make_notebook(users, f"import ipywidgets as w\n{TEXT}", "t.value = 'z' * 20000\nt2.value = 'done'", "t.value = 'ok'", "w.Textarea(value='q' * 20000)", name="widgets-bounds")
        await users("instructor").request("PUT", f"api/notebooks/{nb_id}/settings", {"kernel_mode": "per-user"})
        async with opened(users, "alice", nb_id) as alice, opened(users, "bob", nb_id) as bob:
            await run(alice, "c0")
            await alice.wait_for(lambda: has_model(alice, "c0", "TextareaModel"), timeout=30)
            text_id, _ = model(alice, "c0", "TextareaModel")
            with pytest.raises(CommandError) as err:
                await alice.widget_update("c0", text_id, {"value": "x" * 40000})
            assert (err.value.code, str(err.value)) == ("too_large", "too_large: the widgets of your kernels in this notebook would exceed 30000 bytes")
            await alice.widget_update("c0", text_id, {"value": "x" * 20000})
            assert model(alice, "c0", "TextareaModel")[1]["value"] == "x" * 20000

            await run(bob, "c0")
            await bob.wait_for(lambda: has_model(bob, "c0", "TextareaModel"), timeout=30)
            bob_text, _ = model(bob, "c0", "TextareaModel")
            with pytest.raises(CommandError) as err:
                await bob.widget_update("c0", bob_text, {"value": "y" * 20000})  # his kernel has room, the notebook not
            assert (err.value.code, str(err.value)) == ("too_large", "too_large: the widgets of the notebook's kernels would exceed 35000 bytes")
            await bob.widget_update("c0", bob_text, {"value": "y" * 100})
            # the kernel's own update past the notebook's bound is not kept (the next change
            # of another model is written after it, in the same flush or a later one); the
            # next one that fits is
            await run(bob, "c1")
            await bob.wait_for(lambda: model(bob, "c0", "TextModel")[1]["value"] == "done", timeout=30)
            assert model(bob, "c0", "TextareaModel")[1]["value"] == "y" * 100
            await run(bob, "c2")
            await bob.wait_for(lambda: model(bob, "c0", "TextareaModel")[1]["value"] == "ok", timeout=30)
            # nor is a new model past it (its layout and style, small, are)
            await run(bob, "c3")
            await bob.wait_for(lambda: views_of(bob, "c3") != [], timeout=30)
            assert not has_model(bob, "c3", "TextareaModel"), bob.widgets("c3")
            assert model(alice, "c0", "TextareaModel")[1]["value"] == "x" * 20000

            await users("alice").request("DELETE", f"api/notebooks/{nb_id}/kernel")
            await alice.wait_for(lambda: alice.widgets("c0") == {}, timeout=60)
            await bob.widget_update("c0", bob_text, {"value": "y" * 20000})  # alice's share is free again
            assert model(bob, "c0", "TextareaModel")[1]["value"] == "y" * 20000
        await users("bob").request("DELETE", f"api/notebooks/{nb_id}/kernel")
    finally:
        for flag in flags:
            collab.extra_args.remove(flag)
        collab.restart()


async def test_models_outlive_a_service_restart_while_the_kernel_lives(users: Users, collab: Any) -> None:
    """With ``kernels_survive_stop`` the kernel lives on through a service restart: the
    restarted service adopts the models from the docs and they still drive the kernel."""
    flag = "--HubCollab.kernels_survive_stop=True"
    collab.extra_args.append(flag)
    collab.restart()
    try:
        nb_id = await make_notebook(users, INTERACT, "w.IntSlider(value=1)", name="widgets-restart")
        alice = await connect(users, "alice", nb_id)
        try:
            await run(alice, "c0")
            await run(alice, "c1")
            await alice.wait_for(lambda: has_model(alice, "c0", "IntSliderModel") and has_model(alice, "c1", "IntSliderModel"), timeout=30)
            slider_id, _ = model(alice, "c0", "IntSliderModel")
            await alice.widget_update("c0", slider_id, {"value": 5})
            await alice.wait_for(lambda: output_text(model(alice, "c0", "OutputModel")[1]) == "square 25\n", timeout=30)
            # a model of another cell, still alive in the kernel: kept after the comm_info check
            kept_id, _ = model(alice, "c1", "IntSliderModel")
        finally:
            await alice.close()
        stop_only_the_service(collab, signal.SIGTERM)  # its kernels live on
        collab.start()
        bob = await connect(users, "bob", nb_id)
        try:
            assert model(bob, "c0", "IntSliderModel")[1]["value"] == 5
            assert output_text(model(bob, "c0", "OutputModel")[1]) == "square 25\n"
            await bob.widget_update("c0", slider_id, {"value": 6})
            await bob.wait_for(lambda: output_text(model(bob, "c0", "OutputModel")[1]) == "square 36\n", timeout=60)
            assert kept_id in bob.widgets("c1")
        finally:
            await bob.close()
        await users("instructor").request("DELETE", f"api/notebooks/{nb_id}/kernel")
    finally:
        collab.extra_args.remove(flag)
        collab.restart()


async def test_models_of_a_lost_kernel_are_removed(users: Users, collab: Any) -> None:
    """A restart that takes the kernel with it: the models it held leave the docs."""
    nb_id = await make_notebook(users, INTERACT, name="widgets-lost")
    async with opened(users, "alice", nb_id) as alice:
        await run(alice, "c0")
        await alice.wait_for(lambda: has_model(alice, "c0", "IntSliderModel"), timeout=30)
    collab.restart()  # stops the service and its kernels
    async with opened(users, "bob", nb_id) as bob:
        await bob.wait_for(lambda: bob.widgets("c0") == {}, timeout=60)
        assert views_of(bob, "c0")  # the output that showed the widget stays; the page says it is gone


IMAGE = """\
import ipywidgets as w
img = w.Image(value=b'\\x89PNG\\r\\n\\x1a\\n' + bytes(range(256)), format='png')
got = []
img.observe(lambda ch: got.append((get_ipython().kernel.get_parent()['header']['username'], bytes(ch['new']))), 'value')
img
"""
GOT = "print([(who, len(b), b[:6]) for who, b in got])"


async def test_binary_state_both_ways(users: Users) -> None:
    """An Image's bytes (a buffer of the kernel's comm message) are in the doc as bytes; a
    client's buffers (base64, where ``buffer_paths`` say) reach the kernel as bytes, as the
    user who sent them; malformed buffers are refused and reach no kernel."""
    nb_id = await make_notebook(users, IMAGE, GOT, name="widget-bytes")
    try:
        async with opened(users, "alice", nb_id) as alice, opened(users, "bob", nb_id) as bob:
            await run(alice, "c0")
            await bob.wait_for(lambda: has_model(bob, "c0", "ImageModel"), timeout=30)
            image_id, state = model(bob, "c0", "ImageModel")
            assert bytes(state["value"]) == b"\x89PNG\r\n\x1a\n" + bytes(range(256))
            gif = b"GIF89a" + bytes(1000)
            # as ipywidgets sends it: the key whose value is a buffer is taken out of the state
            await alice.command(
                "widget_update", cell_id="c0", model_id=image_id, state={},
                buffer_paths=[["value"]], buffers=[base64.b64encode(gif).decode()],
            )
            await bob.wait_for(lambda: bytes(model(bob, "c0", "ImageModel")[1]["value"]) == gif, timeout=30)
            bad: list[tuple[dict[str, Any], str]] = [
                ({"buffer_paths": [["value"]], "buffers": ["not base64!"]}, "invalid_command"),
                ({"buffer_paths": [["value"]], "buffers": []}, "invalid_command"),
                ({"buffer_paths": [["value"], ["value"]], "buffers": ["AAAA"]}, "invalid_command"),
                ({"buffer_paths": ["value"], "buffers": ["AAAA"]}, "invalid_command"),
                ({"buffer_paths": [["value", 0]], "buffers": ["AAAA"]}, "invalid_command"),
                ({"buffer_paths": [[0]], "buffers": ["AAAA"]}, "invalid_command"),
                ({"buffer_paths": [["_model_name"]], "buffers": ["AAAA"]}, "invalid_widget_state"),
                ({"buffer_paths": [["nope"]], "buffers": ["AAAA"]}, "invalid_widget_state"),
                ({"buffer_paths": [["value"]] * 17, "buffers": ["AAAA"] * 17}, "invalid_command"),
                ({"buffer_paths": [["value"]], "buffers": [base64.b64encode(bytes(70_000)).decode()]}, "too_large"),
            ]
            for fields, code in bad:
                with pytest.raises(CommandError) as err:
                    await alice.command("widget_update", cell_id="c0", model_id=image_id, state={}, **fields)
                assert err.value.code == code, (str(fields)[:120], err.value)
            # only the one good change reached the kernel, with its bytes, from alice
            await run(alice, "c1")
            assert text_of(alice.outputs("c1")) == "[('alice', 1006, b'GIF89a')]\n"
            assert bytes(model(bob, "c0", "ImageModel")[1]["value"]) == gif
            # the export saves the state as ipywidgets does: the bytes as a base64 buffer
            saved = (await users("bob").export(nb_id))["metadata"]["widgets"][WIDGET_STATE]
            assert saved["version_major"] == 2
            image = saved["state"][image_id]
            assert (image["model_name"], image["model_module"]) == ("ImageModel", "@jupyter-widgets/controls")
            assert image["buffers"] == [{"path": ["value"], "data": base64.b64encode(gif).decode(), "encoding": "base64"}]
            assert "value" not in image["state"] and image["state"]["format"] == "png"
            assert "widgets" not in (await users("bob").export(nb_id, widgets=False))["metadata"]
    finally:
        await users("instructor").request("DELETE", f"api/notebooks/{nb_id}/kernel")


def saved_model(name: str, **state: Any) -> dict[str, Any]:
    return {"model_name": name, "model_module": "@jupyter-widgets/controls", "model_module_version": "2.0.0", "state": state}


async def test_saved_widget_state_of_an_import_is_exported_only_for_cells_one_may_read(users: Users) -> None:
    """An imported notebook's saved widget state (no kernel) goes out with the outputs that
    show it, and nothing of it for a cell the reader may not read."""
    nb = notebook("shown", "secret")
    view = lambda mid: {"output_type": "display_data", "data": {VIEW: {"model_id": mid, "version_major": 2, "version_minor": 0}, "text/plain": "w"}, "metadata": {}}  # noqa: E731
    nb["cells"][0]["outputs"] = [view("box")]
    nb["cells"][1]["outputs"] = [view("hidden")]
    nb["metadata"]["widgets"] = {
        WIDGET_STATE: {
            "version_major": 2,
            "version_minor": 0,
            "state": {
                "box": saved_model("VBoxModel", children=["IPY_MODEL_child"]),
                "child": saved_model("IntSliderModel", value=4),
                "hidden": saved_model("TextModel", value="the answer is 42"),
                "orphan": saved_model("IntSliderModel", value=9),
            },
        }
    }
    created = await users("instructor").create_notebook("saved-widgets", nb, group="students", mode="0775", default_cell_mode="0775")
    nb_id = str(created["id"])
    await users("instructor").set_permissions(nb_id, "c1", mode="0700")  # alice may not read c1
    try:
        seen = (await users("alice").export(nb_id))["metadata"]["widgets"][WIDGET_STATE]["state"]
        assert set(seen) == {"box", "child"}
        assert seen["child"]["state"] == {"value": 4}
        assert "the answer" not in json.dumps(await users("alice").export(nb_id))
        owner = (await users("instructor").export(nb_id))["metadata"]["widgets"][WIDGET_STATE]["state"]
        assert set(owner) == {"box", "child", "hidden"}
    finally:
        await users("instructor").delete_notebook(nb_id)
