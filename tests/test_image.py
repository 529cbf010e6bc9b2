"""The container image (Dockerfile): built with podman, run against a real Hub.

``scripts/build-image`` builds ``localhost/hub-collab:<version>-<inputs>``; a test run on a
machine that built the same inputs before (Dockerfile, build context, base images) reuses
that image and takes seconds. The first run on a new machine makes the base images from
Debian's packages and builds everything (about 10 minutes: docs/image.md); a run after a
source change rebuilds only the layers it changed.

The service runs in a container as it would in a cluster: the image's own user, entrypoint
and defaults, the environment a managed service gets from a Hub (only ``JUPYTERHUB_*``),
a data directory mounted as a volume. It shares the machine's network (``--network host``)
and listens on 127.0.0.1 only (``--ip``, which replaces the image's ``--ip=0.0.0.0``).

Marked ``image``: ``pytest -m image`` runs these alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hubfixtures import REPO, CollabService, Hub, browser_login, wait_until
from imagefixtures import UID, PodmanContainer, inspect_image, podman, report

pytestmark = [pytest.mark.image, pytest.mark.timeout(1800)]

#: The largest the image may grow before this test says so (it is about 400 MB).
MAX_IMAGE_BYTES = 500_000_000
#: Names of compilers and of Node.js that must not be in the runtime image.
FORBIDDEN_COMMANDS = [
    "gcc",
    "cc",
    "c++",
    "g++",
    "cpp",
    "clang",
    "make",
    "node",
    "nodejs",
    "npm",
    "npx",
]
FORBIDDEN_PACKAGES = ["gcc", "gcc-12", "g++", "g++-12", "cpp", "cpp-12", "make", "nodejs", "npm"]


@pytest.fixture(scope="module")
def image_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """A Hub of its own: the session's ``hub`` has the ``collab`` fixture on its service port."""
    hub = Hub(tmp_path_factory.mktemp("image-hub"))
    try:
        hub.start()
        yield hub
    finally:
        hub.stop()


class Container(PodmanContainer):
    """hub-collab in a podman container, as the Hub's service ``collab``."""

    def __init__(self, image: str, hub: Hub, root: Path) -> None:
        super().__init__()
        self.image = image
        self.hub = hub
        # the service as the tests run it elsewhere: its URLs and the Hub's environment
        self.service = CollabService(hub, root / "data")
        self.data_dir = self.service.data_dir
        os.chown(self.data_dir, UID, UID)  # the volume belongs to the image's user
        self.env_file = root / "service.env"
        env = {k: v for k, v in self.service.env().items() if k.startswith("JUPYTERHUB_")}
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        self.env_file.chmod(0o600)
        self.health_url = self.service.direct_url + "api/health"

    def start(self) -> None:
        podman(
            "run",
            "--detach",
            "--name",
            self.name,
            "--network",
            "host",
            "--env-file",
            str(self.env_file),
            "--volume",
            f"{self.data_dir}:/srv/hub-collab",
            self.image,
            "--ip=127.0.0.1",
        )

        def ready() -> dict[str, Any]:
            self.check_running()
            try:
                resp = requests.get(self.health_url, timeout=2)
            except requests.ConnectionError as exc:
                raise AssertionError(str(exc)) from None
            assert resp.status_code == 200, f"api/health: {resp.status_code} {resp.text[:200]}"
            body: dict[str, Any] = resp.json()
            return body

        self.health = wait_until(
            ready,
            timeout=60,
            interval=0.2,
            what="hub-collab in its container",
            on_timeout=self.logs,
        )


@pytest.fixture
def container(image: str, image_hub: Hub, tmp_path: Path) -> Iterator[Container]:
    box = Container(image, image_hub, tmp_path)
    try:
        box.start()
        yield box
    finally:
        box.remove()


def test_image_config_and_size(image: str, pytestconfig: pytest.Config) -> None:
    """A non-root user with a fixed uid, the port, the entrypoint; the size is printed."""
    info = inspect_image(image)
    config = info["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert list(config["ExposedPorts"]) == ["10101/tcp"]
    assert config["Entrypoint"] == ["/usr/bin/tini", "--", "hub-collab"]
    assert config["Cmd"] == ["--ip=0.0.0.0"]
    assert config["WorkingDir"] == "/srv/hub-collab"
    assert "HUB_COLLAB_DATA_DIR=/srv/hub-collab" in config["Env"]
    size = int(info["Size"])
    report(pytestconfig, f"{image}: {size / 1e6:.0f} MB")
    assert size < MAX_IMAGE_BYTES, f"the image grew to {size / 1e6:.0f} MB"


def test_no_compiler_node_or_npm(image: str) -> None:
    """The runtime image has no compiler, no Node.js, no npm (nor a node_modules)."""
    script = r"""
for name in "$@"; do command -v "$name"; done
find / -xdev \( -type f -o -type l \) \
  \( -name 'gcc*' -o -name 'g++*' -o -name 'cc' -o -name 'node' -o -name 'nodejs' -o -name 'npm' \) \
  -perm -u+x -print
find / -xdev -type d -name node_modules -print
dpkg-query --show --showformat '${Package} ${Status}\n' | awk '$NF == "installed" { print "dpkg:" $1 }'
"""
    proc = podman(
        "run",
        "--rm",
        "--user",
        "0",
        "--entrypoint",
        "/bin/sh",
        image,
        "-c",
        script,
        "sh",
        *FORBIDDEN_COMMANDS,
    )
    lines = proc.stdout.splitlines()
    packages = {line[len("dpkg:") :].split(":")[0] for line in lines if line.startswith("dpkg:")}
    found = [line for line in lines if not line.startswith("dpkg:")]
    assert found == [], f"the image holds {found}"
    assert "python3.11" in packages and "tini" in packages, "the check did not read dpkg"
    assert packages.isdisjoint(FORBIDDEN_PACKAGES), sorted(packages & set(FORBIDDEN_PACKAGES))
    assert podman("run", "--rm", image, "--version").stdout.strip() == _version()


def _version() -> str:
    namespace: dict[str, str] = {}
    exec((REPO / "hub_collab" / "_version.py").read_text(), namespace)
    return namespace["__version__"]


def test_runs_as_a_hub_service(container: Container, image_hub: Hub) -> None:
    """Ready, reachable through the Hub, logs in with OAuth, non-root, stops on SIGTERM."""
    assert container.health["ok"] is True and container.health["database"] is True

    # every process in the container runs as the image's user, hub-collab among them
    procs = container.processes()
    owners = {p.pid: (p.uids().real, p.uids().effective, " ".join(p.cmdline())) for p in procs}
    assert all(real == UID and eff == UID for real, eff, _ in owners.values()), owners
    assert any("hub-collab" in cmd for _, _, cmd in owners.values()), owners

    # through the Hub's proxy, and a browser's login through the Hub's OAuth
    public = container.service.public_url
    assert requests.get(public + "api/health", timeout=60).json()["ok"] is True
    alice = browser_login(public, "alice")
    me = alice.get(public + "api/me", timeout=60)
    assert me.status_code == 200, me.text
    assert me.json()["name"] == "alice"
    token = image_hub.token("instructor")
    created = requests.post(
        public + "api/notebooks",
        headers={"Authorization": f"token {token}"},
        json={"name": "from the image"},
        timeout=60,
    )
    assert created.status_code == 201, created.text

    # its files are in the volume, owned by its user
    written = {p.name: p.stat() for p in container.data_dir.iterdir()}
    assert {"hub-collab.sqlite", "cookie_secret"} <= set(written), sorted(written)
    assert {st.st_uid for st in written.values()} == {UID}, {
        n: s.st_uid for n, s in written.items()
    }

    # SIGTERM (podman stop, Kubernetes' stop) reaches hub-collab through tini and ends it
    # cleanly, well before the SIGKILL that would give 137
    assert container.stop() == 0, container.logs()
    logs = container.logs()
    assert "Traceback" not in logs, logs
