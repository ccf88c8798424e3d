"""The shape of the package that DESIGN.md describes, held by reading the sources (nothing is imported or run).

- No import cycle inside ``dlparts``, counting imports inside functions (a lazy import is still a dependency).
- Each layer imports only from the layers above it in DESIGN.md's list.
- No source file over about 400 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "dlparts"

# DESIGN.md's layers, top first: a module may import from its own layer and the ones before it.
LAYERS = [
    ("dlparts.errors",),
    ("dlparts.arith", "dlparts.stacks"),
    ("dlparts.ops",),
    ("dlparts.layers",),
    ("dlparts.models",),
    ("dlparts.data",),
    ("dlparts.summary", "dlparts.layer_costs", "dlparts.meta_run", "dlparts.report"),
    ("dlparts.viz",),
    ("dlparts.train",),
    ("dlparts.ablate",),
    ("dlparts.cli", "dlparts.cli_train", "dlparts.cli_ablate", "dlparts.__main__"),
]
MAX_LINES = 420


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The dlparts modules that ``name`` imports anywhere in its source (module level or inside functions).

    ``from dlparts.ops import cpu`` names the submodule ``dlparts.ops.cpu`` when there is one, else the package;
    the root package (the lazy facade) is left out."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.add(sub if sub in known else module)
    return {m for m in found if m in known and m != "dlparts" and m != name}


def graph() -> dict[str, set[str]]:
    files = sources()
    return {name: imports(name, path, set(files)) for name, path in files.items()}


def layer_of(name: str) -> int:
    for index, prefixes in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{name} belongs to no layer of DESIGN.md: add it to LAYERS in this test")


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_lazy_cycle(tmp_path):
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(edges) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    pkg = tmp_path / "p"
    pkg.mkdir()
    (pkg / "x.py").write_text("def f():\n    from p import y\n")
    assert imports("p.x", pkg / "x.py", {"p.x", "p.y", "p"}) == {"p.y"}


def test_no_import_cycle_in_the_package():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_layers_import_only_from_layers_above():
    upward = [f"{src} (layer {layer_of(src)}) imports {dst} (layer {layer_of(dst)})"
              for src, targets in graph().items() if src != "dlparts"
              for dst in sorted(targets) if layer_of(dst) > layer_of(src)]
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_source_files_stay_short(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(SRC)} has {lines} lines (at most ~400: split it by job)"
