"""The permission store: persisted notebook and cell permissions.

Use :class:`PermissionStore`. It keeps every permission as Casbin policy
lines in the service's database (through casbin_sqlalchemy_adapter, in a
table of its own) and a compiled in-memory copy: per notebook, :class:`Perms`
for the notebook, its default cell mode/ACL and each cell, plus a cache of
:class:`Access` objects per identity.

Casbin decides: :meth:`PermissionStore.access` asks the model in ``policies/``
(through :class:`~.decide.CasbinDecider`, which evaluates the model's matcher
and effect over each object's own lines plus the global lines of
``policy.csv``) for the identity's bits on the notebook and every cell, and
caches the :class:`Access` until the notebook's permissions change; checks
(``access.can(...)``) only read it. :meth:`PermissionStore.enforce` is the
plain ``casbin.Enforcer.enforce`` over every line, for tests and benchmarks.

Writes go to the database first (one transaction per change), then update
the compiled copy, bump the notebook's :meth:`~PermissionStore.generation`
and call the listeners. Another replica's writes are picked up by
:meth:`~PermissionStore.reload`.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import casbin
import sqlalchemy as sa

from ..schema import permission_rules
from .access import Access, Identity
from .casbin_backend import (
    NOTEBOOK_OBJ,
    POLICY_TEXT,
    NotebookPerms,
    Policies,
    RuleAdapter,
    _policy_lines,
    compile_lines,
    insert_rows,
    load_model,
    load_policies,
    notebook_decisions,
    object_lines,
    policy_lines,
    rule_rows,
)
from .decide import CasbinDecider
from .posix import AclEntry, PermissionSyntaxError, Perms, format_mode, parse_acl

log = logging.getLogger("hub_collab.permissions")

__all__ = [
    "InvalidId",
    "NewNotebookPerms",
    "ObjectExists",
    "PermissionStore",
    "UnknownObject",
    "new_cell_perms",
    "new_notebook_perms",
    "notebook_state",
]

_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_BITS = {"r": 4, "w": 2, "x": 1}
#: Cached Access objects per notebook beyond which the cache is emptied.
_MAX_CACHED = 10_000


class InvalidId(ValueError):
    """A notebook or cell id is not 1-64 characters of [A-Za-z0-9_-]."""


class UnknownObject(LookupError):
    """No such notebook or cell."""


class ObjectExists(ValueError):
    """The notebook or cell already has permissions."""


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or _ID_RE.match(value) is None:
        raise InvalidId(
            f"invalid {what} {str(value)[:80]!r}: expected 1-64 characters of [A-Za-z0-9_-]"
        )
    return value


def engine_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 to SQLAlchemy 2.1; fall back to psycopg2 if only it is installed."""
    if url.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def _acl(value: Iterable[AclEntry | str] | None) -> tuple[AclEntry, ...]:
    return () if value is None else parse_acl(value)


def _check_default_mode(mode: int) -> int:
    if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o777:
        raise PermissionSyntaxError(f"invalid default cell mode {mode!r}: expected 0..0o777")
    return mode


def _notebook_json(st: NotebookPerms) -> dict[str, Any]:
    out = st.perms.to_json()
    out["default_mode"] = format_mode(st.default_mode)
    out["default_acl"] = [str(e) for e in st.default_acl]
    return out


def notebook_state(
    owner: str,
    group: str = "",
    mode: int = 0o750,
    acl: Iterable[AclEntry | str] = (),
    default_cell_mode: int = 0o775,
    default_acl: Iterable[AclEntry | str] = (),
) -> NotebookPerms:
    """A new notebook's permissions, without cells; PermissionSyntaxError if invalid."""
    return NotebookPerms(
        Perms(owner, group, mode, _acl(acl)),
        _check_default_mode(default_cell_mode),
        _acl(default_acl),
    )


def new_cell_perms(creator: str, notebook: NotebookPerms) -> Perms:
    """The permissions of a cell ``creator`` adds: the notebook's default cell mode and
    ACL, ``creator`` as owner, the notebook's group."""
    return Perms(creator, notebook.perms.group, notebook.default_mode, notebook.default_acl)


@dataclass(frozen=True)
class NewNotebookPerms:
    """The permissions of a notebook created with its cells (an import).
    :func:`new_notebook_perms` makes it (pure: any thread or process); :meth:`insert`
    writes its policy lines in the caller's transaction;
    :meth:`PermissionStore.add_new_notebook` takes it in once that has committed and
    :meth:`PermissionStore.announce` tells the listeners."""

    nb: str
    state: NotebookPerms

    def rows(self) -> list[tuple[str | None, ...]]:
        """Every policy line, as rows of the rule table (made before the transaction that
        :meth:`insert` s them: they are tens of thousands for a large import)."""
        p, p2 = policy_lines(self.nb, self.state)
        return rule_rows([*(("p", r) for r in p), *(("p2", r) for r in p2)])

    @staticmethod
    def insert(conn: sa.Connection, rows: list[tuple[str | None, ...]], table: str = permission_rules.name) -> None:
        """Write :meth:`rows` through ``conn`` into the rule table ``table``."""
        insert_rows(conn, table, rows)


def new_notebook_perms(
    nb: str,
    owner: str,
    cells: Sequence[str],
    *,
    group: str = "",
    mode: int = 0o750,
    default_cell_mode: int = 0o775,
) -> NewNotebookPerms:
    """The permissions of a new notebook and of its ``cells`` (each created by ``owner``,
    as :meth:`PermissionStore.create_cell` would).

    For a notebook created with many cells at once, where a transaction per cell
    (:meth:`~PermissionStore.create_cell`) is far too slow. InvalidId or
    PermissionSyntaxError if an id or a value is invalid.
    """
    _check_id(nb, "notebook id")
    st = notebook_state(owner, group, mode, default_cell_mode=default_cell_mode)
    cell = new_cell_perms(owner, st)  # one value, shared: every cell has the same
    st.cells = {_check_id(cid, "cell id"): cell for cid in cells}
    return NewNotebookPerms(nb, st)


Listener = Callable[[str], None]


class PermissionStore:
    """Owns persisted permissions.

    Casbin (casbin_sqlalchemy_adapter over the service's SQLAlchemy URL, its
    own table) is the storage and decision engine; the :class:`Access` it
    decides is cached per identity and notebook, so checks are O(1). The model
    and global lines come from ``policies_dir`` (``model.conf``,
    ``policy.csv``; default: the repository's ``policies/`` or the same text
    built in); ``model_path`` names a model file alone (with the built-in
    global lines, or the ``policy.csv`` beside it). Call :meth:`start` before
    anything else and :meth:`stop` at shutdown (or use ``with
    PermissionStore(...) as store``). Methods are synchronous and
    thread-safe; writes take a few milliseconds (one database transaction).
    """

    def __init__(
        self,
        db_url: str,
        model_path: str | Path | None = None,
        engine: sa.Engine | None = None,
        *,
        table: str = "collab_permission_rules",
        policies_dir: str | Path | None = None,
    ) -> None:
        self.db_url = db_url
        self.model_path = model_path
        self.policies_dir = policies_dir
        self.table = table
        self._engine = engine
        self._own_engine = engine is None
        self._lock = threading.RLock()
        self._started = False
        self._adapter: RuleAdapter | None = None
        self._enforcer: casbin.Enforcer | None = None
        self._decider: CasbinDecider | None = None
        self._policies: Policies | None = None
        self._model_template: Any = None
        self._notebooks: dict[str, NotebookPerms] = {}
        self._generation: dict[str, int] = {}
        self._access: dict[str, dict[Identity, Access]] = {}
        self._listeners: list[Listener] = []
        # Notebooks whose lines in the enforcer's in-memory model are stale;
        # synced lazily by enforce(), the only reader of that model.
        self._casbin_dirty: set[str] = set()
        # g links this store added to the role manager, per subject (Hub groups
        # and role:admin from the identity); policy.csv's own links are not here.
        self._fed_groups: dict[str, frozenset[str]] = {}
        # g2 links (notebook facts: owner, group) this store added, per notebook.
        self._fed_notebooks: dict[str, frozenset[str]] = {}

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        """Create the table if needed and load every policy line."""
        with self._lock:
            if self._started:
                return
            if self._engine is None:
                self._engine = sa.create_engine(engine_url(self.db_url))
            try:
                self._adapter = RuleAdapter(self._engine, self.table)
                self._policies = self._load_policies()
                self._model_template = self._policies.model
                self._enforcer = casbin.Enforcer(copy.deepcopy(self._model_template), self._adapter)
                # We persist through RuleAdapter.replace; g lines stay in memory.
                self._enforcer.enable_auto_save(False)
                self._decider = self._make_decider(self._enforcer, self._policies)
                self._after_load()
            except Exception:
                self.stop()
                raise
            self._started = True

    def stop(self) -> None:
        """Forget the compiled state and release the engine if we created it."""
        with self._lock:
            self._started = False
            self._access.clear()
            self._notebooks = {}
            self._enforcer = None
            self._decider = None
            self._adapter = None
            if self._own_engine and self._engine is not None:
                self._engine.dispose()
                self._engine = None

    def __enter__(self) -> PermissionStore:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def engine(self) -> sa.Engine | None:
        """The engine the policy lines are stored through (None before :meth:`start`
        when the store makes its own)."""
        return self._engine

    def _require_started(self) -> RuleAdapter:
        if not self._started or self._adapter is None:
            raise RuntimeError("PermissionStore is not started: call start() first")
        return self._adapter

    # -- the policy -----------------------------------------------------------

    def _load_policies(self) -> Policies:
        if self.policies_dir is not None or self.model_path is None:
            return load_policies(self.policies_dir)
        model_path = Path(self.model_path)
        beside = model_path.parent / "policy.csv"
        if beside.is_file():
            return _policy_lines(
                load_model(model_path), beside.read_text().splitlines(), str(beside)
            )
        return _policy_lines(
            load_model(model_path), POLICY_TEXT.splitlines(), "the built-in policy"
        )

    def _after_load(self) -> None:
        """After the enforcer (re)loaded every stored line: index, global lines, facts."""
        enforcer, decider, pol = self._enforcer, self._decider, self._policies
        assert enforcer is not None and decider is not None and pol is not None
        decider.clear()
        by_nb: dict[str, list[list[str]]] = {}
        for rule in enforcer.get_policy():
            by_nb.setdefault(rule[1], []).append(rule)
        for nb, lines in by_nb.items():
            decider.set_notebook(nb, lines)
        # Global lines and policy.csv's role links live in the enforcer's memory
        # only (load_policy drops them), so the plain enforce() sees them too.
        model = enforcer.get_model()
        if pol.lines:
            model.add_policies("p", "p", [list(r) for r in pol.lines])
        model.sort_policies_by_priority()
        for ptype, links in pol.links.items():
            enforcer.add_named_grouping_policies(ptype, [list(r) for r in links])
        self._fed_groups.clear()
        self._fed_notebooks.clear()
        decider.refresh_functions()
        self._notebooks = compile_lines(enforcer.get_named_policy("p2"))
        for nb, st in self._notebooks.items():
            self._feed_notebook(nb, st.perms)

    @staticmethod
    def _make_decider(enforcer: casbin.Enforcer, pol: Policies) -> CasbinDecider:
        """The decider, its matcher compiled and tried once: a broken one fails at start."""
        try:
            decider = CasbinDecider(enforcer)
            decider.set_global(pol.lines)
            decider.check()
        except Exception as exc:
            raise ValueError(
                f"Casbin model/policy ({pol.where}): the matcher cannot be evaluated: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return decider

    def _sync_links(
        self, ptype: str, sub: str, fed: dict[str, frozenset[str]], wanted: set[str]
    ) -> None:
        """Make the links of ``sub`` that this store fed equal ``wanted`` (never persisted)."""
        enforcer = self._enforcer
        assert enforcer is not None
        had = fed.get(sub, frozenset())
        stale = [[sub, r] for r in had - wanted]
        # a link policy.csv already has is not ours to add, nor later to remove
        missing = [
            [sub, r] for r in wanted - had if not enforcer.has_named_grouping_policy(ptype, sub, r)
        ]
        if stale:
            enforcer.remove_named_grouping_policies(ptype, stale)
        if missing:
            enforcer.add_named_grouping_policies(ptype, missing)
        now = (had & wanted) | {r for _, r in missing}
        if now:
            fed[sub] = frozenset(now)
        else:
            fed.pop(sub, None)

    def _feed_identity(self, identity: Identity) -> str:
        """Feed ``identity``'s Hub groups (and admin role) as g links; returns its subject."""
        sub = "u:" + identity.name
        wanted = {"g:" + g for g in identity.groups}
        if identity.admin:
            wanted.add("role:admin")
        if self._fed_groups.get(sub, frozenset()) != wanted:
            self._sync_links("g", sub, self._fed_groups, wanted)
        return sub

    def _feed_notebook(self, nb: str, perms: Perms | None) -> None:
        """Feed a notebook's owner and group as g2 links, if the model has ``g2``."""
        enforcer = self._enforcer
        assert enforcer is not None
        if "g2" not in enforcer.rm_map:
            return
        wanted = set()
        if perms is not None:
            wanted.add("u:" + perms.owner)
            if perms.group:
                wanted.add("g:" + perms.group)
        self._sync_links("g2", nb, self._fed_notebooks, wanted)

    def _decide(self, identity: Identity, nb: str, st: NotebookPerms) -> Access:
        """Casbin's decision on the notebook and every cell (lock held)."""
        decider = self._decider
        assert decider is not None
        sub = self._feed_identity(identity)
        bits = decider.bits
        nb_bits = bits(sub, nb, NOTEBOOK_OBJ)
        cell_bits = {cid: bits(sub, nb, cid) for cid in st.cells}
        name = identity.name
        owned = frozenset(cid for cid, p in st.cells.items() if p.owner == name)
        return Access(
            identity,
            nb_bits,
            cell_bits,
            name == st.perms.owner,
            st.perms.sticky,
            owned,
            st.perms.owner,
        )

    # -- reading --------------------------------------------------------------

    def _state(self, nb: str) -> NotebookPerms:
        self._require_started()
        _check_id(nb, "notebook id")
        st = self._notebooks.get(nb)
        if st is None:
            # Created by another replica whose announcement has not arrived yet (or was
            # lost): the database is the truth, read this notebook's policies from it.
            self.reload(nb)
            st = self._notebooks.get(nb)
        if st is None:
            raise UnknownObject(f"no permissions for notebook {nb!r}")
        return st

    def has_notebook(self, nb: str) -> bool:
        self._require_started()
        return _check_id(nb, "notebook id") in self._notebooks

    def notebook(self, nb: str) -> Perms:
        return self._state(nb).perms

    def default_cell(self, nb: str) -> tuple[int, tuple[AclEntry, ...]]:
        st = self._state(nb)
        return st.default_mode, st.default_acl

    def cell(self, nb: str, cell_id: str) -> Perms:
        st = self._state(nb)
        p = st.cells.get(_check_id(cell_id, "cell id"))
        if p is None:
            raise UnknownObject(f"no permissions for cell {cell_id!r} of notebook {nb!r}")
        return p

    def cells(self, nb: str) -> dict[str, Perms]:
        return dict(self._state(nb).cells)

    def generation(self, nb: str) -> int:
        """A counter that changes whenever the notebook's or a cell's permissions do."""
        return self._generation.get(nb, 0)

    def access(self, identity: Identity, nb: str) -> Access:
        """``identity``'s rights on ``nb`` as Casbin decides them, cached until they change.

        The cache key is the identity (name, groups, admin flag) and the notebook;
        every change of the notebook's permissions drops or recomputes it.
        """
        cache = self._access.get(nb)
        if cache is not None:
            acc = cache.get(identity)
            if acc is not None:
                return acc
        with self._lock:
            st = self._state(nb)
            acc = self._decide(identity, nb, st)
            cache = self._access.setdefault(nb, {})
            if len(cache) >= _MAX_CACHED:
                cache.clear()
            cache[identity] = acc
        return acc

    # -- writing --------------------------------------------------------------

    def add_listener(self, cb: Listener) -> None:
        """Call ``cb(nb)`` after every change of ``nb``'s permissions (also on reload)."""
        self._listeners.append(cb)

    def remove_listener(self, cb: Listener) -> None:
        self._listeners.remove(cb)

    def _notify(self, nb: str) -> None:
        for cb in list(self._listeners):
            try:
                cb(nb)
            except Exception:
                log.exception("permission listener %r failed for notebook %r", cb, nb)

    def _changed(
        self,
        nb: str,
        cell_id: str | None = None,
        cell: Perms | None = None,
        *,
        notebook: Perms | None = None,
        old_notebook: Perms | None = None,
    ) -> None:
        """Bump the generation and refresh cached Access objects (lock held).

        The decider's lines must already be up to date. Cached Access objects are
        patched -- the changed object's bits asked of Casbin again -- when one cell
        changed (``cell_id``) or the notebook's permissions changed but not its
        owner or group (the facts fed as ``g2``, which cell decisions may read);
        otherwise they are dropped.
        """
        self._generation[nb] = self._generation.get(nb, 0) + 1
        self._casbin_dirty.add(nb)
        cache = self._access.get(nb)
        if not cache:
            return
        self._access.pop(nb)
        if nb not in self._notebooks:
            return
        decider = self._decider
        assert decider is not None
        if cell_id is not None:
            patched: dict[Identity, Access | None] = {
                i: a.with_cell(
                    cell_id,
                    cell,
                    None if cell is None else decider.bits(self._feed_identity(i), nb, cell_id),
                )
                for i, a in cache.items()
            }
        elif (
            notebook is not None
            and old_notebook is not None
            and (notebook.owner, notebook.group) == (old_notebook.owner, old_notebook.group)
        ):
            patched = {
                i: a.with_notebook(notebook, decider.bits(self._feed_identity(i), nb, NOTEBOOK_OBJ))
                for i, a in cache.items()
            }
        else:
            return
        self._access[nb] = {i: a for i, a in patched.items() if a is not None}

    def create_notebook(
        self,
        nb: str,
        owner: str,
        group: str = "",
        mode: int = 0o750,
        acl: Iterable[AclEntry | str] = (),
        default_cell_mode: int = 0o775,
        default_acl: Iterable[AclEntry | str] = (),
    ) -> None:
        """Record a new notebook's permissions; :class:`ObjectExists` if it has some."""
        adapter = self._require_started()
        _check_id(nb, "notebook id")
        st = notebook_state(owner, group, mode, acl, default_cell_mode, default_acl)
        p, p2 = policy_lines(nb, st)
        with self._lock:
            try:
                adapter.replace(
                    nb,
                    None,
                    [("p", r) for r in p] + [("p2", r) for r in p2],
                    must_not_exist=NOTEBOOK_OBJ,
                )
            except FileExistsError:
                raise ObjectExists(f"notebook {nb!r} already has permissions") from None
            self._notebooks[nb] = st
            assert self._decider is not None
            self._decider.set_notebook(nb, p)
            self._feed_notebook(nb, st.perms)
            self._changed(nb)
        self._notify(nb)

    def delete_notebook(self, nb: str) -> None:
        """Forget a notebook's and its cells' permissions."""
        adapter = self._require_started()
        self._state(nb)
        with self._lock:
            adapter.replace(nb, None, [])
            self._notebooks.pop(nb, None)
            assert self._decider is not None
            self._decider.drop_notebook(nb)
            self._feed_notebook(nb, None)
            self._changed(nb)
        self._notify(nb)

    def add_new_notebook(self, new: NewNotebookPerms) -> None:
        """Take in ``new`` once the transaction that wrote it (:meth:`NewNotebookPerms.insert`) has committed:
        the compiled copy and the decider learn it. Thread-safe (a thread keeps the
        event loop free of thousands of cells' lines); then call :meth:`announce` in
        the thread the listeners expect."""
        self._require_started()
        lines = notebook_decisions(new.nb, new.state)
        with self._lock:
            if new.nb in self._notebooks:
                raise ObjectExists(f"notebook {new.nb!r} already has permissions")
            self._notebooks[new.nb] = new.state
            assert self._decider is not None
            self._decider.add_notebook(new.nb, lines)
            self._feed_notebook(new.nb, new.state.perms)
            self._changed(new.nb)

    def announce(self, nb: str) -> None:
        """Call the listeners for ``nb`` (after :meth:`add_new_notebook`)."""
        self._notify(nb)

    def set_notebook(
        self,
        nb: str,
        perms: Perms,
        default_cell_mode: int | None = None,
        default_acl: Iterable[AclEntry | str] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Replace the notebook's own permissions (and optionally its defaults).

        Returns ``(old, new)`` as JSON for the audit log; both include
        ``default_mode`` and ``default_acl``. A change that changes nothing
        writes nothing and calls no listener (no ``caps``, no bus event): it
        returns ``old == new``.
        """
        adapter = self._require_started()
        with self._lock:
            old = self._state(nb)
            new = NotebookPerms(
                perms,
                old.default_mode
                if default_cell_mode is None
                else _check_default_mode(default_cell_mode),
                old.default_acl if default_acl is None else _acl(default_acl),
                old.cells,
            )
            if (new.perms, new.default_mode, new.default_acl) == (
                old.perms,
                old.default_mode,
                old.default_acl,
            ):
                unchanged = _notebook_json(old)
                return unchanged, unchanged
            p, p2 = object_lines(nb, NOTEBOOK_OBJ, perms, (new.default_mode, new.default_acl))
            adapter.replace(nb, NOTEBOOK_OBJ, [("p", r) for r in p] + [("p2", r) for r in p2])
            self._notebooks[nb] = new
            assert self._decider is not None
            self._decider.set_object(nb, NOTEBOOK_OBJ, p)
            self._feed_notebook(nb, perms)
            self._changed(nb, notebook=perms, old_notebook=old.perms)
        self._notify(nb)
        return _notebook_json(old), _notebook_json(new)

    def create_cell(self, nb: str, cell_id: str, creator: str, perms: Perms | None = None) -> Perms:
        """Record a new cell's permissions and return them.

        Without ``perms`` the cell gets the notebook's default cell mode and
        ACL, ``creator`` as owner and the notebook's group.
        """
        adapter = self._require_started()
        _check_id(cell_id, "cell id")
        with self._lock:
            st = self._state(nb)
            if cell_id in st.cells:
                raise ObjectExists(f"cell {cell_id!r} of notebook {nb!r} already has permissions")
            if perms is None:
                perms = new_cell_perms(creator, st)
            self._write_cell(adapter, nb, cell_id, perms, new=True)
        self._notify(nb)
        return perms

    def set_cell(
        self, nb: str, cell_id: str, perms: Perms
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Replace a cell's permissions; returns ``(old, new)`` as JSON.

        A change that changes nothing writes nothing and calls no listener: it
        returns ``old == new``.
        """
        adapter = self._require_started()
        with self._lock:
            old = self.cell(nb, cell_id)
            if perms == old:
                return old.to_json(), old.to_json()
            self._write_cell(adapter, nb, cell_id, perms, new=False)
        self._notify(nb)
        return old.to_json(), perms.to_json()

    def _write_cell(
        self, adapter: RuleAdapter, nb: str, cell_id: str, perms: Perms, *, new: bool
    ) -> None:
        p, p2 = object_lines(nb, cell_id, perms)
        try:
            adapter.replace(
                nb,
                cell_id,
                [("p", r) for r in p] + [("p2", r) for r in p2],
                must_exist=NOTEBOOK_OBJ,
                must_not_exist=cell_id if new else None,
            )
        except LookupError:
            raise UnknownObject(f"no permissions for notebook {nb!r}") from None
        except FileExistsError:
            raise ObjectExists(
                f"cell {cell_id!r} of notebook {nb!r} already has permissions"
            ) from None
        st = self._notebooks[nb]
        st.cells = {**st.cells, cell_id: perms}
        assert self._decider is not None
        self._decider.set_object(nb, cell_id, p)
        self._changed(nb, cell_id, perms)

    def delete_cell(self, nb: str, cell_id: str) -> None:
        """Forget a cell's permissions."""
        adapter = self._require_started()
        with self._lock:
            self.cell(nb, cell_id)
            adapter.replace(nb, cell_id, [])
            st = self._notebooks[nb]
            st.cells = {c: p for c, p in st.cells.items() if c != cell_id}
            assert self._decider is not None
            self._decider.set_object(nb, cell_id, [])
            self._changed(nb, cell_id, None)
        self._notify(nb)

    # -- other replicas -------------------------------------------------------

    def reload(self, nb: str | None = None) -> None:
        """Re-read permissions from the database (all, or one notebook's).

        Notebooks whose permissions differ from the compiled copy get a new
        generation and their listeners are called.
        """
        adapter = self._require_started()
        assert self._enforcer is not None and self._decider is not None
        changed: list[str] = []
        with self._lock:
            if nb is None:
                previous = self._notebooks
                self._enforcer.load_policy()
                self._casbin_dirty.clear()
                self._after_load()
                fresh = self._notebooks
                self._notebooks = previous
                names = set(fresh) | set(self._notebooks)
            else:
                _check_id(nb, "notebook id")
                scratch = copy.deepcopy(self._model_template)
                adapter.load_notebook(scratch, nb)
                fresh = compile_lines(scratch.get_policy("p", "p2"))
                if fresh.get(nb) != self._notebooks.get(nb):
                    self._decider.set_notebook(nb, scratch.get_policy("p", "p"))
                    st_new = fresh.get(nb)
                    self._feed_notebook(nb, None if st_new is None else st_new.perms)
                names = {nb}
            for name in sorted(names):
                old, new = self._notebooks.get(name), fresh.get(name)
                if old == new:
                    continue
                if new is None:
                    self._notebooks.pop(name, None)
                else:
                    self._notebooks[name] = new
                self._changed(name)
                self._access.pop(name, None)
                if nb is None:  # the enforcer was just loaded; it is not stale
                    self._casbin_dirty.discard(name)
                changed.append(name)
        for name in changed:
            self._notify(name)

    # -- the plain Casbin path ------------------------------------------------

    def enforce(self, identity: Identity, nb: str, cell_id: str | None, bit: str) -> bool:
        """The Casbin decision for one bit (``"r"``, ``"w"`` or ``"x"``).

        ``casbin.Enforcer.enforce`` over every policy line of every notebook
        (and the global lines); this is for tests and benchmarks, never for
        request handling, which asks :meth:`access`. The identity's groups and
        admin flag are fed as ``g`` links first, as for :meth:`access`.
        """
        self._require_started()
        if bit not in _BITS:
            raise ValueError(f"invalid permission bit {bit!r}: expected 'r', 'w' or 'x'")
        _check_id(nb, "notebook id")
        obj = NOTEBOOK_OBJ if cell_id is None else _check_id(cell_id, "cell id")
        enforcer = self._enforcer
        assert enforcer is not None
        # One lock for writes and the enforcer's model: enforce is slow and rare.
        with self._lock:
            self._sync_casbin(enforcer)
            sub = self._feed_identity(identity)
            return bool(enforcer.enforce(sub, nb, obj, bit))

    def _sync_casbin(self, enforcer: casbin.Enforcer) -> None:
        dirty = list(self._casbin_dirty)
        self._casbin_dirty.clear()
        states = {nb: self._notebooks.get(nb) for nb in dirty}
        if not dirty:
            return
        model = enforcer.get_model()
        for nb, st in states.items():
            model.remove_filtered_policy("p", "p", 1, nb)
            model.remove_filtered_policy("p", "p2", 1, nb)
            if st is not None:
                p, p2 = policy_lines(nb, st)
                model.add_policies("p", "p", p)
                model.add_policies("p", "p2", p2)
        model.sort_policies_by_priority()
