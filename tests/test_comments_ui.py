"""Comment threads in the cell margin, in a real browser (headless Chromium, Playwright)
through the real Hub login: two users, a thread on selected text, unread badges and
the notice bell, reply, resolve, inline edit and delete (no prompt()/confirm()),
everything by keyboard, hostile text shown as text, and threads that disappear and
come back when the cell's mode changes live.
"""

from __future__ import annotations

import os
from typing import Any

from playwright.sync_api import Page, expect
from ui_helpers import (
    CHROMIUM,
    Api,
    cell,
    notebook,
    open_notebook,
    screenshot,
)

assert os.path.exists(CHROMIUM), f"no Chromium at {CHROMIUM}: run scripts/setup (or apt-get install chromium)"

HOSTILE = "<img src=x onerror=window.pwned=1> @bob is this right?"


def select_text(page: Page, cell_id: str, start: int, end: int) -> None:
    """Select characters start..end of a cell's editor (mounting it first)."""
    cell(page, cell_id).locator(".cell-preview, .cm-content").first.click()
    cell(page, cell_id).locator(".cm-content").wait_for()
    page.evaluate(
        "([id, a, b]) => { const c = window.hubCollab.view.cells.get(id); c.view.dispatch({selection: {anchor: a, head: b}}); }",
        [cell_id, start, end],
    )


def two_users_on_a_priced_notebook(as_user: Any, collab: Any, api: Any, name: str, **perms: str) -> tuple[str, Page, Page]:
    """A notebook of alice's (cells c1 "total = price * quantity", c2), open for alice and bob."""
    nb = api.create(
        name,
        notebook([{"id": "c1", "source": "total = price * quantity"}, {"id": "c2", "source": "print(total)"}]),
        **perms,
    )["id"]
    alice, bob = as_user("alice"), as_user("bob")
    open_notebook(alice, collab.public_url, nb)
    open_notebook(bob, collab.public_url, nb)
    return nb, alice, bob


def press_on(page: Page, selector: Any, key: str = "Enter") -> None:
    """Reach an element with the keyboard: focus it, then press ``key``."""
    selector.focus()
    expect(selector).to_be_focused()
    page.keyboard.press(key)


def test_threads_in_the_margin_by_keyboard_live_for_both(as_user: Any, collab: Any, hub: Any) -> None:
    api = Api(collab.public_url, hub.token("alice"))
    nb, alice, bob = two_users_on_a_priced_notebook(as_user, collab, api, "Commented", group="students", mode="0770")

    # alice selects "quantity" and opens a thread on it, with the keyboard
    select_text(alice, "c1", 16, 24)
    press_on(alice, cell(alice, "c1").locator(".comment-btn"))
    panel = alice.locator('.comment-panel[data-cell-id="c1"]')
    expect(panel.locator(".comment-on-selection")).to_be_checked()
    expect(panel.locator(".comment-sel-label")).to_contain_text("“quantity”")
    expect(panel.locator("textarea.comment-new")).to_be_focused()
    alice.keyboard.type(HOSTILE)
    alice.keyboard.press("Control+Enter")
    expect(panel.locator(".comment-thread .comment-quote")).to_have_text("“quantity”")

    # bob: an unread badge on the cell and a notice on the bell, live
    badge = cell(bob, "c1").locator(".comment-btn")
    expect(badge).to_have_attribute("data-unread", "1")
    expect(bob.locator(".notice-btn")).to_have_attribute("data-unread", "1")
    expect(cell(bob, "c2").locator(".comment-btn")).to_have_attribute("data-threads", "0")
    press_on(bob, bob.locator(".notice-btn"))
    notice = bob.locator(".notice-list .notice").first
    expect(notice).to_contain_text("alice mentioned you")
    expect(notice).to_be_focused()
    bob.keyboard.press("Enter")
    bpanel = bob.locator('.comment-panel[data-cell-id="c1"]')
    text = bpanel.locator(".comment-text").first
    expect(text).to_have_text(HOSTILE)  # text, not markup
    assert bpanel.locator(".comment-text img").count() == 0
    assert bob.evaluate("window.pwned === undefined")
    expect(badge).to_have_attribute("data-unread", "0")
    screenshot(bob, "comments")

    # bob replies (keyboard), alice sees it in her open panel
    reply_box = bpanel.locator('textarea[data-key^="reply-"]')
    reply_box.focus()
    bob.keyboard.type("quantity is checked above")
    bob.keyboard.press("Control+Enter")
    expect(panel.locator(".comment-text").nth(1)).to_have_text("quantity is checked above")

    # alice resolves; bob, who may write the cell (group rwx), reopens it
    press_on(alice, panel.locator("button", has_text="Resolve"))
    expect(bpanel.locator(".comment-resolved")).to_have_text("Resolved by alice")
    press_on(bob, bpanel.locator("button", has_text="Reopen"))
    expect(panel.locator("button", has_text="Resolve")).to_be_visible()

    # bob edits his reply inline, then deletes it after an inline question
    mine = bpanel.locator(".comment.mine")
    press_on(bob, mine.locator("button", has_text="Edit"))
    edit_box = bpanel.locator('textarea[data-key^="edit-"]')
    expect(edit_box).to_be_focused()
    edit_box.fill("quantity is checked in line 3")
    bob.keyboard.press("Control+Enter")
    expect(panel.locator(".comment-text").nth(1)).to_have_text("quantity is checked in line 3")
    expect(panel.locator(".comment-edited")).to_have_count(1)
    press_on(bob, bpanel.locator(".comment.mine button", has_text="Delete"))
    confirm = bpanel.locator(".comment-confirm")
    expect(confirm.locator("button", has_text="Keep")).to_be_focused()
    press_on(bob, confirm.locator("button", has_text="Delete"))
    expect(panel.locator(".comment-deleted")).to_have_text("comment deleted")
    # bob may not edit or delete alice's comment: no such buttons for him
    expect(bpanel.locator(".comment").first.locator("button")).to_have_count(0)

    # the cell is hidden from bob live: its threads and badge go; opened again: they return
    api.chmod_cell(nb, "c1", mode="0700")
    expect(bpanel).to_have_count(0)
    expect(cell(bob, "c1").locator(".comment-btn")).to_be_hidden()
    api.chmod_cell(nb, "c1", mode="0770")
    expect(cell(bob, "c1").locator(".comment-btn")).to_be_visible()
    expect(cell(bob, "c1").locator(".comment-btn")).to_have_attribute("data-threads", "1")

    # the range follows an edit: text typed before it moves it; "show" selects it again
    cell(alice, "c1").locator(".cm-content").click()
    alice.keyboard.press("Control+Home")
    alice.keyboard.type("# cost\n")
    press_on(alice, panel.locator(".comment-quote"))
    selected = alice.evaluate(
        "() => { const v = window.hubCollab.view.cells.get('c1').view; const r = v.state.selection.main; return v.state.sliceDoc(r.from, r.to); }"
    )
    assert selected == "quantity"
    for page in (alice, bob):
        assert page.errors == [], page.errors  # type: ignore[attr-defined]
        assert page.dialogs == [], page.dialogs  # type: ignore[attr-defined]
    # the button shows the speech-bubble icon (inline SVG) and is named by its title
    expect(cell(alice, "c2").locator(".comment-btn svg.icon-comment")).to_have_count(1)
    expect(cell(alice, "c2").locator(".comment-btn")).to_have_accessible_name("Comment on this cell")


def test_commented_ranges_are_marked_and_long_lists_come_in_pages(as_user: Any, collab: Any, hub: Any) -> None:
    """The text a thread is anchored to is marked in everyone's editor and the mark follows
    edits; a resolved thread's mark goes. Past a page (the server's `comment_page_size`,
    50), older threads and older notices come with a button."""
    api = Api(collab.public_url, hub.token("alice"))
    nb, alice, bob = two_users_on_a_priced_notebook(as_user, collab, api, "Marked", mode="0777")
    select_text(alice, "c1", 16, 24)
    press_on(alice, cell(alice, "c1").locator(".comment-btn"))
    new = alice.locator('.comment-panel[data-cell-id="c1"] textarea.comment-new')
    expect(new).to_be_focused()
    expect(alice.locator('.comment-panel[data-cell-id="c1"] .comment-on-selection')).to_be_checked()
    alice.keyboard.type("is quantity checked?")
    alice.keyboard.press("Control+Enter")
    expect(alice.locator('.comment-panel[data-cell-id="c1"] .comment-quote')).to_have_text("“quantity”")
    cell(bob, "c1").locator(".cell-preview, .cm-content").first.click()
    mark = cell(bob, "c1").locator(".cm-comment-range")
    expect(mark).to_have_text("quantity", timeout=20_000)
    # alice types before it: the mark stays on the same word on bob's page
    alice.evaluate("() => { const v = window.hubCollab.view.cells.get('c1').view; v.dispatch({changes: {from: 0, insert: 'grand_'}}); }")
    expect(cell(bob, "c1").locator(".cm-content")).to_contain_text("grand_total = price * quantity", timeout=20_000)
    expect(mark).to_have_text("quantity")
    thread_id = api.call("GET", f"api/notebooks/{nb}/comments?cell_id=c1")["threads"][0]["id"]
    api.call("PUT", f"api/notebooks/{nb}/comments/{thread_id}", {"resolved": True})
    expect(mark).to_have_count(0, timeout=20_000)

    # 56 threads mentioning bob, by 7 users (each within their burst of the rate limit)
    writers = ["instructor", "ta", "alice", "carol", "admin", "dave", "eve"]
    for who in writers:
        other = Api(collab.public_url, hub.token(who))
        for i in range(8):
            other.call("POST", f"api/notebooks/{nb}/comments", {"cell_id": "c2", "text": f"@bob {who} asks {i}"})
    # (bob's page got them live; a page opened now gets the newest page of each)
    bob.reload()
    bob.wait_for_selector("body[data-ready=true]", timeout=30_000)
    expect(cell(bob, "c2").locator(".comment-btn")).to_have_attribute("data-threads", "56", timeout=20_000)
    cell(bob, "c2").locator(".comment-btn").click()
    panel = bob.locator('.comment-panel[data-cell-id="c2"]')
    expect(panel.locator(".comment-thread")).to_have_count(50, timeout=20_000)
    expect(panel.locator(".comment-thread").first).to_contain_text("instructor asks 6")
    panel.locator(".comment-older").click()
    expect(panel.locator(".comment-thread")).to_have_count(56, timeout=20_000)
    expect(panel.locator(".comment-thread").first).to_contain_text("instructor asks 0")
    expect(panel.locator(".comment-older")).to_have_count(0)
    bob.keyboard.press("Escape")
    bob.locator(".notice-btn").click()
    expect(bob.locator(".notice-list .notice")).to_have_count(50, timeout=20_000)
    bob.locator(".notice-older").click()
    expect(bob.locator(".notice-list .notice")).to_have_count(56, timeout=20_000)
    assert alice.errors == [] and bob.errors == [], (alice.errors, bob.errors)  # type: ignore[attr-defined]
