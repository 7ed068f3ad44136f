"""Fuzz `tracewatch report` with truncated and corrupted fixtures.

Whatever the damage: exit status 0 or 2, at most an error line and a hint on
stderr, never a traceback (an internal error propagates out of main() and fails
the test), and never a hang (SIGALRM).
"""

from __future__ import annotations

import io
import signal
import sys
from contextlib import contextmanager, redirect_stderr

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import FIXTURES
from tracewatch.tools import report

SOURCES = ["b_sched.v6.dat", "c_markers.v6.dat", "e_mixed.v7z.dat"]
_DATA = {name: (FIXTURES / name).read_bytes() for name in SOURCES if (FIXTURES / name).exists()}
pytestmark = pytest.mark.skipif(not _DATA, reason=f"fixtures missing in {FIXTURES}")


class Hang(Exception):
    pass


@contextmanager
def deadline(seconds: int):
    def on_alarm(signum, frame):
        raise Hang(f"report did not finish within {seconds}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


class _Sink(io.RawIOBase):
    def writable(self):
        return True

    def write(self, b):
        return len(b)


def run_on(tmp_path, data: bytes, *extra: str) -> tuple[int, str]:
    p = tmp_path / "fuzz.dat"
    p.write_bytes(data)
    err = io.StringIO()
    out = io.TextIOWrapper(io.BufferedWriter(_Sink()), encoding="utf-8")
    saved = sys.stdout
    sys.stdout = out
    try:
        with redirect_stderr(err), deadline(20):
            rc = report.main([*extra, str(p)])
    finally:
        sys.stdout = saved
    return rc, err.getvalue()


def check(rc: int, err: str) -> None:
    assert rc in (0, 2), err
    assert "Traceback" not in err
    lines = [l for l in err.splitlines() if not l.startswith(("CPU", "  "))]
    errors = [l for l in lines if l.startswith("tracewatch: error:")]
    assert len(errors) <= 1, err
    if rc == 2:
        assert len(errors) == 1, err


corruption = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(_DATA) or ["x"]), edits=corruption, raw=st.booleans())
def test_corrupted_bytes(tmp_path, name, edits, raw):
    data = bytearray(_DATA[name])
    for where, value in edits:
        data[int(where * len(data))] = value
    check(*run_on(tmp_path, bytes(data), *(["--raw"] if raw else [])))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(_DATA) or ["x"]), keep=st.floats(0, 1), keep_going=st.booleans())
def test_truncated(tmp_path, name, keep, keep_going):
    data = _DATA[name]
    check(*run_on(tmp_path, data[: int(keep * len(data))], *(["--keep-going"] if keep_going else [])))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(_DATA) or ["x"]), start=st.floats(0, 1), size=st.integers(1, 4096))
def test_zeroed_block(tmp_path, name, start, size):
    data = bytearray(_DATA[name])
    s = int(start * len(data))
    data[s : s + size] = bytes(min(size, len(data) - s))
    check(*run_on(tmp_path, bytes(data), "--keep-going"))
