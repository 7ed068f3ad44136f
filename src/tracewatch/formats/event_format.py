"""Event format descriptions, as the kernel writes them in tracefs.

An ``events/SYSTEM/EVENT/format`` file names an event, gives its numeric id
(the ``common_type`` in every record), lists its fields with their C type,
offset, size and signedness, and ends with the ``print fmt`` line the kernel
uses to render it.  :func:`parse_event_format` turns that text into an
:class:`EventFormat`; ``EventFormat.unpack`` reads one record's fields.

Field kinds (kernel words):

* scalar: ``int pid``, ``unsigned long ip`` (1, 2, 4 or 8 bytes)
* fixed array: ``char comm[16]``, ``unsigned long args[6]``
* ``__data_loc``: a u32 in the record, offset in the low 16 bits and length in
  the high 16 bits, both counted from the start of the record
* ``__rel_loc``: the same, but the offset counts from the end of the field
* trailing array: ``char buf[]`` with size 0, the rest of the record
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Any

from ..errors import TraceFormatError

__all__ = ["Field", "EventFormat", "parse_event_format", "parse_fields", "HeaderPage"]

_FIELD_RE = re.compile(
    r"^\s*field:\s*(?P<decl>[^;]*);\s*offset:\s*(?P<offset>\d+);\s*size:\s*(?P<size>\d+);"
    r"(?:\s*signed:\s*(?P<signed>-?\d+);)?"
)
_ARRAY_RE = re.compile(r"^(?P<type>.*?)\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*\[(?P<len>[^\]]*)\]\s*$")
_SCALAR_RE = re.compile(r"^(?P<type>.*?[\s\*])\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*$")

_INT_CODES = {1: "b", 2: "h", 4: "i", 8: "q"}


@dataclass(eq=False)
class Field:
    """One field of an event record, as declared in its format file."""

    name: str
    type: str  # C type without the name or brackets: "unsigned long", "char", "u8"
    offset: int
    size: int
    signed: bool
    array_len: int | None = None  # None: scalar; 0: trailing `[]`; N: fixed array
    data_loc: bool = False  # __data_loc: u32 (len << 16 | offset from record start)
    rel_loc: bool = False  # __rel_loc: u32 (len << 16 | offset from end of this field)

    @property
    def is_dynamic(self) -> bool:
        """True for __data_loc / __rel_loc fields, whose data lives later in the record."""
        return self.data_loc or self.rel_loc

    @property
    def is_array(self) -> bool:
        return self.array_len is not None or self.is_dynamic

    @property
    def is_string(self) -> bool:
        """True for char arrays and dynamic char[] strings."""
        if not self.is_array:
            return False
        t = self.type.replace("const ", "").strip()
        return t in ("char", "unsigned char", "signed char") and not self.type.startswith("u8")

    @property
    def is_pointer(self) -> bool:
        return "*" in self.type

    @property
    def elem_size(self) -> int:
        """Size in bytes of one element (the whole field for scalars)."""
        if self.is_dynamic:
            return _type_size(self.type) or 1
        if self.array_len:
            return max(1, self.size // self.array_len)
        if self.array_len == 0:
            return _type_size(self.type) or 1
        return self.size

    @property
    def elem_signed(self) -> bool:
        if self.is_array:
            t = self.type
            return not ("unsigned" in t or t.startswith("u") or t.startswith("__u") or "*" in t)
        return self.signed

    def data_span(self, payload: bytes | memoryview, little: bool = True) -> tuple[int, int]:
        """(start, length) in ``payload`` of this field's data, resolving dynamic fields."""
        if self.is_dynamic:
            if self.offset + 4 > len(payload):
                return (len(payload), 0)
            word = int.from_bytes(payload[self.offset : self.offset + 4], "little" if little else "big")
            start = word & 0xFFFF
            length = word >> 16
            if self.rel_loc:
                start += self.offset + self.size
            start = min(start, len(payload))
            return (start, max(0, min(length, len(payload) - start)))
        if self.array_len == 0:
            return (min(self.offset, len(payload)), max(0, len(payload) - self.offset))
        return (self.offset, max(0, min(self.size, len(payload) - self.offset)))

    def raw_bytes(self, payload: bytes | memoryview, little: bool = True) -> bytes:
        """The bytes of this field in one record (dynamic data resolved)."""
        start, length = self.data_span(payload, little)
        return bytes(payload[start : start + length])


def _type_size(ctype: str) -> int | None:
    t = ctype.replace("const ", "").replace("volatile ", "").strip()
    if "*" in t:
        return 8
    table = {
        "char": 1, "signed char": 1, "unsigned char": 1, "u8": 1, "s8": 1, "__u8": 1, "__s8": 1, "bool": 1,
        "short": 2, "unsigned short": 2, "u16": 2, "s16": 2, "__u16": 2, "__s16": 2,
        "int": 4, "unsigned int": 4, "u32": 4, "s32": 4, "__u32": 4, "__s32": 4, "unsigned": 4, "pid_t": 4,
        "long": 8, "unsigned long": 8, "u64": 8, "s64": 8, "__u64": 8, "__s64": 8,
        "long long": 8, "unsigned long long": 8, "size_t": 8, "loff_t": 8, "dma_addr_t": 8,
    }
    return table.get(t)


@dataclass(eq=False)
class EventFormat:
    """An event type: its id, system, name, fields and print fmt."""

    id: int
    system: str
    name: str
    fields: list[Field]  # common_* fields first, as in the format file
    print_fmt: str = ""
    _by_name: dict[str, Field] = field(default_factory=dict, repr=False)
    _unpacker: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._by_name = {f.name: f for f in self.fields}

    @property
    def full_name(self) -> str:
        """``system:name``, as perf and trace-cmd spell an event."""
        return f"{self.system}:{self.name}"

    @property
    def common_fields(self) -> list[Field]:
        return [f for f in self.fields if f.name.startswith("common_")]

    @property
    def event_fields(self) -> list[Field]:
        """The fields that belong to this event (not the common_* header fields)."""
        return [f for f in self.fields if not f.name.startswith("common_")]

    def field(self, name: str) -> Field | None:
        return self._by_name.get(name)

    @property
    def fixed_size(self) -> int:
        """Bytes the fixed part of a record takes (dynamic data may follow)."""
        return max((f.offset + f.size for f in self.fields), default=0)

    @property
    def min_record_size(self) -> tuple[int, Field | None]:
        """(bytes, field): the fewest bytes a record of this event has, and the field that
        needs them: every field whole, except that a final array may be cut short (the
        kernel writes only the entries it took of kernel_stack's ``caller[8]``) but starts
        within the record."""
        need, by = 0, None
        for i, f in enumerate(self.fields):
            end = f.offset if (f.is_array and not f.is_dynamic and i == len(self.fields) - 1) else f.offset + f.size
            if end > need:
                need, by = end, f
        return need, by

    @property
    def has_dynamic(self) -> bool:
        return any(f.is_dynamic or f.array_len == 0 for f in self.fields)

    def unpack(self, payload: bytes | memoryview, little: bool = True) -> dict[str, Any]:
        """Read every field of one record into Python values.

        Scalars become ``int``; char arrays and strings ``str`` (up to the first
        NUL, UTF-8 with surrogateescape so that every byte survives); other arrays
        ``list[int]``.
        """
        out: dict[str, Any] = {}
        for f in self.fields:
            out[f.name] = field_value(f, payload, little)
        return out


def field_value(f: Field, payload: bytes | memoryview, little: bool = True) -> Any:
    """The Python value of field ``f`` in one record (see ``EventFormat.unpack``)."""
    order = "<" if little else ">"
    if not f.is_array:
        if f.offset + f.size > len(payload) or f.size not in _INT_CODES:
            if f.size > 8 and f.offset + f.size <= len(payload):
                return int.from_bytes(payload[f.offset : f.offset + f.size], "little" if little else "big",
                                      signed=f.signed)
            return 0
        code = _INT_CODES[f.size]
        if not f.signed:
            code = code.upper()
        return struct.unpack_from(order + code, payload, f.offset)[0]
    data = f.raw_bytes(payload, little)
    if f.is_string:
        nul = data.find(b"\0")
        if nul >= 0:
            data = data[:nul]
        return data.decode("utf-8", "surrogateescape")
    es = f.elem_size
    if es not in _INT_CODES:
        return list(data)
    n = len(data) // es
    code = _INT_CODES[es]
    if not f.elem_signed:
        code = code.upper()
    return list(struct.unpack_from(f"{order}{n}{code}", data, 0))


class _FieldError(ValueError):
    """A field line that parses but cannot be right."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"field {field}: {why}")
        self.field = field
        self.why = why


def parse_fields(text: str, *, check: bool = False) -> list[Field]:
    """Parse the ``field:`` lines of a format file (or of header_page, whose ``data``
    "scalar" is a page's worth of bytes); ``check``: raise for NUL bytes, a ``field:``
    line that does not parse, a ``signed:`` that is neither 0 nor 1 (the rest is
    :func:`fields_problem`'s)."""
    fields: list[Field] = []
    if check and "\0" in text:
        raise ValueError("the format text has NUL bytes in it")
    for line in text.splitlines():
        m = _FIELD_RE.match(line)
        if not m:
            if check and line.lstrip().startswith("field:"):  # a field would go missing unseen
                raise ValueError(f"cannot parse field line {line.strip()[:80]!r}")
            continue
        decl = m.group("decl").strip()
        offset = int(m.group("offset"))
        size = int(m.group("size"))
        signed = m.group("signed") not in (None, "0")
        data_loc = rel_loc = False
        if decl.startswith("__data_loc "):
            data_loc = True
            decl = decl[len("__data_loc ") :]
        elif decl.startswith("__rel_loc "):
            rel_loc = True
            decl = decl[len("__rel_loc ") :]
        array_len: int | None = None
        am = _ARRAY_RE.match(decl)
        if data_loc or rel_loc:
            # "__data_loc char[] name": the brackets stick to the type
            dm = re.match(r"^(?P<type>.*?)\s*(?:\[[^\]]*\])?\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)$", decl)
            if not dm:
                raise ValueError(f"cannot parse field declaration {decl!r}")
            ctype, name = dm.group("type").strip(), dm.group("name")
        elif am:
            ctype, name = am.group("type").strip(), am.group("name")
            ln = am.group("len").strip()
            if ln == "":
                array_len = 0
            else:
                try:
                    array_len = int(ln, 0)
                except ValueError:
                    # a symbolic length such as [TASK_COMM_LEN]: derive it from the size
                    es = _type_size(ctype) or 1
                    array_len = size // es if size else 0
        else:
            sm = _SCALAR_RE.match(decl)
            if not sm:
                raise ValueError(f"cannot parse field declaration {decl!r}")
            ctype, name = sm.group("type").strip(), sm.group("name")
        parsed = Field(name=name, type=ctype, offset=offset, size=size, signed=signed,
                       array_len=array_len, data_loc=data_loc, rel_loc=rel_loc)
        if check and m.group("signed") not in (None, "0", "1"):
            raise _FieldError(name, f"signed:{m.group('signed')} is neither 0 nor 1")
        fields.append(parsed)
    return fields


#: how far into a record a field may reach: a __data_loc word counts its offset in 16 bits, and
#: no kernel event's fixed part comes near that (a record lives in one ring-buffer page)
MAX_RECORD_BYTES = 1 << 16

#: C types whose size is the kernel's word size: 8 bytes on 64-bit kernels, 4 on 32-bit ones
_WORD_SIZED = {"long", "unsigned long", "long int", "unsigned long int", "size_t", "ssize_t", "dma_addr_t",
               "phys_addr_t", "uintptr_t", "intptr_t"}


def _element_sizes(ctype: str) -> tuple[int, ...] | None:
    """The sizes one element of type ``ctype`` may have (None: a type we cannot size, a struct)."""
    t = ctype.replace("const ", "").replace("volatile ", "").strip()
    if "*" in t or t in _WORD_SIZED:
        return (4, 8)
    size = _type_size(t)
    return None if size is None else (size,)


def field_problem(f: Field, *, last: bool = False) -> str | None:
    """Why field ``f`` of a format file cannot be right, or None when it can.

    Each check is one a real kernel's format passes, odd ones included: scalars are
    1, 2, 4 or 8 bytes (a struct or a typedef we cannot size any size; the last field 0 bytes, older kernels' spelling
    of ``char buf[]``), __data_loc/__rel_loc words 4, a fixed array's size is its length
    times its element's size (word-sized elements: 4 or 8 bytes, 32-bit kernels; char
    arrays: any length, kernels before 3.19 printed every array as ``char NAME[32]`` with
    the true size in ``size:``, which decoding uses), and the field lies within
    :data:`MAX_RECORD_BYTES`.
    """
    if f.offset + f.size > MAX_RECORD_BYTES:
        return (f"offset {f.offset} + size {f.size} is past the largest possible record "
                f"({MAX_RECORD_BYTES} bytes)")
    if f.is_dynamic:
        if f.size != 4:
            kind = "__data_loc" if f.data_loc else "__rel_loc"
            return f"size {f.size}: a {kind} field is a 4-byte word"
        return None
    if f.array_len is None:
        if f.type.startswith(("struct ", "union ")) or (f.size == 0 and last) or f.size in _INT_CODES:
            return None
        if _element_sizes(f.type) is None:
            return None  # a typedef we cannot size is any size: ras:extlog_mem_event's guid_t is 16 bytes
        return f"size {f.size}: a scalar ({f.type}) is 1, 2, 4 or 8 bytes"
    if f.array_len == 0:  # char buf[]: the rest of the record, whatever its size says
        return None
    if f.size == 0:
        return f"size 0 for {f.array_len} elements ({f.type} {f.name}[{f.array_len}])"
    if f.is_string:  # char arrays: any length, see above
        return None
    sizes = _element_sizes(f.type)
    if sizes is None:
        if f.size % f.array_len:
            return f"size {f.size} is not {f.array_len} equal elements ({f.type} {f.name}[{f.array_len}])"
        return None
    if not any(f.size == f.array_len * es for es in sizes):
        each = " or ".join(map(str, sizes))
        return (f"size {f.size} is not {f.array_len} elements of {each} bytes "
                f"({f.type} {f.name}[{f.array_len}])")
    return None


def fields_problem(fields: list[Field]) -> tuple[Field, str] | None:
    """(field, why) for the first field of an event format that cannot be right
    (:func:`field_problem`, or overlapping the common_* fields every record starts with)."""
    for i, f in enumerate(fields):
        why = field_problem(f, last=i == len(fields) - 1)
        if why is not None:
            return f, why
    return _overlap_problem(fields)


def _overlap_problem(fields: list[Field]) -> tuple[Field, str] | None:
    """(field, why) when a field overlaps one of the common_* fields every record starts with
    (the later of the two in the file is the one named)."""
    for i, f in enumerate(fields):
        for c in fields[:i]:
            if not (c.name.startswith("common_") or f.name.startswith("common_")) or not (f.size and c.size):
                continue
            if f.offset < c.offset + c.size and c.offset < f.offset + f.size:
                return f, (f"bytes {f.offset}..{f.offset + f.size - 1} overlap {c.name} "
                           f"(bytes {c.offset}..{c.offset + c.size - 1})")
    return None


def parse_event_format(text: str, system: str | None = None, *, source: str | None = None) -> EventFormat:
    """Parse one tracefs ``format`` file.

    ``system`` is the directory the file came from (trace.dat stores it beside
    the format text); ``source`` names the file for error messages.  Every field
    is checked (:func:`fields_problem`): a damaged format raises
    :class:`TraceFormatError` naming the event and the field, rather than decoding
    every record wrongly.
    """
    name = None
    ev_id = None
    print_fmt = ""
    for line in text.splitlines():
        if line.startswith("name:"):
            name = line[5:].strip()
        elif line.startswith("ID:"):
            try:
                ev_id = int(line[3:].strip())
            except ValueError:
                raise TraceFormatError(f"bad event ID line {line!r}", path=source) from None
        elif line.startswith("print fmt:"):
            # the print fmt runs to the end of the file: a string literal may hold real newlines
            # (mmap_lock_*, 9p_protocol_dump), and libtraceevent reads its tokens up to the end
            start = re.search(r"^print fmt:", text, re.M).end()  # type: ignore[union-attr]
            print_fmt = text[start:].strip()
            break
    if name is None or ev_id is None:
        raise TraceFormatError("event format without a name: or ID: line", path=source)
    try:
        fields = parse_fields(text, check=True)
    except _FieldError as e:
        raise TraceFormatError(f"event {name}, field {e.field}: {e.why}", path=source) from None
    except ValueError as e:
        raise TraceFormatError(f"event {name}: {e}", path=source) from None
    problem = fields_problem(fields)
    if problem is not None:
        raise TraceFormatError(f"event {name}, field {problem[0].name}: {problem[1]}", path=source)
    return EventFormat(id=ev_id, system=system or "", name=name, fields=fields, print_fmt=print_fmt)


@dataclass
class HeaderPage:
    """Layout of a ring-buffer page header, from ``events/header_page``.

    ``commit_size`` is 8 on 64-bit kernels and 4 on 32-bit ones; ``data_size``
    is the room for events in one (sub-)buffer page.
    """

    timestamp_offset: int = 0
    commit_offset: int = 8
    commit_size: int = 8
    data_offset: int = 16
    data_size: int = 4080

    @classmethod
    def parse(cls, text: str) -> "HeaderPage":
        by_name = {f.name: f for f in parse_fields(text)}
        hp = cls()
        if "timestamp" in by_name:
            hp.timestamp_offset = by_name["timestamp"].offset
        if "commit" in by_name:
            hp.commit_offset = by_name["commit"].offset
            hp.commit_size = by_name["commit"].size
        if "data" in by_name:
            hp.data_offset = by_name["data"].offset
            hp.data_size = by_name["data"].size
        return hp

    @property
    def page_size(self) -> int:
        return self.data_offset + self.data_size
