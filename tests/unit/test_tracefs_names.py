"""Owner names of instances and uprobe groups (pid + start time), uprobe definition blocks,
funclatency's summary line, and the function tools' buffer size: no kernel needed."""

from __future__ import annotations

import os
import subprocess
import sys

from tracewatch.sources.tracefs import _INSTANCE_RE, _UPROBE_GROUP_RE, _blocks, _owner_running, process_start_time
from tracewatch.tools.funclatency import summary_line


def test_start_time_is_field_22_of_proc_stat():
    with open("/proc/self/stat") as f:
        stat = f.read()
    # fields after the command name, which is in parentheses: field 3 is the first of them
    expected = int(stat[stat.rindex(")") + 2:].split()[19])
    assert process_start_time(os.getpid()) == expected


def test_start_time_of_a_command_name_with_spaces_and_parens(tmp_path):
    odd = tmp_path / "a ) b"  # the kernel puts the name in parentheses without escaping
    odd.symlink_to(sys.executable)
    child = subprocess.Popen([str(odd), "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        with open(f"/proc/{child.pid}/stat") as f:
            assert "(a ) b)" in f.read()
        assert process_start_time(child.pid) is not None
        assert process_start_time(child.pid) >= process_start_time(os.getpid())
    finally:
        child.stdin.close()
        child.wait()
    assert process_start_time(child.pid) is None  # gone


def test_names_of_both_schemes_parse():
    m = _INSTANCE_RE.match("tracewatch-123-98765-0")
    assert m and (m.group(1), m.group(2)) == ("123", "98765")
    m = _INSTANCE_RE.match("tracewatch-123-4")  # older: no start time
    assert m and (m.group(1), m.group(2)) == ("123", None)
    assert not _INSTANCE_RE.match("tracewatch-abc-1") and not _INSTANCE_RE.match("mine")
    m = _UPROBE_GROUP_RE.match("tracewatch_123_98765_0")
    assert m and (m.group(1), m.group(2)) == ("123", "98765")
    for old in ("tracewatch_123_4", "tracewatch_123"):
        m = _UPROBE_GROUP_RE.match(old)
        assert m and (m.group(1), m.group(2)) == ("123", None)


def test_owner_running_compares_pid_and_start_time():
    me, start = os.getpid(), process_start_time(os.getpid())
    assert _owner_running(me, start)
    assert not _owner_running(me, start + 1)  # my pid, once another process's: reused
    assert _owner_running(me, None)  # the older scheme: the pid alone
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not _owner_running(child.pid, 12345)
    if process_start_time(child.pid) is None:  # (unless the pid was taken again at once)
        assert not _owner_running(child.pid, None)


def test_definition_blocks():
    lines = [(f"e{i}", "x" * 99) for i in range(25)]  # 100 bytes with the newline
    blocks = list(_blocks(lines, 1000))
    assert [len(b) for b in blocks] == [10, 10, 5]
    assert [item for b in blocks for item in b] == lines
    assert [len(b) for b in _blocks([("big", "y" * 5000), ("small", "z")], 1000)] == [1, 1]
    assert list(_blocks([], 1000)) == []


def test_funclatency_summary_rounds_average_and_total_alike():
    # one call of 16.6 us printed "avg = 17 usecs, total: 16 usecs" before
    assert summary_line(16_600, 1, "usecs") == "\navg = 16 usecs, total: 16 usecs, count: 1\n"
    assert summary_line(80_412_000, 4, "usecs") == "\navg = 20103 usecs, total: 80412 usecs, count: 4\n"
    assert summary_line(2_999_999, 2, "msecs") == "\navg = 1 msecs, total: 2 msecs, count: 2\n"
    assert summary_line(7, 2, "nsecs") == "\navg = 3 nsecs, total: 7 nsecs, count: 2\n"


def test_function_tools_leave_the_buffer_size_to_the_session(monkeypatch):
    """funccount, funclatency and calls get the live default `run` gets, not the kernel's ~1.4 MB."""
    import argparse

    from tracewatch.sources import session as session_module
    from tracewatch.sources import uprobes
    from tracewatch.tools import _functrace

    seen = {}

    class FakeSession:
        formats: dict = {}

        def __init__(self, events, **kw):
            seen.update(kw)

        def close(self):
            pass

    class FakeProbes:
        functions: list = []

        def install(self, instance):
            return []

        def describe(self):
            return ""

    monkeypatch.setattr(session_module, "LiveSession", FakeSession)
    monkeypatch.setattr(uprobes.ProbeSet, "from_specs", classmethod(lambda cls, *a, **kw: FakeProbes()))
    monkeypatch.setattr(_functrace.ProbeSet, "from_specs", classmethod(lambda cls, *a, **kw: FakeProbes()))
    args = argparse.Namespace(input=None, command=None, pid=None, duration=1.0, max_probes=10)
    _functrace.open_functrace(args, ["libc:malloc"], both=False)
    assert "setup" in seen  # the fake was used
    assert seen.get("buffer_kb") is None
