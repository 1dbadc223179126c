"""The package's import graph, built with ``ast`` from every module's imports (module level and inside functions),
against docs/architecture.md: no import from a lower layer to a higher one, and no import cycle between modules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "insightface_lr"

# Import cycles allowed (each the sorted modules that import each other, directly or through others): none. The
# demo's were untied (demo/cells.py, demo/sets.py, the pool's Pipeline protocol); a new one fails at once.
KNOWN_DEMO_CYCLES: frozenset[tuple[str, ...]] = frozenset()


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports anywhere in its body (relative and absolute, ``from . import x``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name.removeprefix("insightface_lr.") for a in node.names
                       if a.name.startswith("insightface_lr.")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                prefix = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").startswith("insightface_lr"):
                prefix = node.module.removeprefix("insightface_lr").lstrip(".")
            else:
                continue
            targets = [f"{prefix}.{a.name}".strip(".") for a in node.names]  # a name, else its module
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `from .x import name`: the module x
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def layers() -> dict[str, int]:
    """Rank of each part, read from docs/architecture.md's "layers that only import downwards" line."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    line = next(line for line in text.splitlines() if "→" in line and "`data`" in line)
    steps = [re.findall(r"`(\w+)`", step) for step in line.split("→")]
    return {part: rank for rank, parts in enumerate(steps) for part in parts}


# modules beside the layers (docs/architecture.md): the base ones import no other part of the package but
# errors.py; the helpers sit below `data`; the command line (and `python -m` entry points) above `commands`
BASE = {"registry", "errors", "atomic"}
HELPERS = {"devices", "runtime", "outputs", "file_lock", "comma_lists", ""}
ENTRY = {"cli", "__main__"}


def rank(module: str, ranks: dict[str, int]) -> int:
    top = module.split(".")[0]
    if top in ENTRY or module.endswith(".__main__"):  # `python -m insightface_lr.train` under torchrun
        return max(ranks.values()) + 1
    if top in ranks:
        return ranks[top]
    if top in BASE or module in HELPERS:
        return -1
    raise AssertionError(f"insightface_lr/{module.replace('.', '/')}.py belongs to no layer of docs/architecture.md")


def test_layers_come_from_the_architecture_doc() -> None:
    assert layers() == {"data": 0, "models": 1, "losses": 1, "train": 2, "eval": 2, "demo": 3, "commands": 4}


def test_no_import_goes_up_a_layer() -> None:
    ranks, graph = layers(), import_graph()
    upward = sorted(f"{a} imports {b}" for a, targets in graph.items() for b in targets
                    if rank(b, ranks) > rank(a, ranks) and a != "")  # the package's __init__ re-exports lazily
    base = sorted(f"{a} imports {b}" for a, targets in graph.items() if a in BASE for b in targets if b != "errors")
    assert upward == [] and base == []


def strongly_connected(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """Tarjan's components of more than one module (the import cycles), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[tuple[str, ...]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(tuple(sorted(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_but_the_known_demo_ones() -> None:
    graph = {m: {t for t in targets if t} for m, targets in import_graph().items() if m}
    cycles = set(strongly_connected(graph))
    assert cycles - KNOWN_DEMO_CYCLES == set()
    assert KNOWN_DEMO_CYCLES - cycles == set(), "untied: remove these from KNOWN_DEMO_CYCLES"
    assert all(m.startswith("demo.") for cycle in KNOWN_DEMO_CYCLES for m in cycle)


def test_the_checker_sees_function_level_imports_and_cycles(tmp_path) -> None:
    """The graph builder against a hand-made package: an import inside a function counts, and a cycle is found."""
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path
    try:
        (tmp_path / "a.py").write_text("def f():\n    from .b import g\n")
        (tmp_path / "b.py").write_text("from . import a\n")
        (tmp_path / "c.py").write_text("import insightface_lr.a\n")
        graph = import_graph()
    finally:
        PACKAGE = saved
    assert graph == {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert strongly_connected(graph) == [("a", "b")]
