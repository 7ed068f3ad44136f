"""The layers below the stream: kernels/ and formats/ import nothing of stream/ or export/,
export/ nothing of stream/; TraceContext renders lines with the renderer it is given."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, fixture_path
from tracewatch.formats.context import TraceContext
from tracewatch.formats.tracedat import TraceDatReader
from tracewatch.stream.batch import split_by_type

_IMPORTED = r"""
import importlib, json, pkgutil, sys
import tracewatch.kernels, tracewatch.formats
for pkg in (tracewatch.kernels, tracewatch.formats):
    for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(m.name)
below = sorted(m for m in sys.modules if m.startswith("tracewatch."))
import tracewatch.formats.report_text
print(json.dumps([below, sorted(m for m in sys.modules if m.startswith("tracewatch."))]))
"""


def test_kernels_and_formats_import_nothing_of_stream_or_export():
    r = subprocess.run([sys.executable, "-c", _IMPORTED], capture_output=True, text=True, cwd=REPO,
                       env={"PYTHONPATH": str(REPO / "src"), "NUMBA_DISABLE_JIT": "1", "PATH": "/usr/bin:/bin"},
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    below, with_export = json.loads(r.stdout.strip().splitlines()[-1])
    assert "tracewatch.kernels.merge" in below and "tracewatch.formats.tracedat" in below
    assert [m for m in below if m.startswith(("tracewatch.stream", "tracewatch.export"))] == []
    assert [m for m in with_export if m.startswith("tracewatch.stream")] == []


def _first_batch(ctx: TraceContext, reader: TraceDatReader):
    idx = reader.index()
    bufs = [reader.cpu_buffer(c)[0] for c in range(reader.cpus)]
    return next(iter(split_by_type(ctx, bufs, idx.cpu, idx.ts, idx.offset, idx.length, idx.type_id)))[0]


def test_a_context_renders_lines_with_the_renderer_it_was_given():
    reader = TraceDatReader(fixture_path("a_syscalls.v6.dat"))
    made = []

    class Upper:
        def __init__(self, symbols, formats):
            made.append((symbols, formats))

        def line(self, cpu, ts, payload, fmt):
            return f"{fmt.name.upper()} cpu={cpu} ts={ts} {len(payload)}B"

    batch = _first_batch(TraceContext(reader.formats, reader.symbols, line_renderer=Upper), reader)
    events = batch.events_()
    assert str(events[0]) == f"{batch.format_.name.upper()} cpu={events[0].common_cpu} ts={events[0].common_ts} " \
                             f"{len(events[0].payload_())}B"
    str(events[-1])
    assert made == [(reader.symbols, reader.formats)]  # made once, with the trace's symbols and formats


def test_without_a_renderer_events_print_as_report_does():
    reader = TraceDatReader(fixture_path("a_syscalls.v6.dat"))
    ctx = TraceContext(reader.formats, reader.symbols)
    batch = _first_batch(ctx, reader)
    first = batch.events_()[0]
    from tracewatch.formats.report_text import ReportFormatter

    want = ReportFormatter(reader.symbols, reader.formats).line(first.common_cpu, first.common_ts, first.payload_(),
                                                                 batch.format_)
    assert str(first) == want and f" {batch.format_.name}: " in want
    with pytest.raises(LookupError):
        ctx2 = TraceContext(reader.formats, reader.symbols)
        ctx2.report_line(0, 0, first.payload_(), batch.format_)  # no renderer, none offered
