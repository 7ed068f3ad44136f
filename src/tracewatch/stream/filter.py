"""ftrace's event filter language, evaluated by tracewatch and by the kernel.

The same text a user writes into ``events/SYSTEM/EVENT/filter`` works as
``where=`` in scripts and as ``--filter`` on the command line::

    ret < 0
    common_pid != 0 && (id == 0 || id == 1)
    comm ~ "gcc*" || filename ~ "*.so*"
    !(flags & 0x4) && common_cpu & CPUS{0-3,8}
    call_site.function == kmem_cache_alloc

Grammar (``&&`` binds tighter than ``||``; ``!`` applies to the next predicate
or parenthesised group)::

    expr      := and_expr ( "||" and_expr )*
    and_expr  := unary ( "&&" unary )*
    unary     := "!" unary | "(" expr ")" | predicate
    predicate := FIELD OP VALUE
    OP        := "==" | "!=" | "<" | "<=" | ">" | ">=" | "&" | "~"
    VALUE     := NUMBER | STRING | "CPUS{" cpulist "}" | SYMBOL (after FIELD.function)

Semantics follow ``kernel/trace/trace_events_filter.c``:

* numbers are C literals (``42``, ``-1``, ``0x1f``, ``017``) compared in the
  field's own width and signedness, so ``common_pid == 0xffffffff`` means
  ``common_pid == -1`` on the signed 32-bit field, as in the kernel;
  ``&`` is true when any bit is common;
* strings compare whole (``==``, ``!=``); ``~`` is a glob (``*``, ``?``,
  ``[a-z]``, ``[!a-z]``, ``\\`` escapes) matched on the UTF-8 bytes.  Two
  kernel quirks are kept so that a filter means the same wherever it runs: a
  pattern starting with ``!`` is negated, and one starting with a digit is
  compared literally;
* ``field & CPUS{0-3,8}`` tests membership in a CPU list; ``==``/``!=`` with a
  one-CPU list compare, with a longer list ``==`` is never and ``!=`` always true;
* ``field.function == name`` is true when the address lies in that kernel
  function; it needs a symbol table (``function_range=``).

tracewatch's metadata names are accepted beside an event's own fields:
``common_ts`` (ns, tracewatch only), ``common_cpu`` (the kernel's ``CPU``) and
``common_comm`` (the kernel's ``COMM``, the current task's name).  The kernel's
own spellings ``CPU``/``COMM`` (and ``cpu``/``comm`` on events without such a
field) are accepted as aliases.

Strings may use the escapes ``\\"``, ``\\'``, ``\\\\``, ``\\n`` and ``\\t``; any
other backslash is kept as written, so glob escapes such as ``"a\\*"`` read as
in the kernel (which has no string escapes at all).
"""

from __future__ import annotations

import bisect
import difflib
import keyword
import operator
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import FilterError
from ..formats.event_format import EventFormat

__all__ = ["Filter", "METADATA_FIELDS", "kallsyms_function_range"]

#: Names tracewatch provides beside every event's fields, and what they hold.
METADATA_FIELDS = {
    "common_ts": "timestamp in ns (tracewatch only; the kernel cannot filter on it)",
    "common_cpu": "CPU the event was recorded on (the kernel's CPU)",
    "common_comm": "command name of the current task (the kernel's COMM)",
    "common_pid": "pid of the current task",
}

# The kernel copies a quoted operand into a fixed buffer (MAX_FILTER_STR_VAL).
_KERNEL_MAX_STRING = 255

_STRING_OPS = ("==", "!=", "~")
_CPUS_OPS = ("==", "!=", "&")

FunctionRange = Callable[["str | int"], "tuple[int, int] | None"]


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class _Token:
    kind: str  # FIELD NUMBER STRING CPUS OP AND OR NOT LPAREN RPAREN END
    text: str  # as written (for messages)
    column: int  # 0-based offset in the expression
    value: Any = None  # NUMBER: int; STRING: str; CPUS: frozenset[int]


_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_NUMBER_RE = re.compile(r"-?[0-9][A-Za-z0-9]*")
_OPERATORS = ("&&", "||", "==", "!=", "<=", ">=", "<", ">", "&", "~", "!", "(", ")")
_OPERATOR_KIND = {"&&": "AND", "||": "OR", "!": "NOT", "(": "LPAREN", ")": "RPAREN"}
_STRING_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "t": "\t"}


def _tokenize(expr: str) -> list[_Token]:
    """Split ``expr`` into tokens, each with the column it starts at."""
    tokens: list[_Token] = []
    i = 0
    n = len(expr)
    while i < n:
        ch = expr[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "\"'":
            text, value, i = _read_string(expr, i)
            tokens.append(_Token("STRING", text, i - len(text), value))
            continue
        if ch.isdigit() or (ch == "-" and i + 1 < n and expr[i + 1].isdigit()):
            m = _NUMBER_RE.match(expr, i)
            assert m is not None
            tokens.append(_Token("NUMBER", m.group(), i, _parse_c_integer(m.group(), expr, i)))
            i = m.end()
            continue
        m = _IDENT_RE.match(expr, i)
        if m:
            word = m.group()
            if word == "CPUS" and expr.startswith("{", m.end()):
                close = expr.find("}", m.end())
                if close < 0:
                    raise FilterError("'CPUS{' without a closing '}'", expr, i)
                cpulist = expr[m.end() + 1 : close]
                tokens.append(_Token("CPUS", expr[i : close + 1], i, _parse_cpulist(cpulist, expr, m.end() + 1)))
                i = close + 1
                continue
            tokens.append(_Token("FIELD", word, i))
            i = m.end()
            continue
        for op in _OPERATORS:
            if expr.startswith(op, i):
                tokens.append(_Token(_OPERATOR_KIND.get(op, "OP"), op, i))
                i += len(op)
                break
        else:
            if ch == "=":
                raise FilterError("'=' is not an operator (did you mean '=='?)", expr, i)
            if ch == "|":
                raise FilterError("'|' is not an operator (did you mean '||'?)", expr, i)
            raise FilterError(f"unexpected character {ch!r}", expr, i)
    tokens.append(_Token("END", "", n))
    return tokens


def _read_string(expr: str, start: int) -> tuple[str, str, int]:
    """Read a quoted string at ``start``: (text as written, value, index after it)."""
    quote = expr[start]
    out: list[str] = []
    i = start + 1
    while i < len(expr):
        ch = expr[i]
        if ch == quote:
            return expr[start : i + 1], "".join(out), i + 1
        if ch == "\\" and i + 1 < len(expr) and expr[i + 1] in _STRING_ESCAPES:
            out.append(_STRING_ESCAPES[expr[i + 1]])
            i += 2
            continue
        # Any other backslash stays: it is a glob escape ("a\*") for '~'.
        out.append(ch)
        i += 1
    raise FilterError(f"string starting here has no closing {quote}", expr, start)


def _parse_c_integer(text: str, expr: str, column: int) -> int:
    """A C integer literal as the kernel's kstrtoll(s, 0) reads it: 10, 0x1f, 017, -5."""
    body = text[1:] if text.startswith("-") else text
    try:
        if body[:2].lower() == "0x":
            value = int(body[2:], 16)
        elif body.startswith("0") and len(body) > 1:
            value = int(body[1:], 8)
        else:
            value = int(body, 10)
    except ValueError:
        raise FilterError(f"invalid number {text!r}", expr, column) from None
    return -value if text.startswith("-") else value


def _parse_cpulist(text: str, expr: str, column: int) -> frozenset[int]:
    """A kernel cpulist such as ``0-3,8,10-11`` (what the kernel's cpulist_parse takes)."""
    cpus: set[int] = set()
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise FilterError(f"invalid CPU list {text!r} (expected e.g. 0-3,8)", expr, column)
        first = int(m.group(1))
        last = int(m.group(2)) if m.group(2) is not None else first
        if last < first:
            raise FilterError(f"invalid CPU range {part.strip()!r}", expr, column)
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


# --------------------------------------------------------------------------- fields


@dataclass(frozen=True)
class _FieldRef:
    """A resolved field name: what to read, its type, and what the kernel calls it."""

    name: str  # column / attribute name in tracewatch (canonical: common_cpu, not CPU)
    written: str  # as the user spelled it
    column: int
    kind: str | None  # "int", "str", or None when no format says (taken from the literal)
    size: int | None = None  # bytes, for ints with a known format
    signed: bool | None = None
    kernel_name: str | None = None  # None: the kernel has no such field
    dynamic_string: bool = False  # __data_loc/__rel_loc char[]: the kernel knows its length
    kernel_string_pointer: bool = False  # "char *": the kernel compares the string it points to


# Kernel generic fields (trace_events.c) and the tracewatch metadata they match.
_CPU_ALIASES = ("common_cpu", "CPU", "cpu")
_COMM_ALIASES = ("common_comm", "COMM", "comm")


def _resolve_field(word: str, column: int, fmt: EventFormat | None, expr: str) -> _FieldRef:
    """Find what ``word`` names, in the event's format first, then in the metadata."""
    if fmt is not None:
        f = fmt.field(word)
        if f is not None:
            decl = f"{f.type} {f.name}" + (f"[{f.array_len or ''}]" if f.array_len is not None else "")
            if f.is_string:
                return _FieldRef(word, word, column, "str", kernel_name=word, dynamic_string=f.is_dynamic)
            if f.is_array:
                raise FilterError(
                    f"field '{word}' is an array ({decl}); filters compare numbers and strings", expr, column)
            if f.size not in (1, 2, 4, 8):
                raise FilterError(f"field '{word}' has size {f.size}; filters compare 1, 2, 4 or 8 byte numbers",
                                  expr, column)
            char_pointer = f.type.replace("const ", "").replace(" ", "") == "char*"
            return _FieldRef(word, word, column, "int", f.size, f.signed,
                             kernel_name=None if char_pointer else word, kernel_string_pointer=char_pointer)
    if word == "common_ts":
        return _FieldRef("common_ts", word, column, "int", 8, False, kernel_name=None)
    # Lower-case cpu/comm are aliases only when the event has no such field of
    # its own (the kernel looks up event fields first, too); without a format
    # we cannot tell, so they stay plain field names.
    if word in ("common_cpu", "CPU") or (word == "cpu" and fmt is not None):
        return _FieldRef("common_cpu", word, column, "int", 4, True, kernel_name="CPU")
    if word in ("common_comm", "COMM") or (word == "comm" and fmt is not None):
        return _FieldRef("common_comm", word, column, "str", kernel_name="COMM")
    if fmt is None:
        if word == "common_pid":
            return _FieldRef(word, word, column, "int", 4, True, kernel_name=word)
        return _FieldRef(word, word, column, None, kernel_name=word)
    known = [f.name for f in fmt.fields] + [m for m in METADATA_FIELDS if fmt.field(m) is None]
    close = difflib.get_close_matches(word, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (fields: {', '.join(f.name for f in fmt.event_fields)})"
    raise FilterError(f"unknown field '{word}' in {fmt.full_name}{hint}", expr, column)


def _fit_to_field(value: int, field: _FieldRef, token: _Token, expr: str) -> int:
    """Reduce ``value`` to the field's C type the way the kernel does, or refuse it.

    The kernel reads a signed field's operand with kstrtoll and an unsigned
    one's with kstrtoull, then casts it to the field's width.  A value that
    fits the width as either signed or unsigned keeps its bits (so
    ``0xffffffff`` on an ``int`` is -1); anything wider would be silently
    truncated by the kernel, so it is refused here.
    """
    if field.size is None:
        return value
    bits = field.size * 8
    if field.signed:
        if not -(1 << 63) <= value < (1 << 63) or not -(1 << (bits - 1)) <= value < (1 << bits):
            raise FilterError(f"{token.text} does not fit the {field.size}-byte signed field '{field.written}'",
                              expr, token.column)
        return value - (1 << bits) if value >= 1 << (bits - 1) else value
    if value < 0:
        raise FilterError(f"field '{field.written}' is unsigned; the kernel refuses a negative value",
                          expr, token.column)
    if value >= 1 << bits:
        raise FilterError(f"{token.text} does not fit the {field.size}-byte unsigned field '{field.written}'",
                          expr, token.column)
    return value


# --------------------------------------------------------------------------- glob


def _kernel_glob_regex(pattern: str) -> tuple[bool, "re.Pattern[bytes]"]:
    """(negated, regex over the UTF-8 bytes) for a '~' pattern, as the kernel reads it.

    filter_parse_regex(): a leading '!' negates the match, and a pattern
    starting with a digit is compared literally.  Everything else is a
    glob_match() pattern (lib/glob.c); its simple forms "foo*", "*foo",
    "*foo*" are the same as the kernel's prefix/suffix/substring shortcuts.
    """
    negated = pattern.startswith("!")
    body = (pattern[1:] if negated else pattern).encode("utf-8", "surrogateescape")
    if body[:1].isdigit():
        return negated, re.compile(re.escape(body), re.DOTALL)
    return negated, re.compile(_glob_to_regex(body), re.DOTALL)


def _glob_to_regex(pat: bytes) -> bytes:
    """Translate a lib/glob.c pattern into a Python bytes regex (for fullmatch)."""
    out: list[bytes] = []
    i = 0
    while i < len(pat):
        c = pat[i : i + 1]
        i += 1
        if c == b"?":
            out.append(b".")
        elif c == b"*":
            out.append(b".*")
        elif c == b"\\":
            # A trailing backslash matches the terminating NUL: nothing more.
            if i < len(pat):
                out.append(re.escape(pat[i : i + 1]))
                i += 1
        elif c == b"[":
            parsed = _glob_class(pat, i)
            if parsed is None:  # malformed class: '[' is literal, as in glob_match()
                out.append(re.escape(c))
            else:
                regex, i = parsed
                out.append(regex)
        else:
            out.append(re.escape(c))
    return b"".join(out)


def _glob_class(pat: bytes, i: int) -> tuple[bytes, int] | None:
    """Parse a ``[...]`` class starting after '['; None when malformed."""
    inverted = pat[i : i + 1] == b"!"
    j = i + inverted
    spans: list[tuple[int, int]] = []
    first = True
    while True:
        if j >= len(pat):
            return None
        a = pat[j]
        if a == ord("]") and not first:
            j += 1
            break
        first = False
        b = a
        if pat[j + 1 : j + 2] == b"-" and pat[j + 2 : j + 3] not in (b"]", b""):
            b = pat[j + 2]
            j += 3
        else:
            if pat[j + 1 : j + 2] == b"-" and j + 2 >= len(pat):
                return None
            j += 1
        if a <= b:  # glob_match() lets a reversed range match nothing
            spans.append((a, b))
    members = b"".join(
        re.escape(bytes([a])) + (b"-" + re.escape(bytes([b])) if b != a else b"") for a, b in spans)
    if not members:
        return (rb"[\x00-\xff]" if inverted else rb"(?!)"), j
    return (b"[^" if inverted else b"[") + members + b"]", j


def _string_matcher(pattern: str) -> Callable[[str], bool]:
    """A memoised str -> bool test for one '~' pattern."""
    negated, regex = _kernel_glob_regex(pattern)
    fullmatch = regex.fullmatch
    seen: dict[str, bool] = {}

    def match(value: str) -> bool:
        hit = seen.get(value)
        if hit is None:
            hit = (fullmatch(value.encode("utf-8", "surrogateescape")) is not None) != negated
            if len(seen) < 65536:  # comms repeat; arbitrary strings must not grow this forever
                seen[value] = hit
        return hit

    return match


def _kernel_glob_text(pattern: str, static_string: bool) -> str:
    """The pattern to give the kernel so that it matches as tracewatch does.

    The kernel's suffix shortcut for "*foo" (regex_match_end) measures a fixed
    char array by its size, not its NUL, so "comm ~ \\"*sh\\"" never matches
    "bash" in the kernel.  Escaping one character of the suffix makes the kernel
    use glob_match() instead, which gives the same answer tracewatch does.
    """
    body = pattern[1:] if pattern.startswith("!") else pattern
    if not static_string or not body.startswith("*") or body[:1].isdigit():
        return pattern
    rest = body[1:]
    trailing_star = rest.endswith("*")
    if not rest or trailing_star or any(c in rest for c in "*?[\\"):
        return pattern  # not the suffix shortcut: substring or full glob
    return pattern[: len(pattern) - len(body)] + "*\\" + rest


# --------------------------------------------------------------------------- the tree


class _Node:
    """One node of a parsed filter."""

    def field_refs(self) -> Iterator[_FieldRef]:
        raise NotImplementedError

    def mask(self, columns: "_Columns") -> np.ndarray:
        """Vectorised: a bool array over the batch."""
        raise NotImplementedError

    def python(self, ns: "_Namespace") -> str:
        """Python expression text of this test on the event ``ev``."""
        raise NotImplementedError

    def text(self) -> str:
        """tracewatch's own spelling (parses back to the same filter)."""
        raise NotImplementedError

    def kernel(self) -> tuple[str | None, str | None]:
        """(exact kernel text or None, kernel text keeping a superset of events or None)."""
        raise NotImplementedError


@dataclass
class _Compare(_Node):
    """``field OP number``."""

    field: _FieldRef
    op: str
    value: int
    hex_written: bool
    column: int

    def field_refs(self) -> Iterator[_FieldRef]:
        yield self.field

    def mask(self, columns: "_Columns") -> np.ndarray:
        col = columns.numeric(self.field, self.column)
        return _compare_numeric(col, self.op, self.value)

    def python(self, ns: "_Namespace") -> str:
        get = ns.attribute(self.field.name)
        if self.op == "&":
            return f"(({get} & {self.value & 0xFFFFFFFFFFFFFFFF!r}) != 0)"
        return f"({get} {self.op} {self.value!r})"

    def _value_text(self) -> str:
        if self.hex_written and self.value >= 0:
            return hex(self.value)
        return str(self.value)

    def text(self) -> str:
        return f"{self.field.name} {self.op} {self._value_text()}"

    def kernel(self) -> tuple[str | None, str | None]:
        if self.field.kernel_name is None:
            return None, None
        exact = f"{self.field.kernel_name} {self.op} {self._value_text()}"
        return exact, exact


@dataclass
class _StringCompare(_Node):
    """``field == "s"``, ``field != "s"``, ``field ~ "glob"``."""

    field: _FieldRef
    op: str
    value: str
    column: int

    def __post_init__(self) -> None:
        self._matcher = _string_matcher(self.value) if self.op == "~" else None

    def field_refs(self) -> Iterator[_FieldRef]:
        yield self.field

    def mask(self, columns: "_Columns") -> np.ndarray:
        col = columns.strings(self.field, self.column)
        if self.op == "~":
            assert self._matcher is not None
            return np.fromiter(map(self._matcher, col), dtype=bool, count=len(col))
        equal = np.asarray(col == self.value, dtype=bool)
        return equal if self.op == "==" else ~equal

    def python(self, ns: "_Namespace") -> str:
        get = ns.attribute(self.field.name)
        if self.op == "~":
            return f"{ns.constant(self._matcher)}({get})"
        return f"({get} {self.op} {ns.constant(self.value)})"

    def text(self) -> str:
        escaped = "".join("\\" + c if c in '"\\' else {"\n": "\\n", "\t": "\\t"}.get(c, c) for c in self.value)
        return f'{self.field.name} {self.op} "{escaped}"'

    def kernel(self) -> tuple[str | None, str | None]:
        name = self.field.kernel_name
        value = self.value
        if name is None or len(value.encode("utf-8", "surrogateescape")) > _KERNEL_MAX_STRING or "\n" in value:
            return None, None
        if self.op == "~":
            value = _kernel_glob_text(value, static_string=not self.field.dynamic_string)
        # The kernel has no escapes: a string can hold one kind of quote, not both.
        if '"' not in value:
            quoted = f'"{value}"'
        elif "'" not in value:
            quoted = f"'{value}'"
        else:
            return None, None
        exact = f"{name} {self.op} {quoted}"
        return exact, exact


@dataclass
class _CpuSet(_Node):
    """``field & CPUS{0-3}``, ``field == CPUS{2}``, ``field != CPUS{2,3}``."""

    field: _FieldRef
    op: str
    cpus: frozenset[int]
    written: str
    column: int

    def field_refs(self) -> Iterator[_FieldRef]:
        yield self.field

    def _constant_result(self) -> bool | None:
        # Kernel: a one-CPU mask is a scalar compare; a wider mask never equals a scalar.
        if self.op == "&" or len(self.cpus) == 1:
            return None
        return self.op == "!="

    def mask(self, columns: "_Columns") -> np.ndarray:
        col = columns.numeric(self.field, self.column)
        constant = self._constant_result()
        if constant is not None:
            return np.full(len(col), constant, dtype=bool)
        # Same dtype on both sides: mixing int64 and uint64 would go through float64.
        wide = col.astype(np.int64 if col.dtype.kind == "i" else np.uint64, copy=False)
        hit = np.isin(wide, np.array(sorted(self.cpus), dtype=wide.dtype))
        return ~hit if self.op == "!=" else hit

    def python(self, ns: "_Namespace") -> str:
        constant = self._constant_result()
        if constant is not None:
            return repr(constant)
        get = ns.attribute(self.field.name)
        return f"({get} {'not in' if self.op == '!=' else 'in'} {ns.constant(self.cpus)})"

    def text(self) -> str:
        return f"{self.field.name} {self.op} {self.written}"

    def kernel(self) -> tuple[str | None, str | None]:
        if self.field.kernel_name is None:
            return None, None
        exact = f"{self.field.kernel_name} {self.op} {self.written}"
        return exact, exact


@dataclass
class _FunctionRange(_Node):
    """``field.function == symbol``: the address lies within that function."""

    field: _FieldRef
    op: str
    start: int
    end: int
    written: str
    column: int

    def field_refs(self) -> Iterator[_FieldRef]:
        yield self.field

    def mask(self, columns: "_Columns") -> np.ndarray:
        col = columns.numeric(self.field, self.column).astype(np.uint64, copy=False)
        inside = (col >= np.uint64(self.start)) & (col < np.uint64(self.end))
        return inside if self.op == "==" else ~inside

    def python(self, ns: "_Namespace") -> str:
        get = ns.attribute(self.field.name)
        # Addresses are unsigned; a signed column would hold them negative.
        inside = f"({self.start!r} <= ({get} & 0xFFFFFFFFFFFFFFFF) < {self.end!r})"
        return inside if self.op == "==" else f"(not {inside})"

    def text(self) -> str:
        return f"{self.field.name}.function {self.op} {self.written}"

    def kernel(self) -> tuple[str | None, str | None]:
        if self.field.kernel_name is None:
            return None, None
        exact = f"{self.field.kernel_name}.function {self.op} {self.written}"
        return exact, exact


@dataclass
class _Not(_Node):
    operand: _Node

    def field_refs(self) -> Iterator[_FieldRef]:
        return self.operand.field_refs()

    def mask(self, columns: "_Columns") -> np.ndarray:
        return ~self.operand.mask(columns)

    def python(self, ns: "_Namespace") -> str:
        return f"(not {self.operand.python(ns)})"

    def text(self) -> str:
        return f"!({self.operand.text()})"

    def kernel(self) -> tuple[str | None, str | None]:
        exact, _ = self.operand.kernel()
        if exact is None:
            return None, None  # !(superset) is not a superset of anything
        return f"!({exact})", f"!({exact})"


@dataclass
class _Logical(_Node):
    """``a && b && ...`` (op "&&") or ``a || b || ...`` (op "||")."""

    op: str
    operands: list[_Node]

    def field_refs(self) -> Iterator[_FieldRef]:
        for operand in self.operands:
            yield from operand.field_refs()

    def mask(self, columns: "_Columns") -> np.ndarray:
        result = self.operands[0].mask(columns)
        for operand in self.operands[1:]:
            result = (result & operand.mask(columns)) if self.op == "&&" else (result | operand.mask(columns))
        return result

    def python(self, ns: "_Namespace") -> str:
        word = " and " if self.op == "&&" else " or "
        return "(" + word.join(operand.python(ns) for operand in self.operands) + ")"

    def _join(self, texts: Sequence[tuple[_Node, str]]) -> str:
        return f" {self.op} ".join(self._child(node, text) for node, text in texts)

    def _child(self, node: _Node, text: str) -> str:
        # Only an '||' inside an '&&' needs parentheses.
        if isinstance(node, _Logical) and node.op == "||" and self.op == "&&":
            return f"({text})"
        return text

    def text(self) -> str:
        return self._join([(node, node.text()) for node in self.operands])

    def kernel(self) -> tuple[str | None, str | None]:
        parts = [(node, node.kernel()) for node in self.operands]
        exact: str | None = None
        if all(k[0] is not None for _, k in parts):
            exact = self._join([(node, k[0]) for node, k in parts])  # type: ignore[misc]
        if self.op == "||":
            # A superset of a union needs a superset of every branch.
            if any(k[1] is None for _, k in parts):
                return exact, None
            return exact, self._join([(node, k[1]) for node, k in parts])  # type: ignore[misc]
        # A superset of an intersection: drop the terms the kernel cannot test.
        kept = [(node, k[1]) for node, k in parts if k[1] is not None]
        if not kept:
            return exact, None
        if len(kept) == 1:
            return exact, kept[0][1]
        return exact, self._join(kept)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- parser


class _Parser:
    """Recursive descent over the tokens; every error names its column."""

    def __init__(self, expr: str, fmt: EventFormat | None, function_range: FunctionRange | None) -> None:
        self.expr = expr
        self.fmt = fmt
        self.function_range = function_range
        self.tokens = _tokenize(expr)
        self.pos = 0

    def error(self, message: str, token: _Token) -> FilterError:
        return FilterError(message, self.expr, token.column)

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def parse(self) -> _Node:
        if self.peek().kind == "END":
            raise self.error("empty filter", self.peek())
        node = self.parse_or()
        token = self.peek()
        if token.kind == "RPAREN":
            raise self.error("')' without a matching '('", token)
        if token.kind != "END":
            raise self.error(f"expected '&&', '||' or the end, found {token.text!r}", token)
        return node

    def parse_or(self) -> _Node:
        operands = [self.parse_and()]
        while self.peek().kind == "OR":
            self.take()
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else _Logical("||", operands)

    def parse_and(self) -> _Node:
        operands = [self.parse_unary()]
        while self.peek().kind == "AND":
            self.take()
            operands.append(self.parse_unary())
        return operands[0] if len(operands) == 1 else _Logical("&&", operands)

    def parse_unary(self) -> _Node:
        token = self.take()
        if token.kind == "NOT":
            return _Not(self.parse_unary())
        if token.kind == "LPAREN":
            node = self.parse_or()
            close = self.peek()
            if close.kind != "RPAREN":
                if close.kind == "END":
                    raise self.error("'(' is never closed", token)
                raise self.error(f"expected '&&', '||' or ')', found {close.text!r}", close)
            self.take()
            return node
        if token.kind == "FIELD":
            return self.parse_predicate(token)
        if token.kind == "END":
            raise self.error("expression ends where a comparison should follow", token)
        raise self.error(f"expected a field name, '!' or '(', found {token.text!r}", token)

    def parse_predicate(self, name: _Token) -> _Node:
        word, dot, modifier = name.text.partition(".")
        if dot and modifier != "function":
            if modifier == "ustring":
                raise self.error("'.ustring' reads user memory, which only the kernel can do", name)
            raise self.error(f"unknown field modifier '.{modifier}' (the kernel knows '.function')", name)
        field = _resolve_field(word, name.column, self.fmt, self.expr)
        op = self.take()
        if op.kind != "OP":
            raise self.error(
                f"expected an operator (==, !=, <, <=, >, >=, &, ~) after '{name.text}', found "
                + (repr(op.text) if op.text else "the end"), op)
        value = self.take()
        if modifier == "function":
            return self.parse_function(field, op, value)
        if value.kind == "NUMBER":
            return self.numeric(field, op, value)
        if value.kind == "STRING":
            return self.string(field, op, value)
        if value.kind == "CPUS":
            return self.cpuset(field, op, value)
        if value.kind == "FIELD":
            raise self.error(f"expected a number or a quoted string, found '{value.text}' "
                             f"(did you forget quotes?)", value)
        raise self.error(f"expected a value after '{op.text}', found " + (repr(value.text) if value.text
                                                                          else "the end"), value)

    def numeric(self, field: _FieldRef, op: _Token, value: _Token) -> _Node:
        if field.kind == "str":
            raise self.error(f"field '{field.written}' is a string; compare it with a quoted string", value)
        if op.text == "~":
            raise self.error("'~' matches strings; use ==, !=, <, <=, >, >= or & on numbers", op)
        fitted = _fit_to_field(value.value, field, value, self.expr)
        if field.kind is None:
            field = _with_kind(field, "int")
        hex_written = value.text.lstrip("-")[:2].lower() == "0x"
        return _Compare(field, op.text, fitted, hex_written, field.column)

    def string(self, field: _FieldRef, op: _Token, value: _Token) -> _Node:
        if field.kind == "int":
            if field.kernel_string_pointer:
                raise self.error(f"field '{field.written}' points to a string in kernel memory, which "
                                 "tracewatch cannot read", value)
            raise self.error(f"field '{field.written}' is a number; strings compare with string fields", value)
        if op.text not in _STRING_OPS:
            raise self.error(f"'{op.text}' does not apply to strings; use ==, != or ~", op)
        if field.kind is None:
            field = _with_kind(field, "str")
        return _StringCompare(field, op.text, value.value, field.column)

    def cpuset(self, field: _FieldRef, op: _Token, value: _Token) -> _Node:
        if field.kind == "str":
            raise self.error(f"field '{field.written}' is a string; CPUS{{...}} applies to numbers", value)
        if op.text not in _CPUS_OPS:
            raise self.error(f"'{op.text}' does not apply to CPUS{{...}}; use &, == or !=", op)
        if field.kind is None:
            field = _with_kind(field, "int")
        return _CpuSet(field, op.text, value.value, value.text, field.column)

    def parse_function(self, field: _FieldRef, op: _Token, value: _Token) -> _Node:
        if field.kind == "str" or (field.size is not None and field.size != 8):
            raise self.error(f"'.function' needs an address field the size of a long; "
                             f"'{field.written}' is not one", op)
        if op.text not in ("==", "!="):
            raise self.error(f"'.function' compares with == or !=, not '{op.text}'", op)
        if value.kind == "NUMBER":
            key: str | int = value.value
        elif value.kind == "FIELD":
            key = value.text
        else:
            raise self.error("expected a function name or address after '.function " + op.text + "'", value)
        if self.function_range is None:
            raise self.error("'.function' needs the kernel's symbols (kallsyms), which this trace "
                             "does not provide", value)
        span = self.function_range(key)
        if span is None:
            raise self.error(f"no kernel function {value.text!r}", value)
        if field.kind is None:
            field = _with_kind(field, "int")
        return _FunctionRange(field, op.text, span[0], span[1], value.text, field.column)


def _with_kind(field: _FieldRef, kind: str) -> _FieldRef:
    return _FieldRef(field.name, field.written, field.column, kind, field.size, field.signed,
                     field.kernel_name, field.dynamic_string, field.kernel_string_pointer)


# --------------------------------------------------------------------------- evaluation


class _Columns:
    """The columns one ``mask`` call reads, each fetched from the batch once."""

    def __init__(self, batch: Any, expr: str) -> None:
        self.batch = batch
        self.expr = expr
        self.cache: dict[str, np.ndarray] = {}

    def get(self, field: _FieldRef) -> np.ndarray:
        col = self.cache.get(field.name)
        if col is None:
            col = self.cache[field.name] = np.asarray(self.batch.column(field.name))
        return col

    def numeric(self, field: _FieldRef, column: int) -> np.ndarray:
        col = self.get(field)
        if col.dtype.kind == "b":
            return col.astype(np.int64)
        if col.dtype.kind not in "iu":
            raise FilterError(f"field '{field.written}' holds {col.dtype} values, not numbers", self.expr, column)
        if col.ndim != 1:
            raise FilterError(f"field '{field.written}' is an array; filters compare numbers and strings",
                              self.expr, column)
        return col

    def strings(self, field: _FieldRef, column: int) -> np.ndarray:
        col = self.get(field)
        if col.dtype.kind == "U":
            col = col.astype(object)
        elif col.dtype.kind == "S":
            col = np.array([v.decode("utf-8", "surrogateescape") for v in col.tolist()], dtype=object)
        elif col.dtype.kind != "O":
            raise FilterError(f"field '{field.written}' holds numbers, not strings", self.expr, column)
        return col


_NUMPY_COMPARE = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


def _compare_numeric(col: np.ndarray, op: str, value: int) -> np.ndarray:
    """``col OP value`` with exact integer semantics whatever the column's dtype.

    Mixing a uint64 column with a Python int can go through float64 (numpy 1)
    or raise (numpy 2, out of range), so the operand is first made a scalar of
    the column's (widened) type, and an operand outside that type's range
    gives a constant answer.
    """
    wide = col.astype(np.int64 if col.dtype.kind == "i" else np.uint64, copy=False)
    if op == "&":
        bits = value & 0xFFFFFFFFFFFFFFFF
        if wide.dtype == np.int64 and bits >= 1 << 63:
            bits -= 1 << 64
        return (wide & wide.dtype.type(bits)) != 0
    info = np.iinfo(wide.dtype)
    if value > info.max:
        return np.full(len(wide), op in ("!=", "<", "<="), dtype=bool)
    if value < info.min:
        return np.full(len(wide), op in ("!=", ">", ">="), dtype=bool)
    return _NUMPY_COMPARE[op](wide, wide.dtype.type(value))


class _Namespace:
    """Names the compiled per-event predicate refers to (constants, getters)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def constant(self, value: Any) -> str:
        name = f"_k{len(self.values)}"
        self.values[name] = value
        return name

    def attribute(self, name: str) -> str:
        # Field names are [A-Za-z_][A-Za-z0-9_]* by the tokenizer; a keyword
        # ("from") or a leading underscore goes through attrgetter instead.
        if name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("_"):
            return f"ev.{name}"
        return f"{self.constant(operator.attrgetter(name))}(ev)"


# --------------------------------------------------------------------------- public


class Filter:
    """A parsed filter expression: vectorised ``mask``, per-event ``matches``, kernel text.

    >>> f = Filter.parse("ret < 0 && common_comm ~ \\"gcc*\\"")
    >>> sorted(f.fields)
    ['common_comm', 'ret']
    >>> f.kernel_expr()
    'ret < 0 && COMM ~ "gcc*"'
    """

    def __init__(self, expr: str, root: _Node, fmt: EventFormat | None) -> None:
        self.expr = expr
        self.format = fmt
        self._root = root
        #: Column / attribute names the filter reads (canonical: ``common_cpu``, not ``CPU``).
        self.fields: set[str] = {ref.name for ref in root.field_refs()}
        ns = _Namespace()
        source = f"lambda ev: {root.python(ns)}"
        self.python_source = source
        code = compile(source, f"<filter {expr!r}>", "eval")
        self._predicate: Callable[[Any], bool] = eval(code, {"__builtins__": {}, **ns.values})

    @classmethod
    def parse(cls, expr: str, fmt: EventFormat | None = None, *,
              function_range: FunctionRange | None = None) -> "Filter":
        """Parse ``expr``; with ``fmt``, check fields and types against that event.

        ``function_range(name_or_address)`` returns the ``[start, end)``
        addresses of a kernel function (or None), for ``field.function``
        predicates; see :func:`kallsyms_function_range`.

        Raises :class:`FilterError` (with the 0-based column) on bad syntax,
        an unknown field, an operator the field's type does not allow, or a
        value that does not fit the field.
        """
        if not isinstance(expr, str):
            raise FilterError(f"a filter is a string, not {type(expr).__name__}", repr(expr), None)
        root = _Parser(expr, fmt, function_range).parse()
        return cls(expr, root, fmt)

    @property
    def predicate(self) -> Callable[[Any], bool]:
        """The compiled per-event test: ``predicate(ev)`` reads ``ev.<field>``."""
        return self._predicate

    def matches(self, ev: Any) -> bool:
        """True when the event ``ev`` (fields as attributes) passes the filter."""
        return self._predicate(ev)

    def mask(self, batch: Any) -> np.ndarray:
        """A bool array, one entry per event of ``batch`` (``batch.column(name)`` -> numpy)."""
        columns = _Columns(batch, self.expr)
        return self._root.mask(columns)

    def kernel_expr(self) -> str | None:
        """Text for the kernel's ``filter`` file with exactly this meaning, or None.

        None when any part is something only tracewatch can test
        (``common_ts``, a string with both quote kinds, ...).  Write it encoded
        as UTF-8 with surrogateescape.  Metadata names are written as the
        kernel's own (``CPU``, ``COMM``).
        """
        return self._root.kernel()[0]

    def kernel_prefilter(self) -> str | None:
        """Kernel text that keeps at least every event this filter keeps, or None.

        For ``common_pid == 42 && common_ts > 5000`` it is ``common_pid == 42``:
        the kernel drops most events early and tracewatch applies the rest.
        """
        return self._root.kernel()[1]

    def kernel_text(self) -> str | None:
        """Kernel text that keeps exactly the events this filter keeps, or None (``common_ts``, a newline)."""
        return self._root.kernel()[0]

    def __str__(self) -> str:
        """tracewatch's normalised spelling of the filter; it parses back the same."""
        return self._root.text()

    def __repr__(self) -> str:
        return f"Filter({self.expr!r})"


def kallsyms_function_range(symbols: Any) -> FunctionRange:
    """A ``function_range`` for :meth:`Filter.parse` over a kallsyms table.

    ``symbols`` has sorted ``addrs`` and matching ``names`` (as
    ``formats.symbols.KernelSymbols``).  A function ends where the next
    symbol at a higher address starts, which is how far the kernel's
    kallsyms_lookup_size_offset() reaches too.
    """
    addrs: list[int] = list(symbols.addrs)
    names: list[str] = list(symbols.names)
    first_index: dict[str, int] = {}
    for i, name in enumerate(names):
        first_index.setdefault(name, i)

    def span_at(i: int) -> tuple[int, int] | None:
        start = addrs[i]
        for j in range(i + 1, len(addrs)):
            if addrs[j] > start:
                return start, addrs[j]
        return None  # the last symbol has no known end

    def function_range(key: str | int) -> tuple[int, int] | None:
        if isinstance(key, str):
            i = first_index.get(key)
            return None if i is None else span_at(i)
        i = bisect.bisect_right(addrs, key) - 1
        if i < 0:
            return None
        while i > 0 and addrs[i - 1] == addrs[i]:
            i -= 1
        return span_at(i)

    return function_range
