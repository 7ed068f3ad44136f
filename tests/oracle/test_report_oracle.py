"""Whole reports against trace-cmd: ours must equal ``trace-cmd report [-R]`` byte for byte.

The stored texts in /work/shared/fixtures are trace-cmd 3.1.6's stdout for each
file (e_mixed.v7z's equal e_mixed.v6's, checked with cmp when captured).  The
live test runs the installed trace-cmd on the same files when it is present.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tracewatch.formats.report_text import report_lines
from tracewatch.formats.tracedat import TraceDatReader

pytestmark = pytest.mark.oracle


# (trace file, the trace-cmd texts it must reproduce)
CASES = [
    ("a_syscalls.v6.dat", "a_syscalls.v6.dat"),
    ("b_sched.v6.dat", "b_sched.v6.dat"),
    ("c_markers.v6.dat", "c_markers.v6.dat"),
    ("e_mixed.v6.dat", "e_mixed.v6.dat"),
    ("e_mixed.v7z.dat", "e_mixed.v6.dat"),
    ("raw-pages/pages.v7.dat", "raw-pages/pages.v7.dat"),
]


def our_report(path: Path, *, raw: bool) -> bytes:
    reader = TraceDatReader(path)
    text = "".join(line + "\n" for line in report_lines(reader, raw=raw))
    return text.encode("utf-8", "surrogateescape")


def first_difference(ours: bytes, theirs: bytes) -> str:
    """The first line that differs, both versions, for the assertion message."""
    a, b = ours.split(b"\n"), theirs.split(b"\n")
    for number, (x, y) in enumerate(zip(a, b), 1):
        if x != y:
            return f"line {number} differs:\n ours:     {x[:300]!r}\n trace-cmd: {y[:300]!r}"
    return f"line counts differ: ours {len(a)}, trace-cmd {len(b)}"


def fixture(name: str) -> Path:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"fixture {path} is not on this machine")
    return path


@pytest.mark.parametrize("raw", [False, True], ids=["report", "report-R"])
@pytest.mark.parametrize("trace,texts", CASES, ids=[c[0] for c in CASES])
def test_matches_stored_trace_cmd_output(trace: str, texts: str, raw: bool):
    expected = fixture(texts + (".raw.txt" if raw else ".report.txt")).read_bytes()
    ours = our_report(fixture(trace), raw=raw)
    assert ours == expected, first_difference(ours, expected)


@pytest.mark.parametrize("raw", [False, True], ids=["report", "report-R"])
@pytest.mark.parametrize("trace", ["b_sched.v6.dat", "e_mixed.v7z.dat"])
def test_matches_installed_trace_cmd(trace: str, raw: bool):
    trace_cmd = shutil.which("trace-cmd")
    if trace_cmd is None:
        pytest.skip("trace-cmd is not installed: only the stored outputs are compared")
    path = fixture(trace)
    run = subprocess.run([trace_cmd, "report", *(["-R"] if raw else []), str(path)],
                         capture_output=True, check=False, timeout=120)
    if run.returncode != 0:
        pytest.skip(f"trace-cmd report failed here ({run.returncode}): {run.stderr[:200]!r}")
    ours = our_report(path, raw=raw)
    assert ours == run.stdout, first_difference(ours, run.stdout)
