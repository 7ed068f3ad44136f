"""Damaged inputs made from the real fixtures by small, named mutations.

Each mutation is a function ``bytes -> bytes`` of a fixture's contents; the
corpus (``CASES``) pairs a fixture with one.  Like pyelftools' corrupt-file
tests, the point is that every case is reproducible from its name.

Format files are edited in place: a v6 trace.dat stores each event's format as
an 8-byte length and the text, and file offsets further on point past them, so
an edited text must keep its length.  :func:`edit_format` makes room by taking
out the tabs of the field lines (the parser does not need them) and pads a
shorter text with newlines.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Callable

Mutation = Callable[[bytes], bytes]


def truncate(at: int | float) -> Mutation:
    """Keep the first ``at`` bytes (a float: that fraction of the file)."""

    def cut(data: bytes) -> bytes:
        return data[: int(at * len(data)) if isinstance(at, float) else at]

    return cut


def zero_range(start: int | float, size: int) -> Mutation:
    """Overwrite ``size`` bytes from ``start`` (a float: that fraction of the file) with zeros."""

    def zero(data: bytes) -> bytes:
        s = int(start * len(data)) if isinstance(start, float) else start
        out = bytearray(data)
        out[s : s + size] = bytes(len(out[s : s + size]))
        return bytes(out)

    return zero


def set_bytes(at: int, value: bytes) -> Mutation:
    """Overwrite the bytes at ``at`` with ``value``."""

    def put(data: bytes) -> bytes:
        return data[:at] + value + data[at + len(value) :]

    return put


def replace_with(content: bytes) -> Mutation:
    """Another file altogether (a perf.data, an ELF, nothing) given as a trace.dat."""
    return lambda data: content


def format_span(data: bytes, event: str) -> tuple[int, int]:
    """(start, length) of event ``event``'s format text in a v6 trace.dat's bytes."""
    start = data.find(f"name: {event}\nID:".encode())
    if start < 8:
        raise LookupError(f"no format of event {event!r} in the file")
    (length,) = struct.unpack_from("<Q", data, start - 8)
    return start, length


def edit_format(event: str, edit: Callable[[str], str]) -> Mutation:
    """Apply ``edit`` to event ``event``'s format text, keeping its length in the file."""

    def mutate(data: bytes) -> bytes:
        start, length = format_span(data, event)
        text = edit(data[start : start + length].decode())
        if len(text) > length:  # make room: field lines parse without their tabs
            text = re.sub(r"(?m)^\t(field:.*)$", lambda m: m.group(1).replace("\t", ""), text)
        if len(text) > length:
            raise ValueError(f"edited format of {event} is {len(text) - length} bytes too long")
        text = text + "\n" * (length - len(text))
        return data[:start] + text.encode() + data[start + length :]

    return mutate


def field_attr(event: str, field: str, attr: str, value: str) -> Mutation:
    """Set ``offset``, ``size`` or ``signed`` of one field in a format text."""
    pattern = re.compile(rf"(field:[^;]*\b{re.escape(field)}\b[^;]*;\s*(?:[a-z]+:[^;]*;\s*)*?{attr}:)\s*[^;]*;")

    def edit(text: str) -> str:
        new, n = pattern.subn(lambda m: f"{m.group(1)}{value};", text, count=1)
        if not n:
            raise LookupError(f"no {attr} of field {field} in the format of {event}")
        return new

    return edit_format(event, edit)


def declaration(event: str, old: str, new: str) -> Mutation:
    """Change a field's declaration (``unsigned long args[6]`` -> ``... args[5]``)."""

    def edit(text: str) -> str:
        if f"field:{old};" not in text:
            raise LookupError(f"no field {old!r} in the format of {event}")
        return text.replace(f"field:{old};", f"field:{new};", 1)

    return edit_format(event, edit)


@dataclass(frozen=True)
class Case:
    """One damaged input: a fixture, a mutation, and a name that says what was done."""

    name: str
    fixture: str
    mutate: Mutation
    #: the format damage a reader must name (exit 2), or None: exit 0 or 2, either is right
    names: tuple[str, ...] | None = None

    def build(self, fixtures) -> bytes:
        return self.mutate((fixtures / self.fixture).read_bytes())


ELF_HEADER = (b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0x1000, 64, 0, 0,
                                                                 64, 56, 0, 64, 0, 0))
PERF_DATA = b"PERFILE2" + struct.pack("<QQQ", 104, 136, 0) + bytes(256)

def _stem(fixture: str) -> str:
    return fixture.split(".")[0].split("_", 1)[1] + "-" + fixture.split(".")[1]


SYSCALLS, SCHED, MARKERS, MIXED, MIXED_V7 = ("a_syscalls.v6.dat", "b_sched.v6.dat", "c_markers.v6.dat",
                                             "e_mixed.v6.dat", "e_mixed.v7z.dat")

CASES: list[Case] = [
    # not a trace at all
    Case("empty", SCHED, replace_with(b"")),
    Case("perf-data", SCHED, replace_with(PERF_DATA)),
    Case("elf", SCHED, replace_with(ELF_HEADER + bytes(4096))),
    Case("text", SCHED, replace_with(b"hello, I am not a trace\n" * 40)),
    Case("bad-magic", SCHED, set_bytes(0, b"\x17\x08\x45")),
    Case("not-tracing", SCHED, set_bytes(3, b"tracinG")),
    Case("version-5", SCHED, set_bytes(10, b"5")),
    Case("version-9", MIXED_V7, set_bytes(10, b"9")),
    Case("big-endian-flag", SCHED, set_bytes(12, b"\x01")),
    # cut short
    *[Case(f"truncate-{n}", SCHED, truncate(n)) for n in (1, 3, 10, 12, 13, 17, 100, 4096)],
    *[Case(f"{_stem(name)}-truncate-{f:g}", name, truncate(f)) for name in (SYSCALLS, MIXED_V7)
      for f in (0.01, 0.1, 0.5, 0.99)],
    # holes
    *[Case(f"{_stem(name)}-zero-{f:g}-{n}", name, zero_range(f, n)) for name in (SCHED, MIXED_V7)
      for f, n in ((0.0, 64), (0.02, 512), (0.3, 4096), (0.7, 100), (0.95, 4096))],
    # a format text with a hole in it
    Case("sys-enter-format-zeroed", SYSCALLS, lambda d: zero_range(format_span(d, "sys_enter")[0] + 120, 40)(d)),
    # format files: sizes, offsets, lengths, signedness that contradict each other
    Case("args-length-5", SYSCALLS, declaration("sys_enter", "unsigned long args[6]", "unsigned long args[5]"),
         names=("sys_enter", "args")),
    Case("args-length-60", SYSCALLS, declaration("sys_enter", "unsigned long args[6]", "unsigned long args[60]"),
         names=("sys_enter", "args")),
    Case("args-size-40", SYSCALLS, field_attr("sys_enter", "args", "size", "40"), names=("sys_enter", "args")),
    Case("args-size-0", SYSCALLS, field_attr("sys_enter", "args", "size", "0"), names=("sys_enter", "args")),
    Case("args-offset-huge", SYSCALLS, field_attr("sys_enter", "args", "offset", "560453750000"),
         names=("sys_enter", "args")),
    Case("id-size-3", SYSCALLS, field_attr("sys_enter", "id", "size", "3"), names=("sys_enter", "id")),
    Case("id-size-16", SYSCALLS, field_attr("sys_enter", "id", "size", "16"), names=("sys_enter", "id")),
    Case("id-over-common", SYSCALLS, field_attr("sys_enter", "id", "offset", "4"), names=("sys_enter", "id")),
    Case("id-signed-2", SYSCALLS, field_attr("sys_enter", "id", "signed", "2"), names=("sys_enter", "id")),
    Case("common-pid-over-flags", SYSCALLS, field_attr("sys_enter", "common_pid", "offset", "2"),
         names=("sys_enter", "common_pid")),
    Case("prev-comm-offset-huge", SCHED, field_attr("sched_switch", "prev_comm", "offset", "99999999"),
         names=("sched_switch", "prev_comm")),
    Case("next-pid-size-5", SCHED, field_attr("sched_switch", "next_pid", "size", "5"),
         names=("sched_switch", "next_pid")),
    Case("data-loc-size-8", SCHED, field_attr("sched_process_exec", "filename", "size", "8"),
         names=("sched_process_exec", "filename")),
    Case("data-loc-offset-huge", SCHED, field_attr("sched_process_exec", "filename", "offset", "70000"),
         names=("sched_process_exec", "filename")),
    Case("trailing-buf-offset-huge", MARKERS, field_attr("print", "buf", "offset", "1000000"),
         names=("print", "buf")),
    Case("ip-size-0", MARKERS, field_attr("print", "ip", "size", "0"), names=("print", "ip")),
]

CASES += [
    # fields that fit in a record's possible size but not in this file's records: exit 0 or 2
    Case("args-offset-60000", SYSCALLS, field_attr("sys_enter", "args", "offset", "60000")),
    Case("prev-comm-offset-4090", SCHED, field_attr("sched_switch", "prev_comm", "offset", "4090")),
    Case("filename-offset-65530", SCHED, field_attr("sched_process_exec", "filename", "offset", "65530")),
]

assert len({c.name for c in CASES}) == len(CASES), "corpus case names must be unique"
