"""Casbin decides: a user's rwx bits on a notebook and every cell, fast.

:class:`CasbinDecider` is used by :class:`~hub_collab.permissions.store.PermissionStore`;
nothing else needs it. It answers the same question as ``casbin.Enforcer.enforce(sub,
nb, obj, act)`` on the store's enforcer -- same model, same matcher, same effect, same
role managers (``g``: Hub groups and roles, ``g2``: notebook facts) and the same policy
lines -- in a way that makes a 500-cell join cost milliseconds instead of seconds:

* **An index by object.** The store's lines of object ``(nb, obj)`` are offered only to
  requests on that object, together with the *global* lines (``policies/policy.csv``),
  which are offered to every request. ``enforce`` scans every line of every notebook;
  the result is the same as long as a store line never matches a request on another
  object (the documented contract of a custom matcher, docs/permissions.md).
* **The matcher compiled once.** pycasbin re-parses the matcher on every ``enforce``
  call and walks its syntax tree for every line (about 26 µs + 5 µs per line here). The
  decider turns the model's matcher text into Python the way pycasbin does (``&&``,
  ``||``, ``!``) and compiles it once into a function of the request and policy tokens,
  with pycasbin's function map (``keyMatch``... and ``g``/``g2`` from the enforcer's
  role managers) as its names. The effect is the model's own effector
  (``casbin.effect.get_effector``), applied in the model's priority order, with the
  same early exit as ``enforce_ex``. A matcher that uses ``eval()`` is not compiled:
  each request then goes through ``enforcer.enforce`` itself, on the object's lines.

The hypothesis tests in tests/test_permissions_casbin.py hold the decider to the plain
``enforce`` and both to the POSIX.1e reference (:func:`~.access.compute_access`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import casbin
from casbin.effect import Effector, effect_to_bool
from casbin.util import has_eval
from casbin.util.builtin_operators import generate_g_function

__all__ = ["CasbinDecider", "compile_matcher", "priority_key"]

Rule = list[str]
_ACTS = (("r", 4), ("w", 2), ("x", 1))


def priority_key(line: Sequence[str]) -> int:
    """The sort key of a ``p`` line: its priority (validated to be digits)."""
    return int(line[0])


def compile_matcher(
    matcher: str, r_tokens: Sequence[str], p_tokens: Sequence[str], names: dict[str, Any]
) -> Callable[..., Any]:
    """The model's matcher (already escaped: ``r_sub``, ``p_obj``) as a Python function.

    The text is rewritten exactly as pycasbin rewrites it before evaluating
    (``CoreEnforcer._get_expression``); the function takes the request tokens then
    the policy tokens, positionally. ``names`` (a dict, read at call time) provides the
    matcher's functions. Raises :class:`SyntaxError` for a matcher Python cannot parse.
    """
    expr = matcher.replace("&&", "and").replace("||", "or")
    expr = re.sub(r"!(?!=)", "not ", expr)
    args = ", ".join([*r_tokens, *p_tokens])
    code = compile(f"lambda {args}: ({expr.strip()})", "<casbin matcher>", "eval")
    fn: Callable[..., Any] = eval(code, names)  # noqa: S307 - the operator's own model
    return fn


class CasbinDecider:
    """Decide rwx bits with ``enforcer``'s model over indexed policy lines.

    Not thread-safe on its own: the store calls it with its lock held (the role
    managers it reads are fed per identity).
    """

    def __init__(self, enforcer: casbin.Enforcer) -> None:
        self._enforcer = enforcer
        model = enforcer.get_model().model
        self._r_tokens = list(model["r"]["r"].tokens)
        self._p_tokens = list(model["p"]["p"].tokens)
        self._eft_index = self._p_tokens.index("p_eft")
        self._effector = enforcer.eft
        matcher = model["m"]["m"].value
        self._names: dict[str, Any] = {"__builtins__": {}}
        self._fn: Callable[..., Any] | None = None
        if not has_eval(matcher):
            self._fn = compile_matcher(matcher, self._r_tokens, self._p_tokens, self._names)
        self._global: list[Rule] = []
        #: nb -> obj -> the object's own p lines, in priority order
        self._lines: dict[str, dict[str, list[Rule]]] = {}
        #: (nb, obj) -> global and own lines merged in priority order (built lazily)
        self._merged: dict[tuple[str, str], list[Rule]] = {}
        self.refresh_functions()

    @property
    def compiled(self) -> bool:
        """False when the matcher uses ``eval()`` and requests go through ``enforce``."""
        return self._fn is not None

    def refresh_functions(self) -> None:
        """Re-read the function map and role managers (after the enforcer reloads)."""
        names = self._names
        for k in [k for k in names if k != "__builtins__"]:
            del names[k]
        names.update(self._enforcer.fm.get_functions())
        for key, rm in self._enforcer.rm_map.items():
            names[key] = generate_g_function(rm)

    # -- the lines ------------------------------------------------------------

    def set_global(self, lines: Iterable[Sequence[str]]) -> None:
        """The operator's lines, offered to every request."""
        self._global = sorted((list(r) for r in lines), key=priority_key)
        self._merged.clear()

    def set_object(self, nb: str, obj: str, lines: Iterable[Sequence[str]]) -> None:
        """Replace the p lines of one object (no lines: the object is gone)."""
        own = sorted((list(r) for r in lines), key=priority_key)
        objs = self._lines.setdefault(nb, {})
        if own:
            objs[obj] = own
        else:
            objs.pop(obj, None)
        self._merged.pop((nb, obj), None)

    def set_notebook(self, nb: str, lines: Iterable[Sequence[str]]) -> None:
        """Replace every p line of a notebook and its cells."""
        self.drop_notebook(nb)
        by_obj: dict[str, list[Rule]] = {}
        for r in lines:
            by_obj.setdefault(r[2], []).append(list(r))
        for obj, own in by_obj.items():
            self.set_object(nb, obj, own)

    def add_notebook(self, nb: str, lines: dict[str, list[Rule]]) -> None:
        """Replace every p line of a notebook and its cells by ``lines`` (by object),
        taken as they are, not copied (a new notebook's thousands of cells)."""
        self.drop_notebook(nb)
        objs = self._lines.setdefault(nb, {})
        for obj, own in lines.items():
            if own:
                own.sort(key=priority_key)
                objs[obj] = own

    def drop_notebook(self, nb: str) -> None:
        objs = self._lines.pop(nb, None)
        for obj in objs or ():
            self._merged.pop((nb, obj), None)
        for key in [k for k in self._merged if k[0] == nb]:
            del self._merged[key]

    def clear(self) -> None:
        self._lines.clear()
        self._merged.clear()

    def lines_for(self, nb: str, obj: str) -> list[Rule]:
        """The lines a request on ``(nb, obj)`` is evaluated against, in priority order."""
        merged = self._merged.get((nb, obj))
        if merged is None:
            own = self._lines.get(nb, {}).get(obj, [])
            if not self._global:
                merged = own
            elif not own:
                merged = self._global
            else:
                merged = sorted(self._global + own, key=priority_key)
            self._merged[(nb, obj)] = merged
        return merged

    def check(self) -> None:
        """Evaluate the matcher on sample lines, so that a broken one fails now."""
        sample = ["0", "nb", "obj", "u:other", "r", "allow"]
        for line in [sample, ["0", "nb", "obj", "*", "r", "allow"], *self._global]:
            for obj in ("obj", "."):
                if self._fn is not None:
                    self._fn("u:someone", "nb", obj, "r", *line)
        self.bits("u:someone", "nb", "obj")

    # -- deciding -------------------------------------------------------------

    def bits(self, sub: str, nb: str, obj: str) -> int:
        """The rwx bits (0..7) the model grants ``sub`` on ``obj`` of notebook ``nb``."""
        lines = self.lines_for(nb, obj)
        fn = self._fn
        if fn is None:
            return self._bits_through_enforce(sub, nb, obj, lines)
        eft = self._effector
        ei = self._eft_index
        undecided = Effector.INDETERMINATE
        out = 0
        for act, bit in _ACTS:
            effects: set[int] = set()
            for line in lines:
                res = fn(sub, nb, obj, act, *line)
                if not isinstance(res, (bool, float)):
                    raise RuntimeError("matcher result should be bool, int or float")
                if not res:  # False, or a float 0 (pycasbin's numeric matchers)
                    continue
                e = line[ei]
                effects.add(
                    Effector.ALLOW if e == "allow" else Effector.DENY if e == "deny" else undecided
                )
                if eft.intermediate_effect(effects) != undecided:
                    break
            if effect_to_bool(eft.final_effect(effects)):
                out |= bit
        return out

    def _bits_through_enforce(self, sub: str, nb: str, obj: str, lines: list[Rule]) -> int:
        assertion = self._enforcer.get_model().model["p"]["p"]
        saved = assertion.policy
        assertion.policy = lines
        try:
            return sum(bit for act, bit in _ACTS if self._enforcer.enforce(sub, nb, obj, act))
        finally:
            assertion.policy = saved
