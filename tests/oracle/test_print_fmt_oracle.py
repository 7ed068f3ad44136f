"""PrintFormat against trace-cmd / libtraceevent.

Three oracles, from strongest to broadest:

* ``trace-cmd report -N`` (plugins off) run on every fixture: every record's
  info text must equal ours (skipped without trace-cmd);
* the stored ``X.dat.report.txt`` (plugins on): every record of an event no
  plugin handles must equal ours;
* libtraceevent itself through ctypes, on hand-built formats and payloads that
  exercise the expression and conversion rules, formatted and as ``report -R``
  fields (skipped without the library);
* trace-cmd itself on a hand-built trace.dat, for ``%L``: libtraceevent 1.7.1
  passes an int where printf reads 64 bits, so what it prints depends on the
  calling process (through ctypes the low 32 bits, in trace-cmd the whole value);
* the stored ``trace-cmd report -R`` of an arm64 trace (third-party/) for
  ftrace:bprint (whole third-party reports: test_third_party_oracle.py).

Matching report lines to records: trace-cmd prints ``<header> name: <pad>info``
where the pad makes ``name: `` 22 columns, and removes one trailing newline
from the info.  Info texts may contain newlines (ftrace:print), so records are
matched by position in the whole text, not line by line.

Run as a script for a per-fixture summary:  python tests/oracle/test_print_fmt_oracle.py
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tracewatch.formats.report_text import ReportFormatter, report_lines
from tracewatch.formats.event_format import parse_event_format
from tracewatch.formats.printfmt import PrintFormat
from tracewatch.formats.symbols import KernelSymbols, TraceSymbols

DAT_FILES = {
    "a_syscalls": FIXTURES / "a_syscalls.v6.dat",
    "b_sched": FIXTURES / "b_sched.v6.dat",
    "c_markers": FIXTURES / "c_markers.v6.dat",
    "e_mixed": FIXTURES / "e_mixed.v6.dat",
    "e_mixed.v7z": FIXTURES / "e_mixed.v7z.dat",
    "pages": FIXTURES / "raw-pages" / "pages.v7.dat",
}
STORED_REPORTS = {
    "a_syscalls": FIXTURES / "a_syscalls.v6.dat.report.txt",
    "b_sched": FIXTURES / "b_sched.v6.dat.report.txt",
    "c_markers": FIXTURES / "c_markers.v6.dat.report.txt",
    "e_mixed": FIXTURES / "e_mixed.v6.dat.report.txt",
    "pages": FIXTURES / "raw-pages" / "pages.v7.dat.report.txt",
}
# Events that libtraceevent's plugins (installed with trace-cmd) print themselves.
PLUGIN_EVENTS = {
    ("sched", "sched_switch"), ("sched", "sched_wakeup"), ("sched", "sched_wakeup_new"),
    ("kmem", "kfree"), ("kmem", "kmalloc"), ("kmem", "kmalloc_node"), ("kmem", "kmem_cache_alloc"),
    ("kmem", "kmem_cache_alloc_node"), ("kmem", "kmem_cache_free"),
    ("timer", "hrtimer_expire_entry"), ("timer", "hrtimer_start"),
    ("ftrace", "function"), ("ftrace", "func_repeats"), ("ftrace", "kernel_stack"), ("ftrace", "raw_data"),
    ("syscalls", "sys_enter_futex"), ("tlb", "tlb_flush"),
}

TRACE_CMD = shutil.which("trace-cmd")


def _reader(path: Path):
    tracedat = pytest.importorskip("tracewatch.formats.tracedat")
    return tracedat.TraceDatReader(str(path))


def compare_report(path: Path, report: str, *, skip_plugin_events: bool) -> tuple[int, int, list[str]]:
    """(records compared, records equal, first differences) for one trace.dat."""
    reader = _reader(path)
    symbols = reader.symbols
    compiled: dict[int, PrintFormat] = {}
    pos = report.index("\n") + 1 if report.startswith("cpus=") else 0
    compared = equal = 0
    diffs: list[str] = []
    for rec in reader.records():
        fmt = rec.fmt
        assert fmt is not None, "record without a format"
        marker = " %s: %s" % (fmt.name, " " * max(0, 20 - len(fmt.name)))
        start = report.index(marker, pos) + len(marker)
        pf = compiled.get(fmt.id)
        if pf is None:
            pf = compiled[fmt.id] = PrintFormat.parse(fmt, long_size=symbols.long_size,
                                                      little_endian=symbols.little_endian)
        ours = pf.render(rec.payload, symbols)
        if ours.endswith("\n"):  # trace-cmd report drops one trailing newline
            ours = ours[:-1]
        end = start + len(ours)
        if report.startswith(ours, start) and report[end : end + 1] in ("\n", ""):
            pos = end + 1
            ok = True
        else:
            line_end = report.find("\n", start)
            line_end = len(report) if line_end < 0 else line_end
            pos = line_end + 1
            ok = False
        if skip_plugin_events and (fmt.system, fmt.name) in PLUGIN_EVENTS:
            continue
        compared += 1
        if ok:
            equal += 1
        elif len(diffs) < 10:
            diffs.append(f"{fmt.full_name}\n  trace-cmd: {report[start:pos - 1]!r}\n  ours:      {ours!r}")
    return compared, equal, diffs


def _run_trace_cmd(path: Path) -> str:
    out = subprocess.run([TRACE_CMD, "report", "-N", str(path)], capture_output=True, check=True).stdout
    return out.decode("utf-8", "surrogateescape")


@pytest.mark.skipif(TRACE_CMD is None, reason="trace-cmd is not installed")
@pytest.mark.parametrize("name", sorted(DAT_FILES))
def test_every_record_matches_trace_cmd_without_plugins(name: str) -> None:
    path = DAT_FILES[name]
    if not path.exists():
        pytest.skip(f"{path} missing")
    compared, equal, diffs = compare_report(path, _run_trace_cmd(path), skip_plugin_events=False)
    assert compared > 0
    assert equal == compared, f"{compared - equal} of {compared} differ:\n" + "\n".join(diffs)


@pytest.mark.parametrize("name", sorted(STORED_REPORTS))
def test_non_plugin_records_match_stored_report(name: str) -> None:
    path, report = DAT_FILES[name], STORED_REPORTS[name]
    if not path.exists() or not report.exists():
        pytest.skip("fixture missing")
    text = report.read_bytes().decode("utf-8", "surrogateescape")
    compared, equal, diffs = compare_report(path, text, skip_plugin_events=True)
    assert equal == compared, f"{compared - equal} of {compared} differ:\n" + "\n".join(diffs)


# ---------------------------------------------------------------------------
# libtraceevent through ctypes
# ---------------------------------------------------------------------------


class _TraceSeq(ctypes.Structure):
    _fields_ = [("buffer", ctypes.c_void_p), ("buffer_size", ctypes.c_uint), ("len", ctypes.c_uint),
                ("readpos", ctypes.c_uint), ("state", ctypes.c_int)]


class _TepRecord(ctypes.Structure):
    _fields_ = [("ts", ctypes.c_ulonglong), ("offset", ctypes.c_ulonglong), ("missed_events", ctypes.c_longlong),
                ("record_size", ctypes.c_int), ("size", ctypes.c_int), ("data", ctypes.c_void_p),
                ("cpu", ctypes.c_int), ("ref_count", ctypes.c_int), ("locked", ctypes.c_int),
                ("priv", ctypes.c_void_p), ("spare", ctypes.c_char * 64)]


class LibTraceEvent:
    """Just enough of libtraceevent to render one record of one format."""

    def __init__(self, kallsyms: str = "", printk: str = "", long_size: int = 8) -> None:
        name = ctypes.util.find_library("traceevent")
        if name is None:
            raise OSError("libtraceevent not found")
        self.lib = lib = ctypes.CDLL(name)
        lib.tep_alloc.restype = ctypes.c_void_p
        self.tep = ctypes.c_void_p(lib.tep_alloc())
        lib.tep_set_long_size(self.tep, long_size)
        if kallsyms:
            lib.tep_parse_kallsyms(self.tep, kallsyms.encode())
        if printk:
            lib.tep_parse_printk_formats(self.tep, printk.encode())
        self.next_id = 100

    def render(self, format_text: str, payload: bytes, what: bytes = b"INFO") -> bytes:
        """``what``: b"INFO" (the print fmt text) or b"INFO_RAW" (the fields as ``report -R``)."""
        buf = format_text.encode("utf-8", "surrogateescape")
        rc = self.lib.tep_parse_event(self.tep, buf, len(buf), b"test")
        if rc not in (0, -1) and rc < -100000:  # only allocation failures matter here
            raise OSError(f"tep_parse_event: {rc}")
        data = ctypes.create_string_buffer(payload, len(payload))
        rec = _TepRecord()
        rec.size = rec.record_size = len(payload)
        rec.data = ctypes.cast(data, ctypes.c_void_p)
        seq = _TraceSeq()
        self.lib.trace_seq_init(ctypes.byref(seq))
        self.lib.tep_print_event(self.tep, ctypes.byref(seq), ctypes.byref(rec), b"%s", what)
        self.lib.trace_seq_terminate(ctypes.byref(seq))
        out = ctypes.string_at(seq.buffer, seq.len)
        self.lib.trace_seq_destroy(ctypes.byref(seq))
        return out


HEADER = """\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;
"""

# Fields of the synthetic event (offsets after the 8-byte common header).
SYNTH_FIELDS = """
\tfield:int a;\toffset:8;\tsize:4;\tsigned:1;
\tfield:unsigned int b;\toffset:12;\tsize:4;\tsigned:0;
\tfield:long c;\toffset:16;\tsize:8;\tsigned:1;
\tfield:unsigned long ptr;\toffset:24;\tsize:8;\tsigned:0;
\tfield:short s;\toffset:32;\tsize:2;\tsigned:1;
\tfield:unsigned char u8v;\toffset:34;\tsize:1;\tsigned:0;
\tfield:char ch;\toffset:35;\tsize:1;\tsigned:1;
\tfield:char comm[16];\toffset:36;\tsize:16;\tsigned:1;
\tfield:__data_loc char[] name;\toffset:52;\tsize:4;\tsigned:1;
\tfield:__u8 mac[6];\toffset:56;\tsize:6;\tsigned:0;
\tfield:__u8 v4[4];\toffset:62;\tsize:4;\tsigned:0;
\tfield:__u8 v6[16];\toffset:66;\tsize:16;\tsigned:0;
\tfield:__data_loc u8[] blob;\toffset:84;\tsize:4;\tsigned:0;
\tfield:unsigned long args[3];\toffset:88;\tsize:24;\tsigned:0;
\tfield:__data_loc unsigned long[] mask;\toffset:112;\tsize:4;\tsigned:0;
\tfield:__u8 uuid[16];\toffset:116;\tsize:16;\tsigned:0;
"""

KALLSYMS = "ffffffff81000000 T _stext\nffffffff81001000 T do_work\nffffffff81002000 t helper\n"


def synth_payload(event_id: int, *, a: int = -7, b: int = 0xDEADBEEF, c: int = -123456789012,
                  ptr: int = 0xFFFFFFFF81001234, s: int = -2, u8v: int = 200, ch: int = 65,
                  comm: bytes = b"kworker/0:1", name: bytes = b"hello", blob: bytes = b"\x01\x02\xfe",
                  mask: bytes = b"\x0f\x01\x00\x00\x00\x00\x00\x80") -> bytes:
    import struct

    fixed = bytearray(132)
    struct.pack_into("<HBBi", fixed, 0, event_id, 0, 0, 1234)
    struct.pack_into("<iIqQhBb", fixed, 8, a, b & 0xFFFFFFFF, c, ptr, s, u8v, ch)
    fixed[36:52] = comm.ljust(16, b"\0")[:16]
    fixed[56:62] = bytes([0x00, 0x1B, 0x21, 0xAB, 0xCD, 0xEF])
    fixed[62:66] = bytes([192, 168, 1, 7])
    fixed[66:82] = bytes.fromhex("fe800000000000000000000000000001")
    struct.pack_into("<QQQ", fixed, 88, 1, 0xFFFF, 0xFFFFFFFFFFFFFFFF)
    fixed[116:132] = bytes(range(0x10, 0x20))
    tail = bytearray()

    def loc(field_offset: int, data: bytes) -> None:
        struct.pack_into("<I", fixed, field_offset, (len(data) << 16) | (len(fixed) + len(tail)))
        tail.extend(data)

    loc(52, name + b"\0")
    loc(84, blob)
    loc(112, mask)
    return bytes(fixed + tail)


# print fmt lines covering the expression grammar and every conversion family
SYNTH_PRINT_FMTS = [
    '"a=%d b=%u c=%ld ptr=%lx s=%hd u8=%hhu ch=%c", REC->a, REC->b, REC->c, REC->ptr, REC->s, REC->u8v, REC->ch',
    '"%5d|%-5d|%05d|%+d|%x|%X|%#x|%#o|%o|%08lx|%.3d|%05.3d|%.0d|%-8.3x|", REC->a, REC->a, REC->a, REC->a, REC->b, REC->b, REC->b, REC->b, REC->b, REC->ptr, REC->s, REC->s, 0, REC->b',
    '"%*d|%-*d|%.*s|%*s|", 6, REC->a, 4, REC->b, 3, REC->comm, 12, __get_str(name)',
    '"%*d|%-*u|%.*x|%#*x|", REC->u8v, REC->a, REC->s, REC->b, REC->u8v, REC->a, 12, REC->b',
    '"comm=%s name=%s %-20s| %10s|", REC->comm, __get_str(name), REC->comm, __get_str(name)',
    '"%d %d %d %d %d", REC->a - 2 - 3, REC->a * (2 + 3), (REC->a + 1) * 2, REC->b >> 4 & 0xf, REC->b ^ 1',
    '"%d %d %d %d", REC->a < 0, REC->b == 0xdeadbeef, !REC->a, ~REC->b',
    '"%lu %lu %d %d", (unsigned long)REC->a, (int)REC->c, (u8)REC->b, (short)REC->a',
    '"%s %s %s", REC->a ? "yes" : "no", REC->b & 1 ? "odd" : "even", REC->a > 0 ? "pos" : REC->a < 0 ? "neg" : "zero"',
    '"flags=%s sym=%s", __print_flags(REC->b, "|", { 0x1, "ONE" }, { 0x2, "TWO" }, { 0xc, "FOUR8" }, { 0x80000000, "HIGH" }), __print_symbolic(REC->u8v, { 1, "A" }, { 200, "TWOHUNDRED" })',
    '"flags=%s sym=%s none=%s", __print_flags(REC->u8v & 0, "|", { 0x1, "ONE" }), __print_symbolic(REC->s, { 1, "A" }, { UNKNOWN_THING, "U" }), __print_flags(0, "", { 0, "ZERO" })',
    '"%pS %ps %pF %pf %p %p", REC->ptr, REC->ptr, REC->ptr, REC->ptr, REC->ptr, 0',
    '"%pS %ps", (void *)0xffffffff81002010, (void *)0xffffffff90000000',
    '"mac=%pM %pm %pMR %pMF ip4=%pI4 %pi4 ip6=%pI6 %pi6 %pI6c", REC->mac, REC->mac, REC->mac, REC->mac, REC->v4, REC->v4, REC->v6, REC->v6, REC->v6',
    '"uuid=%pU %pUb %pUL %pUl bad=%pI4 %pM", REC->uuid, REC->uuid, REC->uuid, REC->uuid, REC->v6, REC->v4',
    '"hex=%s hexstr=%s arr=%s", __print_hex(__get_dynamic_array(blob), __get_dynamic_array_len(blob)), __print_hex_str(REC->mac, 6), __print_array(REC->args, 3, 8)',
    '"len=%d size=%d %d %d", __get_dynamic_array_len(name), sizeof(int), sizeof(long), sizeof(REC->c)',
    '"mask=%s cpus=%s", __get_bitmask(mask), __get_cpumask(mask)',
    '"args=%lx,%lx,%lx %d", REC->args[0], REC->args[1], REC->args[2], (int)REC->comm[1]',
    '"pct=%% tab=\\t nl=\\n q=\\" bs=\\\\ %z %5%"',
    '"raw %pB %pK %pX %ph", REC->ptr, REC->ptr, REC->ptr, __get_dynamic_array(blob)',
    '"%d %s", REC->a',
    '"%d", REC->a, undefined_function(REC->b)',
    '"x=%d", REC->nosuchfield',
    '"%s %d", REC->ptr, __builtin_expect(REC->a, 0)',
    '"%d %d", 5 - 3 - 1, 2 * 3 + 4',
    '"%u", (REC->b & ((((0x01 | 0x02) + 1) << 1) - 1))',
    # libtraceevent 1.7 specifics: no %c (it takes no argument), no '+'/' ' flags
    # (%L: see test_L_length_modifier_matches_trace_cmd)
    '"%c|%3c|%-3c|", REC->ch, REC->ch, REC->ch',
    '"% d|%+d|%#x|%#o|%0#8x|", REC->a, REC->a, REC->b, REC->b, REC->b',
    '"%hhd %hhx %hd %lld %zu %zd %jd", REC->a, REC->a, REC->a, REC->c, REC->c, REC->c, REC->c',
    '"%s|%s|%s|%s", __print_array(REC->comm, 4, 1), __print_array(REC->comm, 2, 2), __print_array(REC->comm, 2, 3), __print_array(__get_dynamic_array(blob), 3, 1)',
    '"%10p|%-5pS|%5s|", REC->ptr, REC->ptr, REC->comm',
    '"%pISpc %pISc %pIS", REC->v6, REC->v6, REC->v6',
    '"%ph %*ph %*phC %*phD %*phN", __get_dynamic_array(blob), 2, __get_dynamic_array(blob), 3, __get_dynamic_array(blob), 3, __get_dynamic_array(blob), 3, __get_dynamic_array(blob)',
    '"%s", REC->a.b',
    '"(%s) %d", (REC)->comm, ((REC)->a)',
    '"%d %d %d", REC->a ? 1 : 2 + 10, -REC->a + 1, REC->args[1] - REC->args[0] - 1',
]


@pytest.fixture(scope="module")
def libtraceevent() -> LibTraceEvent:
    try:
        return LibTraceEvent(kallsyms=KALLSYMS)
    except OSError as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("index", range(len(SYNTH_PRINT_FMTS)))
def test_synthetic_formats_match_libtraceevent(libtraceevent: LibTraceEvent, index: int) -> None:
    event_id = 200 + index
    text = f"name: synth{index}\nID: {event_id}\nformat:\n{HEADER}{SYNTH_FIELDS}\nprint fmt: {SYNTH_PRINT_FMTS[index]}\n"
    payload = synth_payload(event_id)
    expected = libtraceevent.render(text, payload)
    fmt = parse_event_format(text, "test")
    symbols = TraceSymbols(kallsyms=KernelSymbols.parse(KALLSYMS))
    ours = PrintFormat.parse(fmt).render(payload, symbols).encode("utf-8", "surrogateescape")
    assert ours == expected


@pytest.mark.parametrize("index", range(len(SYNTH_PRINT_FMTS)))
def test_synthetic_formats_raw_fields_match_libtraceevent(libtraceevent: LibTraceEvent, index: int) -> None:
    # report -R: each field printed with the conversion of the segment it is passed to
    event_id = 300 + index
    text = f"name: synthraw{index}\nID: {event_id}\nformat:\n{HEADER}{SYNTH_FIELDS}\nprint fmt: {SYNTH_PRINT_FMTS[index]}\n"
    payload = synth_payload(event_id)
    expected = libtraceevent.render(text, payload, b"INFO_RAW")
    fmt = parse_event_format(text, "test")
    symbols = TraceSymbols(kallsyms=KernelSymbols.parse(KALLSYMS))
    ours = ReportFormatter(symbols, {event_id: fmt}, raw=True).raw_fields(payload, fmt)
    assert ours.encode("utf-8", "surrogateescape") == expected


# 64-bit values, a char and an int, for the length modifiers on 32- and 64-bit traces
WIDE_FIELDS = """
\tfield:u64 big;\toffset:8;\tsize:8;\tsigned:0;
\tfield:s64 neg;\toffset:16;\tsize:8;\tsigned:1;
\tfield:char ch;\toffset:24;\tsize:1;\tsigned:1;
\tfield:int i;\toffset:28;\tsize:4;\tsigned:1;
"""
WIDE_VALUES = (1129872934808, -1129872934808, 65, -3)  # big does not fit 32 bits


def wide_payload(event_id: int) -> bytes:
    return struct.pack("<HBBiQqbxxxi", event_id, 0, 0, 1, *WIDE_VALUES)


LENGTH_PRINT_FMTS = [
    # %c is text (">c<") and takes no argument: REC->ch goes to %d, ch prints raw with -R
    '"c=%c|%3c| i=%d", REC->ch, REC->ch, REC->i',
    '"llu=%llu lld=%lld llx=%llx", REC->big, REC->neg, REC->big',
    '"llu=%llu lld=%lld", REC->i, REC->i',
    '"lu=%lu ld=%ld lx=%lx", REC->big, REC->neg, REC->big',
    '"u=%u d=%d x=%x hhd=%hhd", REC->big, REC->neg, REC->big, REC->i',
    '"%llu %lu %u", (unsigned long long)REC->big, (unsigned long)REC->big, (unsigned int)REC->neg',
    '"a=%+d b=%x", REC->i, REC->big',
]


@pytest.mark.parametrize("long_size", [4, 8])
@pytest.mark.parametrize("what", [b"INFO", b"INFO_RAW"], ids=["report", "report-R"])
@pytest.mark.parametrize("index", range(len(LENGTH_PRINT_FMTS)))
def test_length_modifiers_match_libtraceevent(index: int, what: bytes, long_size: int) -> None:
    try:
        lib = LibTraceEvent(long_size=long_size)
    except OSError as e:
        pytest.skip(str(e))
    event_id = 400 + index
    text = f"name: wide{index}\nID: {event_id}\nformat:\n{HEADER}{WIDE_FIELDS}\nprint fmt: {LENGTH_PRINT_FMTS[index]}\n"
    payload = wide_payload(event_id)
    expected = lib.render(text, payload, what)
    fmt = parse_event_format(text, "test")
    symbols = TraceSymbols(long_size=long_size)
    if what == b"INFO":
        ours = PrintFormat.parse(fmt, long_size=long_size).render(payload, symbols)
    else:
        ours = ReportFormatter(symbols, {event_id: fmt}, raw=True).raw_fields(payload, fmt)
    assert ours.encode() == expected


L_PRINT_FMTS = [
    '"Lu=%Lu", REC->big',
    '"Lu=%Lu", (unsigned long long)REC->big',
    '"Ld=%Ld Ld=%Ld", REC->neg, (long long)REC->neg',
    '"Lu=%Lu Ld=%Ld", REC->i, REC->i',
    '"Lx=%Lx|%5Ld|%-14Lx|%#Lx", (unsigned long long)REC->big, REC->i, REC->big, REC->big',
    '"Lu=%Lu", (unsigned int)REC->big',
    '"llu=%llu Lu=%Lu d=%d", REC->big, REC->big, REC->i',
]


@pytest.mark.skipif(TRACE_CMD is None, reason="trace-cmd is not installed")
@pytest.mark.parametrize("long_size", [4, 8])
def test_L_length_modifier_matches_trace_cmd(tmp_path: Path, long_size: int) -> None:
    # %L is long long in trace-cmd's output (the whole 64-bit value), report and -R alike
    from tests.oracle.written_traces import our_text, trace_cmd_text, write_trace
    from tracewatch.testing.page_builder import PageBuilder

    texts, pages = [], PageBuilder()
    for n, print_fmt in enumerate(L_PRINT_FMTS):
        event_id = 900 + n
        texts.append(f"name: wide{n}\nID: {event_id}\nformat:\n{HEADER}{WIDE_FIELDS}\nprint fmt: {print_fmt}\n")
        pages.add(1000 * (n + 1), wide_payload(event_id))
    path = write_trace(tmp_path / f"wide{long_size}.dat", pages, event_formats={"test": texts}, long_size=long_size)
    for raw in (False, True):
        ours, theirs = our_text(path, raw), trace_cmd_text(path, raw)
        assert "1129872934808" in theirs  # the premise: trace-cmd prints the whole value
        assert ours == theirs


THIRD_PARTY = FIXTURES / "third-party"


def _stored_text(path: Path) -> str:
    zstandard = pytest.importorskip("zstandard")
    with path.open("rb") as f:
        return zstandard.ZstdDecompressor().stream_reader(f).read().decode("utf-8", "surrogateescape")


def test_bprint_raw_fields_match_stored_trace_cmd_output() -> None:
    # libtraceevent keeps no segments for ftrace:bprint (each record brings its own format):
    # report -R prints its fields raw, ip as a number, not as the "%ps" of its print fmt
    path = THIRD_PARTY / "lisa_example_rtapp.dat"
    stored = THIRD_PARTY / "lisa_example_rtapp.dat.raw.txt.zst"
    if not path.exists() or not stored.exists():
        pytest.skip("third-party fixture missing")
    expected = [line for line in _stored_text(stored).split("\n") if " bprint: " in line]
    ours = [line for line in report_lines(_reader(path), raw=True) if " bprint: " in line]
    assert len(expected) > 1000 and " ip=0x" in expected[0]
    assert ours == expected


def main() -> int:
    for name in sorted(DAT_FILES):
        path = DAT_FILES[name]
        if TRACE_CMD:
            compared, equal, diffs = compare_report(path, _run_trace_cmd(path), skip_plugin_events=False)
            print(f"{name:12s} vs trace-cmd report -N: {equal}/{compared} records equal")
            for d in diffs[:5]:
                print("   ", d)
        if name in STORED_REPORTS:
            text = STORED_REPORTS[name].read_bytes().decode("utf-8", "surrogateescape")
            compared, equal, diffs = compare_report(path, text, skip_plugin_events=True)
            print(f"{name:12s} vs stored report (non-plugin events): {equal}/{compared} records equal")
            for d in diffs[:5]:
                print("   ", d)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def test_print_fmt_with_a_real_newline_renders_as_libtraceevent():
    """A print fmt whose string holds a real newline (mmap_lock_*, 9p_protocol_dump)."""
    import struct

    from tests.unit.test_event_format import fmt_text

    try:
        lib = LibTraceEvent()
    except OSError as e:
        pytest.skip(str(e))
    text = fmt_text("int x;8;4;1").replace('print fmt: "x"\n', 'print fmt: "first line\nsecond x=%d", REC->x\n')
    payload = struct.pack("<HBBiI", 77, 0, 0, 1, 5)
    ours = PrintFormat.parse(parse_event_format(text, "demo")).render(payload, TraceSymbols())
    assert ours.encode() == lib.render(text, payload) == b"first line\nsecond x=5"
