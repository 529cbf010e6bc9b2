"""The page itself in a real browser (headless Chromium, Playwright) through the real Hub login:
the confirm and text dialogs by keyboard (no ``prompt()``/``confirm()``), the icons that ship
with the page, the reconnect banner with local edits kept across a service restart, the
"edit undone" notice after a refused edit, the reload after an epoch reset, and axe-core's
accessibility checks on the home page, a notebook, the share dialog, the chat and the
comments panel.
"""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from hubfixtures import wait_until
from playwright.sync_api import Page, WebSocketRoute, expect
from ui_helpers import (
    CHROMIUM,
    Api,
    axe_violations,
    cell,
    notebook,
    open_notebook,
    type_in_cell,
)

assert os.path.exists(CHROMIUM), f"no Chromium at {CHROMIUM}: run scripts/setup (or apt-get install chromium)"

KERNEL_TIMEOUT = 90_000


@pytest.fixture
def api(hub: Any, collab: Any) -> Any:
    return lambda user: Api(collab.public_url, hub.token(user))


@pytest.fixture
def service_down(collab: Any) -> Iterator[Any]:
    """``service_down()`` stops the session's service; it runs again after the test whatever happens."""

    def stop() -> None:
        collab.stop()

    yield stop
    if collab.process is None:
        collab.start()


def focused_inside(page: Page, selector: str) -> bool:
    return bool(page.evaluate("(sel) => !!document.activeElement && !!document.activeElement.closest(sel)", selector))


def tab_stays_inside(page: Page, selector: str, presses: int = 5) -> None:
    """Tab and Shift-Tab never leave the open modal dialog."""
    for key in ["Tab"] * presses + ["Shift+Tab"] * presses:
        page.keyboard.press(key)
        assert focused_inside(page, selector), f"{key} left {selector}: focus on {page.evaluate('document.activeElement.outerHTML.slice(0, 120)')}"


def test_delete_on_the_home_page_asks_in_a_dialog_by_keyboard(as_user: Any, api: Any) -> None:
    nb = api("alice").create("To be deleted")
    page = as_user("alice")
    item = page.locator(f'.nb-item[data-id="{nb["id"]}"]')
    delete = item.locator(".nb-delete")
    delete.focus()
    page.keyboard.press("Enter")
    dlg = page.get_by_role("dialog", name="Delete “To be deleted”?")
    expect(dlg).to_be_visible()
    expect(dlg).to_contain_text("deleted for everyone")
    # a destructive question starts on Cancel; Esc cancels and gives the focus back
    expect(dlg.locator(".ask-cancel")).to_be_focused()
    tab_stays_inside(page, "dialog.ask-dialog")
    page.keyboard.press("Escape")
    expect(dlg).to_have_count(0)
    expect(delete).to_be_focused()
    expect(item).to_have_count(1)
    # Enter on Cancel keeps it too
    page.keyboard.press("Enter")
    expect(page.locator("dialog.ask-dialog .ask-cancel")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("dialog.ask-dialog")).to_have_count(0)
    expect(item).to_have_count(1)
    # Tab to Delete, Enter: gone, for the server too
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(page.locator("dialog.ask-dialog .ask-ok")).to_be_focused()
    page.keyboard.press("Enter")
    expect(item).to_have_count(0)
    assert nb["id"] not in {n["id"] for n in api("alice").call("GET", "api/notebooks")["notebooks"]}
    assert page.dialogs == [] and page.errors == []  # type: ignore[attr-defined]


def test_kernel_restart_asks_in_a_dialog_by_keyboard(as_user: Any, api: Any, collab: Any) -> None:
    nb = api("alice").create("Restartable", notebook([{"id": "set", "source": "x = 41"}, {"id": "get", "source": "print(x + 1)"}]))["id"]
    page = as_user("alice")
    open_notebook(page, collab.public_url, nb)
    cell(page, "set").click()
    page.keyboard.press("Shift+Enter")
    page.keyboard.press("Escape")
    page.keyboard.press("Shift+Enter")
    expect(cell(page, "get").locator(".output-stream")).to_have_text("42\n", timeout=KERNEL_TIMEOUT)
    # 0, 0 in command mode asks; Esc says no and the focus returns to the cell
    cell(page, "get").click()
    page.keyboard.press("Escape")
    page.keyboard.press("0")
    page.keyboard.press("0")
    dlg = page.get_by_role("dialog", name="Restart the kernel?")
    expect(dlg).to_be_visible()
    expect(dlg).to_contain_text("Every variable is lost")
    expect(dlg.get_by_role("button", name="Cancel")).to_be_focused()
    tab_stays_inside(page, "dialog.ask-dialog")
    page.keyboard.press("Escape")
    expect(dlg).to_have_count(0)
    assert focused_inside(page, '.cell[data-cell-id="get"]')
    # the toolbar button, by keyboard: Tab to Restart, Enter; x is gone
    restart = page.get_by_role("button", name="Restart the kernel (0, 0)")
    restart.focus()
    page.keyboard.press("Enter")
    expect(dlg).to_be_visible()
    page.keyboard.press("Tab")
    expect(dlg.get_by_role("button", name="Restart")).to_be_focused()
    page.keyboard.press("Enter")
    expect(dlg).to_have_count(0)
    expect(restart).to_be_focused()
    cell(page, "get").click()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Enter")
    expect(cell(page, "get").locator(".output-error")).to_contain_text("NameError", timeout=KERNEL_TIMEOUT)
    assert page.dialogs == [] and page.errors == []  # type: ignore[attr-defined]


def test_chat_edit_in_a_dialog_by_keyboard(as_user: Any, api: Any, collab: Any) -> None:
    nb = api("alice").create("Chat edits", notebook([{"id": "c", "source": ""}]), group="students", mode="0770")["id"]
    alice, bob = as_user("alice"), as_user("bob")
    open_notebook(alice, collab.public_url, nb)
    open_notebook(bob, collab.public_url, nb)
    alice.fill(".chat-input", "the answer is 41")
    alice.keyboard.press("Enter")
    expect(bob.locator(".chat-msg .chat-text").last).to_have_text("the answer is 41")
    edit = alice.locator(".chat-msg.mine").last.get_by_role("button", name="edit")
    edit.focus()
    alice.keyboard.press("Enter")
    dlg = alice.get_by_role("dialog", name="Edit your message")
    expect(dlg).to_be_visible()
    box = dlg.get_by_role("textbox")
    expect(box).to_be_focused()
    expect(box).to_have_value("the answer is 41")
    # Esc: nothing changes; the focus is back on "edit"
    alice.keyboard.press("Escape")
    expect(dlg).to_have_count(0)
    expect(edit).to_be_focused()
    alice.keyboard.press("Enter")
    expect(box).to_be_focused()
    tab_stays_inside(alice, "dialog.ask-dialog", presses=3)
    box.focus()
    alice.keyboard.press("Backspace")
    alice.keyboard.type("2, <b>not 41</b>")
    alice.keyboard.press("Enter")  # Enter saves
    expect(dlg).to_have_count(0)
    msg = bob.locator(".chat-msg").last
    expect(msg.locator(".chat-text")).to_have_text("the answer is 42, <b>not 41</b>")
    expect(msg.locator(".chat-edited")).to_have_text(" (edited)")
    assert alice.dialogs == [] and alice.errors == [] and bob.errors == []  # type: ignore[attr-defined]


def test_locked_badge_and_comment_icons_are_inline_svg(as_user: Any, api: Any, collab: Any) -> None:
    inst = api("instructor")
    nb = inst.create("Icons", notebook([{"id": "given", "source": "DATA = [1, 2, 3]"}]), mode="0777")["id"]
    inst.chmod_cell(nb, "given", mode="0644")
    alice = as_user("alice")
    open_notebook(alice, collab.public_url, nb)
    badge = cell(alice, "given").locator(".badge-locked")
    expect(badge).to_have_text("locked")
    expect(badge).to_have_attribute("title", re.compile("^Read-only for you"))
    svg = badge.locator("svg.icon-lock")
    expect(svg).to_have_attribute("aria-hidden", "true")
    box = svg.bounding_box()
    assert box is not None and box["width"] > 4 and box["height"] > 4, box
    # the comment button and the notice bell: icons too, named by their words
    expect(cell(alice, "given").locator(".comment-btn svg.icon-comment")).to_have_count(1)
    bell = alice.locator(".notice-btn")
    expect(bell.locator("svg.icon-bell")).to_have_count(1)
    expect(bell).to_have_accessible_name(re.compile("unread mention"))
    # no emoji left for a font that may not have them
    text = alice.evaluate("document.body.innerText")
    assert not re.search("[\U0001f300-\U0001faff]", text), [c for c in text if ord(c) > 0x1F000]


def test_reconnect_banner_and_local_edits_kept_across_a_restart(as_user: Any, api: Any, collab: Any, service_down: Any) -> None:
    nb = api("alice").create("Offline", notebook([{"id": "o1", "source": "a = 1"}]))["id"]
    alice = as_user("alice")
    open_notebook(alice, collab.public_url, nb)
    banner = alice.locator(".banner")
    expect(banner).to_be_hidden()
    service_down()
    expect(banner).to_contain_text("Connection lost. Reconnecting… your edits are kept", timeout=30_000)
    expect(alice.locator("body")).to_have_attribute("data-connection", "reconnecting")
    type_in_cell(alice, "o1", "\nb = 2  # typed offline")
    expect(cell(alice, "o1")).to_contain_text("typed offline")
    collab.start()
    expect(banner).to_be_hidden(timeout=60_000)
    expect(alice.locator("body")).to_have_attribute("data-connection", "open")
    # the edit reached the server: the export and a new page show it
    owner = api("alice")

    def saved() -> str | None:
        source = "".join(owner.call("GET", f"api/notebooks/{nb}/ipynb")["cells"][0]["source"])
        return source if "typed offline" in source else None

    assert wait_until(saved, timeout=30, interval=0.25, what="the offline edit on the server") == "a = 1\nb = 2  # typed offline"
    fresh = as_user("alice")
    open_notebook(fresh, collab.public_url, nb)
    expect(cell(fresh, "o1")).to_contain_text("typed offline")
    assert alice.errors == []  # type: ignore[attr-defined]


class HeldSocket:
    """The page's WebSocket, passed through Playwright to the real service, with the server's
    messages held back while ``hold`` is set (a slow network for this page alone)."""

    def __init__(self) -> None:
        self.hold = False
        self.held: list[str | bytes] = []
        self.page_side: WebSocketRoute | None = None

    def route(self, ws: WebSocketRoute) -> None:
        self.page_side = ws
        server = ws.connect_to_server()
        server.on_message(self.from_server)

    def from_server(self, message: str | bytes) -> None:
        if self.hold:
            self.held.append(message)
        else:
            assert self.page_side is not None
            self.page_side.send(message)

    def release(self) -> None:
        self.hold = False
        assert self.page_side is not None
        for message in self.held:
            self.page_side.send(message)
        self.held.clear()


def test_a_refused_edit_is_undone_with_a_notice(as_user: Any, api: Any, collab: Any) -> None:
    inst = api("instructor")
    nb = inst.create("Locking", notebook([{"id": "w", "source": "answer = None"}]), mode="0777")["id"]
    inst.chmod_cell(nb, "w", mode="0666")
    alice = as_user("alice")
    socket = HeldSocket()
    alice.route_web_socket(re.compile(r"/api/notebooks/[^/]+/ws(\?.*)?$"), socket.route)
    open_notebook(alice, collab.public_url, nb)
    assert socket.page_side is not None, "the notebook's WebSocket did not go through the route"
    type_in_cell(alice, "w", "  # ")
    expect(cell(alice, "w")).to_contain_text("answer = None  #")
    # the owner locks the cell while alice types: her page learns it only later
    socket.hold = True
    inst.chmod_cell(nb, "w", mode="0644")
    alice.keyboard.type("mine")
    expect(cell(alice, "w")).to_contain_text("answer = None  # mine")
    socket.release()
    expect(alice.locator(".toast-error")).to_contain_text("Your edit was undone: you may not edit this cell.", timeout=30_000)
    expect(cell(alice, "w").locator(".badge-locked")).to_be_visible()
    expect(cell(alice, "w")).not_to_contain_text("mine")
    source = "".join(inst.call("GET", f"api/notebooks/{nb}/ipynb")["cells"][0]["source"])
    assert "mine" not in source and source.startswith("answer = None"), source


def test_a_cell_inserted_late_does_not_take_the_focus_from_where_the_user_went(as_user: Any, api: Any, collab: Any) -> None:
    """Shift-Enter on the last cell adds a cell below and goes to it, but when the server's
    answer comes late (a slow network, a busy service) and the user has gone on meanwhile, here
    back into the cell's editor, the new cell appears without taking the focus: what they type
    goes where they are typing."""
    nb = api("alice").create("Late insert", notebook([{"id": "a", "source": "1"}]))["id"]
    alice = as_user("alice")
    socket = HeldSocket()
    alice.route_web_socket(re.compile(r"/api/notebooks/[^/]+/ws(\?.*)?$"), socket.route)
    open_notebook(alice, collab.public_url, nb)
    cell(alice, "a").click()
    alice.keyboard.press("Escape")
    socket.hold = True
    alice.keyboard.press("Shift+Enter")
    type_in_cell(alice, "a", "0")
    socket.release()
    expect(alice.locator(".cell")).to_have_count(2)
    alice.keyboard.type("23", delay=50)
    expect(cell(alice, "a").locator(".cm-content")).to_have_text("1023")
    added = alice.locator(".cell").nth(1)
    expect(added).not_to_have_class(re.compile(r"\bactive\b"))
    assert focused_inside(alice, '.cell[data-cell-id="a"] .cm-content')

    def sources() -> list[str]:
        return ["".join(c["source"]) for c in api("alice").call("GET", f"api/notebooks/{nb}/ipynb")["cells"]]

    wait_until(lambda: sources() == ["1023", ""], what="the edit in the cell the user went to", on_timeout=lambda: repr(sources()))
    # with nowhere else to go, Shift-Enter on the last cell lands in the new cell's editor
    alice.keyboard.press("Shift+Enter")
    expect(added).to_have_class(re.compile(r"\bactive\b"))
    alice.keyboard.press("Shift+Enter")
    expect(alice.locator(".cell")).to_have_count(3)
    expect(alice.locator(".cell").nth(2)).to_have_class(re.compile(r"\bactive\b"))
    expect(alice.locator(".cell").nth(2).locator(".cm-content")).to_be_focused()
    alice.keyboard.type("nxt")
    expect(alice.locator(".cell").nth(2).locator(".cm-content")).to_have_text("nxt")
    assert alice.errors == []  # type: ignore[attr-defined]


def test_a_cell_moved_by_someone_else_keeps_the_focus_of_who_types_in_it(as_user: Any, api: Any, collab: Any) -> None:
    """Bob moves the cell above the one alice is typing in below it: alice's cell moves up
    in her page, and her editor keeps the focus (an element moved by removing and inserting
    it loses it, and her next keys would have been notebook commands: D, D deletes a cell)."""
    nb = api("alice").create("Moves", notebook([{"id": "a", "source": "1"}, {"id": "b", "source": "2"}, {"id": "c", "source": "3"}]), group="students", mode="0770")["id"]
    alice, bob = as_user("alice"), as_user("bob")
    open_notebook(alice, collab.public_url, nb)
    open_notebook(bob, collab.public_url, nb)
    type_in_cell(alice, "b", "0")
    expect(cell(alice, "b").locator(".cm-content")).to_be_focused()
    cell(bob, "a").click()
    bob.keyboard.press("Escape")
    bob.keyboard.press("Control+Shift+ArrowDown")
    expect(alice.locator(".cell").first).to_have_attribute("data-cell-id", "b", timeout=30_000)
    expect(cell(alice, "b").locator(".cm-content")).to_be_focused()
    alice.keyboard.type("dd")
    expect(cell(alice, "b").locator(".cm-content")).to_have_text("20dd")
    expect(alice.locator(".cell")).to_have_count(3)
    assert alice.errors == [] and bob.errors == [], (alice.errors, bob.errors)  # type: ignore[attr-defined]


def test_an_epoch_reset_reloads_the_page(as_user: Any, api: Any, collab: Any, service_down: Any) -> None:
    nb = api("alice").create("Reset", notebook([{"id": "e1", "source": "kept = True"}]))["id"]
    alice = as_user("alice")
    open_notebook(alice, collab.public_url, nb)
    old = alice.evaluate("window.hubCollab.conn.epoch")
    alice.evaluate("window.beforeReset = true")
    service_down()
    expect(alice.locator(".banner")).to_contain_text("Reconnecting", timeout=30_000)
    # the notebook's state was rebuilt while the service was down: a new epoch
    new = secrets.token_hex(8)
    with sqlite3.connect(collab.db_url.removeprefix("sqlite:///")) as db:
        assert db.execute("UPDATE collab_notebooks SET epoch = ? WHERE id = ?", (new, nb)).rowcount == 1
    collab.start()
    # told its history is stale (4409), the page drops it and reloads: a new window, the new epoch
    alice.wait_for_function("() => window.beforeReset === undefined && document.body.dataset.ready === 'true'", timeout=60_000)
    assert alice.evaluate("window.hubCollab.conn.epoch") == new != old
    expect(cell(alice, "e1")).to_contain_text("kept = True")
    expect(alice.locator(".banner")).to_be_hidden()


def test_no_serious_accessibility_violations(as_user: Any, api: Any, collab: Any) -> None:
    nb = api("alice").create("Accessible", notebook([{"id": "a1", "source": "x = 1"}, {"id": "a2", "cell_type": "markdown", "source": "# Title"}]), group="students", mode="0770")["id"]
    api("alice").chmod_cell(nb, "a1", mode="0640")
    found: dict[str, list[str]] = {}
    page = as_user("alice", bypass_csp=True)
    found["home page"] = axe_violations(page)
    open_notebook(page, collab.public_url, nb)
    found["notebook"] = axe_violations(page)
    bob = as_user("bob", bypass_csp=True)
    open_notebook(bob, collab.public_url, nb)
    expect(cell(bob, "a1").locator(".badge-locked")).to_be_visible()
    found["notebook with a locked cell"] = axe_violations(bob)
    # the chat, with a message in it
    page.fill(".chat-input", "@bob see #a1")
    page.keyboard.press("Enter")
    expect(bob.locator(".chat-msg")).to_have_count(1)
    found["chat"] = axe_violations(bob, ".chat")
    # the share dialog
    page.get_by_role("button", name="Share", exact=True).click()
    expect(page.locator("dialog.share-dialog .share-summary")).to_be_visible()
    found["share dialog"] = axe_violations(page, "dialog.share-dialog")
    page.keyboard.press("Escape")
    # the comments panel, with a thread
    cell(page, "a1").locator(".comment-btn").click()
    panel = page.locator('.comment-panel[data-cell-id="a1"]')
    panel.locator("textarea.comment-new").fill("why 1?")
    page.keyboard.press("Control+Enter")
    expect(panel.locator(".comment-text")).to_have_text("why 1?")
    found["comments panel"] = axe_violations(page, '.comment-panel[data-cell-id="a1"]')
    # the confirm dialog
    page.get_by_role("button", name="Restart the kernel (0, 0)").click()
    expect(page.locator("dialog.ask-dialog")).to_be_visible()
    found["restart dialog"] = axe_violations(page, "dialog.ask-dialog")
    page.keyboard.press("Escape")
    bad = [f"{view}: {line}" for view, lines in found.items() for line in lines]
    assert not bad, "\n".join(bad)


def scroll_cells(page: Page, where: str) -> None:
    page.evaluate("(where) => { const b = document.querySelector('.cells'); b.scrollTop = where === 'bottom' ? b.scrollHeight : 0; }", where)


def test_a_long_notebook_keeps_only_the_cells_near_the_screen_whole(as_user: Any, api: Any, collab: Any) -> None:
    """Windowing (docs/user-guide.md): past 300 cells, only the cells near the screen are
    in the page, each run of the others one empty box of their height; far cells are whole
    again, with what others changed meanwhile, once near the screen; the active cell
    stays whole wherever one scrolls; moving through the notebook by keyboard reaches
    cells that were not in the page."""
    n = 400
    cells = [{"id": f"c{i}", "source": f"x{i} = {i}"} for i in range(n)]
    # a cell with an output and a markdown cell: a box kept aside drops what it drew, which
    # is drawn again when it comes back
    cells[1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "out of c1\n"}]
    cells[2] = {"id": "c2", "cell_type": "markdown", "source": "# Heading of c2"}
    cells[397]["source"] = "secret_of_c397 = 1"
    nb = api("alice").create("Long", notebook(cells), group="students", mode="0770")["id"]
    # far cells, made only once they come near the screen, show their rights when they do
    api("alice").chmod_cell(nb, "c397", mode="0700")
    api("alice").chmod_cell(nb, "c398", mode="0740")
    alice, bob = as_user("alice"), as_user("bob")
    open_notebook(alice, collab.public_url, nb)
    expect(cell(alice, "c0")).to_contain_text("x0 = 0")
    expect(cell(alice, "c1").locator(".cell-outputs")).to_contain_text("out of c1")
    expect(cell(alice, "c2").locator(".cell-rendered h1")).to_have_text("Heading of c2")
    in_page = alice.locator(".cell").count()
    assert 3 <= in_page < 100, in_page
    expect(cell(alice, "c399")).to_have_count(0)
    # one box stands for the cells below the window, as tall as they were estimated
    spacers = alice.locator(".cells > .cell-spacer")
    expect(spacers).to_have_count(1)
    assert spacers.first.evaluate("(e) => e.offsetHeight") >= (n - in_page) * 64
    # bob, at the bottom, edits the last cell while it is an empty box on alice's page
    open_notebook(bob, collab.public_url, nb)
    scroll_cells(bob, "bottom")
    expect(cell(bob, "c399")).not_to_have_class(re.compile(r"\bshell\b"), timeout=30_000)
    expect(cell(bob, "c397").locator(".hidden-placeholder")).to_contain_text("Hidden cell")
    assert "secret_of_c397" not in bob.content()
    expect(cell(bob, "c398").locator(".badge-locked")).to_be_visible()
    expect(cell(bob, "c398")).to_contain_text("x398 = 398")
    type_in_cell(bob, "c399", "  # by bob")
    expect(cell(bob, "c399")).to_contain_text("x399 = 399  # by bob")
    # alice's active cell (c0) stays whole while she is at the bottom, where bob's text is
    cell(alice, "c0").click()
    alice.keyboard.press("Escape")  # command mode
    scroll_cells(alice, "bottom")
    expect(cell(alice, "c399")).to_contain_text("x399 = 399  # by bob", timeout=30_000)
    expect(cell(alice, "c0")).not_to_have_class(re.compile(r"\bshell\b"))
    expect(cell(alice, "c0")).to_contain_text("x0 = 0")
    expect(cell(alice, "c1")).to_have_count(0)
    expect(alice.locator(".cells > .cell-spacer")).to_have_count(1)  # the cells between c0 and the window
    # the next cell by keyboard, not in the page, is brought in, whole, and scrolled to
    alice.keyboard.press("ArrowDown")
    expect(cell(alice, "c1")).to_have_class(re.compile(r"\bactive\b"))
    expect(cell(alice, "c1")).to_be_in_viewport()
    expect(cell(alice, "c1").locator(".cell-outputs")).to_contain_text("out of c1")
    # back at the top, the first cells are whole again
    scroll_cells(alice, "top")
    expect(cell(alice, "c1")).not_to_have_class(re.compile(r"\bshell\b"), timeout=30_000)
    expect(cell(alice, "c1").locator(".cell-outputs")).to_contain_text("out of c1")
    expect(cell(alice, "c1")).to_contain_text("x1 = 1")
    expect(cell(alice, "c2").locator(".cell-rendered h1")).to_have_text("Heading of c2")
    expect(cell(alice, "c2").locator(".comment-btn")).to_be_visible()
    # the cells at the bottom let go of what they drew when they went far (the heap stays
    # as small as before the scroll): only the cells in the page hold a comment button
    held, whole = alice.evaluate(
        "() => [window.hubCollab.view.comments.buttons.size, document.querySelectorAll('.cells > .cell').length]"
    )
    assert held == whole, (held, whole)
    # and are drawn whole again when they come back (bob's too, with his rights)
    scroll_cells(alice, "bottom")
    expect(cell(alice, "c398")).to_contain_text("x398 = 398", timeout=30_000)
    expect(cell(alice, "c399")).to_contain_text("x399 = 399  # by bob")
    scroll_cells(bob, "top")
    expect(cell(bob, "c0")).to_contain_text("x0 = 0", timeout=30_000)
    scroll_cells(bob, "bottom")
    expect(cell(bob, "c398").locator(".badge-locked")).to_be_visible(timeout=30_000)
    expect(cell(bob, "c397").locator(".hidden-placeholder")).to_contain_text("Hidden cell")
    expect(cell(alice, "c399").locator(".comment-btn")).to_be_visible()
    assert alice.errors == [] and bob.errors == [], (alice.errors, bob.errors)  # type: ignore[attr-defined]
