"""perf's own ``perf script -s`` Python scripts, run unmodified by ``tracewatch run``.

Each script's printed table is checked against counts made independently
from trace-cmd's ``report -R`` text stored beside each fixture.  The scripts
are read where the distribution installs them (package linux-perf); without
them these tests skip.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from tests.conftest import fixture_path
from tracewatch.tools import run

PERF_SCRIPTS = Path("/usr/lib/perf-core/scripts/python")

pytestmark = pytest.mark.skipif(
    not (PERF_SCRIPTS / "syscall-counts.py").is_file(),
    reason=f"perf's Python scripts are not installed in {PERF_SCRIPTS} (apt-get install linux-perf)",
)

# "            bash-8770  [000]   567.285244: sys_enter:             id=33 args=ARRAY[...]"
_RAW_LINE = re.compile(r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+[\d.]+: (?P<event>\w+):\s*(?P<rest>.*)$")


def perf_comm(comm: str, pid: int) -> str:
    """trace-cmd's comm as perf names it: <idle> is swapper, an unknown <...> is :PID."""
    if comm == "<idle>":
        return "swapper"
    return f":{pid}" if comm == "<...>" else comm


def raw_events(name: str, event: str):
    """(comm, pid, fields dict) of every ``event`` line of the fixture's trace-cmd report -R."""
    for line in fixture_path(name + ".raw.txt").read_text(errors="replace").splitlines():
        m = _RAW_LINE.match(line)
        if m and m.group("event") == event:
            pid = int(m.group("pid"))
            fields = dict(re.findall(r"(\w+)=(-?\w+)", m.group("rest")))
            yield perf_comm(m.group("comm"), pid), pid, fields


def syscall_name(nr: int) -> str:
    from tracewatch.script.perf_compat import prepare_perf_environment

    prepare_perf_environment()
    import Util  # tracewatch's own Util, the module the scripts import

    return Util.syscall_name(nr)


def run_script(capsys, script: str, fixture: str, *script_args: str) -> tuple[int, str, str]:
    argv = [str(PERF_SCRIPTS / script), "-i", str(fixture_path(fixture))]
    if script_args:
        argv += ["--", *script_args]
    rc = run.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def table_rows(text: str) -> list[tuple[str, int]]:
    """("name", count) of every row ``name   count`` after the dashed header line."""
    body = text.split("-----------\n", 1)[1]
    return [(m.group(1).strip(), int(m.group(2))) for m in re.finditer(r"^(.*?)\s+(\d+)$", body, re.M)]


def blocks_by_pid(text: str) -> dict[tuple[str, int], list[str]]:
    """Lines under each ``comm [pid]`` heading of a by-pid report."""
    out: dict[tuple[str, int], list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        m = re.match(r"^(\S.*) \[(\d+)\]$", line)
        if m and not line.startswith("comm [pid]"):
            current = out.setdefault((m.group(1), int(m.group(2))), [])
        elif line.startswith("  "):
            current.append(line)
    return out


def test_syscall_counts_lists_every_syscall_with_its_count(capsys):
    rc, out, err = run_script(capsys, "syscall-counts.py", "a_syscalls.v6.dat")
    assert rc == 0 and err == ""
    assert out.startswith("Press control+C to stop and show the summary\n\nsyscall events:\n")
    want = Counter(syscall_name(int(f["id"])) for _, _, f in raw_events("a_syscalls.v6.dat", "sys_enter"))
    rows = table_rows(out)
    assert dict(rows) == dict(want) and len(rows) == len(want)
    assert sum(want.values()) == 5602
    assert [c for _, c in rows] == sorted((c for _, c in rows), reverse=True)


def test_syscall_counts_for_one_comm(capsys):
    rc, out, _ = run_script(capsys, "syscall-counts.py", "a_syscalls.v6.dat", "python3")
    assert rc == 0 and "syscall events for python3:" in out
    want = Counter(syscall_name(int(f["id"])) for comm, _, f in raw_events("a_syscalls.v6.dat", "sys_enter")
                   if comm == "python3")
    assert dict(table_rows(out)) == dict(want) and want


def test_syscall_counts_by_pid(capsys):
    rc, out, err = run_script(capsys, "syscall-counts-by-pid.py", "a_syscalls.v6.dat")
    assert rc == 0 and err == ""
    want: dict[tuple[str, int], Counter] = defaultdict(Counter)
    for comm, pid, f in raw_events("a_syscalls.v6.dat", "sys_enter"):
        want[(comm, pid)][syscall_name(int(f["id"]))] += 1
    got = {key: dict((l.split()[0], int(l.split()[1])) for l in lines) for key, lines in blocks_by_pid(out).items()}
    assert got == {k: dict(v) for k, v in want.items()}


def test_failed_syscalls_by_pid(capsys):
    from tracewatch.script.perf_compat import prepare_perf_environment

    prepare_perf_environment()
    import Util

    rc, out, err = run_script(capsys, "failed-syscalls-by-pid.py", "a_syscalls.v6.dat")
    assert rc == 0 and err == ""
    want: dict[tuple[str, int], Counter] = defaultdict(Counter)
    for comm, pid, f in raw_events("a_syscalls.v6.dat", "sys_exit"):
        if int(f["ret"]) < 0:
            want[(comm, pid)][(syscall_name(int(f["id"])), Util.strerror(int(f["ret"])))] += 1
    got: dict[tuple[str, int], Counter] = {}
    for key, lines in blocks_by_pid(out).items():
        counts: Counter = Counter()
        for line in lines:
            if line.startswith("  syscall: "):
                name = line.split()[1]
            else:
                m = re.match(r"^\s+err = (\S+)\s+(\d+)$", line)
                assert m, line
                counts[(name, m.group(1))] += int(m.group(2))
        got[key] = counts
    assert got == dict(want) and want


def test_futex_contention_without_futex_events_prints_an_empty_summary(capsys):
    rc, out, err = run_script(capsys, "futex-contention.py", "b_sched.v6.dat")
    assert (rc, out, err) == (0, "Press control+C to stop and show the summary\n", "")


def test_check_perf_trace_on_a_newer_kernel_fails_like_perf(capsys):
    # its kmem__kmalloc handler predates kmalloc's `accounted` field: perf itself dies
    # on the TypeError; tracewatch reports the script line and exits 2
    rc, out, err = run_script(capsys, "check-perf-trace.py", "e_mixed.v6.dat")
    assert rc == 2
    assert "kmem__kmalloc() takes 13 positional arguments but 14 were given" in err
    assert "unhandled events:" in out  # trace_end still ran


@pytest.mark.parametrize("script", ["compaction-times.py", "netdev-times.py", "powerpc-hcalls.py"])
def test_scripts_whose_events_are_absent_run_to_an_empty_report(capsys, script):
    rc, _out, err = run_script(capsys, script, "e_mixed.v6.dat")
    assert rc == 0 and err == ""


def test_sctop_terminates_on_a_file():
    # sctop prints from a thread that sleeps `interval` seconds forever, as under perf;
    # the run must still end with the input (a subprocess, so the thread dies with it)
    proc = subprocess.run(
        [sys.executable, "-m", "tracewatch", "run", str(PERF_SCRIPTS / "sctop.py"),
         "-i", str(fixture_path("a_syscalls.v6.dat")), "--", "1"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "syscall events:" in proc.stdout and proc.stderr == ""
