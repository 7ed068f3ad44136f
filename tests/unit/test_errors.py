"""The exception tree: drawn once in errors.py's docstring, defined there and nowhere else."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import tracewatch.errors as errors

PACKAGE = Path(errors.__file__).parent


def _drawn_tree() -> dict[str, str | None]:
    """class -> parent, read from the docstring's drawing (indentation gives the level)."""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in errors.__doc__.splitlines():
        m = re.match(r"^(\s*)(?:[|+ -]*--\s+)?([A-Z]\w*Error)\b", line)
        if not m:
            continue
        column = line.index(m.group(2))
        while stack and stack[-1][0] >= column:
            stack.pop()
        parents[m.group(2)] = stack[-1][1] if stack else None
        stack.append((column, m.group(2)))
    return parents


def test_the_drawn_tree_is_the_class_tree():
    drawn = _drawn_tree()
    classes = {name: getattr(errors, name) for name in errors.__all__}
    actual = {name: (None if cls is errors.TracewatchError else cls.__bases__[0].__name__)
              for name, cls in classes.items()}
    assert drawn == actual


def test_every_error_class_is_exported_and_under_the_root():
    found = {name for name, obj in vars(errors).items()
             if isinstance(obj, type) and issubclass(obj, Exception) and obj.__module__ == errors.__name__}
    assert found == set(errors.__all__)
    assert all(issubclass(getattr(errors, n), errors.TracewatchError) for n in errors.__all__)


def test_no_module_defines_an_error_of_its_own():
    """A subclass of one of the tree's classes anywhere else would be a branch the drawing misses."""
    names = set(errors.__all__)
    elsewhere = []
    for path in PACKAGE.rglob("*.py"):
        if path == Path(errors.__file__):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                if bases & names:
                    elsewhere.append(f"{path.relative_to(PACKAGE)}: {node.name}")
    assert not elsewhere, f"define these in errors.py (and draw them in its docstring): {elsewhere}"
