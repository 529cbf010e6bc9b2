"""The Casbin side of the permission store: model, policy lines, SQL table.

:class:`~hub_collab.permissions.store.PermissionStore` is the class to use;
this module holds what it needs to talk to Casbin:

* :func:`load_policies` reads ``policies/`` (``model.conf`` and the global
  lines of ``policy.csv``, or the same text built in) and checks both;
  :func:`load_model` checks that a model has the token layout this code writes;
* :func:`policy_lines` turns a notebook's :class:`Perms` into Casbin policy
  lines -- ``p`` decision lines the matcher uses and ``p2`` entry lines that
  keep the ACL exactly as set -- and :func:`compile_lines` turns ``p2`` lines
  back into :class:`Perms` (getfacl-style reads, chmod);
* :class:`RuleAdapter` is casbin_sqlalchemy_adapter's ``Adapter`` on a table
  of our own, with two additions: replacing one object's lines in a single
  transaction, and loading one notebook's lines.

See docs/permissions.md, "Casbin mapping", for the encoding and why it
matches POSIX.1e.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from casbin.model import Model
from casbin.persist import load_policy_line
from casbin_sqlalchemy_adapter import Adapter
from casbin_sqlalchemy_adapter.adapter import CasbinRule
from sqlalchemy.orm import DeclarativeBase, Session

from ..schema import bulk_insert, ensure_schema, permission_rules, permission_rules_table
from .posix import STICKY, AclEntry, Perms, W, X, format_bits, parse_bits

log = logging.getLogger("hub_collab.permissions")

__all__ = [
    "DEFAULT_MODEL_PATH",
    "DEFAULT_POLICIES_DIR",
    "MODEL_TEXT",
    "NOTEBOOK_OBJ",
    "POLICY_TEXT",
    "NotebookPerms",
    "Policies",
    "RuleAdapter",
    "compile_lines",
    "load_model",
    "load_policies",
    "policy_lines",
]

#: The object name of the notebook itself (cell ids never contain a dot).
NOTEBOOK_OBJ = "."

#: Priorities of the decision lines (lower wins; first match decides).
PRIO_OWNER, PRIO_USER, PRIO_GROUP_ALLOW, PRIO_GROUP_DENY, PRIO_OTHER = "10", "20", "30", "40", "50"

DEFAULT_POLICIES_DIR = Path(__file__).resolve().parents[2] / "policies"
DEFAULT_MODEL_PATH = DEFAULT_POLICIES_DIR / "model.conf"

#: The model, built in for installs without the repository's ``policies/``.
#: tests/test_permissions_casbin.py checks it matches policies/model.conf.
MODEL_TEXT = """
[request_definition]
r = sub, nb, obj, act

[policy_definition]
p = priority, nb, obj, sub, act, eft
p2 = tag, nb, obj, name, perms

[role_definition]
g = _, _
g2 = _, _

[policy_effect]
e = priority(p.eft) || deny

[matchers]
m = r.act == p.act && (r.nb == p.nb && r.obj == p.obj || p.nb == "*" && (p.obj == "*" || p.obj == "cell:*" && r.obj != ".")) && (r.sub == p.sub || p.sub == "*" || g(r.sub, p.sub) || p.sub == "notebook-owner" && g2(r.nb, r.sub))
"""

#: The default global lines, built in like :data:`MODEL_TEXT` (policies/policy.csv).
POLICY_TEXT = """
p, 1, *, *, role:admin, r, allow
p, 1, *, *, role:admin, w, allow
p, 1, *, *, role:admin, x, allow
p, 2, *, cell:*, notebook-owner, r, allow
"""

_EXPECTED_TOKENS = {
    ("r", "r"): ["r_sub", "r_nb", "r_obj", "r_act"],
    ("p", "p"): ["p_priority", "p_nb", "p_obj", "p_sub", "p_act", "p_eft"],
    ("p", "p2"): ["p2_tag", "p2_nb", "p2_obj", "p2_name", "p2_perms"],
}


def load_model(model_path: str | Path | None = None) -> Model:
    """A Casbin model from ``model_path``, the repository's file, or the built-in text.

    A custom model may change the matcher or effect but must keep the request
    and policy layouts, since the store writes lines in that shape.
    """
    m = Model()
    if model_path is not None:
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"Casbin model {str(path)!r} does not exist")
        m.load_model(str(path))
        where = str(path)
    elif DEFAULT_MODEL_PATH.is_file():
        m.load_model(str(DEFAULT_MODEL_PATH))
        where = str(DEFAULT_MODEL_PATH)
    else:
        m.load_model_from_text(MODEL_TEXT)
        where = "the built-in model"
    for (sec, key), tokens in _EXPECTED_TOKENS.items():
        got = m.model.get(sec, {}).get(key)
        if got is None or list(got.tokens) != tokens:
            raise ValueError(
                f"Casbin model {where}: [{sec}] {key} must be "
                f"{', '.join(t.split('_', 1)[1] for t in tokens)}; "
                f"got {', '.join(t.split('_', 1)[1] for t in got.tokens) if got else 'nothing'}"
            )
    if "g" not in m.model or "g" not in m.model["g"]:
        raise ValueError(f"Casbin model {where}: a [role_definition] g = _, _ is required")
    return m


#: Priorities of the lines the store writes; global lines must use others.
STORE_PRIORITIES = frozenset({PRIO_OWNER, PRIO_USER, PRIO_GROUP_ALLOW, PRIO_GROUP_DENY, PRIO_OTHER})


@dataclass
class Policies:
    """A validated model and its global lines (``policies/`` or the built-in text)."""

    model: Model
    #: ``p`` lines offered to every request, as written in policy.csv
    lines: list[Rule]
    #: role links of policy.csv per role definition (``g``, ``g2``...)
    links: dict[str, list[Rule]]
    #: where they came from, for messages
    where: str


def load_policies(policies_dir: str | Path | None = None) -> Policies:
    """The model and global lines of ``policies_dir`` (``model.conf``, ``policy.csv``).

    Without a folder: the repository's ``policies/`` if present, else the built-in
    :data:`MODEL_TEXT` and :data:`POLICY_TEXT`. A broken model or policy line raises
    :class:`ValueError` naming the file, the line and what is wrong.
    """
    if policies_dir is None:
        folder = DEFAULT_POLICIES_DIR if DEFAULT_MODEL_PATH.is_file() else None
    else:
        folder = Path(policies_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"Casbin policies folder {str(folder)!r} does not exist")
    if folder is None:
        model = load_model(None) if DEFAULT_MODEL_PATH.is_file() else _builtin_model()
        return _policy_lines(model, POLICY_TEXT.splitlines(), "the built-in policy")
    try:
        model = load_model(folder / "model.conf")
    except ValueError:
        raise
    except Exception as exc:  # configparser and pycasbin raise assorted errors
        raise ValueError(f"Casbin model {str(folder / 'model.conf')!r}: {exc}") from exc
    policy = folder / "policy.csv"
    text = policy.read_text().splitlines() if policy.is_file() else []
    return _policy_lines(model, text, str(policy))


def _builtin_model() -> Model:
    m = Model()
    m.load_model_from_text(MODEL_TEXT)
    return m


def _policy_lines(model: Model, text: Iterable[str], where: str) -> Policies:
    lines: list[Rule] = []
    links: dict[str, list[Rule]] = {}
    p_len = len(model.model["p"]["p"].tokens)
    for n, raw in enumerate(text, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split(",")]
        ptype, rule = fields[0], fields[1:]
        at = f"{where}, line {n}"
        if ptype == "p":
            if len(rule) != p_len:
                raise ValueError(
                    f"{at}: a p line has {p_len} fields (priority, nb, obj, sub, act, eft); "
                    f"got {len(rule)}: {line!r}"
                )
            if not rule[0].isdigit() or rule[0] in STORE_PRIORITIES:
                raise ValueError(
                    f"{at}: invalid priority {rule[0]!r}: expected a non-negative integer "
                    f"other than 10, 20, 30, 40 and 50 (the store's own lines)"
                )
            if rule[-1] not in ("allow", "deny"):
                raise ValueError(f"{at}: invalid effect {rule[-1]!r}: expected allow or deny")
            lines.append(rule)
        elif ptype in model.model.get("g", {}):
            want = model.model["g"][ptype].value.count("_")
            if len(rule) != want:
                raise ValueError(
                    f"{at}: a {ptype} line has {want} fields; got {len(rule)}: {line!r}"
                )
            links.setdefault(ptype, []).append(rule)
        else:
            known = ["p", *model.model.get("g", {})]
            raise ValueError(
                f"{at}: unknown line type {ptype!r}: expected one of {', '.join(known)} "
                "(p2 lines belong to the store)"
            )
    return Policies(model, lines, links, where)


@dataclass
class NotebookPerms:
    """A notebook's compiled permissions: its own, its defaults, its cells'."""

    perms: Perms
    default_mode: int = 0o775
    default_acl: tuple[AclEntry, ...] = ()
    cells: dict[str, Perms] = field(default_factory=dict)


Rule = list[str]


def _decision_lines(nb: str, obj: str, p: Perms) -> list[Rule]:
    mask = p.mask if p.mask is not None else 7
    owner_bits = (p.mode >> 6) & 7
    users = [(e.name, e.perms & mask) for e in p.acl if e.kind == "user" and e.name != p.owner]
    groups = [(p.group, (p.mode >> 3) & 7 & mask)] if p.group else []
    groups += [(e.name, e.perms & mask) for e in p.acl if e.kind == "group"]
    out: dict[tuple[str, ...], None] = {}
    for bit, act in ((4, "r"), (W, "w"), (X, "x")):
        out[(PRIO_OWNER, nb, obj, "u:" + p.owner, act, "allow" if owner_bits & bit else "deny")] = (
            None
        )
        for name, b in users:
            out[(PRIO_USER, nb, obj, "u:" + name, act, "allow" if b & bit else "deny")] = None
        for name, b in groups:
            if b & bit:
                out[(PRIO_GROUP_ALLOW, nb, obj, "g:" + name, act, "allow")] = None
            else:
                out[(PRIO_GROUP_DENY, nb, obj, "g:" + name, act, "deny")] = None
        if p.mode & bit:
            out[(PRIO_OTHER, nb, obj, "*", act, "allow")] = None
    return [list(r) for r in out]


def _entry_lines(nb: str, obj: str, p: Perms, prefix: str = "") -> list[Rule]:
    mode = p.mode
    out: list[Rule] = [
        [prefix + "user_obj", nb, obj, p.owner if not prefix else "", format_bits(mode >> 6 & 7)],
        [prefix + "group_obj", nb, obj, p.group if not prefix else "", format_bits(mode >> 3 & 7)],
        [prefix + "other", nb, obj, "", format_bits(mode & 7)],
    ]
    if not prefix:
        out.append(["flags", nb, obj, "", "--t" if mode & STICKY else "---"])
    out += [[prefix + e.kind, nb, obj, e.name, format_bits(e.perms)] for e in p.acl]
    return out


def object_lines(
    nb: str, obj: str, perms: Perms, default: tuple[int, tuple[AclEntry, ...]] | None = None
) -> tuple[list[Rule], list[Rule]]:
    """The ``p`` and ``p2`` lines of one object (with the defaults for a notebook)."""
    p2 = _entry_lines(nb, obj, perms)
    if default is not None:
        # The owner/group of the default are placeholders: a new cell takes its
        # creator and the notebook's group.
        p2 += _entry_lines(nb, obj, Perms(perms.owner, "", default[0], default[1]), "default:")
    return _decision_lines(nb, obj, perms), p2


def policy_lines(nb: str, state: NotebookPerms) -> tuple[list[Rule], list[Rule]]:
    """All ``p`` and ``p2`` lines of a notebook and its cells."""
    p, p2 = object_lines(nb, NOTEBOOK_OBJ, state.perms, (state.default_mode, state.default_acl))
    for cid, cp in state.cells.items():
        a, b = object_lines(nb, cid, cp)
        p += a
        p2 += b
    return p, p2


def notebook_decisions(nb: str, state: NotebookPerms) -> dict[str, list[Rule]]:
    """The ``p`` lines of a notebook and of each cell, by object: the ``p`` half of
    :func:`policy_lines`, as the decider holds them. Cells that share one :class:`Perms`
    value (an import's) share one computation."""
    out = {NOTEBOOK_OBJ: _decision_lines(nb, NOTEBOOK_OBJ, state.perms)}
    templates: dict[int, list[Rule]] = {}
    for cid, cp in state.cells.items():
        template = templates.get(id(cp))
        if template is None:
            template = templates[id(cp)] = _decision_lines(nb, NOTEBOOK_OBJ, cp)
        out[cid] = [[r[0], r[1], cid, *r[3:]] for r in template]
    return out


def _perms_from_entries(entries: dict[str, list[tuple[str, str]]], prefix: str = "") -> Perms:
    def one(tag: str) -> tuple[str, int]:
        rows = entries.get(prefix + tag)
        if not rows:
            raise ValueError(f"missing {prefix + tag} line")
        if len(rows) > 1:
            raise ValueError(f"{len(rows)} {prefix + tag} lines")
        return rows[0][0], parse_bits(rows[0][1])

    owner, ub = one("user_obj")
    group, gb = one("group_obj")
    _, ob = one("other")
    mode = ub << 6 | gb << 3 | ob
    if not prefix and entries.get("flags", [("", "---")])[0][1].endswith("t"):
        mode |= STICKY
    acl = [
        AclEntry(kind, name, parse_bits(bits))  # type: ignore[arg-type]
        for kind in ("user", "group", "mask")
        for name, bits in entries.get(prefix + kind, ())
    ]
    return Perms(owner or "placeholder", group, mode, tuple(acl))


def compile_lines(p2_lines: Iterable[Sequence[str]]) -> dict[str, NotebookPerms]:
    """Turn ``p2`` entry lines into per-notebook :class:`NotebookPerms`.

    A malformed object is logged and skipped (a malformed notebook takes its
    cells with it) rather than failing the whole load.
    """
    objs: dict[tuple[str, str], dict[str, list[tuple[str, str]]]] = {}
    for line in p2_lines:
        if len(line) != 5:
            log.error("ignoring malformed permission line %r", list(line))
            continue
        tag, nb, obj, name, bits = line
        objs.setdefault((nb, obj), {}).setdefault(tag, []).append((name, bits))
    out: dict[str, NotebookPerms] = {}
    for (nb, obj), entries in objs.items():
        if obj != NOTEBOOK_OBJ:
            continue
        try:
            perms = _perms_from_entries(entries)
            default = _perms_from_entries(entries, "default:")
        except ValueError as exc:
            log.error("ignoring notebook %r: bad permission lines (%s)", nb, exc)
            continue
        out[nb] = NotebookPerms(perms, default.mode, default.acl)
    for (nb, obj), entries in objs.items():
        if obj == NOTEBOOK_OBJ or nb not in out:
            continue
        try:
            out[nb].cells[obj] = _perms_from_entries(entries)
        except ValueError as exc:
            log.error("ignoring cell %r of notebook %r: bad permission lines (%s)", obj, nb, exc)
    return out


# -- SQL ----------------------------------------------------------------------

_TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_rule_classes: dict[str, type[Any]] = {}
_rule_classes_lock = threading.Lock()


def rule_class(table: str) -> type[Any]:
    """A mapped class for a casbin_rule-shaped table named ``table``.

    The service's table is :data:`hub_collab.schema.permission_rules`; another name
    (tests, benchmarks) gets a table of its own, outside the migrations.
    """
    if not _TABLE_RE.match(table):
        raise ValueError(
            f"invalid table name {table!r}: expected [A-Za-z_][A-Za-z0-9_]*, at most 63"
        )
    with _rule_classes_lock:
        cls = _rule_classes.get(table)
        if cls is None:

            class _Base(DeclarativeBase):
                """A declarative base of its own per table (no shared registry)."""

            attrs: dict[str, Any] = {
                "__table__": permission_rules
                if table == permission_rules.name
                else permission_rules_table(sa.MetaData(), table),
                "__str__": CasbinRule.__str__,
            }
            cls = type(f"PermissionRule_{table}", (_Base,), attrs)
            _rule_classes[table] = cls
    return cls


RULE_COLUMNS = ("ptype", "v0", "v1", "v2", "v3", "v4", "v5")


def rule_rows(lines: Iterable[tuple[str, Sequence[str]]]) -> list[tuple[str | None, ...]]:
    """Policy lines (``(ptype, rule)``) as rows of a rule table (:data:`RULE_COLUMNS`)."""
    return [(ptype, *rule, *[None] * (6 - len(rule))) for ptype, rule in lines]


def insert_rows(conn: sa.Connection, table: str, rows: Sequence[Sequence[str | None]]) -> None:
    """Insert :func:`rule_rows` into the rule table ``table`` through ``conn``, in one
    statement of the caller's transaction: the lines of a new notebook, whose id nobody
    else holds yet (no lock, no check). Works in any process."""
    bulk_insert(conn, rule_class(table).__table__, RULE_COLUMNS, rows)


def _lock_key(table: str, nb: str) -> int:
    digest = hashlib.blake2b(f"{table}\0{nb}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class RuleAdapter(Adapter):  # type: ignore[misc]
    """casbin_sqlalchemy_adapter's Adapter on our own table, plus atomic replaces.

    Casbin's auto-save writes one line per transaction; a chmod rewrites many
    lines, which another replica must never see half done, so the store calls
    :meth:`replace` instead (delete + insert in one transaction, serialised per
    notebook on PostgreSQL by an advisory lock).
    """

    def __init__(self, engine: sa.Engine, table: str) -> None:
        # No db_class argument: the base class would then rebind its global
        # declarative Base's metadata; set the mapped class afterwards instead.
        super().__init__(engine, create_all_models=False)
        self._db_class = rule_class(table)
        self._table = table
        if table == permission_rules.name:
            ensure_schema(engine)
        else:
            self._db_class.__table__.create(engine, checkfirst=True)

    def _session(self) -> AbstractContextManager[Session]:
        return self._session_scope()  # type: ignore[no-any-return]

    def replace(
        self,
        nb: str,
        obj: str | None,
        lines: Iterable[tuple[str, Sequence[str]]],
        *,
        must_exist: str | None = None,
        must_not_exist: str | None = None,
    ) -> None:
        """Replace the lines of ``nb`` (only object ``obj`` unless None) by ``lines``.

        ``must_exist`` / ``must_not_exist`` name an object whose ``user_obj``
        line is checked inside the transaction; a failed check raises
        :class:`LookupError` / :class:`FileExistsError` and writes nothing.
        """
        cls = self._db_class
        with self._session() as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(self._table, nb)}
                )

            def exists(o: str) -> bool:
                q = session.query(cls.id).filter(
                    cls.ptype == "p2", cls.v0 == "user_obj", cls.v1 == nb, cls.v2 == o
                )
                return q.first() is not None

            if must_exist is not None and not exists(must_exist):
                raise LookupError(must_exist)
            if must_not_exist is not None and exists(must_not_exist):
                raise FileExistsError(must_not_exist)
            q = session.query(cls).filter(cls.ptype.in_(("p", "p2")), cls.v1 == nb)
            if obj is not None:
                q = q.filter(cls.v2 == obj)
            q.delete(synchronize_session=False)
            for ptype, rule in lines:
                self._save_policy_line(ptype, rule, session=session)

    def load_notebook(self, model: Model, nb: str) -> None:
        """Load the lines of one notebook into ``model`` (like a filtered load)."""
        cls = self._db_class
        with self._session() as session:
            q = session.query(cls).filter(cls.ptype.in_(("p", "p2")), cls.v1 == nb).order_by(cls.id)
            for line in q.all():
                load_policy_line(str(line), model)
