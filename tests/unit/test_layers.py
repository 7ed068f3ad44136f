"""The package's layers, read from the source: no module imports a layer above its own, and
no import cycles, function-level imports included (they hide cycles from Python but not
from a reader).

The layers follow the data flow (docs/architecture.md).  ``sources`` comes first in the
flow but uses the formats' vocabulary (pages, format files), so in import terms the
order from the bottom is::

    errors, compiled, libc, units, procfs, version, kernels   (no tracewatch imports above them)
    formats      bytes -> meaning
    sources      where pages come from
    stream       batches, merge, filters, dispatch
    script       the scripting API
    recorder, export
    testing      test doubles for users' tests
    tools        one module per command
    cli, __main__, tracewatch (the package's public surface)

``KNOWN_UPWARD`` and ``KNOWN_CYCLES`` list what the architecture work has not removed yet.
An entry that no longer occurs fails the test too, so the lists shrink as the code improves.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "tracewatch"

RANK = {
    "errors": 0, "compiled": 0, "libc": 0, "units": 0, "procfs": 0, "version": 0, "kernels": 0,
    "formats": 1,
    "sources": 2,
    "stream": 3,
    "script": 4,
    "recorder": 5, "export": 5,
    "testing": 6,
    "tools": 7,
    "cli": 8, "__main__": 8, "": 8,
}

#: (importing layer, imported layer) pairs still present; remove an entry when its imports go.
KNOWN_UPWARD: set[tuple[str, str]] = {
    ("sources", "stream"),   # EventChunk, LiveMerger
}

#: module cycles still present, each as a frozenset of module names
KNOWN_CYCLES: set[frozenset[str]] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(modules: dict[str, Path]) -> list[tuple[str, str]]:
    """(importer, imported) module pairs for every tracewatch import, at any depth."""
    edges = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    edges.append((name, sub if sub in modules else target))
            elif isinstance(node, ast.Import):
                edges += [(name, alias.name) for alias in node.names]
    return [(a, b) for a, b in edges if b.split(".")[0] == "tracewatch" and a != b]


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_module_has_a_layer():
    unknown = sorted({_layer(m) for m in _modules()} - RANK.keys())
    assert not unknown, f"add these to RANK (and to docs/architecture.md): {unknown}"


def test_no_module_imports_a_layer_above_its_own():
    upward = defaultdict(list)
    for a, b in _imports(_modules()):
        la, lb = _layer(a), _layer(b)
        if RANK.get(lb, 0) > RANK.get(la, 0):
            upward[(la, lb)].append(f"{a} -> {b}")
    new = {k: v for k, v in upward.items() if k not in KNOWN_UPWARD}
    assert not new, f"imports of a layer above: {new}"
    gone = KNOWN_UPWARD - upward.keys()
    assert not gone, f"no longer imported upward, remove from KNOWN_UPWARD: {gone}"


def _cycles(edges: list[tuple[str, str]], nodes: set[str]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    graph = defaultdict(set)
    for a, b in edges:
        if b in nodes:
            graph[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []
    counter = 0
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(frozenset(comp))
    return out


def test_no_import_cycles():
    modules = _modules()
    cycles = set(_cycles(_imports(modules), set(modules)))
    new = cycles - KNOWN_CYCLES
    assert not new, f"import cycles: {[sorted(c) for c in new]}"
    gone = KNOWN_CYCLES - cycles
    assert not gone, f"cycles that are gone, remove from KNOWN_CYCLES: {[sorted(c) for c in gone]}"


def test_the_cycle_finder_finds_a_cycle():
    edges = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]
    assert _cycles(edges, {"a", "b", "c", "d"}) == [frozenset({"a", "b", "c"})]
