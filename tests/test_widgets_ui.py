"""Shared widgets in a real browser (headless Chromium, Playwright) through the real Hub
login, drawn by ipywidgets' own front end (``@jupyter-widgets/controls``): one user moves
a slider bound to an ``interact`` function (keys, then a mouse drag) and everyone sees the
output change; a late joiner sees the current value; a user without ``x`` on the cell sees
the slider disabled; a ``Play`` widget is drawn with its icons, and a widget of a module the
page does not ship shows a placeholder with its name.
"""

from __future__ import annotations

import os
import re
from typing import Any

from playwright.sync_api import Page, expect
from test_widgets import INTERACT
from ui_helpers import CHROMIUM, Api, cell, notebook, open_notebook, screenshot

# a Play widget (its buttons carry Font Awesome icons), a widget of a module no page ships,
# and an Image (its bytes a binary buffer, drawn from a blob: URL)
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
PLAY_AND_THING = f"""\
import base64, traitlets
class Thing(w.DOMWidget):
    _model_name = traitlets.Unicode("ThingModel").tag(sync=True)
    _model_module = traitlets.Unicode("thing-widgets").tag(sync=True)
    _model_module_version = traitlets.Unicode("1.0.0").tag(sync=True)
    _view_name = traitlets.Unicode("ThingView").tag(sync=True)
    _view_module = traitlets.Unicode("thing-widgets").tag(sync=True)
    _view_module_version = traitlets.Unicode("1.0.0").tag(sync=True)
w.VBox([w.Play(value=1), Thing(), w.Image(value=base64.b64decode("{PNG}"), format="png", width=20)])
"""

assert os.path.exists(CHROMIUM), f"no Chromium at {CHROMIUM}: run scripts/setup (or apt-get install chromium)"


def slider(page: Page) -> Any:
    """The thumb of ipywidgets' slider (noUiSlider's handle: role slider, focusable)."""
    return cell(page, "c0").locator(".widget-slider .noUi-handle")


def readout(page: Page) -> Any:
    return cell(page, "c0").locator(".widget-slider .widget-readout")


def track(page: Page) -> Any:
    return cell(page, "c0").locator(".widget-slider .noUi-target")


def output_widget(page: Page) -> Any:
    return cell(page, "c0").locator(".widget-output")


def test_a_slider_everyone_shares(as_user: Any, collab: Any, hub: Any) -> None:
    api = Api(collab.public_url, hub.token("alice"))
    nb = api.create(
        "Widgets",
        notebook([{"id": "c0", "source": INTERACT}, {"id": "c1", "source": PLAY_AND_THING}]),
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
            expect(slider(page)).to_have_attribute("aria-valuenow", "3.0", timeout=30_000)
            expect(readout(page)).to_have_text("3")
            expect(output_widget(page)).to_have_text("square 9", timeout=30_000)
            expect(cell(page, "c0").locator(".widget-slider .widget-label").first).to_have_text("x")
        # Play is ipywidgets' own, with its icons drawn by the bundled Font Awesome
        play = cell(bob, "c1").locator(".widget-play")
        expect(play.locator("button").first).to_be_visible(timeout=30_000)
        icon = play.locator("i.fa-play").first
        assert icon.evaluate("i => getComputedStyle(i, '::before').fontFamily") == "FontAwesome"
        assert bob.evaluate("document.fonts.check('14px FontAwesome')")
        # a widget whose front end the page does not ship: a placeholder naming it
        expect(cell(bob, "c1").locator(".widget-placeholder")).to_contain_text("ThingModel (thing-widgets)")
        image = cell(bob, "c1").locator("img.widget-image")
        expect(image).to_have_attribute("src", re.compile("^blob:"), timeout=30_000)
        bob.wait_for_function("i => i.complete && i.naturalWidth === 1", arg=image.element_handle(), timeout=30_000)

        # bob moves the slider with the keyboard: both see the function's new output
        slider(bob).focus()
        for _ in range(3):
            bob.keyboard.press("ArrowRight")
        expect(output_widget(bob)).to_have_text("square 36", timeout=30_000)
        expect(output_widget(alice)).to_have_text("square 36", timeout=30_000)
        expect(slider(alice)).to_have_attribute("aria-valuenow", "6.0")
        expect(readout(alice)).to_have_text("6")
        screenshot(alice, "widgets")

        # a late joiner sees the current value and output
        carol = as_user("carol")
        open_notebook(carol, collab.public_url, nb)
        expect(readout(carol)).to_have_text("6", timeout=30_000)
        expect(output_widget(carol)).to_have_text("square 36")
        expect(track(carol)).not_to_have_attribute("disabled", "true")

        # who may only read the cell sees the slider, disabled
        dave = as_user("dave")
        open_notebook(dave, collab.public_url, nb)
        expect(readout(dave)).to_have_text("6", timeout=30_000)
        expect(track(dave)).to_have_attribute("disabled", "true")
        expect(output_widget(dave)).to_have_text("square 36")
        # ... and the keys do not move it
        slider(dave).focus()
        dave.keyboard.press("ArrowRight")
        expect(readout(dave)).to_have_text("6")

        # bob drags the thumb to the far right with the mouse: the last value wins everywhere
        handle, box = slider(bob).bounding_box(), track(bob).bounding_box()
        assert handle is not None and box is not None
        y = handle["y"] + handle["height"] / 2
        bob.mouse.move(handle["x"] + handle["width"] / 2, y)
        bob.mouse.down()
        bob.mouse.move(box["x"] + box["width"] + 20, y, steps=25)
        bob.mouse.up()
        for page in (alice, bob, carol, dave):
            expect(readout(page)).to_have_text("100", timeout=30_000)
            expect(output_widget(page)).to_have_text("square 10000", timeout=30_000)
        for page in (alice, bob, carol, dave):
            assert page.errors == [], page.errors  # type: ignore[attr-defined]
    finally:
        api.call("DELETE", f"api/notebooks/{nb}/kernel")
