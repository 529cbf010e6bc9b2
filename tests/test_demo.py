"""``hub-collab demo``: a real Hub with the managed service; Ctrl-C leaves nothing behind."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from hubfixtures import (
    ADMIN_USERS,
    SERVICE_NAME,
    Process,
    browser_login,
    clean_env,
    free_port,
    wait_until,
)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[Process, int, Path]]:
    port = free_port()
    data = tmp_path / "demo-data"
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


@pytest.mark.timeout(300)
def test_demo_login_and_clean_shutdown(demo: tuple[Process, int, Path]) -> None:
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
    assert (data / "jupyterhub_config.py").exists()
    assert (data / "jupyterhub.sqlite").exists()
    assert (data / "jupyterhub_cookie_secret").exists()

    # the Hub, the proxy and the service, all running under the demo process
    family = proc.note_descendants()
    names = " ".join(" ".join(p.cmdline()) for p in family)
    assert (
        "jupyterhub" in names
        and "configurable-http-proxy" in names
        and "hub_collab --data-dir" in names
    ), names

    # users land on the service after logging in at the Hub
    alice = browser_login(url, "alice")
    assert alice.get(url, timeout=10).url.startswith(service_url)
    resp = alice.get(service_url + "api/me", timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"name": "alice", "groups": ["students"], "admin": False}

    admin = browser_login(service_url, ADMIN_USERS[0])
    resp = admin.get(service_url + "api/me", timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json()["admin"] is True

    staff = browser_login(service_url, "ta").get(service_url + "api/me", timeout=10).json()
    assert staff["groups"] == ["staff"]

    # Ctrl-C: everything stops, nothing is left behind
    family = proc.note_descendants()
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGINT)
    code = proc.proc.wait(60)
    gone, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, (
        f"left running after Ctrl-C: {[(p.pid, p.cmdline()) for p in alive]}\n{proc.tail()}"
    )
    assert code == 0, proc.tail()
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=2)
