"""The web UI in a real browser (headless Debian Chromium, Playwright) through the real Hub login.

Two users in two browser contexts: co-editing with cursors, locked and hidden
cells, runs with outputs in both, chat, the share dialog changing rights live,
and XSS attempts by one user that must not execute in the other's browser.
Screenshots of the main views go to docs/screenshots/ for the user guide when
HUB_COLLAB_SCREENSHOTS=1 is set (otherwise to a temporary folder, so a test run
leaves the repository as it was).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hubfixtures import FAILING_SERVER_MESSAGE
from playwright.sync_api import Browser, Page, expect
from playwright.sync_api import Error as PlaywrightError
from ui_helpers import (
    CHROMIUM,
    Api,
    cell,
    login,
    notebook,
    open_notebook,
    screenshot,
    type_in_cell,
)

# No skip: a missing browser is a failed set-up (scripts/setup installs it), not a pass.
assert os.path.exists(CHROMIUM), f"no Chromium at {CHROMIUM}: run scripts/setup (or apt-get install chromium)"


@pytest.fixture
def api(hub: Any, collab: Any) -> Any:
    return lambda user: Api(collab.public_url, hub.token(user))


def test_home_lists_creates_and_opens(as_user: Any, api: Any, collab: Any) -> None:
    api("alice").create("Alice's lab")
    api("bob").create("Bob's shared lab", mode="0755")
    page = as_user("alice")
    expect(page.locator(".nb-mine .nb-link", has_text="Alice's lab").first).to_be_visible()
    expect(page.locator(".nb-shared .nb-link", has_text="Bob's shared lab").first).to_be_visible()
    screenshot(page, "home")
    page.fill(".new-name", "From the browser")
    page.click(".create-form button")
    page.wait_for_selector("body[data-ready=true]")
    expect(page.locator(".nb-title")).to_have_text("From the browser")
    page.keyboard.press("b")
    page.wait_for_selector(".cell .cm-content")
    page.keyboard.type("1 + 1")
    expect(page.locator(".cell .cm-content").first).to_have_text("1 + 1")
    assert page.errors == []  # type: ignore[attr-defined]


def test_an_import_shows_the_servers_refusal_and_creates_nothing(as_user: Any, api: Any, collab: Any, tmp_path: Path) -> None:
    """Importing an .ipynb from the home page: the server's 413 and 400 messages (which
    limit, which cell) are shown as they are; a good file opens as a notebook."""
    over = notebook([{"id": "small", "source": "1"}, {"id": "big", "outputs": [{"output_type": "stream", "name": "stdout", "text": "x" * (2 * 1024 * 1024 + 1)}]}])
    (tmp_path / "too big.ipynb").write_text(json.dumps(over))
    bad = notebook([{"id": "a", "source": "1"}])
    bad["cells"][0]["cell_type"] = "python"
    (tmp_path / "bad type.ipynb").write_text(json.dumps(bad))
    (tmp_path / "lecture.ipynb").write_text(json.dumps(notebook([{"id": "intro", "cell_type": "markdown", "source": "# Lecture"}])))
    page = as_user("alice")
    status = page.locator(".home-status")
    page.set_input_files(".import-file", str(tmp_path / "too big.ipynb"))
    expect(status).to_contain_text("Could not import “too big”: content.cells[1] (id 'big') is too large: its outputs hold", timeout=30_000)
    expect(status).to_contain_text("(HubCollab.max_doc_bytes)")
    page.set_input_files(".import-file", str(tmp_path / "bad type.ipynb"))
    expect(status).to_contain_text("Could not import “bad type”: content.cells[0] is not valid nbformat v4", timeout=30_000)
    names = [n["name"] for n in api("alice").call("GET", "api/notebooks")["notebooks"]]
    assert "too big" not in names and "bad type" not in names
    page.set_input_files(".import-file", str(tmp_path / "lecture.ipynb"))
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    expect(page.locator(".nb-title")).to_have_text("lecture")
    assert page.errors == []  # type: ignore[attr-defined]


def test_two_users_see_each_others_typing_and_cursors(as_user: Any, api: Any, collab: Any) -> None:
    nb = api("alice").create(
        "Together",
        notebook([{"id": "c1", "source": "x = 1"}, {"id": "m1", "cell_type": "markdown", "source": "# Hello *world*"}]),
        group="students",
        mode="0770",
    )
    alice, bob = as_user("alice"), as_user("bob")
    open_notebook(alice, collab.public_url, nb["id"])
    open_notebook(bob, collab.public_url, nb["id"])
    expect(cell(bob, "m1").locator(".cell-rendered h1")).to_have_text("Hello world")
    type_in_cell(alice, "c1", "\ny = 2")
    expect(cell(bob, "c1")).to_contain_text("y = 2")
    # alice's caret, labelled with her name, in bob's view of the cell; she is shown in the cell
    bob.locator('.cell[data-cell-id="c1"]').scroll_into_view_if_needed()
    expect(cell(bob, "c1").locator(".remote-caret-label")).to_have_text("alice")
    expect(bob.locator('.avatars [data-user="alice"]')).to_be_visible()
    expect(cell(bob, "c1").locator(".cell-people .avatar")).to_have_count(1)
    # and bob types back
    type_in_cell(bob, "c1", "  # bob")
    expect(cell(alice, "c1").locator(".cm-content")).to_contain_text("y = 2  # bob")
    expect(cell(alice, "c1").locator(".remote-caret-label")).to_have_text("bob")
    screenshot(bob, "notebook-two-users")
    # markdown: double-click to edit, Shift-Enter to render
    cell(alice, "m1").locator(".cell-rendered").dblclick()
    alice.keyboard.press("Control+End")
    alice.keyboard.type(" and $x^2$")
    alice.keyboard.press("Shift+Enter")
    expect(cell(bob, "m1").locator(".cell-rendered .katex")).to_have_count(1)
    assert alice.errors == [] and bob.errors == []  # type: ignore[attr-defined]


def test_locked_cell_is_read_only_and_hidden_cell_is_a_placeholder(as_user: Any, api: Any, collab: Any) -> None:
    inst = api("instructor")
    nb = inst.create(
        "Exam",
        notebook([
            {"id": "given", "source": "DATA = [1, 2, 3]"},
            {"id": "secret", "source": "ANSWER = 42  # top secret"},
            {"id": "free", "source": "# your answer"},
        ]),
        mode="0777",
    )
    inst.chmod_cell(nb["id"], "given", mode="0644")
    inst.chmod_cell(nb["id"], "secret", mode="0600")
    inst.chmod_cell(nb["id"], "free", mode="0666")
    alice = as_user("alice")
    open_notebook(alice, collab.public_url, nb["id"])
    given = cell(alice, "given")
    expect(given.locator(".badge-locked")).to_be_visible()
    type_in_cell(alice, "given", "HACKED")
    alice.wait_for_timeout(300)
    expect(given).not_to_contain_text("HACKED")
    secret = cell(alice, "secret")
    expect(secret.locator(".hidden-placeholder")).to_contain_text("Hidden cell")
    assert "top secret" not in alice.content()
    type_in_cell(alice, "free", "\nmine = 1")
    expect(cell(alice, "free")).to_contain_text("mine = 1")
    screenshot(alice, "locked-and-hidden")
    assert "HACKED" not in str(inst.call("GET", f"api/notebooks/{nb['id']}/ipynb"))


def test_a_run_shows_outputs_in_both_browsers(as_user: Any, api: Any, collab: Any) -> None:
    nb = api("alice").create("Run", notebook([{"id": "r1", "source": "print('hello', 6 * 7)"}, {"id": "r2", "source": "1/0"}]), group="students", mode="0770", default_cell_mode="0775")
    alice, bob = as_user("alice"), as_user("bob")
    open_notebook(alice, collab.public_url, nb["id"])
    open_notebook(bob, collab.public_url, nb["id"])
    cell(alice, "r1").locator(".cell-preview, .cm-content").first.click()
    alice.keyboard.press("Shift+Enter")
    for page in (alice, bob):
        expect(cell(page, "r1").locator(".output-stream")).to_have_text("hello 42\n", timeout=60_000)
        expect(cell(page, "r1").locator(".cell-info")).to_contain_text("by alice")
        expect(cell(page, "r1").locator(".cell-prompt")).to_have_text("[1]:")
    # a traceback with ANSI colours, run from bob's side with the toolbar button
    cell(bob, "r2").click()
    bob.click("button.run")
    expect(cell(alice, "r2").locator(".output-error")).to_contain_text("ZeroDivisionError", timeout=60_000)
    assert cell(alice, "r2").locator(".output-error span[class*=ansi-]").count() > 0
    expect(alice.locator(".kernel-status")).to_contain_text("idle")
    # the status says where the kernel runs (the tests' service: local, not isolated)
    expect(alice.locator(".kernel-status")).to_have_attribute("data-where", "on the service (not isolated)")
    expect(alice.locator(".isolation-warning")).to_contain_text("Kernels are not isolated here")


def test_chat_message_appears_for_the_other(as_user: Any, api: Any, collab: Any) -> None:
    nb = api("alice").create("Chatty", notebook([{"id": "q1", "source": "answer = 41"}]), group="students", mode="0770")
    alice, bob = as_user("alice"), as_user("bob")
    open_notebook(alice, collab.public_url, nb["id"])
    open_notebook(bob, collab.public_url, nb["id"])
    bob.fill(".chat-input", "hi")
    expect(alice.locator(".chat-typing")).to_have_text("bob is typing…")
    bob.fill(".chat-input", "")
    alice.fill(".chat-input", "@bob is #q1 right? <b>not bold</b>")
    alice.keyboard.press("Enter")
    msg = bob.locator(".chat-msg").last
    expect(msg).to_contain_text("is #q1 right? <b>not bold</b>")
    expect(msg.locator(".mention-me")).to_have_text("@bob")
    msg.locator(".cell-ref").click()
    expect(cell(bob, "q1")).to_have_class(__import__("re").compile("active"))
    bob.fill(".chat-input", "looks good to me")
    bob.keyboard.press("Enter")
    expect(alice.locator(".chat-msg").last).to_contain_text("looks good to me")
    screenshot(alice, "chat")


def test_share_dialog_changes_rights_live(as_user: Any, api: Any, collab: Any) -> None:
    nb = api("alice").create("Shared", notebook([{"id": "s1", "source": "value = 1"}]), mode="0755", default_cell_mode="0644")
    api("alice").chmod_cell(nb["id"], "s1", mode="0644")
    alice, bob = as_user("alice"), as_user("bob")
    open_notebook(alice, collab.public_url, nb["id"])
    open_notebook(bob, collab.public_url, nb["id"])
    expect(cell(bob, "s1").locator(".badge-locked")).to_be_visible()
    # the notebook's dialog in words and rwx
    alice.click(".share-btn")
    dlg = alice.locator("dialog.share-dialog")
    expect(dlg.locator(".share-summary")).to_contain_text("everyone else can open and run, not change cells")
    expect(dlg.locator(".mode-rwx")).to_have_text("rwxr-xr-x")
    screenshot(alice, "share-dialog")
    dlg.locator("button", has_text="Cancel").click()
    # the cell's dialog: let everyone edit this cell
    cell(alice, "s1").locator(".cell-share").click()
    dlg = alice.locator("dialog.share-dialog")
    dlg.locator('tr[data-who="other"] input[data-bit="w"]').check()
    expect(dlg.locator(".share-summary")).to_contain_text("everyone else can read and edit, not run")
    dlg.locator(".share-save").click()
    expect(cell(bob, "s1").locator(".badge-locked")).to_have_count(0)
    type_in_cell(bob, "s1", " + 1")
    expect(cell(alice, "s1")).to_contain_text("value = 1 + 1")
    # and hide it from others: bob sees only the placeholder, at once
    cell(alice, "s1").locator(".cell-share").click()
    dlg = alice.locator("dialog.share-dialog")
    dlg.locator('tr[data-who="other"] input[data-bit="r"]').uncheck()
    dlg.locator('tr[data-who="other"] input[data-bit="w"]').uncheck()
    dlg.locator(".share-save").click()
    expect(cell(bob, "s1").locator(".hidden-placeholder")).to_be_visible()
    expect(cell(bob, "s1")).not_to_contain_text("value = 1")


def _picker(page: Page) -> Any:
    """Open the kernel picker from the kernel status in the toolbar; its dialog."""
    page.click(".kernel-status")
    dlg = page.locator("dialog.kernel-dialog")
    expect(dlg).to_be_visible()
    return dlg


def test_kernel_picker_from_the_kernel_status(as_user: Any, api: Any, collab: Any) -> None:
    nb = api("instructor").create("Picker", notebook([{"id": "p1", "source": "1 + 1"}]), group="students", mode="0754")
    inst, alice, dave = as_user("instructor"), as_user("alice"), as_user("dave")
    for page in (inst, alice, dave):
        open_notebook(page, collab.public_url, nb["id"])
    status = inst.locator(".kernel-status")
    expect(status).to_have_text("python3 · on the service (not isolated) · not running · shared")
    # the owner: the service's own kernelspecs, and the mode control; focus is in the dialog
    dlg = _picker(inst)
    expect(dlg.locator(".kp-x")).to_be_focused()
    local = dlg.locator('.kp-resource[data-resource="local"]')
    expect(local.locator(".kp-label")).to_have_text("the service (not isolated)")
    expect(local.locator("select.kp-spec")).to_have_value("python3")
    expect(local.locator(".kp-badge")).to_have_text("in use")
    expect(dlg.locator(".kp-mode-text")).to_have_attribute("data-mode", "shared")
    # a student in shared mode reads who picks, and sees it change live
    alice_dlg = _picker(alice)
    expect(alice_dlg.locator(".kp-readonly")).to_have_text("The owner, instructor, picks where the shared kernel runs.")
    expect(alice_dlg.locator(".kp-use")).to_have_count(0)
    screenshot(inst, "kernel-picker")
    dlg.locator(".kp-mode-button").click()
    expect(status).to_have_attribute("data-mode", "per-user")
    expect(status).to_contain_text("per-user")
    expect(dlg.locator(".kp-mode-text")).to_have_attribute("data-mode", "per-user")
    expect(dlg.locator(".kp-notice")).to_have_text("The kernel mode is now per-user.")
    inst.keyboard.press("Escape")
    expect(dlg).to_have_count(0)
    expect(status).to_be_focused()
    # the student now picks for themselves: python3 on the service (already theirs: a no-op)
    expect(alice.locator(".kernel-status")).to_have_attribute("data-mode", "per-user")
    expect(alice_dlg.locator(".kp-readonly")).to_have_count(0)
    alice_local = alice_dlg.locator('.kp-resource[data-resource="local"]')
    alice_local.locator("select.kp-spec").select_option("python3")
    alice_local.locator(".kp-use").click()
    expect(alice_dlg.locator(".kp-notice")).to_have_text("Using python3 on the service (not isolated).")
    expect(alice_dlg.locator(".kp-error")).to_be_hidden()
    alice.keyboard.press("Escape")
    expect(alice_dlg).to_have_count(0)
    expect(alice.locator(".kernel-status")).to_be_focused()
    # opened with the keyboard: the focused control shows it
    alice.keyboard.press("Enter")
    expect(alice_dlg).to_be_visible()
    assert alice.evaluate("() => { const el = document.activeElement; return !!el.closest('dialog.kernel-dialog') && el.matches(':focus-visible') && getComputedStyle(el).outlineStyle; }") == "solid"
    alice.keyboard.press("Escape")
    expect(alice_dlg).to_have_count(0)
    # without notebook x: the picker says why, and nothing breaks
    dave_dlg = _picker(dave)
    expect(dave_dlg.locator(".kp-error")).to_have_text(
        "You cannot choose where this notebook's kernel runs: you may not pick where this notebook's kernel runs (it needs notebook x)"
    )
    expect(dave_dlg.locator(".kp-now-text")).to_contain_text("python3 · on the service (not isolated)")
    dave_dlg.locator(".kp-close").click()
    expect(dave_dlg).to_have_count(0)
    for page in (inst, alice, dave):
        assert page.errors == [] and page.dialogs == []  # type: ignore[attr-defined]


# Records each text the server's progress line shows, as the page draws it.
RECORD_PROGRESS = """() => {
    window.__progress = [];
    new MutationObserver(() => {
        for (const el of document.querySelectorAll('.kp-resource[data-resource="server:"] .kp-progress-text')) {
            if (window.__progress.at(-1) !== el.textContent) window.__progress.push(el.textContent);
        }
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
}"""


@pytest.fixture
def on_servers(spawning_hub: Any, spawning_collab: Any) -> Iterator[Any]:
    """``spawning_collab`` running kernels on the users' own Hub servers (put back after)."""
    old = list(spawning_collab.extra_args)
    spawning_collab.extra_args = [*old, "--HubCollab.kernel_provider=hub"]
    spawning_collab.restart()
    try:
        yield spawning_collab
    finally:
        spawning_hub.stop_all_servers()
        spawning_collab.extra_args = old
        spawning_collab.restart()


def test_kernel_picker_starts_a_server_with_its_progress_and_says_why_one_failed(
    browser: Browser, spawning_hub: Any, on_servers: Any
) -> None:
    collab = on_servers
    # a named server whose spawner fails: tried once through the Hub, it is listed stopped
    spawning_hub.api("POST", "users/alice/servers/broken", expect=(201, 202, 500))
    nb = Api(collab.public_url, spawning_hub.token("alice")).create("On my server", notebook([{"id": "s1", "source": "1 + 1"}]))
    ctx, page = login(browser, collab.public_url, "alice")
    try:
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        open_notebook(page, collab.public_url, nb["id"])
        dlg = _picker(page)
        default = dlg.locator('.kp-resource[data-resource="server:"]')
        broken = dlg.locator('.kp-resource[data-resource="server:broken"]')
        expect(dlg.locator("h3")).to_have_text(["Your server", "Your named servers"])
        expect(default.locator(".kp-state")).to_have_text("stopped", timeout=30_000)
        expect(broken.locator(".kp-state")).to_have_text("stopped", timeout=30_000)
        # a failed start: the spawner's reason, in that server's row
        broken.locator(".kp-start").click()
        expect(broken.locator(".kp-start-error")).to_contain_text(FAILING_SERVER_MESSAGE, timeout=60_000)
        expect(broken.locator(".kp-start")).to_be_visible()
        # a good start: the progress bar and the Hub's messages, then its kernelspecs (a start
        # can be quicker than a look at the page, so the page records what its bar showed)
        page.evaluate(RECORD_PROGRESS)
        default.locator(".kp-start").click()
        expect(default.locator(".kp-state")).to_have_text("running", timeout=120_000)
        shown = page.evaluate("window.__progress")
        assert shown[0] == "Starting…" and any("% · " in text for text in shown), shown
        expect(default.locator(".kp-progress")).to_have_count(0)
        expect(default.locator("select.kp-spec")).to_have_value("python3")
        expect(dlg.locator(".kp-notice")).to_have_text("your default server is running.")
        # alice owns the notebook: its shared kernel goes on her server only once she agrees
        expect(default.locator(".kp-badge")).to_have_text("not chosen yet")
        default.locator(".kp-use").click()
        expect(dlg.locator(".kp-error")).to_contain_text("Could not switch the kernel: consent must be true")
        default.get_by_label("I agree: everyone who may run this notebook's cells will run code as me, alice").check()
        default.locator(".kp-use").click()
        expect(dlg.locator(".kp-notice")).to_have_text("Using python3 on alice's server.")
        expect(dlg.locator(".kp-error")).to_be_hidden()
        expect(default.locator(".kp-badge")).to_have_text("in use")
        expect(page.locator(".kernel-status")).to_have_attribute("data-where", "on alice's server")
        assert errors == []
    finally:
        ctx.close()


XSS_HTML = "".join([
    "<script>window.__xss = 'script'</script>",
    "<img src=x onerror=\"window.__xss = 'onerror'\">",
    "<a id=jslink href=\"javascript:window.__xss = 'jslink'\">click me</a>",
    "<svg><script>window.__xss = 'svg-script'</script><circle r=5 onload=\"window.__xss = 'svg-onload'\"/></svg>",
    "<iframe srcdoc=\"<script>parent.__xss = 'iframe'</script>\"></iframe>",
    "<details open ontoggle=\"window.__xss = 'ontoggle'\"><summary>s</summary></details>",
    "<form action=\"javascript:window.__xss = 'form'\"><button id=formbtn>go</button></form>",
    "<div style=\"position:fixed;inset:0;z-index:99999;background:red\" id=overlay>overlay</div>",
    "<p onclick=\"window.__xss = 'onclick'\" id=clickme>click</p>",
    "<style>body { display: none }</style>",
])
XSS_SVG = (
    "<svg xmlns='http://www.w3.org/2000/svg' onload=\"window.__xss = 'svg-doc'\">"
    "<script>window.__xss = 'svg-doc-script'</script><a href=\"javascript:window.__xss = 'svg-a'\"><text y='20'>x</text></a></svg>"
)
XSS_MD = (
    "# Title\n\n[a link](javascript:window.__xss='md-link') <img src=x onerror=\"window.__xss='md-img'\">\n\n"
    "<script>window.__xss='md-script'</script>\n\n$x$ <svg onload=\"window.__xss='md-svg'\"></svg>"
)


def test_malicious_outputs_and_markdown_do_not_execute_for_another_user(as_user: Any, api: Any, collab: Any) -> None:
    outputs = [
        {"output_type": "display_data", "data": {"text/html": XSS_HTML, "text/plain": "x"}, "metadata": {}},
        {"output_type": "display_data", "data": {"image/svg+xml": XSS_SVG}, "metadata": {}},
        {"output_type": "display_data", "data": {"text/markdown": XSS_MD}, "metadata": {}},
        {"output_type": "stream", "name": "stdout", "text": "<script>window.__xss='stream'</script>\x1b[31mred\x1b[0m"},
        {"output_type": "error", "ename": "E", "evalue": "<img src=x onerror=\"window.__xss='tb'\">", "traceback": ["<img src=x onerror=\"window.__xss='tb'\">"]},
    ]
    nb = api("alice").create(
        "Evil",
        notebook([{"id": "evil", "source": "evil()", "outputs": outputs}, {"id": "md", "cell_type": "markdown", "source": XSS_MD}]),
        group="students",
        mode="0770",
    )
    alice, bob = as_user("alice"), as_user("bob")
    open_notebook(alice, collab.public_url, nb["id"])
    open_notebook(bob, collab.public_url, nb["id"])
    # alice also writes malicious markdown live
    cell(alice, "md").locator(".cell-rendered").dblclick()
    alice.keyboard.press("Control+End")
    alice.keyboard.type("\n\n<img src=y onerror=\"window.__xss='live'\"> [x](javascript:window.__xss='live-link')")
    alice.keyboard.press("Shift+Enter")
    expect(cell(bob, "md").locator(".cell-rendered")).to_contain_text("x")
    cell(bob, "md").scroll_into_view_if_needed()  # markdown is rendered when near the viewport
    expect(cell(bob, "md").locator(".cell-rendered img")).to_have_count(2)
    out = cell(bob, "evil").locator(".cell-outputs")
    expect(out.locator(".output-html")).to_contain_text("click me")
    expect(out.locator(".output-stream")).to_contain_text("<script>window.__xss='stream'</script>red")
    # nothing dangerous survived in the DOM ...
    bad = bob.evaluate(
        """() => {
        const found = [];
        for (const el of document.querySelectorAll('.cells *')) {
            if (['SCRIPT', 'IFRAME', 'FORM', 'STYLE', 'OBJECT', 'EMBED'].includes(el.tagName)) found.push(el.tagName);
            for (const a of el.attributes) {
                if (a.name.startsWith('on')) found.push(el.tagName + '@' + a.name);
                if (/^\\s*javascript:/i.test(a.value)) found.push(el.tagName + '@' + a.name + '=js');
            }
        }
        return found;
    }"""
    )
    assert bad == []
    # ... clicking what is left does nothing, the overlay stays inside the output box
    for sel in ("#jslink", "#clickme", ".cell-rendered a"):
        for i in range(bob.locator(sel).count()):
            link = bob.locator(sel).nth(i)
            try:
                link.click(modifiers=[], no_wait_after=True, force=True, timeout=15_000)
            except PlaywrightError:
                # no box in the viewport to click (an empty link, or a cell the page has
                # not laid out while off screen): its click event, which runs a link's
                # action as a click would
                link.dispatch_event("click")
    box = out.bounding_box()
    overlay = bob.locator("#overlay").bounding_box()
    assert box and overlay and overlay["height"] <= box["height"] + 1
    expect(bob.locator(".nb-header")).to_be_visible()  # no <style> hid the page
    bob.wait_for_timeout(500)
    for page in (alice, bob):
        assert page.evaluate("window.__xss") is None
        assert page.dialogs == []  # type: ignore[attr-defined]
    assert len(bob.context.pages) == 1


# -- history (issue 15) ---------------------------------------------------------------------

HISTORY_SECRET = "HIDDEN-UI-3c5a90d1"


def focused_outline(page: Page) -> str:
    return str(page.evaluate("getComputedStyle(document.activeElement).outlineStyle"))


def test_past_runs_and_the_notebook_at_a_time_show_outputs_as_cells_do(as_user: Any, api: Any, collab: Any) -> None:
    """A cell's past runs (who, when, how) with their outputs as they were, drawn as the
    page draws a cell's (HTML sanitized), and the notebook at a time with its outputs and
    rendered markdown (docs/history.md)."""
    alice_api = api("alice")
    source = "from IPython.display import HTML, display\nn = globals().get('n', 0) + 1\ndisplay(HTML(f'<b class=\"run\">run {n}</b><img src=x onerror=\"window.__xss=1\">'))"
    nb = alice_api.create(
        "runs in the browser",
        notebook([{"id": "c0", "source": source}, {"id": "m0", "cell_type": "markdown", "source": "# Heading"}]),
        group="students",
        mode="0770",
    )["id"]
    try:
        for _ in range(2):
            alice_api.call("POST", f"api/notebooks/{nb}/cells/c0/execute?wait=1")
        bob = as_user("bob")
        open_notebook(bob, collab.public_url, nb)
        cell(bob, "c0").locator(".cell-history").click()
        runs = bob.locator(".history-dialog .history-run")
        expect(runs).to_have_count(2, timeout=20_000)
        expect(runs.nth(0)).to_contain_text("alice · [2] · ok")
        runs.nth(1).focus()
        bob.keyboard.press("Enter")
        outputs = bob.locator(".history-dialog .history-outputs")
        expect(outputs.locator("b.run")).to_have_text("run 1")
        expect(outputs.locator("img[onerror]")).to_have_count(0)
        bob.keyboard.press("Escape")
        bob.locator(".history-btn").click()
        bob.fill(".time-travel-at", "2099-01-01T00:00:00")
        bob.locator(".time-travel-at").press("Enter")
        expect(bob.locator('.time-travel-cell[data-cell-id="c0"] .tt-output b.run')).to_have_text("run 2", timeout=20_000)
        expect(bob.locator('.time-travel-cell[data-cell-id="m0"] h1')).to_have_text("Heading")
        assert bob.evaluate("window.__xss") is None
        assert bob.errors == []  # type: ignore[attr-defined]
    finally:
        alice_api.call("DELETE", f"api/notebooks/{nb}/kernel")


def test_a_cells_history_panel_and_the_notebooks_history(as_user: Any, api: Any, collab: Any) -> None:
    """A cell's history panel (timeline, diff, restore) with the keyboard, the restore
    reaching another user's page live, the notebook's activity feed and the notebook at
    a time, and nothing of a hidden cell in any of them (docs/history.md)."""
    teacher = api("instructor")
    nb = teacher.create(
        "history in the browser",
        notebook([{"id": "task", "source": "x = 1"}, {"id": "secret", "source": f"print({HISTORY_SECRET!r})"}]),
        group="students",
        mode="1770",
        default_cell_mode="0770",
    )["id"]
    teacher.chmod_cell(nb, "secret", mode="0700")
    alice, bob = as_user("alice"), as_user("bob")
    open_notebook(alice, collab.public_url, nb)
    open_notebook(bob, collab.public_url, nb)
    type_in_cell(alice, "task", "\ny = 2")
    expect(cell(bob, "task").locator(".cm-content, .cell-preview").first).to_contain_text("y = 2", timeout=20_000)
    alice.keyboard.press("Escape")
    # the hidden cell has no history button; the task has one, reached with the keyboard
    expect(cell(alice, "secret").locator(".cell-history")).to_have_count(0)
    button = cell(alice, "task").locator(".cell-history")
    button.focus()
    alice.keyboard.press("Enter")
    dialog = alice.locator(".history-dialog")
    expect(dialog).to_be_visible()
    versions = dialog.locator(".history-version")
    expect(versions).to_have_count(2, timeout=20_000)
    expect(versions.nth(0)).to_contain_text("alice")
    expect(versions.nth(1)).to_contain_text("instructor")
    assert alice.evaluate("document.activeElement.classList.contains('history-version')")
    assert focused_outline(alice) != "none", "the focused version shows its focus"
    alice.keyboard.press("ArrowDown")
    alice.keyboard.press("Enter")
    expect(dialog.locator(".history-source")).to_have_text("x = 1")
    expect(dialog.locator(".history-diff .diff-add")).to_contain_text(["+y = 2"])
    restore = dialog.locator(".history-restore")
    expect(restore).to_be_enabled()
    restore.focus()
    alice.keyboard.press("Enter")
    expect(dialog).to_have_count(0)
    # the restore reaches bob's page live
    expect(cell(bob, "task").locator(".cm-content, .cell-preview").first).not_to_contain_text("y = 2", timeout=20_000)
    expect(cell(bob, "task").locator(".cm-content, .cell-preview").first).to_contain_text("x = 1")
    # bob's panel shows alice's restore as the newest version, a version of its own
    cell(bob, "task").locator(".cell-history").click()
    expect(bob.locator(".history-version")).to_have_count(3, timeout=20_000)
    expect(bob.locator(".history-version").first).to_contain_text("alice")
    bob.keyboard.press("Escape")
    expect(bob.locator(".history-dialog")).to_have_count(0)

    # the notebook's history: the feed, then the notebook at a time, read-only
    bob.locator(".history-btn").click()
    feed = bob.locator(".activity-item")
    expect(feed.filter(has_text="edited cell task").first).to_be_visible(timeout=20_000)
    expect(feed.filter(has_text="secret")).to_have_count(0)
    travel = bob.locator(".activity-travel").last
    travel.focus()
    bob.keyboard.press("Enter")
    cells = bob.locator(".time-travel-cell")
    expect(cells).to_have_count(1, timeout=20_000)
    assert cells.first.get_attribute("data-cell-id") == "task"
    expect(bob.locator(".time-travel-download")).to_have_attribute("href", re.compile(rf"api/notebooks/{nb}/history\?at=[0-9.]+&download=1$"))
    # and at a moment typed in, through the form: one to come shows the notebook as it is
    bob.fill(".time-travel-at", "2099-01-01T00:00:00")
    bob.locator(".time-travel-at").press("Enter")
    expect(bob.locator(".time-travel-cell .tt-source").first).to_have_text("x = 1", timeout=20_000)
    assert HISTORY_SECRET not in bob.content()
    for page in (alice, bob):
        assert page.errors == []  # type: ignore[attr-defined]
