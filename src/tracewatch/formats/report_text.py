"""Report lines exactly as ``trace-cmd report`` and ``trace-cmd report -R`` print them.

A report line (trace-cmd 3.1.6, libtraceevent 1.7)::

    "%16s-%-5d [%03d]"  comm, common_pid, cpu         ("<idle>" for pid 0, "<...>" unknown)
    " %5d.%06d:"        timestamp in usecs, rounded   (when the trace clock counts ns)
    " %s: "             event name, then spaces up to 20 characters of name
    info                plugin or print fmt text, or with -R " field=value" per field
                        (one trailing newline of the whole line is dropped)

preceded by ``CPU:N [EVENTS DROPPED]`` lines when the ring buffer lost events.

The -R field list is libtraceevent's ``tep_print_fields``: each field that the
print fmt passes plainly (``REC->field``, perhaps behind a cast) is printed with
that conversion of the print fmt (its segments, as ``formats.printfmt`` cuts
them for the formatted report too), the others "raw" (decimal, ``0x`` for longs
and pointers, strings, ``ARRAY[..]`` hex bytes).  Which conversion a field gets
depends only on the event format, so :class:`ReportFormatter` compiles, per
event type, one ``%`` format string and one ``struct`` unpacker: a -R line is
one unpack and one ``%`` operation, with per-field code only for strings,
arrays and symbol lookups.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import re
import struct
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .event_format import EventFormat, Field
from .plugins import EventRenderer, comm_teacher, find_function, make_renderer
from .printfmt import SEG_NUMBER, SEG_POINTER, SEG_STRING, SEG_TEXT, PrintFormat, Segment, c_printf_int
from .records import gather_rows
from .symbols import TraceSymbols

__all__ = [
    "ReportFormatter",
    "report_lines",
    "timestamps_in_usecs",
    "write_report",
]

_UNKNOWN_EVENT = "[UNKNOWN EVENT]"
_NAME_COLUMN = 20


def timestamps_in_usecs(trace_clock: str | None) -> bool:
    """Whether trace-cmd prints timestamps as ``secs.usecs`` for this trace clock.

    Clocks that count nanoseconds do; counters (``counter``, ``x86-tsc`` without
    a tsc2nsec conversion) print the raw number.
    """
    if not trace_clock:
        return True
    return trace_clock in ("local", "global", "uptime", "perf", "tai", "x86-tsc-nsec") or trace_clock.startswith(
        "mono"
    )


def _name_column(name: str) -> str:
    """``" %s: "`` then spaces so names shorter than 20 characters line up."""
    return f" {name}: " + " " * max(0, _NAME_COLUMN - len(name.encode("utf-8", "surrogateescape")))


# ---------------------------------------------------------------------------
# -R field printers


_INT_CODE = {1: "b", 2: "h", 4: "i", 8: "q"}
_LS_BYTES = {-2: 1, -1: 2, 0: 4, 1: 8, 2: 8}
_LENGTH_MODIFIERS = re.compile(r"[hlLzZjtq]")
# %p conversions that print the pointed-to bytes (MAC, IP, UUID, hex buffer), not the pointer
_POINTER_EXTENSION = re.compile(r"%[^p]*p[MmIiUh]")


def _is_long(f: Field) -> bool:
    """TEP_FIELD_IS_LONG: the C type says ``long`` (also ``long long``)."""
    return "long" in f.type


def _is_pointer(f: Field) -> bool:
    return "*" in f.type


def _is_string_type(f: Field) -> bool:
    """TEP_FIELD_IS_STRING: an array whose type mentions char, u8 or s8."""
    return any(word in f.type for word in ("char", "u8", "s8"))


def _is_array(f: Field) -> bool:
    return f.array_len is not None or f.is_dynamic


@dataclasses.dataclass
class _Direct:
    """Values read by the event's struct unpacker (``code`` may be ``"16s"``, the
    bytes) and formatted by ``pyfmt``, which has one conversion per value.

    Where the record ends before the value does, libtraceevent reads in two ways:
    print_field_raw reads on into the ring-buffer page (``past_end``), a print fmt
    conversion (eval_num_arg) takes 0 for a field not wholly inside the record
    (``field_end``: where that field ends).
    """

    code: str
    offset: int
    pyfmt: str
    convert: Callable[[Any], Any] | None = None
    past_end: bool = False
    field_end: int = 0


@dataclasses.dataclass
class _Computed:
    """A value produced by code: ``fn(payload, after) -> str``."""

    fn: Callable[[bytes, bytes], str]


# isprint() || isspace() in the C locale (bytes >= 0x80 are neither)
_PRINTABLE_OR_SPACE = bytes(range(0x20, 0x7F)) + b"\t\n\v\f\r"


def _printable(data: bytes) -> bool:
    """libtraceevent's is_printable_array over ``data`` (already cut at its NUL)."""
    return not data.translate(None, _PRINTABLE_OR_SPACE)


def _hex_bytes(data: bytes) -> str:
    """``00, 7f, ..``: the inside of ``ARRAY[..]``."""
    return data.hex(",").replace(",", ", ")


class _ArrayPrinter:
    """print_field_raw for array fields: a string while it is printable, else ``ARRAY[..]``.

    libtraceevent clears the field's string flag the first time a value is not
    printable, so every later record of this event prints the field as
    ``ARRAY[..]`` too: this object keeps that flag.  A printable string prints
    up to its NUL like C's ``%s``; when the record holds no NUL (a ``char buf[]``
    filled to the end) C reads on into the ring-buffer page, which ``after``
    stands for.
    """

    def __init__(self, f: Field, little: bool):
        self.field = f
        self.order = "little" if little else "big"
        self.is_string = _is_string_type(f)

    def _span(self, payload: bytes) -> tuple[int, int]:
        """dynamic_offset_field: where the array is; (0, 0) when it lies outside the record."""
        f = self.field
        if not f.is_dynamic:
            return f.offset, f.size
        size = len(payload)
        if f.offset + f.size > size:
            return 0, 0
        word = int.from_bytes(payload[f.offset : f.offset + f.size], self.order)
        start = word & 0xFFFF
        length = size - start if f.size == 2 else word >> 16
        if start + length > size:
            length = 0
        if start > size:
            start = 0
        if f.rel_loc:
            start += f.offset + f.size
        return start, length

    def __call__(self, payload: bytes, after: bytes) -> str:
        start, length = self._span(payload)
        data = payload[start : start + length]
        if self.is_string:
            head = data.partition(b"\0")[0]
            if not head.translate(None, _PRINTABLE_OR_SPACE):  # printable
                if len(head) == len(data) and b"\0" not in data:
                    # no NUL in the array: C's %s reads on into the page
                    head = (payload + bytes(after))[start:].partition(b"\0")[0]
                return head.decode("utf-8", "surrogateescape")
            self.is_string = False
        if len(data) < length:
            data = (payload + bytes(after))[start : start + length].ljust(length, b"\0")
        return "ARRAY[" + _hex_bytes(data) + "]"


def _raw_scalar(f: Field, little: bool) -> _Direct | _Computed:
    """print_field_raw for a scalar: decimal, or hex for pointers and longs."""
    size = f.size
    if size not in _INT_CODE:
        return _Computed(lambda payload, after: "0")
    unsigned = _INT_CODE[size].upper()
    if _is_pointer(f):
        return _Direct(unsigned, f.offset, "0x%x", past_end=True)
    if f.signed:
        if size == 4 and _is_long(f):
            return _Direct(unsigned, f.offset, "0x%x", past_end=True)
        return _Direct(_INT_CODE[size], f.offset, {2: "%2d", 1: "%1d"}.get(size, "%d"), past_end=True)
    return _Direct(unsigned, f.offset, "0x%x" if _is_long(f) else "%d", past_end=True)


def _digit_conversion(fmt: EventFormat, f: Field, segment: Segment, keep: int, little: bool) -> _Direct | _Computed:
    """A field printed with the print fmt's integer conversion (print_arg_number).

    libtraceevent reads the field unsigned, masks it for casts, converts it to
    the C type of the length modifier and hands it to printf: reading the low
    ``min(field, cast, modifier)`` bytes with the conversion's signedness gives
    the same number, so most of these stay a struct read.
    """
    spec = segment.spec
    conv = spec[-1]
    size = f.size
    if size not in _INT_CODE or segment.star is not None or conv == "o" or "#" in spec:
        return _Computed(_c_printf_computed(fmt, f, segment, keep, little))
    signed_conv = conv in "di"
    modifier_bytes = _LS_BYTES.get(segment.ls, 8)
    width = min(size, keep)
    if modifier_bytes < width:
        width, signed = modifier_bytes, signed_conv
    elif modifier_bytes == width:
        signed = signed_conv
    else:
        signed = False
    code = _INT_CODE[width]
    if not signed:
        code = code.upper()
    offset = f.offset if little else f.offset + size - width
    pyfmt = _LENGTH_MODIFIERS.sub("", spec)
    pyfmt = pyfmt[:-1] + {"u": "d", "i": "d"}.get(conv, conv)
    return _Direct(code, offset, pyfmt, field_end=f.offset + size)


def _c_printf_computed(fmt: EventFormat, f: Field, segment: Segment, keep: int,
                       little: bool) -> Callable[[bytes, bytes], str]:
    """The rare integer conversions Python's % does not share with C (%#x of 0, %#o, *).

    A ``*`` width or precision is a constant or a field of the record (else none is applied).
    """
    conv = segment.spec[-1]
    bits = 8 * min(f.size or 8, keep, _LS_BYTES.get(segment.ls, 8))
    order = "little" if little else "big"
    star = segment.constant_star()
    star_span: tuple[int, int, int] | None = None  # offset, size, mask of a REC->field star
    plain_star = segment.star_field() if star is None else None
    star_f = fmt.field(plain_star[0]) if plain_star else None
    if star_f is not None and star_f.size in _INT_CODE:
        star_span = (star_f.offset, star_f.size, (1 << 8 * min(star_f.size, plain_star[1])) - 1)  # type: ignore[index]

    def fn(payload: bytes, after: bytes) -> str:
        if f.offset + f.size > len(payload):  # eval_num_arg: a field past the record's end is 0
            value = 0
        else:
            value = int.from_bytes(payload[f.offset : f.offset + f.size], order) & ((1 << bits) - 1)
        if conv in "di" and value >> (bits - 1):
            value -= 1 << bits
        width = star
        if star_span is not None:
            offset, size, mask = star_span
            width = int.from_bytes(payload[offset : offset + size], order) & mask
        return c_printf_int(segment.spec, value, width)

    return fn


def _pointer_conversion(f: Field, segment: Segment, keep: int, symbols: TraceSymbols) -> _Direct | _Computed:
    """``%p`` (glibc: ``(nil)`` or ``0x..``) and ``%ps``/``%pS`` (function names).

    The pointer is a struct read; its text comes from a converter that, for
    symbols, remembers each address it resolved (call sites repeat a lot).
    """
    if f.size not in _INT_CODE:
        return _Computed(lambda payload, after: "(nil)")
    suffix = segment.spec[segment.spec.index("p") + 1 :][:1]
    mask = (1 << (8 * min(f.size, keep))) - 1
    code = _INT_CODE[f.size].upper()

    if suffix in ("s", "f", "S", "F"):
        with_offset = suffix in ("S", "F")
        names: dict[int, str] = {}

        def function_name(addr: int) -> str:
            text = names.get(addr)
            if text is None:
                value = addr & mask
                func = find_function(symbols, value)
                if func is None:
                    text = f"0x{value:x}"
                else:
                    text = f"{func[0]}+0x{value - func[1]:x}" if with_offset else func[0]
                if len(names) < 1 << 16:
                    names[addr] = text
            return text

        return _Direct(code, f.offset, "%s", function_name, field_end=f.offset + f.size)

    def plain_pointer(addr: int) -> str:
        addr &= mask
        return "0x%x" % addr if addr else "(nil)"

    return _Direct(code, f.offset, "%s", plain_pointer, field_end=f.offset + f.size)


def _print_segments(fmt: EventFormat, symbols: TraceSymbols) -> tuple[PrintFormat | None, list[Segment]]:
    """The parsed print fmt and its segments (the formatted report's own split); no
    segments when libtraceevent has none to match fields to: then every field prints raw."""
    if not fmt.print_fmt:
        return None, []
    parsed = PrintFormat.parse(fmt, long_size=symbols.long_size, little_endian=symbols.little_endian)
    return parsed, parsed.segments or []


def _segment_conversion(parsed: PrintFormat, index: int, symbols: TraceSymbols) -> _Computed:
    """A field printed through a conversion with no struct fast path (%s, %pM, %pI4, ...):
    the print fmt package's own rendering of that one segment (print_parse_data)."""
    text = parsed.segment_text(index, symbols)
    return _Computed(lambda payload, after: text(payload))


class _RawEventPlan:
    """The compiled -R printer of one event type."""

    def __init__(self, fmt: EventFormat, symbols: TraceSymbols):
        little = symbols.little_endian
        parsed, segments = _print_segments(fmt, symbols)
        slots: list[tuple[str, _Direct | _Computed]] = []
        # print_selected_fields: the search for a field's conversion starts after the
        # previous field's match and wraps around; once a match was the last segment
        # the position is "nothing" and every later field prints raw.
        position: int | None = 0
        for f in fmt.event_fields:
            printer: _Direct | _Computed | None = None
            if _is_array(f) and not f.is_dynamic and not _is_string_type(f) and f.size:
                # a fixed array of numbers always prints as ARRAY[..] hex bytes, read on
                # into the page where the record is shorter (ftrace:kernel_stack's caller)
                printer = _Direct(f"{f.size}s", f.offset, "ARRAY[%s]", _hex_bytes, past_end=True)
            elif _is_array(f):
                printer = _Computed(_ArrayPrinter(f, little))
            elif position is not None and segments:
                found = self._find_segment(segments, position, f.name)
                if found is not None:
                    index, keep, prefix_0x = found
                    segment = segments[index]
                    if segment.kind == SEG_NUMBER:
                        printer = _digit_conversion(fmt, f, segment, keep, little)
                    elif segment.kind == SEG_POINTER and _POINTER_EXTENSION.match(segment.spec):
                        printer = _segment_conversion(parsed, index, symbols)
                    elif segment.kind == SEG_POINTER:
                        printer = _pointer_conversion(f, segment, keep, symbols)
                    elif segment.kind == SEG_STRING:
                        # a scalar field given to %s: a printk string or bare hex when it is
                        # long-sized, else the bytes from its offset (print_str_arg)
                        printer = _segment_conversion(parsed, index, symbols)
                    if printer is not None and prefix_0x:
                        printer = _prefixed(printer, "0x")
                    position = index + 1 if index + 1 < len(segments) else None
            if printer is None:
                printer = _raw_scalar(f, little)
            slots.append((f.name, printer))
        self._compile(fmt, slots, little)

    @staticmethod
    def _find_segment(segments: list[Segment], start: int, name: str) -> tuple[int, int, bool] | None:
        """print_field's search: (segment index, bytes its casts keep, literal before it ends in "0x")."""
        has_0x = False
        n = len(segments)
        for step in range(n):
            i = (start + step) % n
            segment = segments[i]
            if segment.kind == SEG_TEXT:
                has_0x = len(segment.spec) > 1 and segment.spec.endswith("0x")
                continue
            plain = segment.plain_field()
            if plain is None or plain[0] != name:
                has_0x = False
                continue
            return i, plain[1], has_0x
        return None

    def _compile(self, fmt: EventFormat, slots: list[tuple[str, _Direct | _Computed]], little: bool) -> None:
        """Generate this event's line function: one struct unpack, one ``%``.

        The generated code is a single tuple expression over the unpacked values
        (``v[i]``), the converters of byte arrays and the computed fields, so a
        record costs no per-field Python loop and no dict.  A record shorter than
        its fields takes :meth:`_short_values` (``w``: what raw reads see, the
        page's bytes past the record; ``v``: what conversions see).
        """
        order = "<" if little else ">"
        pid_field = fmt.field("common_pid")
        pid_offset = pid_field.offset if pid_field is not None else 4
        self.slots = slots
        self.little = little
        self.pid_offset = pid_offset
        reads = [_Direct("i", pid_offset, "")] + [p for _, p in slots if isinstance(p, _Direct)]
        env: dict[str, Any] = {}
        text: list[str] = []
        items: list[str] = []
        zero_beyond: list[tuple[int, int]] = []  # (value index, end of its field): 0 in a shorter record
        value = 1  # index into the unpacked tuple; 0 is common_pid
        for number, (name, printer) in enumerate(slots):
            if isinstance(printer, _Direct):
                text.append(f" {name}={printer.pyfmt}")
                seen = "w" if printer.past_end else "v"
                if printer.convert is not None:
                    env[f"convert{number}"] = printer.convert
                    items.append(f"convert{number}({seen}[{value}])")
                else:
                    items.append(f"{seen}[{value}]")
                if printer.field_end:
                    zero_beyond.append((value, printer.field_end))
                value += 1
            else:
                text.append(f" {name}=%s")
                env[f"compute{number}"] = printer.fn
                items.append(f"compute{number}(payload, after)")
        self.fields_format = "".join(text)
        # one struct for every read when they come in offset order, else one each
        layout, pos, ordered = [order], 0, True
        for r in reads:
            if r.offset < pos:
                ordered = False
                break
            layout.append(f"{r.offset - pos}x{r.code}" if r.offset > pos else r.code)
            pos = r.offset + struct.calcsize(r.code)
        if ordered:
            unpacker = struct.Struct("".join(layout))
            env["unpack"] = unpacker.unpack_from
            self.min_size = unpacker.size
        else:
            separate = [(struct.Struct(order + r.code).unpack_from, r.offset) for r in reads]
            env["unpack"] = lambda data: tuple(u(data, off)[0] for u, off in separate)
            self.min_size = max(r.offset + struct.calcsize(r.code) for r in reads)
        self._unpack = env["unpack"]
        self._zero_beyond = zero_beyond
        #: records at least this long are read whole by the unpacker and hold every field
        self.whole_size = max([self.min_size] + [end for _, end in zero_beyond])
        env["WHOLE_SIZE"] = self.whole_size
        env["short_values"] = self._short_values
        values = ", ".join(items)
        read = (
            "    if len(payload) < WHOLE_SIZE:\n"
            "        v, w = short_values(payload, after)\n"
            "    else:\n"
            "        v = w = unpack(payload)\n"
        )
        source = (
            "def fields(fields_format, payload, after):\n"
            + read
            + f"    return fields_format % ({values}{',' if items else ''})\n"
            "def line_usecs(line_format, payload, after, cpu, ts, columns, task_column):\n"
            + read
            + "    t = (ts + 500) // 1000\n"
            f"    return line_format % (columns.get(v[0]) or task_column(v[0]), cpu, t // 1000000, t % 1000000, {values})\n"
            "def line_other(line_format, payload, after, cpu, time_text, task_column):\n"
            + read
            + f"    return line_format % (task_column(v[0]), cpu, time_text, {values})\n"
        )
        exec(compile(source, f"<-R printer of {fmt.full_name}>", "exec"), env)  # noqa: S102
        self.fields = env["fields"]
        self.line_usecs = env["line_usecs"]
        self.line_other = env["line_other"]
        # the % conversions of fields_format after which the text may end in a newline
        self.may_end_in_newline = bool(slots) and (isinstance(slots[-1][1], _Computed)
                                                   or slots[-1][1].pyfmt.endswith("%s"))

    def _short_values(self, payload: bytes, after: bytes) -> tuple[list, tuple]:
        """(v, w) of a record shorter than :attr:`whole_size`: ``v`` zero past its end and
        0 for a converted field it does not wholly hold, ``w`` the page's bytes past its end
        (``after``; zero beyond the page)."""
        size, n = self.min_size, len(payload)
        if n < size:
            v = list(self._unpack(payload.ljust(size, b"\0")))
            w = self._unpack((payload + bytes(after))[:size].ljust(size, b"\0"))
        else:
            v = list(self._unpack(payload))
            w = tuple(v)
        for index, end in self._zero_beyond:
            if n < end:
                v[index] = 0
        return v, w

    def columns(self, rows: np.ndarray, lengths: np.ndarray, payloads: Callable[[], list[bytes]],
                afters: Iterable[bytes], page_rows: np.ndarray | None = None) -> list[list]:
        """The values of ``fields_format`` for many records of this event, one list per conversion.

        ``rows``: (N, ≥ min_size) bytes of the records, zero past each one's end
        (as :meth:`fields` pads a short record); ``page_rows``: the same with the
        page's bytes past each record's end (None when no record is shorter than
        :attr:`whole_size`); ``lengths``: the records' sizes; ``payloads()`` the
        records as bytes, asked for only when a field needs code per record.
        Those run in the records' order, so a string field turning ``ARRAY[..]`` stays so.
        """
        n = len(rows)
        order = "<" if self.little else ">"
        out: list[list] = []
        records: list[bytes] | None = None
        for _, printer in self.slots:
            if isinstance(printer, _Direct):
                code = printer.code
                source = page_rows if printer.past_end and page_rows is not None else rows
                if code[-1] == "s":
                    size = int(code[:-1])
                    block = source[:, printer.offset : printer.offset + size]
                    if printer.convert is _hex_bytes:
                        out.append(_hex_column(block))
                        continue
                    values: list = [bytes(r) for r in block]
                else:
                    size = _CODE_SIZE[code]
                    column = np.ascontiguousarray(source[:, printer.offset : printer.offset + size]).view(
                        order + _CODE_DTYPE[code]).reshape(n)
                    if printer.field_end and int(lengths.min()) < printer.field_end:
                        column = np.where(lengths < printer.field_end, 0, column)
                    values = column.tolist()
                if printer.convert is not None:
                    convert = printer.convert
                    table = {v: convert(v) for v in set(values)}
                    values = list(map(table.__getitem__, values))
                out.append(values)
            else:
                if records is None:
                    records = payloads()
                fn = printer.fn
                out.append([fn(d, a) for d, a in zip(records, afters)])
        return out


_CODE_DTYPE = {"b": "i1", "B": "u1", "h": "i2", "H": "u2", "i": "i4", "I": "u4", "q": "i8", "Q": "u8"}
_CODE_SIZE = {"b": 1, "B": 1, "h": 2, "H": 2, "i": 4, "I": 4, "q": 8, "Q": 8}
# "xx, " for every byte value, as one 4-byte item: ARRAY[..] text of many rows at once
_HEX_TABLE = np.frombuffer(b"".join(b"%02x, " % i for i in range(256)), dtype=np.uint32)


def _hex_column(block: np.ndarray) -> list[str]:
    """:func:`_hex_bytes` of every row of an (N, k) uint8 matrix."""
    n, k = block.shape
    if k == 0:
        return [""] * n
    step, width = 4 * k, 4 * k - 2  # each row's text is followed by a ", " to drop
    text = _HEX_TABLE[block].tobytes().decode("ascii")
    return [text[i : i + width] for i in range(0, n * step, step)]


# "00".."99" as 2-byte items: the digits of many numbers at once
_PAIRS = np.frombuffer(b"".join(b"%02d" % i for i in range(100)), dtype=np.uint16)


def _time_matrix(cpu: np.ndarray, usecs: np.ndarray, out: np.ndarray) -> None:
    """Write ``" [%03d] %5d.%06d:"`` (20 bytes) of cpu and usecs into each row of ``out``.

    The caller checks 0 <= cpu <= 999 and 0 <= usecs < 100000 s.
    """
    secs, frac = np.divmod(usecs, 1_000_000)
    ucpu, cpu_at = np.unique(cpu, return_inverse=True)
    out[:, 0:7] = np.frombuffer("".join(" [%03d] " % c for c in ucpu.tolist()).encode(), np.uint8).reshape(-1, 7)[
        cpu_at.reshape(-1)]
    usecs_s, secs_at = np.unique(secs, return_inverse=True)
    out[:, 7:13] = np.frombuffer("".join("%5d." % v for v in usecs_s.tolist()).encode(), np.uint8).reshape(-1, 6)[
        secs_at.reshape(-1)]
    frac = frac.astype(np.int32)
    digits = np.empty((len(frac), 3), dtype=np.uint16)
    digits[:, 0] = _PAIRS[frac // 10000]
    digits[:, 1] = _PAIRS[(frac // 100) % 100]
    digits[:, 2] = _PAIRS[frac % 100]
    out[:, 13:19] = digits.view(np.uint8)
    out[:, 19] = ord(":")


def _split_rows(matrix: np.ndarray) -> list[str]:
    """Each row of an ASCII (N, w) matrix as a str."""
    n, w = matrix.shape
    text = matrix.tobytes().decode("ascii")
    return [text[i : i + w] for i in range(0, n * w, w)]


def _prefixed(printer: _Direct | _Computed, prefix: str) -> _Direct | _Computed:
    if isinstance(printer, _Direct):
        return dataclasses.replace(printer, pyfmt=prefix + printer.pyfmt)
    fn = printer.fn
    return _Computed(lambda payload, after: prefix + fn(payload, after))


# ---------------------------------------------------------------------------


class ReportFormatter:
    """Formats records as ``trace-cmd report`` (or with ``raw=True``, ``report -R``) lines.

    ``symbols`` is copied: the sched plugin teaches the pid -> comm table as the
    report goes (as trace-cmd does), which must not change the caller's tables.
    ``in_usecs`` is :func:`timestamps_in_usecs` of the trace clock.
    """

    def __init__(self, symbols: TraceSymbols, formats: dict[int, EventFormat], *, raw: bool = False,
                 in_usecs: bool = True):
        self.symbols = copy.copy(symbols)
        self.symbols.cmdlines = copy.deepcopy(symbols.cmdlines)
        self.formats = formats
        self.raw = raw
        self.in_usecs = in_usecs
        self._comm_by_pid = self.symbols.cmdlines.by_pid
        self._renderers: dict[int, EventRenderer] = {}
        self._raw_plans: dict[int, tuple[_RawEventPlan, str]] = {}
        self._header_by_pid: dict[int, str] = {}
        self._batches: dict[int, Any] = {}
        self._scratch: TraceSymbols | None = None

    # -- pieces ---------------------------------------------------------------

    def header(self, reader_info: Any) -> str:
        """The first line trace-cmd prints: ``cpus=N``."""
        cpus = reader_info if isinstance(reader_info, int) else getattr(reader_info, "cpus")
        return f"cpus={cpus}"

    def comm(self, pid: int) -> str:
        """The first column's command name: ``<idle>`` for pid 0, ``<...>`` when unknown."""
        if pid == 0:
            return "<idle>"
        return self._comm_by_pid.get(pid, "<...>")

    def timestamp(self, ts: int) -> str:
        """``secs.usecs`` (rounded to the nearest usec), or the raw count for counter clocks."""
        if self.in_usecs:
            secs, usecs = divmod((ts + 500) // 1000, 1_000_000)
            return "%5d.%06d" % (secs, usecs)
        # trace-cmd's "%12d": libtraceevent takes the 12 for a precision, but its
        # 10**12 overflows an int and it prints the plain count ("%12llu")
        return "%12d" % ts

    def _time_column(self, ts: int) -> str:
        """The time column after ``[cpu]``: ``" secs.usecs"``, or the count with no space before it."""
        return " " + self.timestamp(ts) if self.in_usecs else self.timestamp(ts)

    def _task_column(self, pid: int) -> str:
        """``"%16s-%-5d"`` of comm and pid, padded in bytes like C's printf."""
        cached = self._header_by_pid.get(pid)
        if cached is not None:
            return cached
        comm = self.comm(pid)
        width = len(comm.encode("utf-8", "surrogateescape"))
        column = " " * max(0, 16 - width) + comm + "-%-5d" % pid
        if pid == 0 or pid in self._comm_by_pid:  # known comms never change afterwards
            self._header_by_pid[pid] = column
        return column

    def info(self, payload: bytes, fmt: EventFormat, cpu: int = -1) -> str:
        """The pretty text after the name column: the plugin's or the print fmt's."""
        renderer = self._renderers.get(fmt.id)
        if renderer is None:
            renderer = self._renderers[fmt.id] = make_renderer(fmt)
        return renderer.render(payload, self.symbols, cpu)

    def _raw_plan(self, fmt: EventFormat) -> tuple[_RawEventPlan, str]:
        """The compiled -R printer of ``fmt`` and its whole-line format string."""
        entry = self._raw_plans.get(fmt.id)
        if entry is None:
            plan = _RawEventPlan(fmt, self.symbols)
            name = _name_column(fmt.name).replace("%", "%%")
            time_part = " %5d.%06d:" if self.in_usecs else "%s:"
            entry = self._raw_plans[fmt.id] = (plan, "%s [%03d]" + time_part + name + plan.fields_format)
        return entry

    def raw_fields(self, payload: bytes, fmt: EventFormat, after: bytes = b"") -> str:
        """The -R text: `` field=value`` for each field of the event (leading space included).

        ``after``: the bytes that follow the record in its ring-buffer page, which C's
        ``%s`` reads when a ``char buf[]`` holds no NUL (ftrace:raw_data).
        """
        plan, _ = self._raw_plan(fmt)
        return plan.fields(plan.fields_format, payload, after)

    def _pid(self, payload: bytes, fmt: EventFormat) -> int:
        f = fmt.field("common_pid")
        offset = f.offset if f is not None else 4
        return int.from_bytes(payload[offset : offset + 4], "little" if self.symbols.little_endian else "big",
                              signed=True)

    # -- lines ----------------------------------------------------------------

    def line(self, cpu: int, ts: int, payload: bytes, fmt: EventFormat | None, *, missed_before: int | None = 0,
             after: bytes = b"") -> str:
        """The full report line of one record, without the final newline.

        ``missed_before``: events the ring buffer lost before this record (> 0 a
        count, < 0 an unknown number), printed as trace-cmd's ``CPU:N [.. EVENTS
        DROPPED]`` line first.  Embedded newlines of the event text stay, as in
        trace-cmd's output.  ``after``: see :meth:`raw_fields`.
        """
        if fmt is not None and self.raw:
            entry = self._raw_plans.get(fmt.id) or self._raw_plan(fmt)
            plan = entry[0]
            if self.in_usecs:
                text = plan.line_usecs(entry[1], payload, after, cpu, ts, self._header_by_pid, self._task_column)
            else:
                text = plan.line_other(entry[1], payload, after, cpu, self.timestamp(ts), self._task_column)
        elif fmt is not None:
            head = "%s [%03d]%s:" % (self._task_column(self._pid(payload, fmt)), cpu, self._time_column(ts))
            text = head + _name_column(fmt.name) + self.info(payload, fmt, cpu)
        else:
            text = _UNKNOWN_EVENT + _UNKNOWN_EVENT + _name_column("(NULL)") + _UNKNOWN_EVENT
        if text[-1:] == "\n":
            text = text[:-1]
        if missed_before:
            if missed_before > 0:
                return f"CPU:{cpu} [{missed_before} EVENTS DROPPED]\n" + text
            return f"CPU:{cpu} [EVENTS DROPPED]\n" + text
        return text

    # -- many lines at once ---------------------------------------------------

    def index_lines(self, buffers: list, index: Any, *, page_size: int, tail_types: set[int],
                    chunk: int = 1 << 16) -> Iterator[list[str]]:
        """The lines of every record of a merged index, a list of lines per run of ``chunk`` records.

        ``index`` has numpy ``cpu``, ``ts``, ``offset``, ``length``, ``type_id`` and
        ``missed_before`` (a ``MergedIndex``); ``buffers[cpu]`` is that CPU's uint8
        buffer.  Records of ``tail_types`` get the rest of their page as ``after``
        (see :meth:`raw_fields`).  The lines are those :meth:`line` gives one by one.
        """
        bufs = [np.asarray(b, dtype=np.uint8) if not isinstance(b, np.ndarray) else b for b in buffers]
        views = [memoryview(b) for b in bufs]
        for start in range(0, len(index.ts), chunk):
            end = start + chunk
            yield self.lines_of(bufs, views, index.cpu[start:end], index.ts[start:end], index.offset[start:end],
                                index.length[start:end], index.type_id[start:end], index.missed_before[start:end],
                                page_size=page_size, tail_types=tail_types)

    def lines_of(self, bufs: list[np.ndarray], views: list[memoryview], cpu: np.ndarray, ts: np.ndarray,
                 offset: np.ndarray, length: np.ndarray, type_id: np.ndarray, missed: np.ndarray, *,
                 page_size: int, tail_types: set[int]) -> list[str]:
        """The lines of records in report order, built a whole event type at a time.

        Each type's lines come from one ``%`` template over columns of values
        (numpy reads for fixed fields, code per record only for strings and the
        like, run in the records' order).  What trace-cmd learns as the report
        goes (the sched plugin's pid -> comm entries) is applied in record
        order before any first column is written.
        """
        n = len(ts)
        if n == 0:
            return []
        order = np.argsort(type_id, kind="stable")
        sorted_ids = type_id[order]
        bounds = (np.flatnonzero(np.diff(sorted_ids)) + 1).tolist()
        groups = [(int(sorted_ids[s]), order[s:e]) for s, e in zip([0] + bounds, bounds + [n])]
        learned = {} if self.raw else self._learn_comms(bufs, views, groups, cpu, offset, length)
        out = np.empty(n, dtype=object)
        for type_id_, pos in groups:
            fmt = self.formats.get(type_id_)
            if fmt is None:
                out[pos] = _UNKNOWN_EVENT + _UNKNOWN_EVENT + _name_column("(NULL)") + _UNKNOWN_EVENT
                continue
            out[pos] = self._type_lines(fmt, bufs, views, pos, cpu[pos], ts[pos], offset[pos], length[pos],
                                        learned, page_size=page_size, tail=type_id_ in tail_types)
        lines = out.tolist()
        if missed.any():
            for i in np.flatnonzero(missed).tolist():
                m = int(missed[i])
                prefix = f"CPU:{int(cpu[i])} [{m} EVENTS DROPPED]\n" if m > 0 else f"CPU:{int(cpu[i])} [EVENTS DROPPED]\n"
                lines[i] = prefix + lines[i]
        return lines

    def _type_lines(self, fmt: EventFormat, bufs: list[np.ndarray], views: list[memoryview], pos: np.ndarray,
                    cpu: np.ndarray, ts: np.ndarray, offset: np.ndarray, length: np.ndarray,
                    learned: dict[int, int], *, page_size: int, tail: bool) -> list[str]:
        """The lines of the records of one event type (given in report order)."""
        pid_field = fmt.field("common_pid")
        pid_offset = pid_field.offset if pid_field is not None else 4
        cpu_list = cpu.tolist()
        offset_list = offset.tolist()
        length_list = length.tolist()

        def payloads() -> list[bytes]:
            return [views[c][o : o + ln].tobytes() for c, o, ln in zip(cpu_list, offset_list, length_list)]

        if self.raw:
            plan, _ = self._raw_plan(fmt)
            line_format = _name_column(fmt.name).replace("%", "%%") + plan.fields_format
            width = max(plan.min_size, pid_offset + 4)
            rows = gather_rows(bufs, cpu, offset, length, width)
            short = int(length.min()) < plan.whole_size
            page_rows = None
            if short:
                # what C reads past a record's end: the rest of its page (zero beyond)
                page_end = (offset // page_size + 1) * page_size
                page_rows = gather_rows(bufs, cpu, offset, np.minimum(page_end - offset, width), width)
            if tail or short:
                afters: Iterable[bytes] = [
                    views[c][o + ln : (o // page_size + 1) * page_size].tobytes()
                    for c, o, ln in zip(cpu_list, offset_list, length_list)]
            else:
                afters = itertools.repeat(b"")
            values = plan.columns(rows, length, payloads, afters, page_rows)
            strip = plan.may_end_in_newline
            fields_template = plan.fields_format
        else:
            batch = self._print_batch(fmt)
            if batch is not None:
                width = max(batch.width, pid_offset + 4)
                rows = gather_rows(bufs, cpu, offset, length, width)
                values = batch.columns(rows, length, payloads)
                fields_template = batch.template
            else:  # a plugin: its text record by record (comms it teaches are handled apart)
                rows = gather_rows(bufs, cpu, offset, length, pid_offset + 4)
                renderer = self._renderers.get(fmt.id) or self.info_renderer(fmt)
                scratch = self._scratch_symbols()
                values = [[renderer.render(d, scratch, c) for d, c in zip(payloads(), cpu_list)]]
                fields_template = "%s"
            strip = fields_template[-1:] in ("s", "\n", "")
            line_format = _name_column(fmt.name).replace("%", "%%") + fields_template
        pids = np.ascontiguousarray(rows[:, pid_offset : pid_offset + 4]).view(
            "<i4" if self.symbols.little_endian else ">i4").reshape(len(rows))
        if not self.raw and int(length.min()) < pid_offset + 4:
            # what line() reads: the bytes there are (a short record's pid is not zero-padded)
            pids = pids.copy()
            for i in np.flatnonzero(length < pid_offset + 4).tolist():
                pids[i] = self._pid(views[cpu_list[i]][offset_list[i] : offset_list[i] + length_list[i]].tobytes(),
                                    fmt)
        columns = [self._heads(pids, cpu, ts, pos, learned), *values]
        line_format = "%s" + line_format
        lines = list(map(line_format.__mod__, zip(*columns)))
        if strip:
            lines = [text[:-1] if text[-1:] == "\n" else text for text in lines]
        return lines

    def _heads(self, pids: np.ndarray, cpu: np.ndarray, ts: np.ndarray, pos: np.ndarray,
               learned: dict[int, int]) -> list[str]:
        """``"%16s-%-5d [%03d] %5d.%06d:"`` (task column, cpu, timestamp) of every record.

        ``learned``: pid -> position of the record that taught its comm (see
        :meth:`_learn_comms`); records up to it still show ``<...>``.
        """
        unique, at = np.unique(pids, return_inverse=True)
        at = at.reshape(-1)
        unique_list = unique.tolist()
        columns = [self._task_column(pid) for pid in unique_list]
        n = len(pids)
        relearnt = [pid for pid in unique_list if pid in learned]
        usecs = ((ts + 500) // 1000).astype(np.int64) if self.in_usecs else None
        if usecs is not None and int(usecs.min()) >= 0 and int(usecs.max()) < 100_000 * 1_000_000 \
                and int(cpu.min()) >= 0 and int(cpu.max()) <= 999:
            width = len(columns[0])
            if not relearnt and all(len(c) == width and c.isascii() for c in columns):
                matrix = np.empty((n, width + 20), dtype=np.uint8)
                matrix[:, :width] = np.frombuffer("".join(columns).encode(), np.uint8).reshape(-1, width)[at]
                _time_matrix(cpu, usecs, matrix[:, width:])
                return _split_rows(matrix)
            matrix = np.empty((n, 20), dtype=np.uint8)
            _time_matrix(cpu, usecs, matrix)
            times = _split_rows(matrix)
        elif usecs is not None:
            times = list(map(" [%03d] %5d.%06d:".__mod__, zip(cpu.tolist(), (usecs // 1_000_000).tolist(),
                                                                (usecs % 1_000_000).tolist())))
        else:
            times = [" [%03d]%s:" % (c, self._time_column(t)) for c, t in zip(cpu.tolist(), ts.tolist())]
        tasks = [columns[i] for i in at.tolist()]
        if relearnt:
            positions = pos.tolist()
            for i, pid in enumerate(pids.tolist()):
                taught_at = learned.get(pid)
                if taught_at is not None and positions[i] <= taught_at:
                    tasks[i] = "           <...>-%-5d" % pid
        return list(map(str.__add__, tasks, times))

    def info_renderer(self, fmt: EventFormat) -> EventRenderer:
        """The renderer of ``fmt``'s pretty text (its plugin's or its print fmt's)."""
        renderer = self._renderers.get(fmt.id)
        if renderer is None:
            renderer = self._renderers[fmt.id] = make_renderer(fmt)
        return renderer

    def _print_batch(self, fmt: EventFormat) -> Any:
        """The print fmt batch plan of ``fmt``, or None when a plugin renders it."""
        if fmt.id not in self._batches:
            renderer = self.info_renderer(fmt)
            plan = getattr(renderer, "batch_plan", None)
            self._batches[fmt.id] = plan(self.symbols) if plan is not None else None
        return self._batches[fmt.id]

    def _scratch_symbols(self) -> TraceSymbols:
        """The symbols with a pid -> comm table of their own: plugins render with it in batches,
        the comms they teach being applied in record order by :meth:`_learn_comms`."""
        if self._scratch is None:
            scratch = copy.copy(self.symbols)
            scratch.cmdlines = copy.deepcopy(self.symbols.cmdlines)
            self._scratch = scratch
        return self._scratch

    def _learn_comms(self, bufs: list[np.ndarray], views: list[memoryview], groups: list[tuple[int, np.ndarray]],
                     cpu: np.ndarray, offset: np.ndarray, length: np.ndarray) -> dict[int, int]:
        """Teach the pid -> comm table what the plugins of these records teach, in record order.

        Returns pid -> position of the record that taught it (that record and
        the ones before it still show the old first column).
        """
        little = self.symbols.little_endian
        by_pid = self._comm_by_pid
        taught: list[tuple[int, int, int, str]] = []
        for type_id_, pos in groups:
            fmt = self.formats.get(type_id_)
            teacher = comm_teacher(fmt) if fmt is not None else None
            if teacher is None:
                continue
            width = max(f.offset + f.size for f in teacher.pid_fields)
            sel_cpu, sel_off, sel_len = cpu[pos], offset[pos], length[pos]
            rows = gather_rows(bufs, sel_cpu, sel_off, sel_len, width)
            candidate = sel_len < width
            for f in teacher.pid_fields:
                code = {1: "u1", 2: "u2", 4: "u4", 8: "u8"}.get(f.size)
                if code is None:
                    candidate[:] = True
                    break
                values = np.ascontiguousarray(rows[:, f.offset : f.offset + f.size]).view(
                    ("<" if little else ">") + code).reshape(len(rows))
                unique = np.unique(values)
                unknown = [v for v in unique.tolist() if v and v not in by_pid]
                if unknown:
                    candidate |= np.isin(values, np.array(unknown, dtype=values.dtype))
            if not candidate.any():
                continue
            pos_list = pos.tolist()
            for i in np.flatnonzero(candidate).tolist():
                o = int(sel_off[i])
                payload = views[int(sel_cpu[i])][o : o + int(sel_len[i])].tobytes()
                for k, (pid, comm) in enumerate(teacher(payload, little)):
                    taught.append((pos_list[i], k, pid, comm))
        learned: dict[int, int] = {}
        taught.sort(key=lambda t: (t[0], t[1]))
        for position, _, pid, comm in taught:
            if pid and pid not in by_pid:
                by_pid[pid] = comm
                learned[pid] = position
        return learned


def report_lines(reader: Any, *, raw: bool = False) -> Iterator[str]:
    """Every line of ``trace-cmd report [-R]`` for a trace.dat reader (no newlines).

    ``reader`` is a ``TraceDatReader`` (``.symbols``, ``.formats``, ``.cpus``,
    ``.index()``, ``.cpu_buffer()``, ``.page_size``, ``.timestamps_in_usecs``),
    or anything with ``.symbols``, ``.formats``, ``.cpus`` and ``.records()``.
    Going through the merged index gives each record's page tail too, which
    -R needs for ``char buf[]`` strings that hold no NUL (see :meth:`ReportFormatter.raw_fields`).
    """
    in_usecs = getattr(reader, "timestamps_in_usecs", None)
    if in_usecs is None:
        in_usecs = timestamps_in_usecs(getattr(reader, "trace_clock", None))
    formatter = ReportFormatter(reader.symbols, reader.formats, raw=raw, in_usecs=bool(in_usecs))
    yield formatter.header(reader)
    line = formatter.line
    if not (hasattr(reader, "index") and hasattr(reader, "cpu_buffer")):
        for rec in reader.records():
            yield line(rec.cpu, rec.ts, rec.payload, rec.fmt, missed_before=getattr(rec, "missed_before", 0),
                       after=getattr(rec, "after", b""))
        return
    merged = reader.index()
    formats = reader.formats
    buffers = [np.asarray(reader.cpu_buffer(cpu)[0], dtype=np.uint8) for cpu in range(reader.cpus)]
    page_size = int(getattr(reader, "page_size", 4096))
    # only a trailing "char buf[]" string can run past its record (ftrace:print, raw_data)
    tail_types = {type_id for type_id, fmt in formats.items()
                  if any(f.array_len == 0 and _is_string_type(f) for f in fmt.event_fields)}
    for lines in formatter.index_lines(buffers, merged, page_size=page_size, tail_types=tail_types):
        yield from lines


def write_report(lines: Iterable[str], out) -> None:
    """Write report lines to a binary stream, turning surrogate escapes back into their bytes."""
    for text in lines:
        out.write(text.encode("utf-8", "surrogateescape"))
        out.write(b"\n")
