"""``hub-collab demo``: a real Hub with the managed service; Ctrl-C leaves nothing behind.

CI runs as root, so the demo under test runs each user's kernels on that user's own
server, as their own Unix account (its accounts are created if missing). The demo run
as another user (one account, local kernels, said at start and on every page) is
checked through the configuration and the message it would use (:func:`demo_settings`,
:func:`mode_message`): running it for real as another user would need a Python those
users may run the service with.
"""

from __future__ import annotations

import json
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from hubfixtures import (
    ADMIN_USERS,
    SERVICE_NAME,
    USERS,
    Process,
    browser_login,
    clean_env,
    free_port,
    require_root,
    wait_until,
)

from hub_collab.demo import SERVER_SCOPES, demo_settings, mode_message
from hub_collab.localspawn import SingleUserEnv
from hub_collab.unixusers import ensure_unix_user

NOT_ISOLATED = "Kernels are not isolated here"


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[Process, int, Path]]:
    require_root("the demo's users' servers (the demo as root)")
    # The data directory inside one that every user may enter (pytest's own tmp_path is
    # private already): the demo itself must keep users' servers out of it.
    parent = Path(tempfile.mkdtemp(prefix="hub-collab-demo-test-"))
    parent.chmod(0o755)
    data = parent / "demo-data"
    data.mkdir(mode=0o755)
    port = free_port()
    proc = Process(
        "hub-collab demo",
        [sys.executable, "-m", "hub_collab", "demo", "--port", str(port), "--data-dir", str(data)],
        env=clean_env(),
        cwd=tmp_path,
        log_path=tmp_path / "demo.log",
    )
    proc.start()
    try:
        yield proc, port, data
    finally:
        proc.stop()
        shutil.rmtree(parent, ignore_errors=True)


def notebook(*sources: str) -> dict[str, Any]:
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "cells": [
            {
                "id": f"c{i}",
                "cell_type": "code",
                "source": src,
                "metadata": {},
                "outputs": [],
                "execution_count": None,
            }
            for i, src in enumerate(sources)
        ],
    }


def stdout_of(result: dict[str, Any]) -> str:
    return "".join(
        str(o.get("text", "")) for o in result["outputs"] if o.get("output_type") == "stream"
    )


#: a cell that says which of `paths` its kernel can open
READ_PROBE = """
import contextlib, json
readable = []
for path in PATHS:
    with contextlib.suppress(OSError):  # refused: what the 0700 data directory is for
        with open(path, "rb") as f:
            f.read(1)
        readable.append(path)
print(json.dumps(readable))
"""


@pytest.mark.timeout(300)
def test_demo_as_root_runs_each_users_kernels_as_that_user_and_stops_cleanly(
    demo: tuple[Process, int, Path],
) -> None:
    proc, port, data = demo
    url = f"http://127.0.0.1:{port}/"
    service_url = f"{url}services/{SERVICE_NAME}/"

    def service_up() -> bool:
        proc.check_alive()
        proc.note_descendants()  # so that stop() cleans up after a failed start too
        assert "hub-collab demo is running" in proc.log_path.read_text(errors="replace"), (
            "no banner yet"
        )
        try:
            resp = requests.get(service_url + "api/me", timeout=2)
        except requests.ConnectionError as exc:
            raise AssertionError(str(exc)) from None
        # 401 from the service itself (not the proxy's 503): the managed service is up
        assert resp.status_code == 401, f"api/me: {resp.status_code}"
        return True

    wait_until(
        service_up,
        timeout=150,
        interval=0.2,
        what="the demo Hub and its service",
        on_timeout=proc.tail,
    )
    log = proc.log_path.read_text(errors="replace")
    assert url in log and "password 'demo'" in log
    # it said where kernels run, and never that they are not isolated
    assert "running as root, so each user's kernels run on that user's own" in log, log
    assert "NOT ISOLATED" not in log
    assert (data / "jupyterhub_config.py").exists()
    assert (data / "jupyterhub.sqlite").exists()
    assert (data / "jupyterhub_cookie_secret").exists()
    # the Hub's database and the service's data: root's only (it was 0755 before)
    for directory in (data, data / SERVICE_NAME):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    # every demo user has a Unix account now
    for name in USERS:
        assert pwd.getpwnam(name).pw_uid != 0, name

    # the Hub, the proxy and the service, all running under the demo process
    family = proc.note_descendants()
    names = " ".join(" ".join(p.cmdline()) for p in family)
    assert (
        "jupyterhub" in names
        and "configurable-http-proxy" in names
        and "hub_collab --data-dir" in names
        and "--HubCollab.kernel_provider=hub" in names
    ), names

    # users land on the service after logging in at the Hub
    alice = browser_login(url, "alice")
    assert alice.get(url, timeout=60).url.startswith(service_url)
    resp = alice.get(service_url + "api/me", timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"name": "alice", "groups": ["students"], "admin": False}
    # no page says kernels are not isolated
    for page in (service_url, service_url + "notebooks/abcdef"):
        text = alice.get(page, timeout=60).text
        assert NOT_ISOLATED not in text and '"kernels_isolated": true' in text, page

    admin = browser_login(service_url, ADMIN_USERS[0])
    resp = admin.get(service_url + "api/me", timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json()["admin"] is True

    staff = browser_login(service_url, "ta").get(service_url + "api/me", timeout=60).json()
    assert staff["groups"] == ["staff"]

    # alice runs a cell in her own kernel: on her own server (the Hub starts it), as herself
    private_files = [
        str(data / "jupyterhub.sqlite"),
        str(data / "jupyterhub_cookie_secret"),
        str(data / SERVICE_NAME / "cookie_secret"),
        str(data / SERVICE_NAME / "hub-collab.sqlite"),
    ]
    for path in private_files:
        assert Path(path).exists(), path
    created = alice.post(
        service_url + "api/notebooks",
        json={
            "name": "who am i",
            "content": notebook(
                "import os, pwd; print(pwd.getpwuid(os.getuid()).pw_name)",
                f"PATHS = {private_files!r}\n" + READ_PROBE,
            ),
        },
        headers=alice.xsrf_headers(),
        timeout=30,
    )
    assert created.status_code == 201, created.text
    nb_id = created.json()["id"]
    settings = alice.put(
        service_url + f"api/notebooks/{nb_id}/settings",
        json={"kernel_mode": "per-user"},
        headers=alice.xsrf_headers(),
        timeout=30,
    )
    assert settings.status_code == 200, settings.text

    def execute(cell: str) -> dict[str, Any]:
        resp = alice.post(
            service_url + f"api/notebooks/{nb_id}/cells/{cell}/execute?wait=1",
            headers=alice.xsrf_headers(),
            timeout=240,
        )
        assert resp.status_code == 200, f"{resp.status_code} {resp.text}\n{proc.tail()}"
        result: dict[str, Any] = resp.json()
        assert result["status"] == "ok", result
        return result

    assert stdout_of(execute("c0")) == "alice\n"
    # her kernel cannot read the Hub's or the service's secrets
    assert json.loads(stdout_of(execute("c1"))) == []
    status = alice.get(service_url + f"api/notebooks/{nb_id}/kernel", timeout=60).json()
    assert status["where"] == "on alice's server", status
    # her server and her kernel are processes of her account, under the demo
    alice_uid = pwd.getpwnam("alice").pw_uid
    hers = [" ".join(p.cmdline()) for p in proc.note_descendants() if _uid(p) == alice_uid]
    assert any("jupyterhub.singleuser" in c for c in hers), hers
    assert any("ipykernel" in c for c in hers), hers
    # her server's own address leads back to the service (it has no UI of its own)
    assert alice.get(url + "user/alice/", timeout=30).url.startswith(service_url)

    # Ctrl-C: everything stops (her server and kernel too), nothing is left behind
    family = proc.note_descendants()
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGINT)
    code = proc.proc.wait(90)
    gone, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, (
        f"left running after Ctrl-C: {[(p.pid, p.cmdline()) for p in alive]}\n{proc.tail()}"
    )
    assert code == 0, proc.tail()
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=2)


def _uid(proc: psutil.Process) -> int | None:
    try:
        return int(proc.uids().real)
    except psutil.Error:
        return None


def test_not_root_the_demo_runs_local_kernels_and_says_they_are_not_isolated() -> None:
    settings = demo_settings("/srv/demo", "127.0.0.1", 8000, 8001, 8002, 8003, singleuser=None)
    (service,) = settings["JupyterHub.services"]
    assert "--HubCollab.kernel_provider=local" in service["command"]
    assert "JupyterHub.spawner_class" not in settings
    granted = {s for role in settings["JupyterHub.load_roles"] for s in role["scopes"]}
    assert not {"servers", "access:servers"} & granted, granted
    message = mode_message(False, "bob")
    assert "KERNELS ARE NOT ISOLATED" in message
    assert "not running as root (bob)" in message
    assert "cannot run each user's server as that user" in message
    assert "run as\n  bob" in message


def test_as_root_the_demo_runs_users_servers_and_the_hub_provider() -> None:
    env = SingleUserEnv("/usr/bin/python3.11", "/opt/site-packages")
    settings = demo_settings("/srv/demo", "127.0.0.1", 8000, 8001, 8002, 8003, singleuser=env)
    (service,) = settings["JupyterHub.services"]
    assert "--HubCollab.kernel_provider=hub" in service["command"]
    assert settings["JupyterHub.spawner_class"] == "localprocess"
    assert settings["Spawner.cmd"] == ["/usr/bin/python3.11", "-m", "jupyterhub.singleuser"]
    assert settings["Spawner.environment"]["PYTHONPATH"] == "/opt/site-packages"
    assert settings["JupyterHub.allow_named_servers"] is True
    assert 0 < settings["JupyterHub.named_server_limit_per_user"] <= 5
    roles = [r for r in settings["JupyterHub.load_roles"] if SERVICE_NAME in r.get("services", [])]
    granted = {s for role in roles for s in role["scopes"]}
    assert set(SERVER_SCOPES) <= granted and {"servers", "access:servers", "read:users"} <= granted
    message = mode_message(True, "root", ["carol"])
    assert "own Unix account" in message and "carol" in message
    assert "NOT ISOLATED" not in message


def test_a_missing_account_is_created_with_a_private_home() -> None:
    require_root("creating Unix accounts")
    name = "hcdemo" + secrets.token_hex(4)
    try:
        assert ensure_unix_user(name, comment="hub-collab test") is True
        entry = pwd.getpwnam(name)
        assert entry.pw_uid != 0 and entry.pw_shell == "/bin/bash"
        home = Path(entry.pw_dir)
        assert home.is_dir() and home.stat().st_uid == entry.pw_uid
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        # an existing account is left as it is
        assert ensure_unix_user(name) is False
    finally:
        subprocess.run(["userdel", "-r", name], capture_output=True, check=False)


def test_a_group_of_the_same_name_is_reported_not_retried() -> None:
    require_root("creating Unix accounts")
    name = "hcdemo" + secrets.token_hex(4)
    subprocess.run(["groupadd", name], check=True, capture_output=True)
    try:
        started = time.monotonic()
        with pytest.raises(RuntimeError, match=f"cannot create the Unix account '{name}'.*group"):
            ensure_unix_user(name, timeout=60)
        # said at once: waiting cannot make the name free
        assert time.monotonic() - started < 30
    finally:
        subprocess.run(["groupdel", name], capture_output=True, check=False)
