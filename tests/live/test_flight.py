"""``tracewatch flight`` against the live kernel: triggers, dumps, signals, cooldown, rotation, disk full.

Each test runs the recorder as a separate process (signals are sent to it)
among background load (a ``dd`` loop), with a helper process that stats a
missing path in bursts when told to.  Dumps are checked with tracewatch's
reader and opened with ``trace-cmd report``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tracewatch import open_trace

ROOT = Path(__file__).resolve().parents[2]
TRACE_CMD = shutil.which("trace-cmd")
EXIT_EVENT = "syscalls:sys_exit_newfstatat"

HELPER = """
import os, sys, time
print("ready", flush=True)
for line in sys.stdin:
    n, gap = line.split()
    for _ in range(int(n)):
        try:
            os.stat("/nonexistent/tracewatch-flight-test")
        except OSError:
            pass
    time.sleep(float(gap))
    print("done", flush=True)
"""

BURST_SCRIPT = """
import sys
from tracewatch import on, dump
from tracewatch.recorder import Window

PID = int(sys.argv[1])
fails = Window("10ms")

@on("{event}", where=f"ret < 0 && common_pid == {{PID}}")
def failed(ev):
    # five failing stats of one pid within 10 ms: once per burst
    if fails.reached(ev.common_pid, ev.common_ts, 5):
        dump(reason=f"{{ev.common_pid}} five failing stats", event=ev)
"""

EACH_SCRIPT = """
import sys
from tracewatch import on, dump

PID = int(sys.argv[1])

@on("{event}", where=f"ret < 0 && common_pid == {{PID}}")
def failed(ev):
    dump(reason="{reason}", event=ev)
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture
def newfstatat():
    if not os.path.isdir("/sys/kernel/tracing/events/syscalls/sys_exit_newfstatat"):
        pytest.skip("this kernel has no syscalls:sys_exit_newfstatat event")
    return EXIT_EVENT


@pytest.fixture
def load():
    """Background load: dd copying /dev/zero to /dev/null (read/write syscalls, scheduling)."""
    dd = subprocess.Popen(["dd", "if=/dev/zero", "of=/dev/null", "bs=1M"], stderr=subprocess.DEVNULL)
    yield dd
    dd.kill()
    dd.wait()


@pytest.fixture
def helper():
    p = subprocess.Popen([sys.executable, "-c", HELPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"

    def burst(n: int = 5, gap: float = 0.0) -> None:
        p.stdin.write(f"{n} {gap}\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "done"

    burst.pid = p.pid  # type: ignore[attr-defined]
    yield burst
    p.stdin.close()
    p.wait(5)


class Flight:
    """A ``tracewatch flight`` process, its log and its status file."""

    def __init__(self, tmp: Path, args: list[str]) -> None:
        self.out = tmp / "dumps"
        self.status_path = tmp / "status.json"
        self.log_path = tmp / "flight.log"
        self._log = open(self.log_path, "w")
        cmd = [sys.executable, "-m", "tracewatch", "flight", "--out", str(self.out), "--status-file",
               str(self.status_path), "--status-interval", "0.3", "--min-free", "0", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self._log, env=_env())
        try:
            # (a generous wait: start-up takes many seconds on a loaded machine)
            self.wait_for(lambda s: s.get("state") == "running" and s.get("ring", {}).get("bytes", 0) > 0,
                          "the recorder to hold pages", timeout=90.0)
        except BaseException:
            self.proc.kill()  # the test fails here: it must not leave a recorder running
            self.proc.wait()
            self._log.close()
            raise

    def status(self) -> dict:
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, cond, what: str, timeout: float = 20.0) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"flight exited ({self.proc.returncode}) waiting for {what}:\n{self.log()}")
            s = self.status()
            if s and cond(s):
                return s
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; status {self.status()}\n{self.log()}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_log(self, text: str, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while text not in self.log():
            if self.proc.poll() is not None or time.monotonic() > end:
                raise AssertionError(f"no {text!r} in the log:\n{self.log()}")
            time.sleep(0.1)

    def exit_status(self, timeout: float = 120.0) -> tuple[int, str]:
        """Wait for the process to end by itself (after a signal); (status, log)."""
        try:
            rc = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._log.close()
        return rc, self.log()

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._log.close()
        log = self.log()
        assert rc == 0, log
        return log

    def dumps(self) -> list[tuple[Path, dict]]:
        out = []
        for side in sorted(self.out.glob("*.json")):
            if side.name == "status.json":
                continue
            out.append((side.with_suffix(".dat"), json.loads(side.read_text())))
        return out


def _script(tmp: Path, text: str, **fmt) -> Path:
    p = tmp / "trigger.py"
    p.write_text(textwrap.dedent(text.format(**fmt)))
    return p


def _trace_cmd_lines(path: Path) -> list[str]:
    r = subprocess.run([TRACE_CMD, "report", "-i", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [ln for ln in r.stdout.splitlines() if ln.strip() and not ln.startswith(("cpus=", "version"))]


def test_five_failing_stats_fire_once_per_burst(tmp_path, newfstatat, load, helper):
    keep = 2 << 20
    post_ns = 200_000_000
    script = _script(tmp_path, BURST_SCRIPT, event=newfstatat)
    fl = Flight(tmp_path, [str(script), "-a", str(helper.pid), "-e", "sched:sched_switch", "-e",
                           "syscalls:sys_enter_read", "-e", "syscalls:sys_exit_read", "-e", newfstatat,
                           "--keep", "2M", "--post", "200ms", "--cooldown", "0"])
    try:
        # more than --keep read before any trigger (the ring's headroom keeps them while the handlers lag)
        fl.wait_for(lambda s: s["ring"]["bytes"] >= keep * 1.1, "the ring to fill")
        for _ in range(3):
            helper(5, 0.3)  # a burst of five failing stats, then a quiet 300 ms
            helper(2, 0.3)  # two more failures: not five within 10 ms, no trigger
        fl.wait_for(lambda s: s["dumps"]["dumps"] >= 3, "three dumps")
        time.sleep(0.5)
    finally:
        log = fl.stop()
    dumps = fl.dumps()
    assert len(dumps) == 3, log  # exactly once per burst
    for dat, side in dumps:
        assert f"{helper.pid} five failing stats" == side["reason"]
        t = side["trigger"]["ts_ns"]
        assert "sys_exit_newfstatat" in side["trigger"]["event"]
        with open_trace(str(dat)) as d:
            evs = list(d.events())
        mine = [e for e in evs if e.name_ == "sys_exit_newfstatat" and e.common_pid == helper.pid
                and e.ret < 0 and t - 10_000_000 < e.common_ts <= t]
        assert len(mine) >= 5, [str(e) for e in mine]
        assert max(e.common_ts for e in evs) <= t + post_ns  # nothing after the post window
        assert any(e.common_ts > t for e in evs)  # the post window is there
        before = [e for e in evs if e.common_ts <= t]
        assert side["events"] == len(evs)
        # at least --keep bytes of pages before the trigger
        assert side["pages"] * side["settings"]["page_size"] >= keep, side
        assert len(before) > 1000
        if TRACE_CMD:
            lines = _trace_cmd_lines(dat)
            assert len(lines) >= len(evs)
            assert sum(1 for ln in lines if "sys_exit_newfstatat" in ln and str(helper.pid) in ln) >= 5
    assert "dump written:" in log and f"tracewatch[{fl.proc.pid}]:" in log


def test_sigusr1_and_sighup(tmp_path, newfstatat, load, helper):
    script = _script(tmp_path, EACH_SCRIPT, event=newfstatat, reason="first version")
    fl = Flight(tmp_path, [str(script), "-a", str(helper.pid), "-e", "sched:sched_switch", "-e", newfstatat,
                           "--keep", "1M", "--cooldown", "0"])
    try:
        t0 = time.monotonic()
        fl.signal(signal.SIGUSR1)  # dump now
        fl.wait_for(lambda s: s["dumps"]["dumps"] >= 1, "the SIGUSR1 dump")
        usr1_s = time.monotonic() - t0
        ring_before = fl.status()["ring"]["bytes"]
        _script(tmp_path, EACH_SCRIPT, event=newfstatat, reason="second version")
        fl.signal(signal.SIGHUP)  # reload the script, keep the ring
        fl.wait_for(lambda s: s["reloads"] >= 1, "the reload")
        assert fl.status()["ring"]["bytes"] >= ring_before * 0.5  # the ring was not emptied
        helper(1, 0.0)
        fl.wait_for(lambda s: s["dumps"]["dumps"] >= 2, "the dump of the reloaded script")
    finally:
        log = fl.stop()
    reasons = [side["reason"] for _, side in fl.dumps()]
    assert reasons[0] == "SIGUSR1" and reasons[1:] == ["second version"], (reasons, log)
    assert "reloaded" in log
    assert usr1_s < 5
    side = fl.dumps()[0][1]
    assert side["events"] > 0 and side["trigger_to_file_ms"] < 2000
    if TRACE_CMD:
        assert len(_trace_cmd_lines(fl.dumps()[0][0])) >= side["events"]


def test_cooldown_and_rotation(tmp_path, newfstatat, load, helper):
    script = _script(tmp_path, EACH_SCRIPT, event=newfstatat, reason="failing stat")
    fl = Flight(tmp_path, [str(script), "-a", str(helper.pid), "-e", newfstatat, "-e", "sched:sched_switch",
                           "--keep", "512K", "--cooldown", "400ms", "--max-dumps", "2"])
    try:
        for _ in range(4):
            helper(3, 0.5)  # the first of three counts, the next two are inside the cooldown
        fl.wait_for(lambda s: s["dumps"]["dumps"] >= 4, "four dumps")
        st = fl.wait_for(lambda s: s["dumps"]["suppressed_cooldown"] >= 8, "the cooldown counters")
    finally:
        log = fl.stop()
    assert st["dumps"]["triggers"] == 12 and st["dumps"]["suppressed_cooldown"] == 8, st
    dumps = fl.dumps()
    assert len(dumps) == 2  # rotated to --max-dumps
    assert len(list(fl.out.glob("*.dat"))) == 2
    assert dumps[-1][1]["triggers_suppressed_before"] == 2
    final = fl.status()
    assert final["state"] == "stopped" and final["dumps"]["rotated"] == 2
    assert log.count("dump written:") == 4


def test_disk_full_stops_dumping_with_one_log_line(tmp_path, newfstatat, helper):
    script = _script(tmp_path, EACH_SCRIPT, event=newfstatat, reason="failing stat")
    free = shutil.disk_usage(tmp_path).free
    fl = Flight(tmp_path, [str(script), "-a", str(helper.pid), "-e", newfstatat, "-e", "sched:sched_switch",
                           "--keep", "256K", "--min-free", str(free + (1 << 40))])
    try:
        helper(3, 0.2)
        fl.signal(signal.SIGUSR1)
        st = fl.wait_for(lambda s: s["dumps"]["skipped_disk_full"] >= 4, "the skipped triggers")
    finally:
        log = fl.stop()
    assert st["dumps"]["dumps"] == 0 and not list(fl.out.glob("*.dat"))
    assert log.count("dumping stopped") == 1, log
    assert "dump not written" in log  # the SIGUSR1 one


def test_the_default_cooldown_is_60s(tmp_path, newfstatat, helper):
    # every failing stat triggers; without --cooldown, the first dumps and the rest are counted
    fl = Flight(tmp_path, ["--trigger", f"{newfstatat}: ret < 0 && common_pid == {helper.pid}",
                           "-e", "sched:sched_switch", "--keep", "256K"])
    try:
        helper(5, 0.2)
        helper(5, 0.0)
        fl.wait_for(lambda s: s["dumps"]["triggers"] >= 10, "ten triggers")
        fl.wait_for(lambda s: s["dumps"]["dumps"] >= 1, "the dump")
    finally:
        log = fl.stop()
    st = fl.status()
    assert st["dumps"]["dumps"] == 1 and st["dumps"]["suppressed_cooldown"] == 9, st
    assert len(fl.dumps()) == 1 and "9 in cooldown" in log


def test_declarative_trigger_and_status_tool(tmp_path, newfstatat, helper, capsys):
    fl = Flight(tmp_path, ["--trigger", f"{newfstatat}: ret < 0 && common_pid == {helper.pid}",
                           "--count", "5", "--within", "10ms", "--per", "common_pid", "-e", "sched:sched_switch",
                           "--keep", "256K"])
    try:
        helper(5, 0.2)
        helper(4, 0.2)
        fl.wait_for(lambda s: s["dumps"]["dumps"] >= 1, "the dump")
    finally:
        fl.stop()
    (_, side), = fl.dumps()
    assert side["reason"].startswith(newfstatat)
    from tracewatch.tools import status

    assert status.main([str(fl.status_path)]) == 0
    out = capsys.readouterr().out
    assert "stopped" in out and "1 written" in out


# -- every way out: stuck handlers, repeated signals, failing disks, SIGKILL ---------------------------

STUCK_SCRIPTS = {
    # a pure-Python loop: Python runs the signal handler between bytecodes
    "python": """
import sys
from tracewatch import on

@on("{event}", where="common_pid == " + sys.argv[1])
def spin(ev):
    print("handler: stuck", file=sys.stderr, flush=True)
    while True:
        pass
""",
    # a C call no signal ends: a normal mutex locked twice (the GIL is released, no Python runs here)
    "c": """
import ctypes, sys
from tracewatch import on

libc = ctypes.CDLL(None)
mutex = ctypes.create_string_buffer(64)  # PTHREAD_MUTEX_INITIALIZER is all zeros (glibc)

@on("{event}", where="common_pid == " + sys.argv[1])
def block(ev):
    print("handler: stuck", file=sys.stderr, flush=True)
    libc.pthread_mutex_lock(mutex)
    libc.pthread_mutex_lock(mutex)
""",
}


def _instance_gone(name: str) -> bool:
    return not os.path.isdir(f"/sys/kernel/tracing/instances/{name}")


@pytest.mark.parametrize("where", ["python", "c"])
def test_sigterm_ends_a_handler_that_never_returns(tmp_path, newfstatat, helper, where):
    script = _script(tmp_path, STUCK_SCRIPTS[where], event=newfstatat)
    fl = Flight(tmp_path, [str(script), "-a", str(helper.pid), "-e", "sched:sched_switch", "-e", newfstatat,
                           "--keep", "256K", "--stop-grace", "1s", "--daemon"])
    instance = fl.status()["instance"]
    helper(1, 0.0)
    fl.wait_log("handler: stuck")
    fl.signal(signal.SIGTERM)
    rc, log = fl.exit_status()
    assert rc == 2, log
    assert "a handler was stuck: still running 1 s after SIGTERM" in log
    if where == "python":  # unwound in the main thread: the usual clean-up and one error line
        assert "tracewatch: error: a handler was stuck" in log and "end hooks skipped" in log
    else:  # the main thread never came back: the watchdog removed the instance and exited
        assert f"instance {instance} removed" in log and "did not come back" in log
    assert _instance_gone(instance), log
    assert not list(fl.out.glob(".*.tmp"))


SLEEPY_SCRIPT = """
import sys, time
from tracewatch import on, dump

@on("{event}", where="common_pid == " + sys.argv[1])
def slow(ev):
    dump(reason="slow handler", event=ev)
    print("handler: sleeping", file=sys.stderr, flush=True)
    time.sleep(3600)
"""


def _check_dumps(out: Path) -> int:
    """Every .dat in ``out`` is a whole trace with its sidecar; no temporary is left. Returns the count."""
    assert not list(out.glob(".*.tmp")), sorted(os.listdir(out))
    dats = sorted(out.glob("*.dat"))
    for dat in dats:
        assert dat.with_suffix(".json").exists(), dat
        with open_trace(str(dat)) as t:
            assert sum(1 for _ in t.events()) > 0
        if TRACE_CMD:
            _trace_cmd_lines(dat)
    return len(dats)


def test_sigint_twice_abandons_the_handlers_and_leaves_no_kernel_state(tmp_path, newfstatat, load, helper):
    script = _script(tmp_path, SLEEPY_SCRIPT, event=newfstatat)
    fl = Flight(tmp_path, [str(script), "-a", str(helper.pid), "-e", "sched:sched_switch", "-e", newfstatat,
                           "--keep", "512K", "--stop-grace", "30s"])
    instance = fl.status()["instance"]
    helper(1, 0.0)
    fl.wait_log("handler: sleeping")  # the handler's dump() is being written beside it
    fl.signal(signal.SIGUSR1)  # and one more, in the writer thread
    fl.signal(signal.SIGINT)
    # seen before the second is sent: two signals pending at once are delivered as one
    fl.wait_for(lambda s: s.get("stop_requested") == "SIGINT", "the first SIGINT")
    fl.signal(signal.SIGINT)
    rc, log = fl.exit_status()
    # 2 with the handlers abandoned; 130 when the live session's own SIGINT handler (a second
    # Ctrl-C raises KeyboardInterrupt) got the handler out first
    assert rc in (2, 130), log
    if rc == 2:
        assert "a second SIGINT before the handlers returned" in log and "tracewatch: error:" in log
    assert _instance_gone(instance), log
    assert _check_dumps(fl.out) >= 1, log  # the dumps in progress completed


def test_sigusr1_sighup_and_sigterm_at_once_end_cleanly(tmp_path, newfstatat, load, helper):
    script = _script(tmp_path, EACH_SCRIPT, event=newfstatat, reason="failing stat")
    fl = Flight(tmp_path, [str(script), "-a", str(helper.pid), "-e", "sched:sched_switch", "-e", newfstatat,
                           "--keep", "1M", "--cooldown", "0"])
    instance = fl.status()["instance"]
    helper(2, 0.0)
    for sig in (signal.SIGUSR1, signal.SIGHUP, signal.SIGTERM):
        fl.signal(sig)
    rc, log = fl.exit_status()  # (not fl.stop(): a second SIGTERM would abandon the handlers)
    assert rc == 0, log
    assert _instance_gone(instance), log
    assert _check_dumps(fl.out) >= 1, log
    # kernel addresses inside: only root reads them
    assert stat.S_IMODE(fl.out.stat().st_mode) == 0o700
    for f in [fl.status_path, *fl.out.glob("*.dat"), *fl.out.glob("*.json")]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


@pytest.fixture
def tmpfs_out(tmp_path):
    """tmp_path/dumps on a tmpfs of its own (root only), unmounted after the test."""
    mnt = tmp_path / "dumps"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_dumps_that_fail_are_counted_said_and_make_the_exit_status_2(tmp_path, newfstatat, tmpfs_out):
    fl = Flight(tmp_path, ["-e", "sched:sched_switch", "--trigger", f"{newfstatat}: ret < -1000000",
                           "--keep", "256K"])
    try:
        fl.signal(signal.SIGUSR1)
        fl.wait_for(lambda s: s["dumps"]["dumps"] >= 1, "the first dump")
        # the disk goes away under the recorder (root writes through chmod; a read-only mount stops it)
        subprocess.run(["mount", "-o", "remount,ro", str(tmpfs_out)], check=True)
        for n in (1, 2):
            fl.signal(signal.SIGUSR1)
            fl.wait_for(lambda s, n=n: s["dumps"]["failed"] >= n, f"failed dump {n}")
        st = fl.status()
    finally:
        if fl.proc.poll() is None:
            fl.signal(signal.SIGTERM)
        rc, log = fl.exit_status()
    assert st["dumps"]["failure"] == "Read-only file system"
    assert rc == 2, log
    assert "stopped: 1 dump(s) written, 2 failed (Read-only file system)" in log
    assert log.rstrip().splitlines()[-1] == \
        f"tracewatch: error: 2 of 3 dump(s) failed (Read-only file system) in {fl.out}"


def test_sigkill_leaves_what_cleanup_and_the_next_start_remove(tmp_path, newfstatat):
    fl = Flight(tmp_path, ["-e", "sched:sched_switch", "--trigger", f"{newfstatat}: ret < -1000000",
                           "--keep", "256K"])
    instance = fl.status()["instance"]
    fl.signal(signal.SIGUSR1)
    fl.wait_for(lambda s: s["dumps"]["dumps"] >= 1, "the dump")
    (dat,) = fl.out.glob("*.dat")
    whole = dat.read_bytes()
    fl.proc.kill()
    fl.exit_status()

    # what a SIGKILL in the middle of a dump leaves (test_dump_safety makes one for real): a temporary
    def cut_short(n: int) -> Path:
        tmp = fl.out / f".{dat.stem}-{n}.dat.0123456{n}.tmp"
        tmp.write_bytes(b"\0" * 10 + whole[10:len(whole) // 2])
        return tmp

    first = cut_short(1)
    env = _env()
    done = subprocess.run([sys.executable, "-m", "tracewatch", "cleanup"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"removed {first}" in done.stdout, done.stdout  # found through the killed run's note
    # (another tracewatch starting meanwhile may have removed the dead run's instance first)
    assert _instance_gone(instance) and not first.exists()

    second = cut_short(2)
    fl.status_path.unlink()  # the killed run's "running": the next Flight must wait for its own
    fl2 = Flight(tmp_path, ["-e", "sched:sched_switch", "--trigger", f"{newfstatat}: ret < -1000000",
                            "--keep", "256K"])
    log = fl2.stop()
    assert not second.exists() and f"removed {second}" in log
    assert dat.read_bytes() == whole and _check_dumps(fl.out) == 1


SLOW_EACH_SCRIPT = """
import sys, time
from tracewatch import on, at_end

@on("sched:sched_switch")
def slow(ev):
    time.sleep(1.0)  # one event a second: far behind the stream, but it returns

@at_end
def done():
    print("at_end ran", file=sys.stderr, flush=True)
"""


def test_a_stop_cuts_a_slow_handler_and_the_end_hooks_run(tmp_path, newfstatat, load):
    """A handler that returns, but slowly, is not made to handle every event read before the stop
    (minutes at 1 s each): the handling is cut after the session's grace, the end hooks run, and
    the run ends by itself (status 0) instead of being abandoned by the stuck-handler watchdog."""
    script = _script(tmp_path, SLOW_EACH_SCRIPT)
    fl = Flight(tmp_path, [str(script), "-e", "sched:sched_switch", "--keep", "512K", "--stop-grace", "60s"])
    time.sleep(2.0)  # let events pile up behind the slow handler (hundreds of switches a second)
    fl.signal(signal.SIGTERM)
    rc, log = fl.exit_status(timeout=55.0)
    assert rc == 0, log
    assert "at_end ran" in log and "abandon" not in log, log
