"""Helpers for the tests of the Helm chart ``helm/hub-collab`` (``tests/test_chart.py``,
``tests/test_chart_pod.py``): render it with Helm's own engine (helm-python-sdk), read
the objects of a render, and read what the kubelet and the admin read from them.

- :func:`render`, :func:`manifests`, :func:`by_kind`, :func:`objects`: a render as text,
  as Kubernetes objects, and by kind.
- :func:`pod_spec`, :func:`container`, :func:`env_of`, :func:`secret_data`,
  :func:`resolved_env`: a pod's spec (a Deployment's or a CronJob's), its container, its
  environment as written and as the kubelet resolves it.
- :func:`notes_variables`, :func:`z2jh_values`: what an admin who follows NOTES.txt
  gets: the shell variables its ``kubectl get secret`` lines set, and the
  zero-to-jupyterhub values of its here-document with them expanded.
- :func:`add_old_history`, :func:`history_rows`: weeks-old history in a real database, for
  the prune-history CronJob to compact.
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml
from pycrdt import Doc, Text

from hub_collab.history.store import DAY
from hub_collab.store import Store, make_engine

CHART = Path(__file__).resolve().parent.parent / "helm" / "hub-collab"
RELEASE = "jh"
NAMESPACE = "jhub"
FULLNAME = "jh-hub-collab"
NOTES = "hub-collab/templates/NOTES.txt"


def render(
    chart: helm.Chart, values: dict[str, Any], *, name: str = RELEASE, namespace: str = NAMESPACE
) -> dict[str, str]:
    return chart.render(values, name=name, namespace=namespace)


def manifests(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object of a render (NOTES.txt is text, not a manifest)."""
    docs: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The objects by kind; those of a component (label ``app.kubernetes.io/component``,
    the prune-history CronJob and its NetworkPolicy) as ``<kind>/<component>``."""
    kinds: dict[str, dict[str, Any]] = {}
    for doc in docs:
        component = (doc["metadata"].get("labels") or {}).get("app.kubernetes.io/component")
        key = f"{doc['kind']}/{component}" if component else doc["kind"]
        assert key not in kinds, f"two {key} objects"
        kinds[key] = doc
    return kinds


def objects(chart: helm.Chart, values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return by_kind(manifests(render(chart, values)))


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a Deployment, or of a CronJob's Jobs."""
    if workload["kind"] == "CronJob":
        spec: dict[str, Any] = workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    else:
        spec = workload["spec"]["template"]["spec"]
    return spec


def container(deployment: dict[str, Any], name: str = "hub-collab") -> dict[str, Any]:
    """The container (or init container) `name` of a Deployment's (or a CronJob's) pod."""
    spec = pod_spec(deployment)
    found: list[dict[str, Any]] = [
        c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == name
    ]
    assert len(found) == 1, name
    return found[0]


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    """name -> value, or ("secret", name, key) for a secretKeyRef."""
    out: dict[str, Any] = {}
    for item in c["env"]:
        assert item["name"] not in out, f"{item['name']} twice"
        if "value" in item:
            out[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            out[item["name"]] = ("secret", ref["name"], ref["key"])
    return out


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def resolved_env(c: dict[str, Any], secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The container's environment as the kubelet gives it: every ``secretKeyRef`` read
    from `secrets` (Secret name -> decoded data); a missing Secret or key fails, as it
    keeps the kubelet from starting the container."""
    env: dict[str, str] = {}
    for name, value in env_of(c).items():
        if isinstance(value, tuple):
            _, secret, key = value
            assert key in secrets.get(secret, {}), f"{name}: no key {key!r} in the Secret {secret!r}"
            env[name] = secrets[secret][key]
        else:
            env[name] = value
    return env


#: ``NAME=$(kubectl get secret --namespace NS SECRET -o jsonpath='{.data.KEY}' | base64 -d)``
_KUBECTL_SECRET = re.compile(
    r"^\s*(?P<var>[A-Z_]+)=\$\(kubectl get secret --namespace (?P<ns>\S+) (?P<secret>\S+)"
    r" -o jsonpath='\{\.data\.(?P<key>(?:[^}\\]|\\.)+)\}' \| base64 -d\)$",
    re.M,
)


def notes_variables(notes: str, secrets: dict[tuple[str, str], dict[str, str]]) -> dict[str, str]:
    """The shell variables NOTES.txt's ``kubectl get secret`` lines set, read from `secrets`
    ((namespace, name) -> decoded data) as kubectl would read them from the cluster
    (``\\.`` in a jsonpath key is a dot)."""
    found: dict[str, str] = {}
    for m in _KUBECTL_SECRET.finditer(notes):
        key = re.sub(r"\\(.)", r"\1", m["key"])
        data = secrets.get((m["ns"], m["secret"]))
        assert data is not None and key in data, f"NOTES.txt reads {key!r} of {m['ns']}/{m['secret']}, which has no such key"
        found[m["var"]] = data[key]
    return found


def z2jh_values(notes: str, variables: dict[str, str] | None = None) -> dict[str, Any]:
    """The zero-to-jupyterhub values NOTES.txt tells the admin to write (its here-document),
    with the shell's expansion of ``$NAME`` done from `variables` (default: ``$TOKEN`` is
    ``the-token``). A variable the here-document uses and `variables` lacks fails."""
    block = re.search(r"cat > hub-collab-z2jh.yaml <<EOF\n(.*?)\n  EOF\n", notes, re.S)
    assert block, notes
    given = {"TOKEN": "the-token"} if variables is None else variables

    def expand(m: re.Match[str]) -> str:
        assert m[1] in given, f"NOTES.txt's here-document uses ${m[1]}, which nothing set"
        return given[m[1]]

    values: dict[str, Any] = yaml.safe_load(re.sub(r"\$([A-Z_]+)", expand, block[1]))
    return values


def on_loopback(env: dict[str, str]) -> dict[str, str]:
    """`env` with the service's listening address on loopback: a pod listens on every
    address of its own network (``JUPYTERHUB_SERVICE_URL=http://0.0.0.0:<port>``); run
    here, on the machine's network, the service listens on 127.0.0.1 only."""
    out = dict(env)
    if "JUPYTERHUB_SERVICE_URL" in out:
        out["JUPYTERHUB_SERVICE_URL"] = out["JUPYTERHUB_SERVICE_URL"].replace("://0.0.0.0:", "://127.0.0.1:")
    return out


#: the cell document whose history :func:`add_old_history` writes
OLD_DOC = "cell:c0"


def add_old_history(url: str, *, days: int = 20, updates: int = 100) -> str:
    """A new notebook in the database at `url` (its schema made if it is empty) whose cell
    ``c0`` bob typed into `updates` times, every half hour from the start of the UTC day
    `days` days ago, as the service records edits (with their author, session and time):
    100 updates span 3 UTC days, which prune-history compacts into 3 daily versions once
    they are older than ``history_keep_days``. The notebook's id."""
    engine = make_engine(url)
    try:
        store = Store(engine)
        store.start()
        nb_id = uuid.uuid4().hex
        store.create_notebook(nb_id, "history to prune", "alice", uuid.uuid4().hex)
        doc: Doc[Any] = Doc()
        source = doc.get("source", type=Text)
        start = (time.time() // DAY - days) * DAY
        rows = []
        for i in range(updates):
            before = doc.get_state()
            source.insert(len(str(source)), "x")
            rows.append((nb_id, OLD_DOC, doc.get_update(before), start + i * 1800, "bob", "s-bob"))
        store.append_updates(rows)
    finally:
        engine.dispose()
    return nb_id


def history_rows(url: str, nb_id: str) -> int:
    """How many rows of history :data:`OLD_DOC` of the notebook has."""
    engine = make_engine(url)
    try:
        return len(Store(engine).history.rows(nb_id, OLD_DOC, limit=10_000))
    finally:
        engine.dispose()
