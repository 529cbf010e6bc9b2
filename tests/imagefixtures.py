"""Helpers for the tests that build and run hub-collab's container image with podman
(``tests/test_image.py``, ``tests/test_chart_pod.py``; the ``image`` fixture of
``conftest.py``).

- :class:`ImageBuild`, :func:`build_image`: ``scripts/build-image`` (in the background), which builds
  ``localhost/hub-collab:<version>-<inputs>`` or reuses it (same inputs: seconds). The
  session's ``image`` fixture calls it once, for every test that needs the image.
- :func:`podman`: podman with the repository's ``scripts/containers.conf`` (``runc``,
  ``cgroupfs``, no default ulimits: what this kind of machine needs).
- :class:`PodmanContainer`: a named container that a test started: its state, logs and
  processes, ``podman stop`` as Kubernetes stops a pod, removal.
- :func:`report`: a line on pytest's terminal past output capture (build time, size).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from hubfixtures import REPO

CONTAINERS_CONF = REPO / "scripts" / "containers.conf"
#: The image's user and group (Dockerfile: ARG UID).
UID = 1000


def podman(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run podman with the repository's containers.conf; raise with its output on failure."""
    env = dict(os.environ, CONTAINERS_CONF=str(CONTAINERS_CONF))
    proc = subprocess.run(
        ["podman", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def report(config: pytest.Config, line: str) -> None:
    """Write `line` to pytest's terminal, past output capture (the build time, the size)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line(f"[image] {line}")


class ImageBuild:
    """``scripts/build-image`` in the background, at nice 19: a session that will need
    the image starts it once its tests are collected and runs the image tests last, so a
    first build (minutes: Debian's base images, npm, pip; mostly downloads and waits)
    overlaps the rest of the suite. Its output goes to files, read when it is done."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.tmp = Path(tempfile.mkdtemp(prefix="hub-collab-image-"))
        self.out = (self.tmp / "build-image.out").open("w+")
        self.err = (self.tmp / "build-image.err").open("w+")
        self.proc = subprocess.Popen(
            ["nice", "-n", "19", str(REPO / "scripts" / "build-image")],
            cwd=REPO,
            stdout=self.out,
            stderr=self.err,
            text=True,
            start_new_session=True,
        )

    def result(self, timeout: float) -> tuple[int, str, str]:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"scripts/build-image did not end in {timeout:.0f} s") from None
        self.out.seek(0)
        self.err.seek(0)
        return code, self.out.read(), self.err.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.out.close()
        self.err.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def build_image(config: pytest.Config, build: ImageBuild, timeout: float = 1700) -> str:
    """The image's name, once ``build`` (scripts/build-image: built, or reused for the
    same inputs) has ended."""
    code, stdout, stderr = build.result(timeout)
    assert code == 0, f"scripts/build-image failed:\n{stderr[-6000:]}"
    name = stdout.strip().splitlines()[-1]
    report(config, f"scripts/build-image ended {time.monotonic() - build.started:.0f} s after it started (in the background)")
    for line in stderr.splitlines():
        if line.startswith("==> "):
            report(config, line[4:])
    return name


def inspect_image(image: str) -> dict[str, Any]:
    result: list[dict[str, Any]] = json.loads(podman("image", "inspect", image).stdout)
    return result[0]


class PodmanContainer:
    """A container the test names and starts (``podman run --name``); see :attr:`name`.

    :meth:`remove` is safe to call whatever state it is in (a test's ``finally``).
    """

    def __init__(self, prefix: str = "hub-collab-test") -> None:
        self.name = f"{prefix}-{secrets.token_hex(4)}"

    def state(self) -> dict[str, Any]:
        """podman's ``.State``: ``Running``, ``ExitCode``, ``Pid``..."""
        result: dict[str, Any] = json.loads(
            podman("container", "inspect", "--format", "{{json .State}}", self.name).stdout
        )
        return result

    def check_running(self) -> None:
        """Raise with the container's logs if it has exited."""
        state = self.state()
        if not state["Running"]:
            raise RuntimeError(f"the container exited ({state['ExitCode']})\n{self.logs()}")

    def logs(self) -> str:
        proc = podman("logs", self.name, check=False)
        return f"--- podman logs {self.name}:\n{proc.stdout}{proc.stderr}"

    def processes(self) -> list[psutil.Process]:
        """Every process in the container (PID 1, tini, and what it started), seen from here."""
        top = psutil.Process(int(self.state()["Pid"]))
        return [top, *top.children(recursive=True)]

    def stop(self, grace: int = 30) -> int:
        """podman stop: SIGTERM, then SIGKILL after `grace` seconds (as Kubernetes stops a
        pod after its ``terminationGracePeriodSeconds``); the container's exit code."""
        podman("stop", "--time", str(grace), self.name, timeout=grace + 60)
        return int(self.state()["ExitCode"])

    def remove(self) -> None:
        podman("rm", "--force", "--time", "5", self.name, check=False)
