"""Permission checks: Casbin's decisions, cached, against plain ``Enforcer.enforce``.

Run: ``.venv/bin/python benchmarks/bench_permissions.py [--db URL]``
(default: a SQLite file in a temporary directory).

Prints
* the cost of one ``Access.can("write_cell", ...)`` (amortized, µs) against
  ``casbin.Enforcer.enforce`` on the same policy lines (200 cells with a few
  ACL entries each);
* the time to compute a joining user's Access on a 500-cell notebook with
  per-cell ACLs through Casbin (ms), with the shipped policies and with the
  ``ta-reads-hidden`` example, and what plain ``enforce`` per (cell, bit)
  would take for the same join;
* a hot-path check including the cache lookup (``store.access(...).can``, µs);
* the time from ``set_cell`` / ``set_notebook`` to fresh Access objects for
  100 identities (ms).

Targets: at most 5 µs per check, at most 50 ms to join.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub_collab.permissions import Identity, PermissionStore, Perms, parse_acl  # noqa: E402

USERS = [f"user{i}" for i in range(120)]
GROUPS = [f"group{i}" for i in range(12)]


def _cell_perms(rng: random.Random, owner: str) -> Perms:
    acl = [f"u:{rng.choice(USERS)}:{rng.choice(['r', 'rw', 'rx', 'rwx'])}" for _ in range(2)]
    acl += [f"g:{rng.choice(GROUPS)}:{rng.choice(['r', 'rw', 'rwx'])}", "m::rwx"]
    # random user picks may repeat: keep the first entry per name
    seen: dict[str, str] = {}
    for e in acl:
        seen.setdefault(e.rsplit(":", 1)[0], e)
    return Perms(
        owner,
        rng.choice(GROUPS),
        rng.choice([0o664, 0o644, 0o640, 0o600]),
        parse_acl(list(seen.values())),
    )


def _fill(store: PermissionStore, nb: str, ncells: int, rng: random.Random) -> list[str]:
    store.create_notebook(nb, "user0", "group0", 0o1775, ["g:group1:rwx", "u:user1:rx", "m::rwx"])
    cells = [f"cell{i}" for i in range(ncells)]
    for cid in cells:
        store.create_cell(nb, cid, "x", _cell_perms(rng, rng.choice(USERS)))
    return cells


def _identities(rng: random.Random, n: int) -> list[Identity]:
    return [Identity(u, frozenset(rng.sample(GROUPS, 2))) for u in USERS[:n]]


def _lines(store: PermissionStore) -> int:
    enforcer = store._enforcer  # benchmark introspection only
    assert enforcer is not None
    return len(enforcer.get_policy()) + len(enforcer.get_named_policy("p2"))


def _example_join(url: str, rng: random.Random) -> None:
    example = Path(__file__).resolve().parents[1] / "policies" / "examples" / "ta-reads-hidden"
    store = PermissionStore(url, table=f"bench_perm_{rng.randrange(1 << 30)}", policies_dir=example)
    store.start()
    try:
        _fill(store, "ex500", 500, rng)
        store.set_notebook("ex500", Perms("user0", "group0", 0o1775))
        times = []
        for u in USERS[:30]:
            ident = Identity(u, frozenset({"staff", "group0"}))
            t0 = time.perf_counter()
            store.access(ident, "ex500")
            times.append((time.perf_counter() - t0) * 1e3)
        times.sort()
        print(f"join with the ta-reads-hidden example (500 cells): median {times[15]:.2f} ms")
    finally:
        if store._adapter is not None:
            store._adapter._db_class.__table__.drop(store._engine)
        store.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--db", help="SQLAlchemy URL (default: a temporary SQLite file)")
    args = ap.parse_args()
    rng = random.Random(42)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{tmp}/bench.db"
        store = PermissionStore(url, table=f"bench_perm_{rng.randrange(1 << 30)}")
        store.start()
        try:
            _run(store, rng)
        finally:
            if store._adapter is not None:  # drop the benchmark's own table
                store._adapter._db_class.__table__.drop(store._engine)
            store.stop()
        _example_join(url, rng)


def _run(store: PermissionStore, rng: random.Random) -> None:
    t0 = time.perf_counter()
    cells = _fill(store, "bench200", 200, rng)
    print(f"setup: 200 cells written in {(time.perf_counter() - t0):.2f} s")
    ids = _identities(rng, 20)

    # 1. per-check cost
    accesses = [store.access(i, "bench200") for i in ids]
    n = 0
    t0 = time.perf_counter()
    for _ in range(50):
        for a in accesses:
            for cid in cells:
                a.can("write_cell", cid)
                n += 1
    fast = (time.perf_counter() - t0) / n * 1e6
    store.enforce(ids[0], "bench200", cells[0], "w")  # sync the enforcer's model once
    lines = _lines(store)
    m = 0
    t0 = time.perf_counter()
    for ident in ids[:5]:
        for cid in cells[:20]:
            store.enforce(ident, "bench200", cid, "w")
            m += 1
    slow = (time.perf_counter() - t0) / m * 1e6
    print(
        f"check write_cell: Access.can {fast:.2f} µs/check; casbin.Enforcer.enforce {slow:.0f} µs/check "
        f"over {lines} policy lines ({slow / fast:.0f}x)"
    )

    # 2. joining user's Access on a 500-cell notebook
    _fill(store, "bench500", 500, rng)
    joiners = _identities(rng, 100)
    times = []
    for ident in joiners[:50]:
        t0 = time.perf_counter()
        store.access(ident, "bench500")
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    print(
        f"join through Casbin (500 cells, per-cell ACLs): median {times[len(times) // 2]:.2f} ms, "
        f"max {times[-1]:.2f} ms"
    )
    t0 = time.perf_counter()
    k = 0
    for cid in ["cell1", "cell2", "cell3", "cell4"]:
        for bit in "rwx":
            store.enforce(joiners[0], "bench500", cid, bit)
            k += 1
    per = (time.perf_counter() - t0) / k
    print(f"  the same join with plain enforce per (cell, bit): ~{per * 1501:.1f} s (estimated)")
    n = 0
    t0 = time.perf_counter()
    for _ in range(20):
        for ident in joiners[:50]:
            for cid in cells[:100]:
                store.access(ident, "bench500").can("write_cell", cid)
                n += 1
    print(f"hot path store.access(...).can: {(time.perf_counter() - t0) / n * 1e6:.2f} µs/check")

    # 3. change -> fresh Access for 100 identities
    for ident in joiners:
        store.access(ident, "bench500")
    t0 = time.perf_counter()
    store.set_cell("bench500", "cell7", _cell_perms(rng, "user3"))
    t1 = time.perf_counter()
    for ident in joiners:
        store.access(ident, "bench500").caps_json()
    t2 = time.perf_counter()
    print(
        f"set_cell -> 100 fresh Access (incl. caps_json): {(t2 - t0) * 1e3:.1f} ms "
        f"(write {(t1 - t0) * 1e3:.1f} ms, recompute {(t2 - t1) * 1e3:.1f} ms)"
    )
    t0 = time.perf_counter()
    store.set_notebook("bench500", Perms("user0", "group0", 0o1770, parse_acl(["g:group2:rx"])))
    t1 = time.perf_counter()
    for ident in joiners:
        store.access(ident, "bench500").caps_json()
    t2 = time.perf_counter()
    print(
        f"set_notebook -> 100 fresh Access (incl. caps_json): {(t2 - t0) * 1e3:.1f} ms "
        f"(write {(t1 - t0) * 1e3:.1f} ms, recompute {(t2 - t1) * 1e3:.1f} ms)"
    )


if __name__ == "__main__":
    main()
