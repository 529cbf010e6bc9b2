"""The Helm chart ``helm/hub-collab``, rendered and linted by Helm's own engine, offline.

- Rendering and ``helm lint --strict`` go through helm-python-sdk, which binds
  ``libhelm_c``: Helm v4's Go SDK (``pkg/engine``, ``pkg/lint``, the values schema
  check) compiled into a shared library. No ``helm`` binary and no cluster.
- Every rendered manifest is validated, strictly (unknown fields refused), against the
  Kubernetes OpenAPI schemas of kubernetes-validate for the oldest and the newest
  Kubernetes that zero-to-jupyterhub's current release (4.4.0) runs on: 1.28 (its
  ``kubeVersion: >=1.28.0-0``) and 1.36 (the newest Kubernetes when 4.4.0 was released;
  its CI's k3s "latest" channel); also 1.37, the newest Kubernetes today, which 4.4.0
  does not exclude. The ServiceMonitor, a prometheus-operator CRD that kubernetes-validate
  has no schema for, is validated by the operator's generated model
  (cloudcoil-models-prometheus-operator) with unknown fields refused.
- ``lookup`` sees no cluster offline. The tests that keep the generated secrets across an
  upgrade render through :class:`helm_python.Config` against :class:`FakeAPIServer`, a
  loopback stand-in for the API server that answers the two requests Helm's ``lookup``
  makes (API discovery of ``v1``, and GET of one Secret). What a real cluster adds (RBAC
  on Secrets for whoever runs Helm, the Secret written by an install) is not tested here.
- The rendered service is run for real: the init container's ``hub-collab upgrade-db``
  and the container's command, with the environment the Deployment gives them (Secrets
  resolved as the kubelet would), against the real Hub of the ``hub`` fixture; and the
  prune-history CronJob's command (made with ``config.history_keep_days``) against a
  SQLite database holding weeks-old history.
  ``tests/test_chart_pod.py`` runs the whole pod in the image, with podman, beside a Hub
  configured from NOTES.txt (marker ``image``).

The helpers that read a render are in :mod:`chartfixtures`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import requests
import yaml
from chartfixtures import (
    CHART,
    FULLNAME,
    NAMESPACE,
    NOTES,
    RELEASE,
    add_old_history,
    by_kind,
    container,
    env_of,
    history_rows,
    manifests,
    objects,
    on_loopback,
    pod_spec,
    render,
    resolved_env,
    secret_data,
    z2jh_values,
)
from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor
from hubfixtures import Hub, Process, clean_env, free_port, wait_until
from traitlets import Bool, Dict, Float, Int, List, Unicode

from hub_collab import __version__
from hub_collab.app import HubCollab
from hub_collab.demo import SERVER_SCOPES, SERVICE_SCOPES

#: zero-to-jupyterhub 4.4.0: kubeVersion ">=1.28.0-0"; the newest Kubernetes at its release.
K8S_OLDEST = "1.28.0"
K8S_NEWEST = "1.36.0"
#: the newest Kubernetes now (kubernetes-validate's newest schemas)
K8S_LATEST = "1.37.0"

#: HubCollab settings the chart sets itself (environment or its own logic), which its
#: ``config`` value therefore refuses.
CHART_OWNED = {
    "api_token": "JUPYTERHUB_API_TOKEN",
    "base_url": "JUPYTERHUB_SERVICE_PREFIX",
    "config_file": "-f /etc/hub-collab/hub_collab_config.py",
    "cookie_secret": "HUB_COLLAB_COOKIE_SECRET",
    "cookie_secret_file": "HUB_COLLAB_COOKIE_SECRET (no file)",
    "data_dir": "HUB_COLLAB_DATA_DIR",
    "db_url": "HUB_COLLAB_DB_URL",
    "generate_config": "never in a pod",
    "hub_api_url": "JUPYTERHUB_API_URL",
    "hub_public_url": "JUPYTERHUB_PUBLIC_HUB_URL",
    "ip": "JUPYTERHUB_SERVICE_URL",
    "kernel_gateway_token": "HUB_COLLAB_GATEWAY_TOKEN",
    "policies_dir": "the image's policies",
    "port": "JUPYTERHUB_SERVICE_URL",
    "redis_url": "HUB_COLLAB_REDIS_URL",
    "replica_id": "the default: pod name and a random suffix",
    "service_name": "JUPYTERHUB_SERVICE_NAME",
}

SCALED = {
    "replicas": 3,
    "db": {"existingSecret": "collab-db", "existingSecretKey": "url"},
    "redis": {"existingSecret": "collab-redis", "existingSecretKey": "url"},
    "cookieSecret": {"existingSecret": "collab-cookie"},
    "apiToken": {"existingSecret": "hub", "existingSecretKey": "hub.services.collab.apiToken"},
}
SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "scaled": SCALED,
    "metrics": {"metrics": {"enabled": True}},
    "no-network-policy": {"networkPolicy": {"enabled": False}},
    "urls-in-values": {
        "replicas": 2,
        "db": {"url": "postgresql://collab:pw@postgres:5432/collab"},
        "redis": {"url": "redis://redis:6379/0"},
        "persistence": {"enabled": True},
        # and every scheduling value, to validate what they render
        "podAntiAffinity": "hard",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "hub.jupyter.org/dedicated", "operator": "Equal", "value": "core", "effect": "NoSchedule"}],
        "podAnnotations": {"example.org/team": "teaching"},
        "podLabels": {"example.org/cost-centre": "42"},
        "priorityClassName": "hub-core",
        "image": {"pullSecrets": ["regcred"]},
        "resources": {"requests": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "1Gi"}, "limits": {"memory": "2Gi"}},
        "metrics": {"enabled": True, "token": {"existingSecret": "scraper", "existingSecretKey": "token"}},
        "hub": {"namespace": "z2jh"},
    },
    "sqlite-on-a-volume": {"persistence": {"enabled": True, "storageClass": "standard"}},
    # history retention: the prune-history CronJob, on SQLite's claim and on PostgreSQL
    "history-on-a-volume": {"config": {"history_keep_days": 30}, "persistence": {"enabled": True}},
    "history-on-postgresql": {
        **SCALED,
        "config": {"history_keep_days": 7},
        "pruneHistory": {"schedule": "@daily", "timeZone": "", "resources": {"requests": {"cpu": "50m"}}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "hub.jupyter.org/dedicated", "operator": "Equal", "value": "core", "effect": "NoSchedule"}],
        "podLabels": {"example.org/cost-centre": "42"},
        "image": {"pullSecrets": ["regcred"]},
        "networkPolicy": {"database": {"ports": [5432, 6432], "to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}},
    },
    "gateway": {
        "config": {"kernel_provider": "gateway", "kernel_gateway_url": "http://gateway:8888/"},
        "kernelGatewayToken": {"existingSecret": "gw"},
        "networkPolicy": {"egress": [{"ports": [{"port": 8888}], "to": [{"podSelector": {"matchLabels": {"app": "gateway"}}}]}]},
    },
}


# -- rendering ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


# -- lint and validation --------------------------------------------------------------------


@pytest.mark.parametrize("kube", [K8S_OLDEST, K8S_NEWEST])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_lint_strict_finds_nothing(scenario: str, kube: str) -> None:
    report = helm.lint(CHART, SCENARIOS[scenario], strict=True, kube_version=f"v{kube}", namespace=NAMESPACE)
    assert report["errors"] == []
    # severity 1 is "info" (the chart has no icon); warnings (2) and errors (3) fail
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("kube", [K8S_OLDEST, K8S_NEWEST, K8S_LATEST])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_manifest_is_valid_kubernetes(chart: helm.Chart, scenario: str, kube: str) -> None:
    docs = manifests(render(chart, SCENARIOS[scenario]))
    assert docs
    for doc in docs:
        where = f"{doc['kind']} {doc['metadata']['name']} ({scenario}, Kubernetes {kube})"
        if doc["apiVersion"] == "monitoring.coreos.com/v1":
            model = ServiceMonitor.model_validate(doc)
            # the model ignores unknown fields: a field it dropped is one the CRD lacks
            assert model.model_dump(by_alias=True, exclude_unset=True, mode="json") == doc, where
            continue
        try:
            kubernetes_validate.validate(doc, kube, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {exc.message} at {list(exc.path)}")


def test_the_validator_refuses_an_unknown_field(chart: helm.Chart) -> None:
    """Positive control: strict validation does catch a field Kubernetes does not know."""
    deployment = objects(chart, {})["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="livenesProbe"):
        kubernetes_validate.validate(deployment, K8S_NEWEST, strict=True)


def test_the_chart_runs_this_version() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["appVersion"] == __version__
    assert meta["kubeVersion"] == f">={K8S_OLDEST}-0"


# -- what the defaults make ---------------------------------------------------------------


def test_default_install(chart: helm.Chart) -> None:
    kinds = objects(chart, {})
    assert set(kinds) == {"ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Secret", "Service", "ServiceAccount"}
    dep = kinds["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    main = container(dep)
    assert main["image"] == f"localhost/hub-collab:{__version__}"
    assert dep["spec"]["replicas"] == 1
    # one pod with SQLite on an emptyDir: the old pod stops before the new one starts
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    assert {"name": "data", "emptyDir": {}} in pod["volumes"]
    assert pod["terminationGracePeriodSeconds"] == 60
    assert pod["securityContext"]["runAsUser"] == 1000 and pod["securityContext"]["runAsNonRoot"] is True
    for c in (main, container(dep, "upgrade-db")):
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False
    assert kinds["ServiceAccount"]["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == FULLNAME
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels["hub.jupyter.org/network-access-hub"] == "true"
    assert labels["hub.jupyter.org/network-access-proxy-http"] == "true"

    assert main["startupProbe"]["httpGet"]["path"] == "/services/collab/api/health/startup"
    assert main["livenessProbe"]["httpGet"]["path"] == "/services/collab/api/health/live"
    assert main["readinessProbe"]["httpGet"]["path"] == "/services/collab/api/health"
    assert main["ports"] == [{"name": "http", "containerPort": 10101, "protocol": "TCP"}]
    assert kinds["Service"]["spec"]["ports"][0]["port"] == 10101

    env = env_of(main)
    assert env == {
        "JUPYTERHUB_SERVICE_NAME": "collab",
        "JUPYTERHUB_SERVICE_PREFIX": "/services/collab/",
        "JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:10101",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_API_URL": "http://hub:8081/hub/api",
        "JUPYTERHUB_API_TOKEN": ("secret", FULLNAME, "api-token"),
        "JUPYTERHUB_CLIENT_ID": "service-collab",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": "/services/collab/oauth_callback",
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": '["access:services!service=collab"]',
        "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES": '["servers!user","access:servers!user"]',
        "JUPYTERHUB_PUBLIC_HUB_URL": "http://proxy-public/hub/",
        "HOME": "/tmp",
        "HUB_COLLAB_DATA_DIR": "/srv/hub-collab",
        "HUB_COLLAB_COOKIE_SECRET": ("secret", FULLNAME, "cookie-secret"),
    }
    upgrade = container(dep, "upgrade-db")
    # the image's entrypoint (tini, then hub-collab) stays: arguments only
    assert "command" not in main and "command" not in upgrade
    assert main["args"] == ["-f", "/etc/hub-collab/hub_collab_config.py"]
    assert upgrade["args"] == ["upgrade-db", "-f", "/etc/hub-collab/hub_collab_config.py"]
    assert env_of(upgrade) == {"HOME": "/tmp", "HUB_COLLAB_DATA_DIR": "/srv/hub-collab"}

    secrets = secret_data(kinds["Secret"])
    assert set(secrets) == {"api-token", "cookie-secret"}
    for value in secrets.values():
        assert re.fullmatch("[0-9a-f]{64}", value)

    policy = kinds["NetworkPolicy"]["spec"]
    sources = [peer["podSelector"]["matchLabels"] for peer in policy["ingress"][0]["from"]]
    assert sources == [{"app": "jupyterhub", "component": "proxy"}, {"app": "jupyterhub", "component": "hub"}]
    egress_ports = [tuple(p["port"] for p in rule["ports"]) for rule in policy["egress"]]
    # the Hub's API, the proxy, DNS: no database or Redis with SQLite and no Redis
    assert egress_ports == [(8081,), (8000,), (53, 53)]


def test_three_replicas_with_postgresql_redis_and_existing_secrets(chart: helm.Chart) -> None:
    kinds = objects(chart, SCALED)
    dep = kinds["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert [v["name"] for v in pod["volumes"]] == ["config", "tmp"]  # no data volume
    env = env_of(container(dep))
    assert env["HUB_COLLAB_DB_URL"] == ("secret", "collab-db", "url")
    assert env["HUB_COLLAB_REDIS_URL"] == ("secret", "collab-redis", "url")
    assert env["HUB_COLLAB_COOKIE_SECRET"] == ("secret", "collab-cookie", "cookie-secret")
    assert env["JUPYTERHUB_API_TOKEN"] == ("secret", "hub", "hub.services.collab.apiToken")
    assert env["HUB_COLLAB_DATA_DIR"] == "/tmp/hub-collab"
    assert env_of(container(dep, "upgrade-db"))["HUB_COLLAB_DB_URL"] == ("secret", "collab-db", "url")
    # nothing the user keeps in their own Secrets is copied into the chart's
    assert secret_data(kinds["Secret"]) == {}
    assert kinds["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    egress_ports = [tuple(p["port"] for p in rule["ports"]) for rule in kinds["NetworkPolicy"]["spec"]["egress"]]
    assert egress_ports == [(8081,), (8000,), (5432,), (6379,), (53, 53)]


def test_urls_given_as_values_are_kept_in_the_charts_secret(chart: helm.Chart) -> None:
    kinds = objects(chart, SCENARIOS["urls-in-values"])
    assert secret_data(kinds["Secret"])["db-url"] == "postgresql://collab:pw@postgres:5432/collab"
    assert secret_data(kinds["Secret"])["redis-url"] == "redis://redis:6379/0"
    env = env_of(container(kinds["Deployment"]))
    assert env["HUB_COLLAB_DB_URL"] == ("secret", FULLNAME, "db-url")
    assert env["HUB_COLLAB_REDIS_URL"] == ("secret", FULLNAME, "redis-url")
    # persistence is for SQLite: with PostgreSQL no claim is made
    assert "PersistentVolumeClaim" not in kinds
    credentials = kinds["ServiceMonitor"]["spec"]["endpoints"][0]["authorization"]["credentials"]
    assert credentials == {"name": "scraper", "key": "token"}
    assert "metrics-token" not in secret_data(kinds["Secret"])
    required = kinds["Deployment"]["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required[0]["topologyKey"] == "kubernetes.io/hostname"
    # z2jh in another namespace: its pods are selected there
    for peer in kinds["NetworkPolicy"]["spec"]["ingress"][0]["from"]:
        assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "z2jh"}}


def test_sqlite_on_a_volume(chart: helm.Chart) -> None:
    kinds = objects(chart, SCENARIOS["sqlite-on-a-volume"])
    claim = kinds["PersistentVolumeClaim"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claim["spec"]["storageClassName"] == "standard"
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    volumes = kinds["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": FULLNAME}} in volumes
    assert kinds["Deployment"]["spec"]["strategy"] == {"type": "Recreate"}


def test_metrics_make_a_service_monitor_with_a_token(chart: helm.Chart) -> None:
    kinds = objects(chart, {"metrics": {"enabled": True}})
    endpoint = kinds["ServiceMonitor"]["spec"]["endpoints"][0]
    assert endpoint["path"] == "/services/collab/metrics"
    assert endpoint["port"] == "http"
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": {"name": FULLNAME, "key": "metrics-token"}}
    assert kinds["ServiceMonitor"]["spec"]["selector"]["matchLabels"] == kinds["Service"]["spec"]["selector"]
    assert re.fullmatch("[0-9a-f]{64}", secret_data(kinds["Secret"])["metrics-token"])
    scrapers = kinds["NetworkPolicy"]["spec"]["ingress"][1]["from"]
    assert scrapers == [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]
    assert "ServiceMonitor" not in objects(chart, {"metrics": {"enabled": True, "serviceMonitor": {"enabled": False}}})


def test_network_policy_off(chart: helm.Chart) -> None:
    assert "NetworkPolicy" not in objects(chart, {"networkPolicy": {"enabled": False}})


def test_base_url_and_names_flow_into_every_path(chart: helm.Chart) -> None:
    kinds = objects(
        chart,
        {"hub": {"baseUrl": "/jhub/", "serviceName": "notebooks", "proxyUrl": "http://proxy-http:8000", "publicUrl": "https://hub.example.org"}},
    )
    main = container(kinds["Deployment"])
    env = env_of(main)
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == "/jhub/services/notebooks/"
    assert env["JUPYTERHUB_API_URL"] == "http://hub:8081/jhub/hub/api"
    assert env["JUPYTERHUB_PUBLIC_HUB_URL"] == "http://proxy-http:8000/jhub/hub/"
    assert env["JUPYTERHUB_PUBLIC_URL"] == "https://hub.example.org/jhub/services/notebooks/"
    assert env["JUPYTERHUB_CLIENT_ID"] == "service-notebooks"
    assert main["readinessProbe"]["httpGet"]["path"] == "/jhub/services/notebooks/api/health"


def test_image_and_pull_settings(chart: helm.Chart) -> None:
    kinds = objects(chart, {"image": {"repository": "registry.example.org/hub-collab", "tag": "0.2.0", "pullPolicy": "Always", "pullSecrets": ["regcred"]}})
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    for c in pod["containers"] + pod["initContainers"]:
        assert c["image"] == "registry.example.org/hub-collab:0.2.0"
        assert c["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


# -- history retention: the prune-history CronJob ---------------------------------------------

PRUNE_ARGS = ["prune-history", "-f", "/etc/hub-collab/hub_collab_config.py"]
PRUNE = f"{FULLNAME}-prune-history"


def test_no_cronjob_unless_history_is_compacted(chart: helm.Chart) -> None:
    """history_keep_days 0 (the default) keeps everything: nothing to run. With the CronJob
    turned off, NOTES.txt says that nothing compacts the history, and how to."""
    for values in ({}, {"config": {"history_keep_days": 0}, "persistence": {"enabled": True}}, SCALED):
        assert not any(kind.startswith("CronJob") for kind in objects(chart, values)), values
    off = {"config": {"history_keep_days": 30}, "pruneHistory": {"enabled": False}}
    rendered = render(chart, off)
    kinds = by_kind(manifests(rendered))
    assert "CronJob/prune-history" not in kinds and "NetworkPolicy/prune-history" not in kinds
    notes = " ".join(rendered[NOTES].split())
    assert "config.history_keep_days is 30 but pruneHistory.enabled is false: nothing compacts the history" in notes
    assert f"kubectl exec --namespace {NAMESPACE} deployment/{FULLNAME} -c hub-collab -- hub-collab {' '.join(PRUNE_ARGS)}" in notes


def test_history_retention_makes_a_cronjob_like_the_services_pod(chart: helm.Chart, tmp_path: Path) -> None:
    kinds = objects(chart, SCENARIOS["history-on-a-volume"])
    cron, dep = kinds["CronJob/prune-history"], kinds["Deployment"]
    assert cron["apiVersion"] == "batch/v1" and cron["metadata"]["name"] == PRUNE
    spec = cron["spec"]
    assert (spec["schedule"], spec["timeZone"], spec["concurrencyPolicy"]) == ("17 3 * * *", "Etc/UTC", "Forbid")
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (3, 3)
    job = spec["jobTemplate"]["spec"]
    assert (job["backoffLimit"], job["activeDeadlineSeconds"]) == (2, 3600)

    pod, service_pod = pod_spec(cron), pod_spec(dep)
    assert pod["restartPolicy"] == "Never"
    assert [c["name"] for c in pod["containers"]] == ["prune-history"] and "initContainers" not in pod
    prune, main, upgrade = container(cron, "prune-history"), container(dep), container(dep, "upgrade-db")
    # the image's entrypoint (tini, then hub-collab) with exactly these arguments:
    # history_keep_days comes from the config file, as the service reads it
    assert "command" not in prune and prune["args"] == PRUNE_ARGS
    assert (prune["image"], prune["imagePullPolicy"]) == (main["image"], main["imagePullPolicy"])
    # the same security, volumes and mounts as the service's container
    assert pod["securityContext"] == service_pod["securityContext"]
    assert prune["securityContext"] == main["securityContext"] == upgrade["securityContext"]
    assert prune["securityContext"]["readOnlyRootFilesystem"] is True and prune["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert prune["volumeMounts"] == main["volumeMounts"]
    assert pod["volumes"] == service_pod["volumes"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": FULLNAME}} in pod["volumes"]
    # where the database is, as upgrade-db has it; nothing of the Hub, no cookie secret
    assert env_of(prune) == env_of(upgrade) == {"HOME": "/tmp", "HUB_COLLAB_DATA_DIR": "/srv/hub-collab"}
    assert (pod["serviceAccountName"], pod["automountServiceAccountToken"]) == (FULLNAME, False)
    assert prune["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}

    # SQLite: on the node of the service's pod, whose claim it mounts
    (term,) = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term == {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": dep["spec"]["selector"]["matchLabels"]}}

    # its pods are not the service's: not behind the Service, not in the budget, not in the
    # service's network policy; a policy of their own lets nothing in or out
    labels = cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert cron["spec"]["jobTemplate"]["metadata"]["labels"] == labels
    for selector in (kinds["Service"]["spec"]["selector"], dep["spec"]["selector"]["matchLabels"],
                     kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
                     kinds["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"]):  # fmt: skip
        assert not selector.items() <= labels.items(), selector
    policy = kinds["NetworkPolicy/prune-history"]
    assert policy["metadata"]["name"] == PRUNE
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == [] and policy["spec"]["egress"] == []

    # the service's config file, which the CronJob mounts, sets history_keep_days
    path = tmp_path / "hub_collab_config.py"
    path.write_text(kinds["ConfigMap"]["data"]["hub_collab_config.py"])
    app = HubCollab()
    app.load_config_file(str(path))
    assert app.config.HubCollab["history_keep_days"] == 30


def test_history_retention_on_postgresql(chart: helm.Chart) -> None:
    kinds = objects(chart, SCENARIOS["history-on-postgresql"])
    cron, dep = kinds["CronJob/prune-history"], kinds["Deployment"]
    pod = pod_spec(cron)
    prune = container(cron, "prune-history")
    assert cron["spec"]["schedule"] == "@daily" and "timeZone" not in cron["spec"]
    assert env_of(prune) == env_of(container(dep, "upgrade-db")) == {
        "HOME": "/tmp", "HUB_COLLAB_DATA_DIR": "/tmp/hub-collab", "HUB_COLLAB_DB_URL": ("secret", "collab-db", "url"),
    }  # fmt: skip
    assert env_of(prune)["HUB_COLLAB_DB_URL"] == env_of(container(dep))["HUB_COLLAB_DB_URL"]
    assert [v["name"] for v in pod["volumes"]] == ["config", "tmp"] == [m["name"] for m in prune["volumeMounts"]]
    assert pod["volumes"] == pod_spec(dep)["volumes"]
    assert "affinity" not in pod, "any node reaches PostgreSQL"
    # merged with the defaults, as Helm merges values
    assert prune["resources"] == {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
    # the values every pod of the release takes
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"] == pod_spec(dep)["tolerations"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]["example.org/cost-centre"] == "42"
    egress = kinds["NetworkPolicy/prune-history"]["spec"]["egress"]
    assert [tuple(p["port"] for p in rule["ports"]) for rule in egress] == [(5432, 6432), (53, 53)]
    assert egress[0]["to"] == [{"ipBlock": {"cidr": "10.0.0.0/8"}}]
    assert "NetworkPolicy/prune-history" not in objects(chart, {**SCENARIOS["history-on-postgresql"], "networkPolicy": {"enabled": False}})


def test_the_cronjobs_name_fits(chart: helm.Chart) -> None:
    """A CronJob's name is at most 52 characters (its Jobs add 11)."""
    long = {**SCENARIOS["history-on-a-volume"], "fullnameOverride": "a" * 63}
    kinds = objects(chart, long)
    name = kinds["CronJob/prune-history"]["metadata"]["name"]
    assert name == "a" * 38 + "-prune-history" and len(name) == 52
    assert kinds["NetworkPolicy/prune-history"]["metadata"]["name"] == name


def test_notes_name_the_cronjob(chart: helm.Chart) -> None:
    notes = render(chart, SCENARIOS["history-on-a-volume"])[NOTES]
    flat = " ".join(notes.split())
    assert f"the CronJob {PRUNE} compacts the history older than 30 days into one version per day" in flat
    assert '"17 3 * * *" (Etc/UTC)' in flat
    assert f"kubectl get jobs --namespace {NAMESPACE} -l app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=prune-history" in notes
    assert f"kubectl create job --namespace {NAMESPACE} --from=cronjob/{PRUNE} {PRUNE}-now" in notes
    assert "runs on the node of the service's pod" in flat
    assert "runs on the node" not in " ".join(render(chart, SCENARIOS["history-on-postgresql"])[NOTES].split())


# -- the config file ----------------------------------------------------------------------


def test_the_config_file_sets_the_services_traits(chart: helm.Chart, tmp_path: Path) -> None:
    """The rendered hub_collab_config.py, loaded by the service's own config loader."""
    config = {
        "kernel_provider": "gateway",
        "kernel_gateway_url": "http://gateway:8888/",
        "kernels_survive_stop": False,
        "max_cells": 10000,
        "max_output_bytes": 10000000,
        "lease_ttl": 7.5,
        "allowed_origins": ["https://a.example.org", 'https://"quoted".example.org'],
        "kernel_env": {"LANG": "C.UTF-8", "NOTE": "it's <b>&</b>\n"},
        "log_level": "DEBUG",
    }
    path = tmp_path / "hub_collab_config.py"
    path.write_text(objects(chart, {"config": config})["ConfigMap"]["data"]["hub_collab_config.py"])
    app = HubCollab()
    app.load_config_file(str(path))
    for name, value in config.items():
        assert app.config.HubCollab[name] == value, name
    assert type(app.config.HubCollab["max_cells"]) is int
    assert app.config.HubCollab["kernels_survive_stop"] is False


def test_the_config_value_names_real_traits_of_the_right_type() -> None:
    """Every key the schema accepts under `config` is a HubCollab setting of that type, and
    every setting HubCollab declares is either accepted or set by the chart itself."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    accepted = schema["properties"]["config"]["properties"]
    json_type = {Int: "integer", Float: "number", Bool: "boolean", Unicode: "string", List: "array", Dict: "object"}
    traits = HubCollab.class_traits(config=True)
    for name, prop in accepted.items():
        assert name in traits, f"config.{name} is not a HubCollab setting"
        if name == "log_level":
            continue  # Application's Enum, names only here
        expected = next(t for cls, t in json_type.items() if isinstance(traits[name], cls))
        assert prop["type"] == expected, f"config.{name}: {prop['type']} in the schema, {expected} in HubCollab"
    own = {n for n in HubCollab.class_own_traits(config=True)}
    assert own - set(accepted) - set(CHART_OWNED) == set(), "decide whether the chart offers these"
    assert set(accepted) & set(CHART_OWNED) == set()


# -- the schema refuses bad values -------------------------------------------------------------

POSTGRES = {"db": {"url": "postgresql://u:p@postgres/collab"}}
REDIS = {"redis": {"url": "redis://redis:6379/0"}}

REFUSED = [
    ("three replicas on SQLite", {"replicas": 3, **REDIS}, r"at '/db/url': '' does not match pattern '\^postgresql"),
    ("three replicas on a SQLite URL", {"replicas": 3, "db": {"url": "sqlite:////srv/x.sqlite"}, **REDIS}, r"at '/db/url': 'sqlite:////srv/x.sqlite' does not match"),
    ("three replicas without Redis", {"replicas": 3, **POSTGRES}, r"at '/redis/url': '' does not match pattern '\^rediss\?://'"),
    ("three replicas without a cookie secret", {"replicas": 3, **POSTGRES, **REDIS, "cookieSecret": {"generate": False}}, r"at '/cookieSecret/generate': value must be true"),
    ("a string for a number", {"replicas": "3"}, r"at '/replicas': got string, want integer"),
    ("a string for a port", {"service": {"port": "http"}}, r"at '/service/port': got string, want integer"),
    ("an unknown key", {"replica": 3}, r"at '': additional properties 'replica' not allowed"),
    ("an unknown nested key", {"db": {"URL": "postgresql://x/y"}}, r"at '/db': additional properties 'URL' not allowed"),
    ("a setting the chart owns", {"config": {"db_url": "sqlite:///x"}}, r"at '/config': additional properties 'db_url' not allowed"),
    ("a setting of the wrong type", {"config": {"max_cells": "many"}}, r"at '/config/max_cells': got string, want integer"),
    ("local kernels in the service's pod", {"config": {"kernel_provider": "local"}}, r"at '/config/kernel_provider': value must be one of 'hub', 'gateway'"),
    ("the gateway without its URL", {"config": {"kernel_provider": "gateway"}}, r"at '/config': missing property 'kernel_gateway_url'"),
    ("a cookie secret that is not hex", {"cookieSecret": {"value": "secret"}}, r"at '/cookieSecret/value': 'secret' does not match"),
    ("a Hub URL with a path", {"hub": {"url": "http://hub:8081/hub/api"}}, r"at '/hub/url': 'http://hub:8081/hub/api' does not match"),
    ("history retention on SQLite in an emptyDir", {"config": {"history_keep_days": 30}}, r"at '/persistence/enabled': value must be true"),
    ("history retention on a claim only one pod may mount", {"config": {"history_keep_days": 30}, "persistence": {"enabled": True, "accessModes": ["ReadWriteOncePod"]}}, r"at '/persistence/accessModes': 'not' failed"),
    ("a schedule that is not cron's", {**POSTGRES, "config": {"history_keep_days": 30}, "pruneHistory": {"schedule": "daily"}}, r"at '/pruneHistory/schedule': 'daily' does not match"),
    ("a CronJob without a deadline", {"pruneHistory": {"activeDeadlineSeconds": 0}}, r"at '/pruneHistory/activeDeadlineSeconds': minimum: got 0, want 1"),
]


@pytest.mark.parametrize("values, message", [pytest.param(v, m, id=i) for i, v, m in REFUSED])
def test_bad_values_are_refused_naming_the_value(chart: helm.Chart, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=message):
        render(chart, values)
    report = helm.lint(CHART, values, strict=True)
    assert any(re.search(message, error) for error in report["errors"]), report["errors"]


def test_one_replica_may_do_without_the_charts_cookie_secret(chart: helm.Chart) -> None:
    rendered = render(chart, {"cookieSecret": {"generate": False}})
    kinds = by_kind(manifests(rendered))
    assert "HUB_COLLAB_COOKIE_SECRET" not in env_of(container(kinds["Deployment"]))
    assert "cookie-secret" not in secret_data(kinds["Secret"])
    assert "users log in again when it is replaced" in rendered[NOTES]


# -- generated secrets survive upgrades ---------------------------------------------------------


class FakeAPIServer:
    """A loopback stand-in for the Kubernetes API server, for Helm's ``lookup``.

    It answers what ``lookup "v1" "Secret" <ns> <name>`` asks: the discovery of the core
    group (``GET /api/v1``) and ``GET /api/v1/namespaces/<ns>/secrets/<name>``, with the
    Secrets in :attr:`secrets` (else a 404 Status, as the real one answers). Every path
    asked is recorded in :attr:`requests`.
    """

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?")[0]
                server.requests.append(path)
                match = re.fullmatch(r"/api/v1/namespaces/([^/]+)/secrets/([^/]+)", path)
                if path == "/api/v1":
                    self.reply(200, {
                        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1",
                        "resources": [{"name": "secrets", "singularName": "secret", "namespaced": True,
                                       "kind": "Secret", "verbs": ["get", "list"]}],
                    })
                elif match and (match[1], match[2]) in server.secrets:
                    self.reply(200, server.secrets[(match[1], match[2])])
                else:
                    self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                     "reason": "NotFound", "code": 404, "message": f"{path} not found"})

            def reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="fake-apiserver", daemon=True)

    def kubeconfig(self) -> str:
        return str(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.url}}],
            "users": [{"name": "test", "user": {"token": "test"}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": NAMESPACE}}],
        }))


@pytest.fixture
def apiserver() -> Iterator[FakeAPIServer]:
    server = FakeAPIServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        server.thread.join(timeout=60)


def render_in_cluster(chart: helm.Chart, apiserver: FakeAPIServer, values: dict[str, Any]) -> dict[str, str]:
    """An upgrade's render: ``lookup`` asks the (stand-in) API server."""
    with helm.Config(kubeconfig_content=apiserver.kubeconfig(), namespace=NAMESPACE) as cluster:
        return cluster.render(chart, values, name=RELEASE, namespace=NAMESPACE, revision=2, is_upgrade=True)


def test_offline_renders_make_new_secrets_each_time(chart: helm.Chart) -> None:
    """Why the chart looks its Secret up: a fresh render draws new random values."""
    first = secret_data(objects(chart, {})["Secret"])
    second = secret_data(objects(chart, {})["Secret"])
    assert first["cookie-secret"] != second["cookie-secret"]
    assert first["api-token"] != second["api-token"]


def test_the_cookie_secret_and_tokens_are_kept_across_an_upgrade(chart: helm.Chart, apiserver: FakeAPIServer) -> None:
    installed = objects(chart, {"metrics": {"enabled": True}})
    apiserver.secrets[(NAMESPACE, FULLNAME)] = installed["Secret"]

    upgraded = by_kind(manifests(render_in_cluster(chart, apiserver, {"metrics": {"enabled": True}})))
    assert upgraded["Secret"]["data"] == installed["Secret"]["data"]
    assert f"/api/v1/namespaces/{NAMESPACE}/secrets/{FULLNAME}" in apiserver.requests
    # the pods do not roll for secrets that did not change
    annotations = upgraded["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations == installed["Deployment"]["spec"]["template"]["metadata"]["annotations"]


def test_an_upgrade_generates_only_what_is_missing_and_a_given_value_wins(chart: helm.Chart, apiserver: FakeAPIServer) -> None:
    installed = secret_data(objects(chart, {})["Secret"])
    apiserver.secrets[(NAMESPACE, FULLNAME)] = objects(chart, {})["Secret"]
    kept = secret_data(apiserver.secrets[(NAMESPACE, FULLNAME)])
    given = "ab" * 32
    upgraded = secret_data(by_kind(manifests(render_in_cluster(
        chart, apiserver, {"metrics": {"enabled": True}, "cookieSecret": {"value": given}},
    )))["Secret"])
    assert upgraded["api-token"] == kept["api-token"]
    assert upgraded["cookie-secret"] == given
    assert re.fullmatch("[0-9a-f]{64}", upgraded["metrics-token"])
    assert upgraded["metrics-token"] not in (installed["api-token"], kept["api-token"])


def test_a_first_install_in_a_cluster_generates_the_secrets(chart: helm.Chart, apiserver: FakeAPIServer) -> None:
    data = secret_data(by_kind(manifests(render_in_cluster(chart, apiserver, {})))["Secret"])
    assert set(data) == {"api-token", "cookie-secret"}
    assert f"/api/v1/namespaces/{NAMESPACE}/secrets/{FULLNAME}" in apiserver.requests


# -- NOTES.txt ------------------------------------------------------------------------------------


def test_notes_print_the_zero_to_jupyterhub_values_with_the_releases_names(chart: helm.Chart) -> None:
    notes = render(chart, {})[NOTES]
    assert f"kubectl get secret --namespace {NAMESPACE} {FULLNAME} -o jsonpath='{{.data.api-token}}'" in notes
    values = z2jh_values(notes)
    assert values == {"hub": {
        "services": {"collab": {
            "url": f"http://{FULLNAME}.{NAMESPACE}:10101",
            "apiToken": "the-token",
            "display": True,
            "oauth_no_confirm": True,
            "oauth_client_allowed_scopes": ["servers!user", "access:servers!user"],
        }},
        "loadRoles": {
            "user": {"scopes": ["self", "access:services!service=collab"]},
            "collab-service": {"services": ["collab"], "scopes": SERVICE_SCOPES},
            "collab-servers": {"services": ["collab"], "scopes": SERVER_SCOPES},
        },
        "allowNamedServers": True,
    }}
    assert "singleuser.networkPolicy needs no new rule" in notes
    assert "lost whenever the pod is replaced" in " ".join(notes.split())


def test_notes_register_the_scrapers_token_with_the_hub(chart: helm.Chart) -> None:
    """The service checks a scraper's token with the Hub (scope read:metrics, as JupyterHub
    does for its own metrics): the chart's metrics token becomes a Hub service's token."""
    notes = render(chart, {"metrics": {"enabled": True}})[NOTES]
    assert f"METRICS_TOKEN=$(kubectl get secret --namespace {NAMESPACE} {FULLNAME} -o jsonpath='{{.data.metrics-token}}'" in notes
    values = z2jh_values(notes, {"TOKEN": "t", "METRICS_TOKEN": "m"})["hub"]
    assert values["services"]["collab-metrics"] == {"apiToken": "m"}
    assert values["loadRoles"]["collab-metrics"] == {"services": ["collab-metrics"], "scopes": ["read:metrics"]}


def test_notes_follow_the_release_name_service_name_and_token_secret(chart: helm.Chart) -> None:
    notes = render(
        chart,
        {"hub": {"serviceName": "notebooks", "namespace": "hub-ns"}, "config": {"kernel_provider": "gateway", "kernel_gateway_url": "http://gw:8888"},
         "apiToken": {"existingSecret": "hub", "existingSecretKey": "hub.services.notebooks.apiToken"}, **POSTGRES},
        name="hub-collab", namespace="collab",
    )[NOTES]
    assert r"kubectl get secret --namespace collab hub -o jsonpath='{.data.hub\.services\.notebooks\.apiToken}'" in notes
    values = z2jh_values(notes)["hub"]
    assert values["services"]["notebooks"]["url"] == "http://hub-collab.collab:10101"
    # the gateway provider uses no user's server: no server role, no named servers
    assert set(values["loadRoles"]) == {"user", "notebooks-service"}
    assert "allowNamedServers" not in values
    assert "--namespace hub-ns" in notes
    assert "interNamespaceAccessLabels: accept" in notes
    assert "lost whenever" not in notes


# -- the rendered pod, run -------------------------------------------------------------------------


def kubelet_env(c: dict[str, Any], secrets: dict[str, dict[str, str]], root: Path) -> dict[str, str]:
    """The container's environment as the kubelet makes it (Secrets resolved), with the
    pod's volumes (/srv/hub-collab, /tmp) under `root`."""
    env = on_loopback(resolved_env(c, secrets))
    for name in ("HOME", "HUB_COLLAB_DATA_DIR"):
        env[name] = str(root / env[name].lstrip("/"))
        Path(env[name]).mkdir(parents=True, exist_ok=True)
    return clean_env(**env)


def test_the_rendered_pod_starts_and_serves_against_a_real_hub(chart: helm.Chart, hub: Hub, tmp_path: Path) -> None:
    port = free_port()
    hub_origin = hub.api_url.removesuffix("/hub/api")
    kinds = objects(chart, {
        "hub": {"url": hub_origin, "proxyUrl": hub.url.rstrip("/")},
        "apiToken": {"value": hub.collab_api_token},
        "service": {"port": port},
    })
    secrets = {FULLNAME: secret_data(kinds["Secret"])}
    config = tmp_path / "hub_collab_config.py"
    config.write_text(kinds["ConfigMap"]["data"]["hub_collab_config.py"])
    dep = kinds["Deployment"]

    def argv(c: dict[str, Any]) -> list[str]:
        # the image's entrypoint is hub-collab
        command = [sys.executable, "-m", "hub_collab", *c["args"]]
        return [str(config) if a == "/etc/hub-collab/hub_collab_config.py" else a for a in command]

    init = container(dep, "upgrade-db")
    done = subprocess.run(argv(init), env=kubelet_env(init, secrets, tmp_path), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "created the schema" in done.stdout

    main = container(dep)
    service = Process("hub-collab (chart)", argv(main), env=kubelet_env(main, secrets, tmp_path), cwd=tmp_path, log_path=tmp_path / "service.log")
    service.start()
    try:
        base = f"http://127.0.0.1:{port}"

        def ready() -> requests.Response:
            service.check_alive()
            try:
                return requests.get(base + main["readinessProbe"]["httpGet"]["path"], timeout=5)
            except requests.ConnectionError as exc:
                raise AssertionError(str(exc)) from None

        health = wait_until(ready, timeout=60, what="the readiness path", on_timeout=service.tail)
        assert health.status_code == 200, health.text
        assert health.json()["database"] is True
        me = requests.get(base + "/services/collab/api/me", headers={"Authorization": f"token {hub.token('alice')}"}, timeout=60)
        assert me.status_code == 200, me.text
        assert me.json()["name"] == "alice"
        # the cookie secret came from the chart's Secret, not a file in the data volume
        assert not (tmp_path / "srv" / "hub-collab" / "cookie_secret").exists()
    finally:
        service.stop()


def test_the_rendered_cronjob_compacts_the_history_older_than_the_configs_days(chart: helm.Chart, tmp_path: Path) -> None:
    """The CronJob's container, run as the kubelet would (its arguments, its environment,
    the rendered config file at its mount path, the data volume) on a SQLite database
    with 20-day-old history: with history_keep_days 30 it keeps every update; with 7 it
    compacts them into daily versions. The days come from the ConfigMap alone."""
    url = f"sqlite:///{tmp_path / 'srv' / 'hub-collab' / 'hub-collab.sqlite'}"
    (tmp_path / "srv" / "hub-collab").mkdir(parents=True)
    nb_id = add_old_history(url, days=20)
    for days, compacted, rows in ((30, 0, 100), (7, 100, 3)):
        kinds = objects(chart, {"config": {"history_keep_days": days}, "persistence": {"enabled": True}})
        config = tmp_path / "hub_collab_config.py"
        config.write_text(kinds["ConfigMap"]["data"]["hub_collab_config.py"])
        prune = container(kinds["CronJob/prune-history"], "prune-history")
        argv = [sys.executable, "-m", "hub_collab", *(str(config) if a == "/etc/hub-collab/hub_collab_config.py" else a for a in prune["args"])]
        done = subprocess.run(argv, env=kubelet_env(prune, {}, tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"{url}: compacted {compacted} updates before "), done.stdout
        assert history_rows(url, nb_id) == rows, days


# -- the documentation ------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs" / "kubernetes.md"


def test_every_top_level_value_is_documented() -> None:
    text = DOCS.read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = [key for key in values if f"`{key}" not in text]
    assert missing == [], f"docs/kubernetes.md does not mention {missing}"


def test_the_docs_quote_the_schemas_own_messages(chart: helm.Chart) -> None:
    quoted = [
        "\n".join(line[4:] for line in block.splitlines())
        for block in re.findall(r"\n((?:    values don't meet.*\n)(?:    .*\n)+)", DOCS.read_text())
    ]
    assert len(quoted) == 2
    errors = []
    for values in ({"replicas": "3"}, {"replicas": 3}):
        with pytest.raises(helm.HelmValuesError) as refused:
            render(chart, values)
        errors.append(str(refused.value))
    for block in quoted:
        assert any(block.strip() in error for error in errors), block
