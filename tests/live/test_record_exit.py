"""``tracewatch record`` keeps what it captured however it ends, and refuses bad output or filters before tracing.

Each recording runs as a child process (``python -m tracewatch record``) on
its own load: a child that stats a missing file in a loop, named with
``-p`` so that the file holds its syscalls only.  The checks are those a
user would make: ``trace-cmd report`` reads the file and shows as many
events as ``tracewatch report``; no tracefs instance is left (the autouse
fixture of conftest); nothing under the output's name when the file could
not be finished.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.live.conftest import spawn_python
from tracewatch.sources import tracefs
from tracewatch.tools import record

TRACE_CMD = "trace-cmd"
SRC = str(Path(record.__file__).resolve().parents[2])
#: a line of a report: "comm-pid [cpu] seconds: event..."
EVENT_LINE = re.compile(rb"^\s*.+-\d+\s+\[\d{3}\]\s+\d+\.\d+:", re.M)
#: only a limit for waits on conditions, never a measurement: a loaded machine may take long
PATIENCE_S = 120.0


def _load() -> subprocess.Popen:
    return spawn_python("""
        import os
        while True:
            try:
                os.stat("/nonexistent/tracewatch-record-exit-test")
            except OSError:
                pass
            os.getpid()  # a libc function for the probe tests
    """)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _start(out: Path, *extra: str, pid: int) -> subprocess.Popen:
    """A recording of ``pid``'s syscalls into ``out``, once it is tracing (its start line was printed)."""
    proc = subprocess.Popen([sys.executable, "-m", "tracewatch", "record", "-e", "raw_syscalls:*", "-p", str(pid),
                             "--buffer-size", "2048", "-o", str(out), *extra],
                            stderr=subprocess.PIPE, env=_env())
    first = proc.stderr.readline()
    assert first.startswith(b"Recording"), first + proc.stderr.read()
    return proc


def _spooled_bytes(proc: subprocess.Popen, directory: Path) -> int:
    """Bytes in the recording's unnamed per-CPU spool files (open in ``directory``, deleted)."""
    total = 0
    fd_dir = f"/proc/{proc.pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
            if target.startswith(str(directory)) and target.endswith("(deleted)"):
                total += os.stat(f"{fd_dir}/{fd}").st_size
        except OSError:
            continue
    return total


def _wait_for_pages(proc: subprocess.Popen, directory: Path) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while _spooled_bytes(proc, directory) == 0:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no page was written"
        time.sleep(0.1)


def _event_counts(path: Path) -> tuple[int, int]:
    """(trace-cmd report's events, tracewatch report's events); both must read the file."""
    theirs = subprocess.run([TRACE_CMD, "report", str(path)], capture_output=True)
    assert theirs.returncode == 0, theirs.stderr.decode(errors="replace")
    ours = subprocess.run([sys.executable, "-m", "tracewatch", "report", str(path)], capture_output=True, env=_env())
    assert ours.returncode == 0, ours.stderr.decode(errors="replace")
    return len(EVENT_LINE.findall(theirs.stdout)), len(EVENT_LINE.findall(ours.stdout))


@pytest.fixture
def load():
    proc = _load()
    yield proc
    proc.kill()
    proc.wait()


def _assert_kept(out: Path) -> None:
    theirs, ours = _event_counts(out)
    assert theirs > 0
    assert theirs == ours
    assert out.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no .partial left


def _tracing_stopped(pid: int) -> bool:
    """Whether the recording ``pid`` has turned its instance's tracing off (it handled its first signal)."""
    root = tracefs.TraceFS()
    names = [n for n in root.instance_names() if n.startswith(f"tracewatch-{pid}-")]
    try:
        return bool(names) and root.read(f"instances/{names[0]}/tracing_on").strip() == "0"
    except Exception:  # noqa: BLE001 - removed meanwhile: the recording is past its drain
        return True


@pytest.mark.parametrize("signals, statuses", [
    ((signal.SIGTERM,), {-signal.SIGTERM}),
    ((signal.SIGHUP,), {-signal.SIGHUP}),
    # the second Ctrl-C interrupts the drain (130) unless the drain was already over (0)
    ((signal.SIGINT, signal.SIGINT), {130, 0}),
    ((signal.SIGTERM, signal.SIGTERM), {-signal.SIGTERM}),
], ids=["SIGTERM", "SIGHUP", "SIGINT-twice", "SIGTERM-twice"])
def test_a_recording_ended_by_signals_is_a_whole_trace(tmp_path, load, signals, statuses):
    out = tmp_path / "x.dat"
    proc = _start(out, pid=load.pid)
    _wait_for_pages(proc, tmp_path)
    proc.send_signal(signals[0])
    if len(signals) > 1:
        # two signals sent back to back are one to the kernel: the second goes once the first was handled
        deadline = time.monotonic() + PATIENCE_S
        while proc.poll() is None and not _tracing_stopped(proc.pid):
            assert time.monotonic() < deadline, "the first signal was not handled"
            time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(signals[1])
    err = proc.stderr.read().decode(errors="replace")
    assert proc.wait() in statuses, err
    assert re.search(r"x\.dat: \d+ pages", err), err
    _assert_kept(out)


def test_sigterm_removes_the_probes_and_keeps_their_events(tmp_path, load):
    out = tmp_path / "x.dat"
    proc = _start(out, "-P", "libc:getpid", pid=load.pid)
    _wait_for_pages(proc, tmp_path)
    proc.send_signal(signal.SIGTERM)
    err = proc.stderr.read().decode(errors="replace")
    assert proc.wait() == -signal.SIGTERM, err
    groups = [u.group for u in tracefs.TraceFS().uprobes()]
    assert not [g for g in groups if g.startswith(f"tracewatch_{proc.pid}_")], groups
    _assert_kept(out)
    report = subprocess.run([TRACE_CMD, "report", str(out)], capture_output=True, text=True).stdout
    assert re.search(r": getpid:", report), report[:2000]


def test_a_full_disk_keeps_a_readable_file_and_says_what_was_kept(tmp_path, load, small_fs):
    out = small_fs / "x.dat"
    proc = subprocess.Popen([sys.executable, "-m", "tracewatch", "record", "-e", "raw_syscalls:*",
                             "-p", str(load.pid), "--no-kallsyms", "-o", str(out)],
                            stderr=subprocess.PIPE, env=_env())
    try:
        err = proc.communicate(timeout=PATIENCE_S)[1].decode(errors="replace")
    finally:
        proc.kill()
    assert proc.returncode == 2, err
    last = err.strip().splitlines()[-1]
    m = re.fullmatch(r"tracewatch: error: .*x\.dat: kept (\d+) pages \(([\d.]+) MB\) up to \d+\.\d{6}; disk full",
                     last)
    assert m, err
    assert int(m.group(1)) > 0
    theirs, ours = _event_counts(out)
    assert theirs > 0 and theirs == ours
    assert [p.name for p in small_fs.iterdir()] == ["x.dat"]


def test_metadata_that_does_not_fit_is_refused_before_tracing(tmp_path, small_fs):
    # kallsyms alone (~5 MB here) does not fit in 2 MB
    with open("/proc/kallsyms", "rb") as f:
        kallsyms_bytes = len(f.read())
    if kallsyms_bytes < 3 << 20:
        pytest.skip("this kernel's kallsyms fits in the small file system")
    out = small_fs / "x.dat"
    done = subprocess.run([sys.executable, "-m", "tracewatch", "record", "-e", "raw_syscalls:*", "-d", "30",
                           "-o", str(out)], capture_output=True, env=_env())
    err = done.stderr.decode(errors="replace")
    assert done.returncode == 2, err
    assert re.fullmatch(r"tracewatch: error: .*x\.dat: disk full: no room for the metadata .*--no-kallsyms.*\n",
                        err), err
    assert list(small_fs.iterdir()) == []


def test_sigkill_leaves_nothing_that_reads_as_a_trace(tmp_path, load):
    out = tmp_path / "x.dat"
    proc = _start(out, pid=load.pid)
    _wait_for_pages(proc, tmp_path)
    proc.kill()
    proc.wait()
    proc.stderr.close()
    tracefs.cleanup_stale()  # SIGKILL left the dead recording's instance: its owner is dead
    assert not out.exists()
    left = list(tmp_path.iterdir())
    assert left, "the partial file should be there to be refused"
    for path in left:
        assert path.name.endswith(".partial")
        done = subprocess.run([TRACE_CMD, "report", str(path)], capture_output=True)
        assert done.returncode != 0, f"trace-cmd reads {path.name}"
        ours = subprocess.run([sys.executable, "-m", "tracewatch", "report", str(path)], capture_output=True,
                              env=_env())
        assert ours.returncode == 2 and ours.stderr.count(b"\n") <= 2, ours.stderr


def test_a_second_ctrl_c_during_the_drain_still_finishes_the_file(tmp_path, capsys, load, monkeypatch):
    # the signal's effect, at a known point: KeyboardInterrupt out of the page batches, after some
    from tracewatch.sources.session import LiveSession

    original = LiveSession.page_batches

    def interrupted_after_some(self):  # noqa: ANN001
        batches = original(self)
        try:
            for n, batch in enumerate(batches):
                yield batch
                if n == 2:
                    raise KeyboardInterrupt
        finally:
            batches.close()

    monkeypatch.setattr(LiveSession, "page_batches", interrupted_after_some)
    out = tmp_path / "x.dat"
    status, err = _run(["-e", "raw_syscalls:*", "-p", str(load.pid), "-d", "60", "--buffer-size", "64",
                        "-o", str(out)], capsys)
    assert status == 130, err
    assert "interrupted" in err
    _assert_kept(out)


# -- refused before tracing (in this process: tracing must not even start) -----------------------

@pytest.fixture
def no_tracing(monkeypatch):
    """Make starting to trace fail the test: what is refused must be refused before."""
    from tracewatch.sources.session import LiveSession

    def started(self):  # noqa: ANN001
        raise AssertionError("tracing was started")
        yield  # pragma: no cover

    monkeypatch.setattr(LiveSession, "page_batches", started)


def _run(argv, capsys) -> tuple[int, str]:
    capsys.readouterr()
    status = record.main(argv)
    return status, capsys.readouterr().err


@pytest.mark.parametrize("where", ["directory", "missing parent", "read-only"])
def test_an_unwritable_output_fails_before_tracing(tmp_path, capsys, no_tracing, where, read_only_fs):
    out = {"directory": tmp_path, "missing parent": tmp_path / "no" / "x.dat",
           "read-only": read_only_fs / "x.dat"}[where]
    before = set(tracefs.TraceFS().instance_names())
    status, err = _run(["-e", "raw_syscalls:*", "-d", "1", "-o", str(out)], capsys)
    assert status == 2
    assert re.fullmatch(r"tracewatch: error: [^\n]*(directory|Read-only file system)[^\n]*\n", err), err
    assert set(tracefs.TraceFS().instance_names()) <= before


def test_an_output_without_permission_fails_before_tracing(capsys, no_tracing, request):
    # root passes permission checks, but not an immutable directory's (chattr +i)
    import tempfile

    locked = Path(tempfile.mkdtemp(prefix="tracewatch-test-locked-", dir="/tmp"))
    request.addfinalizer(lambda: os.rmdir(locked))
    done = subprocess.run(["chattr", "+i", str(locked)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make a directory immutable here: {done.stderr.strip()}")
    request.addfinalizer(lambda: subprocess.run(["chattr", "-i", str(locked)], check=True))
    status, err = _run(["-e", "raw_syscalls:*", "-d", "1", "-o", str(locked / "x.dat")], capsys)
    assert status == 2
    assert re.fullmatch(r"tracewatch: error: [^\n]*x\.dat: Operation not permitted\n", err), err


@pytest.mark.parametrize("event, expr, reason", [
    ("raw_syscalls:sys_enter", "common_ts < 5", "Field not found"),
    ("raw_syscalls:sys_enter", "id == 0 && common_ts > 5", "Field not found"),
    ("sched:sched_switch", 'prev_comm == "a\\nb"', "exactly"),
    ("sched:sched_switch", 'prev_comm == "a\nb"', "exactly"),
], ids=["common_ts", "common_ts-in-and", "escaped-newline", "newline"])
def test_a_filter_the_kernel_cannot_apply_is_refused_before_tracing(tmp_path, capsys, no_tracing, event, expr,
                                                                     reason):
    out = tmp_path / "x.dat"
    status, err = _run(["-e", event, "-d", "1", "--filter", expr, "-o", str(out)], capsys)
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith("tracewatch: error: ") and reason in err, err
    assert list(tmp_path.iterdir()) == []


def test_the_output_is_private_unless_asked(tmp_path, capsys, load):
    out = tmp_path / "x.dat"
    shared = tmp_path / "shared.dat"
    status, err = _run(["-e", "raw_syscalls:*", "-p", str(load.pid), "-d", "0.5", "-o", str(out)], capsys)
    assert status == 0, err
    status, err = _run(["-e", "raw_syscalls:*", "-p", str(load.pid), "-d", "0.5", "--mode", "0644",
                        "-o", str(shared)], capsys)
    assert status == 0, err
    assert out.stat().st_mode & 0o777 == 0o600
    assert shared.stat().st_mode & 0o777 == 0o644


# -- file systems for the tests ------------------------------------------------------------------

def _mount_tmpfs(path: Path, options: str) -> None:
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tracewatch-test", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")


@pytest.fixture
def small_fs(tmp_path):
    path = tmp_path / "small"
    _mount_tmpfs(path, "size=2m,mode=0755")
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def read_only_fs(tmp_path):
    path = tmp_path / "ro"
    _mount_tmpfs(path, "ro,size=1m")
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.parametrize("tool", ["record", "flight"])
def test_a_command_that_fails_gives_its_status_after_the_trace(tmp_path, tool):
    """As `run -- cmd`, `perf stat -- cmd` and `time`: the command ran and failed, so the exit
    status is its own (after the trace was written), and a line says so."""
    if tool == "record":
        args = ["record", "-e", "raw_syscalls:sys_enter", "-o", str(tmp_path / "x.dat")]
    else:
        args = ["flight", "--trigger", "raw_syscalls:sys_exit", "--keep", "1M", "--out", str(tmp_path / "d")]
    cmd = [sys.executable, "-m", "tracewatch", *args, "--buffer-size", "1024", "--", "sh", "-c",
           "ls / >/dev/null; exit 3"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 3, r.stderr
    assert "the command exited with status 3" in r.stderr
    if tool == "record":
        theirs, ours = _event_counts(tmp_path / "x.dat")
        assert theirs == ours > 0
