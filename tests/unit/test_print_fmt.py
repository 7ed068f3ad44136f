"""PrintFormat on hand-built records, using the real format files of the fixtures.

Expected texts are what trace-cmd 3.1.6 / libtraceevent 1.7 print (checked
against them in tests/oracle/test_print_fmt_oracle.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct

import pytest

from tests.conftest import FIXTURES
from tracewatch.errors import TraceFormatError
from tracewatch.formats.event_format import EventFormat, parse_event_format
from tracewatch.formats.printfmt import PrintFormat, PrintFormatError
from tracewatch.formats.printfmt._cprintf import _c_int, _CSpec
from tracewatch.formats.symbols import KernelSymbols, TraceSymbols

EVENTS = FIXTURES / "raw-pages" / "events"

HEADER = """\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;
"""

KALLSYMS = (
    "ffffffff81000000 T _stext\n"
    "ffffffff81001000 T do_work\n"
    "0000000000000000 A fixed_percpu_data\n"
    "ffffffff8149aa90 t tracing_mark_write\n"
    "ffffffff8149ac00 T __pfx_trace_vbprintk\n"
)
SYMBOLS = TraceSymbols(kallsyms=KernelSymbols.parse(KALLSYMS))


def real_format(system: str, name: str) -> EventFormat:
    path = EVENTS / system / name / "format"
    if not path.exists():
        pytest.skip(f"{path} missing")
    return parse_event_format(path.read_text(), system)


def make_format(fields: str, print_fmt: str, system: str = "test", name: str = "ev", ev_id: int = 99) -> EventFormat:
    return parse_event_format(f"name: {name}\nID: {ev_id}\nformat:\n{HEADER}\n{fields}\nprint fmt: {print_fmt}\n", system)


def common(ev_id: int, pid: int = 1) -> bytes:
    return struct.pack("<HBBi", ev_id, 0, 0, pid)


def render(fmt: EventFormat, payload: bytes, symbols: TraceSymbols = SYMBOLS) -> str:
    return PrintFormat.parse(fmt).render(payload, symbols)


# --- real formats ---------------------------------------------------------


def test_sys_enter_prints_signed_id_and_hex_args() -> None:
    fmt = real_format("raw_syscalls", "sys_enter")
    payload = common(fmt.id) + struct.pack("<q6Q", 257, 0xFFFFFF9C, 0x7FFD1000, 0x80000, 0, 0, 0)
    assert render(fmt, payload) == "NR 257 (ffffff9c, 7ffd1000, 80000, 0, 0, 0)"


def test_sys_exit_negative_return() -> None:
    fmt = real_format("raw_syscalls", "sys_exit")
    assert render(fmt, common(fmt.id) + struct.pack("<qq", 0, -2)) == "NR 0 = -2"


def test_sched_switch_state_flags_and_preempted_marker() -> None:
    fmt = real_format("sched", "sched_switch")
    f = {x.name: x for x in fmt.fields}
    buf = bytearray(fmt.fixed_size)
    struct.pack_into("<H", buf, 0, fmt.id)
    buf[f["prev_comm"].offset : f["prev_comm"].offset + 4] = b"bash"
    struct.pack_into("<i", buf, f["prev_pid"].offset, 9084)
    struct.pack_into("<i", buf, f["prev_prio"].offset, 120)
    buf[f["next_comm"].offset : f["next_comm"].offset + 7] = b"swapper"
    struct.pack_into("<i", buf, f["next_prio"].offset, 120)
    for state, text in ((0, "R"), (1, "S"), (2, "D"), (0x81, "S|I"), (0x100, "R+"), (0x101, "S+")):
        struct.pack_into("<q", buf, f["prev_state"].offset, state)
        assert render(fmt, bytes(buf)) == (
            f"prev_comm=bash prev_pid=9084 prev_prio=120 prev_state={text} ==> "
            "next_comm=swapper next_pid=0 next_prio=120"
        )


def test_sched_process_exec_dynamic_string() -> None:
    fmt = real_format("sched", "sched_process_exec")
    f = {x.name: x for x in fmt.fields}
    name = b"/usr/bin/make\0"
    buf = bytearray(fmt.fixed_size)
    struct.pack_into("<H", buf, 0, fmt.id)
    struct.pack_into("<I", buf, f["filename"].offset, (len(name) << 16) | len(buf))
    struct.pack_into("<ii", buf, f["pid"].offset, 9090, 9090)
    assert render(fmt, bytes(buf) + name) == "filename=/usr/bin/make pid=9090 old_pid=9090"


def test_ftrace_print_keeps_trailing_newline_and_resolves_ip() -> None:
    fmt = real_format("ftrace", "print")
    payload = common(fmt.id) + struct.pack("<Q", 0xFFFFFFFF8149AA90) + b"hello\n\0\0"
    # trace-cmd report strips the one trailing newline from the whole line
    assert render(fmt, payload) == "tracing_mark_write: hello\n"


def test_ftrace_print_non_utf8_bytes_round_trip() -> None:
    fmt = real_format("ftrace", "print")
    payload = common(fmt.id) + struct.pack("<Q", 0xFFFFFFFF8149AA90) + b"caf\xe9 \xff\0"
    text = render(fmt, payload)
    assert text.encode("utf-8", "surrogateescape") == b"tracing_mark_write: caf\xe9 \xff"


def test_raw_data_reads_first_buffer_byte_with_int_cast() -> None:
    fmt = real_format("ftrace", "raw_data")
    assert render(fmt, common(fmt.id) + struct.pack("<I", 0x1001) + b"\x01\x00\x00\x00") == "id:1001 00000001"
    assert render(fmt, common(fmt.id) + struct.pack("<I", 0xDEADBEEF) + b"\xde") == "id:deadbeef 000000de"


def test_unresolvable_symbol_prints_hex() -> None:
    fmt = real_format("ftrace", "print")
    payload = common(fmt.id) + struct.pack("<Q", 0xFFFFFFFF9000_0000) + b"x\0"
    # above the last kallsyms entry: libtraceevent's table ends there
    assert render(fmt, payload) == "0xffffffff90000000: x"


# --- expression semantics (libtraceevent's, not C's) -------------------------

FIELDS = """\tfield:int a;\toffset:8;\tsize:4;\tsigned:1;
\tfield:unsigned int b;\toffset:12;\tsize:4;\tsigned:0;
\tfield:unsigned long p;\toffset:16;\tsize:8;\tsigned:0;
\tfield:char comm[16];\toffset:24;\tsize:16;\tsigned:1;
\tfield:unsigned long args[2];\toffset:40;\tsize:16;\tsigned:0;
\tfield:__u8 v4[4];\toffset:56;\tsize:4;\tsigned:0;
\tfield:__u8 v6[16];\toffset:60;\tsize:16;\tsigned:0;
"""


def record(a: int = -7, b: int = 0xDEADBEEF, p: int = 0xFFFFFFFF81001010, comm: bytes = b"kworker/0:1",
           args: tuple[int, int] = (3, 10), v4: bytes = bytes([127, 0, 0, 1]),
           v6: bytes = bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1])) -> bytes:
    return common(99) + struct.pack("<iIQ", a, b, p) + comm.ljust(16, b"\0") + struct.pack("<2Q", *args) + v4 + v6


@pytest.mark.parametrize(
    "print_fmt, expected",
    [
        ('"%d", REC->a - 2 - 3', "-6"),  # right-associative: a - (2 - 3)
        ('"%d", REC->a * (2 + 3)', "-11"),  # rotated past the parentheses: (a * 2) + 3
        ('"%d", 5 - 3 - 1', "3"),  # constants fold with the same grouping
        ('"%u", REC->b ^ 1', "0"),  # '^' is not evaluated
        ('"%d", REC->a < 0', "0"),  # unsigned 64-bit comparison of a zero-extended int
        ('"%ld", REC->a', "4294967289"),  # fields are read zero-extended
        ('"%d %d", (short)REC->a, (u8)REC->b', "65529 239"),  # casts mask, never sign-extend
        ('"%lx %d", REC->args[1], REC->args[0] + 1', "a 4"),
        ('"%s", REC->a ? "yes" : "no"', "yes"),
        ('"%d", sizeof(long) + sizeof(REC->b)', "12"),
        ('"[%5s|%-5s|%.3s]", "ab", "ab", REC->comm', "[   ab|ab   |kwo]"),
        ('"%pS %ps %pF %p %p", REC->p, REC->p, 0, REC->p, 0', "do_work+0x10 do_work 0x0 0xffffffff81001010 (nil)"),
        ('"%pI4 %pi4 %pI6c", REC->v4, REC->v4, REC->v6', "127.0.0.1 127.000.000.001 ::ffff:127.0.0.1"),
        ('"%s", __print_symbolic(REC->b, { 1, "ONE" }, { SOME_MACRO, "M" })', "0xdeadbeef"),
        ('"%s", __print_flags(REC->b & 0xf0, "|", { 0x10, "A" }, { 0x20, "B" }, { 0x80, "C" })', "B|C|0x40"),
        ('"%s", __print_flags(0, "|", { 0x10, "A" }, { NONE, "nothing" })', "nothing"),
        ('"%c|%+d|% d", REC->a, REC->a, REC->a', ">c<|>+<d|> <d"),  # libtraceevent 1.7
        ('"%c %d", REC->a', ">c< -7"),  # and "%c" takes no argument
        # 'L' is long long as trace-cmd prints it: the whole 64-bit value, read zero-extended
        ('"%Lu %Ld %Lx", REC->p, REC->a, REC->a', "18446744071578849296 4294967289 fffffff9"),
        ('"100%% %d\\tx\\n", 1', "100% 1\tx\n"),
        ('"%pB|%pK", REC->p, REC->p', "0xffffffff81001010B|0xffffffff81001010K"),
        ('"%d", REC->a, REC->b', "-7"),  # extra arguments are ignored
    ],
)
def test_expression_and_conversion_rules(print_fmt: str, expected: str) -> None:
    assert render(make_format(FIELDS, print_fmt), record()) == expected


def test_absolute_symbols_are_not_functions() -> None:
    # "A fixed_percpu_data" sits at 0: libtraceevent still prints 0x0
    assert render(make_format(FIELDS, '"%pS", 0'), record()) == "0x0"


def test_unknown_identifier_takes_a_symbol_address() -> None:
    fmt = make_format(FIELDS, '"%lx %lx", do_work, vmemmap_base')
    assert render(fmt, record()) == "ffffffff81001000 0"


def test_short_record_reads_zero() -> None:
    fmt = make_format(FIELDS, '"%d %s|", REC->b, REC->comm')
    assert render(fmt, common(99) + b"\x01\x02") == "0 |"


# --- what libtraceevent cannot parse ----------------------------------------


@pytest.mark.parametrize(
    "print_fmt",
    ['"%d", REC->a, unknown_func(REC->b)', '"%d %d", REC->a', '"%s", REC->a.b', '"%hhhd", REC->a'],
)
def test_unparseable_formats_print_failed_and_raw_fields(print_fmt: str) -> None:
    pf = PrintFormat.parse(make_format(FIELDS, print_fmt))
    assert pf.failed and pf.failure
    text = pf.render(record(), SYMBOLS)
    assert text.startswith("[FAILED TO PARSE] a=-7 b=3735928559 p=0xffffffff81001010 comm=kworker/0:1 ")
    assert " args=ARRAY[03, 00, 00, 00, 00, 00, 00, 00, 0a, 00, 00, 00, 00, 00, 00, 00]" in text
    # u8 arrays count as strings: printable ones (up to a NUL) print as text
    assert text.endswith(" v4=ARRAY[7f, 00, 00, 01] v6=")


def test_missing_print_fmt_is_an_error() -> None:
    fmt = make_format(FIELDS, '"x"')
    fmt.print_fmt = ""
    with pytest.raises(PrintFormatError) as info:
        PrintFormat.parse(fmt)
    assert isinstance(info.value, TraceFormatError)
    assert "test:ev" in str(info.value)


# --- bprint ------------------------------------------------------------------


def test_bprint_uses_printk_format_and_binary_args() -> None:
    fmt = real_format("ftrace", "bprint")
    f = {x.name: x for x in fmt.fields}
    symbols = TraceSymbols(
        kallsyms=KernelSymbols.parse(KALLSYMS),
        printk_formats={0xFFFFFFFFA0000000: "value=%d name=%s hex=%lx\\n"},
    )
    buf = bytearray(f["buf"].offset)
    struct.pack_into("<H", buf, 0, fmt.id)
    struct.pack_into("<QQ", buf, f["ip"].offset, 0xFFFFFFFF81001000, 0xFFFFFFFFA0000000)
    args = struct.pack("<i", -5) + b"abc\0" + struct.pack("<Q", 0xBEEF)
    assert PrintFormat.parse(fmt).render(bytes(buf) + args, symbols) == "do_work: value=-5 name=abc hex=beef"
    struct.pack_into("<Q", buf, f["fmt"].offset, 0x1234)
    assert PrintFormat.parse(fmt).render(bytes(buf) + args, symbols) == "do_work: (NO FORMAT FOUND at 1234)\n"


# --- printf emulation against the C library ----------------------------------


@pytest.mark.parametrize("spec", ["%d", "%5d", "%-5d", "%05d", "%.3d", "%05.3d", "%.0d", "%x", "%#x", "%#o",
                                  "%08x", "%-8.3x", "%#10X", "%u", "%o"])
@pytest.mark.parametrize("value", [0, 1, -1, 42, -123456, 0x7FFFFFFF])
def test_c_int_matches_snprintf(spec: str, value: int) -> None:
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        pytest.skip("no C library")
    libc = ctypes.CDLL(libc_name)
    out = ctypes.create_string_buffer(64)
    libc.snprintf(out, 64, spec.encode(), ctypes.c_int(value))
    cs = _CSpec(spec)
    v = value if cs.conv in "di" else value & 0xFFFFFFFF
    assert _c_int(v, cs.conv, cs.flags, cs.width, cs.prec) == out.value.decode()


def test_render_speed_is_reasonable() -> None:
    fmt = real_format("raw_syscalls", "sys_enter")
    pf = PrintFormat.parse(fmt)
    payload = common(fmt.id) + struct.pack("<q6Q", 1, 2, 3, 4, 5, 6, 7)
    import time

    t = time.perf_counter()
    for _ in range(20000):
        pf.render(payload, SYMBOLS)
    assert time.perf_counter() - t < 2.0  # ~10x headroom on a slow machine
