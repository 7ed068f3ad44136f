"""Function probes from scripts and ``tracewatch run -P``, live: probe(), @on_probe, pairing, -i, -p.

The gcc-built test program of test_uprobes (outer 5, middle 15, leaf 30,
sleeper 4 x 20 ms, named 1) is traced by scripts that ask for their probes
themselves; counts must be exact and no probe may be left behind.  Needs
root, tracefs with uprobes and gcc; skipped with the reason otherwise.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import textwrap
import time

import pytest

from tracewatch.sources.tracefs import TraceFS, cleanup_stale
from tracewatch.tools import record, run

from .test_uprobes import PROG_C, _uprobes_unavailable

pytestmark = pytest.mark.skipif(_uprobes_unavailable() is not None, reason=_uprobes_unavailable() or "")


@pytest.fixture(scope="module")
def prog(tmp_path_factory):
    d = tmp_path_factory.mktemp("script_probe_prog")
    (d / "prog.c").write_text(PROG_C)
    path = d / "prog"
    subprocess.run(["gcc", "-O1", "-o", str(path), str(d / "prog.c")], check=True)
    return str(path)


def _mine() -> tuple[list[str], list[str]]:
    mine = re.compile(rf"^tracewatch_{os.getpid()}(_\d+)*$")
    probes = [f"{u.group}/{u.event}" for u in TraceFS().uprobes() if mine.match(u.group)]
    inst = [n for n in TraceFS().instance_names() if n.startswith(f"tracewatch-{os.getpid()}-")]
    return probes, inst


@pytest.fixture(autouse=True)
def no_tracewatch_leftovers():
    """Probes and instances of this process are gone after each test (others' runs are not ours)."""
    yield
    cleanup_stale()
    probes, inst = _mine()
    assert not probes, f"uprobes left behind: {probes}"
    assert not inst, f"instances left behind: {inst}"


COUNT_SCRIPT = """
    from collections import Counter
    from tracewatch import on, on_probe, probe, at_end

    PROG = {prog!r}
    n = Counter()
    enter, leave = probe(PROG + ":middle", returns=True)
    assert (enter, leave) == ("probe:middle", "probe:middle__return")

    @on(enter)
    def middle(ev):
        n["middle"] += 1

    @on(leave)
    def middle_ret(ev):
        n["middle_ret"] += 1

    @on_probe(PROG + ":leaf(x=arg1:s32)", where="x > 0")   # leaf(0) is filtered out
    def leaf(ev):
        n["leaf_x_pos"] += 1

    @on_probe("r:" + PROG + ":named ret=$retval:s32")
    def named(ev):
        n["named_ret_" + str(ev.ret)] += 1

    @on("probe:outer")            # from -P on the command line
    def outer(ev):
        n["outer"] += 1

    @on("probe:sleep*")           # a glob over the run's probe events
    def sleeper(ev):
        n["sleeper"] += 1

    @at_end
    def end():
        print(dict(sorted(n.items())))
"""

# leaf(x) is called with x = i, i+1 for i in 0..2, five times: 0 once per outer call
WANT = {"middle": 15, "middle_ret": 15, "leaf_x_pos": 25, "named_ret_7": 1, "outer": 5, "sleeper": 4}


def _script(tmp_path, body: str, **fmt) -> str:
    p = tmp_path / "s.py"
    p.write_text(textwrap.dedent(body).format(**fmt))
    return str(p)


def _result(out: str) -> dict:
    return ast.literal_eval(out.strip().splitlines()[-1])


def test_script_probes_count_exact_live(prog, tmp_path, capsys):
    s = _script(tmp_path, COUNT_SCRIPT, prog=prog)
    rc = run.main([s, "-P", f"{prog}:outer", "-P", f"{prog}:sleeper", "--", prog])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert _result(out) == WANT
    assert re.search(rf"Tracing tracewatch_{os.getpid()}(_\d+)+:", err), err
    assert _mine() == ([], [])


def test_script_probes_over_a_recording(prog, tmp_path, capsys):
    """record -P writes the probe events; run -i binds the same script's probe: names to them."""
    dat = tmp_path / "p.dat"
    rc = record.main(["-o", str(dat), "-P", f"{prog}:outer", "-P", f"{prog}:middle", "-P", f"r:{prog}:middle",
                      "-P", f"{prog}:leaf(x=arg1:s32)", "-P", f"r:{prog}:named ret=$retval:s32",
                      "-P", f"{prog}:sleeper", "--", prog])
    out, err = capsys.readouterr()
    assert rc == 0, err
    s = _script(tmp_path, COUNT_SCRIPT, prog=prog)
    rc = run.main([s, "-i", str(dat)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert _result(out) == WANT


def test_script_pairs_entry_and_return_into_durations(prog, tmp_path, capsys):
    s = _script(tmp_path, """
        from tracewatch import on, probe, at_end, Pairing
        enter, leave = probe({prog!r} + ":sleeper", returns=True)
        p, durations = Pairing(), []

        @on(enter)
        def start(ev):
            p.enter(ev.common_pid, ev.common_ts)

        @on(leave)
        def done(ev):
            r = p.exit(ev.common_pid, ev.common_ts)
            if r is not None:
                durations.append(r[0])

        @at_end
        def end():
            print(sorted(durations))
    """, prog=prog)
    rc = run.main([s, "--", prog])
    out, err = capsys.readouterr()
    assert rc == 0, err
    durations = _result(out)
    assert len(durations) == 4
    assert all(20_000_000 <= d < 200_000_000 for d in durations), durations


def test_run_P_with_pid_resolves_libraries_through_its_maps(tmp_path, capsys):
    src = tmp_path / "loop.c"
    src.write_text(r"""
#include <unistd.h>
#include <stdlib.h>
void * volatile keep;
__attribute__((noinline)) void tick(void) { keep = malloc(32); free(keep); }
int main(void) { for (;;) { tick(); usleep(1000); } }
""")
    loop = tmp_path / "loop"
    subprocess.run(["gcc", "-O1", "-o", str(loop), str(src)], check=True)
    s = _script(tmp_path, """
        from collections import Counter
        from tracewatch import on, on_probe, at_end
        n = Counter()

        @on_probe("libc:malloc(size=arg1)", where="size == 32")
        def malloc(ev):
            n["malloc32"] += 1

        @on("probe:tick")
        def tick(ev):
            n["tick"] += 1

        @at_end
        def end():
            print(dict(n))
    """)
    child = subprocess.Popen([str(loop)])
    try:
        time.sleep(0.1)
        rc = run.main([s, "-P", "tick", "-p", str(child.pid), "-d", "0.5"])
    finally:
        child.kill()
        child.wait()
    out, err = capsys.readouterr()
    assert rc == 0, err
    got = _result(out)
    assert got["tick"] > 50, got
    assert got["malloc32"] >= got["tick"], got


def test_handler_on_a_probe_nobody_asked_for_is_one_line(prog, tmp_path, capsys):
    s = _script(tmp_path, """
        from tracewatch import on
        @on("probe:leaf")
        def leaf(ev):
            pass
    """)
    rc = run.main([s, "--", prog])
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "no probe makes the event probe:leaf" in lines[0], err
    assert "probe('LIBRARY:leaf')" in lines[0]


def test_bad_symbol_in_script_probe_is_one_line(prog, tmp_path, capsys):
    s = _script(tmp_path, """
        from tracewatch import on_probe
        @on_probe({prog!r} + ":leafy")
        def f(ev):
            pass
    """, prog=prog)
    rc = run.main([s, "--", prog])
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "no function 'leafy'" in lines[0], err
