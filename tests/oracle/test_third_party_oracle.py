"""`tracewatch report` and `report --raw` against trace-cmd's own output on traces recorded by
other people on other machines (``fixtures/third-party/``: 32-bit ARM, arm64, v7 with 4 CPUs).

The oracle is the stored stdout of trace-cmd 3.1.6 / libtraceevent 1.7.1 (zstd-compressed),
never our own output.  The command itself runs (``python -m tracewatch``), so what a user
sees is what is compared.  Cases that still differ are marked ``xfail(strict=True)`` with
what differs: a fix makes them pass, and strictness then asks for the mark to go.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES

THIRD_PARTY = FIXTURES / "third-party"

_STILL_DIFFERENT: dict[tuple[str, str], str] = {}

CASES = [
    pytest.param(name, kind, marks=[pytest.mark.xfail(reason=_STILL_DIFFERENT[(name, kind)], strict=True)]
                 if (name, kind) in _STILL_DIFFERENT else [])
    for name in ("langraph_v7", "lisa_example_rtapp", "trappy_trace_20140331")
    for kind in ("report", "raw")
]


def _expected(name: str, kind: str) -> bytes:
    zstandard = pytest.importorskip("zstandard")
    path = THIRD_PARTY / f"{name}.dat.{kind}.txt.zst"
    if not path.exists():
        pytest.skip(f"{path} is missing (set TRACEWATCH_FIXTURES to the shared fixtures folder)")
    with open(path, "rb") as f:
        return zstandard.ZstdDecompressor().stream_reader(f).read()


def _first_difference(ours: bytes, theirs: bytes) -> str:
    a, b = ours.splitlines(), theirs.splitlines()
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"line {i + 1}:\n  ours:      {x[:300]!r}\n  trace-cmd: {y[:300]!r}"
    return f"ours has {len(a)} lines, trace-cmd {len(b)}"


_ARRAY_END = re.compile(rb"((?:, )?[0-9a-f]{2})+\]$")


def _past_the_page(path: Path) -> dict[int, int]:
    """Line number (1-based) -> bytes past its page's end of ``-R`` lines whose last field is a
    fixed array of numbers that runs past the end of the page holding the record.

    libtraceevent prints a fixed array's whole size from wherever the record lies;
    past the page that is trace-cmd's own heap (other records' timestamps, malloc
    headers), which no reader of the file can know: tracewatch prints zeros there.
    """
    from tracewatch.formats.tracedat import TraceDatReader

    reader = TraceDatReader(str(path))
    index = reader.index()
    page_size = reader.page_size
    lines: dict[int, int] = {}
    line = 1  # "cpus=N"
    for i in range(len(index.ts)):
        line += 1 + (index.missed_before[i] != 0)
        fmt = reader.formats.get(int(index.type_id[i]))
        fields = fmt.event_fields if fmt is not None else []
        last = fields[-1] if fields else None
        if last is None or not last.array_len or last.is_dynamic or any(w in last.type for w in ("char", "u8", "s8")):
            continue
        offset = int(index.offset[i])
        room = (offset // page_size + 1) * page_size - offset
        if last.offset + last.size > room:
            lines[line] = last.offset + last.size - room
    return lines


def _unknown_bytes_hidden(line: bytes, count: int) -> bytes:
    """``line`` with the last ``count`` bytes of its final ``ARRAY[..]`` written ``??``."""
    match = _ARRAY_END.search(line)
    assert match is not None, line
    items = line[match.start() : -1].split(b", ")
    assert len(items) >= count
    return line[: match.start()] + b", ".join(items[: len(items) - count] + [b"??"] * count) + b"]"


@pytest.mark.oracle
@pytest.mark.parametrize("name,kind", CASES)
def test_report_equals_trace_cmd(name: str, kind: str):
    expected = _expected(name, kind)
    argv = [sys.executable, "-m", "tracewatch", "report"] + (["--raw"] if kind == "raw" else [])
    run = subprocess.run(argv + [str(THIRD_PARTY / f"{name}.dat")], capture_output=True, timeout=600)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    if kind == "raw" and run.stdout != expected:
        # the bytes trace-cmd read past the page are not in the file: compare the rest
        ours, theirs = run.stdout.split(b"\n"), expected.split(b"\n")
        for number, count in _past_the_page(THIRD_PARTY / f"{name}.dat").items():
            assert ours[number - 1].endswith(b", 00" * count + b"]"), f"line {number}: zeros past the page"
            ours[number - 1] = _unknown_bytes_hidden(ours[number - 1], count)
            theirs[number - 1] = _unknown_bytes_hidden(theirs[number - 1], count)
        expected, run.stdout = b"\n".join(theirs), b"\n".join(ours)
    if run.stdout != expected:
        differing = sum(1 for x, y in zip(run.stdout.splitlines(), expected.splitlines()) if x != y)
        pytest.fail(f"{name} {kind}: {differing} lines differ; first {_first_difference(run.stdout, expected)}")
