"""Segments -> one renderer per event type: closures over precompiled readers.

Each argument tree becomes a getter ``(data, size, symbol_view) -> value``,
each segment a piece of one Python ``%`` template; getters that are plain
reads of fixed record bytes carry a column form for batch rendering.
"""

from __future__ import annotations

import struct
from typing import Callable

from ..event_format import EventFormat, Field
from ..symbols import TraceSymbols
from ._cprintf import (_bitmask_text, _c_int, _c_str, _cpumask_text, _CSpec, _glibc_pointer, _ip4_text,
                       _ip6c_text, _to_signed32)
from ._parse import (ATOM, BITMASK, BSTRING, CPUMASK, DYNAMIC_ARRAY, DYNAMIC_ARRAY_LEN, FIELD, FLAGS, HEX, HEX_STR,
                     INT_ARRAY, OP, STRING, SYMBOL, TYPE, _Arg, _cast, _eval_flag, _M64, _ParseFailure, _strtoull,
                     _to_signed64)
from ._segments import SEG_NUMBER, SEG_POINTER, SEG_TEXT, Segment, split_format

_FAILED_TEXT = "[FAILED TO PARSE]"
_LS_BITS = {-2: 8, -1: 16, 0: 32, 1: 64, 2: 64}


# ---------------------------------------------------------------------------
# Symbols as libtraceevent sees them
# ---------------------------------------------------------------------------


class _SymbolView:
    """kallsyms/printk lookups with libtraceevent's rules, built once per TraceSymbols.

    * symbols of type 'A'/'a' and names starting with '$' are not functions;
    * an address above the last symbol resolves only if it equals it (the
      table ends with a sentinel at address 0);
    * printk strings lose their quotes and one trailing ``\\n``.
    """

    def __init__(self, symbols: TraceSymbols) -> None:
        ks = symbols.kallsyms
        kinds = getattr(ks, "kinds", None) or []
        keep = [
            i for i in range(len(ks.addrs))
            if not ks.names[i].startswith("$") and (i >= len(kinds) or kinds[i] not in ("A", "a"))
        ]
        self.addrs = [ks.addrs[i] for i in keep]
        self.names = [ks.names[i] for i in keep]
        self.key = (len(ks.addrs), len(symbols.printk_formats), symbols.long_size, symbols.little_endian)
        self.long_size = symbols.long_size
        self.little = symbols.little_endian
        self._printk_src = symbols.printk_formats
        self._printk: dict[int, str] = {}
        self._funcs: dict[int, tuple[str, int] | None] = {}
        self._by_name: dict[str, int] | None = None

    def function(self, addr: int) -> tuple[str, int] | None:
        """(name, start) of the function holding addr, as glibc bsearch finds it."""
        hit = self._funcs.get(addr, 0)
        if hit != 0:
            return hit  # type: ignore[return-value]
        addrs = self.addrs
        n = len(addrs)
        lo, hi = 0, n
        found = None
        while lo < hi:
            mid = (lo + hi) // 2
            a = addrs[mid]
            nxt = addrs[mid + 1] if mid + 1 < n else 0
            if addr == a or (a < addr < nxt):
                found = (self.names[mid], a)
                break
            if addr < a:
                hi = mid
            else:
                lo = mid + 1
        self._funcs[addr] = found
        return found

    def symbol_address(self, name: str) -> int:
        """Address of the first function called `name` (test_for_symbol), or 0."""
        if self._by_name is None:
            by_name: dict[str, int] = {}
            for a, nm in zip(self.addrs, self.names):
                by_name.setdefault(nm, a)
            self._by_name = by_name
        return self._by_name.get(name, 0)

    def printk(self, addr: int) -> str | None:
        s = self._printk.get(addr)
        if s is None:
            raw = self._printk_src.get(addr)
            if raw is None:
                return None
            if raw.endswith("\\n"):  # tep_register_print_string drops one "\n"
                raw = raw[:-2]
            s = self._printk[addr] = raw
        return s


_views: dict[int, tuple[TraceSymbols, _SymbolView]] = {}


def _symbol_view(symbols: TraceSymbols) -> _SymbolView:
    hit = _views.get(id(symbols))
    if hit is not None and hit[0] is symbols:
        view = hit[1]
        ks = symbols.kallsyms
        if view.key == (len(ks.addrs), len(symbols.printk_formats), symbols.long_size,
                        symbols.little_endian):
            return view
    if len(_views) > 16:
        _views.clear()
    view = _SymbolView(symbols)
    _views[id(symbols)] = (symbols, view)
    return view


# ---------------------------------------------------------------------------
# Field layout as libtraceevent sees it
# ---------------------------------------------------------------------------

_TYPE_SIZES = {"u8": 1, "u16": 2, "u32": 4, "u64": 8, "s8": 1, "s16": 2, "s32": 4, "s64": 8, "char": 1}


def _is_string_field(f: Field) -> bool:
    return f.is_array and any(t in f.type for t in ("char", "u8", "s8"))


def _element_size(f: Field, long_size: int) -> int:
    if f.is_array:
        if f.array_len:
            return f.size // f.array_len
        if f.is_dynamic:
            words = f.type.split()
            return _TYPE_SIZES.get(words[-1], 0) if words else 0
        if _is_string_field(f):
            return 1
        if "long" in f.type:
            return long_size
        return 0
    return f.size


Getter = Callable[[bytes, int, _SymbolView], object]


# ---------------------------------------------------------------------------
# Column forms of getters, for rendering many records of one type at once
# (PrintFormat.batch_plan).  A getter whose value is a plain read of fixed
# record bytes carries a ``_col`` attribute saying so; the batch renderer then
# reads that value for every record with one numpy operation.


class _Col:
    """The value ``size`` bytes at ``offset`` (``signed`` or not) hold, 0 when
    the record is shorter than ``need``; then ``& mask`` and, if ``sign_bits``,
    the low ``sign_bits`` bits as a signed number.  ``const``: a fixed value."""

    __slots__ = ("offset", "size", "signed", "need", "mask", "sign_bits", "const")

    def __init__(self, offset: int = 0, size: int = 0, signed: bool = False, need: int = 0,
                 mask: int | None = None, sign_bits: int = 0, const: int | None = None) -> None:
        self.offset, self.size, self.signed, self.need = offset, size, signed, need
        self.mask, self.sign_bits, self.const = mask, sign_bits, const

    def masked(self, mask: int, sign_bits: int = 0) -> "_Col | None":
        """This value ``& mask`` (then signed from ``sign_bits``), or None when not expressible."""
        if self.sign_bits or self.signed:
            return None
        if self.const is not None:
            v = self.const & mask
            if sign_bits and v >> (sign_bits - 1) & 1:
                v -= 1 << sign_bits
            return _Col(const=v)
        new = mask if self.mask is None else self.mask & mask
        return _Col(self.offset, self.size, False, self.need, new, sign_bits)


class _MapCol:
    """``fn(value, symbol_view)`` of a column value (a pure function: symbol names, flags)."""

    __slots__ = ("inner", "fn")

    def __init__(self, inner: _Col, fn: Callable[[int, "_SymbolView"], str]) -> None:
        self.inner, self.fn = inner, fn


def _col_of(fn: object) -> _Col | None:
    col = getattr(fn, "_col", None)
    return col if isinstance(col, _Col) else None


def _with_col(fn, col):
    """Attach a column form (or nothing, for None) to a getter or reader and return it."""
    if col is not None:
        fn._col = col
    return fn


_NP_INT = {(1, False): "u1", (2, False): "u2", (4, False): "u4", (8, False): "u8",
           (1, True): "i1", (2, True): "i2", (4, True): "i4", (8, True): "i8"}


def _eval_col(col: _Col, rows, lengths, little: bool) -> list:
    """The values of ``col`` for every record: ``rows`` is the (N, width) matrix of
    their first bytes (zero past each record's end), ``lengths`` their sizes."""
    import numpy as np  # noqa: PLC0415  (only batch rendering needs numpy)

    n = len(rows)
    if col.const is not None:
        return [col.const] * n
    dtype = np.dtype(("<" if little else ">") + _NP_INT[(col.size, col.signed)])
    v = np.ascontiguousarray(rows[:, col.offset : col.offset + col.size]).view(dtype).reshape(n)
    if n and int(lengths.min()) < col.need:
        v = np.where(lengths >= col.need, v, 0).astype(v.dtype)
    if col.mask is not None:
        v = v.astype(np.uint64) & np.uint64(col.mask)
    if col.sign_bits:
        if col.sign_bits == 64:
            v = v.astype(np.uint64).view(np.int64)
        else:
            v = v.astype(np.int64)
            top = 1 << (col.sign_bits - 1)
            v = np.where(v & top, v - (1 << col.sign_bits), v)
    return v.tolist()


class _Compiler:
    """Turns argument trees into closures ``(data, size, symbols) -> value``."""

    def __init__(self, long_size: int, little: bool) -> None:
        self.long_size = long_size
        self.little = little
        self.order = "<" if little else ">"
        self._structs: dict[str, struct.Struct] = {}

    def _struct(self, code: str) -> struct.Struct:
        st = self._structs.get(code)
        if st is None:
            st = self._structs[code] = struct.Struct(self.order + code)
        return st

    # --- raw reads ---

    def reader(self, offset: int, size: int, signed: bool = False) -> Callable[[bytes, int], int]:
        """tep_read_number at a fixed offset; 0 when the record is too short."""
        code = {1: "B", 2: "H", 4: "I", 8: "Q"}.get(size)
        if code is None:
            return _with_col(lambda d, n: 0, _Col(const=0))
        if signed:
            code = code.lower()
        unpack = self._struct(code).unpack_from
        end = offset + size

        def read(d: bytes, n: int) -> int:
            return unpack(d, offset)[0] if n >= end else 0

        return _with_col(read, _Col(offset, size, signed, end))

    def dynamic_span(self, f: Field) -> Callable[[bytes, int], tuple[int, int]]:
        """dynamic_offset_field: (offset, length) of a __data_loc/__rel_loc field."""
        word = self.reader(f.offset, f.size)
        end = f.offset + f.size
        rel = f.offset + f.size if f.rel_loc else 0
        old_style = f.size == 2

        def span(d: bytes, n: int) -> tuple[int, int]:
            if end > n:
                return 0, 0
            v = word(d, n)
            o = v & 0xFFFF
            ln = n - o if old_style else (v >> 16) & 0xFFFF
            off = 0 if o > n else o
            if o + ln > n:
                ln = 0
            return off + rel, ln

        return span

    # --- eval_num_arg ---

    def num(self, arg: _Arg) -> Getter:
        kind = arg.kind
        if kind == ATOM:
            value = _strtoull(arg.text)
            if value or arg.text[:1].isdigit():
                return _with_col(lambda d, n, sv: value, _Col(const=value))
            name = arg.text
            return lambda d, n, sv: sv.symbol_address(name)
        if kind == FIELD:
            f = arg.field
            if f is None:
                return lambda d, n, sv: 0
            read = self.reader(f.offset, f.size)
            return _with_col(lambda d, n, sv: read(d, n), _col_of(read))
        if kind == TYPE:
            inner = self.num(arg.left)
            ctype = arg.text
            mask = _cast(_M64, ctype, False)
            if mask == _M64:
                return inner
            inner_col = _col_of(inner)
            return _with_col(lambda d, n, sv: inner(d, n, sv) & mask,
                             inner_col.masked(mask) if inner_col is not None else None)
        if kind == DYNAMIC_ARRAY_LEN:
            span = self.dynamic_span(arg.field)
            return lambda d, n, sv: span(d, n)[1]
        if kind == DYNAMIC_ARRAY:
            # libtraceevent yields a host pointer here; the offset is the stable part
            span = self.dynamic_span(arg.field)
            return lambda d, n, sv: span(d, n)[0]
        if kind == OP:
            return self._num_op(arg)
        return lambda d, n, sv: 0

    def _num_op(self, arg: _Arg) -> Getter:
        op = arg.text
        if op == "[":
            return self._num_index(arg)
        if op == "?":
            cond = self.num(arg.left)
            yes = self.num(arg.right.left)
            no = self.num(arg.right.right)
            return lambda d, n, sv: yes(d, n, sv) if cond(d, n, sv) else no(d, n, sv)
        left = self.num(arg.left) if arg.left is not None else (lambda d, n, sv: 0)
        right = self.num(arg.right) if arg.right is not None else (lambda d, n, sv: 0)
        M = _M64
        binary: dict[str, Callable[[int, int], int]] = {
            "!": lambda a, b: int(not b), "!=": lambda a, b: int(a != b), "~": lambda a, b: ~b & M,
            "|": lambda a, b: a | b, "||": lambda a, b: int(bool(a or b)),
            "&": lambda a, b: a & b, "&&": lambda a, b: int(bool(a and b)),
            "<": lambda a, b: int(a < b), "<<": lambda a, b: (a << (b & 63)) & M, "<=": lambda a, b: int(a <= b),
            ">": lambda a, b: int(a > b), ">>": lambda a, b: a >> (b & 63), ">=": lambda a, b: int(a >= b),
            "==": lambda a, b: int(a == b), "-": lambda a, b: (a - b) & M, "+": lambda a, b: (a + b) & M,
            "/": lambda a, b: a // b if b else 0, "%": lambda a, b: a % b if b else 0,
            "*": lambda a, b: (a * b) & M,
        }
        fn = binary.get(op)
        if fn is None:  # '^' and friends: libtraceevent warns and yields 0
            return lambda d, n, sv: 0
        return lambda d, n, sv: fn(left(d, n, sv), right(d, n, sv))

    def _num_index(self, arg: _Arg) -> Getter:
        index = self.num(arg.right)
        base, typearg = arg.left, None
        while base.kind == TYPE:
            typearg = typearg or base
            base = base.left
        ctype = typearg.text if typearg is not None else None
        order = self.order
        if base.kind == FIELD:
            f = base.field
            if f is None:
                return lambda d, n, sv: 0
            es = _element_size(f, self.long_size)
            code = {1: "B", 2: "H", 4: "I", 8: "Q"}.get(es)
            start = f.offset
            if arg.right.kind == ATOM and ctype is None and arg.right.text[:1].isdigit():
                read = self.reader(start + _strtoull(arg.right.text) * es, es)  # constant index
                return _with_col(lambda d, n, sv: read(d, n), _col_of(read))
            unpack = struct.Struct(order + code).unpack_from if code else None

            def at_index(d: bytes, n: int, sv: _SymbolView) -> int:
                off = start + index(d, n, sv) * es
                v = unpack(d, off)[0] if unpack is not None and off + es <= n else 0
                return _cast(v, ctype, True) if ctype is not None else v

            return at_index
        if base.kind == DYNAMIC_ARRAY:
            span = self.dynamic_span(base.field)
            es = _element_size(base.field, self.long_size) or self.long_size
            code = {1: "B", 2: "H", 4: "I", 8: "Q"}.get(es)
            unpack = struct.Struct(order + code).unpack_from if code else None

            def in_dynamic(d: bytes, n: int, sv: _SymbolView) -> int:
                off = span(d, n)[0] + index(d, n, sv)  # libtraceevent adds the index in bytes
                v = unpack(d, off)[0] if unpack is not None and off + es <= n else 0
                return _cast(v, ctype, True) if ctype is not None else v

            return in_dynamic
        return lambda d, n, sv: 0

    # --- print_str_arg ---

    def text(self, arg: _Arg, spec: str, star: Getter | None) -> Getter:
        """The text `arg` prints through string conversion `spec` (e.g. "%-10s")."""
        cspec = _CSpec(spec) if spec != "%s" else None

        def fmt_with(d: bytes, n: int, sv: _SymbolView) -> Callable[[str], str]:
            if cspec is None:
                return _identity
            flags, width, prec = cspec.resolve(star(d, n, sv) if star is not None else None)
            return lambda s: _c_str(s, flags, width, prec)

        kind = arg.kind
        if kind == ATOM or kind == BSTRING:
            value = arg.text
            if cspec is None:
                return lambda d, n, sv: value
            return lambda d, n, sv: fmt_with(d, n, sv)(value)
        if kind == FIELD:
            return self._text_field(arg, fmt_with)
        if kind == STRING:
            f = arg.field
            if f is None:
                return _empty
            span = self.dynamic_span(f)

            def get_str(d: bytes, n: int, sv: _SymbolView) -> str:
                off, ln = span(d, n)
                if not ln:
                    return ""
                return fmt_with(d, n, sv)(_cstring(d, off, n))

            return get_str
        if kind in (FLAGS, SYMBOL):
            return self._text_flags(arg, fmt_with, memo=cspec is None)
        if kind in (HEX, HEX_STR):
            return self._text_hex(arg)
        if kind == INT_ARRAY:
            return self._text_int_array(arg)
        if kind in (BITMASK, CPUMASK):
            f = arg.field
            if f is None:
                return _empty
            span = self.dynamic_span(f)
            render = _bitmask_text if kind == BITMASK else _cpumask_text
            little = self.little

            def get_mask(d: bytes, n: int, sv: _SymbolView) -> str:
                off, ln = span(d, n)
                return fmt_with(d, n, sv)(render(bytes(d[off : off + ln]), little))

            return get_mask
        if kind == OP and arg.text == "?":
            cond = self.num(arg.left)
            yes = self.text(arg.right.left, spec, star)
            no = self.text(arg.right.right, spec, star)
            return lambda d, n, sv: yes(d, n, sv) if cond(d, n, sv) else no(d, n, sv)
        return _empty  # TYPE, other operators, dynamic arrays: libtraceevent prints nothing

    def _text_field(self, arg: _Arg, fmt_with) -> Getter:
        f = arg.field
        if f is None:
            return _empty
        if not f.is_array and f.size == self.long_size:
            # a pointer: a printk string if it points at one, else bare hex
            read = self.reader(f.offset, f.size)

            def printk_text(addr: int, sv: _SymbolView) -> str:
                s = sv.printk(addr)
                return s if s is not None else format(addr, "x")

            def pointer_text(d: bytes, n: int, sv: _SymbolView) -> str:
                return printk_text(read(d, n), sv)

            read_col = _col_of(read)
            return _with_col(pointer_text, _MapCol(read_col, printk_text) if read_col is not None else None)
        start, size = f.offset, f.size

        def field_text(d: bytes, n: int, sv: _SymbolView) -> str:
            end = start + size if size else n
            return fmt_with(d, n, sv)(_cstring(d, start, min(end, n)))

        return field_text

    def _text_flags(self, arg: _Arg, fmt_with, memo: bool) -> Getter:
        value = self.num(arg.left)
        delim, entries = arg.extra
        table = [(_eval_flag(v), name) for v, name in entries]
        is_flags = arg.kind == FLAGS

        def flags_text(d: bytes, n: int, sv: _SymbolView) -> str:
            return names_of(_to_signed64(value(d, n, sv)), fmt_with(d, n, sv))

        def names_of(val: int, fmt: Callable[[str], str]) -> str:
            if not is_flags:
                for fval, name in table:
                    if val == fval:
                        return fmt(name)
                return "0x%x" % (val & _M64)
            out: list[str] = []
            for fval, name in table:
                if not val and fval < 0:
                    out.append(fmt(name))
                    break
                if fval > 0 and (val & fval) == fval:
                    if out and delim:
                        out.append(delim)
                    out.append(fmt(name))
                    val &= ~fval
            if val:
                if out and delim:
                    out.append(delim)
                out.append("0x%x" % (val & _M64))
            return "".join(out)

        if not memo:
            return flags_text
        # the text depends on the value only: remember it (flag values repeat a lot)
        seen: dict[int, str] = {}

        def memo_flags_text(d: bytes, n: int, sv: _SymbolView) -> str:
            val = value(d, n, sv)
            text = seen.get(val)
            if text is None:
                if len(seen) > 4096:
                    seen.clear()
                text = seen[val] = names_of(_to_signed64(val), _identity)
            return text

        value_col = _col_of(value)
        if value_col is not None:
            memo_flags_text._col = _MapCol(value_col, lambda val, sv: names_of(_to_signed64(val), _identity))
        return memo_flags_text

    def _buffer_start(self, arg: _Arg) -> Callable[[bytes, int], int] | None:
        """Where __print_hex/__print_array read from (a field or a dynamic array)."""
        if arg.kind == DYNAMIC_ARRAY:
            span = self.dynamic_span(arg.field)
            return lambda d, n: span(d, n)[0]
        if arg.kind == FIELD and arg.field is not None:
            start = arg.field.offset
            return lambda d, n: start
        return None

    def _text_hex(self, arg: _Arg) -> Getter:
        start = self._buffer_start(arg.left)
        if start is None:
            return _empty
        length = self.num(arg.right)
        sep = " " if arg.kind == HEX else ""

        def hex_text(d: bytes, n: int, sv: _SymbolView) -> str:
            off = start(d, n)
            ln = length(d, n, sv) & 0xFFFFFFFF
            return sep.join("%02x" % b for b in bytes(d[off : off + ln]))

        return hex_text

    def _text_int_array(self, arg: _Arg) -> Getter:
        start = self._buffer_start(arg.left)
        if start is None:
            return _empty
        count_arg, size_arg = arg.extra
        count, el_size = self.num(count_arg), self.num(size_arg)

        def array_text(d: bytes, n: int, sv: _SymbolView) -> str:
            # libtraceevent 1.7: unsigned decimals separated by spaces
            # (1.8 prints "{0x1,0x2}" like the kernel)
            off = start(d, n)
            cnt = count(d, n, sv) & 0xFFFFFFFF
            es = _to_signed32(el_size(d, n, sv))
            items: list[str] = []
            for _ in range(cnt):
                if off >= n:
                    break
                if es in (1, 2, 4, 8):
                    # libtraceevent reads these in host order (little endian here)
                    items.append("%d" % int.from_bytes(bytes(d[off : off + es]).ljust(es, b"\0"), "little"))
                    off += es
                else:
                    items.append("BAD SIZE:%d 0x%x" % (es, d[off]))
                    es = 1
                    off += 1
            return " ".join(items)

        return array_text

    # --- print_arg_number / print_arg_pointer ---

    def number(self, arg: _Arg, spec: str, star: Getter | None, ls: int) -> tuple[str, Getter]:
        """(Python template piece, getter) for an integer conversion."""
        cspec = _CSpec(spec)
        conv = cspec.conv
        bits = _LS_BITS[ls]
        signed = conv in "di"
        mask = (1 << bits) - 1
        top = 1 << (bits - 1)
        full = 1 << bits
        value = self.num(arg)
        flags = cspec.flags
        simple = (
            star is None and conv in "diuxXo" and "#" not in flags and " " not in flags
            and (cspec.prec is None or (cspec.prec > 0 and "0" not in flags))
            and not ("+" in flags and not signed)
        )
        if simple:
            template = "%" + flags + (str(cspec.width) if cspec.width else "")
            if cspec.prec is not None:
                template += "." + str(cspec.prec)
            template += "d" if conv in "diu" else conv
            direct = self._direct_read(arg, bits, signed)
            if direct is not None:
                return template, direct
            value_col = _col_of(value)
            if signed:
                def signed_value(d: bytes, n: int, sv: _SymbolView) -> int:
                    v = value(d, n, sv) & mask
                    return v - full if v & top else v
                return template, _with_col(signed_value, value_col.masked(mask, bits) if value_col else None)
            if bits == 64:
                return template, value
            return template, _with_col(lambda d, n, sv: value(d, n, sv) & mask,
                                       value_col.masked(mask) if value_col else None)

        def formatted(d: bytes, n: int, sv: _SymbolView) -> str:
            v = value(d, n, sv) & mask
            if signed and v & top:
                v -= full
            fl, width, prec = cspec.resolve(star(d, n, sv) if star is not None else None)
            return _c_int(v, conv, fl, width, prec)

        return "%s", formatted

    def _direct_read(self, arg: _Arg, bits: int, signed: bool) -> Getter | None:
        """A single struct read for a plain REC->field printed with `bits`-wide
        C semantics (the common case, done without the generic evaluator)."""
        if arg.kind != FIELD or arg.field is None:
            return None
        f = arg.field
        size = f.size
        if size not in (1, 2, 4, 8):
            return None
        width = bits // 8
        end = f.offset + size
        if size < width or (size == width and not signed):
            read = self.reader(f.offset, size)
        elif size == width:
            read = self.reader(f.offset, size, signed=True)
        else:  # the value is truncated to its low `width` bytes
            off = f.offset if self.little else f.offset + size - width
            read = self.reader(off, width, signed=signed)

        def direct(d: bytes, n: int, sv: _SymbolView) -> int:
            return read(d, n) if n >= end else 0

        col = _col_of(read)
        if col is not None and col.const is None:
            col = _Col(col.offset, col.size, col.signed, max(col.need, end))
        return _with_col(direct, col)

    def pointer(self, arg: _Arg, spec: str, star: Getter | None) -> Getter:
        """print_arg_pointer for conversion `spec` ("%p", "%pS", "%pI4", ...)."""
        if arg.kind == BSTRING:
            value = arg.text
            return lambda d, n, sv: value
        ext = spec[spec.index("p") + 1 :]
        c = ext[:1]
        if c in ("F", "f", "S", "s"):
            addr_of = self.num(arg)
            with_offset = c in ("F", "S")

            def symbol_text(addr: int, sv: _SymbolView) -> str:
                hit = sv.function(addr)
                if hit is None:
                    return "0x%x" % addr
                if with_offset:
                    return "%s+0x%x" % (hit[0], (addr - hit[1]) & _M64)
                return hit[0]

            def symbol(d: bytes, n: int, sv: _SymbolView) -> str:
                return symbol_text(addr_of(d, n, sv), sv)

            addr_col = _col_of(addr_of)
            return _with_col(symbol, _MapCol(addr_col, symbol_text) if addr_col is not None else None)
        if c in ("M", "m"):
            return self._mac(arg, ext)
        if c in ("I", "i"):
            return self._ip(arg, ext)
        if c == "U":
            return self._uuid(arg, ext)
        if c == "h":
            return self._raw_buffer(arg, ext, star)
        addr_of = self.num(arg)
        addr_col = _col_of(addr_of)
        return _with_col(lambda d, n, sv: _glibc_pointer(addr_of(d, n, sv)),
                         _MapCol(addr_col, lambda v, sv: _glibc_pointer(v)) if addr_col is not None else None)

    def _plain_field(self, arg: _Arg) -> tuple[Field | None, str | None]:
        """The field under any casts, or the text libtraceevent prints instead."""
        while arg.kind == TYPE:
            arg = arg.left
        if arg.kind != FIELD:
            return None, "ARG TYPE NOT FIELD BUT %d" % arg.kind
        return arg.field, None

    def _mac(self, arg: _Arg, ext: str) -> Getter:
        f, err = self._plain_field(arg)
        if err is not None:
            return lambda d, n, sv: err
        if f is None:
            return _empty
        if f.size != 6:
            return lambda d, n, sv: "INVALIDMAC"
        sep = "" if ext[0] == "m" else "-" if ext[1:2] == "F" else ":"
        reverse = ext[1:2] == "R"
        start = f.offset

        def mac(d: bytes, n: int, sv: _SymbolView) -> str:
            b = _bytes_at(d, start, 6)
            if reverse:
                b = b[::-1]
            return sep.join("%02x" % x for x in b)

        return mac

    def _ip(self, arg: _Arg, ext: str) -> Getter:
        style, version = ext[0], ext[1:2]
        rest = ext[2:]
        if version == "4":
            reverse = rest[:1] == "l" or (rest[:1] == "h" and self.little)
            f, err = self._plain_field(arg)
            if err is not None:
                return lambda d, n, sv: err
            if f is None:
                return _empty
            if f.size != 4:
                return lambda d, n, sv: "INVALIDIPv4"
            start = f.offset
            return lambda d, n, sv: _ip4_text(_bytes_at(d, start, 4), style, reverse)
        if version == "6":
            compressed = style == "I" and rest[:1] == "c"
            f, err = self._plain_field(arg)
            if err is not None:
                return lambda d, n, sv: err
            if f is None:
                return _empty
            if f.size != 16:
                return lambda d, n, sv: "INVALIDIPv6"
            start = f.offset
            if compressed:
                return lambda d, n, sv: _ip6c_text(_bytes_at(d, start, 16))
            sep = ":" if style == "I" else ""
            return lambda d, n, sv: sep.join(_bytes_at(d, start, 16)[j : j + 2].hex() for j in range(0, 16, 2))
        if version == "S":
            return self._sockaddr(arg, style, rest)
        return _empty

    def _sockaddr(self, arg: _Arg, style: str, rest: str) -> Getter:
        with_port = with_c = False
        if style == "I":
            if rest[:1] == "p":
                with_port, rest = True, rest[1:]
            if rest[:1] == "c":
                with_c, rest = True, rest[1:]
        reverse = rest[:1] == "l" or (rest[:1] == "h" and self.little)
        while arg.kind == TYPE:
            arg = arg.left
        if arg.kind == FIELD:
            f = arg.field
            if f is None:
                return _empty
            fixed = (f.offset, f.size)
            locate: Callable[[bytes, int], tuple[int, int]] = lambda d, n: fixed
        elif arg.kind == DYNAMIC_ARRAY:
            locate = self.dynamic_span(arg.field)
        else:
            msg = "ARG NOT FIELD NOR DYNAMIC ARRAY BUT TYPE %d" % arg.kind
            return lambda d, n, sv: msg

        def sockaddr(d: bytes, n: int, sv: _SymbolView) -> str:
            off, ln = locate(d, n)
            sa = _bytes_at(d, off, 28)
            family = int.from_bytes(sa[0:2], "little")  # host order
            port = int.from_bytes(sa[2:4], "big")
            if family == 2:
                if ln < 16:
                    return "INVALIDIPv4"
                text = _ip4_text(sa[4:8], style, reverse)
                return text + (":%d" % port if with_port else "")
            if family == 10:
                if ln < 28:
                    return "INVALIDIPv6"
                addr = sa[8:24]
                text = _ip6c_text(addr) if with_c else (":" if style == "I" else "").join(
                    addr[j : j + 2].hex() for j in range(0, 16, 2))
                return "[%s]:%d" % (text, port) if with_port else text
            return ""

        return sockaddr

    def _uuid(self, arg: _Arg, ext: str) -> Getter:
        variant = ext[1:2]
        upper = variant in ("L", "B")
        order = (3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15) if variant in ("L", "l") else tuple(range(16))
        f, err = self._plain_field(arg)
        if err is not None:
            return lambda d, n, sv: err
        if f is None:
            return _empty
        if f.size != 16:
            return lambda d, n, sv: "INVALIDUUID"
        start = f.offset
        hexfmt = "%02X" if upper else "%02x"

        def uuid(d: bytes, n: int, sv: _SymbolView) -> str:
            b = _bytes_at(d, start, 16)
            out = []
            for i, j in enumerate(order):
                out.append(hexfmt % b[j])
                if i in (3, 5, 7, 9):
                    out.append("-")
            return "".join(out)

        return uuid

    def _raw_buffer(self, arg: _Arg, ext: str, star: Getter | None) -> Getter:
        sep = {"C": ":", "D": "-", "N": ""}.get(ext[1:2], " ")
        if arg.kind != DYNAMIC_ARRAY:
            msg = "ARG TYPE NOT FIELD BUT %d" % arg.kind
            return lambda d, n, sv: msg
        span = self.dynamic_span(arg.field)

        def raw_buffer(d: bytes, n: int, sv: _SymbolView) -> str:
            off, ln = span(d, n)
            plen = _to_signed32(star(d, n, sv)) if star is not None else 1
            plen = min(plen, ln)
            if plen < 1:
                return ""
            return sep.join("%02x" % b for b in _bytes_at(d, off, plen))

        return raw_buffer


def _identity(s: str) -> str:
    return s


def _empty(d: bytes, n: int, sv: _SymbolView) -> str:
    return ""


def _cstring(d: bytes, start: int, end: int) -> str:
    """The NUL-terminated string at d[start:end], decoded."""
    raw = bytes(d[start:end])
    nul = raw.find(b"\0")
    if nul >= 0:
        raw = raw[:nul]
    return raw.decode("utf-8", "surrogateescape")


def _bytes_at(d: bytes, start: int, length: int) -> bytes:
    return bytes(d[start : start + length]).ljust(length, b"\0")


# ---------------------------------------------------------------------------
# [FAILED TO PARSE]: libtraceevent's raw field dump
# ---------------------------------------------------------------------------


def _printable_array(raw: bytes) -> bool:
    for b in raw:
        if b == 0:
            break
        if not (0x20 <= b <= 0x7E or b in (0x09, 0x0A, 0x0B, 0x0C, 0x0D)):
            return False
    return True


class _FailedRenderer:
    """Prints ``[FAILED TO PARSE] name=value ...`` like libtraceevent's print_field_raw."""

    def __init__(self, fmt: EventFormat, compiler: _Compiler) -> None:
        self.fields = fmt.event_fields
        self.compiler = compiler
        self.long_size = compiler.long_size
        # libtraceevent clears a field's "string" flag the first time it is not
        # printable, for the rest of the run; we keep the same memory.
        self._not_string: set[str] = set()
        self._spans = {f.name: compiler.dynamic_span(f) for f in self.fields if f.is_dynamic}
        self._readers = {f.name: compiler.reader(f.offset, f.size) for f in self.fields}

    def __call__(self, d: bytes, n: int, sv: _SymbolView) -> str:
        out = [_FAILED_TEXT]
        for f in self.fields:
            out.append(" %s=" % f.name)
            out.append(self._field_text(f, d, n))
        return "".join(out)

    def _field_text(self, f: Field, d: bytes, n: int) -> str:
        if f.is_array:
            if f.is_dynamic:
                off, ln = self._spans[f.name](d, n)
            else:
                off, ln = f.offset, f.size
            raw = bytes(d[off : off + ln])
            if _is_string_field(f) and f.name not in self._not_string and _printable_array(raw):
                return _cstring(d, off, n)
            self._not_string.add(f.name)
            return "ARRAY[" + ", ".join("%02x" % b for b in raw) + "]"
        val = self._readers[f.name](d, n)
        if "*" in f.type:
            return "0x%x" % val
        if f.signed:
            if f.size == 4:
                return "0x%x" % (val & 0xFFFFFFFF) if "long" in f.type else "%d" % _to_signed32(val)
            if f.size == 2:
                return "%2d" % (val - 0x10000 if val & 0x8000 else val)
            if f.size == 1:
                return "%1d" % (val - 0x100 if val & 0x80 else val)
            return "%d" % _to_signed64(val)
        return "0x%x" % val if "long" in f.type else "%d" % val


# ---------------------------------------------------------------------------
# A whole line: segments -> one renderer
# ---------------------------------------------------------------------------

Renderer = Callable[[bytes, int, _SymbolView], str]


def _compile_segments(segs: list[Segment], compiler: _Compiler) -> Renderer:
    """One closure for a whole line: a Python % template and its value getters."""
    template: list[str] = []
    getters: list[Getter] = []
    for kind, spec, arg, star_arg, ls in segs:
        if kind == SEG_TEXT:
            template.append(spec.replace("%", "%%"))
            continue
        star = compiler.num(star_arg) if star_arg is not None else None
        if kind == SEG_NUMBER:
            piece, getter = compiler.number(arg, spec, star, ls)
            template.append(piece)
        elif kind == SEG_POINTER:
            template.append("%s")
            getter = compiler.pointer(arg, spec, star)
        else:
            template.append("%s")
            getter = compiler.text(arg, spec, star)
        getters.append(getter)
    line = "".join(template)
    if not getters:
        text = line.replace("%%", "%")
        render = lambda d, n, sv: text  # noqa: E731
    elif len(getters) == 1:
        (g,) = getters
        render = lambda d, n, sv: line % (g(d, n, sv),)  # noqa: E731
    else:
        gs = tuple(getters)
        render = lambda d, n, sv: line % tuple([g(d, n, sv) for g in gs])  # noqa: E731
    render._batch = (line, tuple(getters))  # type: ignore[attr-defined]
    return render


# ---------------------------------------------------------------------------
# ftrace:bprint: the format comes from the record
# ---------------------------------------------------------------------------


class _BprintRenderer:
    """ftrace:bprint (trace_printk): the format is a printk string at REC->fmt,
    its arguments are packed in REC->buf (ints 4-byte aligned, strings inline)."""

    def __init__(self, fmt: EventFormat, compiler: _Compiler) -> None:
        self.compiler = compiler
        buf, ip, fmt_field = fmt.field("buf"), fmt.field("ip"), fmt.field("fmt")
        self.fallback = None
        if buf is None or ip is None or fmt_field is None:
            self.fallback = _FailedRenderer(fmt, compiler)
            return
        self.buf_offset = buf.offset
        self.read_ip = compiler.reader(ip.offset, ip.size)
        self.read_fmt = compiler.reader(fmt_field.offset, fmt_field.size)
        self.long_size = compiler.long_size

    def __call__(self, d: bytes, n: int, sv: _SymbolView) -> str:
        if self.fallback is not None:
            return self.fallback(d, n, sv)
        addr = self.read_fmt(d, n)
        printk = sv.printk(addr)
        fmt = "%ps: " + printk if printk is not None else "%%ps: (NO FORMAT FOUND at %x)\n" % addr
        args = self._args(fmt, d, n)
        try:
            segs = split_format(fmt, args)
        except _ParseFailure:
            return ""
        return _compile_segments(segs, self.compiler)(d, n, sv)

    def _args(self, fmt: str, d: bytes, n: int) -> list[_Arg]:
        """make_bprint_args: the ip, then one atom or string per conversion."""
        args = [_Arg(ATOM, str(self.read_ip(d, n)))]
        order = "little" if self.compiler.little else "big"
        bptr = self.buf_offset
        i, L = 5, len(fmt)  # skip "%ps: "
        while bptr < n and i < L:
            if fmt[i] != "%":
                i += 1
                continue
            ls = 0
            while True:
                i += 1
                c = fmt[i] if i < L else ""
                if c in ("l",):
                    ls += 1
                    continue
                if c == "L":
                    ls = 2
                    continue
                if c and c in "0123456789.#+":
                    continue
                if c in ("z", "Z"):
                    ls = 1
                    continue
                is_string = c == "s"
                if c == "p":
                    ls = 1
                    nxt = fmt[i + 1] if i + 1 < L else ""
                    if nxt.isascii() and nxt.isalnum():
                        i += 1
                        printable = bptr < n and 0x20 <= d[bptr] <= 0x7E
                        plain = nxt in "sSx" or (nxt in "fF" and (fmt[i + 1] if i + 1 < L else "") != "w")
                        if not plain and printable:
                            is_string = True
                if is_string:
                    raw = bytes(d[bptr:n])
                    nul = raw.find(b"\0")
                    s = raw[: nul if nul >= 0 else len(raw)]
                    args.append(_Arg(BSTRING, s.decode("utf-8", "surrogateescape")))
                    bptr += len(s) + 1
                    break
                if c in ("p", "d", "u", "i", "x", "X", "o", "*"):
                    size = 4 if c == "*" else {0: 4, 1: self.long_size, 2: 8}.get(ls, ls)
                    bptr = (bptr + 3) & ~3
                    raw = bytes(d[bptr : bptr + size]).ljust(size, b"\0")
                    val = int.from_bytes(raw, order) if size in (1, 2, 4, 8) else 0
                    bptr += size
                    args.append(_Arg(ATOM, str(val)))
                    if c == "*":
                        continue
                break
            i += 1
        return args
