"""Helpers for the browser tests (tests/test_ui.py) and benchmarks/bench_ui.py.

Headless Debian Chromium (``/usr/bin/chromium``) driven by Playwright for
Python; users log in through the Hub's own login form in the page.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import requests
from playwright.sync_api import Browser, BrowserContext, Page, Playwright

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "hub_collab" / "static" / "dist"
CHROMIUM = os.environ.get("HUB_COLLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PASSWORD = "demo"


def ensure_build() -> str | None:
    """Build the front end if its output is missing; a reason to skip if we cannot."""
    if (DIST / "app.js").exists() and (DIST / "app.css").exists():
        return None
    npm = shutil.which("npm")
    if npm is None:
        return "the front end is not built and npm is not installed"
    frontend = ROOT / "frontend"
    if not (frontend / "node_modules").exists():
        subprocess.run([npm, "ci", "--prefix", str(frontend)], check=True)
    subprocess.run([npm, "run", "build", "--prefix", str(frontend)], check=True)
    return None


def launch(pw: Playwright) -> Browser:
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def login(browser: Browser, service_url: str, user: str, password: str = PASSWORD, **context_args: Any) -> tuple[BrowserContext, Page]:
    """A new browser context logged in as ``user`` through the Hub's login form."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, **context_args)
    page = ctx.new_page()
    page.goto(service_url)
    if "/hub/login" in page.url:
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", password)
        page.click("input[type=submit], button[type=submit]")
        page.wait_for_url(service_url + "**", timeout=30_000)
    page.wait_for_selector(".home, .nb-page", timeout=30_000)
    return ctx, page


class Api:
    """REST v1 as a user, with a Hub API token (for setting up tests)."""

    def __init__(self, service_url: str, token: str) -> None:
        self.url = service_url
        self.headers = {"Authorization": f"token {token}"}

    def call(self, method: str, path: str, body: Any = None) -> Any:
        resp = requests.request(method, self.url + path, json=body, headers=self.headers, timeout=60)
        assert resp.ok, f"{method} {path}: {resp.status_code} {resp.text[:300]}"
        return resp.json() if resp.content else None

    def create(self, name: str, content: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, **fields}
        if content is not None:
            body["content"] = content
        result: dict[str, Any] = self.call("POST", "api/notebooks", body)
        return result

    def chmod_cell(self, nb: str, cell: str, **fields: Any) -> Any:
        return self.call("PUT", f"api/notebooks/{nb}/cells/{cell}/permissions", fields)

    def chmod(self, nb: str, **fields: Any) -> Any:
        return self.call("PUT", f"api/notebooks/{nb}/permissions", fields)


def notebook(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """An nbformat v4 notebook from short cell dicts (``id``, ``cell_type``, ``source``, ``outputs``)."""
    full = []
    for c in cells:
        cell: dict[str, Any] = {"id": c["id"], "cell_type": c.get("cell_type", "code"), "metadata": {}, "source": c.get("source", "")}
        if cell["cell_type"] == "code":
            cell["outputs"] = c.get("outputs", [])
            cell["execution_count"] = c.get("execution_count")
        full.append(cell)
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": full,
    }


def open_notebook(page: Page, service_url: str, nb_id: str) -> None:
    page.goto(f"{service_url}notebooks/{nb_id}")
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)


def cell(page: Page, cell_id: str) -> Any:
    return page.locator(f'.cell[data-cell-id="{cell_id}"]')


def type_in_cell(page: Page, cell_id: str, text: str, at_end: bool = True) -> None:
    c = cell(page, cell_id)
    c.locator(".cell-preview, .cm-content").first.click()
    editor = c.locator(".cm-content")
    editor.wait_for()
    editor.click()
    if at_end:
        page.keyboard.press("Control+End")
    page.keyboard.type(text)


def screenshot(page: Page, name: str, **kwargs: Any) -> None:
    """Save a screenshot: into docs/screenshots/ with HUB_COLLAB_SCREENSHOTS=1 (to
    refresh the user guide), else into a temporary folder (the page is still drawn)."""
    if os.environ.get("HUB_COLLAB_SCREENSHOTS") == "1":
        out = ROOT / "docs" / "screenshots"
    else:
        out = Path(tempfile.gettempdir()) / "hub-collab-screenshots"
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / f"{name}.png"), **kwargs)


AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"  # installed by scripts/setup (npm ci)


def axe_violations(page: Page, context: str | None = None, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
    """Run axe-core (bundled, offline) on the page, or on the elements ``context`` selects;
    one line per violation of the given impacts: rule, impact, help and the first targets.
    The page's CSP forbids inline scripts: the context needs ``bypass_csp=True``."""
    assert AXE.exists(), f"no axe-core at {AXE}: run scripts/setup (npm ci)"
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE))
    results = page.evaluate(
        "async (ctx) => (await window.axe.run(ctx ? { include: [ctx] } : document, { resultTypes: ['violations'] })).violations"
        ".map((v) => ({ id: v.id, impact: v.impact, help: v.help, targets: v.nodes.slice(0, 6).map((n) => n.target.join(' ')) }))",
        context,
    )
    return [f"{v['id']} ({v['impact']}): {v['help']} at {v['targets']}" for v in results if v["impact"] in impacts]
