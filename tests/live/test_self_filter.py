"""tracewatch leaves its own threads out of the trace (set_event_notrace_pid), as trace-cmd record does.

Syscalls traced system-wide: no event comes from a thread of the tracing
process (this pytest process, or a ``tracewatch record`` child), while a
workload's events, a child started mid-run and a gated command's all come
through; ``exclude_self=False`` / ``--no-self-filter`` puts tracewatch back in.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
import time

import pytest

from tracewatch import open_trace
from tracewatch.sources.session import LiveSession
from tracewatch.sources.tracefs import Instance, TraceFS, own_thread_ids

from .conftest import LIVE_DIR, spawn_python

pytestmark = pytest.mark.live

BUFFER_KB = 16384  # syscalls of the whole machine: the kernel's default buffer can overflow

# after "go": a pause (tracing has started by then), then N stats of a path nobody else uses
WORKLOAD = """
    import os, sys, time
    print("ready", flush=True)
    sys.stdin.readline()
    time.sleep(0.3)
    for _ in range({n}):
        try:
            os.stat("/nonexistent/tracewatch-self-filter-test")
        except OSError:
            pass
    print("done", flush=True)
"""


@pytest.fixture(autouse=True)
def _needs_notrace_pid():
    if not TraceFS().exists("set_event_notrace_pid"):
        pytest.skip("this kernel has no set_event_notrace_pid")


def _workload(n: int = 2000) -> subprocess.Popen:
    child = spawn_python(WORKLOAD.format(n=n))
    assert child.stdout.readline() == "ready\n"
    return child


def _finish(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.kill()
    child.wait()


def _count_pids(session: LiveSession, during=None) -> collections.Counter:
    """Events per common_pid over the whole session; ``during()`` runs once, at the first chunk."""
    counts: collections.Counter = collections.Counter()
    for chunk in session.chunks():
        if during is not None:
            during()
            during = None
        for batch, _pos in chunk.batches():
            counts.update(batch.common_pid.tolist())
    return counts


def _once_tracing(session: LiveSession, work) -> threading.Thread:
    """Run ``work()`` in a thread as soon as the session's tracing is on, then stop the session.

    Driven by the instance's ``tracing_on``, not by the reader's first chunk
    or a duration: on a loaded machine (or with numba's cache cold) the first
    chunk can come late, and whatever ran before tracing started, or after a
    duration ran out, would be missing for reasons that have nothing to do
    with the self-filter.
    """
    def run() -> None:
        try:
            deadline = time.monotonic() + 30
            while not session.instance.tracing_on:
                assert time.monotonic() < deadline, "tracing never started"
                time.sleep(0.01)
            work()
        finally:
            session.stop()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("exclude_self", [True, False], ids=["excluded", "opt-out"])
def test_system_wide_syscalls_leave_our_threads_out(exclude_self, global_state):
    ours = own_thread_ids()
    workload = _workload()
    started: dict[str, int] = {}

    def late_thread() -> None:
        # started after tracing began: the session's scanning thread excludes it within its
        # interval; wait for that, as the session's list says, rather than for a fixed time
        tid = started["thread"] = threading.get_native_id()
        deadline = time.monotonic() + 30
        while tid not in s.instance._not_traced and exclude_self and time.monotonic() < deadline:
            time.sleep(0.1)
        for _ in range(2000):
            os.stat(LIVE_DIR)

    def while_tracing() -> None:
        workload.stdin.write("go\n")
        workload.stdin.flush()
        # a child process started by an excluded thread is not excluded (event-fork is off system-wide)
        child = subprocess.Popen([sys.executable, "-S", "-c", "pass"])
        started["child"] = child.pid
        started["child_status"] = child.wait()
        late = threading.Thread(target=late_thread, daemon=True)
        late.start()
        late.join()
        started["ours_during"] = own_thread_ids()  # the session's scanning thread among them
        started["workload_said"] = workload.stdout.readline()

    try:
        # the duration is only a backstop: the session stops when the work is done
        with LiveSession(["raw_syscalls:*"], duration=60.0, buffer_kb=BUFFER_KB, exclude_self=exclude_self) as s:
            worker = _once_tracing(s, while_tracing)
            counts = _count_pids(s)
            excluded = s.instance.excluded_pids
        worker.join(10)
    finally:
        _finish(workload)
    assert started.get("workload_said") == "done\n" and "thread" in started, "the work did not finish"
    assert counts[workload.pid] >= 2 * 2000, "the workload's syscalls are missing"
    assert started["child_status"] == 0 and counts[started["child"]] > 0, "a child started mid-run was not traced"
    assert not os.path.exists(s.instance.path)  # the list went with the instance
    if exclude_self:
        assert set(ours) | {started["thread"]} <= set(excluded)
        assert started["child"] not in excluded and workload.pid not in excluded
        assert {t: counts[t] for t in ours if counts[t]} == {}, "tracewatch's own threads are in the trace"
        assert {t: counts[t] for t in started["ours_during"] if counts[t] and t != started["thread"]} == {}
        # its syscalls before the scan found it (a sleep each 0.1 s) may be in; its 2000 stats are not
        assert counts[started["thread"]] < 1000
    else:
        assert excluded == []
        assert counts[os.getpid()] > 0, "the reader's own syscalls should be traced with the opt-out"
        assert counts[started["thread"]] >= 2 * 2000


def _steady_load() -> subprocess.Popen:
    """A child that makes syscalls all through a session (killed after): chunks come however quiet the machine.

    With our own threads excluded, a system-wide session on an idle machine
    (CI's) can see no event at all, and a test waiting for its first chunk
    would wait for the session's end.
    """
    return spawn_python("""
        import os, time
        end = time.monotonic() + 120
        while time.monotonic() < end:
            try:
                os.stat("/nonexistent/tracewatch-self-filter-test")
            except OSError:
                pass
            time.sleep(0.0005)
    """)


def test_a_thread_started_while_the_consumer_is_busy_is_excluded_all_the_same():
    # the scans run in a thread of the session's own: a consumer stuck in a handler does not hold them up
    excluded_while_busy = threading.Event()

    def late_thread() -> None:
        tid = threading.get_native_id()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and tid not in s.instance._not_traced:
            time.sleep(0.05)
        if tid in s.instance.excluded_pids:
            excluded_while_busy.set()

    load = _steady_load()
    try:
        # the duration is only a backstop: the consumer stops the session after its busy first chunk
        with LiveSession(["raw_syscalls:*"], duration=60.0, buffer_kb=BUFFER_KB) as s:
            chunks = s.chunks()
            next(chunks)  # the first chunk: the reading loop is still running, and waits for this consumer
            thread = threading.Thread(target=late_thread, daemon=True)
            thread.start()
            thread.join()
            s.stop()
            for _chunk in chunks:  # what was left
                pass
    finally:
        _finish(load)
    assert excluded_while_busy.is_set(), "a thread started while the consumer was busy was not excluded"


def test_no_scanning_thread_outlives_its_session():
    def scanners() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "tracewatch-self-scan" and t.is_alive()]

    load = _steady_load()
    try:
        # a long interval: the thread sleeps through the close unless the session stops it
        with LiveSession(["raw_syscalls:*"], duration=60.0, self_scan_interval=60.0) as s:
            chunks = s.chunks()
            next(chunks)  # a consumer that leaves early and keeps its generator
            assert len(scanners()) == 1
        assert scanners() == []
        chunks.close()
    finally:
        _finish(load)


def test_gated_command_and_its_children_are_still_traced():
    command = ["sh", "-c", "cat /proc/version >/dev/null; cat /proc/version >/dev/null; exit 3"]
    seen: dict[str, object] = {}

    def during() -> None:
        seen["excluded"] = s.instance.excluded_pids
        seen["gate"] = s._proc.pid

    with LiveSession(["raw_syscalls:*"], command=command, buffer_kb=BUFFER_KB) as s:
        counts = _count_pids(s, during=during)
    assert s.command_status == 3
    ours = set(own_thread_ids())
    assert ours <= set(seen["excluded"])
    assert seen["gate"] not in seen["excluded"]  # the gate, which became sh, was never excluded
    assert counts[seen["gate"]] > 0, "the command's own syscalls are missing"
    assert len(set(counts) - {seen["gate"]}) >= 1, "the command's children (cat) are missing"
    assert not ours & set(counts)


def test_followed_pids_still_traced_and_one_of_ours_named_is_traced_as_asked():
    workload = _workload()
    said: list[str] = []

    def while_tracing() -> None:
        workload.stdin.write("go\n")
        workload.stdin.flush()
        said.append(workload.stdout.readline())

    try:
        with LiveSession(["raw_syscalls:*"], pids=[workload.pid], duration=60.0, buffer_kb=BUFFER_KB) as s:
            worker = _once_tracing(s, while_tracing)
            counts = _count_pids(s)
            assert set(own_thread_ids()) <= set(s.instance.excluded_pids)
        worker.join(10)
        assert said == ["done\n"]
    finally:
        _finish(workload)
    assert counts[workload.pid] >= 2 * 2000
    assert set(counts) == {workload.pid}

    with LiveSession(["raw_syscalls:*"], pids=[os.getpid()], follow_children=False, duration=0.4) as s:
        counts = _count_pids(s)
        assert os.getpid() not in s.instance.excluded_pids
    assert counts[os.getpid()] > 0


def test_followed_pids_and_a_command_are_both_traced():
    # -p PID -- COMMAND: the command joins the followed pids instead of replacing them
    workload = _steady_load()  # stats all through the run, whenever tracing starts
    command = ["sh", "-c", "sleep 1; cat /proc/version >/dev/null"]
    gate: dict[str, int] = {}

    def during() -> None:
        gate["pid"] = s._proc.pid

    try:
        with LiveSession(["raw_syscalls:*"], pids=[workload.pid], command=command, buffer_kb=BUFFER_KB) as s:
            counts = _count_pids(s, during=during)
    finally:
        _finish(workload)
    assert counts[gate["pid"]] > 0, "the command's syscalls are missing"
    assert counts[workload.pid] >= 200, "the -p pid's syscalls are missing"


def test_without_the_kernel_feature_a_system_wide_run_says_so_once(monkeypatch, capsys):
    monkeypatch.setattr(Instance, "can_exclude_pids", property(lambda self: False))
    with LiveSession(["raw_syscalls:*"], duration=0.3, self_scan_interval=0.01) as s:
        _count_pids(s)
    err = capsys.readouterr().err
    assert err.count("no set_event_notrace_pid") == 1, err
    workload = _workload(10)
    try:
        with LiveSession(["raw_syscalls:*"], pids=[workload.pid], duration=0.2) as s:
            _count_pids(s)
    finally:
        _finish(workload)
    assert capsys.readouterr().err == ""  # not system-wide: nothing of ours would be traced anyway


@pytest.mark.parametrize("opt_out", [False, True], ids=["default", "no-self-filter"])
def test_record_leaves_itself_out_unless_told(tmp_path, opt_out):
    out = tmp_path / "sys.dat"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(os.path.dirname(os.path.dirname(LIVE_DIR)), "src") + os.pathsep + \
        env.get("PYTHONPATH", "")
    argv = [sys.executable, "-m", "tracewatch", "record", "-e", "raw_syscalls:*", "-d", "0.5", "-o", str(out)]
    recorder = subprocess.Popen(argv + (["--no-self-filter"] if opt_out else []), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
    _stdout, stderr = recorder.communicate(timeout=60)
    assert recorder.returncode == 0, stderr
    pids: collections.Counter = collections.Counter()
    with open_trace(str(out)) as t:
        for batch in t.batches("raw_syscalls:*"):
            pids.update(batch.common_pid.tolist())
    # its main thread is the reader: every flush is a readv of each CPU's trace_pipe_raw
    assert (pids[recorder.pid] > 0) is opt_out, pids.most_common(5)
