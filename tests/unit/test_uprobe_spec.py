"""Probe specs (-P): parsing, argument registers, types, library resolution, naming, limits;
and the call stacks / call-graph text built from entry and return events."""

from __future__ import annotations

import io
import os

import pytest

from tracewatch.formats.elf_symbols import SymbolError
from tracewatch.script.calltree import CallGraph, CallStacks, duration_mark, format_duration
from tracewatch.sources.uprobes import (
    ProbeSet,
    ProbeSpecError,
    event_name_for,
    function_of_event,
    parse_probe_spec,
    process_threads,
    resolve_library,
    resolve_probes,
)


def _libc() -> str | None:
    for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6"):
        if os.path.exists(p):
            return os.path.realpath(p)
    return None


needs_libc = pytest.mark.skipif(_libc() is None, reason="needs the x86_64 glibc")


# ---------------------------------------------------------------------- parsing

@pytest.mark.parametrize("text,kind,library,function,offset,fetchargs", [
    ("libc:malloc(size=%di:u64)", "p", "libc", "malloc", 0, "size=%di:u64"),
    ("r:libc:malloc ret=$retval:x64", "r", "libc", "malloc", 0, "ret=$retval:x64"),
    ("/usr/bin/python3:_PyEval_EvalFrameDefault", "p", "/usr/bin/python3", "_PyEval_EvalFrameDefault", 0, ""),
    ("libc:open(path=+0(arg1):string, arg2:x32)", "p", "libc", "open", 0, "path=+0(%di):string arg2=%si:x32"),
    ("libc:f(arg1, arg2, arg3, arg4, arg5, arg6)", "p", "libc", "f", 0,
     "arg1=%di:u64 arg2=%si:u64 arg3=%dx:u64 arg4=%cx:u64 arg5=%r8:u64 arg6=%r9:u64"),
    ("libc:f x=+8(+0(%si)):s32 $comm:string", "p", "libc", "f", 0, "x=+8(+0(%si)):s32 arg2=$comm:string"),
    ("p:libc:malloc+0x4", "p", "libc", "malloc", 4, ""),
    ("u:./prog:work_*", "p", "./prog", "work_*", 0, ""),
    ("work", "p", None, "work", 0, ""),
    ("libc:malloc@@GLIBC_2.2.5(n=arg1:u32)", "p", "libc", "malloc@@GLIBC_2.2.5", 0, "n=%di:u32"),
    ("r:prog:f $retval", "r", "prog", "f", 0, "ret=$retval:u64"),
    ("libc:f(a=%di:u8[4])", "p", "libc", "f", 0, "a=%di:u8[4]"),
])
def test_parse(text, kind, library, function, offset, fetchargs):
    spec = parse_probe_spec(text)
    assert (spec.kind, spec.library, spec.function, spec.offset, spec.fetchargs) == \
        (kind, library, function, offset, fetchargs)
    assert not spec.kernel


def test_parse_kernel_and_pattern():
    assert parse_probe_spec("k:vfs_read").kernel
    assert parse_probe_spec("libc:str*").is_pattern
    assert not parse_probe_spec("libc:strlen").is_pattern


@pytest.mark.parametrize("text,message", [
    ("", "empty probe spec"),
    ("libc:malloc($retval)", r"\$retval is only known at the return: use an r: probe"),
    ("libc:malloc(a=%di:float)", "unknown type 'float'"),
    ("libc:malloc(arg7)", "only the first 6 arguments are in registers"),
    ("r:libc:malloc+4", "a return probe is at the function's return; it takes no \\+OFFSET"),
    ("libc:malloc(common_pid=%di)", "field name 'common_pid' is taken"),
    ("libc:malloc(__probe_ip=%di)", "field name '__probe_ip' is taken"),
    ("libc:malloc(a=%di, a=%si)", "two arguments are named 'a'"),
    ("libc:malloc(x=1)", "cannot read '1'"),
    ("libc:malloc(x=%di", r"'\(' without its '\)'"),
    (":malloc", "empty library name"),
    ("libc:", "no function name"),
    ("libc:a/b", "is not a function name or glob"),
])
def test_parse_errors(text, message):
    with pytest.raises(ProbeSpecError, match=message):
        parse_probe_spec(text)


def test_event_names():
    assert event_name_for("malloc@@GLIBC_2.2.5") == "malloc"
    assert event_name_for("foo.cold") == "foo_cold"
    assert event_name_for("9lives") == "f_9lives"
    assert len(event_name_for("x" * 200)) < 64 - len("__return")
    assert function_of_event("malloc__return") == ("malloc", "r")
    assert function_of_event("malloc") == ("malloc", "p")


# ---------------------------------------------------------------------- libraries

@needs_libc
def test_resolve_library_like_the_linker():
    libc = _libc()
    assert resolve_library("libc") == libc
    assert resolve_library("c") == libc
    assert resolve_library("libc.so.6") == libc
    assert resolve_library(libc) == libc
    # through a process's own mappings: this Python has the libc mapped
    assert os.path.basename(resolve_library("libc", pid=os.getpid())).startswith("libc")


def test_resolve_library_missing():
    with pytest.raises(ProbeSpecError, match=r"cannot find library 'libnosuchlib' \(searched .*ldconfig -p"):
        resolve_library("libnosuchlib")
    with pytest.raises(ProbeSpecError, match="no such library or program: /no/such/lib.so"):
        resolve_library("/no/such/lib.so")


def test_process_threads():
    assert os.getpid() in process_threads(os.getpid())


def test_kernel_function_without_kprobes(tmp_path):
    # a tracefs with no kprobe_events
    with pytest.raises(ProbeSpecError, match=r"^kernel function tracing is unavailable here: this kernel has "
                                             r"no kprobes \(no kprobe_events in tracefs\)$"):
        resolve_probes(["k:vfs_read"], tracefs_path=str(tmp_path))
    with pytest.raises(ProbeSpecError, match=r"unavailable here.*for a user function name its library"):
        resolve_probes(["vfs_read"], tracefs_path=str(tmp_path))


# ---------------------------------------------------------------------- resolution

@needs_libc
def test_resolve_and_install_definitions():
    class FakeInstance:
        uprobe_group = "tracewatch_1_0"

        def __init__(self):
            self.lines = []

        def add_uprobes(self, probes):
            names = []
            for event, location, fetchargs, ret in probes:
                self.lines.append(f"{'r' if ret else 'p'}:{self.uprobe_group}/{event} {location} {fetchargs}".rstrip())
                names.append(f"{self.uprobe_group}:{event}")
            return names

    probes = ProbeSet.from_specs(["libc:malloc(size=arg1)", "libc:__libc_malloc", "libc:free"], both=True)
    # __libc_malloc is malloc (same address): one probe, not two
    assert [p.event for p in probes.probes] == ["malloc", "malloc__return", "free", "free__return"]
    assert probes.functions == ["malloc", "free"]
    inst = FakeInstance()
    events = probes.install(inst)
    assert events == [f"tracewatch_1_0:{e}" for e in ("malloc", "malloc__return", "free", "free__return")]
    off = probes.probes[0].offset
    assert inst.lines[0] == f"p:tracewatch_1_0/malloc {_libc()}:{off:#x} size=%di:u64"
    assert inst.lines[1] == f"r:tracewatch_1_0/malloc__return {_libc()}:{off:#x}"  # no entry args at return
    assert probes.probe_for("tracewatch_1_0", "free__return").kind == "r"
    assert probes.probe_for("other", "free") is None


@needs_libc
def test_glob_limit():
    with pytest.raises(ProbeSpecError, match=r"matches \d+ functions; .* more than the limit of 10 probes"):
        resolve_probes(["libc:*"], max_probes=10)


@needs_libc
def test_glob_no_match():
    with pytest.raises(SymbolError, match=r"no function matches 'zzz_nothing_\*'"):
        resolve_probes(["libc:zzz_nothing_*"])


# ---------------------------------------------------------------------- call stacks and graphs

def test_call_stacks_nesting_and_trouble():
    st = CallStacks()
    assert st.enter(1, "outer", 100) == 0
    assert st.enter(1, "inner", 110) == 1
    assert st.enter(2, "outer", 105) == 0  # another thread
    call, lost = st.exit(1, "inner", 130)
    assert (call.function, call.duration, call.depth, lost) == ("inner", 20, 1, [])
    assert st.exit(1, "nothing", 140) is None and st.orphans == 1
    st.enter(1, "a", 150)
    st.enter(1, "b", 160)
    call, lost = st.exit(1, "outer", 200)  # a and b never returned
    assert (call.duration, call.depth) == (100, 0)
    assert [(c.function, c.depth, c.duration) for c in lost] == [("b", 2, None), ("a", 1, None)]
    assert st.counters() == {"completed": 2, "orphans": 1, "unreturned": 2, "overflows": 0, "open": 1}
    assert [(c.tid, c.function) for c in st.open_calls()] == [(2, "outer")]


def test_recursion_pairs_innermost_first():
    st = CallStacks()
    st.enter(1, "fib", 0)
    st.enter(1, "fib", 10)
    assert st.exit(1, "fib", 15)[0].duration == 5
    assert st.exit(1, "fib", 40)[0].duration == 40


def test_duration_marks():
    assert [duration_mark(n) for n in (500, 20_000, 200_000, 2_000_000, 20_000_000, 200_000_000, 2_000_000_000)] \
        == [" ", "+", "!", "#", "*", "@", "$"]
    assert format_duration(1234) == "      1.234 us"
    assert format_duration(None) == " " * 14


def test_call_graph_text():
    out = io.StringIO()
    g = CallGraph(out, comm=lambda tid: "prog")
    g.enter(7, "outer", 0)
    g.enter(7, "leaf", 1000)
    g.exit(7, "leaf", 2500)
    g.enter(7, "leaf", 3000)
    g.exit(7, "leaf", 3500)
    g.exit(7, "outer", 150_000)
    g.enter(7, "open", 200_000)
    g.finish(now=300_000)
    assert out.getvalue() == (
        "thread 7 (prog)\n"
        "    DURATION   |  FUNCTION CALLS\n"
        "               |  outer() {\n"
        "      1.500 us |    leaf();\n"
        "      0.500 us |    leaf();\n"
        "!   150.000 us |  } /* outer */\n"
        "               |  open() {\n"
        "+   100.000 us |  } /* open: still running at the end */\n"
    )


def test_call_graph_stream_and_lost_returns():
    out = io.StringIO()
    g = CallGraph(out, by_thread=False)
    g.enter(3, "a", 0)
    g.enter(3, "b", 10)
    g.exit(3, "a", 50)  # b's return was lost
    assert out.getvalue().splitlines() == [
        "      3                |  a() {",
        "      3                |    b() {",
        "      3                |    } /* b: no return seen */",
        "      3       0.050 us |  } /* a */",
    ]


def test_call_graph_bounded():
    out = io.StringIO()
    g = CallGraph(out, max_lines=3)
    for i in range(5):
        g.enter(1, "f", i * 10)
        g.exit(1, "f", i * 10 + 5)
    g.finish()
    lines = out.getvalue().splitlines()
    assert lines[-1] == "... 2 more lines not kept (max_lines=3)"
    assert len([ln for ln in lines if ln.endswith("f();")]) == 3
