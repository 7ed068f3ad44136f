"""Fuzz format files: whatever a field line says, parsing either accepts a format whose
every field can be read from a record, or raises one TraceFormatError line; and a
trace.dat whose format was fuzzed goes through `report` as exit 0 or one error line.
"""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import FIXTURES
from tests.corpus.mutations import field_attr
from tracewatch.errors import TraceFormatError
from tracewatch.formats.event_format import MAX_RECORD_BYTES, field_value, parse_event_format

COMMON = [("unsigned short common_type", 0, 2, 0), ("unsigned char common_flags", 2, 1, 0),
          ("unsigned char common_preempt_count", 3, 1, 0), ("int common_pid", 4, 4, 1)]
TYPES = ["int", "unsigned int", "long", "unsigned long", "char", "u8", "u16", "u64", "s32", "void *",
         "struct foo", "pid_t", "gfp_t"]

# mostly plausible values (so that many formats pass and get read), now and then absurd ones
sizes = st.one_of(st.sampled_from([1, 2, 4, 8]), st.sampled_from([0, 3, 4, 6, 16, 24, 32, 48, 64]),
                  st.integers(0, 1 << 40))
offsets = st.one_of(st.integers(8, 80), st.integers(8, 80), st.integers(0, 1 << 17), st.just(560453750000))
lengths = st.one_of(st.none(), st.just(""), st.integers(0, 70).map(str), st.sampled_from(["TASK_COMM_LEN", "4 + 2"]))
signs = st.sampled_from([None, "0", "1", "0", "1", "0", "1", "2", "-1"])


TYPE_SIZES = {"int": 4, "unsigned int": 4, "long": 8, "unsigned long": 8, "char": 1, "u8": 1, "u16": 2, "u64": 8,
              "s32": 4, "void *": 8, "struct foo": 12, "pid_t": 4, "gfp_t": 4}


@st.composite
def field_lines(draw, index: int, at: int) -> tuple[str, int]:
    """One field line and the offset after it: half the time a right one placed at ``at``,
    else with fuzzed offset, size and signedness."""
    ctype = draw(st.sampled_from(TYPES))
    name = f"f{index}"
    kind = draw(st.sampled_from(["plain", "plain", "array", "data_loc", "rel_loc"]))
    right = draw(st.booleans())
    n = draw(st.integers(1, 8))
    if kind == "array":
        length = str(n) if right else draw(lengths)
        decl = f"{ctype} {name}[{'' if length is None else length}]"
        size = n * TYPE_SIZES[ctype]
    elif kind in ("data_loc", "rel_loc"):
        decl = f"__{kind} {ctype}[] {name}"
        size = 4
    else:
        decl = f"{ctype} {name}"
        size = TYPE_SIZES[ctype]
    if right:
        offset, signed = at, draw(st.sampled_from([None, "0", "1"]))
    else:
        offset, size, signed = draw(offsets), draw(sizes), draw(signs)
    tail = "" if signed is None else f"\tsigned:{signed};"
    return f"\tfield:{decl};\toffset:{offset};\tsize:{size};{tail}", max(at, offset + size)


@st.composite
def format_texts(draw) -> str:
    common = [f"\tfield:{d};\toffset:{o};\tsize:{s};\tsigned:{g};" for d, o, s, g in COMMON]
    if draw(st.integers(0, 4)) == 0:  # move a common field now and then
        i = draw(st.integers(0, 3))
        d, _, s, g = COMMON[i]
        common[i] = f"\tfield:{d};\toffset:{draw(st.integers(0, 12))};\tsize:{s};\tsigned:{g};"
    fields, at = [], 8
    for i in range(draw(st.integers(1, 4))):
        line, at = draw(field_lines(i, at))
        fields.append(line)
    return "name: fuzzed\nID: 901\nformat:\n" + "\n".join(common) + "\n\n" + "\n".join(fields) + '\n\nprint fmt: "x"\n'


@settings(max_examples=300, deadline=None)
@given(text=format_texts(), payload_seed=st.binary(min_size=0, max_size=256))
def test_a_parsed_format_reads_every_record(text, payload_seed):
    try:
        fmt = parse_event_format(text, "fuzz", source="fuzz.dat")
    except TraceFormatError as e:
        msg = str(e)
        assert msg.startswith("fuzz.dat: event fuzzed") and "\n" not in msg
        return
    need, _ = fmt.min_record_size
    assert need <= MAX_RECORD_BYTES
    for f in fmt.fields:
        assert f.offset + f.size <= MAX_RECORD_BYTES
        if f.is_dynamic:
            assert f.size == 4
        elif f.array_len and not f.is_string and not f.type.startswith("struct "):
            assert f.elem_size * f.array_len == f.size, f
    # any record at least as long as the format needs: every field reads without an exception
    payload = (payload_seed * (need // max(1, len(payload_seed)) + 2))[: need + len(payload_seed)] if payload_seed \
        else bytes(need)
    for f in fmt.fields:
        value = field_value(f, payload)
        assert isinstance(value, (int, str, list))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_byte_edits_of_real_formats_parse_or_raise_one_error(data):
    files = sorted((FIXTURES / "raw-pages" / "events").glob("*/*/format"))
    if not files:
        pytest.skip("raw-pages fixture missing")
    text = bytearray(data.draw(st.sampled_from(files)).read_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(text) - 1))
        text[at] = data.draw(st.sampled_from(b"0123456789;:[] \t\n\0xf-"))
    try:
        parse_event_format(text.decode("latin-1"), "fuzz", source="fuzz.dat")
    except TraceFormatError as e:
        assert str(e).startswith("fuzz.dat: ") and "\n" not in str(e)


class _Sink(io.RawIOBase):
    def writable(self):
        return True

    def write(self, b):
        return len(b)


@pytest.mark.skipif(not (FIXTURES / "a_syscalls.v6.dat").exists(), reason=f"fixtures missing in {FIXTURES}")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event_field=st.sampled_from([("sys_enter", "id"), ("sys_enter", "args"), ("sys_exit", "ret"),
                                    ("sys_enter", "common_pid")]),
       attr=st.sampled_from(["offset", "size", "signed"]), value=st.integers(0, 1 << 20))
def test_report_of_a_fuzzed_format_is_exit_0_or_one_error(tmp_path, event_field, attr, value):
    from tracewatch.tools import report

    event, fld = event_field
    data = field_attr(event, fld, attr, str(value))((FIXTURES / "a_syscalls.v6.dat").read_bytes())
    path = tmp_path / "fuzzed.dat"
    path.write_bytes(data)
    err = io.StringIO()
    saved = sys.stdout
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(_Sink()), encoding="utf-8")
    try:
        with redirect_stderr(err):
            rc = report.main([str(path)])
    finally:
        sys.stdout = saved
    text = err.getvalue()
    assert rc in (0, 2) and "Traceback" not in text
    errors = [l for l in text.splitlines() if l.startswith("tracewatch: error: ")]
    assert len(errors) == (1 if rc == 2 else 0), text
    if rc == 2:
        assert str(path) in errors[0]
