"""trace.dat files that oracle tests write themselves, for trace-cmd to read beside us.

A test builds pages of the records it wants (``PageBuilder``), writes them with e_mixed's
metadata (headers, kallsyms, printk formats) and the event formats it is about, and compares
``trace-cmd report`` with ours.  Not collected by pytest: a helper module."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tracewatch.formats.report_text import report_lines
from tracewatch.formats.tracedat import TraceDatReader
from tracewatch.formats.tracedat_writer import TraceMeta, write_tracedat
from tracewatch.testing.page_builder import PageBuilder

TRACE_CMD = shutil.which("trace-cmd")
BASE_TRACE = FIXTURES / "e_mixed.v6.dat"


def base_meta() -> TraceMeta:
    """e_mixed's metadata without its per-CPU stats; the test replaces the formats it needs."""
    if not BASE_TRACE.exists():
        pytest.skip(f"{BASE_TRACE} missing")
    return dataclasses.replace(TraceMeta.from_reader(TraceDatReader(str(BASE_TRACE))), cpustats={})


def write_trace(path: Path, pages: PageBuilder | dict[int, PageBuilder], *, meta: TraceMeta | None = None,
                version: int = 6, compression: str | None = None, **changes) -> Path:
    """``pages`` (one CPU's, or by CPU) into ``path`` with ``meta`` (default :func:`base_meta`)
    changed by ``changes`` (``event_formats={...}``, ``long_size=4``, ...)."""
    by_cpu = pages if isinstance(pages, dict) else {0: pages}
    meta = dataclasses.replace(meta or base_meta(), **changes)
    write_tracedat(path, meta, {cpu: [b.build()] for cpu, b in by_cpu.items()}, version=version,
                   compression=compression)
    return path


def our_text(path: Path, raw: bool = False) -> str:
    """Our report of ``path`` (the lines ``tracewatch report`` prints)."""
    return "".join(line + "\n" for line in report_lines(TraceDatReader(str(path)), raw=raw))


def trace_cmd_text(path: Path, raw: bool = False) -> str:
    """``trace-cmd report [-R] path``'s stdout."""
    done = subprocess.run([TRACE_CMD, "report", *(["-R"] if raw else []), str(path)], capture_output=True)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode("utf-8", "surrogateescape")
