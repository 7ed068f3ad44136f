"""tracefs control against the running kernel: instances, events, filters, cleanup."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from tracewatch.errors import CaptureError
from tracewatch.sources.tracefs import Instance, TraceFS, cleanup_stale

from .conftest import LIVE_DIR, elf_entry_offset, python_binary, spawn_python

SRC = os.path.join(os.path.dirname(os.path.dirname(LIVE_DIR)), "src")

pytestmark = pytest.mark.live


def test_instance_is_created_stopped_and_removed(global_state):
    tfs = TraceFS()
    inst = Instance(tfs)
    assert inst.name.startswith(f"tracewatch-{os.getpid()}-")
    assert os.path.isdir(inst.path)
    assert inst.name in tfs.instance_names()
    assert inst.tracing_on is False  # nothing is recorded before a reader is attached
    inst.close()
    assert not os.path.exists(inst.path)
    inst.close()  # idempotent
    assert inst.closed


def test_two_instances_have_distinct_names():
    with Instance() as a, Instance() as b:
        assert a.name != b.name
        assert a.uprobe_group != b.uprobe_group


def test_enable_globs_and_disable(global_state):
    with Instance() as inst:
        names = inst.enable(["raw_syscalls:*", "sched:sched_switch"])
        assert sorted(names) == ["raw_syscalls:sys_enter", "raw_syscalls:sys_exit", "sched:sched_switch"]
        assert set(inst.enabled_events) == set(names)
        inst.disable("raw_syscalls:sys_exit")
        assert set(inst.enabled_events) == {"raw_syscalls:sys_enter", "sched:sched_switch"}
        # a bare word is a system when one has that name, else an event name in any system
        assert set(inst.enable("irq")) == set(inst.list_events("irq:*"))
        assert inst.enable("sched_wakeup") == ["sched:sched_wakeup"]
        path = inst.path
    # closing disabled everything it had enabled, then removed the instance
    assert not os.path.exists(path)


def test_unknown_event_suggests_close_names():
    with Instance() as inst:
        with pytest.raises(CaptureError) as err:
            inst.enable(["sched:sched_switch", "sched:sched_swich"])
        msg = str(err.value)
        assert "unknown event 'sched:sched_swich'" in msg
        assert "did you mean" in msg and "sched:sched_switch" in msg
        assert "\n" not in msg
        # nothing was enabled: expansion fails before any write
        assert inst.enabled_events == []
        with pytest.raises(CaptureError, match="raw_syscalls:sys_enter"):
            inst.enable("raw_syscall:sys_enter")
        with pytest.raises(CaptureError, match="unknown event"):
            inst.enable("zzzz_no_such_thing")


def test_kernel_rejected_filter_returns_false():
    with Instance() as inst:
        inst.enable("sched:sched_switch")
        assert inst.set_filter("sched:sched_switch", "nosuchfield == 3") is False
        assert "Field not found" in inst.last_error
        assert "\n" not in inst.last_error
        assert inst.filter("sched:sched_switch") == "none"
        assert inst.set_filter("sched:sched_switch", "prev_pid == ") is False
        assert inst.set_filter("sched:sched_switch", "prev_pid == 1") is True
        assert inst.last_error is None
        assert inst.filter("sched:sched_switch") == "prev_pid == 1"
        with pytest.raises(CaptureError):
            inst.set_filter("sched:no_such_event", "x == 1")
        path = inst.path
    assert not os.path.exists(path)


def test_settings_formats_and_stats(global_state):
    with Instance() as inst:
        inst.buffer_size_kb = 256
        # the kernel rounds up to whole pages of event data (4080 bytes in a 4 KiB page)
        assert 256 <= inst.buffer_size_kb <= 264
        assert inst.header_page().page_size == inst.subbuf_size_kb * 1024
        assert "mono" in inst.available_clocks
        inst.trace_clock = "mono"
        assert inst.trace_clock == "mono"
        with pytest.raises(CaptureError, match="unknown trace clock"):
            inst.trace_clock = "sundial"
        inst.buffer_percent = 10
        assert inst.buffer_percent == 10
        assert len(inst.cpus) >= 1
        stats = inst.per_cpu_stats(inst.cpus[0])
        for key in ("entries", "overrun", "commit_overrun", "dropped_events", "read_events"):
            assert key in stats
        assert inst.lost_events() == 0
        fmt = inst.event_format("raw_syscalls", "sys_enter")
        assert fmt.full_name == "raw_syscalls:sys_enter"
        assert fmt.field("id").offset == 8
        inst.follow_pids([os.getpid()], children=True)
        assert inst.event_pids == [os.getpid()]
        assert inst.option("event-fork") is True
        inst.clear_pids()
        assert inst.event_pids == []


def test_subbuf_size():
    with Instance() as inst:
        why = inst.subbuf_size_unchangeable()
        if why:
            pytest.skip(f"this kernel does not let the sub-buffer size change: {why}")
        inst.subbuf_size_kb = 8
        assert inst.subbuf_size_kb == 8
        assert inst.header_page().page_size == 8192
        inst.subbuf_size_kb = 4
        assert inst.header_page().page_size == 4096


def test_subbuf_size_refused_is_one_line(tmp_path):
    with Instance() as inst:
        why = inst.subbuf_size_unchangeable()
    if why is None:
        pytest.skip("this kernel lets the sub-buffer size change: there is no refusal to report")
    if "no buffer_subbuf_size_kb" in why:
        pytest.skip("this kernel has no buffer_subbuf_size_kb (another message covers that)")
    script = tmp_path / "count.py"
    script.write_text("from tracewatch import on\n@on('sched:sched_switch')\ndef f(e):\n    pass\n")
    proc = _cli(["run", str(script), "--subbuf-size", "8", "-d", "0.1"])
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == ("tracewatch: error: this kernel does not allow changing the sub-buffer size "
                           "(buffer_subbuf_size_kb: Operation not permitted)\n")


def _cli(argv, **kw) -> subprocess.CompletedProcess:
    """``python -m tracewatch ARGV`` with this tree's tracewatch, output captured."""
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(kw.pop("env", {}))
    return subprocess.run([sys.executable, "-m", "tracewatch", *argv], capture_output=True, text=True,
                          env=env, timeout=120, **kw)


def test_non_root_is_told_it_needs_root():
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux) to run the CLI as nobody")
    if os.stat(TraceFS().path).st_mode & 0o001:
        pytest.skip("tracefs is open to every user here: there is no refusal to report")
    # HOME=/nonexistent as for a system user; numba's cache goes to a TMPDIR nobody can write
    # (pytest's tmp_path is in root's private directory)
    with tempfile.TemporaryDirectory(prefix="tw-nobody-") as tmp:
        os.chmod(tmp, 0o1777)
        env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
        env.update(PYTHONPATH=SRC, HOME="/nonexistent", TMPDIR=tmp)
        as_nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
        can = subprocess.run(as_nobody + [sys.executable, "-c", "import numba, tracewatch"],
                             env=env, cwd=tmp, capture_output=True, text=True)
        if can.returncode != 0:
            pytest.skip("user 65534 cannot run this Python or import tracewatch: "
                        + (can.stderr.strip().splitlines() or ["?"])[-1])
        runs = [(argv, subprocess.run(as_nobody + [sys.executable, "-m", "tracewatch", *argv],
                                      capture_output=True, text=True, timeout=120, cwd=tmp, env=env))
                for argv in (["list"], ["funccount", "libc:malloc", "-d", "0.1"])]
    for argv, proc in runs:
        assert proc.returncode == 2, (argv, proc.stderr)
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("tracewatch: error: "), (argv, proc.stderr)
        assert "needs root (or CAP_PERFMON and access to tracefs)" in proc.stderr, (argv, proc.stderr)


def test_uprobe_added_and_removed_on_close():
    binary = python_binary()
    with Instance() as inst:
        name = inst.add_uprobe("entry", f"{binary}:{elf_entry_offset(binary):#x}")
        assert name == f"{inst.uprobe_group}:entry"
        assert inst.enable(name) == [name]
        assert any(u.group == inst.uprobe_group for u in inst.tracefs.uprobes())
        with pytest.raises(CaptureError, match="rejected uprobe"):
            inst.add_uprobe("bad", "/no/such/file:0x10")
        group = inst.uprobe_group
    assert not any(u.group == group for u in inst.tracefs.uprobes())


# ---------------------------------------------------------------------- cleanup on every exit path

CHILD = """
    import os, signal, sys, time
    from tracewatch.sources.tracefs import Instance
    use_with = {use_with}
    inst = Instance()
    inst.enable("sched:sched_switch")
    inst.set_filter("sched:sched_switch", "prev_pid != 0")
    inst.add_uprobe("entry", "{location}")
    inst.enable(inst.uprobe_group + ":entry")
    inst.tracing_on = True
    print(inst.name, inst.uprobe_group, flush=True)
    if use_with:
        with inst:
            time.sleep(30)
    else:
        time.sleep(30)
"""


def _start_child(use_with: bool):
    binary = python_binary()
    code = CHILD.format(use_with=use_with, location=f"{binary}:{elf_entry_offset(binary):#x}")
    child = spawn_python(code)
    line = child.stdout.readline().split()
    assert len(line) == 2, child.stderr.read()
    name, group = line
    tfs = TraceFS()
    assert name in tfs.instance_names()
    assert any(u.group == group for u in tfs.uprobes())
    return child, name, group


@pytest.mark.parametrize("sig,use_with", [(signal.SIGINT, True), (signal.SIGINT, False),
                                          (signal.SIGTERM, False), (signal.SIGHUP, False)],
                         ids=["SIGINT-with", "SIGINT-atexit", "SIGTERM", "SIGHUP"])
def test_signal_cleans_up(sig, use_with):
    child, name, group = _start_child(use_with)
    child.send_signal(sig)
    rc = child.wait(timeout=10)
    stderr = child.stderr.read()
    # the child ended because of the signal: KeyboardInterrupt (exit 1) or death by it
    assert rc in (1, -sig), stderr
    assert "CaptureError" not in stderr, stderr
    tfs = TraceFS()
    assert name not in tfs.instance_names()
    assert not any(u.group == group for u in tfs.uprobes())


def test_sigkill_leftovers_are_removed_at_next_start():
    child, name, group = _start_child(False)
    child.kill()
    child.wait(timeout=10)
    tfs = TraceFS()
    assert name in tfs.instance_names()  # SIGKILL cannot be caught...
    removed = cleanup_stale(tfs)  # ...so the next start cleans up
    assert f"instance {name}" in removed
    assert f"uprobe {group}/entry" in removed
    assert name not in tfs.instance_names()
    assert not any(u.group == group for u in tfs.uprobes())


def test_new_instance_cleans_stale_ones_and_spares_live_ones():
    victim, victim_name, _ = _start_child(False)
    alive, alive_name, alive_group = _start_child(False)
    try:
        victim.kill()
        victim.wait(timeout=10)
        with Instance() as inst:  # creating an instance runs the stale cleanup
            names = inst.tracefs.instance_names()
            assert victim_name not in names
            assert alive_name in names  # its owner still runs
    finally:
        alive.send_signal(signal.SIGTERM)
        alive.wait(timeout=10)
    # the SIGTERM handler removed alive's instance
    assert alive_name not in TraceFS().instance_names()


# ---------------------------------------------------------------------- owners: pid and start time

def test_names_carry_the_owner_start_time():
    from tracewatch.sources.tracefs import process_start_time

    with Instance() as inst:
        start = process_start_time(os.getpid())
        assert inst.name.startswith(f"tracewatch-{os.getpid()}-{start}-")
        assert inst.uprobe_group.startswith(f"tracewatch_{os.getpid()}_{start}_")


def test_stale_names_of_a_reused_pid_are_removed():
    """An instance and a uprobe group named with a running pid but another start time belong to
    a process that is gone (its pid was reused): removed.  A name of the older scheme (no start
    time) with a running pid is kept."""
    from tracewatch.sources.tracefs import _append, process_start_time

    tfs = TraceFS()
    me, start = os.getpid(), process_start_time(os.getpid())
    reused = f"tracewatch-{me}-{start + 1}-900"
    old_scheme = f"tracewatch-{me}-901"
    group = f"tracewatch_{me}_{start + 1}_900"
    binary = python_binary()
    os.mkdir(tfs.file(f"instances/{reused}"))
    os.mkdir(tfs.file(f"instances/{old_scheme}"))
    try:
        _append(tfs.file("uprobe_events"), f"p:{group}/entry {binary}:{elf_entry_offset(binary):#x}\n")
        with Instance() as mine:  # a new instance cleans up, and its own name is safe
            names = tfs.instance_names()
            assert reused not in names
            assert old_scheme in names
            assert mine.name in names
        assert not any(u.group == group for u in tfs.uprobes())
        assert f"instance {old_scheme}" not in cleanup_stale(tfs)
    finally:
        for name in (reused, old_scheme):
            if os.path.isdir(tfs.file(f"instances/{name}")):
                os.rmdir(tfs.file(f"instances/{name}"))
        tfs.remove_uprobe_group(group)
