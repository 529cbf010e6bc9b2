"""Prometheus metrics at ``GET metrics``: who may read them, what they say, and that the
counters move when the events they count happen (a real Hub, the service, kernels).

Authorization is JupyterHub's: a token with ``read:metrics`` (the ``test-prometheus``
service, or an admin's token narrowed to it) or a Hub admin; no credentials 401, a user
without the scope 403, both in the one error shape. ``authenticate_prometheus`` off
opens it; ``metrics_enabled`` off answers 404 (each in a service of its own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from hubfixtures import CollabService, DirectService, Hub, wait_until
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from test_auth import assert_error, auth
from test_docs import documented_metrics

from hub_collab.client import CollabClient
from hub_collab.metrics import Metrics, describe

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, token: str | None = None, **headers: str) -> requests.Response:
    if token is not None:
        headers.update(auth(token))
    return requests.get(url + "metrics", headers=headers, timeout=60)


def samples(text: str) -> Samples:
    """Every sample of a text exposition, by (name, sorted labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def assert_documented(text: str) -> None:
    """What a scrape serves is what docs/operations.md documents: the same names, and for
    each its type, its help text and no label the docs do not name."""
    documented = documented_metrics()
    served = set()
    for family in text_string_to_metric_families(text):
        name = family.name + "_total" if family.type == "counter" else family.name
        served.add(name)
        assert name in documented, f"{name} is served but not in docs/operations.md"
        kind, labels, help_text = documented[name]
        assert family.type == kind, (name, family.type, kind)
        assert " ".join(family.documentation.split()).replace("|", "/") == help_text, name
        used = {label for s in family.samples for label in s.labels} - {"le", "quantile"}
        assert used <= set(labels), (name, sorted(used), labels)
    assert served == set(documented), f"documented, not served: {sorted(set(documented) - served)}"


def until(scrape_now: Callable[[], str], check: Callable[[str], bool], what: str) -> str:
    """Scrape until ``check`` holds for the text; that text."""

    def ready() -> str | None:
        text = scrape_now()
        return text if check(text) else None

    return wait_until(ready, what=what)


# -- the instruments ----------------------------------------------------------------------


def test_the_documentation_check_sees_a_missing_or_changed_metric() -> None:
    """Positive control of :func:`assert_documented`, on the registry's own exposition."""
    from prometheus_client import generate_latest

    text = generate_latest(Metrics().registry).decode()
    assert_documented(text)
    extra = "# HELP hubcollab_extra Not in the docs.\n# TYPE hubcollab_extra gauge\nhubcollab_extra 1.0\n"
    with pytest.raises(AssertionError, match="hubcollab_extra is served but not in docs"):
        assert_documented(text + extra)
    with pytest.raises(AssertionError, match="hubcollab_connections"):
        assert_documented(text.replace("WebSocket connections open on this replica.", "Connections."))
    missing = "\n".join(line for line in text.splitlines() if "hubcollab_rooms_loaded" not in line)
    with pytest.raises(AssertionError, match="documented, not served: \\['hubcollab_rooms_loaded'\\]"):
        assert_documented(missing)


def test_loop_histograms_expose_what_prometheus_clients_would() -> None:
    """The lock-free histogram and counter give the same exposition as prometheus_client's."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from hub_collab.metrics import FANOUT_BUCKETS

    ours = Metrics()
    reference = CollectorRegistry()
    theirs = Histogram("hubcollab_fanout_seconds", "x", buckets=FANOUT_BUCKETS, registry=reference)
    counter = Counter("hubcollab_updates_out", "x", registry=reference)
    for v in (0.0, 0.0001, 0.00010001, 0.0005, 0.003, 2.5, 7.0, 1e-9, 0.25):  # on a bound, just above, beyond all
        ours.fanout_seconds.observe(v)
        theirs.observe(v)
        ours.updates_out.inc(3)
        counter.inc(3)

    def lines(registry: CollectorRegistry, prefix: str) -> list[str]:
        text = generate_latest(registry).decode()
        return [line for line in text.splitlines() if line.startswith(prefix) and "_created" not in line]

    assert lines(ours.registry, "hubcollab_fanout_seconds") == lines(reference, "hubcollab_fanout_seconds")
    assert lines(ours.registry, "hubcollab_updates_out") == lines(reference, "hubcollab_updates_out")
    with pytest.raises(ValueError, match="has the labels"):
        ours.executions.labels()


# -- who may read them ---------------------------------------------------------------------


def test_no_credentials_is_401(collab: CollabService) -> None:
    body = assert_error(scrape(collab.public_url), 401, "unauthenticated")
    assert "read:metrics" in body["message"]


@pytest.mark.parametrize("header", ["token not-a-real-token", "token ", "Bearer x" * 100, "garbage"])
def test_bad_credentials_are_401(collab: CollabService, header: str) -> None:
    resp = requests.get(collab.public_url + "metrics", headers={"Authorization": header}, timeout=60)
    assert_error(resp, 401, "unauthenticated")


def test_a_user_token_without_the_scope_is_403(hub: Hub, collab: CollabService) -> None:
    body = assert_error(scrape(collab.public_url, hub.token("alice")), 403, "forbidden")
    assert "read:metrics" in body["message"]
    # a token of the service's own users reads everything else, not this
    assert requests.get(collab.public_url + "api/me", headers=auth(hub.token("alice")), timeout=60).status_code == 200


def test_a_browser_login_of_a_user_is_403_and_of_an_admin_200(
    collab: CollabService, browser_login: Callable[..., requests.Session]
) -> None:
    alice = browser_login(collab.public_url, "alice")
    assert_error(alice.get(collab.public_url + "metrics", timeout=60), 403, "forbidden")
    admin = browser_login(collab.public_url, "admin")
    resp = admin.get(collab.public_url + "metrics", timeout=60)
    assert resp.status_code == 200, resp.text[:300]


def test_the_scrapers_token_reads_them_and_they_parse(hub: Hub, collab: CollabService) -> None:
    """The ``test-prometheus`` service holds read:metrics and nothing else: it may not use
    the service (no access scope), but it may read its metrics."""
    assert requests.get(collab.public_url + "api/me", headers=auth(hub.metrics_token), timeout=60).status_code == 403
    resp = scrape(collab.public_url, hub.metrics_token)
    assert resp.status_code == 200, resp.text[:300]
    assert resp.headers["Content-Type"].startswith("text/plain"), resp.headers["Content-Type"]
    assert resp.headers["Cache-Control"] == "no-store"
    families = {f.name: f for f in text_string_to_metric_families(resp.text)}
    expected = {d.name.removesuffix("_total") if d.type == "counter" else d.name for d in describe(Metrics())}
    assert expected <= set(families), sorted(expected - set(families))
    for name, family in families.items():
        assert family.documentation, f"{name} has no help text"
        if name.startswith("hubcollab_"):
            assert family.type in ("counter", "gauge", "histogram"), (name, family.type)
    assert_documented(resp.text)
    # Prometheus sends it as a bearer token
    assert requests.get(collab.public_url + "metrics", headers={"Authorization": f"Bearer {hub.metrics_token}"}, timeout=60).status_code == 200
    # the process collectors are there too
    assert value(resp.text, "process_resident_memory_bytes") > 0
    # nothing names a user or a notebook
    assert "alice" not in resp.text and "notebook_id" not in resp.text


def test_an_admin_token_narrowed_to_the_scope_reads_them(hub: Hub, collab: CollabService) -> None:
    resp = scrape(collab.public_url, hub.token("admin", scopes=["read:metrics"]))
    assert resp.status_code == 200, resp.text[:300]


def test_openmetrics_when_asked(hub: Hub, collab: CollabService) -> None:
    resp = scrape(collab.public_url, hub.metrics_token, Accept="application/openmetrics-text; version=1.0.0")
    assert resp.status_code == 200, resp.text[:300]
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text"), resp.headers["Content-Type"]
    names = {f.name for f in parse_openmetrics(resp.text)}
    assert "hubcollab_updates_in" in names and "hubcollab_connections" in names


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods_are_refused(hub: Hub, collab: CollabService, method: str) -> None:
    resp = requests.request(method, collab.public_url + "metrics", headers=auth(hub.metrics_token), data=b"x", timeout=60)
    assert_error(resp, 405)


def test_a_token_in_the_url_is_refused_and_not_logged(hub: Hub, collab: CollabService) -> None:
    """``?token=`` is not a way in (HubAuth's ``allow_token_in_url`` is off), and no access
    log line shows a query string (here a refused API request's, logged at warning)."""
    resp = requests.get(collab.public_url + "metrics", params={"token": hub.metrics_token}, timeout=60)
    assert_error(resp, 401, "unauthenticated")
    resp = requests.get(collab.public_url + "api/notebooks", params={"token": hub.metrics_token, "x": "y"}, timeout=60)
    assert_error(resp, 401, "unauthenticated")
    wait_until(lambda: "401 GET /services/collab/api/notebooks (" in collab.tail(200), what="the access log line", on_timeout=collab.tail)
    assert hub.metrics_token not in collab.log_path.read_text(errors="replace")


# -- what they count ---------------------------------------------------------------------------


async def test_counters_move_with_edits_joins_commits_and_executions(hub: Hub, collab: CollabService) -> None:
    token = hub.metrics_token

    def now() -> str:
        resp = scrape(collab.public_url, token)
        assert resp.status_code == 200, resp.text[:300]
        return resp.text

    before = now()
    alice = CollabClient(collab.public_url, hub.token("alice"))
    bob = CollabClient(collab.public_url, hub.token("bob"))
    nb = await alice.create_notebook(
        "metrics",
        {
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {},
            "cells": [
                {"id": "code", "cell_type": "code", "metadata": {}, "source": "1 + 1", "outputs": [], "execution_count": None},
                {"id": "oops", "cell_type": "code", "metadata": {}, "source": "1 / 0", "outputs": [], "execution_count": None},
            ],
        },
        group="students",
        mode="0770",
        default_cell_mode="0770",
    )
    try:
        async with alice.open(nb["id"]) as a, bob.open(nb["id"]) as b:
            await a.synced()
            await b.synced()
            during = now()
            assert value(during, "hubcollab_connections") >= value(before, "hubcollab_connections") + 2
            assert value(during, "hubcollab_rooms_loaded") >= 1
            assert value(during, "hubcollab_docs_held") >= 5  # index, two cells and their outputs
            assert value(during, "hubcollab_join_seconds_count") >= value(before, "hubcollab_join_seconds_count") + 2
            for i in range(10):
                a.edit("code", 0, insert=str(i))
            await b.wait_for(lambda: b.source("code").startswith("9876543210"))
            await a.sync()  # committed: the commit histogram has seen it
            after_edits = now()
            assert value(after_edits, "hubcollab_updates_in_total", source="client") >= value(before, "hubcollab_updates_in_total", source="client") + 10
            assert value(after_edits, "hubcollab_updates_out_total") >= value(before, "hubcollab_updates_out_total") + 10
            assert value(after_edits, "hubcollab_fanout_seconds_count") >= value(before, "hubcollab_fanout_seconds_count") + 10
            assert value(after_edits, "hubcollab_update_log_commit_seconds_count") > value(before, "hubcollab_update_log_commit_seconds_count")
            # executions by status; the kernel by provider and state
            await a.execute("code")
            await a.wait_executed("code")
            await a.execute("oops")
            assert (await a.wait_executed("oops"))["status"] == "error"
            errors_before = value(before, "hubcollab_executions_total", status="error")
            ran = until(now, lambda t: value(t, "hubcollab_executions_total", status="error") > errors_before, "the error counted")
            assert value(ran, "hubcollab_executions_total", status="ok") >= value(before, "hubcollab_executions_total", status="ok") + 1
            assert value(ran, "hubcollab_kernels", provider="local", state="idle") >= 1
            assert ("hubcollab_kernels", (("provider", "local"), ("state", "dead"))) in samples(ran)  # every state, 0 too
            assert value(ran, "hubcollab_kernel_queued_cells") == 0
            assert value(ran, "hubcollab_updates_in_total", source="server") > value(before, "hubcollab_updates_in_total", source="server")
            assert value(ran, "hubcollab_event_loop_lag_seconds_count") > 0
        # the connections are gone from the gauge once closed
        connected_before = value(before, "hubcollab_connections")
        await asyncio.to_thread(until, now, lambda t: value(t, "hubcollab_connections") <= connected_before, "the connections to close")
    finally:
        await alice.request("DELETE", f"api/notebooks/{nb['id']}/kernel")
        alice.close()
        bob.close()


# -- settings: open, off ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def open_metrics(hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DirectService]:
    service = DirectService(hub, Path(tmp_path_factory.mktemp("open-metrics")), extra_args=["--HubCollab.authenticate_prometheus=False"])
    service.start()
    try:
        yield service
    finally:
        service.stop()


def test_authenticate_prometheus_off_opens_them(open_metrics: DirectService, hub: Hub) -> None:
    resp = scrape(open_metrics.direct_url)
    assert resp.status_code == 200, resp.text[:300]
    assert "hubcollab_connections" in {f.name for f in text_string_to_metric_families(resp.text)}
    # nothing else is opened
    assert_error(requests.get(open_metrics.direct_url + "api/notebooks", timeout=60), 401, "unauthenticated")


def test_metrics_off_is_404(hub: Hub, tmp_path: Path) -> None:
    service = DirectService(hub, tmp_path / "no-metrics", extra_args=["--HubCollab.metrics_enabled=False"])
    service.start()
    try:
        assert_error(scrape(service.direct_url, hub.metrics_token), 404, "not_found")
        assert requests.get(service.direct_url + "api/health", timeout=60).status_code == 200
    finally:
        service.stop()
