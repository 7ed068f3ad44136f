"""Format files: odd but real ones parse; damaged ones are one error naming the event and the field."""

from __future__ import annotations

import re
import struct

import pytest

from tracewatch.errors import TraceFormatError
from tracewatch.formats.event_format import MAX_RECORD_BYTES, parse_event_format

COMMON = """\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;
"""


def fmt_text(*fields: str, name: str = "demo", common: str = COMMON) -> str:
    """A format file of event ``name`` with the common fields and ``fields`` (``decl;offset;size;signed``)."""
    lines = []
    for f in fields:
        decl, offset, size, signed = f.split(";")
        lines.append(f"\tfield:{decl};\toffset:{offset};\tsize:{size};\tsigned:{signed};")
    return f"name: {name}\nID: 77\nformat:\n{common}\n" + "\n".join(lines) + '\n\nprint fmt: "x"\n'


# ---------------------------------------------------------------- real kernels' formats, odd ones included

ODD_BUT_REAL = {
    "symbolic length": ["char comm[TASK_COMM_LEN];8;16;0"],
    "expression length": ["__u8 buf[32 + 2];8;34;0"],
    "data_loc string": ["__data_loc char[] name;8;4;0"],
    "data_loc array of u64": ["__data_loc u64[] addrs;8;4;0"],
    "rel_loc string": ["__rel_loc char[] name;8;4;0"],
    "trailing array": ["unsigned long ip;8;8;0", "char buf[];16;0;0"],
    "32-bit kernel's longs": ["long id;8;4;1", "unsigned long args[6];12;24;0"],
    "64-bit kernel's longs": ["long id;8;8;1", "unsigned long args[6];16;48;0"],
    "typedef of a struct (ras:extlog_mem_event)": ["guid_t fru_id;8;16;0", "u8 sev;24;1;0"],
    "pointer array": ["void * ptrs[2];8;16;0"],
    # kernels before 3.19 printed every array as char NAME[32], the true size in size:
    "old kernel's array lengths": ["char comm[32];8;16;0", "char rwbs[32];24;8;0", "char args[32];32;24;0"],
    # ... and a flexible array as a scalar of size 0, last
    "old kernel's flexible array": ["unsigned long ip;8;8;0", "char buf;16;0;0"],
    "struct member": ["struct __kernel_sockaddr_storage ss;8;128;0"],
    "array of structs": ["struct foo items[3];8;36;0"],
    "the biggest record": [f"char tail[8];{MAX_RECORD_BYTES - 8};8;0"],
}


@pytest.mark.parametrize("fields", ODD_BUT_REAL.values(), ids=ODD_BUT_REAL.keys())
def test_odd_but_real_formats_parse(fields):
    fmt = parse_event_format(fmt_text(*fields), "demo", source="x.dat")
    declared = [re.search(r"([A-Za-z_]\w*)\s*(?:\[[^\]]*\])?$", f.split(";")[0]).group(1) for f in fields]
    assert [f.name for f in fmt.event_fields] == declared


def test_formats_without_signed_parse():
    old = fmt_text("int pid;8;4;1").replace("\tsigned:1;", "").replace("\tsigned:0;", "")
    assert parse_event_format(old, "demo").field("pid").signed is False


def test_every_format_of_the_running_kernel_parses():
    import glob

    paths = glob.glob("/sys/kernel/tracing/events/*/*/format")
    if not paths:
        pytest.skip("no readable tracefs here")
    parsed = 0
    for path in paths:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue  # an event that went away (others' probes) or is not readable
        parse_event_format(text, path.split("/")[-3], source=path)
        parsed += 1
    assert parsed > 100


# ---------------------------------------------------------------- damaged formats

DAMAGED = {
    # (fields, the field to be named)
    "array length 5 of 48 bytes": (["long id;8;8;1", "unsigned long args[5];16;48;0"], "args"),
    "array size 40 of 6 longs": (["long id;8;8;1", "unsigned long args[6];16;40;0"], "args"),
    "array size 0": (["unsigned int vals[4];8;0;0"], "vals"),
    "char array size 0": (["char comm[16];8;0;0"], "comm"),
    "struct array size 0": (["struct foo items[3];8;0;0"], "items"),
    "u32 array of 6 bytes, symbolic length": (["u32 vals[LEN];8;6;0"], "vals"),
    "struct array not a whole number": (["struct foo items[3];8;10;0"], "items"),
    "scalar of 3 bytes": (["int pid;8;3;1"], "pid"),
    "scalar of 16 bytes": (["long id;8;16;1"], "id"),
    "scalar of 0 bytes, not last": (["unsigned long ip;8;0;0", "int x;8;4;1"], "ip"),
    "data_loc of 8 bytes": (["__data_loc char[] name;8;8;0"], "name"),
    "rel_loc of 2 bytes": (["__rel_loc char[] name;8;2;0"], "name"),
    "absurd offset": (["unsigned long args[6];560453750000;48;0"], "args"),
    "past the biggest record": ([f"int x;{MAX_RECORD_BYTES - 2};4;1"], "x"),
    "trailing array far away": (["char buf[];1000000;0;0"], "buf"),
    "signed 2": (["int pid;8;4;2"], "pid"),
    "signed -1": (["int pid;8;4;-1"], "pid"),
    "over common_pid": (["long id;4;8;1"], "id"),
    "over common_type": (["char c;1;1;0"], "c"),
}


@pytest.mark.parametrize("fields, culprit", DAMAGED.values(), ids=DAMAGED.keys())
def test_damaged_field_is_one_error_naming_it(fields, culprit):
    with pytest.raises(TraceFormatError) as got:
        parse_event_format(fmt_text(*fields, name="sys_enter"), "raw_syscalls", source="bad.dat")
    msg = str(got.value)
    assert msg.startswith("bad.dat: event sys_enter, field ") and f"field {culprit}:" in msg
    assert "\n" not in msg


def test_overlapping_common_fields_name_the_later_one():
    common = COMMON.replace("common_pid;\toffset:4", "common_pid;\toffset:2")
    with pytest.raises(TraceFormatError, match=r"field common_pid: bytes 2\.\.5 overlap common_flags"):
        parse_event_format(fmt_text("int x;8;4;1", common=common), "demo", source="bad.dat")


@pytest.mark.parametrize("text", [
    fmt_text("int pid;8;4;1").replace("common_flags", "common\0flags"),
    fmt_text("int pid;8;4;1").replace("\tfield:int pid;\toffset:8", "\tfield:int pid;\toffset:eight"),
    fmt_text("int pid;8;4;1").replace("size:4;\tsigned:1;\n\n", "size:;\tsigned:1;\n\n"),
])
def test_a_field_line_that_does_not_parse_is_an_error(text):
    with pytest.raises(TraceFormatError) as got:
        parse_event_format(text, "demo", source="bad.dat")
    assert str(got.value).startswith("bad.dat: event demo: ")


def test_header_page_data_is_not_an_event_field():
    from tracewatch.formats.event_format import HeaderPage

    text = ("\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
            "\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
            "\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
            "\tfield: char data;\toffset:16;\tsize:4080;\tsigned:1;\n")
    assert HeaderPage.parse(text).data_size == 4080


# ---------------------------------------------------------------- what a record needs


def test_min_record_size_lets_a_final_array_be_cut_short():
    stack = parse_event_format(fmt_text("int size;8;4;1", "unsigned long caller[8];16;64;0"), "ftrace")
    need, field = stack.min_record_size
    assert (need, field.name) == (16, "caller")
    sw = parse_event_format(fmt_text("char prev_comm[16];8;16;0", "int prev_pid;24;4;1"), "sched")
    assert sw.min_record_size[0] == 28 and sw.min_record_size[1].name == "prev_pid"
    exec_ = parse_event_format(fmt_text("__data_loc char[] filename;8;4;0"), "sched")
    assert exec_.min_record_size[0] == 12  # the __data_loc word itself is fixed


def test_values_of_a_checked_format_round_trip():
    fmt = parse_event_format(fmt_text("long id;8;8;1", "unsigned long args[6];16;48;0",
                                      "__data_loc char[] name;64;4;0"), "raw_syscalls")
    payload = struct.pack("<HBBi", 77, 0, 0, 42) + struct.pack("<q6QI", -5, *range(6), (3 << 16) | 68) + b"ab\0"
    got = fmt.unpack(payload)
    assert got["id"] == -5 and got["args"] == [0, 1, 2, 3, 4, 5] and got["name"] == "ab"


def test_every_format_of_every_fixture_parses():
    """Real files of other machines and years (third-party/: a 2014 32-bit ARM kernel's
    char NAME[32] arrays, arm64, v7) must all pass the checks."""
    from tests.conftest import FIXTURES
    from tracewatch.formats.tracedat import TraceDatReader

    files = sorted(FIXTURES.glob("**/*.dat"))
    if not files:
        pytest.skip(f"no fixtures in {FIXTURES}")
    for path in files:
        reader = TraceDatReader(path)
        for type_id in list(reader.formats):
            assert reader.formats[type_id].id == type_id


def test_a_print_fmt_with_a_real_newline_in_its_string_runs_to_the_end():
    """mmap_lock_* and 9p_protocol_dump print fmts hold a newline inside the quoted string;
    libtraceevent reads the print fmt's tokens up to the end of the file."""
    text = fmt_text("int x;8;4;1").replace('print fmt: "x"\n', 'print fmt: "first line\nsecond x=%d", REC->x\n')
    fmt = parse_event_format(text, "demo")
    assert fmt.print_fmt == '"first line\nsecond x=%d", REC->x'
