"""Shared widgets in a real browser (headless Chromium, Playwright) through the real Hub
login: one user moves a slider bound to an ``interact`` function (keys, then a mouse
drag) and everyone sees the output change; a late joiner sees the current value; a user without ``x`` on the cell
sees the slider disabled, and an unknown widget shows a placeholder with its name.
"""

from __future__ import annotations

import os
from typing import Any

from playwright.sync_api import Page, expect
from test_widgets import INTERACT
from ui_helpers import CHROMIUM, Api, cell, notebook, open_notebook, screenshot

assert os.path.exists(CHROMIUM), f"no Chromium at {CHROMIUM}: run scripts/setup (or apt-get install chromium)"


def slider(page: Page) -> Any:
    return cell(page, "c0").locator('.widget-slider input[type="range"]')


def output_widget(page: Page) -> Any:
    return cell(page, "c0").locator(".widget-output")


def test_a_slider_everyone_shares(as_user: Any, collab: Any, hub: Any) -> None:
    api = Api(collab.public_url, hub.token("alice"))
    nb = api.create(
        "Widgets",
        notebook([{"id": "c0", "source": INTERACT}, {"id": "c1", "source": "w.Play(value=1)"}]),
        group="students",
        mode="0775",
    )["id"]
    api.chmod_cell(nb, "c0", mode="0774")  # others (dave) may read the cell, not run it
    try:
        alice, bob = as_user("alice"), as_user("bob")
        open_notebook(alice, collab.public_url, nb)
        open_notebook(bob, collab.public_url, nb)
        api.call("POST", f"api/notebooks/{nb}/cells/c0/execute?wait=1")
        api.call("POST", f"api/notebooks/{nb}/cells/c1/execute?wait=1")
        for page in (alice, bob):
            expect(slider(page)).to_have_value("3", timeout=30_000)
            expect(output_widget(page)).to_have_text("square 9", timeout=30_000)
            expect(cell(page, "c0").locator(".widget-description").first).to_have_text("x")
        # a widget whose front end the page does not ship: a placeholder naming it
        expect(cell(bob, "c1").locator(".widget-placeholder")).to_contain_text("PlayModel")

        # bob moves the slider with the keyboard: both see the function's new output
        slider(bob).focus()
        for _ in range(3):
            bob.keyboard.press("ArrowRight")
        expect(output_widget(bob)).to_have_text("square 36", timeout=30_000)
        expect(output_widget(alice)).to_have_text("square 36", timeout=30_000)
        expect(slider(alice)).to_have_value("6")
        expect(cell(alice, "c0").locator(".widget-readout")).to_have_text("6")
        screenshot(alice, "widgets")

        # a late joiner sees the current value and output
        carol = as_user("carol")
        open_notebook(carol, collab.public_url, nb)
        expect(slider(carol)).to_have_value("6", timeout=30_000)
        expect(output_widget(carol)).to_have_text("square 36")
        expect(slider(carol)).to_be_enabled()

        # who may only read the cell sees the slider, disabled
        dave = as_user("dave")
        open_notebook(dave, collab.public_url, nb)
        expect(slider(dave)).to_have_value("6", timeout=30_000)
        expect(slider(dave)).to_be_disabled()
        expect(output_widget(dave)).to_have_text("square 36")

        # bob drags the thumb to the far right with the mouse: the last value wins everywhere
        box = slider(bob).bounding_box()
        assert box is not None
        y = box["y"] + box["height"] / 2
        bob.mouse.move(box["x"] + box["width"] * 0.06, y)
        bob.mouse.down()
        bob.mouse.move(box["x"] + box["width"] + 20, y, steps=25)
        bob.mouse.up()
        for page in (alice, bob, carol, dave):
            expect(slider(page)).to_have_value("100", timeout=30_000)
            expect(output_widget(page)).to_have_text("square 10000", timeout=30_000)
        for page in (alice, bob, carol, dave):
            assert page.errors == [], page.errors  # type: ignore[attr-defined]
    finally:
        api.call("DELETE", f"api/notebooks/{nb}/kernel")
