"""Report line formatting: the header column and the -R field list (libtraceevent rules)."""

from __future__ import annotations

import struct

import pytest

from tracewatch.formats.report_text import ReportFormatter, timestamps_in_usecs
from tracewatch.formats.printfmt import SEG_NUMBER, SEG_POINTER, SEG_STRING, SEG_TEXT, PrintFormat, Segment
from tracewatch.formats.event_format import parse_event_format
from tracewatch.formats.symbols import Cmdlines, KernelSymbols, TraceSymbols

COMMON = """\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;
"""


def make_format(name: str, fields: str, print_fmt: str, system: str = "test", id_: int = 100):
    return parse_event_format(f"name: {name}\nID: {id_}\nformat:\n{COMMON}\n{fields}\nprint fmt: {print_fmt}\n",
                              system)


def formatter(*fmts, raw=True, kallsyms="", cmdlines="") -> ReportFormatter:
    syms = TraceSymbols(kallsyms=KernelSymbols.parse(kallsyms), cmdlines=Cmdlines.parse(cmdlines))
    return ReportFormatter(syms, {f.id: f for f in fmts}, raw=raw)


def head(type_id: int, pid: int) -> bytes:
    return struct.pack("<HBBi", type_id, 0, 0, pid)


HRTIMER = make_format(
    "hrtimer_expire_entry",
    "\tfield:void * hrtimer;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:s64 now;\toffset:16;\tsize:8;\tsigned:1;\n"
    "\tfield:void * function;\toffset:24;\tsize:8;\tsigned:0;\n",
    '"hrtimer=%p function=%ps now=%llu", REC->hrtimer, REC->function, (unsigned long long) REC->now')


def segments(print_fmt: str, fields: str = "") -> list[Segment]:
    parsed = PrintFormat.parse(make_format("e", fields, print_fmt))
    assert parsed.segments is not None, parsed.failure
    return parsed.segments


def test_raw_report_uses_the_print_fmt_segments():
    # -R matches fields in the segments the formatted report prints by (one split for both)
    segs = segments('"a=0x%lx b=%pS%%\\n" "c=%*s", REC->a, REC->b, REC->w, __get_str(c)',
                    "\tfield:unsigned long a;\toffset:8;\tsize:8;\tsigned:0;\n")
    assert [(s.kind, s.spec, s.ls, s.star is not None) for s in segs] == [
        (SEG_TEXT, "a=0x", 0, False), (SEG_NUMBER, "%lx", 1, False), (SEG_TEXT, " b=", 0, False),
        (SEG_POINTER, "%pS", 0, False), (SEG_TEXT, "%\nc=", 0, False), (SEG_STRING, "%*s", 0, True)]
    assert [s.plain_field() for s in segs if s.kind != SEG_TEXT] == [("a", 8), ("b", 8), None]


def test_plain_fields_behind_casts():
    segs = segments('"%d %llu %u %d %d %d %p", REC->pid, (unsigned long long) REC->now, ((unsigned int)(REC->x)), '
                    'REC->args[0], REC->a ? 1 : 2, (u8)REC->y, (void *)REC->z')
    assert [s.plain_field() for s in segs if s.kind != SEG_TEXT] == [
        ("pid", 8), ("now", 8), ("x", 4), None, None, ("y", 1), ("z", 8)]


def test_percent_c_and_plus_are_text_in_raw_fields_too():
    # libtraceevent 1.7 has no %c and no '+' flag: ">c<" and ">+<" are text and take no
    # argument, so REC->a goes to %x and ch prints raw (as trace-cmd report -R prints them)
    fmt = make_format("e", "\tfield:char ch;\toffset:8;\tsize:1;\tsigned:1;\n"
                           "\tfield:int a;\toffset:12;\tsize:4;\tsigned:1;\n",
                      '"c=%c a=%+d x=%x", REC->a, REC->ch')
    payload = head(100, 1) + struct.pack("<bxxxi", 65, -7)
    assert formatter(fmt).raw_fields(payload, fmt) == " ch=65 a=fffffff9"


def test_failed_print_fmt_prints_every_field_raw():
    # a conversion without an argument fails the whole print fmt: no field takes a conversion
    fmt = make_format("e", "\tfield:unsigned int a;\toffset:8;\tsize:4;\tsigned:0;\n", '"a=%x %s", REC->a')
    payload = head(100, 1) + struct.pack("<I", 255)
    assert formatter(fmt).raw_fields(payload, fmt) == " a=255"
    fmt_ok = make_format("e", "\tfield:unsigned int a;\toffset:8;\tsize:4;\tsigned:0;\n", '"a=%x", REC->a')
    assert formatter(fmt_ok).raw_fields(payload, fmt_ok) == " a=ff"


def test_raw_fields_follow_the_print_fmt_cursor():
    # "now" matches the last conversion, so the search ends there: "function" prints raw (hex),
    # as trace-cmd report -R shows it
    f = formatter(HRTIMER, kallsyms="ffffffff814352e0 t tick_nohz_handler\nffffffff81435400 t next\n")
    payload = head(100, 0) + struct.pack("<QqQ", 0xFFFF888627D1C6F8, 634284018393, 0xFFFFFFFF814352E0)
    assert f.raw_fields(payload, HRTIMER) == (
        " hrtimer=0xffff888627d1c6f8 now=634284018393 function=0xffffffff814352e0")
    payload = head(100, 0) + struct.pack("<QqQ", 0, 1, 2)
    assert f.raw_fields(payload, HRTIMER) == " hrtimer=(nil) now=1 function=0x2"


def test_raw_scalars_and_0x_prefix():
    fmt = make_format(
        "e",
        "\tfield:unsigned long pfn;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:int node;\toffset:16;\tsize:4;\tsigned:1;\n"
        "\tfield:short s;\toffset:20;\tsize:2;\tsigned:1;\n\tfield:unsigned int cpu;\toffset:24;\tsize:4;\tsigned:0;\n"
        "\tfield:long l;\toffset:32;\tsize:8;\tsigned:1;\n\tfield:unsigned long ul;\toffset:40;\tsize:8;\tsigned:0;\n",
        '"pfn=0x%lx cpu=%03d", REC->pfn, REC->cpu')
    payload = head(100, 3) + struct.pack("<QihxxIxxxxqQ", 0x108C5B, -1, -2, 7, -5, 255)
    assert formatter(fmt).raw_fields(payload, fmt) == " pfn=0x108c5b node=-1 s=-2 cpu=007 l=-5 ul=0xff"


def test_raw_arrays_and_sticky_array_flag():
    fmt = make_format(
        "inet",
        "\tfield:__u8 saddr[4];\toffset:8;\tsize:4;\tsigned:0;\n\tfield:unsigned long args[2];\toffset:16;\tsize:16;\tsigned:0;\n"
        "\tfield:__data_loc char[] name;\toffset:32;\tsize:4;\tsigned:0;\n",
        '"%pI4 %s", REC->saddr, __get_str(name)')
    f = formatter(fmt)

    def rec(saddr: bytes, name: bytes) -> bytes:
        return head(100, 1) + saddr + b"\0" * 4 + struct.pack("<QQI", 1, 2, (len(name) << 16) | 36) + name

    # a NUL first byte is an (empty) printable string; 7f is not printable: ARRAY, from then on
    assert f.raw_fields(rec(b"\0\0\0\0", b"abc\0"), fmt) == (
        " saddr= args=ARRAY[01, 00, 00, 00, 00, 00, 00, 00, 02, 00, 00, 00, 00, 00, 00, 00] name=abc")
    assert " saddr=ARRAY[7f, 00, 00, 01] " in f.raw_fields(rec(b"\x7f\0\0\x01", b"abc\0"), fmt)
    assert " saddr=ARRAY[00, 00, 00, 00] " in f.raw_fields(rec(b"\0\0\0\0", b"abc\0"), fmt)


def test_trailing_string_reads_into_the_page_like_c():
    fmt = make_format("raw_data", "\tfield:unsigned int id;\toffset:8;\tsize:4;\tsigned:0;\n"
                      "\tfield:char buf[];\toffset:12;\tsize:0;\tsigned:0;\n",
                      '"id:%04x %08x", REC->id, (int)REC->buf[0]', system="ftrace")
    f = formatter(fmt)
    payload = head(100, 1) + struct.pack("<I", 0x1004) + b"\x04\x0b\x12\x19"
    assert f.raw_fields(payload, fmt, after=b"\x25\x83\x00\x00") == " id=1004 buf=\x04\x0b\x12\x19%\udc83"
    assert f.raw_fields(payload, fmt) == " id=1004 buf=\x04\x0b\x12\x19"


def test_line_header_column():
    f = formatter(HRTIMER, cmdlines="9084 bash\n")
    payload = head(100, 9084) + struct.pack("<QqQ", 1, 2, 3)
    line = f.line(1, 579_803_162_499, payload, HRTIMER)
    assert line == ("            bash-9084  [001]   579.803162: hrtimer_expire_entry:  hrtimer=0x1 now=2 function=0x3")
    assert f.line(0, 579_803_162_500, head(100, 0) + bytes(24), HRTIMER).startswith(
        "          <idle>-0     [000]   579.803163: ")
    assert f.line(0, 1, head(100, 42) + bytes(24), HRTIMER).startswith("           <...>-42    [000]     0.000000: ")


def test_lost_events_and_unknown_events():
    f = formatter(HRTIMER)
    payload = head(100, 0) + bytes(24)
    assert f.line(1, 0, payload, HRTIMER, missed_before=-1).startswith("CPU:1 [EVENTS DROPPED]\n")
    assert f.line(1, 0, payload, HRTIMER, missed_before=12).startswith("CPU:1 [12 EVENTS DROPPED]\n")
    assert f.line(0, 0, b"\x07\x00" + bytes(6), None) == (
        "[UNKNOWN EVENT][UNKNOWN EVENT] (NULL):               [UNKNOWN EVENT]")


def test_header_and_clock():
    class Info:
        cpus = 2

    assert formatter().header(Info()) == "cpus=2"
    assert timestamps_in_usecs("local") and timestamps_in_usecs("mono_raw")
    assert not timestamps_in_usecs("counter")


def _per_record_and_batch(path, raw, drop_every=2, chunk=5):
    """Lines of ReportFormatter.line one record at a time, and of index_lines in chunks."""
    from tracewatch.formats.tracedat import TraceDatReader

    out = []
    for batch in (False, True):
        reader = TraceDatReader(str(path))
        by_pid = reader.symbols.cmdlines.by_pid
        for pid in sorted(by_pid)[::drop_every]:  # unknown pids: the sched plugin teaches them
            del by_pid[pid]
        index = reader.index()
        f = ReportFormatter(reader.symbols, reader.formats, raw=raw, in_usecs=timestamps_in_usecs(reader.trace_clock))
        bufs = [reader.cpu_buffer(c)[0] for c in range(reader.cpus)]
        tails = {i for i, fm in reader.formats.items() if any(fl.array_len == 0 for fl in fm.fields)}
        if batch:
            out.append([t for lines in f.index_lines(bufs, index, page_size=reader.page_size, tail_types=tails,
                                                     chunk=chunk) for t in lines])
        else:
            lines = []
            for cpu, ts, off, ln, ty, missed in zip(index.cpu.tolist(), index.ts.tolist(), index.offset.tolist(),
                                                    index.length.tolist(), index.type_id.tolist(),
                                                    index.missed_before.tolist()):
                buf = bufs[cpu]
                after = buf[off + ln : (off // reader.page_size + 1) * reader.page_size].tobytes() if ty in tails else b""
                lines.append(f.line(cpu, ts, buf[off : off + ln].tobytes(), reader.formats.get(ty),
                                    missed_before=missed, after=after))
            out.append(lines)
    return out


@pytest.mark.parametrize("raw", [False, True])
@pytest.mark.parametrize("name", ["b_sched.v6.dat", "c_markers.v6.dat", "e_mixed.v6.dat"])
def test_batch_lines_equal_per_record_lines(name, raw):
    """index_lines (a type at a time, in chunks) prints what line() prints record by record,
    including comms the sched plugin teaches mid-report and sticky ARRAY[..] strings."""
    from tests.conftest import FIXTURES

    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"fixture {name} missing")
    one, many = _per_record_and_batch(path, raw)
    assert many == one
