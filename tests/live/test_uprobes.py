"""Function tracing with uprobes, live: funccount, funclatency, calls, probe specs, errors.

A small C program is built with gcc into tmp_path with known call counts
(outer 5, middle 15, leaf 30, sleeper 4 sleeping 20 ms each, named 1 with a
string).  Needs root, tracefs with uprobes, and gcc; skipped with the reason
otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tracewatch.sources.tracefs import TraceFS, cleanup_stale

from .conftest import spawn_python

PROG_C = r"""
#include <time.h>
volatile int sink;
__attribute__((noinline)) int leaf(int x) { sink += x; return x + 1; }
__attribute__((noinline)) int middle(int x) { return leaf(x) + leaf(x + 1); }
__attribute__((noinline)) void outer(void) { for (int i = 0; i < 3; i++) middle(i); }
__attribute__((noinline)) void sleeper(void) { struct timespec t = {0, 20 * 1000 * 1000}; nanosleep(&t, 0); }
__attribute__((noinline)) int named(const char *s) { sink += s[0]; return 7; }
int main(void) {
    for (int i = 0; i < 5; i++) outer();
    for (int i = 0; i < 4; i++) sleeper();
    named("hello-uprobe");
    return 0;
}
"""

COUNTS = {"outer": 5, "middle": 15, "leaf": 30, "sleeper": 4, "named": 1}


def _uprobes_unavailable() -> str | None:
    if os.geteuid() != 0:
        return None  # conftest skips live tests with its own reason
    if shutil.which("gcc") is None:
        return "needs gcc to build the traced test program"
    try:
        if not TraceFS().exists("uprobe_events"):
            return "this kernel has no uprobes (no uprobe_events)"
    except Exception as e:  # noqa: BLE001 - conftest reports tracefs trouble
        return str(e)
    return None


pytestmark = pytest.mark.skipif(_uprobes_unavailable() is not None, reason=_uprobes_unavailable() or "")


@pytest.fixture(scope="module")
def progs(tmp_path_factory):
    """{'pie': path, 'nopie': path, 'stripped': path} of the test program."""
    d = tmp_path_factory.mktemp("uprobe_prog")
    src = d / "prog.c"
    src.write_text(PROG_C)
    out = {}
    for name, flags in (("pie", ["-fPIE", "-pie"]), ("nopie", ["-fno-pie", "-no-pie"])):
        path = d / f"prog_{name}"
        subprocess.run(["gcc", "-O1", *flags, "-o", str(path), str(src)], check=True)
        out[name] = str(path)
    stripped = d / "prog_stripped"
    shutil.copy(out["pie"], stripped)
    subprocess.run(["strip", str(stripped)], check=True)
    out["stripped"] = str(stripped)
    return out


@pytest.fixture(autouse=True)
def no_tracewatch_leftovers():
    """After each test: no instance or uprobe of *this process* is left.

    This replaces conftest's check of every tracewatch instance, which fails
    when another tracewatch run (a concurrent test session) is alive; stale
    ones of dead runs are still removed first.
    """
    yield
    cleanup_stale()
    mine = re.compile(rf"^tracewatch_{os.getpid()}(_\d+)*$")
    left = [f"{u.group}/{u.event}" for u in TraceFS().uprobes() if mine.match(u.group)]
    assert not left, f"uprobes left behind: {left}"
    inst = [n for n in TraceFS().instance_names() if n.startswith(f"tracewatch-{os.getpid()}-")]
    assert not inst, f"instances left behind: {inst}"


def _run(main, argv, capsys):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _counts(text: str) -> dict[str, int]:
    rows = {}
    for line in text.splitlines()[1:]:
        name, n = line.split()
        rows[name] = int(n)
    return rows


# ---------------------------------------------------------------------- tools

@pytest.mark.parametrize("kind", ["pie", "nopie"])
def test_funccount_exact(progs, kind, capsys):
    from tracewatch.tools import funccount

    prog = progs[kind]
    rc, out, err = _run(funccount.main, [f"{prog}:leaf", "middle", "outer", "sleeper", "named", "--", prog], capsys)
    assert rc == 0, err
    assert out.splitlines()[0].split() == ["FUNC", "COUNT"]
    assert _counts(out) == COUNTS
    assert "Tracing 5 functions" in err


def test_funccount_glob(progs, capsys):
    from tracewatch.tools import funccount

    prog = progs["pie"]
    rc, out, err = _run(funccount.main, [f"{prog}:*e*", "--", prog], capsys)
    assert rc == 0, err
    got = _counts(out)
    assert {k: got[k] for k in COUNTS} == COUNTS  # main, _start... may be there too


@pytest.mark.parametrize("unit,row", [("-m", r"16 -> 31\s+: 4\s"), ("-u", r"16384 -> 32767\s+: 4\s")])
def test_funclatency_bucket(progs, unit, row, capsys):
    from tracewatch.tools import funclatency

    prog = progs["pie"]
    rc, out, err = _run(funclatency.main, [unit, "sleeper", "--", prog], capsys)
    assert rc == 0, err
    assert re.search(row, out), out
    assert re.search(r"count: 4$", out, re.M), out
    # every other bucket is empty
    assert sum(int(m) for m in re.findall(r": (\d+)\s+\|", out)) == 4


def test_calls_tree_shape(progs, capsys):
    from tracewatch.tools import calls

    prog = progs["pie"]
    rc, out, err = _run(calls.main, ["leaf", "middle", "outer", "--", prog], capsys)
    assert rc == 0, err
    lines = out.splitlines()
    assert re.match(r"thread \d+ \(prog_pie\)", lines[0]), lines[0]
    body = [ln.split("|", 1)[1].rstrip() for ln in lines[2:]]
    one_outer = (["  outer() {"]
                 + ["    middle() {", "      leaf();", "      leaf();", "    } /* middle */"] * 3
                 + ["  } /* outer */"])
    assert body == one_outer * 5
    # leaf lines and closing lines carry durations
    durations = [ln.split("|", 1)[0] for ln in lines[2:] if ln.rstrip().endswith(("leaf();", "*/"))]
    assert all(re.search(r"\d+\.\d{3} us", d) for d in durations)


def test_probe_args_and_return_value(progs):
    from tracewatch.sources.session import LiveSession
    from tracewatch.sources.uprobes import ProbeSet

    prog = progs["pie"]
    probes = ProbeSet.from_specs([f"{prog}:leaf(x=arg1:s32)", f"r:{prog}:leaf ret=$retval:s32",
                                  f"{prog}:named(s=+0(arg1):string)", f"r:{prog}:named $retval:s32"])
    got: dict[str, list] = {}
    with LiveSession([], command=[prog], setup=probes.install) as s:
        for chunk in s.chunks():
            for ev in chunk.events():
                got.setdefault(ev.name_, []).append(ev)
        assert s.command_status == 0
    assert sorted(ev.x for ev in got["leaf"]) == sorted([i for _ in range(5) for j in range(3) for i in (j, j + 1)])
    assert sorted(ev.ret for ev in got["leaf__return"]) == sorted(ev.x + 1 for ev in got["leaf"])
    assert [ev.s for ev in got["named"]] == ["hello-uprobe"]
    assert [ev.ret for ev in got["named__return"]] == [7]


def test_tools_over_a_recording(progs, tmp_path, capsys):
    """Record the probe events to a trace.dat; the three tools read it with -i."""
    from tracewatch.formats.tracedat_writer import TraceDatWriter, TraceMeta
    from tracewatch.sources.session import LiveSession
    from tracewatch.sources.uprobes import ProbeSet
    from tracewatch.tools import calls, funccount, funclatency

    prog = progs["pie"]
    probes = ProbeSet.from_specs([f"{prog}:{f}" for f in COUNTS], both=True)
    path = tmp_path / "probes.dat"
    with LiveSession([], command=[prog], setup=probes.install) as s:
        meta = TraceMeta.from_tracefs(s.instance.path, [tuple(e.split(":")) for e in s.enabled],
                                      kallsyms_path=None)
        writer = TraceDatWriter(path, meta, max(s.source.cpus) + 1)
        s.add_page_tap(writer.add_pages)
        for _ in s.chunks():
            pass
        writer.close()
    rc, out, err = _run(funccount.main, ["leaf", "middle", "outer", "sleeper", "named", "-i", str(path)], capsys)
    assert rc == 0, err
    assert _counts(out) == COUNTS
    rc, out, err = _run(funclatency.main, ["-m", "sleeper", "-i", str(path)], capsys)
    assert rc == 0, err
    assert re.search(r"16 -> 31\s+: 4\s", out), out
    rc, out, err = _run(calls.main, ["leaf", "middle", "outer", "-i", str(path)], capsys)
    assert rc == 0, err
    body = [ln.split("|", 1)[1].rstrip() for ln in out.splitlines()[2:]]
    assert body[:6] == ["  outer() {", "    middle() {", "      leaf();", "      leaf();", "    } /* middle */",
                        "    middle() {"]
    rc, out, err = _run(funccount.main, ["nosuch", "-i", str(path)], capsys)
    assert rc == 2 and "no probe events for nosuch" in err and len(err.strip().splitlines()) == 1


def test_pid_mode(progs, tmp_path, capsys):
    """-p PID: a running process, found by pid; library lookup through its maps."""
    from tracewatch.tools import funccount

    src = tmp_path / "loop.c"
    src.write_text(r"""
#include <unistd.h>
#include <stdlib.h>
void * volatile keep;
__attribute__((noinline)) void tick(void) { keep = malloc(32); free(keep); }
int main(void) { for (;;) { tick(); usleep(1000); } }
""")
    prog = tmp_path / "loop"
    subprocess.run(["gcc", "-O1", "-o", str(prog), str(src)], check=True)
    child = subprocess.Popen([str(prog)])
    try:
        time.sleep(0.1)
        rc, out, err = _run(funccount.main, ["tick", "libc:malloc", "-p", str(child.pid), "-d", "0.5"], capsys)
    finally:
        child.kill()
        child.wait()
    assert rc == 0, err
    got = _counts(out)
    assert got["tick"] > 50, out
    # every tick calls malloc once; tracing can stop between the two probes of the last tick
    assert got["malloc"] >= got["tick"] - 1, out


# ---------------------------------------------------------------------- errors: one clear line each

def _one_line_error(main, argv, capsys) -> str:
    rc, out, err = _run(main, argv, capsys)
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tracewatch: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_bad_symbol(progs, capsys):
    from tracewatch.tools import funccount

    msg = _one_line_error(funccount.main, [f"{progs['pie']}:leafy", "--", progs["pie"]], capsys)
    assert "no function 'leafy'" in msg and "did you mean leaf" in msg


def test_stripped_binary(progs, capsys):
    from tracewatch.tools import funccount

    msg = _one_line_error(funccount.main, ["leaf", "--", progs["stripped"]], capsys)
    assert "stripped" in msg and "no function 'leaf'" in msg


def test_missing_library(progs, capsys):
    from tracewatch.tools import funclatency

    msg = _one_line_error(funclatency.main, ["libnosuchlib:foo", "--", progs["pie"]], capsys)
    assert "cannot find library 'libnosuchlib'" in msg


def test_kernel_function(capsys):
    from tracewatch.tools import funccount

    if TraceFS().exists("kprobe_events"):
        pytest.skip("this kernel has kprobes; the message is for kernels without them")
    msg = _one_line_error(funccount.main, ["k:vfs_read", "-d", "1"], capsys)
    assert "kernel function tracing is unavailable here" in msg


def test_bad_type_rejected_before_tracing(progs, capsys):
    from tracewatch.tools import funccount

    msg = _one_line_error(funccount.main, [f"{progs['pie']}:leaf(x=arg1:float)", "--", progs["pie"]], capsys)
    assert "unknown type 'float'" in msg


# ---------------------------------------------------------------------- cleanup after SIGKILL

def test_probes_of_a_killed_run_are_removed(progs):
    prog = progs["pie"]
    child = spawn_python(f"""
        import sys, time
        from tracewatch.sources.tracefs import Instance
        from tracewatch.sources.uprobes import ProbeSet
        inst = Instance()
        events = ProbeSet.from_specs(["{prog}:leaf", "r:{prog}:leaf"]).install(inst)
        inst.enable(events)
        print(inst.uprobe_group, flush=True)
        time.sleep(60)
    """)
    try:
        group = child.stdout.readline().strip()
        assert group.startswith("tracewatch_"), child.stderr.read()
        assert any(u.group == group for u in TraceFS().uprobes())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    removed = cleanup_stale()
    assert f"uprobe {group}/leaf" in removed and f"uprobe {group}/leaf__return" in removed
    assert not any(u.group == group for u in TraceFS().uprobes())


# ---------------------------------------------------------------------- many probes, refused probes

MANY = 1200  # functions of the many-function program: f0 .. f1199, f<i> called i % 3 + 1 times

MANY_C = r"""
#include <unistd.h>
volatile long sink;
%s
int main(int argc, char **argv) {
    char c;
    if (argc > 1 && read(0, &c, 1) < 0) return 1;  /* "wait": mapped and idle until stdin says go */
%s
    return 0;
}
"""

LOCKED_C = r"""
#include <unistd.h>
volatile int sink;
/* a lock prefix on the first instruction: the kernel cannot single-step it (ENOTSUPP) */
__attribute__((naked, noinline)) void locked(void) { __asm__ volatile("lock incl sink(%rip)\n\tret"); }
__attribute__((noinline)) void plain(void) { sink++; }
int main(void) { for (;;) { locked(); plain(); usleep(1000); } }
"""


@pytest.fixture(scope="module")
def many_prog(tmp_path_factory):
    d = tmp_path_factory.mktemp("many_prog")
    src = d / "many.c"
    funcs = "\n".join(f"__attribute__((noinline)) void f{i}(void) {{ sink += {i}; }}" for i in range(MANY))
    calls = "\n".join(f"    for (int k = 0; k < {i % 3 + 1}; k++) f{i}();" for i in range(MANY))
    src.write_text(MANY_C % (funcs, calls))
    path = d / "many"
    subprocess.run(["gcc", "-O1", "-o", str(path), str(src)], check=True)
    return str(path)


def test_funccount_over_a_thousand_functions(many_prog, capsys):
    from tracewatch.tools import funccount

    rc, out, err = _run(funccount.main, [f"{many_prog}:f[0-9]*", "--max-probes", "2000", "--", many_prog], capsys)
    assert rc == 0, err
    assert _counts(out) == {f"f{i}": i % 3 + 1 for i in range(MANY)}


def test_probes_enabled_through_the_group_only_in_the_private_instance(many_prog):
    from tracewatch.sources.tracefs import Instance
    from tracewatch.sources.uprobes import ProbeSet

    probes = ProbeSet.from_specs([f"{many_prog}:f1[0-9]"])
    with Instance() as mine, Instance() as other:
        events = probes.install(mine)
        assert len(events) == 10
        assert sorted(mine.enable(events)) == sorted(events)
        group = mine.uprobe_group
        assert mine.read(f"events/{group}/enable").strip() == "1"
        assert sorted(mine.enabled_events) == sorted(events)
        # the same events in the top-level instance and in another instance stay off
        assert mine.tracefs.read(f"events/{group}/enable").strip() == "0"
        assert other.read(f"events/{group}/enable").strip() == "0"
        assert other.enabled_events == []
    assert not any(u.group == group for u in TraceFS().uprobes())


def test_a_rejected_definition_in_a_block_is_named(many_prog):
    from tracewatch.errors import CaptureError
    from tracewatch.sources.tracefs import Instance
    from tracewatch.sources.uprobes import ProbeSet

    good = [(p.event, p.location, "", False) for p in ProbeSet.from_specs([f"{many_prog}:f[0-9]"]).probes]
    assert len(good) == 10
    with Instance() as inst:
        group = inst.uprobe_group
        with pytest.raises(CaptureError) as err:
            inst.add_uprobes(good[:6] + [("bad", "/no/such/file:0x10", "", False)] + good[6:])
        msg = str(err.value)
        assert msg.startswith(f"the kernel rejected uprobe 'p:{group}/bad /no/such/file:0x10'"), msg
        assert "\n" not in msg
        # the kernel stopped at the bad line: the ones before it exist, those after do not
        made = sorted(u.event for u in inst.tracefs.uprobes() if u.group == group)
        assert made == sorted(e for e, *_ in good[:6])
    assert not any(u.group == group for u in TraceFS().uprobes())


@pytest.fixture(scope="module")
def locked_prog(tmp_path_factory):
    d = tmp_path_factory.mktemp("locked_prog")
    src = d / "locked.c"
    src.write_text(LOCKED_C)
    path = d / "locked"
    subprocess.run(["gcc", "-O1", "-o", str(path), str(src)], check=True)
    return str(path)


def test_probe_the_kernel_cannot_enable_is_skipped_with_a_warning(locked_prog, capsys):
    from tracewatch.tools import funccount

    # the kernel checks the instruction when it places the breakpoint, in a process that maps
    # the file: the program runs while the probes are enabled
    target = subprocess.Popen([locked_prog])
    try:
        rc, out, err = _run(funccount.main, [f"{locked_prog}:locked", "plain", "-p", str(target.pid),
                                             "-d", "0.5"], capsys)
        assert rc == 0, err
        assert err.splitlines()[0] == ("tracewatch: warning: skipped 1 probe the kernel cannot enable "
                                       "(error 524, ENOTSUPP): locked")
        counts = _counts(out)
        assert set(counts) == {"plain"} and counts["plain"] > 0  # the run went on without it
        msg = _one_line_error(funccount.main, [f"{locked_prog}:locked", "-p", str(target.pid), "-d", "0.5"],
                              capsys)
        assert "the kernel cannot enable any of the 1 probes (error 524, ENOTSUPP" in msg
    finally:
        target.kill()
        target.wait()


@pytest.mark.parametrize("signals", [[signal.SIGTERM], [signal.SIGINT, signal.SIGINT]],
                         ids=["SIGTERM", "SIGINT-twice"])
def test_a_stop_during_set_up_removes_every_probe(many_prog, signals):
    # a process mapping the program, so that enabling places every breakpoint for real
    holder = subprocess.Popen([many_prog, "wait"], stdin=subprocess.PIPE)
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
                                                   "src"))
    child = subprocess.Popen([sys.executable, "-m", "tracewatch", "funccount", f"{many_prog}:f[0-9]*",
                              "--max-probes", "2000", "-p", str(holder.pid), "-d", "600"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    mine = f"tracewatch_{child.pid}_"
    try:
        # signal as soon as the first block of probes is defined: set-up has begun
        while not any(u.group.startswith(mine) for u in TraceFS().uprobes()):
            assert child.poll() is None, child.communicate()
            time.sleep(0.005)
        for sig in signals:
            child.send_signal(sig)
        out, err = child.communicate(timeout=600)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        holder.stdin.close()
        holder.wait()
    # SIGTERM: dies of it once clean; Ctrl-C: 130 (0 had set-up finished first: a count is printed)
    assert child.returncode in ((-signal.SIGTERM,) if signals == [signal.SIGTERM] else (130, 0)), err
    assert "Traceback" not in err, err
    left = [f"{u.group}/{u.event}" for u in TraceFS().uprobes() if u.group.startswith(mine)]
    assert not left, f"{len(left)} probes left, e.g. {left[:3]}; stderr: {err}"
    assert not [n for n in TraceFS().instance_names() if n.startswith(f"tracewatch-{child.pid}-")]


def test_a_second_ctrl_c_waits_for_the_probes_to_be_removed(many_prog):
    # 300 enabled probes take seconds to disable (an RCU grace period each): the second
    # Ctrl-C comes while they are being removed, and must not cut that short
    holder = subprocess.Popen([many_prog, "wait"], stdin=subprocess.PIPE)
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
                                                   "src"))
    child = subprocess.Popen([sys.executable, "-m", "tracewatch", "funccount", f"{many_prog}:f[1-3][0-9][0-9]",
                              "-p", str(holder.pid), "-d", "600"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    mine = f"tracewatch_{child.pid}_"
    err_lines = []
    try:
        line = child.stderr.readline()  # "Tracing 300 functions ...": set-up is done
        assert line.startswith("Tracing 300 functions"), line + child.stderr.read()
        child.send_signal(signal.SIGINT)
        line = child.stderr.readline()
        assert line == "tracewatch: removing 300 probes; the kernel takes a while for each\n", line
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=600)
        err_lines = err.splitlines()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        holder.stdin.close()
        holder.wait()
    assert child.returncode == 130, err_lines  # the held Ctrl-C is delivered once all is removed
    assert not any("Traceback" in ln for ln in err_lines), err_lines
    assert not any(u.group.startswith(mine) for u in TraceFS().uprobes())
    assert not [n for n in TraceFS().instance_names() if n.startswith(f"tracewatch-{child.pid}-")]
