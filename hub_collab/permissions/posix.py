"""POSIX.1e permission values: modes, ACL entries, parsing and evaluation.

This module is pure (no I/O, no Casbin). Use :class:`Perms` to describe one
object (a notebook or a cell), :func:`parse_mode` / :func:`parse_acl` to turn
what a person typed into values, and :func:`evaluate` to get the rwx bits one
user has on one object. Hub-admin and notebook-owner overrides are *not*
applied here; :mod:`hub_collab.permissions.access` adds them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "R",
    "W",
    "X",
    "STICKY",
    "MAX_ACL_ENTRIES",
    "MAX_ACL_ENTRY_LENGTH",
    "MAX_MODE_LENGTH",
    "NAME_RE",
    "AclEntry",
    "AclKind",
    "PermissionSyntaxError",
    "Perms",
    "check_name",
    "evaluate",
    "format_acl_entry",
    "format_bits",
    "format_mode",
    "parse_acl",
    "parse_bits",
    "parse_mode",
]

R, W, X = 4, 2, 1
STICKY = 0o1000
#: The bits a mode may carry: sticky plus rwx for owner, group and other.
#: setuid/setgid have no meaning here and are rejected.
MODE_BITS = 0o1777
MAX_ACL_ENTRIES = 256
#: The longest mode and ACL entry accepted, in characters. Both are short
#: (``"u=rwx,g=rx,o=,+t"``, ``"group:<a 128-character name>:rwx"``); a longer
#: one is refused before it is parsed, and its error quotes only its start.
MAX_MODE_LENGTH = 128
MAX_ACL_ENTRY_LENGTH = 160
#: User and group names accepted in ACL entries, owners and groups.
NAME_RE = re.compile(r"^[A-Za-z0-9._@+-]{1,128}$")

AclKind = Literal["user", "group", "mask"]
_KIND_ORDER = {"user": 0, "group": 1, "mask": 2}


class PermissionSyntaxError(ValueError):
    """A mode, an ACL entry or a name could not be parsed.

    The message names the bad input and says what is wrong with it, and is
    safe to show to the user who typed it.
    """


def check_name(name: str, what: str = "name") -> str:
    """Return ``name`` if it is an acceptable user or group name."""
    if not isinstance(name, str) or NAME_RE.match(name) is None:
        raise PermissionSyntaxError(
            f"invalid {what} {str(name)[:140]!r}: expected 1-128 characters of [A-Za-z0-9._@+-]"
        )
    return name


def _check_length(text: str, limit: int, what: str) -> None:
    if len(text) > limit:
        raise PermissionSyntaxError(
            f"invalid {what} {text[:40]!r}...: {len(text)} characters, at most {limit}"
        )


def format_bits(bits: int) -> str:
    """``5`` -> ``"r-x"``."""
    return ("r" if bits & R else "-") + ("w" if bits & W else "-") + ("x" if bits & X else "-")


def format_mode(mode: int) -> str:
    """``0o1775`` -> ``"1775"`` (always four octal digits)."""
    return f"{mode:04o}"


_BITS_RE = re.compile(r"^[r-][w-][x-]$")


def parse_bits(text: str, what: str = "permissions") -> int:
    """Parse ``"rw-"``, ``"rw"``, ``"xr"``, ``"---"`` or one octal digit ``"6"``."""
    t = text.strip()
    if len(t) == 1 and t in "01234567":
        return int(t)
    if _BITS_RE.match(t):
        return (R if t[0] == "r" else 0) | (W if t[1] == "w" else 0) | (X if t[2] == "x" else 0)
    if t and all(c in "rwx" for c in t) and len(set(t)) == len(t):
        return (R if "r" in t else 0) | (W if "w" in t else 0) | (X if "x" in t else 0)
    raise PermissionSyntaxError(
        f"invalid {what} {text!r}: expected letters from 'rwx' (like 'rw-' or 'rx') or one octal digit"
    )


@dataclass(frozen=True)
class AclEntry:
    """One extended ACL entry: a named user, a named group, or the mask.

    ``perms`` is 0..7 (r=4, w=2, x=1); the mask has an empty ``name``.
    """

    kind: AclKind
    name: str
    perms: int

    def __post_init__(self) -> None:
        if self.kind not in _KIND_ORDER:
            raise PermissionSyntaxError(
                f"invalid ACL entry kind {self.kind!r}: expected 'user', 'group' or 'mask'"
            )
        if self.kind == "mask":
            if self.name != "":
                raise PermissionSyntaxError(
                    f"invalid mask entry: the mask has no name (got {self.name!r})"
                )
        else:
            check_name(self.name, f"{self.kind} name")
        if (
            not isinstance(self.perms, int)
            or isinstance(self.perms, bool)
            or not 0 <= self.perms <= 7
        ):
            raise PermissionSyntaxError(f"invalid ACL permissions {self.perms!r}: expected 0..7")

    def __str__(self) -> str:
        return format_acl_entry(self)


def format_acl_entry(entry: AclEntry) -> str:
    """getfacl style: ``user:bob:rw-``, ``group:ta:r-x``, ``mask::rwx``."""
    return f"{entry.kind}:{entry.name}:{format_bits(entry.perms)}"


def _canonical_acl(entries: Iterable[AclEntry]) -> tuple[AclEntry, ...]:
    """Sort (users, groups, mask; by name) and reject duplicates and oversize ACLs."""
    out = tuple(sorted(entries, key=lambda e: (_KIND_ORDER[e.kind], e.name)))
    if len(out) > MAX_ACL_ENTRIES:
        raise PermissionSyntaxError(
            f"too many ACL entries ({len(out)}): at most {MAX_ACL_ENTRIES} are allowed"
        )
    for a, b in zip(out, out[1:], strict=False):
        if a.kind == b.kind and a.name == b.name:
            raise PermissionSyntaxError(
                f"duplicate ACL entry {a.kind}:{a.name}: each user, group and the mask may appear once"
            )
    return out


_KIND_ALIASES: dict[str, AclKind] = {
    "user": "user",
    "u": "user",
    "group": "group",
    "g": "group",
    "mask": "mask",
    "m": "mask",
}


def _parse_acl_entry(text: str) -> AclEntry:
    if isinstance(text, str):
        _check_length(text, MAX_ACL_ENTRY_LENGTH, "ACL entry")
    raw = text.strip() if isinstance(text, str) else text
    if not isinstance(raw, str) or not raw:
        raise PermissionSyntaxError(f"invalid ACL entry {text!r}: empty")
    parts = raw.split(":")
    if parts[0] in ("default", "d"):
        raise PermissionSyntaxError(
            f"invalid ACL entry {raw!r}: give default entries in the default ACL, without 'default:'"
        )
    if parts[0] in ("other", "o"):
        raise PermissionSyntaxError(
            f"invalid ACL entry {raw!r}: the 'other' entry is set with the mode (e.g. o=r), not as an ACL entry"
        )
    if len(parts) != 3:
        raise PermissionSyntaxError(
            f"invalid ACL entry {raw!r}: expected 'user:NAME:rwx', 'group:NAME:rwx' or 'mask::rwx'"
        )
    tag, name, bits = parts
    kind = _KIND_ALIASES.get(tag)
    if kind is None:
        raise PermissionSyntaxError(
            f"invalid ACL entry {raw!r}: unknown tag {tag!r} (expected user, group or mask)"
        )
    if kind != "mask" and name == "":
        raise PermissionSyntaxError(
            f"invalid ACL entry {raw!r}: the owner's and owning group's entries "
            f"('{kind}::') are set with the mode (e.g. chmod {'u' if kind == 'user' else 'g'}=rw), "
            "not as ACL entries; give a name"
        )
    if kind == "mask" and name != "":
        raise PermissionSyntaxError(
            f"invalid ACL entry {raw!r}: the mask takes no name ('mask::rwx')"
        )
    perms = parse_bits(bits, f"permissions in ACL entry {raw!r}")
    if kind != "mask":
        check_name(name, f"{kind} name in ACL entry {raw!r}")
    return AclEntry(kind, name, perms)


def parse_acl(entries: Iterable[str | AclEntry]) -> tuple[AclEntry, ...]:
    """Parse getfacl-style entries into a canonical tuple of :class:`AclEntry`.

    Accepts ``user:bob:rw-``, ``u:bob:rw``, ``group:ta:r-x``, ``g:ta:rx``,
    ``mask::rwx``, ``m::r`` (and already parsed :class:`AclEntry` values).
    Base entries (``user::``, ``group::``, ``other::``) belong to the mode and
    are rejected, as are duplicates, bad names and more than 256 entries.
    """
    if isinstance(entries, str):
        raise PermissionSyntaxError(f"invalid ACL {entries[:80]!r}: expected a list of entries")
    parsed: list[AclEntry] = []
    for i, e in enumerate(entries):
        if i >= MAX_ACL_ENTRIES:
            raise PermissionSyntaxError(
                f"too many ACL entries: at most {MAX_ACL_ENTRIES} are allowed"
            )
        parsed.append(e if isinstance(e, AclEntry) else _parse_acl_entry(e))
    return _canonical_acl(parsed)


@dataclass(frozen=True)
class Perms:
    """The permissions of one object: owner, group, mode and extended ACL.

    ``mode`` holds rwx for owner/group/other (``0o777``) plus the sticky bit
    (``0o1000``, meaningful on notebooks). The group bits of the mode are the
    owning group's entry; the mask, when present, is a separate ACL entry.
    ``acl`` is stored in canonical order (users, groups, mask; by name), so
    two equal permission sets compare equal.
    """

    owner: str
    group: str
    mode: int
    acl: tuple[AclEntry, ...] = ()

    def __post_init__(self) -> None:
        check_name(self.owner, "owner")
        if self.group != "":
            check_name(self.group, "group")
        if (
            not isinstance(self.mode, int)
            or isinstance(self.mode, bool)
            or self.mode & ~MODE_BITS
            or self.mode < 0
        ):
            raise PermissionSyntaxError(
                f"invalid mode {self.mode!r}: expected 0..0o1777 (rwx for owner, group, other and sticky)"
            )
        acl = self.acl
        if not (isinstance(acl, tuple) and all(isinstance(e, AclEntry) for e in acl)):
            acl = parse_acl(acl)
        object.__setattr__(self, "acl", _canonical_acl(acl))

    @property
    def sticky(self) -> bool:
        return bool(self.mode & STICKY)

    @property
    def mask(self) -> int | None:
        for e in self.acl:
            if e.kind == "mask":
                return e.perms
        return None

    def to_json(self) -> dict[str, Any]:
        """``{"owner", "group", "mode": "0640", "acl": ["user:bob:rw-", ...]}``."""
        return {
            "owner": self.owner,
            "group": self.group,
            "mode": format_mode(self.mode),
            "acl": [format_acl_entry(e) for e in self.acl],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Perms:
        """The inverse of :meth:`to_json`; ``mode`` may be octal or an int."""
        try:
            owner, group, mode = data["owner"], data.get("group", ""), data["mode"]
        except KeyError as exc:
            raise PermissionSyntaxError(f"missing key {exc.args[0]!r} in permissions") from exc
        if isinstance(mode, str):
            mode = parse_mode(mode)
        return cls(owner=owner, group=group, mode=mode, acl=parse_acl(data.get("acl", ())))


def evaluate(perms: Perms, user: str, groups: frozenset[str]) -> int:
    """The rwx bits (0..7) ``user`` has on an object, by the POSIX.1e algorithm.

    Owner entry; else the named-user entry (masked); else the group class: the
    owning group and every named group the user belongs to -- if any matches,
    the union of the matching entries, masked, and nothing else (a match that
    does not grant is a denial, with no fall-through to *other*); else other.
    """
    mode = perms.mode
    if user == perms.owner:
        return (mode >> 6) & 7
    acl = perms.acl
    if not acl:
        if perms.group and perms.group in groups:
            return (mode >> 3) & 7
        return mode & 7
    mask = 7
    if acl[-1].kind == "mask":  # canonical order puts the mask last
        mask = acl[-1].perms
    matched = False
    bits = 0
    for e in acl:
        if e.kind == "user":
            if e.name == user:
                return e.perms & mask
        elif e.kind == "group":
            if e.name in groups:
                matched = True
                bits |= e.perms
    if perms.group and perms.group in groups:
        matched = True
        bits |= (mode >> 3) & 7
    if matched:
        return bits & mask
    return mode & 7


# -- chmod(1) modes -----------------------------------------------------------

_OCTAL_RE = re.compile(r"^[0-7]{1,4}$")
_WHO_BITS = {"u": 0o700, "g": 0o070, "o": 0o007}
_WHO_SHIFT = {"u": 6, "g": 3, "o": 0}


def parse_mode(text: str, current: int = 0) -> int:
    """Parse an octal or symbolic (chmod(1)) mode, relative to ``current``.

    Octal: ``"1775"``, ``"0640"``, ``"640"`` (absolute; fewer than four digits
    mean a zero sticky digit). Symbolic: comma-separated clauses
    ``[ugoa]*([-+=]([rwxXt]*|[ugo]))+`` such as ``"u+w,g-w,o="``, ``"a+rx"``,
    ``"+t"``, ``"u=rwx,go=rx"``, ``"g=u"``. No who means ``a`` (there is no
    umask). ``X`` grants x only if some x bit is already set. ``t`` (sticky)
    applies when who is empty or includes ``o``/``a``; ``=`` on ``o`` clears
    it unless ``t`` is given, as in chmod(1). setuid/setgid are rejected.
    """
    if not isinstance(text, str):
        raise PermissionSyntaxError(f"invalid mode {str(text)[:40]!r}: expected a string")
    _check_length(text, MAX_MODE_LENGTH, "mode")
    if current & ~MODE_BITS or current < 0:
        raise PermissionSyntaxError(f"invalid current mode {current!r}: expected 0..0o1777")
    t = text.strip()
    if not t:
        raise PermissionSyntaxError(f"invalid mode {text!r}: empty")
    if t.isdigit():
        if not _OCTAL_RE.match(t):
            raise PermissionSyntaxError(
                f"invalid mode {text!r}: expected 1-4 octal digits (0-7), like '0640' or '1775'"
            )
        value = int(t, 8)
        if value & ~MODE_BITS:
            raise PermissionSyntaxError(
                f"invalid mode {text!r}: setuid/setgid (4000/2000) are not supported; only sticky (1000)"
            )
        return value
    mode = current
    for clause in t.split(","):
        mode = _apply_clause(text, clause, mode)
    return mode


def _apply_clause(text: str, clause: str, mode: int) -> int:
    if not clause:
        raise PermissionSyntaxError(f"invalid mode {text!r}: empty clause")
    i = 0
    who = ""
    while i < len(clause) and clause[i] in "ugoa":
        who += clause[i]
        i += 1
    if i == len(clause):
        raise PermissionSyntaxError(
            f"invalid mode {text!r}: missing operator (+, - or =) in {clause!r}"
        )
    if clause[i] not in "+-=":
        raise PermissionSyntaxError(
            f"invalid mode {text!r}: unknown {'who' if not who and i == 0 else 'operator'} "
            f"{clause[i]!r} (expected [ugoa] then +, - or =)"
        )
    targets = "ugo" if (not who or "a" in who) else "".join(sorted(set(who), key="ugo".index))
    sticky_applies = not who or "a" in who or "o" in who
    while i < len(clause):
        op = clause[i]
        if op not in "+-=":
            raise PermissionSyntaxError(f"invalid mode {text!r}: unknown permission {op!r}")
        i += 1
        perm = ""
        while i < len(clause) and clause[i] not in "+-=":
            perm += clause[i]
            i += 1
        mode = _apply_op(text, mode, targets, sticky_applies, op, perm)
    return mode


def _apply_op(text: str, mode: int, targets: str, sticky_applies: bool, op: str, perm: str) -> int:
    bits = 0  # rwx triple to apply to each target
    sticky = False
    if perm in ("u", "g", "o"):
        bits = (mode >> _WHO_SHIFT[perm]) & 7
    else:
        for c in perm:
            if c == "r":
                bits |= R
            elif c == "w":
                bits |= W
            elif c == "x":
                bits |= X
            elif c == "X":
                if mode & 0o111:
                    bits |= X
            elif c == "t":
                sticky = True
            elif c == "s":
                raise PermissionSyntaxError(
                    f"invalid mode {text!r}: setuid/setgid ('s') are not supported; only sticky ('t')"
                )
            elif c in "ugo":
                raise PermissionSyntaxError(
                    f"invalid mode {text!r}: copying permissions ({c!r}) cannot be combined with other letters"
                )
            else:
                raise PermissionSyntaxError(f"invalid mode {text!r}: unknown permission {c!r}")
    affected = 0
    value = 0
    for w in targets:
        affected |= _WHO_BITS[w]
        value |= bits << _WHO_SHIFT[w]
    if sticky_applies:
        if op == "=":
            affected |= STICKY
        if sticky:
            value |= STICKY
    if op == "+":
        return mode | value
    if op == "-":
        return mode & ~value
    return (mode & ~affected) | value
