"""Render an event's ``print fmt`` exactly as libtraceevent (``trace-cmd report``) does.

A format file ends with a line such as::

    print fmt: "comm=%s pid=%d", REC->comm, REC->pid

that is, a C format string followed by C argument expressions.  The kernel
renders it with ``vsnprintf``; ``trace-cmd report`` renders it with
libtraceevent, which has its own expression parser and its own idea of every
conversion.  tracewatch must print what ``trace-cmd report`` prints, so this
module follows libtraceevent's rules, including the places where they differ
from C:

* binary operators of equal priority group to the *right* (``a - b - c`` is
  ``a - (b - c)``), and a parenthesised operand keeps the priority of its
  operator when the tree is rotated;
* numbers are 64-bit unsigned; casts to ``char``/``short``/``int`` (and the
  ``u8``.. ``s32`` names) only mask, they never sign-extend; ``^`` evaluates
  to 0;
* unknown identifiers evaluate to the address of the kernel symbol of that
  name, or 0; ``__print_symbolic``/``__print_flags`` entries whose value is an
  unknown identifier never match;
* ``%p`` prints ``0x..`` or ``(nil)``, ``%ps``/``%pS`` print ``sym`` or
  ``sym+0xoff`` (``0x..`` when no symbol holds the address), unknown ``%p``
  extensions print the pointer followed by the extension letters;
* a format libtraceevent cannot parse prints ``[FAILED TO PARSE]`` followed by
  ``name=value`` for every field.

The work is split in three steps, done once per event type:

1. ``_Tokenizer`` + ``_ArgParser``: the argument expressions become a tree of
   ``_Arg`` nodes, built with libtraceevent's algorithm (see above);
2. ``_split_format``: the format string becomes a list of segments (literal
   text, or one conversion bound to one argument);
3. ``_Compiler``: each segment becomes a closure over precompiled
   ``struct.Struct`` readers, and the whole line a Python ``%`` template.

``PrintFormat.render`` then runs the closures on one record.  Symbols (kallsyms,
printk formats), the long size and the byte order come from ``TraceSymbols``.

Text is ``str``; bytes from the trace that are not UTF-8 decode with
``surrogateescape`` so that writing with ``errors="surrogateescape"`` gives
back the exact bytes.  A trailing newline in the rendered text is kept:
``trace-cmd report`` removes one trailing ``\\n`` from the whole line (that is
the report writer's job).
"""

from __future__ import annotations

import struct
from typing import Callable, Iterator

from ..errors import TraceFormatError
from .event_format import EventFormat, Field
from .symbols import TraceSymbols

__all__ = ["PrintFormat", "PrintFormatBatch", "PrintFormatError"]


class PrintFormatError(TraceFormatError):
    """A print fmt cannot be used at all (not raised for formats libtraceevent
    also fails on: those render as ``[FAILED TO PARSE] field=value ...``)."""


class _ParseFailure(Exception):
    """libtraceevent would mark the event TEP_EVENT_FL_FAILED."""


_M64 = (1 << 64) - 1
_FAILED_TEXT = "[FAILED TO PARSE]"

# ---------------------------------------------------------------------------
# Tokens (libtraceevent's __read_token rules)
# ---------------------------------------------------------------------------

_T_ERROR, _T_NONE, _T_SPACE, _T_NEWLINE, _T_OP, _T_DELIM, _T_ITEM, _T_DQUOTE, _T_SQUOTE = range(9)


def _isprint(ch: str) -> bool:
    return " " <= ch <= "~"


def _char_type(ch: str) -> int:
    if ch == "":
        return _T_NONE
    if ch == "\n":
        return _T_NEWLINE
    if ch in " \t\r\v\f":
        return _T_SPACE
    if ch.isascii() and (ch.isalnum() or ch == "_"):
        return _T_ITEM
    if ch == "'":
        return _T_SQUOTE
    if ch == '"':
        return _T_DQUOTE
    if not _isprint(ch):
        return _T_NONE
    if ch in "(),":
        return _T_DELIM
    return _T_OP


class _Tokenizer:
    """Splits print fmt text into (type, text) tokens the way libtraceevent does.

    Strings keep their backslash escapes (``parse_arg_string`` interprets them
    later) and adjacent string literals are joined.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def _getc(self) -> str:
        if self.pos >= len(self.text):
            return ""
        ch = self.text[self.pos]
        self.pos += 1
        return ch

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def read_raw(self) -> tuple[int, str]:
        ch = self._getc()
        kind = _char_type(ch)
        if kind == _T_NONE:
            return _T_NONE, ""
        if kind in (_T_NEWLINE, _T_DELIM):
            return kind, ch
        if kind == _T_OP:
            buf = ch
            if ch == "-" and self._peek() == ">":
                return kind, buf + self._getc()
            if ch in "-+|&><":
                if self._peek() == ch:
                    buf += self._getc()
                    if ch not in "<>":
                        return kind, buf
                if self._peek() == "=":
                    buf += self._getc()
                return kind, buf
            if ch in "!=":
                if self._peek() == "=":
                    buf += self._getc()
            return kind, buf
        if kind in (_T_DQUOTE, _T_SQUOTE):
            return self._read_quoted(kind, ch)
        buf = ch
        while _char_type(self._peek()) == kind:
            buf += self._getc()
        return kind, buf

    def _read_quoted(self, kind: int, quote: str) -> tuple[int, str]:
        # Mirrors the C loop: a quote preceded by a backslash does not end the
        # string; a non-printable character (other than newline) does.
        out: list[str] = []
        ch = quote
        while True:
            while True:
                last = ch
                ch = self._getc()
                out.append(ch)
                if ch == "":
                    break
                if not ((ch != quote and _isprint(ch)) or last == "\\" or ch == "\n"):
                    break
            out.pop()  # the closing quote (or the character that stopped us)
            if ch == "":
                return _T_NONE, "".join(out)
            if kind == _T_DQUOTE:
                save = self.pos
                nxt = self._getc()
                while nxt != "" and nxt in " \t\r\v\f\n":
                    nxt = self._getc()
                if nxt == '"':
                    ch = nxt
                    continue
                self.pos = save
            return kind, "".join(out)

    def read(self) -> tuple[int, str]:
        """Next token, skipping spaces (newlines are tokens)."""
        while True:
            kind, tok = self.read_raw()
            if kind != _T_SPACE:
                return kind, tok

    def read_item(self) -> tuple[int, str]:
        """Next token, skipping spaces and newlines."""
        while True:
            kind, tok = self.read_raw()
            if kind not in (_T_SPACE, _T_NEWLINE):
                return kind, tok


# ---------------------------------------------------------------------------
# Argument tree
# ---------------------------------------------------------------------------

# Node kinds; the numbers are libtraceevent's enum tep_print_arg_type, which it
# prints in "ARG TYPE NOT FIELD BUT %d".
NULL, ATOM, FIELD, FLAGS, SYMBOL, HEX, INT_ARRAY, TYPE, STRING, BSTRING = range(10)
DYNAMIC_ARRAY, OP, FUNC, BITMASK, DYNAMIC_ARRAY_LEN, HEX_STR, CPUMASK = range(10, 17)


class _Arg:
    """One node of a print argument (libtraceevent's struct tep_print_arg).

    Nodes are mutable and copied into one another while the parser rotates
    operators, exactly as the C code copies structs, so attributes are
    generic: ``text`` (atom text, field or type name, operator), ``field``
    (the resolved Field), ``left``/``right``/``item`` (children),
    ``extra`` (kind-specific: flag/symbol tables, delimiter, sizes).
    """

    __slots__ = ("kind", "text", "field", "left", "right", "prio", "extra")

    def __init__(self, kind: int = NULL, text: str = "") -> None:
        self.kind = kind
        self.text = text
        self.field: Field | None = None
        self.left: _Arg | None = None
        self.right: _Arg | None = None
        self.prio = 0
        self.extra: tuple = ()

    def copy_from(self, other: "_Arg") -> None:
        for name in _Arg.__slots__:
            setattr(self, name, getattr(other, name))

    def clone(self) -> "_Arg":
        new = _Arg()
        new.copy_from(self)
        return new

    def __repr__(self) -> str:  # for debugging parse trees
        if self.kind == OP:
            return f"({self.left!r} {self.text} {self.right!r})"
        if self.kind == TYPE:
            return f"(({self.text}){self.left!r})"
        return f"<{self.kind}:{self.text}>"


def _op_prio(op: str) -> int:
    """libtraceevent's get_op_prio (lower binds tighter; -1: unknown)."""
    if len(op) == 1:
        return {"~": 4, "!": 4, "*": 6, "/": 6, "%": 6, "+": 7, "-": 7, "<": 9, ">": 9,
                "&": 11, "^": 12, "|": 13, "?": 16}.get(op, -1)
    return {"++": 3, "--": 3, ">>": 8, "<<": 8, ">=": 9, "<=": 9, "==": 10, "!=": 10,
            "&&": 14, "||": 15}.get(op, -1)


_BINARY_OPS = frozenset(">> << & | && || - + * ^ / % < > <= >= == !=".split())


def _strtoull(text: str) -> int:
    """C strtoull(text, NULL, 0) as a u64 (stops at the first bad character)."""
    s = text.lstrip(" \t\n\r\v\f")
    neg = False
    if s[:1] in ("+", "-"):
        neg = s[0] == "-"
        s = s[1:]
    base = 10
    if s[:2].lower() == "0x" and len(s) > 2 and s[2] in "0123456789abcdefABCDEF":
        base, s = 16, s[2:]
    elif s[:1] == "0":
        base = 8
    digits = "0123456789abcdef"[:base]
    n = 0
    for ch in s:
        d = digits.find(ch.lower())
        if d < 0:
            break
        n = n * base + d
    if n > _M64:
        n = _M64
    return (-n if neg else n) & _M64


def _to_signed64(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


class _ArgParser:
    """Builds the argument list of one print fmt (event_read_print and helpers)."""

    def __init__(self, fmt: EventFormat, long_size: int) -> None:
        self.fmt = fmt
        self.long_size = long_size
        self.tok: _Tokenizer
        self._event_fields = {f.name: f for f in fmt.event_fields}

    # field lookups: tep_find_any_field / tep_find_field
    def any_field(self, name: str) -> Field | None:
        return self.fmt.field(name)

    def event_field(self, name: str) -> Field | None:
        return self._event_fields.get(name)

    def parse(self, text: str) -> tuple[str, list[_Arg]]:
        """The format string (escapes kept) and the argument trees."""
        self.tok = _Tokenizer(text)
        kind, fmt_text = self.tok.read()
        if kind != _T_DQUOTE:
            raise _ParseFailure("print fmt does not start with a string")
        while True:
            kind, tok = self.tok.read_item()
            if kind == _T_NONE:
                return fmt_text, []
            if kind == _T_DQUOTE:
                fmt_text += tok
                continue
            break
        if kind != _T_DELIM or tok != ",":
            raise _ParseFailure(f"expected ',' after the format string, got {tok!r}")
        return fmt_text, self._read_args()

    def _read_args(self) -> list[_Arg]:
        args: list[_Arg] = []
        kind = _T_ERROR
        while True:
            if kind == _T_NEWLINE:
                kind, tok = self.tok.read_item()
                if kind == _T_NONE:
                    break
                continue
            arg = _Arg()
            kind, tok = self.process_arg(arg)
            if kind == _T_ERROR:
                raise _ParseFailure("bad argument")
            args.append(arg)
            if kind == _T_OP:
                kind, tok = self.process_op(arg, tok)
                _consolidate(arg)
                if kind == _T_NONE:
                    break
                continue
            if kind == _T_DELIM and tok == ",":
                continue
            break
        return args

    # --- the recursive descent, one method per libtraceevent process_* ---

    def process_arg(self, arg: _Arg) -> tuple[int, str]:
        kind, tok = self.tok.read()
        return self.process_arg_token(arg, kind, tok)

    def process_arg_token(self, arg: _Arg, kind: int, tok: str) -> tuple[int, str]:
        if kind == _T_ITEM:
            if tok == "REC":
                return self.process_entry(arg)
            atom = tok
            kind, tok = self.tok.read_item()
            if kind == _T_DELIM and tok == "(":
                return self.process_function(arg, atom)
            while kind == _T_ITEM:  # "unsigned long"
                atom += " " + tok
                kind, tok = self.tok.read_item()
            arg.kind, arg.text = ATOM, atom
            return kind, tok
        if kind == _T_SQUOTE:
            arg.kind, arg.text = ATOM, str(ord(tok[0]) if tok else 0)
            return self.tok.read_item()
        if kind == _T_DQUOTE:
            arg.kind, arg.text = ATOM, tok
            return self.tok.read_item()
        if kind == _T_DELIM and tok == "(":
            return self.process_paren(arg)
        if kind in (_T_DELIM, _T_OP):  # a prefix operator
            arg.kind, arg.text, arg.left = OP, tok, None
            return self.process_op(arg, tok)
        raise _ParseFailure(f"unexpected token {tok!r}")

    def process_entry(self, arg: _Arg) -> tuple[int, str]:
        kind, tok = self.tok.read_item()
        if kind == _T_DELIM and tok == ")":  # "(REC)->field"
            return _T_ITEM, ")"
        if kind != _T_OP or tok != "->":
            raise _ParseFailure("expected '->' after REC")
        kind, name = self.tok.read()
        if kind != _T_ITEM:
            raise _ParseFailure("expected a field name after REC->")
        arg.kind, arg.text, arg.field = FIELD, name, self.any_field(name)
        return self.tok.read()

    def process_paren(self, arg: _Arg) -> tuple[int, str]:
        kind, tok = self.process_arg(arg)
        if kind == _T_OP:
            kind, tok = self.process_op(arg, tok)
        if kind == _T_ITEM and tok == ")":
            return self.process_entry(arg)
        if kind != _T_DELIM or tok != ")":
            raise _ParseFailure("expected ')'")
        kind, tok = self.tok.read_item()
        if kind in (_T_ITEM, _T_DQUOTE, _T_SQUOTE) or (kind == _T_DELIM and tok == "("):
            # "(type) item": a cast
            if arg.kind != ATOM:
                raise _ParseFailure("a cast needs a type name")
            item = _Arg()
            arg.kind, arg.left = TYPE, item  # arg.text keeps the type name
            return self.process_arg_token(item, kind, tok)
        return kind, tok

    def process_op(self, arg: _Arg, token: str) -> tuple[int, str]:
        right: _Arg | None = None
        if arg.kind == OP and arg.left is None:
            if len(token) != 1 or token not in "~!+-":
                raise _ParseFailure(f"bad prefix operator {token!r}")
            arg.left = _Arg(NULL)
            right = _Arg()
            arg.right = right
            kind, tok = self.process_arg(right)
        elif token == "?":
            left = arg.clone()
            arg.kind, arg.text, arg.left, arg.right, arg.prio = OP, "?", left, None, 0
            kind, tok = self.process_cond(arg)
        elif token in _BINARY_OPS:
            left = arg.clone()
            arg.kind, arg.text, arg.left, arg.right = OP, token, left, None
            arg.prio = 0 if left.kind == NULL else _op_prio(token)
            kind, tok = self.tok.read_item()
            if token == "*" and kind == _T_DELIM and tok == ")":  # "(type *)"
                if left.kind != ATOM:
                    raise _ParseFailure("bad pointer type")
                left.text += " *"
                arg.copy_from(left)
                return kind, tok
            right = _Arg()
            kind, tok = self.process_arg_token(right, kind, tok)
            if right.kind == OP and _op_prio(arg.text) < _op_prio(right.text):
                # libtraceevent rotates even when `right` was parenthesised
                arg.right = right.left
                saved = arg.clone()
                arg.copy_from(right)
                right.copy_from(saved)
                arg.left = right
            else:
                arg.right = right
        elif token == "[":
            left = arg.clone()
            arg.kind, arg.text, arg.left, arg.right, arg.prio = OP, "[", left, None, 0
            kind, tok = self.process_array(arg)
        else:
            raise _ParseFailure(f"unknown operator {token!r}")

        if kind == _T_OP and tok != ":":
            if _op_prio(tok) > arg.prio:
                return self.process_op(arg, tok)
            if right is None:
                raise _ParseFailure(f"cannot place operator {tok!r}")
            return self.process_op(right, tok)
        return kind, tok

    def process_cond(self, top: _Arg) -> tuple[int, str]:
        colon, left, right = _Arg(OP), _Arg(), _Arg()
        colon.left, colon.right = left, right
        kind, tok = self.process_arg(left)
        while kind == _T_OP and tok != ":":
            kind, tok = self.process_op(left, tok)
        if kind != _T_OP or tok != ":":
            raise _ParseFailure("expected ':'")
        colon.text = ":"
        kind, tok = self.process_arg(right)
        top.right = colon
        return kind, tok

    def process_array(self, top: _Arg) -> tuple[int, str]:
        index = _Arg()
        kind, tok = self.process_arg(index)
        if kind != _T_OP or tok != "]":
            raise _ParseFailure("expected ']'")
        top.right = index
        return self.tok.read_item()

    def _expect(self, want_kind: int, want: str | None = None, item: bool = False) -> str:
        kind, tok = self.tok.read_item() if item else self.tok.read()
        if kind != want_kind or (want is not None and tok != want):
            raise _ParseFailure(f"expected {want or 'a name'!r}, got {tok!r}")
        return tok

    def _field_arg(self, first_only: bool = False) -> tuple[_Arg, int, str]:
        """process_field_arg: one expression, operators included."""
        arg = _Arg()
        kind, tok = self.process_arg(arg)
        while kind == _T_OP:
            kind, tok = self.process_op(arg, tok)
        return arg, kind, tok

    def _delimited(self, delim: str) -> _Arg:
        """alloc_and_process_delim: an expression ended by `delim`."""
        arg = _Arg()
        kind, tok = self.process_arg(arg)
        if kind == _T_OP:
            kind, tok = self.process_op(arg, tok)
            _consolidate(arg)
        if kind != _T_DELIM or tok != delim:
            raise _ParseFailure(f"expected {delim!r}")
        return arg

    def _flag_list(self, tok: str) -> tuple[tuple[tuple[str, str], ...], int, str]:
        """process_fields: `{ value, "name" }, ...` as (value text, name) pairs."""
        entries: list[tuple[str, str]] = []
        while True:
            kind, tok = self.tok.read_item()
            if kind != _T_OP or tok != "{":
                break
            value = _Arg()
            kind, tok = self.process_arg(value)
            if kind == _T_OP:
                kind, tok = self.process_op(value, tok)
            if kind != _T_DELIM or tok != ",":
                raise _ParseFailure("expected ',' in a flag entry")
            value_text = _arg_eval_text(value)
            name = _Arg()
            kind, tok = self.process_arg(name)
            if kind != _T_OP or tok != "}":
                raise _ParseFailure("expected '}' in a flag entry")
            entries.append((value_text, _arg_eval_text(name)))
            kind, tok = self.tok.read_item()
            if not (kind == _T_DELIM and tok == ","):
                break
        return tuple(entries), kind, tok

    def process_function(self, arg: _Arg, name: str) -> tuple[int, str]:
        if name in ("__print_flags", "__print_symbolic"):
            value, kind, tok = self._field_arg()
            if kind != _T_DELIM or tok != ",":
                raise _ParseFailure(f"{name}: expected ','")
            delim = None
            if name == "__print_flags":
                kind, tok = self.tok.read_item()
                if kind in (_T_ITEM, _T_DQUOTE, _T_SQUOTE):
                    delim = tok
                    kind, tok = self.tok.read_item()
                if kind != _T_DELIM or tok != ",":
                    raise _ParseFailure(f"{name}: expected ','")
            entries, kind, tok = self._flag_list(tok)
            if kind != _T_DELIM or tok != ")":
                raise _ParseFailure(f"{name}: expected ')'")
            arg.kind = FLAGS if name == "__print_flags" else SYMBOL
            arg.left = value
            arg.extra = (delim, entries)
            return self.tok.read_item()
        if name in ("__print_hex", "__print_hex_str"):
            arg.kind = HEX if name == "__print_hex" else HEX_STR
            arg.left = self._delimited(",")
            arg.right = self._delimited(")")
            return self.tok.read_item()
        if name == "__print_array":
            arg.kind = INT_ARRAY
            arg.left = self._delimited(",")
            count = self._delimited(",")
            el_size = self._delimited(")")
            arg.extra = (count, el_size)
            return self.tok.read_item()
        if name in ("__get_str", "__get_rel_str", "__get_bitmask", "__get_rel_bitmask",
                    "__get_cpumask", "__get_rel_cpumask"):
            field_name = self._expect(_T_ITEM)
            self._expect(_T_DELIM, ")")
            arg.kind = STRING if "str" in name else (BITMASK if "bitmask" in name else CPUMASK)
            arg.text = field_name
            arg.field = self.any_field(field_name)
            return self.tok.read()
        if name in ("__get_dynamic_array", "__get_rel_dynamic_array", "__get_sockaddr",
                    "__get_sockaddr_rel"):
            kind, field_name = self.tok.read()
            field = self.event_field(field_name) if kind == _T_ITEM else None
            if field is None:
                raise _ParseFailure(f"{name}: unknown field {field_name!r}")
            self._expect(_T_DELIM, ")")
            arg.kind, arg.text, arg.field = DYNAMIC_ARRAY, field_name, field
            kind, tok = self.tok.read_item()
            if kind == _T_OP and tok == "[":
                # libtraceevent rejects an index here (its test is inverted)
                raise _ParseFailure(f"{name}(...)[index] is not supported by libtraceevent")
            return kind, tok
        if name in ("__get_dynamic_array_len", "__get_rel_dynamic_array_len"):
            field_name = self._expect(_T_ITEM)
            field = self.event_field(field_name)
            if field is None:
                raise _ParseFailure(f"{name}: unknown field {field_name!r}")
            self._expect(_T_DELIM, ")")
            arg.kind, arg.text, arg.field = DYNAMIC_ARRAY_LEN, field_name, field
            return self.tok.read()
        if name == "__builtin_expect":
            kind, tok = self.process_arg(arg)
            if kind != _T_DELIM or not tok.startswith(","):
                raise _ParseFailure("__builtin_expect: expected ','")
            self._expect(_T_ITEM)
            self._expect(_T_DELIM, ")")
            return self.tok.read_item()
        if name == "sizeof":
            return self.process_sizeof(arg)
        raise _ParseFailure(f"function {name} not defined")

    def process_sizeof(self, arg: _Arg) -> tuple[int, str]:
        kind, tok = self.tok.read_item()
        arg.kind = ATOM
        token_has_paren = False
        if tok == "unsigned":
            kind, tok = self.tok.read_item()
            if kind != _T_ITEM:
                token_has_paren = True
        if token_has_paren or tok == "int":
            arg.text = "4"
        elif tok == "long":
            kind, tok = self.tok.read_item()
            if tok == "long":
                arg.text = "8"
            else:
                arg.text = str(self.long_size)
                token_has_paren = True
        elif tok in ("__u64", "u64", "__s64", "s64"):
            arg.text = "8"
        elif tok in ("__u32", "u32", "__s32", "s32"):
            arg.text = "4"
        elif tok in ("__u16", "u16", "__s16", "s16"):
            arg.text = "2"
        elif tok in ("__u8", "u8", "__8", "s8"):
            arg.text = "1"
        elif tok == "REC":
            self._expect(_T_OP, "->", item=True)
            field = self.any_field(self._expect(_T_ITEM))
            if field is None or field.is_array:
                raise _ParseFailure("sizeof: unsupported field")
            arg.text = str(field.size)
        else:
            raise _ParseFailure(f"sizeof({tok}) is not supported")
        if not token_has_paren:
            kind, tok = self.tok.read_item()
        if kind != _T_DELIM or tok != ")":
            raise _ParseFailure("sizeof: expected ')'")
        return self.tok.read_item()


def _consolidate(arg: _Arg) -> None:
    """consolidate_op_arg: fold operators whose operands are both atoms."""
    if arg.kind != OP:
        return
    if arg.left is not None:
        _consolidate(arg.left)
    if arg.right is not None:
        _consolidate(arg.right)
    if arg.left is None or arg.right is None or arg.left.kind != ATOM or arg.right.kind != ATOM:
        return
    a, b, op = _strtoull(arg.left.text), _strtoull(arg.right.text), arg.text
    if op in ("/", "%") and b == 0:
        raise _ParseFailure("division by zero in a constant")
    table = {
        ">>": lambda: a >> (b & 63), ">=": lambda: int(a >= b), ">": lambda: int(a > b),
        "<<": lambda: a << (b & 63), "<=": lambda: int(a <= b), "<": lambda: int(a < b),
        "&&": lambda: int(bool(a and b)), "&": lambda: a & b,
        "||": lambda: int(bool(a or b)), "|": lambda: a | b,
        "-": lambda: a - b, "+": lambda: a + b, "*": lambda: a * b, "^": lambda: a ^ b,
        "/": lambda: a // b, "%": lambda: a % b, "==": lambda: int(a == b), "!=": lambda: int(a != b),
    }
    fold = table.get(op) or table.get(op[:1])
    if fold is None:
        return
    arg.kind, arg.text = ATOM, str(_to_signed64(fold() & _M64))
    arg.left = arg.right = None


def _arg_num_eval(arg: _Arg) -> int | None:
    """arg_num_eval: constant value of a flag/symbol table entry (None: not constant)."""
    if arg.kind == ATOM:
        return _to_signed64(_strtoull(arg.text))
    if arg.kind == TYPE:
        v = _arg_num_eval(arg.left)
        return None if v is None else _to_signed64(_cast(v & _M64, arg.text, False))
    if arg.kind != OP:
        return None
    op = arg.text
    if op == "~":
        r = _arg_num_eval(arg.right)
        return None if r is None else ~r
    if op[0] in "-+" and arg.left is not None and arg.left.kind == NULL:
        left: int | None = 0
    else:
        left = _arg_num_eval(arg.left) if arg.left is not None else None
    if left is None:
        return None
    right = _arg_num_eval(arg.right) if arg.right is not None else None
    if right is None:
        return None
    ops = {
        "|": lambda: left | right, "||": lambda: int(bool(left or right)),
        "&": lambda: left & right, "&&": lambda: int(bool(left and right)),
        "<": lambda: int(left < right), "<<": lambda: left << (right & 63), "<=": lambda: int(left <= right),
        ">": lambda: int(left > right), ">>": lambda: left >> (right & 63), ">=": lambda: int(left >= right),
        "==": lambda: int(left == right), "!=": lambda: int(left != right),
        "-": lambda: left - right, "+": lambda: left + right,
    }
    fn = ops.get(op)
    return None if fn is None else _to_signed64(fn() & _M64)


def _arg_eval_text(arg: _Arg) -> str:
    """arg_eval: the text a flag/symbol entry keeps (atom text or a decimal)."""
    while arg.kind == TYPE:
        arg = arg.left
    if arg.kind == ATOM:
        return arg.text
    if arg.kind == OP:
        v = _arg_num_eval(arg)
        if v is not None:
            return str(v)
    raise _ParseFailure("flag entry is not a constant")


# Names libtraceevent knows in flag tables when the kernel left them unexpanded.
_KNOWN_FLAGS = {
    "HI_SOFTIRQ": 0, "TIMER_SOFTIRQ": 1, "NET_TX_SOFTIRQ": 2, "NET_RX_SOFTIRQ": 3,
    "BLOCK_SOFTIRQ": 4, "IRQ_POLL_SOFTIRQ": 5, "TASKLET_SOFTIRQ": 6, "SCHED_SOFTIRQ": 7,
    "HRTIMER_SOFTIRQ": 8, "RCU_SOFTIRQ": 9, "HRTIMER_NORESTART": 0, "HRTIMER_RESTART": 1,
}


def _eval_flag(text: str) -> int:
    """eval_flag: value of a flag table entry as a signed 64-bit number (-1: unknown)."""
    if text[:1].isdigit():
        return _to_signed64(_strtoull(text))
    return _KNOWN_FLAGS.get(text, -1)


def _cast(val: int, ctype: str, pointer: bool) -> int:
    """eval_type_str: libtraceevent casts mask to the type's size, never sign-extend."""
    if len(ctype) < 2:
        return val
    if pointer:
        if not ctype.endswith("*"):
            return val
        ctype = ctype[:-2]
        if len(ctype) < 2:
            return val
    elif ctype.endswith("*"):
        return val
    if ctype.startswith("struct"):
        return val
    if ctype in ("u8", "s8"):
        return val & 0xFF
    if ctype in ("u16", "s16"):
        return val & 0xFFFF
    if ctype in ("u32", "s32"):
        return val & 0xFFFFFFFF
    if ctype.startswith("unsigned "):
        ctype = ctype[9:]
    return val & {"char": 0xFF, "short": 0xFFFF, "int": 0xFFFFFFFF}.get(ctype, _M64)


# ---------------------------------------------------------------------------
# Format string -> segments (libtraceevent's parse_args)
# ---------------------------------------------------------------------------

_SEG_TEXT, _SEG_NUM, _SEG_PTR, _SEG_STR = range(4)


def _unescape_run(fmt: str, i: int) -> tuple[str, int]:
    """parse_arg_string: literal text from `i` up to the next conversion."""
    out: list[str] = []
    n = len(fmt)
    while i < n:
        ch = fmt[i]
        if ch == "\\":
            i += 1
            esc = fmt[i] if i < n else ""
            out.append({"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}.get(esc, esc))
        elif ch == "%":
            if i + 1 < n and fmt[i + 1] == "%":
                out.append("%")
                i += 1
            else:
                break
        else:
            out.append(ch)
        i += 1
    return "".join(out), i


def _pointer_ext_len(fmt: str, k: int) -> int:
    """parse_arg_format_pointer: how many characters after 'p' belong to it."""
    def at(j: int) -> str:
        return fmt[j] if j < len(fmt) else ""

    c, c1 = at(k), at(k + 1)
    if c in ("F", "S", "f", "s"):
        return 1
    if c in ("M", "m"):
        return 2 if c1 in ("R", "F") else 1
    if c in ("I", "i"):
        ret, index = 0, 2
        if c1 == "S":
            while at(k + index) in ("p", "f", "s") and at(k + index):
                ret += 1
                index += 1
        if c1 in ("S", "4"):
            if at(k + index) in ("h", "n", "l", "b") and at(k + index):
                ret += 1
                index += 1
            if c1 == "4":
                return ret + 2
        if c1 in ("S", "6"):
            if at(k + index) == "c":
                ret += 1
            ret += 1
        return ret + 1
    if c == "U":
        return 2 if c1 in ("L", "l", "B", "b") else 1
    if c == "h":
        return 2 if c1 in ("C", "D", "N") else 1
    return 0


def _split_format(fmt: str, args: list[_Arg]) -> list[tuple]:
    """The format as segments: (_SEG_TEXT, text) or (kind, spec, arg, star_arg, ls).

    Raises _ParseFailure where libtraceevent sets TEP_EVENT_FL_FAILED
    (a conversion without an argument, a bad length modifier).
    """
    segs: list[tuple] = []
    it: Iterator[_Arg] = iter(args)
    n = len(fmt)
    i = 0
    while i < n:
        if fmt[i] == "%" and (i + 1 >= n or fmt[i + 1] != "%"):
            i = _split_conversion(fmt, i, it, segs)
        else:
            text, i = _unescape_run(fmt, i)
            segs.append((_SEG_TEXT, text))
    return segs


def _split_conversion(fmt: str, start: int, args: Iterator[_Arg], segs: list[tuple]) -> int:
    """parse_arg_format: one '%...' conversion; returns the index after it."""
    n = len(fmt)
    j = start + 1
    ls = 0
    star: _Arg | None = None
    while j < n:
        c = fmt[j]
        if c in "#.0123456789-L":
            # libtraceevent 1.7 (what trace-cmd 3.1 links) leaves the C cast at
            # int for 'L' (1.8 makes it long long); '+' and ' ' are not flags
            # for it and print as ">+<" / "> <" like any unknown character
            pass
        elif c == "h":
            ls -= 1
        elif c == "l":
            ls += 1
        elif c in "zZ":
            ls = 1
        elif c == "*":
            if star is not None:
                raise _ParseFailure("two '*' in one conversion")
            star = next(args, None)
            if star is None:
                raise _ParseFailure("no argument for '*'")
        elif c == "p":
            arg = next(args, None)
            if arg is None:
                raise _ParseFailure("no argument for %p")
            j += _pointer_ext_len(fmt, j + 1)
            segs.append((_SEG_PTR, fmt[start : j + 1], arg, star, ls))
            return j + 1
        elif c in "duixXo":  # no 'c' in libtraceevent 1.7: "%c" prints ">c<"
            arg = next(args, None)
            if arg is None:
                raise _ParseFailure(f"no argument for %{c}")
            if not -2 <= ls <= 2:
                raise _ParseFailure(f"bad length modifier in {fmt[start:j + 1]!r}")
            segs.append((_SEG_NUM, fmt[start : j + 1], arg, star, ls))
            return j + 1
        elif c == "s":
            arg = next(args, None)
            if arg is None:
                raise _ParseFailure("no argument for %s")
            segs.append((_SEG_STR, fmt[start : j + 1], arg, star, 0))
            return j + 1
        else:
            segs.append((_SEG_TEXT, f">{c}<"))
            return j + 1
        j += 1
    return j


# ---------------------------------------------------------------------------
# C printf for one conversion
# ---------------------------------------------------------------------------


class _CSpec:
    """One printf conversion ``%[flags][width][.prec][length]conv`` (width/prec may be '*')."""

    __slots__ = ("flags", "width", "prec", "conv", "star_is_width", "star_is_prec")

    def __init__(self, spec: str) -> None:
        i, n = 1, len(spec)
        flags = ""
        while i < n and spec[i] in "-+ #0":
            flags += spec[i]
            i += 1
        self.star_is_width = self.star_is_prec = False
        width = ""
        if i < n and spec[i] == "*":
            self.star_is_width = True
            i += 1
        while i < n and spec[i].isdigit():
            width += spec[i]
            i += 1
        prec: int | None = None
        if i < n and spec[i] == ".":
            i += 1
            if i < n and spec[i] == "*":
                self.star_is_prec = True
                i += 1
            digits = ""
            while i < n and spec[i].isdigit():
                digits += spec[i]
                i += 1
            prec = int(digits or "0")
        self.flags = flags
        self.width = int(width or "0")
        self.prec = prec
        self.conv = spec[-1]

    def resolve(self, star: int | None) -> tuple[str, int, int | None]:
        """(flags, width, precision) once a '*' value is known."""
        flags, width, prec = self.flags, self.width, self.prec
        if star is not None:
            star = _to_signed32(star)
            if self.star_is_width:
                if star < 0:
                    flags += "-"
                    star = -star
                width = star
            elif self.star_is_prec:
                prec = star if star >= 0 else None
        return flags, width, prec


def _to_signed32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def _pad(body: str, flags: str, width: int, visible: int | None = None) -> str:
    size = len(body) if visible is None else visible
    if width <= size:
        return body
    fill = " " * (width - size)
    return body + fill if "-" in flags else fill + body


def _c_int(value: int, conv: str, flags: str, width: int, prec: int | None) -> str:
    """printf of an integer already converted to the conversion's C type."""
    mag = -value if value < 0 else value
    if conv in "diu":
        digits = str(mag)
    elif conv == "x":
        digits = format(mag, "x")
    elif conv == "X":
        digits = format(mag, "X")
    else:  # 'o'
        digits = format(mag, "o")
    if prec is not None:
        digits = "" if prec == 0 and mag == 0 else digits.zfill(prec)
    prefix = ""
    if conv in "di":
        prefix = "-" if value < 0 else "+" if "+" in flags else " " if " " in flags else ""
    elif "#" in flags:
        if conv in "xX" and mag:
            prefix = "0" + conv
        elif conv == "o" and not digits.startswith("0"):
            digits = "0" + digits
    if "0" in flags and "-" not in flags and prec is None and width > len(prefix) + len(digits):
        digits = digits.zfill(width - len(prefix))
    return _pad(prefix + digits, flags, width)


def _c_str(text: str, flags: str, width: int, prec: int | None) -> str:
    """printf("%s") of text; width and precision count bytes, as in C."""
    if text.isascii():
        if prec is not None and len(text) > prec:
            text = text[:prec]
        return _pad(text, flags, width) if width else text
    raw = text.encode("utf-8", "surrogateescape")
    if prec is not None and len(raw) > prec:
        raw = raw[:prec]
        text = raw.decode("utf-8", "surrogateescape")
    return _pad(text, flags, width, len(raw)) if width else text


def _byte_char(b: int) -> str:
    return chr(b) if b < 0x80 else chr(0xDC00 + b)  # surrogateescape for non-ASCII bytes


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
        if conv == "c":
            bits, signed = 8, False
        mask = (1 << bits) - 1
        top = 1 << (bits - 1)
        full = 1 << bits
        value = self.num(arg)
        if "L" in spec and ls <= 0:
            # printf reads a 64-bit argument where libtraceevent passed a
            # (zero-extended) 32-bit int: a non-negative number below 2**32
            def int_as_64(d: bytes, n: int, sv: _SymbolView, value=value) -> int:
                v = value(d, n, sv) & mask
                if v & top:
                    v -= full
                return v & 0xFFFFFFFF
            value, bits, signed = int_as_64, 64, False
            mask, top, full = _M64, 1 << 63, 1 << 64
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
            if conv == "c":
                return _pad(_byte_char(v), fl, width)
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


def _glibc_pointer(v: int) -> str:
    return "0x%x" % v if v else "(nil)"


def _ip4_text(b: bytes, style: str, reverse: bool) -> str:
    if reverse:
        b = b[::-1]
    fmt = "%03d.%03d.%03d.%03d" if style == "i" else "%d.%d.%d.%d"
    return fmt % (b[0], b[1], b[2], b[3])


def _ip6c_text(a: bytes) -> str:
    """Compressed IPv6 text (libtraceevent's print_ip6c_addr, like the kernel's %pI6c)."""
    words = [int.from_bytes(a[j : j + 2], "big") for j in range(0, 16, 2)]
    v4mapped = a[0:10] == b"\0" * 10 and a[10:12] == b"\xff\xff"
    isatap = bytes([a[8] | 0x02, a[9], a[10], a[11]]) == b"\x02\x00\x5e\xfe"
    use_ipv4 = v4mapped or isatap
    rng = 6 if use_ipv4 else 8
    zerolength = [0] * 8
    for i in range(rng):
        for j in range(i, rng):
            if words[j] != 0:
                break
            zerolength[i] += 1
    longest, colonpos = 1, -1
    for i in range(rng):
        if zerolength[i] > longest:
            longest, colonpos = zerolength[i], i
    if longest == 1:
        colonpos = -1
    out: list[str] = []
    needcolon = False
    i = 0
    while i < rng:
        if i == colonpos:
            if needcolon or i == 0:
                out.append(":")
            out.append(":")
            needcolon = False
            i += longest
            continue
        if needcolon:
            out.append(":")
        hi, lo = words[i] >> 8, words[i] & 0xFF
        out.append("%x%02x" % (hi, lo) if hi else "%x" % lo)
        needcolon = True
        i += 1
    if use_ipv4:
        if needcolon:
            out.append(":")
        out.append("%d.%d.%d.%d" % (a[12], a[13], a[14], a[15]))
    return "".join(out)


def _bitmask_text(data: bytes, little: bool) -> str:
    """print_bitmask_to_seq: hex digits, most significant first, a comma every 32 bits."""
    size = len(data)
    nr_bits = size * 8
    str_size = (nr_bits + 3) // 4 + (int((nr_bits - 1) / 32) if nr_bits else 0)
    out = [""] * str_size
    length = 0
    i = str_size - 2
    while i >= 0:
        index = size - (length + 1) if not little else length
        h = "%02x" % data[index]
        out[i], out[i + 1] = h[0], h[1]
        length += 1
        if not (length & 3) and i > 0:
            i -= 1
            out[i] = ","
        i -= 2
    return "".join(out)


def _cpumask_text(data: bytes, little: bool) -> str:
    """print_cpumask_to_seq: CPU ranges such as "0-3,8"."""
    bits = []
    size = len(data)
    for i in range(size):
        byte = data[size - (i + 1)] if not little else data[i]
        for b in range(8):
            bits.append((byte >> b) & 1)
    out: list[str] = []
    cpu, total = 0, len(bits)
    while cpu < total:
        if bits[cpu]:
            first = cpu
            while cpu < total and bits[cpu]:
                cpu += 1
            out.append(str(first) if cpu - 1 == first else "%d-%d" % (first, cpu - 1))
        else:
            cpu += 1
    return ",".join(out)


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
# Public API
# ---------------------------------------------------------------------------

Renderer = Callable[[bytes, int, _SymbolView], str]


def _compile_segments(segs: list[tuple], compiler: _Compiler) -> Renderer:
    """One closure for a whole line: a Python % template and its value getters."""
    template: list[str] = []
    getters: list[Getter] = []
    for seg in segs:
        kind = seg[0]
        if kind == _SEG_TEXT:
            template.append(seg[1].replace("%", "%%"))
            continue
        _, spec, arg, star_arg, ls = seg
        star = compiler.num(star_arg) if star_arg is not None else None
        if kind == _SEG_NUM:
            piece, getter = compiler.number(arg, spec, star, ls)
            template.append(piece)
        elif kind == _SEG_PTR:
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


class PrintFormat:
    """The compiled ``print fmt`` of one event type.

    ``PrintFormat.parse(fmt)`` does all parsing; ``render(payload, symbols)``
    returns the text ``trace-cmd report`` prints after the event name for one
    record (``payload`` starts at ``common_type``).
    """

    def __init__(self, fmt: EventFormat, format_text: str, args: list[_Arg] | None,
                 failure: str | None) -> None:
        self.event = fmt
        #: the format string as written (escapes kept); "" when parsing failed
        self.format_text = format_text
        #: why libtraceevent cannot use this print fmt (None when it can)
        self.failure = failure
        self._args = args
        self._is_bprint = fmt.system == "ftrace" and fmt.name == "bprint"
        self._renderers: dict[tuple[int, bool], Renderer] = {}

    @classmethod
    def parse(cls, fmt: EventFormat, *, long_size: int = 8, little_endian: bool = True) -> "PrintFormat":
        """Parse ``fmt.print_fmt`` once.

        A print fmt that libtraceevent cannot parse either gives a PrintFormat
        whose render prints ``[FAILED TO PARSE]`` and the fields (``failure``
        says why).  PrintFormatError is raised only when ``fmt`` has no print
        fmt line at all.
        """
        if not fmt.print_fmt:
            raise PrintFormatError(f"event {fmt.full_name} has no print fmt line")
        failure = None
        try:
            text, args = _ArgParser(fmt, long_size).parse(fmt.print_fmt)
            if not args and fmt.system == "ftrace":
                # old ftrace formats had no arguments: libtraceevent passes every field
                args = []
                for f in fmt.event_fields:
                    a = _Arg(FIELD, f.name)
                    a.field = f
                    args.append(a)
        except (_ParseFailure, RecursionError) as e:
            text, args, failure = "", None, str(e)
        pf = cls(fmt, text, args, failure)
        pf._renderer(long_size, little_endian)  # compile now: errors belong to parse time
        return pf

    @property
    def failed(self) -> bool:
        """True when this event renders as ``[FAILED TO PARSE] ...``."""
        return self.failure is not None

    def render(self, payload: bytes | memoryview, symbols: TraceSymbols) -> str:
        """The info text of one record, as libtraceevent's tep_print_event("%s", INFO)."""
        sv = _symbol_view(symbols)
        r = self._renderers.get((sv.long_size, sv.little))
        if r is None:
            r = self._renderer(sv.long_size, sv.little)
        return r(payload, len(payload), sv)

    def _renderer(self, long_size: int, little: bool) -> Renderer:
        key = (long_size, little)
        r = self._renderers.get(key)
        if r is not None:
            return r
        compiler = _Compiler(long_size, little)
        if self._is_bprint:
            r = _BprintRenderer(self.event, compiler)
        elif self._args is None:
            r = _FailedRenderer(self.event, compiler)
        else:
            try:
                r = _compile_segments(_split_format(self.format_text, self._args), compiler)
            except _ParseFailure as e:
                self.failure = str(e)
                r = _FailedRenderer(self.event, compiler)
        self._renderers[key] = r
        return r

    def batch_plan(self, symbols: TraceSymbols) -> "PrintFormatBatch":
        """How to render many records of this event at once (see :class:`PrintFormatBatch`)."""
        key = (symbols.long_size, symbols.little_endian)
        r = self._renderers.get(key) or self._renderer(*key)
        batch = getattr(r, "_batch", None)
        if batch is None:  # bprint, [FAILED TO PARSE]: the whole text per record
            return PrintFormatBatch("%s", (r,), symbols)
        return PrintFormatBatch(batch[0], batch[1], symbols)

    def __repr__(self) -> str:
        state = f" failed: {self.failure}" if self.failure else ""
        return f"<PrintFormat {self.event.full_name}{state}>"


class PrintFormatBatch:
    """The print fmt text of many records of one event type, as columns.

    ``template % values`` is the text :meth:`PrintFormat.render` gives for a
    record, where ``values`` is that record's row of :meth:`columns`.  Values
    that are plain reads of the record's fixed bytes are read for every record
    at once from ``rows``; the others are computed record by record, in the
    order given (what libtraceevent remembers between records stays per event).
    """

    def __init__(self, template: str, getters: tuple, symbols: TraceSymbols) -> None:
        #: a Python % template (literal ``%`` written ``%%``)
        self.template = template
        self._getters = getters
        self._symbols = symbols  # its _SymbolView is built only if a value needs it (kallsyms parse)
        cols = [getattr(g, "_col", None) for g in getters]
        self._cols = cols
        #: bytes of each record :meth:`columns` needs in ``rows``
        self.width = max([(c.inner if isinstance(c, _MapCol) else c).offset
                          + (c.inner if isinstance(c, _MapCol) else c).size
                          for c in cols if c is not None], default=0)

    def columns(self, rows, lengths, payloads: Callable[[], list[bytes]]) -> list[list]:
        """One list of values per conversion of the template, one value per record.

        ``rows``: (N, ≥ width) uint8 matrix of the records' first bytes, zero past
        each record's end; ``lengths``: their sizes (numpy); ``payloads()``: the
        records as bytes (asked for only when some value needs code per record).
        """
        sv: _SymbolView | None = None
        little = self._symbols.little_endian
        out: list[list] = []
        records: list[bytes] | None = None
        for g, c in zip(self._getters, self._cols):
            if isinstance(c, _Col):
                out.append(_eval_col(c, rows, lengths, little))
            elif isinstance(c, _MapCol):
                values = _eval_col(c.inner, rows, lengths, little)
                fn = c.fn
                sv = sv or _symbol_view(self._symbols)
                table = {v: fn(v, sv) for v in set(values)}
                out.append(list(map(table.__getitem__, values)))
            else:
                if records is None:
                    records = payloads()
                sv = sv or _symbol_view(self._symbols)
                out.append([g(d, len(d), sv) for d in records])
        return out


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
            segs = _split_format(fmt, args)
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
