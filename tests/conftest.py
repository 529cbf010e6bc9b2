"""Fixtures for hub-collab's tests (helpers in :mod:`hubfixtures`).

Real things, on free 127.0.0.1 ports, one of each per test session:

``hub`` (session) -> :class:`hubfixtures.Hub`
    A real JupyterHub behind the real configurable-http-proxy. DummyAuthenticator,
    password ``demo``. Users instructor, ta (group ``staff``), alice, bob, carol
    (group ``students``), admin (Hub admin), dave and eve (no group). hub-collab is
    its *external* service ``collab``; every user may access it.
    ``hub.url`` (public, through the proxy), ``hub.api_url``,
    ``hub.token(user, scopes=None) -> str`` (cached), ``hub.metrics_token`` (the service
    ``test-prometheus``: the scope ``read:metrics`` only), ``hub.api(method, path, ...)``
    (as the ``test-admin`` service), ``hub.create_user(name)``,
    ``hub.set_groups(group, users)``, ``hub.add_to_group(group, user)``,
    ``hub.remove_from_group(group, user)``, ``hub.reset_groups()``, ``hub.group(name)``,
    ``hub.group_members(name)``.

``collab`` (session) -> :class:`hubfixtures.CollabService`
    The hub-collab process, started with the env a Hub gives a service and
    ``--HubCollab.group_refresh_interval=1``; ready when ``api/me`` answers 200
    through the proxy. ``.public_url``, ``.direct_url``, ``.data_dir``, ``.db_url``,
    ``.extra_args`` (list, used at the next start), ``.start()``, ``.stop()``,
    ``.restart()``, ``.tail()`` (its log). A test that stops it must start it again.

``spawning_hub`` (session, only for the tests that ask for it) -> :class:`hubfixtures.SpawningHub`
    Another real Hub whose users' servers really run: ``LocalProcessSpawner`` as the
    Unix accounts ``alice`` and ``bob`` (created if missing), named servers allowed
    (``broken*`` ones fail in the spawner, ``badcmd*`` ones have a command that does not exist). ``collab``'s
    OAuth tokens carry ``hubfixtures.COLLAB_OAUTH_SCOPES``; its own token holds
    ``hubfixtures.COLLAB_SERVER_ROLE``. ``.stop_all_servers()``. **Needs root**: as
    another user the tests that use it fail with a message saying so.

``spawning_collab`` (session) -> :class:`hubfixtures.CollabService` for ``spawning_hub``.
``on_servers`` (module) -> ``spawning_collab`` running kernels on the users' own servers
    (``kernel_provider=hub``); every server stopped and the service restored afterwards.

``image`` (session, only for the tests marked ``image``) -> ``str``
    ``localhost/hub-collab:<version>-<inputs>``, built by ``scripts/build-image`` (or
    reused: the same inputs built before take seconds; a first build on a new machine
    3-10 minutes), which a session with such tests starts in the background, at nice 19,
    once its tests are collected; those tests run last. Run it with :func:`imagefixtures.podman`.

``browser_login`` (function) -> ``browser_login(public_service_url, user, password="demo")``
    The OAuth login as a browser does it; returns a :class:`hubfixtures.BrowserSession`
    (a ``requests.Session`` with ``.xsrf`` for the ``X-XSRFToken`` header).

``free_port`` -> ``free_port() -> int``.

``pw`` (module), ``browser`` (module) -> Playwright and headless Chromium (the front end built
first if it is not); ``as_user`` (function) -> ``as_user(name) -> Page``: a fresh context
logged in through the Hub per user, its page errors and dialogs recorded in
``page.errors`` / ``page.dialogs`` (the UI tests).
``node_modules`` (module) -> ``tests/js/node_modules`` (a ``Path``), for the tests that run
    real yjs in Node (``tests/js``: the interop client, the yjs mirror); installed with
    ``npm ci`` when missing (a fresh clone). Fails if node or npm is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import ui_helpers
from hubfixtures import BrowserSession, CollabService, Hub, SpawningHub
from hubfixtures import browser_login as _browser_login
from hubfixtures import free_port as _free_port
from imagefixtures import ImageBuild, build_image
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    the_hub = Hub(tmp_path_factory.mktemp("hub"))
    try:
        the_hub.start()
        yield the_hub
    finally:
        the_hub.stop()


@pytest.fixture(scope="session")
def collab(hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollabService]:
    service = CollabService(hub, tmp_path_factory.mktemp("collab"))
    try:
        service.start()
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def spawning_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpawningHub]:
    the_hub = SpawningHub(tmp_path_factory.mktemp("spawning-hub"))
    try:
        the_hub.start()
        yield the_hub
    finally:
        the_hub.stop()


@pytest.fixture(scope="session")
def spawning_collab(
    spawning_hub: SpawningHub, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CollabService]:
    service = CollabService(spawning_hub, tmp_path_factory.mktemp("spawning-collab"))
    try:
        service.start()
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def on_servers(spawning_hub: SpawningHub, spawning_collab: CollabService) -> Iterator[CollabService]:
    """``spawning_collab`` restarted with ``kernel_provider=hub`` for one module: kernels
    on the users' own servers; afterwards every server is stopped and the service restored."""
    old = list(spawning_collab.extra_args)
    try:
        spawning_collab.extra_args = [*old, "--HubCollab.kernel_provider=hub"]
        spawning_collab.restart()
        yield spawning_collab
    finally:
        spawning_hub.stop_all_servers()
        spawning_collab.extra_args = old
        spawning_collab.restart()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test's report ends with the log of every service it used (a CI run's
    only trace of what the service saw)."""
    report = yield
    if report.failed:
        seen: set[int] = set()
        for name, value in getattr(item, "funcargs", {}).items():
            # a service fixture, or one that holds services (test_kernels.Users...)
            for svc in [value, *getattr(value, "__dict__", {}).values()]:
                if isinstance(svc, CollabService) and id(svc) not in seen:
                    seen.add(id(svc))
                    report.sections.append((f"service log ({name})", svc.tail(120)))
    return report


IMAGE_BUILD = pytest.StashKey[ImageBuild]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The image tests run last, so that the image builds (ImageBuild) while the rest of
    the suite runs: on a new machine that is minutes of Debian packages, npm and pip."""
    items.sort(key=lambda item: item.get_closest_marker("image") is not None)


def pytest_collection_finish(session: pytest.Session) -> None:
    """A session with image tests starts building the image now (see ImageBuild)."""
    if session.config.option.collectonly or not any(item.get_closest_marker("image") for item in session.items):
        return
    session.config.stash[IMAGE_BUILD] = ImageBuild()


def pytest_sessionfinish(session: pytest.Session) -> None:
    build = session.config.stash.get(IMAGE_BUILD, None)
    if build is not None:
        build.stop()  # a session that ended before its image tests


@pytest.fixture(scope="session")
def image(pytestconfig: pytest.Config) -> str:
    build = pytestconfig.stash.get(IMAGE_BUILD, None)
    if build is None:  # a test that asks for the image without the marker
        build = pytestconfig.stash[IMAGE_BUILD] = ImageBuild()
    return build_image(pytestconfig, build)


@pytest.fixture
def browser_login() -> Callable[..., BrowserSession]:
    return _browser_login


@pytest.fixture
def free_port() -> Callable[[], int]:
    return _free_port


# -- browsers (the UI tests): Chromium through Playwright, a logged-in page per user --


@pytest.fixture(scope="module")
def pw() -> Iterator[Playwright]:
    reason = ui_helpers.ensure_build()
    assert not reason, f"the front end could not be built: {reason}"  # a failed set-up, not a skip
    # a page on a busy machine (CI beside other work) may take seconds to answer a key: the
    # browser tests wait for what they expect up to 20 s (Playwright's default is 5 s)
    expect.set_options(timeout=20_000)
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(pw: Playwright) -> Iterator[Browser]:
    b = ui_helpers.launch(pw)
    yield b
    b.close()


@pytest.fixture
def as_user(browser: Browser, collab: Any) -> Iterator[Any]:
    """``as_user(name, **context_args) -> Page``: a fresh logged-in browser context per user
    (``context_args`` go to ``Browser.new_context``); errors are recorded."""
    contexts = []

    def make(user: str, **context_args: Any) -> Page:
        ctx, page = ui_helpers.login(browser, collab.public_url, user, **context_args)
        page.errors = []  # type: ignore[attr-defined]
        page.dialogs = []  # type: ignore[attr-defined]
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))  # type: ignore[attr-defined]
        page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))  # type: ignore[attr-defined]
        contexts.append(ctx)
        return page

    yield make
    for ctx in contexts:
        ctx.close()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[Any]:
    """The service's RoomManager, PermissionStore and UpdateLog in process, on a real
    SQLite store (:class:`test_room_load.World`)."""
    from test_room_load import World

    w = World(tmp_path)
    await w.start()
    try:
        yield w
    finally:
        await w.stop()


@pytest.fixture(scope="module")
def node_modules() -> Path:
    js_dir = Path(__file__).resolve().parent / "js"
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        pytest.fail("node and npm are needed for the tests that run yjs (see the README's set-up command)")
    modules = js_dir / "node_modules"
    if not (modules / "yjs").is_dir() or not (modules / "y-protocols").is_dir():
        subprocess.run([npm, "ci", "--prefix", str(js_dir), "--no-audit", "--no-fund"], check=True, timeout=300)
    return modules
