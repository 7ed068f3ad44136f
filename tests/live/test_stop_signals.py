"""Live runs end on every signal with the kernel state removed, stop promptly, and exit truthfully.

Each test starts ``python -m tracewatch run SCRIPT`` as a child process,
tracing a load of its own (a child stat-ing in a loop, followed with ``-p``),
sends it signals with ``os.kill``, and checks afterwards that no instance
``tracewatch-<its pid>-*`` and no uprobe group ``tracewatch_<its pid>*`` is
left.  Times are never asserted, except as generous hang guards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tracewatch.sources.tracefs import TraceFS

from .conftest import LIVE_DIR, spawn_python

SRC = os.path.join(os.path.dirname(os.path.dirname(LIVE_DIR)), "src")

#: hang guard only (a shared, loaded machine): a run that stops promptly ends far sooner
HANG_GUARD = 300

SLOW = """
    import time
    from tracewatch import on, at_end
    handled = 0

    @on("raw_syscalls:sys_enter")
    def slow(ev):
        global handled
        handled += 1
        time.sleep(0.001)

    @at_end
    def end():
        print(f"at_end handled={handled}", flush=True)
"""

# four probes, as in the report: a second Ctrl-C left them enabled
FOUR_PROBES = ["-P", "libc:getpid", "-P", "libc:getppid", "-P", "r:libc:getpid", "-P", "libc:umask"]


def _load() -> subprocess.Popen:
    """Our own traced load: a child making syscalls in a loop until killed."""
    return spawn_python("""
        import os
        while True:
            try:
                os.stat("/nonexistent/tracewatch-stop-signal-test")
            except OSError:
                pass
    """)


class Run:
    """``tracewatch run`` in a child process; stderr is collected by a thread (lines as they come)."""

    def __init__(self, script: str, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen([sys.executable, "-m", "tracewatch", "run", script, *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.err_lines: list[str] = []
        self.out = ""
        self._tracing = threading.Event()
        self._readers = [threading.Thread(target=self._read_stderr, daemon=True),
                         threading.Thread(target=self._read_stdout, daemon=True)]
        for t in self._readers:
            t.start()

    def _read_stdout(self) -> None:
        self.out = self.proc.stdout.read()

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.err_lines.append(line)
            if line.startswith("Tracing "):
                self._tracing.set()
        self._tracing.set()  # ended: nobody waits any longer

    def wait_tracing(self) -> None:
        assert self._tracing.wait(HANG_GUARD), "no 'Tracing' line (hang guard)"
        assert self.proc.poll() is None, f"the run ended before it was signalled: {self.stderr}"

    def kill(self, *signals: int, gap: float = 0.0) -> None:
        for i, sig in enumerate(signals):
            if i and gap:
                time.sleep(gap)
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                return

    def finish(self) -> tuple[int, str, str]:
        try:
            rc = self.proc.wait(HANG_GUARD)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGTERM)  # its cleanup, then the test fails
            try:
                self.proc.wait(HANG_GUARD)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            raise AssertionError(f"the run did not end (hang guard): {self.stderr}") from None
        for t in self._readers:
            t.join(HANG_GUARD)
        return rc, self.out, self.stderr

    @property
    def stderr(self) -> str:
        return "".join(self.err_lines)


def kernel_state_of(pid: int) -> list[str]:
    """What process ``pid`` left in the kernel: its instances and uprobes."""
    tfs = TraceFS()
    left = [f"instance {n}" for n in tfs.instance_names() if n.startswith(f"tracewatch-{pid}-")]
    left += [f"uprobe {u.group}/{u.event}" for u in tfs.uprobes()
             if u.group == f"tracewatch_{pid}" or u.group.startswith(f"tracewatch_{pid}_")]
    return left


@pytest.fixture
def load():
    child = _load()
    try:
        yield child
    finally:
        child.kill()
        child.wait()


@pytest.fixture
def slow_script(tmp_path: Path) -> str:
    p = tmp_path / "slow.py"
    p.write_text(textwrap.dedent(SLOW))
    return str(p)


def test_a_second_sigint_50ms_after_the_first_exits_130_with_probes_and_instance_removed(load, tmp_path):
    # the end hook takes 10 s: even if the second SIGINT comes late (a loaded machine), the run
    # is still stopping (handling, or in the hook: an interrupted run still runs its end hooks)
    script = tmp_path / "slow_end.py"
    script.write_text(textwrap.dedent(SLOW) + "\n@at_end\ndef slow_end():\n    time.sleep(10)\n")
    run = Run(str(script), "-p", str(load.pid), *FOUR_PROBES)
    run.wait_tracing()
    assert kernel_state_of(run.proc.pid), "the run should have an instance and probes while it traces"
    run.kill(signal.SIGINT, signal.SIGINT, gap=0.05)
    rc, _out, err = run.finish()
    assert rc == 130, err
    assert "Traceback" not in err
    assert kernel_state_of(run.proc.pid) == []


@pytest.mark.parametrize("signals", [
    pytest.param((signal.SIGINT,) * 6, id="SIGINT-x6"),
    pytest.param((signal.SIGTERM,) * 4, id="SIGTERM-x4"),
    pytest.param((signal.SIGHUP, signal.SIGHUP), id="SIGHUP-x2"),
    pytest.param((signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGINT), id="mixed"),
])
@pytest.mark.parametrize("when", ["setting-up", "tracing"])
def test_signals_however_repeated_leave_no_kernel_state(load, slow_script, signals, when):
    run = Run(slow_script, "-p", str(load.pid), *FOUR_PROBES)
    if when == "tracing":
        run.wait_tracing()
    else:
        # somewhere in start-up: imports, script loading, instance and probe set-up
        deadline = time.monotonic() + HANG_GUARD
        while not kernel_state_of(run.proc.pid) and run.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
    run.kill(*signals, gap=0.01)
    rc, _out, err = run.finish()
    assert rc != 0, err  # a second signal abandons the run (or kills it before it set up handlers)
    assert "Traceback" not in err
    assert kernel_state_of(run.proc.pid) == []


@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 0)])
def test_one_signal_stops_promptly_runs_at_end_and_prints_the_summary(load, slow_script, sig, status):
    run = Run(slow_script, "-p", str(load.pid))
    run.wait_tracing()
    time.sleep(1)  # let events pile up faster than the slow handler takes them
    run.kill(sig)
    rc, out, err = run.finish()
    assert rc == status, err
    assert "at_end handled=" in out  # end hooks ran
    assert "events seen" in err  # the summary
    handled = int(out.split("at_end handled=")[1].split()[0])
    seen = int(err.split(" events seen")[0].split()[-1])
    dropped = int(err.split(" events dropped at stop")[0].split()[-1]) if "dropped at stop" in err else 0
    assert dropped > 0, err  # a 1 ms handler cannot keep up with a stat loop: the stop left events unhandled
    assert handled + dropped == seen, err
    assert kernel_state_of(run.proc.pid) == []


def test_duration_stops_a_slow_handler_and_reports_what_it_dropped(load, slow_script):
    run = Run(slow_script, "-p", str(load.pid), "-d", "2")
    run.wait_tracing()
    rc, out, err = run.finish()  # hang guard: before, a slow handler went on for every event read
    assert rc == 0, err
    assert "at_end handled=" in out
    assert "events dropped at stop" in err and "(2 s passed)" in err, err
    assert kernel_state_of(run.proc.pid) == []


def test_a_command_that_fails_gives_its_status_after_the_report(tmp_path):
    script = tmp_path / "count.py"
    script.write_text(textwrap.dedent("""
        from tracewatch import on, at_end
        n = 0
        @on("raw_syscalls:sys_enter")
        def count(ev):
            global n
            n += 1
        @at_end
        def end():
            print(f"at_end n={n}", flush=True)
    """))
    run = Run(str(script), "--", "sh", "-c", "ls / >/dev/null; exit 3")
    rc, out, err = run.finish()
    assert rc == 3, err
    assert "at_end n=" in out and int(out.split("n=")[1]) > 0
    assert "the command exited with status 3" in err

    run = Run(str(script), "--", "false")
    rc, out, err = run.finish()
    assert rc == 1, err

    run = Run(str(script), "--", "sh", "-c", "kill -TERM $$")
    rc, out, err = run.finish()
    assert rc == 128 + signal.SIGTERM, err
    assert "killed by SIGTERM" in err

    run = Run(str(script), "--", "true")
    rc, out, err = run.finish()
    assert rc == 0, err


@pytest.mark.parametrize("args,message", [
    (["--", "/nonexistent/tracewatch-test-cmd"], "cannot run '/nonexistent/tracewatch-test-cmd'"),
    (["--", "tracewatch-no-such-command-on-path"], "cannot run 'tracewatch-no-such-command-on-path'"),
    (["-p", "PID"], "no process PID"),
])
def test_a_command_or_pid_that_cannot_be_traced_is_exit_2_before_tracing(tmp_path, args, message):
    script = tmp_path / "s.py"
    script.write_text("from tracewatch import on\n@on('raw_syscalls:sys_enter')\ndef h(ev): pass\n")
    pid = 999999
    while os.path.exists(f"/proc/{pid}"):  # a pid nothing runs as
        pid += 1
    args = [a.replace("PID", str(pid)) for a in args]
    run = Run(str(script), *args)
    rc, out, err = run.finish()
    assert rc == 2, err
    assert err.splitlines() == [f"tracewatch: error: {message.replace('PID', str(pid))}"] or \
        (len(err.splitlines()) == 1 and message.replace("PID", str(pid)) in err), err
    assert "Tracing" not in err


def test_the_session_default_buffer_is_used_when_none_is_given(load):
    from tracewatch.sources.session import LiveSession

    def near(kb: int, wanted: int) -> bool:  # the kernel rounds up to whole pages
        return wanted <= kb <= wanted * 1.01

    with LiveSession(["raw_syscalls:sys_enter"], pids=[load.pid]) as s:
        assert near(s.instance.buffer_size_kb, LiveSession.DEFAULT_BUFFER_KB)
    with LiveSession(["raw_syscalls:sys_enter"], pids=[load.pid], buffer_kb=2048) as s:
        assert near(s.instance.buffer_size_kb, 2048)


def test_a_stop_from_another_thread_cuts_a_slow_handler_in_process(load):
    """LiveSession.stop(), as the duration's clock calls it: the handler is not called for
    the rest of what was read, and the counts add up."""
    from tracewatch.sources.session import LiveSession
    from tracewatch.stream.dispatch import Dispatcher

    handled = []
    stop_sent = threading.Event()

    class H:
        pattern, where, batch = "raw_syscalls:sys_enter", None, False

        @staticmethod
        def func(ev):
            handled.append(ev)
            if len(handled) == 10:
                threading.Thread(target=lambda: (session.stop("test"), stop_sent.set())).start()
            time.sleep(0.001)

    with LiveSession(["raw_syscalls:sys_enter"], pids=[load.pid], stop_grace=0) as session:
        d = Dispatcher([H])
        session.add_stop_listener(d.stop_handling)
        for chunk in session.chunks():
            d.feed(chunk)
    assert stop_sent.is_set()
    assert d.dropped_at_stop > 0
    assert len(handled) + d.dropped_at_stop == d.events_seen
    assert session.stop_reason == "test"


def test_a_command_whose_exec_fails_is_exit_2_not_a_trace_of_the_launcher(tmp_path):
    """It passes the look-up (an executable file) but the kernel cannot run it."""
    script = tmp_path / "s.py"
    script.write_text("from tracewatch import on\n@on('raw_syscalls:sys_enter')\ndef h(ev): pass\n")
    bogus = tmp_path / "not-a-program"
    bogus.write_bytes(b"\x00\x01\x02 no shebang, no ELF header\n")
    bogus.chmod(0o755)
    run = Run(str(script), "--", str(bogus))
    rc, _out, err = run.finish()
    assert rc == 2, err
    assert err.splitlines()[-1] == f"tracewatch: error: cannot run {str(bogus)!r}: Exec format error", err
    assert "Traceback" not in err and "events seen" not in err
    assert kernel_state_of(run.proc.pid) == []
