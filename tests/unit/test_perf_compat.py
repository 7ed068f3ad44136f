"""perf-script compatibility: perf's argument conventions, print fmt tables, helper modules.

Expected values marked "perf 6.1" were observed with the real ``perf script -s``
on a ``perf record`` of the same kernel events.
"""

from __future__ import annotations

import struct
import textwrap

import numpy as np

from tests.conftest import fixture_path
from tracewatch import open_trace
from tracewatch.formats.event_format import parse_event_format
from tracewatch.script.perf_compat import PERF_TRACE_DIR, is_perf_script, prepare_perf_environment
from tracewatch.script.perf_compat.arguments import HandlerAdapterFactory, perf_comm_lookup, wants_sample_dict
from tracewatch.script.perf_compat.context import PerfContext
from tracewatch.script.perf_compat.print_tables import WalkState, symbol_definitions
from tracewatch.stream.batch import event_layout
from tracewatch.tools import run

SCHED_SWITCH = '''name: sched_switch
ID: 316
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:int prev_prio;\toffset:28;\tsize:4;\tsigned:1;
\tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;
\tfield:char next_comm[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:pid_t next_pid;\toffset:56;\tsize:4;\tsigned:1;
\tfield:int next_prio;\toffset:60;\tsize:4;\tsigned:1;

print fmt: "prev_comm=%s prev_pid=%d prev_prio=%d prev_state=%s%s ==> next_comm=%s next_pid=%d next_prio=%d", REC->prev_comm, REC->prev_pid, REC->prev_prio, (REC->prev_state & ((((0x00000000 | 0x00000001 | 0x00000002 | 0x00000004 | 0x00000008 | 0x00000010 | 0x00000020 | 0x00000040) + 1) << 1) - 1)) ? __print_flags(REC->prev_state & ((((0x00000000 | 0x00000001 | 0x00000002 | 0x00000004 | 0x00000008 | 0x00000010 | 0x00000020 | 0x00000040) + 1) << 1) - 1), "|", { 0x00000001, "S" }, { 0x00000002, "D" }, { 0x00000004, "T" }, { 0x00000008, "t" }, { 0x00000010, "X" }, { 0x00000020, "Z" }, { 0x00000040, "P" }, { 0x00000080, "I" }) : "R", REC->prev_state & (((0x00000000 | 0x00000001 | 0x00000002 | 0x00000004 | 0x00000008 | 0x00000010 | 0x00000020 | 0x00000040) + 1) << 1) ? "+" : "", REC->next_comm, REC->next_pid, REC->next_prio
'''

SYS_ENTER = '''name: sys_enter
ID: 22
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:long id;\toffset:8;\tsize:8;\tsigned:1;
\tfield:unsigned long args[6];\toffset:16;\tsize:48;\tsigned:0;

print fmt: "NR %ld (%lx, %lx, %lx, %lx, %lx, %lx)", REC->id, REC->args[0], REC->args[1], REC->args[2], REC->args[3], REC->args[4], REC->args[5]
'''


def tables(defs):
    """define_* calls -> {(function, field): {value: name}} plus the field definitions."""
    out: dict = {}
    for func, args in defs:
        if func.endswith("_value"):
            out.setdefault((func, args[1]), {})[args[2]] = args[3]
        else:
            out[(func, args[1])] = args[2:]
    return out


def test_sched_switch_flags_as_perf_defines_them():
    got = tables(symbol_definitions(parse_event_format(SCHED_SWITCH, "sched")))
    assert got[("define_flag_field", "prev_state")] == ("|",)
    # perf 6.1: {0: '', 1: 'S', ...}: the last constant of the walk names value 0
    assert got[("define_flag_value", "prev_state")] == {
        0: "", 1: "S", 2: "D", 4: "T", 8: "t", 16: "X", 32: "Z", 64: "P", 128: "I"}


def test_constants_define_flag_value_zero_of_the_current_field():
    # perf 6.1: flag_fields['raw_syscalls__sys_enter']['args']['values'] == {0: '5'}
    defs = symbol_definitions(parse_event_format(SYS_ENTER, "raw_syscalls"))
    assert tables(defs) == {("define_flag_value", "args"): {0: "5"}}


def test_symbolic_tables_and_unparsable_formats():
    text = SYS_ENTER.replace("raw", "").split("print fmt:")[0] + (
        'print fmt: "vec=%u [action=%s]", REC->id, __print_symbolic(REC->id, { 0, "HI" }, '
        '{ (1 << 3), "HRTIMER" }, { NET_RX_SOFTIRQ, "NET_RX" }, { UNKNOWN_ENUM, "X" })\n')
    got = tables(symbol_definitions(parse_event_format(text, "irq")))
    assert got[("define_symbolic_field", "id")] == ()
    assert got[("define_symbolic_value", "id")] == {0: "X", 8: "HRTIMER", 3: "NET_RX"}
    broken = text.split("print fmt:")[0] + 'print fmt: "%d", no_such_function(REC->id)\n'
    assert symbol_definitions(parse_event_format(broken, "irq")) == []


def test_current_field_carries_over_between_event_types():
    state = WalkState()
    symbol_definitions(parse_event_format(SYS_ENTER, "raw_syscalls"), state)
    assert state.current_field == "args"


def test_fixture_formats_all_parse(fixtures_dir):
    from tracewatch.sources.file import FileSource

    with FileSource(str(fixture_path("e_mixed.v6.dat"))) as src:
        by_name = {f.name: f for f in src.formats.values()}
        got = tables(symbol_definitions(by_name["kmalloc"]))
    flags = got[("define_flag_value", "gfp_flags")]
    assert flags[(1 << 10) | (1 << 11) | (1 << 6) | (1 << 7)] == "GFP_KERNEL"
    assert got[("define_flag_field", "gfp_flags")] == ("|",)


class FakeBatch:
    """A one-row stand-in for EventBatch: what the perf adapters read from a batch."""

    def __init__(self, fmt, payload: bytes) -> None:
        self.fmt = fmt
        self.payload = payload

    def __len__(self) -> int:
        return 1

    def payload_(self, i: int) -> bytes:
        return self.payload

    def raw_(self, name: str) -> np.ndarray:
        f = self.fmt.field(name)
        return np.frombuffer(self.payload[f.offset : f.offset + f.size], np.uint8).reshape(1, f.size)


def make_event(fmt, payload: bytes, ts: int, cpu: int) -> tuple:
    """An Event-shaped tuple (see event_layout): the eager fields, ts, cpu, batch, row."""
    values = dict(fmt.unpack(payload), common_ts=ts, common_cpu=cpu)
    layout = event_layout(fmt)
    row = [None] * len(layout)
    for name, i in layout.items():
        row[i] = values[name]
    return tuple(row + [FakeBatch(fmt, payload), 0])


def test_handler_arguments_follow_perf():
    fmt = parse_event_format(SCHED_SWITCH, "sched")
    payload = struct.pack("<HBBi16sii q16sii", 316, 1, 2, 42, b"bash\0\0\0\0\0\0\0\0\0\0\0\xff",
                          42, -6, 1, b"swapper/0\0\0\0\0\0\0\0", 0, 120)
    calls = []

    def sched__sched_switch(event_name, context, common_cpu, common_secs, common_nsecs, common_pid,
                            common_comm, common_callchain, *fields):
        calls.append((event_name, common_cpu, common_secs, common_nsecs, common_pid, common_comm,
                      common_callchain, fields, context.event is not None))

    factory = HandlerAdapterFactory(PerfContext(), perf_comm_lookup({42: "bash"}))
    factory.handler(fmt, sched__sched_switch)(make_event(fmt, payload, 5_000_000_123, 1))
    name, cpu, secs, nsecs, pid, comm, chain, fields, has_ctx = calls[0]
    assert (name, cpu, secs, nsecs, pid, comm, chain, has_ctx) == (
        "sched__sched_switch", 1, 5, 123, 42, "bash", [], True)
    prev_comm, prev_pid, prev_prio, prev_state, next_comm, next_pid, next_prio = fields
    # last byte not NUL: perf's is_printable_array() refuses it, so a bytearray of all 16 bytes
    assert prev_comm == bytearray(b"bash" + b"\0" * 11 + b"\xff")
    assert next_comm == "swapper/0"
    assert prev_prio == 4294967290  # a signed int is zero-extended, as perf 6.1 passes it
    assert (prev_pid, prev_state, next_pid, next_prio) == (42, 1, 0, 120)


def test_numeric_arrays_are_bytearrays_and_sample_dict_by_arity():
    fmt = parse_event_format(SYS_ENTER, "raw_syscalls")
    payload = struct.pack("<HHiq6Q", 22, 0, 7, 16, 7, 0, 0, 0, 0, 0)
    got = {}

    def raw_syscalls__sys_enter(event_name, context, common_cpu, common_secs, common_nsecs, common_pid,
                                common_comm, common_callchain, id, args, perf_sample_dict):
        got.update(id=id, args=args, comm=common_comm, d=perf_sample_dict)

    assert wants_sample_dict(raw_syscalls__sys_enter, 10)
    factory = HandlerAdapterFactory(PerfContext(), perf_comm_lookup({}))
    factory.handler(fmt, raw_syscalls__sys_enter)(make_event(fmt, payload, 10, 0))
    assert got["id"] == 16 and got["args"] == bytearray(payload[16:64]) and isinstance(got["args"], bytearray)
    assert got["comm"] == ":7"  # perf's name for a thread whose comm it never saw
    d = got["d"]
    assert d["ev_name"] == "raw_syscalls:sys_enter" and d["raw_buf"] == payload
    assert d["sample"]["time"] == 10 and d["sample"]["pid"] == 7 and d["callchain"] == []


def test_trace_unhandled_gets_perf_keys(tmp_path, capsys):
    script = tmp_path / "unhandled.py"
    script.write_text(textwrap.dedent("""
        seen = {}
        def trace_unhandled(event_name, context, event_fields_dict):
            seen.setdefault(event_name, event_fields_dict)
        def sched__sched_switch(*args):
            pass
        def trace_end():
            d = seen["sched__sched_process_exec"]
            print(sorted(d), type(d["filename"]).__name__, "sched__sched_switch" in seen)
    """))
    rc = run.main([str(script), "-i", str(fixture_path("b_sched.v6.dat"))])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.strip() == ("['common_callchain', 'common_comm', 'common_cpu', 'common_ns', 'common_pid', "
                           "'common_s', 'filename', 'old_pid', 'pid'] str False")


def test_flag_str_and_symbol_str_after_a_run(tmp_path, capsys):
    script = tmp_path / "flags.py"
    script.write_text(textwrap.dedent("""
        import os, sys
        sys.path.append(os.environ['PERF_EXEC_PATH'] + '/scripts/python/Perf-Trace-Util/lib/Perf/Trace')
        from perf_trace_context import *
        from Core import *
        out = []
        def irq__softirq_entry(event_name, context, common_cpu, common_secs, common_nsecs,
                               common_pid, common_comm, common_callchain, vec):
            if not out:
                out.append((vec, symbol_str(event_name, "vec", vec), common_pc(context) >= 0))
        def trace_end():
            print(out[0], flag_str("kmem__kmalloc", "gfp_flags", 0x800 | 0x2000))
    """))
    rc = run.main([str(script), "-i", str(fixture_path("e_mixed.v6.dat"))])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.strip() == "(7, 'SCHED', True)"  # kmalloc has no handler: its table is not defined


def test_helper_modules():
    prepare_perf_environment()
    import Core
    import Util

    assert Core.__file__.startswith(PERF_TRACE_DIR)
    assert Util.syscall_name(0) == "read" and Util.syscall_name(99999) == "99999"
    assert Util.strerror(-2) == "ENOENT"
    assert Util.nsecs_str(1_000_000_005) == ("    1.000000005",)
    Core.define_flag_field("ev", "f", "|")
    for value, name in ((0, "NONE"), (1, "A"), (2, "B")):
        Core.define_flag_value("ev", "f", value, name)
    assert Core.flag_str("ev", "f", 3) == "A | B" and Core.flag_str("ev", "f", 0) == "NONE"
    d = Core.autodict()
    d["a"]["b"] = 1
    assert d["a"]["b"] == 1


def test_is_perf_script():
    def sched__sched_switch(*a):
        pass

    sched__sched_switch.__module__ = "__main__"
    assert is_perf_script({"__name__": "__main__", "sched__sched_switch": sched__sched_switch})
    assert not is_perf_script({"__name__": "__main__", "helper": len})


def test_array_arguments_converted_a_batch_at_a_time_match_each_record():
    # every event of a fixture with many event types (strings, __data_loc, numeric arrays):
    # the values the adapters pass equal the conversion of each record's own bytes
    path = str(fixture_path("e_mixed.v6.dat"))
    factory = HandlerAdapterFactory(PerfContext(), perf_comm_lookup({}))
    readers = {}
    checked = 0
    with open_trace(path) as t:
        for ev in t.events():
            fmt = ev.format_
            if fmt.id not in readers:
                readers[fmt.id] = factory.field_values(fmt)
            names, values = readers[fmt.id]
            got = dict(zip(names, values(ev)))
            payload = ev.payload_()
            for f in fmt.event_fields:
                if not f.is_array:
                    continue
                if f.is_dynamic or f.array_len == 0:
                    s, n = f.data_span(payload, True)
                    raw = payload[s : s + n]
                else:
                    raw = payload[f.offset : f.offset + f.size]
                text_like = any(w in f.type for w in ("char", "u8", "s8"))
                if text_like and raw and raw[-1] == 0 and all(
                        0x20 <= c < 0x7F or c in b"\t\n\v\f\r" for c in raw[: raw.index(0)]):
                    want = raw[: raw.index(0)].decode("ascii")
                else:
                    want = bytearray(raw)
                assert got[f.name] == want and type(got[f.name]) is type(want), (fmt.full_name, f.name)
                checked += 1
    assert checked > 1000
