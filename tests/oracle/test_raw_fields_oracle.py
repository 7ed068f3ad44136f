"""``report -R`` fields against libtraceevent (through ctypes) where traces of other machines
showed rules the x86 fixtures never hit (third-party/lisa_example_rtapp.dat, langraph_v7.dat):

* ftrace:bprint has no print_cache (its format comes from each record): every field
  prints raw, ``ip`` and ``fmt`` as hex, ``buf`` as ``0`` (old ``u32 buf;``) or ``ARRAY[]``;
* a field that is not an array given to ``%s`` (old kernels' ``char buf;`` of size 0,
  bputs' ``const char *str``) prints through print_str_arg: the rest of the record,
  or a printk string / bare hex for a long-sized field; ``%pM`` & co. print their bytes;
* where the record ends before a field does, raw printing reads on into the page,
  while a print fmt conversion takes 0.

Each case hands libtraceevent the record followed by the bytes that follow it in its
page (``size`` is the record's own), as trace-cmd does.
"""

from __future__ import annotations

import ctypes
import shutil
import struct

import pytest

from tests.oracle.test_print_fmt_oracle import HEADER, LibTraceEvent, _TepRecord, _TraceSeq
from tests.oracle.written_traces import our_text, trace_cmd_text, write_trace
from tracewatch.testing.page_builder import PageBuilder
from tracewatch.formats.report_text import ReportFormatter
from tracewatch.formats.event_format import parse_event_format
from tracewatch.formats.symbols import KernelSymbols, TraceSymbols

KALLSYMS = "ffffffff81000000 T _stext\nffffffff81001000 T do_work\nffffffff81002000 t helper\n"
PRINTK_ADDR = 0xFFFFFFFF82000040
PRINTK = f'0x{PRINTK_ADDR:x} : "hello from bputs\\n"\n'
IP = 0xFFFFFFFF81001234


class _RawOracle(LibTraceEvent):
    """libtraceevent's -R text of a record of any system, with bytes after the record."""

    def raw(self, system: str, format_text: str, payload: bytes, after: bytes = b"") -> bytes:
        buf = format_text.encode()
        self.lib.tep_parse_event(self.tep, buf, len(buf), system.encode())
        data = ctypes.create_string_buffer(payload + after, len(payload) + len(after))
        rec = _TepRecord()
        rec.size = rec.record_size = len(payload)
        rec.data = ctypes.cast(data, ctypes.c_void_p)
        seq = _TraceSeq()
        self.lib.trace_seq_init(ctypes.byref(seq))
        self.lib.tep_print_event(self.tep, ctypes.byref(seq), ctypes.byref(rec), b"%s", b"INFO_RAW")
        self.lib.trace_seq_terminate(ctypes.byref(seq))
        out = ctypes.string_at(seq.buffer, seq.len)
        self.lib.trace_seq_destroy(ctypes.byref(seq))
        return out


def _ours(system: str, format_text: str, payload: bytes, after: bytes = b"") -> bytes:
    fmt = parse_event_format(format_text, system)
    kallsyms = KernelSymbols.parse(KALLSYMS)
    symbols = TraceSymbols(kallsyms=kallsyms, printk_formats={PRINTK_ADDR: "hello from bputs\\n"})
    text = ReportFormatter(symbols, {fmt.id: fmt}, raw=True).raw_fields(payload, fmt, after=after)
    return text.encode("utf-8", "surrogateescape")


def _oracle() -> _RawOracle:
    try:
        return _RawOracle(kallsyms=KALLSYMS, printk=PRINTK)
    except OSError as e:
        pytest.skip(str(e))


def _format(name: str, event_id: int, fields: str, print_fmt: str) -> str:
    return f"name: {name}\nID: {event_id}\nformat:\n{HEADER}\n{fields}\nprint fmt: {print_fmt}\n"


def _common(event_id: int) -> bytes:
    return struct.pack("<HBBi", event_id, 0, 0, 4242)


# (system, name, fields, print fmt, payload after the common header, bytes after the record)
FTRACE_CASES = {
    # arm64 4.x kernels: "u32 buf;" (no brackets) and "char buf;", both of size 0
    "bprint-old": ("ftrace", "bprint",
                   "\tfield:unsigned long ip;\toffset:8;\tsize:8;\tsigned:0;\n"
                   "\tfield:const char * fmt;\toffset:16;\tsize:8;\tsigned:0;\n"
                   "\tfield:u32 buf;\toffset:24;\tsize:0;\tsigned:0;\n",
                   '"%ps: %s", (void *)REC->ip, REC->fmt',
                   struct.pack("<QQII", IP, PRINTK_ADDR, 7, 9), b""),
    "bprint-new": ("ftrace", "bprint",
                   "\tfield:unsigned long ip;\toffset:8;\tsize:8;\tsigned:0;\n"
                   "\tfield:const char * fmt;\toffset:16;\tsize:8;\tsigned:0;\n"
                   "\tfield:u32 buf[];\toffset:24;\tsize:0;\tsigned:0;\n",
                   '"%ps: %s", (void *)REC->ip, REC->fmt',
                   struct.pack("<QQII", IP, PRINTK_ADDR, 7, 9), b""),
    "print-old": ("ftrace", "print",
                  "\tfield:unsigned long ip;\toffset:8;\tsize:8;\tsigned:0;\n"
                  "\tfield:char buf;\toffset:16;\tsize:0;\tsigned:0;\n",
                  '"%ps: %s", (void *)REC->ip, REC->buf',
                  struct.pack("<Q", IP) + b"TRACE_MARKER_START\n\0\0\0\0\0", b"page bytes\0"),
    "print-old-no-nul": ("ftrace", "print",
                         "\tfield:unsigned long ip;\toffset:8;\tsize:8;\tsigned:0;\n"
                         "\tfield:char buf;\toffset:16;\tsize:0;\tsigned:0;\n",
                         '"%ps: %s", (void *)REC->ip, REC->buf',
                         struct.pack("<Q", IP) + b"no terminator", b" - page bytes\0"),
    "print-new": ("ftrace", "print",
                  "\tfield:unsigned long ip;\toffset:8;\tsize:8;\tsigned:0;\n"
                  "\tfield:char buf[];\toffset:16;\tsize:0;\tsigned:0;\n",
                  '"%ps: %s", (void *)REC->ip, REC->buf',
                  struct.pack("<Q", IP) + b"marker\n\0\0", b""),
    "bputs-printk": ("ftrace", "bputs",
                     "\tfield:unsigned long ip;\toffset:8;\tsize:8;\tsigned:0;\n"
                     "\tfield:const char * str;\toffset:16;\tsize:8;\tsigned:0;\n",
                     '"%ps: %s", (void *)REC->ip, REC->str',
                     struct.pack("<QQ", IP, PRINTK_ADDR), b""),
    "bputs-unknown": ("ftrace", "bputs",
                      "\tfield:unsigned long ip;\toffset:8;\tsize:8;\tsigned:0;\n"
                      "\tfield:const char * str;\toffset:16;\tsize:8;\tsigned:0;\n",
                      '"%ps: %s", (void *)REC->ip, REC->str',
                      struct.pack("<QQ", IP, 0xFFFFFFFF82000999), b""),
    # scalars given to %s, %-10s and pointer conversions that print bytes
    "scalar-strings": ("test", "scalar_strings",
                       "\tfield:unsigned long addr;\toffset:8;\tsize:8;\tsigned:0;\n"
                       "\tfield:int word;\toffset:16;\tsize:4;\tsigned:1;\n"
                       "\tfield:unsigned int tail;\toffset:20;\tsize:4;\tsigned:0;\n",
                       '"a=%s w=%-10s| t=%5s", REC->addr, REC->word, REC->tail',
                       struct.pack("<Q", PRINTK_ADDR) + b"abc\0" + b"wxyz", b"PAGE\0"),
    "pointer-bytes": ("test", "pointer_bytes",
                      "\tfield:unsigned long mac;\toffset:8;\tsize:8;\tsigned:0;\n"
                      "\tfield:unsigned int v4;\toffset:16;\tsize:4;\tsigned:0;\n"
                      "\tfield:unsigned long p;\toffset:24;\tsize:8;\tsigned:0;\n",
                      '"mac=%pM ip=%pI4 p=%pK", REC->mac, REC->v4, REC->p',
                      bytes([0, 0x1B, 0x21, 0xAB, 0xCD, 0xEF, 0, 0, 192, 168, 1, 7, 0, 0, 0, 0])
                      + struct.pack("<Q", IP), b""),
    # ftrace:kernel_stack of 5 entries in a record that ends at its page's end
    "array-past-record": ("ftrace", "kernel_stack",
                          "\tfield:int size;\toffset:8;\tsize:4;\tsigned:1;\n"
                          "\tfield:unsigned long caller[8];\toffset:16;\tsize:64;\tsigned:0;\n",
                          '"\\t=> %ps\\n\\t=> %ps\\n", (void *)REC->caller[0], (void *)REC->caller[1]',
                          struct.pack("<i4x5Q", 5, IP, IP + 8, IP + 16, IP + 24, IP + 32),
                          bytes(range(0x80, 0x98))),
    # raw scalars past the record's end read the page, converted ones are 0
    "scalars-past-record": ("test", "scalars_past",
                            "\tfield:int a;\toffset:8;\tsize:4;\tsigned:1;\n"
                            "\tfield:unsigned int b;\toffset:12;\tsize:4;\tsigned:0;\n"
                            "\tfield:unsigned long c;\toffset:16;\tsize:8;\tsigned:0;\n"
                            "\tfield:unsigned long d;\toffset:24;\tsize:8;\tsigned:0;\n"
                            "\tfield:short e;\toffset:32;\tsize:2;\tsigned:1;\n",
                            '"a=%d c=%lx d=%ps", REC->a, REC->c, REC->d',
                            struct.pack("<iIi", -5, 77, 0x11223344),
                            bytes(range(0xA0, 0xC0))),
}


@pytest.mark.oracle
@pytest.mark.parametrize("case", sorted(FTRACE_CASES))
def test_raw_fields_match_libtraceevent(case: str) -> None:
    system, name, fields, print_fmt, body, after = FTRACE_CASES[case]
    event_id = 500 + sorted(FTRACE_CASES).index(case)
    text = _format(name, event_id, fields, print_fmt)
    payload = _common(event_id) + body
    expected = _oracle().raw(system, text, payload, after)
    assert _ours(system, text, payload, after) == expected


def test_bprint_prints_hex_where_its_print_fmt_says_ps() -> None:
    # the premise of the bprint rule, independent of the library
    system, name, fields, print_fmt, body, after = FTRACE_CASES["bprint-old"]
    text = _format(name, 6, fields, print_fmt)
    assert _ours(system, text, _common(6) + body) == (f" ip=0x{IP:x} fmt=0x{PRINTK_ADDR:x} buf=0").encode()


def test_fixed_array_past_the_record_shows_the_page_bytes() -> None:
    system, name, fields, print_fmt, body, after = FTRACE_CASES["array-past-record"]
    text = _format(name, 12, fields, print_fmt)
    ours = _ours(system, text, _common(12) + body, after).decode()
    assert ours.endswith(", 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 8a, 8b, 8c, 8d, 8e, 8f, 90, 91, 92, 93, 94, 95, 96, 97]")
    # past the page (no bytes after the record known): zeros
    assert _ours(system, text, _common(12) + body).decode().endswith(", 00" * 24 + "]")


# ---------------------------------------------------------------------------
# ftrace:function through trace-cmd itself: the function plugin's indentation

FUNCTION_FORMAT = """name: function
ID: 1
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:1;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned long ip;\toffset:8;\tsize:8;\tsigned:0;
\tfield:unsigned long parent_ip;\toffset:16;\tsize:8;\tsigned:0;

print fmt: " %ps <-- %ps", (void *)REC->ip, (void *)REC->parent_ip
"""
FUNCTION_KALLSYMS = "".join(f"ffffffff8100{n:x}000 T f{n}\n" for n in range(10))


def _function_calls() -> list[tuple[int, int, int]]:
    """(cpu, function, parent) numbers (f0..f9; 10: no symbol) of calls going deeper,
    back up, jumping to unknown parents and interleaving two CPUs."""
    return [(0, 1, 0), (0, 2, 1), (0, 3, 2), (1, 5, 4), (0, 4, 3), (0, 2, 1), (1, 6, 5), (0, 6, 9),
            (0, 7, 6), (0, 3, 2), (1, 10, 6), (1, 7, 6), (0, 8, 7), (0, 9, 8), (1, 4, 10), (0, 2, 9)]


@pytest.mark.oracle
@pytest.mark.skipif(shutil.which("trace-cmd") is None, reason="trace-cmd is not installed")
def test_function_events_match_trace_cmd(tmp_path) -> None:
    def address(n: int) -> int:
        return 0xFFFFFFFF82000000 if n == 10 else 0xFFFFFFFF81000000 + n * 0x1000 + 0x10

    pages = {0: PageBuilder(), 1: PageBuilder()}
    for step, (cpu, func, parent) in enumerate(_function_calls()):
        pages[cpu].add(1000 * (step + 1), struct.pack("<HBBiQQ", 1, 0, 0, 77, address(func), address(parent)))
    path = write_trace(tmp_path / "function.dat", pages, ftrace_formats=[FUNCTION_FORMAT], event_formats={},
                       kallsyms=FUNCTION_KALLSYMS)
    ours, theirs = our_text(path), trace_cmd_text(path)
    assert "   f3" in theirs  # the premise: the plugin indents
    assert ours == theirs


# ---------------------------------------------------------------------------
# the time column of counter clocks, and of a TSC clock that TSC2NSEC converts

@pytest.mark.oracle
@pytest.mark.skipif(shutil.which("trace-cmd") is None, reason="trace-cmd is not installed")
@pytest.mark.parametrize("clock,tsc2nsec", [("[x86-tsc] counter", False), ("local [counter]", False),
                                            ("[x86-tsc] local", True)])
def test_time_column_matches_trace_cmd(tmp_path, clock: str, tsc2nsec: bool) -> None:
    # counters: "%12d" (no space after "[cpu]"; libtraceevent's 10**12 precision overflows
    # and it prints the plain count); TSC2NSEC: ns, so secs.usecs again
    import subprocess
    import sys

    from tracewatch.formats.tracedat_writer import OPT_TSC2NSEC

    pages = PageBuilder()
    for step, ts in enumerate((5, 123_456_789, 303_280_081_900_681, 10**15 + 7)):
        pages.add(ts, struct.pack("<HBBiQQ", 1, 0, 0, 77, 0xFFFFFFFF81001010, 0xFFFFFFFF81000010))
    extra = [(OPT_TSC2NSEC, struct.pack("<IIQ", 735842807, 31, 0))] if tsc2nsec else []
    path = write_trace(tmp_path / "clock.dat", pages, ftrace_formats=[FUNCTION_FORMAT], event_formats={},
                       kallsyms=FUNCTION_KALLSYMS, trace_clock=clock, extra_options=extra)
    for raw in (False, True):
        ours = subprocess.run([sys.executable, "-m", "tracewatch", "report", *(["--raw"] if raw else []), str(path)],
                              capture_output=True, check=True).stdout.decode()
        theirs = trace_cmd_text(path, raw)
        assert ("." in theirs.splitlines()[1].split("]")[1].split(":")[0]) == tsc2nsec  # the premise
        assert ours == theirs


# ---------------------------------------------------------------------------
# kvm_exit / kvm_entry through trace-cmd's kvm plugin

KVM_EXIT_FORMAT = """name: kvm_exit
ID: 2
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned int exit_reason;\toffset:8;\tsize:4;\tsigned:0;
\tfield:unsigned long guest_rip;\toffset:16;\tsize:8;\tsigned:0;
\tfield:u32 isa;\toffset:24;\tsize:4;\tsigned:0;
\tfield:u64 info1;\toffset:32;\tsize:8;\tsigned:0;
\tfield:u64 info2;\toffset:40;\tsize:8;\tsigned:0;

print fmt: "reason %d rip 0x%lx info1 0x%016llx", REC->exit_reason, REC->guest_rip, REC->info1
"""
KVM_ENTRY_FORMAT = """name: kvm_entry
ID: 3
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned int vcpu_id;\toffset:8;\tsize:4;\tsigned:0;
\tfield:unsigned long rip;\toffset:16;\tsize:8;\tsigned:0;

print fmt: "vcpu %u, rip 0x%lx", REC->vcpu_id, REC->rip
"""


@pytest.mark.oracle
@pytest.mark.skipif(shutil.which("trace-cmd") is None, reason="trace-cmd is not installed")
def test_kvm_exit_and_entry_match_trace_cmd(tmp_path) -> None:
    pages = PageBuilder()
    rip = 0xFFFFFFFFBB533D40
    # (exit reason, isa): VMX names, SVM names, EXIT_ERR (-1), unknown numbers and ISAs
    for step, (reason, isa) in enumerate([(1, 1), (48, 1), (0x7C, 2), (0xFFFFFFFF, 2), (3, 1), (77, 2), (1, 3)]):
        pages.add(100 * step + 1, struct.pack("<HBBiIxxxxQIxxxxQQ", 2, 0, 0, 9, reason, rip + step, isa, step, 0xEC))
        pages.add(100 * step + 2, struct.pack("<HBBiIxxxxQ", 3, 0, 0, 9, step % 3, rip + step))
    path = write_trace(tmp_path / "kvm.dat", pages, event_formats={"kvm": [KVM_EXIT_FORMAT, KVM_ENTRY_FORMAT]})
    ours, theirs = our_text(path), trace_cmd_text(path)
    assert "reason EXTERNAL_INTERRUPT rip" in theirs  # the premise: the plugin prints names
    assert ours == theirs


TLB_FLUSH_FORMAT = """name: tlb_flush
ID: 4
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int reason;\toffset:8;\tsize:4;\tsigned:1;
\tfield:unsigned long pages;\toffset:16;\tsize:8;\tsigned:0;

print fmt: "pages:%ld reason:%s (%d)", REC->pages, __print_symbolic(REC->reason, { 0, "flush on task switch" }, { 4, "remote ipi send" }), REC->reason
"""


@pytest.mark.oracle
@pytest.mark.skipif(shutil.which("trace-cmd") is None, reason="trace-cmd is not installed")
def test_tlb_flush_matches_trace_cmd(tmp_path) -> None:
    pages = PageBuilder()
    for step, (reason, count) in enumerate([(0, -1), (1, 7), (2, 0), (3, 1 << 40), (4, 3), (-1, 2)]):
        pages.add(step + 1, struct.pack("<HBBiixxxxq", 4, 0, 0, 9, reason, count))
    path = write_trace(tmp_path / "tlb.dat", pages, event_formats={"tlb": [TLB_FLUSH_FORMAT]})
    ours, theirs = our_text(path), trace_cmd_text(path)
    assert "pages=-1 reason=flush on task switch (0)" in theirs  # the premise: the plugin's text
    assert ours == theirs
