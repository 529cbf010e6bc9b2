"""The layout holds: dependencies point down, and the package has no import cycle.

Read from the source (``ast``), so a test fails on the import that breaks the rule,
with its file and line. Imports inside functions count (a lazy import is still a
dependency). Imports inside ``if TYPE_CHECKING:`` blocks are types only: they may
form a cycle only between the modules of one package (a room and its awareness
name each other's types), never across packages (the handlers and ``app.py`` did).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hub_collab"

#: modules (and packages) that are services or below: none may import these
UPPER = ("hub_collab.app", "hub_collab.handlers", "hub_collab.apihandlers", "hub_collab.demo")
SERVICES = (
    "hub_collab.chat",
    "hub_collab.commands",
    "hub_collab.lifecycle",
    "hub_collab.replication",
    "hub_collab.kernels",
    "hub_collab.documents",
    "hub_collab.permissions",
    "hub_collab.store",
    "hub_collab.schema",
    "hub_collab.bus",
)


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, *, types: bool = False) -> list[tuple[str, int]]:
    """``(module imported, line)`` of every runtime import in ``path`` (and with
    ``types``, of the type-only ones too), resolved."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child) and not types:
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                found.append((target, child.lineno))
                # "from . import protocol" imports a module too
                for alias in child.names:
                    found.append((f"{target}.{alias.name}", child.lineno))
            visit(child)

    visit(tree)
    return found


def graph(*, types: bool = False) -> dict[str, dict[str, int]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}
    edges: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        out: dict[str, int] = {}
        for target, line in imports(path, types=types):
            if target in modules and target != name:
                out.setdefault(target, line)
        edges[name] = out
    return edges


def test_services_never_import_handlers_or_the_app() -> None:
    bad = []
    for name, out in graph(types=True).items():
        if not name.startswith(SERVICES):
            continue
        for target, line in out.items():
            if target.startswith(UPPER):
                bad.append(f"{name}:{line} imports {target}")
    assert not bad, "dependencies must point down:\n" + "\n".join(bad)


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """The import cycles of ``edges``: its strongly connected components of two or more."""
    # Tarjan's strongly connected components: any component of two or more is a cycle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def strongconnect(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strongconnect(v)
    return cycles


def _package(module: str) -> str:
    return module.rsplit(".", 1)[0]


def test_no_import_cycles() -> None:
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_type_only_cycles_stay_inside_one_package() -> None:
    found = [c for c in cycles(graph(types=True)) if len({_package(m) for m in c}) > 1]
    assert not found, "import cycles across packages:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_checks_find_a_cycle_and_an_upward_import() -> None:
    """Positive control: the checkers see what they are meant to see."""
    edges = {"a.x": {"b.y": 1}, "b.y": {"c.z": 2}, "c.z": {"a.x": 3}, "d": {}}
    assert cycles(edges) == [["a.x", "b.y", "c.z"]]
    assert "hub_collab.documents.room" in {t for t, _ in imports(PACKAGE / "handlers" / "ws.py")}
    # a type-only import is seen only when asked for
    typed = {t for t, _ in imports(PACKAGE / "documents" / "awareness.py", types=True)}
    runtime = {t for t, _ in imports(PACKAGE / "documents" / "awareness.py")}
    assert "hub_collab.documents.room" in typed - runtime


@pytest.mark.parametrize("path", ["chat.py", "kernels/commands.py", "documents/structure.py"])
def test_command_modules_register_through_the_registry(path: str) -> None:
    text = (PACKAGE / path).read_text()
    assert "def register_commands(registry: CommandRegistry" in text
    assert "handlers" not in {t.split(".")[1] for t, _ in imports(PACKAGE / path) if t.count(".") >= 1}
