"""Every action by keyboard, with the focus drawn where it is (issue 16, accessibility),
in a real browser (headless Chromium, Playwright) through the real Hub login.

Tab walks: from the top of the home page, and of a notebook page (header, toolbar, the
active cell and each cell's controls, a cell's comments, the chat), *Tab* is pressed until
the focus comes back to the first element it was on or leaves the page (coming back to
any other would be a trap). Each element it reaches must be on screen, and its focus
drawn: its computed style focused differs from its style after ``blur()`` by an outline
(or a box shadow, border or background). For CodeMirror's editable content the focus is
drawn on the editor's frame (``.cm-editor``, which CodeMirror marks ``cm-focused``). The
page's main actions must be among the elements reached, and a few are then done with the
keyboard alone: create and open a notebook (and import one, the file given to the focused
file box); share a notebook (and cancel); hide, show and use the chat; run a cell.

Cells work as in Jupyter: a cell's editor is no Tab stop (*Tab* indents in it). The active
cell is (command mode): *Enter* there edits it, *Esc* in the editor goes back to the cell;
*Tab* and *Shift+Tab* from a cell go through the cells' controls (comments, history,
share, links in what a cell shows), never into an editor; also in a notebook long enough
to be windowed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect
from ui_helpers import CHROMIUM, Api, cell, notebook, open_notebook

assert os.path.exists(CHROMIUM), f"no Chromium at {CHROMIUM}: run scripts/setup (or apt-get install chromium)"

KERNEL_TIMEOUT = 90_000
MAX_TABS = 250

# Describes the focused element after a Tab: a numeric id (the same element keeps it, so a
# walk knows when the focus came back), whether it is on screen, and its style focused and
# then blurred (after two frames each: CodeMirror marks its frame on focus changes), where
# the focus is drawn (the element; CodeMirror's frame for its content). Focus is then put
# back, so that the next Tab goes on from here. null: the focus left the page.
FOCUS_STEP = """async () => {
  const el = document.activeElement;
  if (!el || el === document.body || el === document.documentElement) return null;
  window.__kbdIds ??= new WeakMap();
  window.__kbdN ??= 0;
  let id = window.__kbdIds.get(el);
  const seen = id !== undefined;
  if (!seen) window.__kbdIds.set(el, (id = ++window.__kbdN));
  const frames = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const box = el.closest('.cm-editor') ?? el;
  const PROPS = ['outline-style', 'outline-width', 'outline-color', 'outline-offset', 'box-shadow',
    'border-top-color', 'border-right-color', 'border-bottom-color', 'border-left-color',
    'border-top-width', 'border-left-width', 'background-color'];
  const read = () => { const s = getComputedStyle(box); return Object.fromEntries(PROPS.map((p) => [p, s.getPropertyValue(p)])); };
  const label = (el.getAttribute('aria-label') || el.getAttribute('title') || el.textContent || el.getAttribute('placeholder') || '').trim().replace(/\\s+/g, ' ').slice(0, 50);
  const cls = typeof el.className === 'string' ? el.className.trim().split(/\\s+/).filter(Boolean).map((c) => '.' + c).join('') : '';
  const name = `${el.tagName.toLowerCase()}${cls} “${label}”`;
  if (seen) return { id, seen, name };
  await frames();
  const r = el.getBoundingClientRect();
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  const onScreen = r.width > 0 && r.height > 0 && r.bottom > 0 && r.right > 0 && r.top < innerHeight && r.left < innerWidth;
  const shown = el.checkVisibility({ opacityProperty: true, visibilityProperty: true });
  const uncovered = !!hit && (hit === el || el.contains(hit));
  const focusVisible = el.matches(':focus-visible');
  const focused = read();
  el.blur();
  await frames();
  const plain = read();
  el.focus({ preventScroll: true });
  await frames();
  return { id, seen, name, onScreen, shown, uncovered, hit: hit ? hit.tagName.toLowerCase() + '.' + hit.className : null,
    focusVisible, focused, plain, back: document.activeElement === el };
}"""

REACHED = "(el) => !!window.__kbdIds && window.__kbdIds.has(el)"


def _px(value: str) -> float:
    m = re.match(r"[\d.]+", value)
    return float(m.group()) if m else 0.0


def _transparent(color: str) -> bool:
    return color in ("transparent", "") or bool(re.fullmatch(r"rgba\(.*,\s*0\)", color))


def focus_problems(step: dict[str, Any]) -> list[str]:
    """What is wrong with how one focused element shows (nothing: an empty list)."""
    name = step["name"]
    problems = []
    if not (step["onScreen"] and step["shown"]):
        problems.append(f"{name}: focused but not on screen")
    elif not step["uncovered"]:
        problems.append(f"{name}: focused but covered by {step['hit']}")
    f, p = step["focused"], step["plain"]
    outline = f["outline-style"] != "none" and _px(f["outline-width"]) > 0 and not _transparent(f["outline-color"])
    outline_new = outline and any(f[k] != p[k] for k in ("outline-style", "outline-width", "outline-color"))
    others = [k for k in ("box-shadow", "background-color") if f[k] != p[k]]
    others += [k for k in f if k.startswith("border-") and f[k] != p[k]]
    if not (outline_new or others):
        problems.append(f"{name}: no visible focus (focused {_short(f)}; unfocused {_short(p)})")
    if not step["back"]:
        problems.append(f"{name}: could not be focused again")
    return problems


def _short(style: dict[str, str]) -> str:
    return f"outline {style['outline-style']} {style['outline-width']} {style['outline-color']}, box-shadow {style['box-shadow']}"


class Walk:
    """The elements a keyboard walk reached, in order, and what was wrong with their focus."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.names: list[str] = []
        self.problems: list[str] = []
        self.first: int | None = None  # the first element's id

    def step(self) -> dict[str, Any] | None:
        """Look at the focused element (None: the focus left the page)."""
        result: dict[str, Any] | None = self.page.evaluate(FOCUS_STEP)
        if result and not result["seen"]:
            self.first = self.first or result["id"]
            self.names.append(result["name"])
            self.problems.extend(focus_problems(result))
        return result

    def tab_through(self, inside: str | None = None) -> None:
        """Tab until the focus comes back to the first element reached or leaves the page;
        back to any other element is a trap. ``inside``: the focus must stay inside that
        selector (an open dialog). Never in a cell's editor (no Tab stop: Tab indents there)."""
        # (the home page lists every notebook other tests made readable by everyone too)
        limit = max(MAX_TABS, 2 * self.page.locator("a[href], button, input, select, textarea, [tabindex]").count())
        for _ in range(limit):
            self.page.keyboard.press("Tab")
            step = self.step()
            if step is None:
                return
            if step["seen"]:
                assert step["id"] == self.first, f"Tab trapped: back to {step['name']}, not to the first element; reached:\n" + "\n".join(self.names)
                return
            assert not in_editor(self.page), f"Tab went into an editor: {step['name']}"
            if inside is not None:
                assert self.page.evaluate("(sel) => !!document.activeElement.closest(sel)", inside), f"Tab left {inside} for {step['name']}"
        raise AssertionError(f"{limit} Tabs without coming back: {self.names[-20:]}")

    def assert_focus_drawn(self) -> None:
        assert not self.problems, "focus not visible on:\n" + "\n".join(self.problems)

    def assert_reached(self, *locators: Locator) -> None:
        missed = []
        for loc in locators:
            expect(loc.first).to_be_attached()
            for i in range(loc.count()):
                if not loc.nth(i).evaluate(REACHED):
                    missed.append(loc.nth(i).evaluate("(el) => el.outerHTML.slice(0, 160)"))
        assert not missed, "not reached with Tab:\n" + "\n".join(missed) + "\nreached, in order:\n" + "\n".join(self.names)


def in_editor(page: Page) -> bool:
    return bool(page.evaluate("() => !!document.activeElement?.closest('.cm-editor')"))


def focused(page: Page) -> str:
    """The focused element, for messages."""
    return str(page.evaluate("() => document.activeElement?.outerHTML.slice(0, 120)"))


def tab_to(page: Page, target: Locator, key: str = "Tab", most: int = MAX_TABS) -> None:
    """Press ``key`` until ``target`` has the focus (the keyboard only)."""
    passed = []
    for _ in range(most):
        if target.evaluate("(el) => el === document.activeElement"):
            return
        page.keyboard.press(key)
        passed.append(page.evaluate("() => document.activeElement?.outerHTML.slice(0, 80)"))
    raise AssertionError(f"{key} never reached {target}; passed: {passed[-15:]}")


def fresh_user(hub: Any, collab: Any) -> tuple[str, Api]:
    """A user of this test alone (the home page lists exactly what the test made)."""
    name = f"kbd{secrets.token_hex(3)}"
    hub.create_user(name)
    return name, Api(collab.public_url, hub.token(name))


@pytest.fixture
def user(hub: Any, collab: Any) -> tuple[str, Api]:
    return fresh_user(hub, collab)


# -- the home page ----------------------------------------------------------------------------


def test_home_page_every_control_by_tab_with_visible_focus(as_user: Any, hub: Any, collab: Any, user: tuple[str, Api], tmp_path: Any) -> None:
    name, api = user
    mine = api.create("Keyboard mine", notebook([{"id": "k1", "source": "1 + 1"}]))["id"]
    inst = Api(collab.public_url, hub.token("instructor"))
    shared = inst.create(f"Keyboard shared with {name}", notebook([{"id": "s1", "source": "2"}]))["id"]
    inst.chmod(shared, acl=[f"user:{name}:r-x"])
    page = as_user(name)
    # (notebooks other tests made readable by everyone are listed too: only these two count)
    expect(page.locator(f'.nb-mine .nb-item[data-id="{mine}"], .nb-shared .nb-item[data-id="{shared}"]')).to_have_count(2)
    expect(page.locator(".nb-mine .nb-item")).to_have_count(1)

    walk = Walk(page)
    walk.tab_through()
    walk.assert_focus_drawn()
    walk.assert_reached(
        page.get_by_role("textbox", name="new notebook name"),
        page.get_by_role("button", name="Create"),
        page.locator("input.import-file"),
        page.locator(".nb-link"),
        page.locator(f'.nb-item[data-id="{mine}"] .nb-delete'),
    )

    # open a notebook: Tab to its link, Enter
    page.reload()
    page.wait_for_selector(".nb-item")
    tab_to(page, page.locator(f'.nb-item[data-id="{shared}"] .nb-link'))
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/notebooks/{shared}")
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)

    # create one: Tab to the name, type it, Tab to Create, Space
    page.goto(collab.public_url)
    page.wait_for_selector(".nb-item")
    tab_to(page, page.locator(".new-name"))
    page.keyboard.type("Made by keyboard")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Create")).to_be_focused()
    page.keyboard.press("Space")
    page.wait_for_url(re.compile(r".*/notebooks/[^/]+$"))
    made = page.url.rsplit("/", 1)[1]
    assert {n["id"]: n["name"] for n in api.call("GET", "api/notebooks")["notebooks"]}.get(made) == "Made by keyboard"

    # import one: Tab reaches the file box, a native file input (the browser opens its chooser
    # from the keyboard: pressing Space there in headless Chromium did not always open it
    # within 30 s on a busy machine, so the file is given to the focused box directly)
    ipynb = tmp_path / "Imported by keyboard.ipynb"
    ipynb.write_text(json.dumps(notebook([{"id": "i1", "source": "print('imported')"}])))
    page.goto(collab.public_url)
    page.wait_for_selector(".nb-item")
    tab_to(page, page.locator("input.import-file"))
    expect(page.locator("input.import-file")).to_be_focused()
    assert page.locator("input.import-file").evaluate("(el) => el.type === 'file' && !el.disabled && el.tabIndex >= 0")
    page.locator("input.import-file").set_input_files(str(ipynb))
    page.wait_for_url(re.compile(r".*/notebooks/[^/]+$"))
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    expect(cell(page, "i1")).to_contain_text("print('imported')")
    assert page.errors == [] and page.dialogs == []  # type: ignore[attr-defined]


# -- the notebook page ------------------------------------------------------------------------


def two_cells(api: Api, title: str, first: str = "x = 1", notes: str = "# Notes") -> str:
    nb: str = api.create(title, notebook([{"id": "c1", "source": first}, {"id": "m1", "cell_type": "markdown", "source": notes}]))["id"]
    return nb


def open_for_keys(page: Page, collab: Any, nb: str) -> None:
    """Open the notebook and wait for the first cell's editor (the focus is nowhere yet)."""
    open_notebook(page, collab.public_url, nb)
    expect(cell(page, "c1").locator(".cm-content")).to_be_attached(timeout=30_000)
    expect(page.locator(".kernel-status")).not_to_have_text("kernel: …")


def before_the_top(page: Page, first: Locator) -> None:
    """Put the keyboard before the page's first control ``first``: the next Tab reaches it."""
    first.focus()
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("() => document.activeElement === document.body"), page.evaluate("() => document.activeElement.outerHTML.slice(0, 120)")


def test_notebook_page_every_control_by_tab_with_visible_focus(as_user: Any, collab: Any, user: tuple[str, Api]) -> None:
    name, api = user
    nb = two_cells(api, "Keyboard walk", notes="# Notes\n\nSee [the docs](https://example.org/docs).")
    page = as_user(name)
    open_for_keys(page, collab, nb)
    # the first cell's comments, opened by keyboard, are walked through too
    tab_to(page, cell(page, "c1").locator(".comment-btn"))
    page.keyboard.press("Enter")
    panel = page.locator('.comment-panel[data-cell-id="c1"]')
    expect(panel.locator("textarea.comment-new")).to_be_focused()
    before_the_top(page, page.locator(".home-link"))

    walk = Walk(page)
    walk.tab_through()  # never into an editor (checked at each step)
    walk.assert_focus_drawn()
    toolbar = page.get_by_role("toolbar")
    walk.assert_reached(
        page.locator(".home-link"),
        toolbar.get_by_role("button"),
        toolbar.get_by_role("combobox", name="Cell type"),
        cell(page, "c1"),  # the active cell: command mode, Enter edits it
        cell(page, "c1").locator(".comment-btn, .cell-history, .cell-share"),
        panel.locator("textarea, button"),
        cell(page, "m1").locator(".comment-btn, .cell-history, .cell-share, .cell-rendered a"),
        page.locator(".chat").get_by_role("button", name="×"),
        page.get_by_role("textbox", name="chat message"),
        page.get_by_role("button", name="Send"),
    )
    editors = page.locator(".cm-editor, .cm-editor *").evaluate_all(f"(els) => els.filter({REACHED}).map((el) => el.outerHTML.slice(0, 80))")
    assert editors == [], f"reached with Tab, in an editor: {editors}"
    # Tab never went into the source (no indentation typed)
    expect(cell(page, "c1").locator(".cm-content")).to_have_text("x = 1")
    assert page.errors == [] and page.dialogs == []  # type: ignore[attr-defined]


def test_share_dialog_by_keyboard_gives_the_focus_back(as_user: Any, collab: Any, user: tuple[str, Api]) -> None:
    name, api = user
    nb = two_cells(api, "Keyboard share")
    before = api.call("GET", f"api/notebooks/{nb}/permissions")["mode"]
    page = as_user(name)
    open_for_keys(page, collab, nb)
    share = page.get_by_role("button", name="Share", exact=True)
    tab_to(page, share)
    page.keyboard.press("Enter")
    dlg = page.get_by_role("dialog", name="Share “Keyboard share”")
    expect(dlg).to_be_visible()
    expect(dlg.get_by_role("textbox", name="owner")).to_be_focused()

    # every control of the dialog, Tab kept inside, each with its focus drawn
    walk = Walk(page)
    walk.step()
    walk.tab_through(inside="dialog.share-dialog")
    walk.assert_focus_drawn()
    walk.assert_reached(dlg.get_by_role("checkbox"), dlg.get_by_role("textbox"), dlg.get_by_role("button"), dlg.get_by_role("combobox"))

    # Esc: nothing changes, the focus is back on Share
    page.keyboard.press("Escape")
    expect(dlg).to_have_count(0)
    expect(share).to_be_focused()

    # again: everyone else may open it (Space on the box), Save with Enter
    page.keyboard.press("Enter")
    expect(dlg).to_be_visible()
    others = dlg.get_by_role("checkbox", name="everyone else: open")
    was = others.is_checked()
    tab_to(page, others)
    page.keyboard.press("Space")
    expect(others).to_be_checked(checked=not was)
    expect(others).to_be_focused()  # the dialog drew itself again, the focus stayed
    tab_to(page, dlg.get_by_role("button", name="Save"))
    page.keyboard.press("Enter")
    expect(page.locator(".toast", has_text="Permissions saved.")).to_be_visible()
    expect(dlg).to_have_count(0)
    expect(share).to_be_focused()
    after = api.call("GET", f"api/notebooks/{nb}/permissions")["mode"]
    assert int(after, 8) == int(before, 8) ^ 0o004, (before, after)
    assert page.errors == [] and page.dialogs == []  # type: ignore[attr-defined]


def test_chat_by_keyboard(as_user: Any, collab: Any, user: tuple[str, Api]) -> None:
    name, api = user
    nb = two_cells(api, "Keyboard chat")
    page = as_user(name)
    open_for_keys(page, collab, nb)
    chat, button = page.locator("aside.chat"), page.get_by_role("button", name="Chat", exact=True)
    expect(chat).to_be_visible()  # a wide window shows it
    tab_to(page, button)
    page.keyboard.press("Enter")
    expect(chat).to_be_hidden()
    expect(button).to_be_focused()
    page.keyboard.press("Enter")
    expect(chat).to_be_visible()
    box = page.get_by_role("textbox", name="chat message")
    expect(box).to_be_focused()
    page.keyboard.type("sent with the keyboard")
    page.keyboard.press("Enter")
    expect(chat.locator(".chat-msg.mine .chat-text")).to_have_text("sent with the keyboard")
    expect(box).to_have_value("")
    expect(box).to_be_focused()
    # back to the message's own buttons and the panel's ×, then hide it: the focus goes to Chat
    tab_to(page, chat.locator(".chat-msg.mine").get_by_role("button", name="edit"), key="Shift+Tab")
    close = chat.get_by_role("button", name="×")
    tab_to(page, close, key="Shift+Tab")
    page.keyboard.press("Enter")
    expect(chat).to_be_hidden()
    expect(button).to_be_focused()
    assert page.errors == [] and page.dialogs == []  # type: ignore[attr-defined]


def test_run_a_cell_by_keyboard(as_user: Any, collab: Any, user: tuple[str, Api]) -> None:
    name, api = user
    nb = two_cells(api, "Keyboard run", first="print(6 * 7)")
    page = as_user(name)
    open_for_keys(page, collab, nb)
    # Tab reaches the active cell (the first), never its editor; Enter edits it
    before_the_top(page, page.locator(".home-link"))
    tab_to(page, cell(page, "c1"))
    expect(page.locator("body")).to_have_attribute("data-mode", "command")
    page.keyboard.press("Enter")
    expect(cell(page, "c1").locator(".cm-content")).to_be_focused()
    expect(page.locator("body")).to_have_attribute("data-mode", "edit")
    page.keyboard.press("Shift+Enter")
    expect(cell(page, "c1").locator(".output-stream")).to_have_text("42\n", timeout=KERNEL_TIMEOUT)
    # it moved on to the markdown cell, in command mode, its focus drawn
    expect(page.locator("body")).to_have_attribute("data-mode", "command")
    expect(cell(page, "m1")).to_be_focused()
    walk = Walk(page)
    walk.step()
    walk.assert_focus_drawn()
    # Enter edits it, Esc leaves the editor, Tab goes on to its own first control
    page.keyboard.press("Enter")
    expect(cell(page, "m1").locator(".cm-content")).to_be_focused()
    page.keyboard.press("Escape")
    expect(cell(page, "m1")).to_be_focused()
    page.keyboard.press("Tab")
    expect(cell(page, "m1").locator(".comment-btn")).to_be_focused()
    assert page.errors == [] and page.dialogs == []  # type: ignore[attr-defined]


def test_tab_from_a_cell_through_its_controls_never_into_an_editor(as_user: Any, collab: Any, user: tuple[str, Api]) -> None:
    """Command mode: from a focused cell Tab goes to its own controls, then the next cell's;
    Shift+Tab back the same way; neither into an editor, where Tab indents. Enter edits the
    focused cell, Esc leaves its editor; from the last cell, the chat hidden, Tab leaves."""
    name, api = user
    nb = api.create(
        "Keyboard cells",
        notebook(
            [
                {"id": "c1", "source": "x = 1"},
                {"id": "m1", "cell_type": "markdown", "source": "# Notes\n\nSee [the docs](https://example.org/docs)."},
                {"id": "c2", "source": "y = 2", "outputs": [{"output_type": "stream", "name": "stdout", "text": "out of c2\n"}]},
            ]
        ),
    )["id"]
    page = as_user(name)
    open_for_keys(page, collab, nb)
    mode = page.locator("body")
    controls = [".comment-btn", ".cell-history", ".cell-share"]

    def tabs(key: str, *selectors: str) -> None:
        for sel in selectors:
            page.keyboard.press(key)
            assert not in_editor(page), f"{key} went into an editor: {focused(page)}"
            expect(page.locator(sel)).to_be_focused()

    # from the first cell: its own controls first, then the next cell's (not its editor)
    before_the_top(page, page.locator(".home-link"))
    tab_to(page, cell(page, "c1"))
    # a screen reader names the cell it is on: its type and place
    expect(page.get_by_role("group", name="code cell 1", exact=True)).to_be_focused()
    tabs("Tab", *[f'.cell[data-cell-id="c1"] {c}' for c in controls])
    tabs("Tab", *[f'.cell[data-cell-id="m1"] {c}' for c in controls], '.cell[data-cell-id="m1"] .cell-rendered a')
    tabs("Tab", '.cell[data-cell-id="c2"] .comment-btn')
    # the markdown cell, by keyboard (command mode: down): Shift+Tab goes back through the
    # first cell's controls, last first, never into its editor (where Shift+Tab un-indents)
    page.keyboard.press("Escape")  # nothing to leave: the comment button keeps the focus
    tab_to(page, cell(page, "c1"), key="Shift+Tab")
    page.keyboard.press("ArrowDown")
    expect(cell(page, "m1")).to_be_focused()
    expect(page.get_by_role("group", name="markdown cell 2", exact=True)).to_be_focused()
    tabs("Shift+Tab", *[f'.cell[data-cell-id="c1"] {c}' for c in reversed(controls)])
    # on up to the page's top: no editor on the way, out of the page at the end
    for _ in range(MAX_TABS):
        page.keyboard.press("Shift+Tab")
        assert not in_editor(page), f"Shift+Tab went into an editor: {focused(page)}"
        if page.evaluate("() => document.activeElement === document.body || !document.hasFocus()"):
            break
    else:
        raise AssertionError("Shift+Tab never left the page")
    expect(cell(page, "c1").locator(".cm-content")).to_have_text("x = 1")

    # Enter edits the focused cell (the one Tab reaches: the active one), Tab indents there,
    # Esc goes back to the cell and Tab on to its first control, not into the editor again
    tab_to(page, cell(page, "m1"))
    page.keyboard.press("ArrowDown")
    expect(cell(page, "c2")).to_be_focused()
    page.keyboard.press("Enter")
    expect(cell(page, "c2").locator(".cm-content")).to_be_focused()
    expect(mode).to_have_attribute("data-mode", "edit")
    page.keyboard.press("Home")
    page.keyboard.press("Tab")
    expect(cell(page, "c2").locator(".cm-content")).to_have_text("    y = 2")
    expect(cell(page, "c2").locator(".cm-content")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(cell(page, "c2").locator(".cm-content")).to_have_text("y = 2")
    page.keyboard.press("Escape")
    expect(cell(page, "c2")).to_be_focused()
    expect(mode).to_have_attribute("data-mode", "command")
    tabs("Tab", '.cell[data-cell-id="c2"] .comment-btn')
    # a click beside the editor focuses a cell and selects it: Enter edits that one
    cell(page, "m1").click(position={"x": 8, "y": 8})  # the empty left of its side
    expect(cell(page, "m1")).to_be_focused()
    expect(cell(page, "m1")).to_have_class(re.compile(r"\bactive\b"))
    page.keyboard.press("Enter")
    expect(cell(page, "m1").locator(".cm-content")).to_be_focused()
    page.keyboard.press("Escape")
    expect(cell(page, "m1")).to_be_focused()

    # the last cell, the chat hidden: Tab goes through its controls and leaves the page
    # (or comes round to the top), never back into a cell's editor
    chat_btn = page.get_by_role("button", name="Chat", exact=True)
    tab_to(page, chat_btn, key="Shift+Tab")
    page.keyboard.press("Enter")
    expect(page.locator("aside.chat")).to_be_hidden()
    cell(page, "c2").click(position={"x": 8, "y": 8})
    expect(cell(page, "c2")).to_be_focused()
    tabs("Tab", *[f'.cell[data-cell-id="c2"] {c}' for c in controls])
    for _ in range(10):
        page.keyboard.press("Tab")
        assert not in_editor(page), f"Tab went into an editor: {focused(page)}"
        if page.evaluate("() => document.activeElement === document.body || !document.hasFocus() || !!document.activeElement.closest('header, .toolbar')"):
            break
    else:
        raise AssertionError(f"Tab from the last cell stayed in the cells: {focused(page)}")
    for c in ("c1", "c2"):
        expect(cell(page, c).locator(".cm-content")).to_have_attribute("tabindex", "-1")
    assert page.errors == [] and page.dialogs == []  # type: ignore[attr-defined]


def test_tab_through_a_long_notebook(as_user: Any, collab: Any, user: tuple[str, Api]) -> None:
    """A windowed notebook (more than 300 cells: only those near the screen are in the page):
    Tab from the active cell goes on through the cells' controls in order, past the cells in
    the page at first (brought in as the focus scrolls), never into an editor; Shift+Tab back."""
    name, api = user
    n = 320
    nb = api.create("Keyboard long", notebook([{"id": f"c{i}", "source": f"x{i} = {i}"} for i in range(n)]))["id"]
    page = as_user(name)
    open_for_keys(page, collab, nb)
    assert page.locator(".cells.windowed").count() == 1
    in_page = page.locator(".cells > .cell").count()
    assert in_page < 100, in_page
    before_the_top(page, page.locator(".home-link"))
    tab_to(page, cell(page, "c0"))
    where = "() => { const c = document.activeElement.closest('.cell'); return c ? Number(c.dataset.cellId.slice(1)) : -1; }"
    last = 0
    for _ in range(3 * (in_page + 5)):
        page.keyboard.press("Tab")
        assert not in_editor(page), f"Tab went into an editor: {focused(page)}"
        i = page.evaluate(where)
        assert i >= last, f"Tab went from cell c{last} back to {focused(page)}"
        assert i == last or i == last + 1, f"Tab skipped from c{last} to {focused(page)}"
        last = i
    assert last > in_page, (last, in_page)
    for _ in range(6):
        page.keyboard.press("Shift+Tab")
        assert not in_editor(page), f"Shift+Tab went into an editor: {focused(page)}"
        i = page.evaluate(where)
        assert last - 1 <= i <= last, f"Shift+Tab went from c{last} to {focused(page)}"
        last = i
    assert page.errors == [] and page.dialogs == []  # type: ignore[attr-defined]
