"""The rendered manifests run (issue 14): the chart's pod, in podman, registered with a
real JupyterHub exactly as zero-to-jupyterhub registers it from the values NOTES.txt prints.

What is taken from the render (metrics on, so that the ServiceMonitor and its token
exist), and how it runs here:

- The Deployment's pod: its init container ``upgrade-db`` to completion, then the
  container ``hub-collab``, each as ``podman run`` of the container's ``image`` (the one
  the ``image`` fixture built: the chart is given its tag as ``image.tag``), its
  ``command`` (none: the image's entrypoint) and ``args``, and its ``env`` with every
  ``secretKeyRef`` read from the rendered Secret, as the kubelet resolves them.
- The pod's volumes, each at its ``mountPath``: the ConfigMap's keys as files
  (``readOnly``), each emptyDir a directory made as the kubelet makes one (mode 0777,
  then group ``fsGroup`` with the setgid bit). Their ``sizeLimit`` is not enforced here.
- The security context: ``runAsUser``/``runAsGroup`` (``--user``), ``fsGroup``
  (``--group-add``), ``runAsNonRoot`` (checked: the uid is not 0),
  ``readOnlyRootFilesystem`` (``--read-only``, without podman's own tmpfs on /tmp and
  /run: only the pod's volumes are writable), ``allowPrivilegeEscalation: false``
  (``no-new-privileges``), ``capabilities``, the ``RuntimeDefault`` seccomp profile
  (podman's default one). A field of the pod or container that this test does not know
  how to run fails it, so that the chart cannot grow one that is never run.
- Not applied: ``resources`` (no cgroup controllers for podman here), the variables
  the kubelet adds for the namespace's Services (``enableServiceLinks``; the service
  reads none of them), and the pod's own network. The container shares the machine's
  (``--network host``; its host name is a pod's name), so its one change is that it
  listens on 127.0.0.1 (:func:`chartfixtures.on_loopback`). The values ``hub.url`` and
  ``hub.proxyUrl`` point at the test's Hub, as an admin's point at theirs.

The Hub (:class:`Z2jhHub`) is a real JupyterHub behind the real configurable-http-proxy.
Its services, roles and named servers are exactly the here-document of NOTES.txt, with
``$TOKEN`` and ``$METRICS_TOKEN`` read from the rendered Secret as NOTES.txt's
``kubectl get secret`` lines read them, made into JupyterHub's settings as
zero-to-jupyterhub's hub makes them (:func:`z2jh_hub_config`). The service's URL there
is the cluster's name of the chart's Service (``http://jh-hub-collab.jhub:<port>``): the
Hub and its proxy run in a mount namespace of their own whose ``/etc/hosts`` gives that
name the address 127.0.0.1, as the cluster's DNS gives it the Service's (the Service's
port is the container's, on the machine's network here). That needs root, as podman does.

Then: the probes answer as the kubelet asks them (startup within its budget, then
liveness and readiness); the pod's processes run as its user and only its volumes are
writable; the Hub reaches the service through its proxy and lists it in its Services
menu; alice logs in through the Hub's OAuth (without a consent page) and the token the
Hub gives the service for her holds only ``oauth_client_allowed_scopes`` for her; the
service's token holds the scopes of ``loadRoles``; the ServiceMonitor's scrape answers
with its bearer token (Prometheus text) and is refused without it (401) or with a
user's token (403); the pod stops with status 0 within its grace period. The pod starts
before the Hub knows of it, as in an install: the chart first, then the upgrade of
zero-to-jupyterhub that NOTES.txt asks for.

The prune-history CronJob (``config.history_keep_days``) runs the same way: its Jobs'
pod, from the rendered CronJob, to completion beside the service's pod, on SQLite (one
directory standing for the claim both pods mount, as two pods of one node mount a
``ReadWriteOnce`` claim) and on PostgreSQL, holding history for it to compact.

Marked ``image`` (``pytest -m image``): it needs the image (the session builds it once).
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import helm_python as helm
import pytest
import requests
from chartfixtures import (
    CHART,
    FULLNAME,
    NAMESPACE,
    NOTES,
    add_old_history,
    by_kind,
    container,
    history_rows,
    manifests,
    notes_variables,
    on_loopback,
    pod_spec,
    render,
    resolved_env,
    secret_data,
    z2jh_values,
)
from hubfixtures import (
    ADMIN_SERVICE,
    Hub,
    browser_login,
    free_port,
    require_root,
    wait_until,
)
from imagefixtures import PodmanContainer, podman
from prometheus_client.parser import text_string_to_metric_families
from replicas import PostgresDatabase
from test_auth import assert_error, auth

from hub_collab import __version__
from hub_collab.demo import SERVER_SCOPES, SERVICE_SCOPES

pytestmark = [pytest.mark.image, pytest.mark.timeout(1800)]

#: What the Hub's configuration may take from NOTES.txt's values: the keys of z2jh's
#: ``hub`` that :func:`z2jh_hub_config` translates.
Z2JH_HUB_KEYS = {"services", "loadRoles", "allowNamedServers"}


# -- zero-to-jupyterhub's hub, from the values NOTES.txt prints -----------------------------------


def z2jh_hub_config(values: dict[str, Any]) -> dict[str, Any]:
    """The JupyterHub settings (``JupyterHub.<trait>`` -> value) that zero-to-jupyterhub's
    hub pod makes of these chart values.

    As jupyterhub/zero-to-jupyterhub-k8s 4.4.0 does it (``jupyterhub/files/hub/
    jupyterhub_config.py`` with ``templates/hub/secret.yaml``), written here from its
    description, not its code:

    - ``hub.services`` is a dict by key; each entry becomes one dict of
      ``JupyterHub.services``, its ``name`` the key unless it names itself. Its ``apiToken``
      goes into the hub's Secret as ``hub.services.<key>.apiToken`` (the value given as
      ``api_token`` or ``apiToken``; given neither, the chart would make one up that the
      service never learns, so it must be given), and comes back from there as
      ``api_token``. Every other key (``url``, ``display``, ``oauth_no_confirm``,
      ``oauth_client_allowed_scopes``) reaches JupyterHub as it is written.
    - ``hub.loadRoles`` is a dict by key; each entry becomes one role of
      ``JupyterHub.load_roles``, its ``name`` the key unless it names itself.
    - ``hub.allowNamedServers`` is ``JupyterHub.allow_named_servers`` (the trait's name in
      camelCase, set unless null).

    Only these keys are known here: any other key of the values fails.
    """
    assert set(values) == {"hub"}, f"NOTES.txt's values set more than hub: {sorted(values)}"
    hub = copy.deepcopy(values["hub"])
    assert set(hub) <= Z2JH_HUB_KEYS, f"z2jh_hub_config does not translate {sorted(set(hub) - Z2JH_HUB_KEYS)}"
    hub_secret: dict[str, str] = {}
    services = []
    for key, service in hub.get("services", {}).items():
        token = service.get("api_token") or service.get("apiToken")
        assert token, f"hub.services.{key} has no apiToken: z2jh would generate one the service does not know"
        hub_secret[f"hub.services.{key}.apiToken"] = token
        service.setdefault("name", key)
        service.pop("apiToken", None)
        service["api_token"] = hub_secret[f"hub.services.{key}.apiToken"]
        services.append(service)
    roles = []
    for key, role in hub.get("loadRoles", {}).items():
        role.setdefault("name", key)
        roles.append(role)
    config: dict[str, Any] = {"JupyterHub.services": services, "JupyterHub.load_roles": roles}
    if hub.get("allowNamedServers") is not None:
        config["JupyterHub.allow_named_servers"] = hub["allowNamedServers"]
    return config


def test_the_translation_follows_zero_to_jupyterhub() -> None:
    """Names from keys unless given, the token moved to ``api_token``, the rest untouched."""
    values: dict[str, Any] = {"hub": {
        "services": {
            "a": {"url": "http://a:1", "apiToken": "t", "display": False, "oauth_no_confirm": True},
            "b": {"name": "bee", "api_token": "u"},
        },
        "loadRoles": {"r": {"scopes": ["self"]}, "s": {"name": "ess", "services": ["a"], "scopes": ["read:users"]}},
        "allowNamedServers": False,
    }}
    assert z2jh_hub_config(values) == {
        "JupyterHub.services": [
            {"url": "http://a:1", "display": False, "oauth_no_confirm": True, "name": "a", "api_token": "t"},
            {"name": "bee", "api_token": "u"},
        ],
        "JupyterHub.load_roles": [
            {"scopes": ["self"], "name": "r"},
            {"name": "ess", "services": ["a"], "scopes": ["read:users"]},
        ],
        "JupyterHub.allow_named_servers": False,
    }
    assert values["hub"]["services"]["a"]["apiToken"] == "t" and "name" not in values["hub"]["services"]["a"], "the values were changed"
    with pytest.raises(AssertionError, match="no apiToken"):
        z2jh_hub_config({"hub": {"services": {"a": {"url": "http://a:1"}}}})
    with pytest.raises(AssertionError, match="does not translate"):
        z2jh_hub_config({"hub": {"services": {}, "extraConfig": {}}})


class Z2jhHub(Hub):
    """A :class:`Hub` whose hub-collab settings are zero-to-jupyterhub's translation of
    NOTES.txt's values (:attr:`z2jh`, set before :meth:`start`), and which resolves the
    host names in :attr:`hosts` (name -> address) as the cluster's DNS would.

    The Hub's own settings stay the fixture's (addresses, DummyAuthenticator, users and
    groups), and so does its ``test-admin`` service (the tests' handle on users and
    tokens; here it may also read services). Every other service and role, and whether
    named servers are allowed, come from :attr:`z2jh`.
    """

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.z2jh: dict[str, Any] | None = None
        self.hosts: dict[str, str] = {}

    def settings(self) -> dict[str, Any]:
        assert self.z2jh is not None, "set z2jh (z2jh_hub_config of NOTES.txt's values) before start()"
        settings = super().settings()
        services = [s for s in settings["JupyterHub.services"] if s["name"] == ADMIN_SERVICE]
        roles = [r for r in settings["JupyterHub.load_roles"] if r["name"] == ADMIN_SERVICE]
        assert len(services) == len(roles) == 1
        roles[0]["scopes"] = [*roles[0]["scopes"], "read:services"]
        settings.pop("JupyterHub.default_url")
        settings.update(self.z2jh)
        settings["JupyterHub.services"] = services + self.z2jh["JupyterHub.services"]
        settings["JupyterHub.load_roles"] = roles + self.z2jh["JupyterHub.load_roles"]
        return settings

    def start(self) -> None:
        if self.hosts:
            require_root("a Hub that resolves the cluster's names (a mount namespace)")
            hosts = self.root / "hosts"
            hosts.write_text(
                Path("/etc/hosts").read_text()
                + "".join(f"{address} {name}\n" for name, address in self.hosts.items())
            )
            # its own /etc/hosts, seen by the Hub and the proxy it starts, nobody else
            self.process.argv = [
                "unshare", "--mount", "--propagation", "private", "--",
                "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts),
                *self.process.argv,
            ]  # fmt: skip
        super().start()


# -- the pod, as the kubelet runs it ----------------------------------------------------------------

#: The fields of a pod's securityContext, and of a container, that :class:`Pod` runs.
POD_SECURITY = {"runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "seccompProfile"}
CONTAINER_SECURITY = {"runAsNonRoot", "runAsUser", "runAsGroup", "allowPrivilegeEscalation", "readOnlyRootFilesystem", "capabilities"}
CONTAINER_FIELDS = {
    "name", "image", "imagePullPolicy", "command", "args", "env", "ports", "securityContext",
    "resources", "volumeMounts", "startupProbe", "livenessProbe", "readinessProbe",
}  # fmt: skip
#: what the kubelet counts as a successful httpGet probe
PROBE_OK = range(200, 400)


class Pod:
    """The pod of a rendered Deployment, run with podman: init containers to completion,
    then the container ``hub-collab`` (:attr:`main`). Or the pod of a rendered CronJob's
    Jobs (`workload` ``CronJob/prune-history``), whose container runs to completion
    (:meth:`run_to_completion`).

    A persistentVolumeClaim is a directory under `claims` named after the claim, made
    empty by the first pod that mounts it (as a provisioner makes a volume) and shared by
    every pod given the same `claims`, as pods of one node share a ``ReadWriteOnce``
    claim. Scheduling (``affinity``, ``nodeSelector``, ``tolerations``) is the
    scheduler's and ``restartPolicy`` the Job controller's: not applied here."""

    def __init__(
        self, kinds: dict[str, dict[str, Any]], root: Path, workload: str = "Deployment", claims: Path | None = None
    ) -> None:
        self.kinds = kinds
        self.spec: dict[str, Any] = pod_spec(kinds[workload])
        secret = kinds["Secret"]
        self.secrets = {secret["metadata"]["name"]: secret_data(secret)}
        self.root = root
        self.claims = claims if claims is not None else root / "claims"
        name = kinds[workload]["metadata"]["name"]
        if kinds[workload]["kind"] == "CronJob":
            # as a CronJob names its Jobs (<name>-<scheduled minute>), and a Job its pods
            self.hostname = f"{name}-{int(time.time() // 60)}-{secrets.token_hex(3)[:5]}"
        else:
            # as a Deployment names its pods: <name>-<replica set hash>-<suffix>
            self.hostname = f"{name}-{secrets.token_hex(5)}-{secrets.token_hex(3)[:5]}"
        self.volumes = {v["name"]: self._make_volume(v) for v in self.spec["volumes"]}
        self.main = PodmanContainer(f"{FULLNAME}-pod")

    def _make_volume(self, volume: dict[str, Any]) -> Path:
        path: Path = self.root / "volumes" / volume["name"]
        if "persistentVolumeClaim" in volume:
            path = self.claims / volume["persistentVolumeClaim"]["claimName"]
            if not path.exists():  # provisioned, empty
                path.mkdir(parents=True)
                path.chmod(0o777)
        elif "configMap" in volume:
            path.mkdir(parents=True)
            config_map = self.kinds["ConfigMap"]
            assert config_map["metadata"]["name"] == volume["configMap"]["name"], volume
            mode = volume["configMap"].get("defaultMode", 0o644)
            for key, text in config_map["data"].items():
                (path / key).write_text(text)
                (path / key).chmod(mode)
        elif "emptyDir" in volume:
            path.mkdir(parents=True)
            path.chmod(0o777)
        else:
            pytest.fail(f"this test does not know how to make the volume {volume}")
        fs_group = self.spec.get("securityContext", {}).get("fsGroup")
        if fs_group is not None:
            # the kubelet gives the volume's files to fsGroup (directories setgid; a claim's
            # files also readable and writable by the group), at every mount
            for item in [path, *path.rglob("*")]:
                os.chown(item, -1, fs_group)
                if item.is_dir():
                    item.chmod(item.stat().st_mode | 0o2070)
                elif "persistentVolumeClaim" in volume:
                    item.chmod(item.stat().st_mode | 0o060)
        return path

    def _security(self, c: dict[str, Any]) -> list[str]:
        pod = self.spec.get("securityContext", {})
        own = c.get("securityContext", {})
        assert set(pod) <= POD_SECURITY, f"the pod's securityContext sets {sorted(set(pod) - POD_SECURITY)}: run it here"
        assert set(own) <= CONTAINER_SECURITY, f"{c['name']}'s securityContext sets {sorted(set(own) - CONTAINER_SECURITY)}: run it here"
        merged = {**pod, **own}  # the container's settings win
        args: list[str] = []
        uid, gid = merged.get("runAsUser"), merged.get("runAsGroup")
        if merged.get("runAsNonRoot"):
            assert uid is not None and uid != 0, f"{c['name']}: runAsNonRoot with uid {uid}"
        if uid is not None:
            args += ["--user", f"{uid}:{gid}" if gid is not None else str(uid)]
        if "fsGroup" in pod:
            args += ["--group-add", str(pod["fsGroup"])]
        if "seccompProfile" in pod:
            assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, pod["seccompProfile"]
        if merged.get("readOnlyRootFilesystem"):
            args += ["--read-only", "--read-only-tmpfs=false"]
        if merged.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        caps = merged.get("capabilities", {})
        for cap in caps.get("drop", []):
            args += ["--cap-drop", cap]
        for cap in caps.get("add", []):
            args += ["--cap-add", cap]
        return args

    def _mounts(self, c: dict[str, Any]) -> list[str]:
        args: list[str] = []
        for mount in c.get("volumeMounts", []):
            assert set(mount) <= {"name", "mountPath", "readOnly"}, mount
            ro = ":ro" if mount.get("readOnly") else ""
            args += ["--volume", f"{self.volumes[mount['name']]}:{mount['mountPath']}{ro}"]
        return args

    def env(self, c: dict[str, Any]) -> dict[str, str]:
        """The container's environment as the kubelet makes it, listening on loopback."""
        return on_loopback(resolved_env(c, self.secrets))

    def run_args(self, c: dict[str, Any], name: str) -> list[str]:
        """``podman run`` arguments (after ``run``) for the container `c`."""
        assert set(c) <= CONTAINER_FIELDS, f"{c['name']} sets {sorted(set(c) - CONTAINER_FIELDS)}: run it here"
        env_file = self.root / f"{c['name']}.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in self.env(c).items()))
        env_file.chmod(0o600)
        args = [
            "--name", name, "--hostname", self.hostname, "--network", "host",
            "--env-file", str(env_file), *self._security(c), *self._mounts(c),
        ]  # fmt: skip
        if "command" in c:
            args += ["--entrypoint", json.dumps(c["command"])]
        return [*args, c["image"], *c.get("args", [])]

    def run_to_completion(self, c: dict[str, Any]) -> str:
        """The container `c` to completion (exit 0, or the test fails); its output."""
        name = f"{FULLNAME}-{c['name']}-{secrets.token_hex(4)}"
        done = podman("run", "--rm", *self.run_args(c, name), timeout=300, check=False)
        assert done.returncode == 0, f"container {c['name']} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr

    def run_init_containers(self) -> dict[str, str]:
        """Each init container, in order, to completion (exit 0, or the test fails); their output."""
        return {c["name"]: self.run_to_completion(c) for c in self.spec.get("initContainers", [])}

    def wait_started(self) -> None:
        """Until the container's startup probe succeeds, within its budget."""
        main = container(self.kinds["Deployment"])
        startup = main["startupProbe"]

        def started() -> requests.Response:
            self.main.check_running()
            try:
                resp = probe(main, "startupProbe")
            except requests.RequestException as exc:
                raise AssertionError(str(exc)) from None
            assert resp.status_code in PROBE_OK, f"{resp.status_code} {resp.text[:200]}"
            return resp

        budget = startup.get("initialDelaySeconds", 0) + startup["failureThreshold"] * startup["periodSeconds"]
        wait_until(started, timeout=budget, interval=0.2, what="the startup probe", on_timeout=self.main.logs)

    def start(self) -> None:
        podman("run", "--detach", *self.run_args(container(self.kinds["Deployment"]), self.main.name))

    def stop(self) -> int:
        """As the kubelet stops it: SIGTERM, SIGKILL after the grace period; the exit code."""
        return self.main.stop(grace=int(self.spec.get("terminationGracePeriodSeconds", 30)))


def probe_url(c: dict[str, Any], probe: dict[str, Any]) -> str:
    """Where the kubelet sends an httpGet probe: the pod's address (here 127.0.0.1), the
    port by number or by the container port's name, the path."""
    get = probe["httpGet"]
    assert set(get) <= {"path", "port", "scheme"}, get
    port = get["port"]
    if isinstance(port, str):
        port = next(p["containerPort"] for p in c["ports"] if p.get("name") == port)
    return f"{get.get('scheme', 'HTTP').lower()}://127.0.0.1:{port}{get['path']}"


def probe(c: dict[str, Any], kind: str) -> requests.Response:
    """One probe of `kind` (``startupProbe``...) as the kubelet makes it; the answer."""
    spec = c[kind]
    return requests.get(probe_url(c, spec), timeout=spec.get("timeoutSeconds", 1), allow_redirects=False)


# -- the test -------------------------------------------------------------------------------------


@pytest.fixture
def z2jh_hub(tmp_path: Path) -> Iterator[Z2jhHub]:
    """A Hub made, not started: the test configures it from its render, then starts it."""
    hub = Z2jhHub(tmp_path / "hub")
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def test_the_rendered_pod_runs_in_podman_beside_a_hub_configured_from_notes(
    chart: helm.Chart, image: str, z2jh_hub: Z2jhHub, tmp_path: Path
) -> None:
    hub = z2jh_hub
    repository, tag = image.rsplit(":", 1)
    assert tag.startswith(f"{__version__}-"), image
    port = free_port()
    rendered = render(chart, {
        "image": {"repository": repository, "tag": tag},
        "hub": {"url": hub.api_url.removesuffix("/hub/api"), "proxyUrl": hub.url.rstrip("/")},
        "service": {"port": port},
        "metrics": {"enabled": True},
    })
    kinds = by_kind(manifests(rendered))
    main = container(kinds["Deployment"])
    assert main["image"] == image and container(kinds["Deployment"], "upgrade-db")["image"] == image
    # the pod's data volume is an emptyDir (SQLite): the default install
    assert {"name": "data", "emptyDir": {}} in kinds["Deployment"]["spec"]["template"]["spec"]["volumes"]

    # -- the values an admin writes from NOTES.txt, with the tokens kubectl reads ---------------
    notes = rendered[NOTES]
    variables = notes_variables(notes, {(NAMESPACE, kinds["Secret"]["metadata"]["name"]): secret_data(kinds["Secret"])})
    assert set(variables) == {"TOKEN", "METRICS_TOKEN"}, variables
    values = z2jh_values(notes, variables)
    entry = values["hub"]["services"]["collab"]
    # the URL is the cluster's name of the chart's Service, at the container's port
    service = kinds["Service"]
    url = urlparse(entry["url"])
    assert url.hostname == f"{service['metadata']['name']}.{NAMESPACE}", entry["url"]
    (service_port,) = service["spec"]["ports"]
    assert url.port == service_port["port"]
    assert service_port["targetPort"] == "http" and {"name": "http", "containerPort": url.port, "protocol": "TCP"} in main["ports"]
    hub.hosts = {url.hostname: "127.0.0.1"}
    hub.z2jh = z2jh_hub_config(values)

    # -- the pod: upgrade-db, then the service; the kubelet's startup probe -----------------------
    pod = Pod(kinds, tmp_path / "pod")
    try:
        outputs = pod.run_init_containers()
        assert "created the schema" in outputs["upgrade-db"], outputs
        pod.start()
        pod.wait_started()
        for kind in ("livenessProbe", "readinessProbe"):
            resp = probe(main, kind)
            assert resp.status_code in PROBE_OK, (kind, resp.status_code, resp.text)
        assert probe(main, "readinessProbe").json()["database"] is True
        # every process of the pod runs as its user; only its volumes are writable
        uid = pod.spec["securityContext"]["runAsUser"]
        assert {(p.uids().real, p.uids().effective) for p in pod.main.processes()} == {(uid, uid)}
        refused = podman("exec", pod.main.name, "touch", "/opt/hub-collab/x", check=False)
        assert refused.returncode != 0 and "Read-only file system" in refused.stderr, refused
        podman("exec", pod.main.name, "touch", "/srv/hub-collab/x", "/tmp/x")
        assert (pod.volumes["data"] / "x").exists() and (pod.volumes["tmp"] / "x").exists()
        assert (pod.volumes["data"] / "hub-collab.sqlite").stat().st_uid == uid

        # -- the Hub, from NOTES.txt's values, started after the pod (as in an install) ----------
        hub.start()
        model = hub.api("GET", "services/collab")
        assert model["url"] == entry["url"] and model["display"] is True, model
        public = hub.url.rstrip("/") + model["prefix"]
        through_proxy = requests.get(public + "api/health", timeout=60)
        assert through_proxy.status_code == 200 and through_proxy.json()["ok"] is True, through_proxy.text

        # a browser's login through the Hub's OAuth: no consent page (oauth_no_confirm)
        alice = browser_login(public, "alice")
        me = alice.get(public + "api/me", timeout=60)
        assert me.status_code == 200, me.text
        assert me.json()["name"] == "alice"
        # users may reach it (loadRoles.user), so the Hub's Services menu lists it (display)
        home = alice.get(hub.url + "hub/home", timeout=60)
        assert re.search(rf'<a class="dropdown-item" href="{re.escape(model["prefix"])}">collab</a>', home.text), home.text
        # the token the Hub issued to the service for alice: oauth_client_allowed_scopes, for
        # her alone (besides the access scope and her identity)
        tokens = hub.api("GET", "users/alice/tokens")["api_tokens"]
        (oauth,) = [t for t in tokens if t.get("oauth_client") and "access:services!service=collab" in t["scopes"]]
        scopes = set(oauth["scopes"]) - {"access:services!service=collab"}
        assert {"servers!user=alice", "access:servers!user=alice"} <= scopes, scopes
        assert all(s.endswith("!user=alice") for s in scopes), scopes
        # the service's token (the chart's Secret, registered as NOTES.txt says) holds what
        # loadRoles gives it: what it needs of the Hub's API
        whoami = requests.get(hub.api_url + "/user", headers=auth(variables["TOKEN"]), timeout=60).json()
        assert (whoami["kind"], whoami["name"]) == ("service", "collab"), whoami
        assert set(SERVICE_SCOPES) | set(SERVER_SCOPES) <= set(whoami["scopes"]), whoami["scopes"]
        # it writes to its database on the data volume, with the read-only root
        created = requests.post(public + "api/notebooks", headers=auth(hub.token("instructor")), json={"name": "in the pod"}, timeout=60)
        assert created.status_code == 201, created.text

        # -- the ServiceMonitor's scrape, as Prometheus makes it ---------------------------------
        (endpoint,) = kinds["ServiceMonitor"]["spec"]["endpoints"]
        assert endpoint["port"] == "http"
        scrape_url = probe_url(main, {"httpGet": {"path": endpoint["path"], "port": endpoint["port"]}})
        credentials = endpoint["authorization"]["credentials"]
        bearer = pod.secrets[credentials["name"]][credentials["key"]]
        assert bearer == variables["METRICS_TOKEN"]
        scraped = requests.get(scrape_url, headers={"Authorization": f"{endpoint['authorization']['type']} {bearer}"}, timeout=60)
        assert scraped.status_code == 200, scraped.text
        assert scraped.headers["Content-Type"].startswith("text/plain"), scraped.headers
        families = {f.name for f in text_string_to_metric_families(scraped.text)}
        assert {"hubcollab_connections", "hubcollab_updates_in", "process_resident_memory_bytes"} <= families
        assert_error(requests.get(scrape_url, timeout=60), 401)
        assert_error(requests.get(scrape_url, headers={"Authorization": f"Bearer {hub.token('alice')}"}, timeout=60), 403)

        # -- stopped as the kubelet stops it: SIGTERM, within the grace period ---------------------
        assert pod.stop() == 0, pod.main.logs()
        assert "Traceback" not in pod.main.logs(), pod.main.logs()
    finally:
        pod.main.remove()


@pytest.mark.parametrize("database", ["sqlite-on-a-claim", "postgresql"])
def test_the_rendered_cronjob_prunes_the_history_in_podman(chart: helm.Chart, image: str, tmp_path: Path, database: str) -> None:
    """The prune-history CronJob's pod, run as the kubelet runs it, beside the service's pod
    (upgrade-db, then the service) on the same database, which holds 20-day-old history
    and 2-day-old history: with history_keep_days 7 it compacts the first into daily
    versions, keeps the second whole, and the service stays ready.

    SQLite on a claim: both pods mount the same directory, as two pods of one node mount a
    ReadWriteOnce claim (the CronJob's pod is bound to the service pod's node). PostgreSQL:
    the database URL from the rendered Secret, reached over the machine's network."""
    repository, tag = image.rsplit(":", 1)
    values: dict[str, Any] = {
        "image": {"repository": repository, "tag": tag},
        # no Hub: the service starts without one (a refused connection), the CronJob needs none
        "hub": {"url": "http://127.0.0.1:9", "proxyUrl": "http://127.0.0.1:9"},
        "service": {"port": free_port()},
        "config": {"history_keep_days": 7},
    }
    db: PostgresDatabase | None = None
    if database == "postgresql":
        db = PostgresDatabase()
        db.create()
        values["db"] = {"url": db.url}
    else:
        values["persistence"] = {"enabled": True}
    kinds = by_kind(manifests(render(chart, values)))
    cron = kinds["CronJob/prune-history"]
    prune = container(cron, "prune-history")
    assert prune["image"] == image
    claims = tmp_path / "claims"
    service = Pod(kinds, tmp_path / "service", claims=claims)
    try:
        assert "created the schema" in service.run_init_containers()["upgrade-db"]
        service.start()
        service.wait_started()
        if db is not None:
            url = db.url
        else:
            (claim,) = [v["persistentVolumeClaim"]["claimName"] for v in pod_spec(cron)["volumes"] if "persistentVolumeClaim" in v]
            assert claim == FULLNAME
            url = f"sqlite:///{claims / claim / 'hub-collab.sqlite'}"
        # what the service recorded over the last weeks: edits with their authors and times
        old, recent = add_old_history(url, days=20), add_old_history(url, days=2)
        assert (history_rows(url, old), history_rows(url, recent)) == (100, 100)

        job = Pod(kinds, tmp_path / "job", workload="CronJob/prune-history", claims=claims)
        assert set(job.volumes) == set(service.volumes)
        output = job.run_to_completion(prune)
        assert re.search(r": compacted 100 updates before \S+ \(UTC\) of 1 docs in 1 notebooks into 3 daily versions", output), output
        assert "Traceback" not in output, output
        assert (history_rows(url, old), history_rows(url, recent)) == (3, 100)
        # a second run finds nothing more to compact
        assert ": compacted 3 updates before" in job.run_to_completion(prune)
        assert history_rows(url, old) == 3

        ready = probe(container(kinds["Deployment"]), "readinessProbe")
        assert ready.status_code in PROBE_OK and ready.json()["database"] is True, ready.text
        if db is None:
            # every file of the claim is still the pods' user's (uid 1000) to write
            uid = pod_spec(cron)["securityContext"]["runAsUser"]
            assert {(f.name, f.stat().st_uid) for f in (claims / FULLNAME).iterdir() if f.name.startswith("hub-collab.sqlite")} <= {
                (name, uid) for name in ("hub-collab.sqlite", "hub-collab.sqlite-wal", "hub-collab.sqlite-shm")
            }
        assert service.stop() == 0, service.main.logs()
    finally:
        service.main.remove()
        if db is not None:
            db.drop()
