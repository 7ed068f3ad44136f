"""The ftrace filter language: parsing, errors, vectorised and per-event evaluation, kernel text."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracewatch.errors import FilterError
from tracewatch.formats.event_format import parse_event_format
from tracewatch.formats.symbols import KernelSymbols
from tracewatch.stream.filter import Filter, kallsyms_function_range

# A made-up event with one field of every kind a filter meets.
FORMAT_TEXT = """\
name: demo
ID: 4242
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:long ret;\toffset:8;\tsize:8;\tsigned:1;
\tfield:unsigned int flags;\toffset:16;\tsize:4;\tsigned:0;
\tfield:char comm[16];\toffset:20;\tsize:16;\tsigned:0;
\tfield:__data_loc char[] filename;\toffset:36;\tsize:4;\tsigned:0;
\tfield:unsigned long args[6];\toffset:40;\tsize:48;\tsigned:0;
\tfield:const char * name;\toffset:88;\tsize:8;\tsigned:0;
\tfield:unsigned long ip;\toffset:96;\tsize:8;\tsigned:0;
\tfield:short delta;\toffset:104;\tsize:2;\tsigned:1;
\tfield:u64 total;\toffset:112;\tsize:8;\tsigned:0;

print fmt: "ret=%ld", REC->ret
"""
FMT = parse_event_format(FORMAT_TEXT, "demo")


class FakeBatch:
    """Stands in for stream.batch.EventBatch: ``column(name)``, ``len``, events by index."""

    def __init__(self, **columns: np.ndarray) -> None:
        self.columns = columns
        lengths = {len(c) for c in columns.values()}
        assert len(lengths) == 1
        self.length = lengths.pop()

    def column(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __len__(self) -> int:
        return self.length

    def events(self) -> list[SimpleNamespace]:
        as_lists = {name: col.tolist() for name, col in self.columns.items()}
        return [SimpleNamespace(**{n: v[i] for n, v in as_lists.items()}) for i in range(self.length)]


def strings(*values: str) -> np.ndarray:
    return np.array(values, dtype=object)


def evaluate(expr: str, batch: FakeBatch, fmt=FMT) -> list[bool]:
    """Evaluate both ways and insist they agree."""
    flt = Filter.parse(expr, fmt)
    vectorised = flt.mask(batch)
    assert vectorised.dtype == bool and vectorised.shape == (len(batch),)
    per_event = [flt.matches(ev) for ev in batch.events()]
    assert vectorised.tolist() == per_event, expr
    return per_event


RETS = FakeBatch(ret=np.array([-5, -1, 0, 1, 7, 2**63 - 1, -(2**63)], dtype=np.int64))


# --------------------------------------------------------------------------- operators


@pytest.mark.parametrize(
    "expr, expected",
    [
        ("ret == 0", [0, 0, 1, 0, 0, 0, 0]),
        ("ret != 0", [1, 1, 0, 1, 1, 1, 1]),
        ("ret < 0", [1, 1, 0, 0, 0, 0, 1]),
        ("ret <= 0", [1, 1, 1, 0, 0, 0, 1]),
        ("ret > 0", [0, 0, 0, 1, 1, 1, 0]),
        ("ret >= 1", [0, 0, 0, 1, 1, 1, 0]),
        ("ret & 1", [1, 1, 0, 1, 1, 1, 0]),
        ("ret & -0x8000000000000000", [1, 1, 0, 0, 0, 0, 1]),
        ("ret == -1", [0, 1, 0, 0, 0, 0, 0]),
        ("ret == -0x1", [0, 1, 0, 0, 0, 0, 0]),
        ("ret < -4", [1, 0, 0, 0, 0, 0, 1]),
        ("ret == 9223372036854775807", [0, 0, 0, 0, 0, 1, 0]),
        ("ret == 07", [0, 0, 0, 0, 1, 0, 0]),
    ],
)
def test_numeric_operators(expr, expected):
    assert evaluate(expr, RETS) == [bool(x) for x in expected]


def test_unsigned_fields_compare_as_unsigned():
    batch = FakeBatch(
        flags=np.array([0, 1, 0x80000000, 0xFFFFFFFF], dtype=np.uint32),
        total=np.array([0, 1, 2**63, 2**64 - 1], dtype=np.uint64),
    )
    assert evaluate("flags > 0x7fffffff", batch) == [False, False, True, True]
    assert evaluate("flags & 0x80000000", batch) == [False, False, True, True]
    assert evaluate("total > 9223372036854775807", batch) == [False, False, True, True]
    assert evaluate("total == 0xffffffffffffffff", batch) == [False, False, False, True]
    assert evaluate("total >= 1 && flags <= 1", batch) == [False, True, False, False]


def test_values_take_the_fields_width_like_the_kernel():
    # The kernel casts the operand to the field type: 0xffffffff on an int is -1.
    batch = FakeBatch(common_pid=np.array([-1, 0, 5], dtype=np.int64))
    assert evaluate("common_pid == 0xffffffff", batch) == [True, False, False]
    assert evaluate("common_pid == 4294967295", batch) == [True, False, False]
    batch = FakeBatch(delta=np.array([-32768, -1, 0, 32767], dtype=np.int16))
    assert evaluate("delta < -1", batch) == [True, False, False, False]
    assert evaluate("delta == 0x8000", batch) == [True, False, False, False]


def test_without_a_format_numbers_compare_exactly():
    batch = FakeBatch(x=np.array([0, 2**64 - 1], dtype=np.uint64), y=np.array([-3, 3], dtype=np.int64))
    assert evaluate("x > 18446744073709551614", batch, fmt=None) == [False, True]
    assert evaluate("x > -1", batch, fmt=None) == [True, True]
    assert evaluate("y < 18446744073709551615", batch, fmt=None) == [True, True]
    assert evaluate("y == -3", batch, fmt=None) == [True, False]
    assert evaluate("x & 0x8000000000000000", batch, fmt=None) == [False, True]
    assert evaluate("y & 0xfffffffffffffffc", batch, fmt=None) == [True, False]


def test_small_and_bool_columns():
    batch = FakeBatch(v=np.array([0, 1, 200, 255], dtype=np.uint8), b=np.array([True, False, True, False]))
    assert evaluate("v > 199 && v < 1000", batch, fmt=None) == [False, False, True, True]
    assert evaluate("b == 1", batch, fmt=None) == [True, False, True, False]


# --------------------------------------------------------------------------- logic


LOGIC = FakeBatch(
    a=np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=np.int64),
    b=np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64),
    c=np.array([0, 1, 0, 1, 0, 1, 0, 1], dtype=np.int64),
)


def truth(expr: str) -> list[bool]:
    return evaluate(expr, LOGIC, fmt=None)


def rows(fn) -> list[bool]:
    return [bool(fn(a, b, c)) for a, b, c in zip(*(LOGIC.column(n).tolist() for n in "abc"))]


def test_and_binds_tighter_than_or():
    assert truth("a == 1 || b == 1 && c == 1") == rows(lambda a, b, c: a or (b and c))
    assert truth("a == 1 && b == 1 || c == 1") == rows(lambda a, b, c: (a and b) or c)


def test_parentheses_override_precedence():
    assert truth("(a == 1 || b == 1) && c == 1") == rows(lambda a, b, c: (a or b) and c)
    assert truth("((a == 1))") == rows(lambda a, b, c: a)


def test_not_applies_to_the_next_predicate_or_group():
    assert truth("!a == 1 && b == 1") == rows(lambda a, b, c: (not a) and b)
    assert truth("!(a == 1 && b == 1)") == rows(lambda a, b, c: not (a and b))
    assert truth("!!a == 1") == rows(lambda a, b, c: a)
    assert truth("a == 1 && !(b == 1 || !c == 1)") == rows(lambda a, b, c: a and not (b or not c))


def test_whitespace_is_optional():
    assert truth("a==1&&!(b!=0)||c>=1") == rows(lambda a, b, c: (a and not b) or c)


# --------------------------------------------------------------------------- strings


COMMS = FakeBatch(
    comm=strings("gcc", "gcc-12", "cc1", "bash", "", "zsh", "a*b", "g?c", "caf\xe9"),
)


@pytest.mark.parametrize(
    "expr, expected",
    [
        ('comm == "gcc"', ["gcc"]),
        ("comm == 'bash'", ["bash"]),
        ('comm != "gcc"', ["gcc-12", "cc1", "bash", "", "zsh", "a*b", "g?c", "caf\xe9"]),
        ('comm ~ "gcc*"', ["gcc", "gcc-12"]),
        ('comm ~ "*sh"', ["bash", "zsh"]),
        ('comm ~ "*c*"', ["gcc", "gcc-12", "cc1", "g?c", "caf\xe9"]),
        ('comm ~ "g?c"', ["gcc", "g?c"]),
        ('comm ~ "[bz]*"', ["bash", "zsh"]),
        ('comm ~ "[!bz]*"', ["gcc", "gcc-12", "cc1", "a*b", "g?c", "caf\xe9"]),
        ('comm ~ "[a-c]*"', ["cc1", "bash", "a*b", "caf\xe9"]),
        (r'comm ~ "a\*b"', ["a*b"]),
        (r'comm ~ "g\?c"', ["g?c"]),
        ('comm ~ "*"', ["gcc", "gcc-12", "cc1", "bash", "", "zsh", "a*b", "g?c", "caf\xe9"]),
        ('comm ~ ""', [""]),
        ('comm ~ "caf?"', []),  # '?' is one byte, as in the kernel; é is two
        ('comm ~ "caf??"', ["caf\xe9"]),
        ('comm ~ "!gcc*"', ["cc1", "bash", "", "zsh", "a*b", "g?c", "caf\xe9"]),  # kernel: '!' negates
        ('comm == "caf\xe9"', ["caf\xe9"]),
    ],
)
def test_string_operators(expr, expected):
    got = evaluate(expr, COMMS)
    assert [c for c, hit in zip(COMMS.column("comm").tolist(), got) if hit] == expected


def test_glob_starting_with_a_digit_is_literal_like_the_kernel():
    batch = FakeBatch(comm=strings("1*", "12", "1"))
    assert evaluate('comm ~ "1*"', batch) == [True, False, False]


def test_string_escapes():
    batch = FakeBatch(comm=strings('say "hi"', "it's", "back\\slash", "tab\there"))
    assert evaluate(r'comm == "say \"hi\""', batch) == [True, False, False, False]
    assert evaluate("comm == 'say \"hi\"'", batch) == [True, False, False, False]
    assert evaluate(r"comm == 'it\'s'", batch) == [False, True, False, False]
    assert evaluate(r'comm == "back\\slash"', batch) == [False, False, True, False]
    assert evaluate(r'comm == "tab\there"', batch) == [False, False, False, True]


def test_dynamic_strings_and_metadata_comm():
    batch = FakeBatch(
        filename=strings("/lib/libc.so.6", "/etc/passwd", ""),
        common_comm=strings("bash", "sshd", "bash"),
    )
    assert evaluate('filename ~ "*.so*" || common_comm == "sshd"', batch) == [True, True, False]
    assert evaluate('COMM ~ "b*"', batch) == [True, False, True]


def test_unicode_and_unpaired_bytes_strings_in_columns():
    # surrogateescape strings (invalid UTF-8 from the kernel) must not break matching
    batch = FakeBatch(comm=strings("ab\udcff", "abc"))
    assert evaluate('comm ~ "ab?"', batch) == [True, True]
    assert evaluate('comm == "ab\udcff"', batch) == [True, False]


# --------------------------------------------------------------------------- CPUs, metadata, functions


def test_cpus_lists():
    batch = FakeBatch(common_cpu=np.array([0, 1, 2, 3, 8, 9], dtype=np.int64))
    assert evaluate("common_cpu & CPUS{0-2,8}", batch) == [True, True, True, False, True, False]
    assert evaluate("CPU & CPUS{3}", batch) == [False, False, False, True, False, False]
    assert evaluate("cpu == CPUS{3}", batch) == [False, False, False, True, False, False]
    assert evaluate("cpu != CPUS{3}", batch) == [True, True, True, False, True, True]
    # A wider mask never equals one CPU (kernel: do_filter_scalar_cpumask)
    assert evaluate("common_cpu == CPUS{1-2}", batch) == [False] * 6
    assert evaluate("common_cpu != CPUS{1-2}", batch) == [True] * 6
    assert evaluate("common_cpu < 2 || common_cpu > 8", batch) == [True, True, False, False, False, True]


def test_metadata_names():
    batch = FakeBatch(common_ts=np.array([10, 20, 30], dtype=np.uint64),
                      common_pid=np.array([0, 7, 7], dtype=np.int64))
    assert evaluate("common_ts >= 20 && common_pid != 0", batch) == [False, True, True]
    assert Filter.parse("CPU == 1 && COMM == 'x' && cpu > 0 && comm == 'y'", None).fields == {
        "common_cpu", "common_comm", "cpu", "comm"}
    # With a format, an event's own field wins, as in the kernel.
    assert Filter.parse("comm == 'y' && cpu > 0", FMT).fields == {"comm", "common_cpu"}


def test_function_ranges():
    symbols = KernelSymbols.parse(
        "ffffffff81000000 T _stext\nffffffff81000100 T do_thing\nffffffff81000180 t do_thing.cold\n"
        "ffffffff81000200 T next_fn\n")
    ranges = kallsyms_function_range(symbols)
    batch = FakeBatch(ip=np.array([0xffffffff81000100, 0xffffffff8100017f, 0xffffffff81000180,
                                   0xffffffff81000050], dtype=np.uint64))
    flt = Filter.parse("ip.function == do_thing", FMT, function_range=ranges)
    assert flt.mask(batch).tolist() == [True, True, False, False]
    assert [flt.matches(ev) for ev in batch.events()] == [True, True, False, False]
    flt = Filter.parse("ip.function != 0xffffffff81000190", FMT, function_range=ranges)
    assert flt.mask(batch).tolist() == [True, True, False, True]
    assert flt.kernel_expr() == "ip.function != 0xffffffff81000190"
    with pytest.raises(FilterError, match="needs the kernel's symbols"):
        Filter.parse("ip.function == do_thing", FMT)
    with pytest.raises(FilterError, match="no kernel function 'nope'"):
        Filter.parse("ip.function == nope", FMT, function_range=ranges)
    with pytest.raises(FilterError, match="== or !="):
        Filter.parse("ip.function < do_thing", FMT, function_range=ranges)


def test_fields_and_python_source():
    flt = Filter.parse('ret < 0 && (comm ~ "x*" || !(flags & 4))', FMT)
    assert flt.fields == {"ret", "comm", "flags"}
    assert flt.python_source.startswith("lambda ev: ")


def test_awkward_attribute_names_are_safe():
    # Python keywords cannot be written ev.from; they go through attrgetter.
    flt = Filter.parse("from > 1 && _private == 2", None)
    ev = SimpleNamespace(**{"from": 2, "_private": 2})
    assert flt.matches(ev)
    assert "ev.from" not in flt.python_source


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "expr, column, message",
    [
        ("rett < 0", 0, "unknown field 'rett' in demo:demo (did you mean 'ret'?)"),
        ("ret < 0 && flag & 1", 11, "did you mean 'flags'?"),
        ("", 0, "empty filter"),
        ("ret", 3, "expected an operator"),
        ("ret = 0", 4, "did you mean '=='?"),
        ("ret < 0 | flags", 8, "did you mean '||'?"),
        ("(ret < 0", 0, "'(' is never closed"),
        ("ret < 0)", 7, "')' without a matching '('"),
        ("ret < 0 &&", 10, "expression ends"),
        ("ret < 0 flags == 1", 8, "expected '&&', '||' or the end"),
        ('comm == "bash', 8, "no closing"),
        ("comm == bash", 8, "did you forget quotes?"),
        ("comm < 'a'", 5, "does not apply to strings"),
        ("comm == 1", 8, "is a string"),
        ("comm & CPUS{1}", 7, "is a string"),
        ('ret == "x"', 7, "is a number"),
        ('name == "x"', 8, "tracewatch cannot read"),
        ("ret ~ 1", 4, "'~' matches strings"),
        ("ret < 0x", 6, "invalid number '0x'"),
        ("ret < 09", 6, "invalid number '09'"),
        ("flags == -1", 9, "unsigned"),
        ("flags == 0x100000000", 9, "does not fit"),
        ("common_pid == -2147483649", 14, "does not fit"),
        ("ret == 0xffffffffffffffff", 7, "does not fit"),
        ("args == 1", 0, "is an array"),
        ("ret < CPUS{1}", 4, "does not apply to CPUS"),
        ("cpu & CPUS{}", 11, "invalid CPU list"),
        ("cpu & CPUS{3-1}", 11, "invalid CPU range"),
        ("cpu & CPUS{1", 6, "without a closing"),
        ("name.ustring == 'x'", 0, "only the kernel"),
        ("ret.foo == 1", 0, "unknown field modifier"),
        ("ret # 1", 4, "unexpected character '#'"),
        ("&& ret < 0", 0, "expected a field name"),
        ("ret < ", 6, "expected a value"),
    ],
)
def test_errors_point_at_the_column(expr, column, message):
    with pytest.raises(FilterError) as info:
        Filter.parse(expr, FMT)
    err = info.value
    assert message in err.message
    assert err.column == column, (err.column, str(err))
    assert err.expr == expr
    text = str(err)
    assert "\n" not in text and f"column {column + 1}" in text


def test_error_message_is_one_line_even_for_multiline_expressions():
    with pytest.raises(FilterError) as info:
        Filter.parse("ret < 0 &&\n rett > 1", FMT)
    assert "\n" not in str(info.value) and info.value.column == 12


def test_type_mismatch_found_at_evaluation_without_a_format():
    flt = Filter.parse("comm > 3", None)
    with pytest.raises(FilterError, match="not numbers"):
        flt.mask(FakeBatch(comm=strings("a")))
    flt = Filter.parse("n == 'x'", None)
    with pytest.raises(FilterError, match="not strings"):
        flt.mask(FakeBatch(n=np.array([1])))


# --------------------------------------------------------------------------- kernel text


@pytest.mark.parametrize(
    "expr, kernel",
    [
        ("ret < 0", "ret < 0"),
        ("ret<0&&flags&0x10", "ret < 0 && flags & 0x10"),
        ("(ret == 1 || ret == 2) && common_pid != 0", "(ret == 1 || ret == 2) && common_pid != 0"),
        ("ret == 1 || ret == 2 && flags == 3", "ret == 1 || ret == 2 && flags == 3"),
        ("!(ret == 1 || ret == 2)", "!(ret == 1 || ret == 2)"),
        ("!ret == 1", "!(ret == 1)"),
        ("common_cpu == 2", "CPU == 2"),
        ("common_cpu & CPUS{0-3,8}", "CPU & CPUS{0-3,8}"),
        ("common_comm ~ 'gcc*'", 'COMM ~ "gcc*"'),
        ('comm == \'say "hi"\'', "comm == 'say \"hi\"'"),
        ("common_pid == 0xffffffff", "common_pid == -1"),
        ("flags == 010", "flags == 8"),
        # The kernel's "*suffix" shortcut is wrong on fixed char arrays; escape it into a glob.
        ('comm ~ "*sh"', r'comm ~ "*\sh"'),
        ('comm ~ "!*sh"', r'comm ~ "!*\sh"'),
        ('filename ~ "*.so"', 'filename ~ "*.so"'),
        ('comm ~ "*sh*"', 'comm ~ "*sh*"'),
        ("common_ts > 5", None),
        ("ret < 0 || common_ts > 5", None),
        ('comm == "both \\" and \'"', None),
        ("name == 0", None),
    ],
)
def test_kernel_expr(expr, kernel):
    flt = Filter.parse(expr, FMT)
    assert flt.kernel_expr() == kernel
    if kernel is not None:
        # Stable: the kernel text parses back to itself
        assert Filter.parse(kernel, FMT).kernel_expr() == kernel


def test_kernel_prefilter_keeps_a_superset():
    assert Filter.parse("common_pid == 4 && common_ts > 5", FMT).kernel_prefilter() == "common_pid == 4"
    assert Filter.parse("common_ts > 5 && (ret < 0 || ret > 9)", FMT).kernel_prefilter() == "ret < 0 || ret > 9"
    assert Filter.parse("common_pid == 4 || common_ts > 5", FMT).kernel_prefilter() is None
    assert Filter.parse("!(common_pid == 4 && common_ts > 5)", FMT).kernel_prefilter() is None
    assert Filter.parse("ret < 0", FMT).kernel_prefilter() == "ret < 0"


@pytest.mark.parametrize(
    "expr",
    [
        'ret < 0 && (comm ~ "gcc*" || !(flags & 0x4)) || common_ts >= 17',
        r'comm == "q\"uote\\back" && filename != "a\tb"',
        "common_cpu & CPUS{1,3-5} || cpu != 2",
        "!!(ret == -1)",
    ],
)
def test_str_round_trips(expr):
    flt = Filter.parse(expr, FMT)
    again = Filter.parse(str(flt), FMT)
    assert str(again) == str(flt)
    assert again.python_source == flt.python_source


# --------------------------------------------------------------------------- mask == matches


NUMERIC_ATOMS = st.one_of(
    st.tuples(st.just("ret"), st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "&"]),
              st.sampled_from(["0", "-1", "1", "0x7fffffffffffffff", "-9223372036854775808", "0x10", "07"])),
    st.tuples(st.just("flags"), st.sampled_from(["==", "!=", "<", ">=", "&"]),
              st.sampled_from(["0", "1", "0xffffffff", "0x80000000", "5"])),
    st.tuples(st.just("total"), st.sampled_from(["==", "<", ">", "&"]),
              st.sampled_from(["0", "0xffffffffffffffff", "0x8000000000000000", "3"])),
    st.tuples(st.just("common_pid"), st.sampled_from(["==", "!=", "<", ">"]),
              st.sampled_from(["0", "-1", "0xffffffff", "100"])),
    st.tuples(st.sampled_from(["common_cpu", "CPU"]), st.sampled_from(["&", "==", "!="]),
              st.sampled_from(["CPUS{0-1}", "CPUS{2}", "CPUS{1,3}"])),
).map(" ".join)
STRING_ATOMS = st.tuples(
    st.sampled_from(["comm", "filename", "common_comm"]),
    st.sampled_from(["==", "!=", "~"]),
    st.sampled_from(['"a"', '"ab*"', '"*b"', '"*a*"', '"?"', '"[ab]?"', '""', '"!a*"', '"1*"', "'b'"]),
).map(" ".join)


def combine(children):
    pair = st.tuples(children, children)
    return st.one_of(
        pair.map(lambda p: f"{p[0]} && {p[1]}"),
        pair.map(lambda p: f"{p[0]} || {p[1]}"),
        children.map(lambda c: f"!({c})"),
        children.map(lambda c: f"({c})"),
    )


EXPRESSIONS = st.recursive(st.one_of(NUMERIC_ATOMS, STRING_ATOMS), combine, max_leaves=6)
TEXT = st.sampled_from(["", "a", "b", "ab", "ba", "abc", "1", "1*", "b\xe9", "aab"])


@st.composite
def batches(draw):
    n = draw(st.integers(0, 12))
    ints = lambda lo, hi: draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n))  # noqa: E731
    edge64 = st.sampled_from([-(2**63), -1, 0, 1, 16, 2**63 - 1])
    return FakeBatch(
        ret=np.array(draw(st.lists(st.one_of(edge64, st.integers(-(2**63), 2**63 - 1)), min_size=n, max_size=n)),
                     dtype=np.int64),
        flags=np.array(ints(0, 2**32 - 1), dtype=np.uint32),
        total=np.array(ints(0, 2**64 - 1), dtype=np.uint64),
        common_pid=np.array(ints(-(2**31), 2**31 - 1), dtype=np.int64),
        common_cpu=np.array(ints(0, 4), dtype=np.int64),
        comm=np.array(draw(st.lists(TEXT, min_size=n, max_size=n)), dtype=object),
        filename=np.array(draw(st.lists(TEXT, min_size=n, max_size=n)), dtype=object),
        common_comm=np.array(draw(st.lists(TEXT, min_size=n, max_size=n)), dtype=object),
    )


@settings(max_examples=300, deadline=None)
@given(EXPRESSIONS, batches())
def test_mask_agrees_with_matches(expr, batch):
    flt = Filter.parse(expr, FMT)
    assert flt.mask(batch).tolist() == [flt.matches(ev) for ev in batch.events()]
    # The normalised text means the same
    assert Filter.parse(str(flt), FMT).mask(batch).tolist() == flt.mask(batch).tolist()


# --------------------------------------------------------------------------- the kernel itself

TRACEFS = Path("/sys/kernel/tracing")
SYS_EXIT_FORMAT = TRACEFS / "events/raw_syscalls/sys_exit/format"


def _tracefs_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create a tracefs instance"
    if not (TRACEFS / "instances").is_dir():
        return "no tracefs at /sys/kernel/tracing (mount -t tracefs nodev /sys/kernel/tracing)"
    if not SYS_EXIT_FORMAT.exists():
        return "no raw_syscalls:sys_exit event in tracefs"
    return None


@pytest.fixture
def private_instance():
    """A tracefs instance of our own, removed on every path out of the test."""
    problem = _tracefs_problem()
    if problem:
        pytest.skip(problem)
    instance = TRACEFS / "instances" / f"tw-test-filter-{os.getpid()}"
    try:
        instance.mkdir()
    except OSError as e:
        pytest.skip(f"cannot create a tracefs instance: {e}")
    try:
        yield instance
    finally:
        event = instance / "events/raw_syscalls/sys_exit"
        for name, value in (("enable", "0"), ("filter", "0")):
            try:
                (event / name).write_text(value)
            except OSError:
                pass
        instance.rmdir()


def _write_filter(path: Path, text: str) -> None:
    with open(path, "wb") as f:
        f.write(text.encode("utf-8", "surrogateescape"))


@pytest.mark.live
def test_kernel_accepts_kernel_expr(private_instance):
    fmt = parse_event_format(SYS_EXIT_FORMAT.read_text(), "raw_syscalls")
    filter_file = private_instance / "events/raw_syscalls/sys_exit/filter"
    exprs = [
        "ret < 0",
        "ret == -0x1 || ret == 0xff",
        "!(id == 0 || id == 1) && common_pid != 0",
        "common_pid == 0xffffffff",
        "id & 0x3 && ret >= 0",
        "common_cpu == 0 || common_cpu & CPUS{0-1}",
        'common_comm ~ "bash*" || common_comm ~ "*sh" || common_comm ~ "*as*"',
        "common_comm ~ '[a-c]?sh' && common_comm != \"a\\\"b\"",
        "id == 010",
    ]
    for expr in exprs:
        text = Filter.parse(expr, fmt).kernel_expr()
        assert text is not None, expr
        _write_filter(filter_file, text)  # OSError (EINVAL) when the kernel refuses it
        assert filter_file.read_text().strip() == text
    # The check is real: the kernel refuses what it does not know.
    with pytest.raises(OSError):
        _write_filter(filter_file, "common_ts > 5")


@pytest.mark.live
def test_kernel_agrees_on_a_suffix_glob(private_instance, tmp_path):
    """'COMM ~ "*suffix"' as written would match nothing in the kernel; kernel_expr's must match."""
    fmt = parse_event_format(SYS_EXIT_FORMAT.read_text(), "raw_syscalls")
    event = private_instance / "events/raw_syscalls/sys_exit"
    program = tmp_path / "twfiltsuffix"  # the task's comm is this name
    program.symlink_to(sys.executable)
    flt = Filter.parse('common_comm ~ "*filtsuffix"', fmt)
    _write_filter(event / "filter", flt.kernel_expr())
    (event / "enable").write_text("1")
    proc = subprocess.run([str(program), "-c", "import os; os.getpid()"], check=True)
    time.sleep(0.05)
    (event / "enable").write_text("0")
    assert proc.returncode == 0
    lines = [line for line in (private_instance / "trace").read_text().splitlines() if not line.startswith("#")]
    assert lines, "the kernel dropped every event of the matching task"
