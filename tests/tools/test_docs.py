"""The docs stay true to the code: every tool has a page; every name docs/run.md imports from tracewatch exists.

Like drgn's docs test: a name documented as ``from tracewatch import X`` must
be in ``tracewatch.__all__`` (and importable); a command in ``cli.TOOLS``
must have ``docs/<command>.md`` or a page with a ``# tracewatch <command>``
heading.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import tracewatch
from tracewatch.cli import TOOLS

DOCS = Path(__file__).resolve().parents[2] / "docs"
IMPORT = re.compile(r"^\s*from tracewatch import ([\w ,()]+?)\s*(?:#.*)?$", re.M)


def documented_imports(text: str) -> list[str]:
    names: list[str] = []
    for m in IMPORT.finditer(text):
        names += [n.strip() for n in m.group(1).replace("(", "").replace(")", "").split(",") if n.strip()]
    return names


def test_run_md_imports_are_public():
    names = documented_imports((DOCS / "run.md").read_text())
    assert {"on", "on_batch", "probe", "on_probe", "Map", "hist"} <= set(names), "run.md lost its import lines"
    missing = [n for n in names if n not in tracewatch.__all__]
    assert not missing, f"docs/run.md documents {missing} as importable from tracewatch; not in tracewatch.__all__"
    for n in names:
        assert getattr(tracewatch, n) is not None


def test_other_pages_imports_are_public():
    for page in DOCS.glob("*.md"):
        missing = [n for n in documented_imports(page.read_text()) if n not in tracewatch.__all__]
        assert not missing, f"docs/{page.name} imports {missing} from tracewatch; not in tracewatch.__all__"


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_every_tool_has_a_page(tool):
    if (DOCS / f"{tool}.md").exists():
        return
    heading = re.compile(rf"^#+ tracewatch {re.escape(tool)}\b", re.M)
    pages = [p.name for p in DOCS.glob("*.md") if heading.search(p.read_text())]
    assert pages, f"tracewatch {tool} has no docs page: write docs/{tool}.md (bcc *_example.txt style)"


def test_the_checker_catches_a_missing_name():
    assert documented_imports("    from tracewatch import on, nosuch  # x\n") == ["on", "nosuch"]
    assert "nosuch" not in tracewatch.__all__
