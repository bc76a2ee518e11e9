#!/usr/bin/env python3
"""meltbench's import graph: layers, cycles and module sizes, checked.

Every ``import meltbench...`` in ``src/meltbench`` (at module level or inside a function:
both are dependencies; not those under ``if TYPE_CHECKING:``, which never run) must go
to the same or a lower layer, no set of modules may import each other in a cycle, and no
module may exceed :data:`MAX_LINES` lines.

    python scripts/import_graph.py            # the check; exit 1 on a violation
    python scripts/import_graph.py --edges    # package-level edges with counts

The layers, lowest first (a package imports only from its own layer or below):

====  ===========================================================================
0     ``meltbench`` (the lazy facade), ``errors``, ``metrics`` (the catalogue),
      ``parameters`` (the run settings table)
1     ``registry``, ``config`` (specs), ``environment``
2     ``sensors``, ``workloads``, ``models`` (reading the world: hardware, prompts, files)
3     ``measure`` (pure analysis: timing, stats, energy, roofline, scaling, ...)
4     ``engines``, ``forward`` (single-pass tasks: encoders and vision models)
5     ``harness`` (process handling: worker, runner, measurement, agent)
6     ``results`` (schema, store, identity, compare's statistics and matching)
7     ``targets`` (local, ssh, adb transports; remote runs)
8     ``report`` (terminal, HTML, plots, compare's rendering)
9     ``api`` (prepare -> execute -> assemble -> store), ``api_requests`` (its request
      workloads: checks, server load)
10    ``accuracy``, ``sweep`` (commands built on api), ``archsearch``, ``lab`` (on sweep)
11    ``cli``
====  ===========================================================================
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "meltbench"
MAX_LINES = 620  # "~600": a module's docstring and tables count

LAYERS: dict[str, int] = {
    "meltbench": 0,
    "errors": 0,
    "metrics": 0,
    "parameters": 0,
    "timestamps": 0,
    "registry": 1,
    "config": 1,
    "environment": 1,
    "sensors": 2,
    "workloads": 2,
    "models": 2,
    "measure": 3,
    "engines": 4,
    "forward": 4,
    "harness": 5,
    "results": 6,
    "targets": 7,
    "report": 8,
    "api": 9,
    "api_requests": 9,
    "accuracy": 10,
    "sweep": 10,
    "archsearch": 10,
    "lab": 10,
    "cli": 11,
}


def module_name(path: Path) -> str:
    """``src/meltbench/results/store.py`` -> ``meltbench.results.store``."""
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, modules: set[str]) -> Iterator[str]:
    """The meltbench modules ``path`` imports (``from meltbench import x`` counts as
    ``meltbench.x`` when x is a module, else as ``meltbench``)."""
    tree = ast.parse(path.read_text(), str(path))
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "meltbench":
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                yield sub if sub in modules else node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "meltbench":
                    yield alias.name


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                todo.extend(child.orelse)
                continue
            todo.append(child)


def package(module: str) -> str:
    """``meltbench.results.store`` -> ``results``; ``meltbench`` -> ``meltbench``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "meltbench"


def graph() -> tuple[dict[str, set[str]], dict[str, int]]:
    """(module -> imported modules, module -> line count) of the whole package."""
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    modules = set(files)
    edges = {m: {d for d in imports_of(p, modules) if d != m} for m, p in files.items()}
    lines = {m: len(p.read_text().splitlines()) for m, p in files.items()}
    return edges, lines


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    """``a -> b`` for each import of a higher layer (or of a package with no layer)."""
    out = []
    for mod, deps in sorted(edges.items()):
        if mod == "meltbench":  # the facade resolves the public names lazily
            continue
        here = LAYERS.get(package(mod))
        for dep in sorted(deps):
            there = LAYERS.get(package(dep))
            if here is None or there is None:
                out.append(f"{mod} -> {dep}: package without a layer (add it to LAYERS)")
            elif there > here:
                out.append(f"{mod} (layer {here}) -> {dep} (layer {there})")
    return out


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan 1972)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w == "meltbench" or w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def main(argv: list[str] | None = None) -> int:
    """Print the violations; 0 when there are none, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="print package-level edges")
    parser.add_argument("--max-lines", type=int, default=MAX_LINES)
    args = parser.parse_args(argv)
    edges, lines = graph()
    if args.edges:
        counts: dict[tuple[str, str], int] = {}
        for mod, deps in edges.items():
            for dep in deps:
                key = (package(mod), package(dep))
                if key[0] != key[1]:
                    counts[key] = counts.get(key, 0) + 1
        for (a, b), n in sorted(counts.items()):
            print(f"{a} -> {b}  ({n})")
    problems = upward_imports(edges)
    problems += ["cycle: " + " -> ".join(c) for c in cycles(edges)]
    problems += [
        f"{m}: {n} lines (> {args.max_lines})"
        for m, n in sorted(lines.items())
        if n > args.max_lines
    ]
    for p in problems:
        print(p)
    if not problems:
        print(f"{len(edges)} modules: no upward import, no cycle, none over {args.max_lines} lines")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
